import json
import subprocess
import sys

import pytest

from ser_keras.corpora import CORPUS_KINDS, load_corpus, loader_options
from ser_keras.corpora.__main__ import main
from tests.conftest import PROJECT_ROOT


def test_registry():
    assert CORPUS_KINDS == (
        "savee",
        "emodb",
        "ravdess",
        "urdu",
        "emovo",
        "iemocap",
        "turev",
        "librispeech",
        "manifest",
        "folder",
    )
    assert loader_options("folder") == ("language", "speaker_pattern", "corpus", "naturalness")
    with pytest.raises(ValueError, match="'timit'"):
        load_corpus("timit", ".")
    with pytest.raises(ValueError, match="language='de'"):
        load_corpus("emodb", ".", language="de")


def test_describe_json(tmp_path, make_corpus, capsys):
    make_corpus(tmp_path, ["DC_a01.wav", "DC_a02.wav", "JE_n01.wav", "JE_q01.wav"])
    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["describe", "savee", str(tmp_path), "--json", *cache]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {
        k: summary[k] for k in ("utterances", "speakers", "labels", "languages", "genders")
    } == {
        "utterances": 3,
        "speakers": 2,
        "labels": {"anger": 2, "neutral": 1},
        "languages": {"en": 3},
        "genders": {"male": 3},
    }
    assert summary["skipped"] == [
        {"path": str(tmp_path.resolve() / "JE_q01.wav"), "reason": summary["skipped"][0]["reason"]}
    ]
    assert summary["warnings"] == []

    assert main(["describe", "folder", str(tmp_path), "--language", "en", *cache]) == 0
    text = capsys.readouterr().out
    assert "utterances  4" in text and "unlabelled 4" in text


def test_describe_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["describe", "emodb", str(tmp_path / "absent")]) == 2
    assert str(tmp_path / "absent") in capsys.readouterr().err
    assert main(["describe", "emodb", str(tmp_path), "--speaker-pattern", "x"]) == 2
    assert "--speaker-pattern does not apply" in capsys.readouterr().err
    # The module runs as a program.
    result = subprocess.run(
        [sys.executable, "-m", "ser_keras.corpora", "describe", "ravdess", str(tmp_path / "nope")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "nope" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
