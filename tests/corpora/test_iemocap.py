import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.iemocap import load_iemocap, read_evaluation
from tests.corpora.util import by_name, skipped_by_name

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def evaluation_block(start, utterance, code):
    return (
        f"[{start:.4f} - {start + 1.5:.4f}]\t{utterance}\t{code}\t[2.5000, 3.0000, 2.0000]\n"
        "C-E2:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


def write_evaluation(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER + "".join(
        evaluation_block(2.0 * index, utterance, code)
        for index, (utterance, code) in enumerate(entries)
    )
    path.write_text(text)


@pytest.fixture
def tiny_iemocap(tmp_path, make_corpus):
    entries = {
        ("Session1", "Ses01F_impro01"): [
            ("Ses01F_impro01_F000", "neu"),
            ("Ses01F_impro01_M000", "ang"),
            ("Ses01F_impro01_F001", "xxx"),
            ("Ses01F_impro01_M001", "exc"),
            ("Ses01F_impro01_F002", "zzz"),
        ],
        ("Session2", "Ses02M_script01_1"): [
            ("Ses02M_script01_1_F000", "fru"),
            ("Ses02M_script01_1_M000", "sad"),
            ("Ses02M_script01_1_M001", "hap"),  # written corrupt below
        ],
    }
    files = []
    for (session, dialog), items in entries.items():
        evaluation = tmp_path / session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        write_evaluation(evaluation, items)
        files += [f"{session}/sentences/wav/{dialog}/{utterance}.wav" for utterance, _ in items]
    files += [
        "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M002.wav",  # no evaluation line
        "Session2/sentences/wav/Ses02F_impro03/Ses02F_impro03_F000.wav",  # no evaluation file
        "Session1/sentences/wav/Ses01F_impro01/._Ses01F_impro01_F000.wav",
        "Session1/dialog/wav/Ses01F_impro01.wav",  # whole dialog: not an utterance
    ]
    corrupt = "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_M001.wav"
    files.remove(corrupt)
    make_corpus(tmp_path, files, corrupt=[corrupt])
    return tmp_path


def test_records(tiny_iemocap):
    listing = load_iemocap(tiny_iemocap)
    utterances = by_name(listing)
    described = {
        name[:-4]: (u.speaker, u.gender, u.naturalness, u.label) for name, u in utterances.items()
    }
    assert described == {
        "Ses01F_impro01_F000": ("Ses01F", "female", "natural", "neutral"),
        "Ses01F_impro01_M000": ("Ses01M", "male", "natural", "anger"),
        "Ses01F_impro01_F001": ("Ses01F", "female", "natural", None),
        "Ses01F_impro01_M001": ("Ses01M", "male", "natural", "excited"),
        "Ses02M_script01_1_F000": ("Ses02F", "female", "acted", "frustration"),
        "Ses02M_script01_1_M000": ("Ses02M", "male", "acted", "sadness"),
    }
    assert {u.language for u in listing.utterances} == {"en"}
    skipped = skipped_by_name(listing)
    assert "unknown IEMOCAP label code 'zzz'" in skipped["Ses01F_impro01_F002.wav"]
    assert "no evaluation line for Ses01F_impro01_M002" in skipped["Ses01F_impro01_M002.wav"]
    assert "label file not found" in skipped["Ses02F_impro03_F000.wav"]
    assert "not an IEMOCAP utterance id" in skipped["._Ses01F_impro01_F000.wav"]
    assert "unreadable audio header" in skipped["Ses02M_script01_1_M001.wav"]
    assert "Ses01F_impro01.wav" not in skipped  # dialog/wav is never read
    # One session folder is a corpus too.
    session = load_iemocap(tiny_iemocap / "Session2")
    assert [u.speaker for u in session.utterances] == ["Ses02F", "Ses02M"]


def test_read_evaluation_ignores_annotator_lines(tiny_iemocap):
    codes = read_evaluation(
        tiny_iemocap / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_script01_1.txt"
    )
    assert codes == {
        "Ses02M_script01_1_F000": "fru",
        "Ses02M_script01_1_M000": "sad",
        "Ses02M_script01_1_M001": "hap",
    }


def test_folder_without_sessions(tmp_path):
    with pytest.raises(CorpusError, match="no Session<n>/ folders"):
        load_iemocap(tmp_path)
    (tmp_path / "Session1" / "sentences" / "wav").mkdir(parents=True)
    with pytest.raises(CorpusError, match="no audio files"):
        load_iemocap(tmp_path)
