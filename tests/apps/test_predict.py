"""python -m apps.predict: text, --json and --csv outputs, exit codes, argument errors."""

import contextlib
import csv
import io
import json
import subprocess
import sys

import pytest

from apps import predict as app
from tests import predict_data as data
from tests.conftest import PROJECT_ROOT


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = app.main([str(a) for a in argv])
        except SystemExit as exit_info:  # argparse
            code = exit_info.code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_app")
    model = data.tiny_model()
    data.save_like_a_run(model, root / "run" / "fold_A")
    data.export_tiny(model, root / "saved_models")
    recordings = data.write_recordings(root / "recordings")
    bad = data.write_recordings(root / "bad", usable=False)
    return root, recordings, bad


def test_text_output_names_label_probabilities_and_auxiliary_answers(setup):
    root, recordings, _ = setup
    code, out, err = _run("--model", root / "saved_models" / "tiny", recordings)
    assert code == 0, err
    assert out.startswith(f"Model: {root / 'saved_models' / 'tiny' / '1'} (exported SavedModel")
    for name in data.USABLE:
        block = out.split(f"{recordings / name}: ", 1)[1].split("\n")
        assert block[0].split()[0] in data.EMOTIONS
        assert all(f"{emotion} 0." in block[1] for emotion in data.EMOTIONS)
        assert block[2].startswith("    speaker: savee:")
    assert "(1.60 s of speech, cut to the model's limit; 3.00 s recorded)" in out
    assert f"Skipped {len(data.UNUSABLE)} file(s):" in out
    assert f"{recordings / 'silent.wav'}: no speech" in out
    assert out.rstrip().endswith(f"{len(data.USABLE)} file(s) predicted, 4 skipped.")


def test_json_prints_one_object_and_nothing_else_on_stdout(setup):
    root, recordings, _ = setup
    code, out, err = _run(
        "--model", root / "saved_models" / "tiny", "--json", "--batch-size", 2, recordings
    )
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"predictions", "skipped"}
    assert len(document["predictions"]) == len(data.USABLE)
    for record in document["predictions"]:
        assert {"path", "label", "probabilities"} <= set(record)
        assert set(record["probabilities"]) == set(data.EMOTIONS)
    assert {entry["path"] for entry in document["skipped"]} == {
        str(recordings / name) for name in data.UNUSABLE
    }
    assert all(set(entry) == {"path", "reason"} for entry in document["skipped"])
    assert "Model:" in err


def test_a_run_folder_and_csv_output(setup, tmp_path):
    root, recordings, _ = setup
    target = tmp_path / "predictions.csv"
    code, out, err = _run(
        "--model", root / "run", "--csv", target, recordings / "rate_22k.wav", recordings
    )
    assert code == 0, err
    assert f"(Keras model, 16000 Hz, uses at most {data.BUDGET_SECONDS:g} s)" in out
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == len(data.USABLE) + len(data.UNUSABLE)
    predicted = [row for row in rows if row["label"]]
    assert predicted[0]["path"] == str(recordings / "rate_22k.wav")
    assert len(predicted) == len(data.USABLE)
    assert all(row["speaker"] in data.SPEAKERS for row in predicted)
    total = sum(float(predicted[0][f"probability_{emotion}"]) for emotion in data.EMOTIONS)
    assert total == pytest.approx(1.0, abs=1e-4)
    assert {row["path"] for row in rows if row["skipped_reason"]} == {
        str(recordings / name) for name in data.UNUSABLE
    }


def test_exit_status_2_only_when_no_file_is_usable(setup):
    root, recordings, bad = setup
    code, out, err = _run("--model", root / "saved_models" / "tiny", "--json", bad)
    assert code == 2
    document = json.loads(out)
    assert document["predictions"] == [] and len(document["skipped"]) == len(data.UNUSABLE)
    assert "error: no input file could be used" in err
    code, _, _ = _run("--model", root / "saved_models" / "tiny", bad, recordings / "mono_16k.wav")
    assert code == 0


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "{tmp}/missing", "{tmp}"], r"--model: '\S+/missing' does not exist"),
        (["--model", "{tmp}", "{tmp}"], r"--model: found no model"),
        (
            ["--model", "{models}", "--csv", "{tmp}/no/such/folder/x.csv", "{tmp}"],
            r"--csv \S+x.csv: the folder .* does not exist",
        ),
        (["--model", "{models}", "--csv", "{tmp}", "{tmp}"], r"--csv \S+: is a folder"),
        (["--model", "{models}", "--batch-size", "0", "{tmp}"], r"--batch-size: .*'0'"),
        (["--model", "{models}", "--json", "--csv", "x.csv", "{tmp}"], "not allowed with"),
        (["{tmp}"], "required: --model"),
    ],
)
def test_wrong_arguments_give_one_error_line_naming_the_flag(setup, tmp_path, arguments, message):
    import re

    root = setup[0]
    argv = [a.format(tmp=tmp_path, models=root / "saved_models") for a in arguments]
    code, out, err = _run(*argv)
    assert code == 2
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), err
    assert "Traceback" not in err


def test_help_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from apps import predict\n"
        "try:\n"
        "    predict.main(['--help'])\n"
        "except SystemExit as exit_info:\n"
        "    assert exit_info.code == 0\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    text = " ".join(completed.stdout.split())
    for option in ("--model PATH", "--json", "--csv FILE", "--batch-size N", "INPUT"):
        assert option in text
