import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.ravdess import load_ravdess
from tests.corpora.util import by_name, skipped_by_name


def test_tiny_ravdess(tmp_path, make_corpus):
    make_corpus(
        tmp_path,
        [
            "Actor_01/03-01-01-01-01-01-01.wav",
            "Actor_02/03-01-02-02-01-02-02.wav",
            "Actor_05/03-01-05-01-01-01-02.wav",  # named for actor 02, in Actor_05
            "Actor_05/03-02-03-01-01-01-05.wav",  # song
            "Actor_05/03-01-09-01-01-01-05.wav",  # unknown emotion
            "Actor_05/03-01-08.wav",
        ],
        corrupt=["Actor_01/03-01-04-01-01-01-01.wav"],
    )
    listing = load_ravdess(tmp_path)
    utterances = by_name(listing)
    assert {name: (u.speaker, u.gender, u.label) for name, u in utterances.items()} == {
        "03-01-01-01-01-01-01.wav": ("01", "male", "neutral"),
        "03-01-02-02-01-02-02.wav": ("02", "female", "calm"),
        "03-01-05-01-01-01-02.wav": ("05", "male", "anger"),
    }
    assert len(listing.warnings) == 1
    assert listing.warnings[0].path.endswith("Actor_05/03-01-05-01-01-01-02.wav")
    assert "actor 02" in listing.warnings[0].reason and "Actor_05" in listing.warnings[0].reason
    skipped = skipped_by_name(listing)
    assert "song" in skipped["03-02-03-01-01-01-05.wav"]
    assert "unknown emotion code '09'" in skipped["03-01-09-01-01-01-05.wav"]
    assert "seven two-digit fields" in skipped["03-01-08.wav"]
    assert "unreadable audio header" in skipped["03-01-04-01-01-01-01.wav"]

    with_song = by_name(load_ravdess(tmp_path, include_song=True))
    assert with_song["03-02-03-01-01-01-05.wav"].label == "happiness"


def test_missing_folder(tmp_path):
    with pytest.raises(CorpusError, match="absent"):
        load_ravdess(tmp_path / "absent")
