"""The URDU-shaped synthetic corpus (`make_urdu_corpus`), read back by the URDU loader."""

import collections
import pathlib

import pytest

from ser_keras import cli
from ser_keras.audio import synthetic
from ser_keras.corpora.urdu import load_urdu


def test_urdu_layout_is_read_back_by_the_urdu_loader(tmp_path):
    corpus = synthetic.make_urdu_corpus(tmp_path / "urdu", seed=0, per_emotion=2, num_speakers=2)
    assert len(corpus.utterances) == 2 * 4 * 2
    names = sorted(
        pathlib.Path(u.path).relative_to(tmp_path / "urdu").as_posix() for u in corpus.utterances
    )
    assert names[:2] == ["Angry/SF2_F01_A001.wav", "Angry/SF2_F02_A002.wav"]
    assert "Sad/SM1_F08_S002.wav" in names
    listing = load_urdu(tmp_path / "urdu")
    assert not listing.skipped and not listing.warnings
    assert {(u.speaker, u.gender) for u in listing.utterances} == {
        ("SM1", "male"), ("SF2", "female")
    }
    assert collections.Counter(u.label for u in listing.utterances) == {
        label: 4 for label in synthetic.URDU_EMOTION_FOLDERS
    }
    assert {u.language for u in listing.utterances} == {"ur"}
    assert {u.naturalness for u in corpus.utterances} == {"natural"}

    # The apps' spec: the folder's name holds the parameters; nothing is
    # synthesised again.
    spec = cli.synthetic_corpus_spec(tmp_path, "urdu", seed=0, per_emotion=2)
    assert (spec.kind, spec.directory.name) == ("urdu", "urdu_seed0_n2")


def test_urdu_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="num_speakers.*7"):
        synthetic.make_urdu_corpus(tmp_path, num_speakers=7)
    with pytest.raises(ValueError, match="per_emotion.*0"):
        synthetic.make_urdu_corpus(tmp_path, per_emotion=0)
