import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.librispeech import load_librispeech, read_speaker_genders
from tests.corpora.util import by_name, skipped_by_name

SPEAKERS_TXT = """\
; Some speakers have also been dropped, as explained in the paper.
;
;ID  |SEX| SUBSET           |MINUTES| NAME
14   | F | train-clean-360  | 25.03 | Kristin LeMoine
16   | F | train-clean-360  | 25.11 | Alys AtteWater
60   | M | train-clean-100  | 20.18 | |CBW|Simon
"""


def test_tiny_librispeech(tmp_path, make_corpus):
    (tmp_path / "SPEAKERS.TXT").write_text(SPEAKERS_TXT)
    make_corpus(
        tmp_path,
        [
            "dev-clean/14/208/14-208-0000.flac",
            "dev-clean/60/121082/60-121082-0001.flac",
            "dev-clean/99/1/99-1-0000.flac",  # speaker not in SPEAKERS.TXT
            "dev-clean/14/208/14-208.flac",
        ],
        corrupt=["dev-clean/16/300/16-300-0000.flac"],
    )
    (tmp_path / "dev-clean/14/208/14-208.trans.txt").write_text("14-208-0000 HELLO\n")
    for directory in (tmp_path, tmp_path / "dev-clean"):
        listing = load_librispeech(directory)
        utterances = by_name(listing)
        assert {name: (u.speaker, u.gender) for name, u in utterances.items()} == {
            "14-208-0000.flac": ("14", "female"),
            "60-121082-0001.flac": ("60", "male"),
            "99-1-0000.flac": ("99", None),
        }
        assert {(u.language, u.label, u.corpus) for u in listing.utterances} == {
            ("en", None, "librispeech")
        }
        assert [w.path.endswith("99-1-0000.flac") for w in listing.warnings] == [True]
        skipped = skipped_by_name(listing)
        assert "does not follow LibriSpeech" in skipped["14-208.flac"]
        assert "unreadable audio header" in skipped["16-300-0000.flac"]


def test_speakers_file_and_missing_speakers_file(tmp_path, make_corpus):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "SPEAKERS.TXT").write_text(SPEAKERS_TXT)
    assert read_speaker_genders(tmp_path / "docs" / "SPEAKERS.TXT") == {
        "14": "female",
        "16": "female",
        "60": "male",
    }
    make_corpus(tmp_path / "corpus", ["train-other-500/14/208/14-208-0000.flac"])
    listing = load_librispeech(tmp_path / "corpus")
    assert listing.utterances[0].gender is None
    assert "SPEAKERS.TXT not found" in listing.warnings[0].reason


def test_missing_folder(tmp_path):
    with pytest.raises(CorpusError, match="librispeech: corpus folder not found"):
        load_librispeech(tmp_path / "LibriSpeech")
