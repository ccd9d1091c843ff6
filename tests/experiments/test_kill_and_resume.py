"""The main app killed with SIGKILL mid-training and resumed ends where an uninterrupted run does.

`tests/training/test_exact_resume.py` kills `fit_and_evaluate` (and the AAE's
three-phase training) at chosen points; this test does it to the whole app,
through its command line, as a user's `kill -9` would.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import PROJECT_ROOT


def _command(out, cache):
    return [
        sys.executable, "-m", "apps.train_savee_crosslang",
        "--synthetic-per-emotion", "2", "--epochs", "4", "--folds", "1", "--settings", "mtl",
        "--num-frames", "48", "--batch-size", "16", "--quiet", "--no-export",
        "--out", str(out), "--cache-dir", str(cache),
    ]


def _environment():
    environment = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    environment["PYTHONPATH"] = str(PROJECT_ROOT)
    return environment


def _run(arguments):
    subprocess.run(
        arguments, check=True, cwd=PROJECT_ROOT, env=_environment(), timeout=900,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _kill_after_first_backup(arguments, fold_dir):
    """Starts the app and kills it (SIGKILL) once its first epoch's backup is committed."""
    process = subprocess.Popen(
        arguments, cwd=PROJECT_ROOT, env=_environment(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    metadata = fold_dir / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if metadata.exists():
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        process.wait(timeout=60)
    return process.returncode


def test_a_killed_and_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    cache = tmp_path / "cache"
    _run(_command(tmp_path / "uninterrupted", cache))

    resumed = tmp_path / "resumed"
    fold = resumed / "mtl" / "fold_savee_DC"
    returncode = _kill_after_first_backup(_command(resumed, cache), fold)
    if returncode != -signal.SIGKILL:
        pytest.fail(f"the run was not killed mid-training (exit status {returncode})")
    assert not (fold / "result.json").exists()
    _run([*_command(resumed, cache), "--resume"])

    reference = tmp_path / "uninterrupted" / "mtl" / "fold_savee_DC"
    assert (fold / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    expected = json.loads((reference / "result.json").read_text())
    actual = json.loads((fold / "result.json").read_text())
    for key in ("wa", "ua", "macro_f1", "confusion", "best_epoch", "best_validation"):
        assert actual[key] == expected[key], key
