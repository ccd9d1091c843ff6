import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.layers.gating import (
    HARD_CONCRETE_BETA,
    HARD_CONCRETE_DELTA,
    HARD_CONCRETE_GAMMA,
    HardConcreteRouting,
    SoftmaxGate,
    hard_concrete_mean,
    hard_concrete_open_probability,
    hard_concrete_sample,
)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_paper_hyperparameters_are_the_defaults():
    assert (HARD_CONCRETE_BETA, HARD_CONCRETE_GAMMA, HARD_CONCRETE_DELTA) == (0.9, -0.1, 2.0)
    layer = HardConcreteRouting()
    assert (layer.beta, layer.gamma, layer.delta, layer.l0_penalty_weight) == (0.9, -0.1, 2.0, 0.0)


def test_softmax_gate_is_softmax_of_a_linear_map():
    selector = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    gate = SoftmaxGate(3)
    weights = keras.ops.convert_to_numpy(gate(selector))
    logits = selector @ keras.ops.convert_to_numpy(gate.kernel)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    assert gate.bias is None and len(gate.weights) == 1  # eq. 7: no bias
    clone = SoftmaxGate.from_config(gate.get_config())
    assert clone.num_experts == 3 and clone.use_bias is False


def test_softmax_gate_with_one_expert_gives_weight_one():
    gate = SoftmaxGate(1)
    weights = keras.ops.convert_to_numpy(gate(np.ones((4, 3), "float32")))
    np.testing.assert_array_equal(weights, np.ones((4, 1)))
    assert gate.weights == []  # no kernel that would never get a gradient


@pytest.mark.parametrize("value", [0, -2, 1.5, True])
def test_softmax_gate_rejects_bad_num_experts(value):
    with pytest.raises(ValueError, match=repr(value)):
        SoftmaxGate(value)


def test_hard_concrete_sample_matches_its_distribution():
    # Monte Carlo: P(xi > 0) is the closed form of Louizos et al. (eq. 12),
    # and P(xi = 1) = P(s > (1 - gamma) / (delta - gamma)).
    log_alpha = np.array([-1.0, 0.0, 1.5], dtype="float32")
    seed = keras.random.SeedGenerator(3)
    many = keras.ops.convert_to_numpy(
        hard_concrete_sample(np.tile(log_alpha, (20000, 1)), seed=seed)
    )
    assert many.shape == (20000, 3)
    assert many.min() >= 0.0 and many.max() <= 1.0
    open_probability = keras.ops.convert_to_numpy(hard_concrete_open_probability(log_alpha))
    np.testing.assert_allclose((many > 0).mean(axis=0), open_probability, atol=0.015)
    threshold = (1 - HARD_CONCRETE_GAMMA) / (HARD_CONCRETE_DELTA - HARD_CONCRETE_GAMMA)
    logit = math.log(threshold / (1 - threshold))
    expected_one = 1 - _sigmoid(HARD_CONCRETE_BETA * logit - log_alpha)
    np.testing.assert_allclose((many == 1).mean(axis=0), expected_one, atol=0.015)


def test_hard_concrete_mean_is_the_clipped_stretched_sigmoid():
    log_alpha = np.array([-10.0, 0.0, 10.0], dtype="float32")
    mean = keras.ops.convert_to_numpy(hard_concrete_mean(log_alpha))
    np.testing.assert_allclose(mean, [0.0, 0.5 * 2.1 - 0.1, 1.0], atol=1e-6)


def test_hard_concrete_sample_is_differentiable():
    log_alpha = tf.Variable([0.0, 0.5])
    with tf.GradientTape() as tape:
        gates = hard_concrete_sample(log_alpha, seed=keras.random.SeedGenerator(1))
        total = tf.reduce_sum(gates)
    gradient = tape.gradient(total, log_alpha).numpy()
    assert np.all(np.isfinite(gradient))


def test_routing_sums_transitions_with_deterministic_gates_at_inference():
    rng = np.random.default_rng(0)
    transitions = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    layer = HardConcreteRouting(
        log_alpha_initializer=keras.initializers.RandomNormal(stddev=2.0, seed=1)
    )
    out, gates = layer(transitions, training=False, return_gates=True)
    gates = keras.ops.convert_to_numpy(gates)
    assert gates.shape == (3, 4)
    expected_gates = np.clip(
        _sigmoid(keras.ops.convert_to_numpy(layer.log_alpha)) * 2.1 - 0.1, 0.0, 1.0
    )
    np.testing.assert_allclose(gates, expected_gates, rtol=1e-5, atol=1e-6)
    expected = np.einsum("ij,bijd->bid", gates, transitions)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), expected, rtol=1e-5, atol=1e-5)
    again = keras.ops.convert_to_numpy(layer(transitions, training=False))
    np.testing.assert_array_equal(again, keras.ops.convert_to_numpy(out))
    assert layer.losses == []


def test_routing_samples_in_training_and_adds_the_l0_penalty():
    transitions = np.ones((2, 2, 3, 4), dtype="float32")
    layer = HardConcreteRouting(l0_penalty_weight=0.5, seed=0)
    first = keras.ops.convert_to_numpy(layer(transitions, training=True))
    assert len(layer.losses) == 1
    expected = 0.5 * np.sum(
        _sigmoid(keras.ops.convert_to_numpy(layer.log_alpha) - 0.9 * math.log(0.1 / 2.0))
    )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.losses[0]), expected, rtol=1e-5)
    draws = [first] + [
        keras.ops.convert_to_numpy(layer(transitions, training=True)) for _ in range(3)
    ]
    assert any(not np.allclose(draws[0], other) for other in draws[1:])
    # The penalty pushes log alpha down (fewer open connections).
    optimizer = keras.optimizers.SGD(learning_rate=1.0)
    before = keras.ops.convert_to_numpy(layer.log_alpha).copy()
    with tf.GradientTape() as tape:
        penalty = layer.expected_l0()
    gradients = tape.gradient([penalty], [layer.log_alpha])
    optimizer.apply_gradients(zip(gradients, [layer.log_alpha], strict=True))
    assert np.all(keras.ops.convert_to_numpy(layer.log_alpha) < before)


def test_routing_config_round_trip():
    layer = HardConcreteRouting(beta=0.5, gamma=-0.2, delta=1.5, l0_penalty_weight=0.1, seed=4)
    clone = HardConcreteRouting.from_config(layer.get_config())
    assert (clone.beta, clone.gamma, clone.delta, clone.l0_penalty_weight, clone.seed) == (
        0.5,
        -0.2,
        1.5,
        0.1,
        4,
    )


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"beta": 0.0}, "beta"),
        ({"gamma": 0.1}, "gamma"),
        ({"delta": 1.0}, "delta"),
        ({"l0_penalty_weight": -1.0}, "l0_penalty_weight"),
    ],
)
def test_routing_rejects_bad_hyperparameters(arguments, expected):
    with pytest.raises(ValueError, match=expected):
        HardConcreteRouting(**arguments)


def test_routing_rejects_bad_input_shape():
    with pytest.raises(ValueError, match="num_outputs"):
        HardConcreteRouting()(np.ones((2, 3, 4), "float32"))
