import numpy as np
import tensorflow as tf

from ser_keras.training.losses import (
    masked_sparse_categorical_crossentropy,
    masked_sparse_categorical_crossentropy_sum,
)

PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.25, 0.25, 0.5]], dtype="float32"
)


def test_mean_over_labelled_samples_only():
    labels = np.array([0, -1, 2, -1])
    loss = masked_sparse_categorical_crossentropy(labels, PROBABILITIES)
    expected = -(np.log(0.7) + np.log(0.4)) / 2
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    # [batch, 1] labels give the same value.
    np.testing.assert_allclose(
        float(masked_sparse_categorical_crossentropy(labels[:, None], PROBABILITIES)),
        expected,
        rtol=1e-6,
    )


def test_all_unlabelled_batch_gives_exactly_zero_and_zero_gradients():
    logits = tf.Variable(np.log(PROBABILITIES))
    with tf.GradientTape() as tape:
        loss = masked_sparse_categorical_crossentropy(
            np.full(4, -1), tf.nn.softmax(logits), from_logits=False
        )
    gradient = tape.gradient(loss, logits).numpy()
    assert float(loss) == 0.0
    assert np.all(np.isfinite(gradient)) and np.all(gradient == 0.0)


def test_gradient_is_finite_with_saturated_probabilities_and_missing_labels():
    probabilities = tf.Variable([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with tf.GradientTape() as tape:
        loss = masked_sparse_categorical_crossentropy([2, -1], probabilities)
    gradient = tape.gradient(loss, probabilities).numpy()
    assert np.isfinite(float(loss)) and float(loss) > 10.0  # clipped, not inf
    assert np.all(np.isfinite(gradient)) and np.all(gradient[1] == 0.0)


def test_sample_weights_and_sum_count():
    labels = np.array([0, 1, 2, -1])
    weights = np.array([1.0, 0.0, 2.0, 5.0], dtype="float32")
    loss_sum, count = masked_sparse_categorical_crossentropy_sum(labels, PROBABILITIES, weights)
    np.testing.assert_allclose(float(loss_sum), -(np.log(0.7) + 2 * np.log(0.4)), rtol=1e-6)
    assert float(count) == 3.0
    np.testing.assert_allclose(
        float(masked_sparse_categorical_crossentropy(labels, PROBABILITIES, weights)),
        float(loss_sum) / 3.0,
        rtol=1e-6,
    )


def test_global_count_divides_the_replica_sum():
    labels = np.array([0, -1, 2, -1])
    loss_sum, _ = masked_sparse_categorical_crossentropy_sum(labels, PROBABILITIES)
    scaled = masked_sparse_categorical_crossentropy(labels, PROBABILITIES, global_count=8)
    np.testing.assert_allclose(float(scaled), float(loss_sum) / 8, rtol=1e-6)
    assert (
        float(masked_sparse_categorical_crossentropy(labels, PROBABILITIES, global_count=0)) == 0.0
    )


def test_from_logits_matches_probabilities():
    labels = np.array([1, 0, -1, 2])
    logits = np.log(PROBABILITIES) + 3.0
    np.testing.assert_allclose(
        float(masked_sparse_categorical_crossentropy(labels, logits, from_logits=True)),
        float(masked_sparse_categorical_crossentropy(labels, PROBABILITIES)),
        rtol=1e-5,
    )
