"""Fixtures shared by the whole test suite.

Each test package keeps its own fixtures in its own `conftest.py`; only what
several packages need lives here.
"""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(
    os.environ.get("SER_KERAS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real corpora folder (../shared/data); skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (set SER_KERAS_SHARED_DATA)")
    return SHARED_DATA


def pytest_configure(config):
    """Splits the CPU into 2 logical devices before TensorFlow starts, so
    tf.distribute tests (MirroredStrategy over 2 replicas) run in-process."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:  # TensorFlow was already initialised by a plugin.
        pass
