import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.emovo import load_emovo
from tests.corpora.util import by_name, skipped_by_name


def test_tiny_emovo(tmp_path, make_corpus):
    make_corpus(
        tmp_path,
        [
            "f1/dis-f1-b1.wav",
            "m3/gio-m3-n5.wav",
            "f2/pau-f2-l3.wav",
            "m1/rab-m1-d2.wav",
            "m1/tri-m2-b2.wav",  # speaker folder disagrees: name wins, warned
            "f1/xyz-f1-b1.wav",
            "f1/dis_f1_b1.wav",
        ],
        corrupt=["m3/sor-m3-b3.wav"],
    )
    listing = load_emovo(tmp_path)
    utterances = by_name(listing)
    assert {name: (u.speaker, u.gender, u.label) for name, u in utterances.items()} == {
        "dis-f1-b1.wav": ("f1", "female", "disgust"),
        "gio-m3-n5.wav": ("m3", "male", "happiness"),
        "pau-f2-l3.wav": ("f2", "female", "fear"),
        "rab-m1-d2.wav": ("m1", "male", "anger"),
        "tri-m2-b2.wav": ("m2", "male", "sadness"),
    }
    assert {(u.language, u.naturalness) for u in listing.utterances} == {("it", "acted")}
    assert len(listing.warnings) == 1 and "folder 'm1'" in listing.warnings[0].reason
    skipped = skipped_by_name(listing)
    assert "unknown emotion code 'xyz'" in skipped["xyz-f1-b1.wav"]
    assert "does not follow EMOVO" in skipped["dis_f1_b1.wav"]
    assert "unreadable audio header" in skipped["sor-m3-b3.wav"]


def test_empty_folder(tmp_path):
    (tmp_path / "f1").mkdir()
    with pytest.raises(CorpusError, match="no audio files"):
        load_emovo(tmp_path)
