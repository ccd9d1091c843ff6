"""Keras metrics for labels with gaps: unweighted accuracy (UA) and masked accuracy.

Multi-task and semi-supervised batches mix samples with and without a label
for a task; those without carry the label `-1` and are ignored here. Both
metrics keep their state in `add_variable` variables with `sum` aggregation,
so they update inside a compiled `train_step`/`test_step` and sum correctly
across replicas under `tf.distribute` strategies. Tracked by a model, UA
appears in the history as e.g. `val_emotion_ua`, a valid checkpoint monitor
and KerasTuner objective (`keras_tuner.Objective("val_emotion_ua", "max")`).

The NumPy scores used for reports live in `ser_keras.evaluation.metrics`;
these metrics agree with them.

Reference:
    Fu et al., "An end-to-end multitask learning model to improve speech
    emotion recognition" (EUSIPCO 2020), Section 4.1 (WA and UA).
"""

from __future__ import annotations

import keras
from keras import ops

from ser_keras.utils.validation import positive_int


def _labels_and_predictions(y_true, y_pred):
    """Flattens `y_true` to int32 `[B]` and turns probabilities into int32 class ids `[B]`."""
    y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) < 2:
        raise ValueError(
            "`y_pred` must be class probabilities [batch, num_classes]; "
            f"received shape {tuple(y_pred.shape)}."
        )
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    predicted = ops.reshape(predicted, (-1,))
    return y_true, predicted


def _sample_weights(y_true, sample_weight, dtype):
    """Weight per sample: 0 where the label is missing (-1), else `sample_weight` (or 1)."""
    weights = ops.cast(ops.greater_equal(y_true, 0), dtype)
    if sample_weight is not None:
        weights = weights * ops.reshape(ops.cast(sample_weight, dtype), (-1,))
    return weights


@keras.saving.register_keras_serializable(package="ser_keras")
class UnweightedAccuracy(keras.metrics.Metric):
    """Unweighted accuracy (UA): the mean of per-class recall, ignoring label -1.

    Accumulates a `[num_classes, num_classes]` confusion matrix (rows = true
    class, columns = arg-max prediction) over the batches seen since the last
    `reset_state()`; the result averages the recall of the classes that have
    at least one labelled sample (0.0 before any labelled sample).

    Args:
        num_classes: Number of classes of the task.
        name: Metric name; the default `"ua"` becomes `emotion_ua` /
            `val_emotion_ua` when a multi-task model prefixes the task.
        dtype: Dtype of the accumulated counts and result (default float32).

    Example:
    ```python
    metric = UnweightedAccuracy(num_classes=3)
    metric.update_state([0, 1, 2, -1], [[.9, .1, 0], [.2, .7, .1], [.6, .3, .1], [1, 0, 0]])
    metric.result()  # (1 + 1 + 0) / 3 = 0.667
    ```

    Reference:
        Fu et al., EUSIPCO 2020, Section 4.1 (unweighted accuracy).
    """

    def __init__(self, num_classes, name="ua", dtype=None, **kwargs):
        num_classes = positive_int("num_classes", num_classes)
        super().__init__(name=name, dtype=dtype or "float32", **kwargs)
        self.num_classes = num_classes
        self.confusion = self.add_variable(
            shape=(num_classes, num_classes),
            initializer="zeros",
            dtype=self.dtype,
            aggregation="sum",
            name="confusion",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: `y_true` int `[B]` or `[B, 1]` (-1 = no label), `y_pred` `[B, C]`."""
        y_true, predicted = _labels_and_predictions(y_true, y_pred)
        weights = _sample_weights(y_true, sample_weight, self.dtype)
        # one_hot of a masked (-1 -> 0) label times a zero weight adds nothing.
        true_one_hot = ops.one_hot(ops.maximum(y_true, 0), self.num_classes, dtype=self.dtype)
        predicted_one_hot = ops.one_hot(predicted, self.num_classes, dtype=self.dtype)
        batch_confusion = ops.matmul(
            ops.transpose(true_one_hot * weights[:, None]), predicted_one_hot
        )
        self.confusion.assign_add(batch_confusion)

    def result(self):
        confusion = ops.convert_to_tensor(self.confusion)
        support = ops.sum(confusion, axis=1)
        has_support = ops.cast(ops.greater(support, 0), self.dtype)
        recall = ops.divide_no_nan(ops.diagonal(confusion), support)
        num_present = ops.sum(has_support)
        return ops.divide_no_nan(ops.sum(recall * has_support), num_present)

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), dtype=self.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes})
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class MaskedAccuracy(keras.metrics.Metric):
    """Accuracy (WA) of the arg-max prediction over the samples whose label is not -1.

    Args:
        name: Metric name; `"accuracy"` becomes `emotion_accuracy` /
            `val_emotion_accuracy` when a multi-task model prefixes the task.
        dtype: Dtype of the accumulated counts and result (default float32).
    """

    def __init__(self, name="accuracy", dtype=None, **kwargs):
        super().__init__(name=name, dtype=dtype or "float32", **kwargs)
        self.correct = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, aggregation="sum", name="correct"
        )
        self.total = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, aggregation="sum", name="total"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: `y_true` int `[B]` or `[B, 1]` (-1 = no label), `y_pred` `[B, C]`."""
        y_true, predicted = _labels_and_predictions(y_true, y_pred)
        weights = _sample_weights(y_true, sample_weight, self.dtype)
        matches = ops.cast(ops.equal(y_true, predicted), self.dtype)
        self.correct.assign_add(ops.sum(matches * weights))
        self.total.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(
            ops.convert_to_tensor(self.correct), ops.convert_to_tensor(self.total)
        )

    def reset_state(self):
        self.correct.assign(ops.zeros((), dtype=self.dtype))
        self.total.assign(ops.zeros((), dtype=self.dtype))
