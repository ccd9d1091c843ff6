"""Fixtures of the tuning tests."""

import keras
import pytest
import tensorflow as tf


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def _eager_steps():
    """Runs the models' train and test steps eagerly in these tests.

    Every trial builds a new model, whose first `fit` traces its steps: on a
    2-core CPU tracing took 2-3 times longer than running the few batches of
    these tests eagerly (and the AAE's four optimizers make its step the
    longest to trace). The traced steps are tested with the models
    (tests/models, tests/training) and by the app tests (tests/apps/test_tune.py).
    """
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)
