"""Keeps TensorFlow's CUDA start-up noise off a CPU-only machine's terminal.

On a machine without an NVIDIA driver, TensorFlow's native code writes, at
import and at the first device placement, lines such as

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

straight to file descriptor 2, before `TF_CPP_MIN_LOG_LEVEL` applies (measured
with TF 2.21: no environment variable silences them). They look like errors
and are not. `quiet_native_logs()` passes everything written to descriptor 2
through a filter that drops exactly these lines, and only when the machine has
no NVIDIA driver (`/dev/nvidiactl` absent); on a GPU machine the lines carry
information and are kept. Every other line, Python's included, goes through
unchanged and in order.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

# Lines TensorFlow writes on a machine without a GPU driver.
CPU_ONLY_NOISE = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called"),
    re.compile(r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine"),
    re.compile(r"cuda_platform\.cc:\d+\] failed call to cuInit"),
    re.compile(r"cuda_executor\.cc:\d+\] .*(?:kernel driver does not appear|cuInit)"),
)


def has_nvidia_driver() -> bool:
    """Whether an NVIDIA driver is loaded (its control device exists)."""
    return os.path.exists("/dev/nvidiactl")


def _is_noise(line: bytes) -> bool:
    text = line.decode("utf-8", "replace")
    return any(pattern.search(text) for pattern in CPU_ONLY_NOISE)


@contextlib.contextmanager
def quiet_native_logs(enabled: bool | None = None):
    """Drops TensorFlow's CPU-only CUDA start-up lines from stderr inside the block.

    Args:
        enabled: Filter or not; None (default) filters only on a machine
            without an NVIDIA driver.

    Yields:
        Nothing; on leaving, descriptor 2 is restored and every pending line
        has been written.
    """
    if enabled is None:
        enabled = not has_nvidia_driver()
    try:
        original = os.dup(2)
    except OSError:  # no descriptor 2 (e.g. a daemon): nothing to filter
        enabled = False
    if not enabled:
        yield
        return
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward():
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not _is_noise(line))
                if kept:
                    os.write(original, kept)
        if pending and not _is_noise(pending):
            os.write(original, pending)

    thread = threading.Thread(target=forward, name="quiet_native_logs", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # closes the pipe's last write end: the thread drains and stops
        thread.join(timeout=5)
        os.close(original)
