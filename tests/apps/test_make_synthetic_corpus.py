"""`python -m apps.make_synthetic_corpus`: arguments, output, reuse."""

import csv
import pathlib
import subprocess
import sys

import pytest

from apps import make_synthetic_corpus as app

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_folder_corpus_then_reuse(tmp_path, capsys):
    out = tmp_path / "tr_speech"
    argv = ["--layout", "folder", "--language", "tr", "--out", str(out)]
    argv += ["--num-speakers", "2", "--per-speaker", "2", "--seed", "4", "--quiet"]
    assert app.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Wrote 4 files" in printed and "ms per utterance" in printed
    files = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.wav"))
    assert files == [
        "tr-f1/tr-f1_001.wav",
        "tr-f1/tr-f1_002.wav",
        "tr-m1/tr-m1_001.wav",
        "tr-m1/tr-m1_002.wav",
    ]
    with open(out / "manifest.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert {row["language"] for row in rows} == {"tr"}
    assert {row["gender"] for row in rows} == {"female", "male"}

    assert app.main(argv) == 0
    assert "nothing generated" in capsys.readouterr().out


def test_savee_layout_with_counts(tmp_path, capsys):
    out = tmp_path / "savee"
    argv = ["--layout", "savee", "--out", str(out), "--per-emotion", "1", "--neutral", "1"]
    assert app.main(argv + ["--quiet"]) == 0
    assert len(list((out / "AudioData").glob("*/*.wav"))) == 4 * 7
    assert "anger 4" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layout", "folder", "--language", "klingon", "--out", "x"], "'klingon'. Available: "),
        (["--layout", "folder", "--out", "x"], "needs --language"),
        (["--layout", "savee", "--language", "de", "--out", "x"], "savee layout is English"),
        (["--layout", "emodb", "--neutral", "3", "--out", "x"], "--neutral applies"),
        (
            ["--layout", "folder", "--language", "it", "--per-emotion", "2", "--out", "x"],
            "--per-emotion applies",
        ),
        (["--layout", "savee", "--per-emotion", "0", "--out", "x"], "received '0'"),
        (["--layout", "savee"], "--out"),
        (["--layout", "opera", "--out", "x"], "invalid choice: 'opera'"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        app.main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_unknown_language_lists_the_available_ones(capsys):
    with pytest.raises(SystemExit):
        app.main(["--layout", "folder", "--language", "xx", "--out", "x"])
    error = capsys.readouterr().err
    for code in ("en", "de", "it", "fr", "es", "tr", "ur"):
        assert f" {code}" in error


def test_list_languages(capsys):
    assert app.main(["--list-languages"]) == 0
    assert {"en", "de", "ur"} <= set(capsys.readouterr().out.split())


def test_output_folder_that_is_a_file_is_an_error(tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    argv = ["--layout", "emodb", "--out", str(a_file), "--per-emotion", "1", "--quiet"]
    assert app.main(argv) == 2
    assert "not a folder" in capsys.readouterr().err


def test_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "apps.make_synthetic_corpus", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--layout {savee,emodb,folder}" in result.stdout
