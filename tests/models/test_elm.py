"""Tests of ser_keras.models.elm.ExtremeLearningMachine."""

import numpy as np
import pytest

from ser_keras.models.elm import ExtremeLearningMachine


def _rings(count, seed):
    """Two concentric rings (not linearly separable) plus a third class in a corner."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    radius = np.where(labels == 0, 1.0, 2.5) + 0.15 * rng.standard_normal(count)
    angle = rng.uniform(0, 2 * np.pi, count)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    points[labels == 2] = [4.0, 4.0] + 0.3 * rng.standard_normal((np.sum(labels == 2), 2))
    return points, labels


def test_learns_a_nonlinear_problem_that_a_linear_readout_cannot():
    train_x, train_y = _rings(600, seed=0)
    test_x, test_y = _rings(300, seed=1)
    elm = ExtremeLearningMachine(num_hidden=100, seed=0).fit(train_x, train_y)
    assert np.mean(elm.predict(test_x) == test_y) > 0.95
    # The same least squares on the raw inputs (no hidden layer) fails on the rings.
    design = np.hstack([train_x, np.ones((len(train_x), 1))])
    weights = np.linalg.lstsq(design, np.eye(3)[train_y], rcond=None)[0]
    linear = np.argmax(np.hstack([test_x, np.ones((len(test_x), 1))]) @ weights, axis=1)
    assert np.mean(linear[test_y < 2] == test_y[test_y < 2]) < 0.8


def test_ridge_solutions_of_both_shapes_agree_with_the_closed_form():
    x, y = _rings(40, seed=2)
    for num_hidden in (10, 80):  # N >= L and N < L branches
        elm = ExtremeLearningMachine(num_hidden=num_hidden, regularization=3.0, seed=4).fit(x, y)
        hidden = elm._hidden(x)
        expected = np.linalg.solve(
            hidden.T @ hidden + np.eye(num_hidden) / 3.0, hidden.T @ np.eye(3)[y]
        )
        np.testing.assert_allclose(elm.output_weights, expected, atol=1e-8)
    exact = ExtremeLearningMachine(num_hidden=80, regularization=None, seed=4).fit(x, y)
    np.testing.assert_allclose(exact.decision_function(x), np.eye(3)[y], atol=1e-6)


def test_seeded_determinism_probabilities_and_save_load(tmp_path):
    x, y = _rings(200, seed=3)
    first = ExtremeLearningMachine(num_hidden=30, seed=7).fit(x, y)
    second = ExtremeLearningMachine(num_hidden=30, seed=7).fit(x, y)
    other = ExtremeLearningMachine(num_hidden=30, seed=8).fit(x, y)
    np.testing.assert_array_equal(first.decision_function(x), second.decision_function(x))
    assert not np.allclose(first.decision_function(x), other.decision_function(x))
    probabilities = first.predict_proba(x)
    assert probabilities.shape == (200, 3) and np.all(probabilities >= 0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(probabilities, axis=1), first.predict(x))
    path = first.save(tmp_path / "elm.npz")
    loaded = ExtremeLearningMachine.load(path)
    assert loaded.get_config() == first.get_config() and loaded.num_classes == 3
    np.testing.assert_array_equal(loaded.decision_function(x), first.decision_function(x))


def test_unlabelled_samples_are_ignored():
    x, y = _rings(100, seed=5)
    masked = y.copy()
    masked[:30] = -1
    with_gaps = ExtremeLearningMachine(num_hidden=20, seed=0).fit(x, masked)
    without = ExtremeLearningMachine(num_hidden=20, seed=0).fit(x[30:], y[30:])
    np.testing.assert_allclose(with_gaps.decision_function(x), without.decision_function(x))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"num_hidden": 0}, "num_hidden"),
        ({"activation": "softplus"}, "softplus"),
        ({"regularization": -1.0}, "regularization"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        ExtremeLearningMachine(**arguments)


def test_bad_data():
    elm = ExtremeLearningMachine(num_hidden=5)
    with pytest.raises(ValueError, match="not fitted"):
        elm.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no labelled"):
        elm.fit(np.zeros((3, 2)), np.array([-1, -1, -1]))
    with pytest.raises(ValueError, match="non-finite"):
        elm.fit(np.array([[np.nan, 1.0]]), np.array([0]))
    elm.fit(np.random.default_rng(0).normal(size=(10, 2)), np.arange(10) % 2)
    with pytest.raises(ValueError, match="input dims"):
        elm.predict(np.zeros((2, 3)))
