import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.folder import load_folder
from tests.corpora.util import by_name, skipped_by_name


def test_speakers_from_parent_folders(tmp_path, make_corpus):
    make_corpus(tmp_path, ["alice/book1/x1.wav", "bob/y2.flac", "z3.wav"], corrupt=["bob/bad.wav"])
    (tmp_path / "alice" / "notes.txt").write_text("ignored")
    listing = load_folder(tmp_path, language="fr", corpus="voxforge_fr", naturalness="natural")
    utterances = by_name(listing)
    assert {name: u.speaker for name, u in utterances.items()} == {
        "x1.wav": "book1",
        "y2.flac": "bob",
        "z3.wav": tmp_path.name,
    }
    assert {(u.corpus, u.language, u.label, u.naturalness) for u in listing.utterances} == {
        ("voxforge_fr", "fr", None, "natural")
    }
    assert "unreadable audio header" in skipped_by_name(listing)["bad.wav"]


@pytest.mark.parametrize(
    "pattern, expected",
    [
        (r"^[A-Za-z]+", {"MI004.wav": "MI", "S041.wav": "S"}),
        (r"^([A-Za-z]+)\d", {"MI004.wav": "MI", "S041.wav": "S"}),
        (r"(?P<speaker>\d)$", {"MI004.wav": "4", "S041.wav": "1"}),
    ],
)
def test_speaker_pattern(tmp_path, make_corpus, pattern, expected):
    make_corpus(tmp_path, ["MI004.wav", "S041.wav", "0042.wav"])
    listing = load_folder(tmp_path, language="bn", speaker_pattern=pattern)
    assert {name: u.speaker for name, u in by_name(listing).items()} == {
        **expected,
        **({"0042.wav": "2"} if "speaker" in pattern else {}),
    }
    if "speaker" not in pattern:
        assert "does not match '0042'" in skipped_by_name(listing)["0042.wav"]


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="needs its language"):
        load_folder(tmp_path)
    with pytest.raises(ValueError, match="'Bangla'"):
        load_folder(tmp_path, language="Bangla")
    with pytest.raises(ValueError, match="speaker_pattern='\\('"):
        load_folder(tmp_path, language="bn", speaker_pattern="(")
    with pytest.raises(ValueError, match="'spontaneous'"):
        load_folder(tmp_path, language="bn", naturalness="spontaneous")
    with pytest.raises(CorpusError, match="not found"):
        load_folder(tmp_path / "absent", language="bn")
    with pytest.raises(CorpusError, match="no audio files"):
        load_folder(tmp_path, language="bn")
