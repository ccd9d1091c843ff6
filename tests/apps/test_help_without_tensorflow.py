"""`--help` of every app answers at once: building its parser imports no TensorFlow.

Each app runs in a fresh interpreter (the test process has TensorFlow loaded
already): import `apps.<name>`, build its parser, ask for `--help`, then look
at `sys.modules`. Every module of `apps/` with a `build_parser` is checked.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

APPS = sorted(
    path.stem for path in (PROJECT_ROOT / "apps").glob("*.py") if path.stem != "__init__"
)

_PROBE = """
import contextlib, io, json, sys, time
start = time.perf_counter()
import apps.{name} as app
if not hasattr(app, "build_parser"):
    print(json.dumps({{"parser": False}}))
    sys.exit(0)
text = io.StringIO()
with contextlib.redirect_stdout(text):
    try:
        app.build_parser().parse_args(["--help"])
    except SystemExit:
        pass
print(json.dumps({{
    "parser": True,
    "help": text.getvalue(),
    "seconds": time.perf_counter() - start,
    "heavy": sorted(name for name in ("tensorflow", "keras") if name in sys.modules),
}}))
"""


def test_every_app_module_is_checked():
    assert {"export", "make_synthetic_corpus", "train_savee_crosslang", "tune"} <= set(APPS)


@pytest.mark.parametrize("name", APPS)
def test_help_imports_no_tensorflow(name):
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(name=name)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["parser"]:
        pytest.skip(f"apps/{name}.py has no build_parser")
    assert report["heavy"] == [], (
        f"apps.{name}: importing the app and building its parser imported {report['heavy']} "
        f"({report['seconds']:.1f} s); import TensorFlow inside the functions that train"
    )
    assert report["help"].startswith("usage: ")
    assert "(default: None)" not in report["help"]
    assert "(default: False)" not in report["help"]
