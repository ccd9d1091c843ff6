"""TensorFlow's CUDA start-up lines stay off a CPU-only machine's stderr."""

import subprocess
import sys

import pytest

from ser_keras.utils import native_logs

_CHILD = """
import sys
from ser_keras.utils.native_logs import quiet_native_logs
with quiet_native_logs({enabled}):
    import tensorflow as tf
    print(int(tf.constant(1) + 1), file=sys.stderr)
    print("python line", file=sys.stderr)
    import os
    os.write(2, b"native line\\n")
"""


def _stderr(enabled):
    return subprocess.run(
        [sys.executable, "-c", _CHILD.format(enabled=enabled)],
        capture_output=True, text=True, check=True, timeout=300,
    ).stderr


@pytest.mark.skipif(native_logs.has_nvidia_driver(), reason="a GPU machine keeps these lines")
def test_cuda_start_up_lines_are_dropped_and_everything_else_kept():
    unfiltered = _stderr(False)
    # The noise is real here: without the filter it reaches stderr.
    assert "cuInit" in unfiltered or "cudart_stub" in unfiltered
    filtered = _stderr(None)
    assert "cuInit" not in filtered and "cudart_stub" not in filtered
    assert "absl::InitializeLog" not in filtered
    lines = filtered.splitlines()
    assert lines.index("2") < lines.index("python line") < lines.index("native line")


def test_noise_patterns_match_only_the_known_lines():
    assert native_logs._is_noise(
        b"E0000 00:00:1796 4630 cuda_platform.cc:52] failed call to cuInit: INTERNAL"
    )
    assert native_logs._is_noise(
        b"I0000 00:00:1 4630 cudart_stub.cc:31] Could not find cuda drivers on your machine."
    )
    assert not native_logs._is_noise(b"error: --epochs must be at least 1. Received: 0")
    assert not native_logs._is_noise(b"E0000 some_op.cc:1] a real error")
