import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.savee import load_savee
from tests.corpora.util import by_name, skipped_by_name


def test_nested_layout_from_root_and_from_audiodata(tmp_path, make_corpus):
    make_corpus(
        tmp_path / "AudioData",
        ["DC/a01.wav", "DC/sa02.wav", "JE/su15.wav", "KL/n30.wav", "JK/h03.wav"],
        corrupt=["JK/f01.wav"],
    )
    (tmp_path / "AudioData" / "DC" / "info.txt").write_text("not audio: ignored")
    for directory in (tmp_path, tmp_path / "AudioData"):
        listing = load_savee(directory)
        utterances = by_name(listing)
        assert sorted(utterances) == ["a01.wav", "h03.wav", "n30.wav", "sa02.wav", "su15.wav"]
        first = utterances["sa02.wav"]
        assert (first.corpus, first.speaker, first.label) == ("savee", "DC", "sadness")
        assert (first.gender, first.language, first.naturalness) == ("male", "en", "acted")
        assert first.duration == pytest.approx(0.2)
        assert first.path.startswith(str(tmp_path.resolve()))
        assert utterances["su15.wav"].label == "surprise"
        assert utterances["n30.wav"].speaker == "KL"
        assert "unreadable audio header" in skipped_by_name(listing)["f01.wav"]
        assert [item.path for item in listing.utterances] == sorted(
            item.path for item in listing.utterances
        )


def test_flat_layout_bad_names_and_codes_are_skipped(tmp_path, make_corpus):
    make_corpus(tmp_path, ["DC_a01.wav", "JE_sa01.wav", "KL_d07.wav", "DC_x01.wav", "notes.wav"])
    listing = load_savee(tmp_path)
    utterances = by_name(listing)
    assert {name: (item.speaker, item.label) for name, item in utterances.items()} == {
        "DC_a01.wav": ("DC", "anger"),
        "JE_sa01.wav": ("JE", "sadness"),
        "KL_d07.wav": ("KL", "disgust"),
    }
    skipped = skipped_by_name(listing)
    assert "unknown emotion code 'x'" in skipped["DC_x01.wav"]
    assert "follows neither SAVEE layout" in skipped["notes.wav"]


def test_both_layouts_in_one_folder_count_once(tmp_path, make_corpus):
    make_corpus(tmp_path, ["AudioData/DC/a01.wav", "ALL/DC_a01.wav", "ALL/DC_a02.wav"])
    # With AudioData/ present only it is read; the flat copies beside it are not.
    assert len(load_savee(tmp_path).utterances) == 1
    listing = load_savee(tmp_path / "ALL")
    assert len(listing.utterances) == 2
    make_corpus(tmp_path / "mixed", ["DC/a01.wav", "DC_a01.wav"])
    listing = load_savee(tmp_path / "mixed")
    assert len(listing.utterances) == 1
    assert "the same utterance as" in listing.skipped[0].reason


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        load_savee(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no audio files.*empty"):
        load_savee(tmp_path / "empty")
