import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.training.contrastive import (
    MIN_SAMPLES_PER_CLASS,
    GE2EContrastiveLoss,
    ge2e_contrastive_loss,
)


def _reference(embeddings, labels, num_classes, w, b, min_samples, reduction="sum"):
    """Eq. 3-6 written out with loops over the retained emotions and their samples."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    retained = [k for k in range(num_classes) if np.sum(labels == k) >= min_samples]
    if not retained:
        return 0.0
    centroids = {k: x[labels == k].mean(axis=0) for k in retained}  # eq. 4
    total, count = 0.0, 0
    for j in retained:
        for x_ji in x[labels == j]:
            similarity = {
                k: w * np.dot(x_ji, c) / (np.linalg.norm(x_ji) * np.linalg.norm(c)) + b
                for k, c in centroids.items()
            }  # eq. 3
            logits = np.array([similarity[k] for k in retained])
            total += -(similarity[j] - np.log(np.sum(np.exp(logits))))  # eq. 5
            count += 1
    return total if reduction == "sum" else total / count


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, -1, 3, 3, 3], dtype=np.int32)
    embeddings = rng.normal(size=(labels.size, 6)).astype("float32")
    return embeddings, labels


def _loss(*args, **kwargs):
    return float(keras.ops.convert_to_numpy(ge2e_contrastive_loss(*args, **kwargs)))


def test_paper_minimum_is_more_than_five_samples():
    assert MIN_SAMPLES_PER_CLASS == 6


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("min_samples", [1, 3])
def test_matches_equations_3_to_6(reduction, min_samples):
    embeddings, labels = _batch()
    expected = _reference(embeddings, labels, 4, 7.0, -2.0, min_samples, reduction)
    got = _loss(embeddings, labels, 4, 7.0, -2.0, min_samples, reduction)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got > 0


def test_emotions_below_the_minimum_and_unlabelled_samples_are_left_out():
    embeddings, labels = _batch()
    base = _loss(embeddings, labels, 4, 10.0, -5.0, min_samples_per_class=3)
    changed = embeddings.copy()
    changed[labels == 2] = 100.0  # emotion 2 has 2 samples: below the minimum of 3
    changed[labels == -1] = -7.0  # no label
    assert _loss(changed, labels, 4, 10.0, -5.0, min_samples_per_class=3) == pytest.approx(
        base, rel=1e-6
    )
    changed[labels == 3] = 100.0  # a retained emotion: the loss moves
    assert _loss(changed, labels, 4, 10.0, -5.0, min_samples_per_class=3) != pytest.approx(base)


def test_one_or_no_retained_emotion_gives_exactly_zero():
    embeddings, labels = _batch()
    assert _loss(embeddings, labels, 4, 10.0, -5.0, min_samples_per_class=4) == 0.0
    assert _loss(embeddings, labels, 4, 10.0, -5.0, min_samples_per_class=50) == 0.0
    assert _loss(embeddings, np.full(13, -1), 4, 10.0, -5.0, reduction="mean") == 0.0


def test_invariant_to_the_scale_of_the_embeddings():
    embeddings, labels = _batch()
    first = _loss(embeddings, labels, 4, 10.0, -5.0, min_samples_per_class=2)
    second = _loss(3.0 * embeddings, labels, 4, 10.0, -5.0, min_samples_per_class=2)
    assert first == pytest.approx(second, rel=1e-5)


def test_compact_classes_cost_less_than_mixed_ones():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 6).astype(np.int32)
    centres = np.eye(3, 8, dtype="float32") * 5
    compact = centres[labels] + 0.1 * rng.normal(size=(18, 8)).astype("float32")
    mixed = rng.normal(size=(18, 8)).astype("float32")
    assert _loss(compact, labels, 3, 10.0, -5.0) < _loss(mixed, labels, 3, 10.0, -5.0)


def test_gradients_are_finite_with_zero_and_unlabelled_embeddings():
    embeddings, labels = _batch()
    embeddings[0] = 0.0
    variable = tf.Variable(embeddings)
    with tf.GradientTape() as tape:
        loss = ge2e_contrastive_loss(variable, labels, 4, 10.0, -5.0, min_samples_per_class=2)
    gradient = tape.gradient(loss, variable).numpy()
    assert np.all(np.isfinite(gradient))
    np.testing.assert_array_equal(gradient[labels == -1], 0.0)


def test_layer_has_learnable_w_and_b_with_ge2e_initial_values():
    layer = GE2EContrastiveLoss(4, min_samples_per_class=2)
    embeddings, labels = _batch()
    value = keras.ops.convert_to_numpy(layer(embeddings, labels))
    assert float(layer.similarity_scale.numpy()) == 10.0
    assert float(layer.similarity_bias.numpy()) == -5.0
    assert {w.name for w in layer.trainable_weights} == {"similarity_scale", "similarity_bias"}
    np.testing.assert_allclose(value, _reference(embeddings, labels, 4, 10.0, -5.0, 2), rtol=1e-5)
    # w >= 0 (GE2E): the constraint clips a negative update.
    assert float(layer.similarity_scale.constraint(-3.0)) == 0.0
    clone = GE2EContrastiveLoss.from_config(layer.get_config())
    assert (clone.num_classes, clone.min_samples_per_class, clone.reduction) == (4, 2, "sum")


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "min_samples_per_class": 0}, "min_samples_per_class"),
        ({"num_classes": 3, "reduction": "max"}, "reduction"),
        ({"num_classes": 3, "initial_scale": -1.0}, "initial_scale"),
    ],
)
def test_bad_arguments_are_rejected(arguments, expected):
    with pytest.raises(ValueError, match=expected):
        GE2EContrastiveLoss(**arguments)
