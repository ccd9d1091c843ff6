"""Masked losses for labels with gaps (-1 = the sample has no label for the task).

Multi-task, cross-corpus and semi-supervised batches mix samples that carry a
label for a task with samples that do not. The loss of a task averages over
the samples that have its label only; a batch without any gives exactly 0
(and zero gradients), never NaN.

Scaling under `tf.distribute`: each replica sees a part of the global batch.
`masked_sparse_categorical_crossentropy_sum` returns the replica's summed loss
and its number of labelled samples; dividing the sum by the number of labelled
samples of the *global* batch (the replicas' counts all-reduced with SUM, passed
as `global_count`) gives per-replica values whose sum across replicas is the
exact global masked mean, so the SUM all-reduce of gradients that Keras
optimizers perform yields the gradient of the global mean. (Averaging each
replica's own mean instead would weight samples unequally when replicas hold
different numbers of labels.) `MultiTaskModel.train_step` does this.
"""

from __future__ import annotations

from keras import ops


def masked_sparse_categorical_crossentropy_sum(
    y_true, y_pred, sample_weight=None, from_logits=False, label_smoothing=0.0
):
    """Summed sparse categorical cross-entropy over the labelled samples.

    Args:
        y_true: Integer labels `[batch]` or `[batch, 1]`; -1 (any negative
            value) marks a sample without a label.
        y_pred: Class probabilities `[batch, num_classes]` (or logits with
            `from_logits=True`).
        sample_weight: Optional per-sample weights `[batch]`; a labelled sample
            counts with its weight in both the sum and the count.
        from_logits: Whether `y_pred` holds logits instead of probabilities.
        label_smoothing: Share `e` of the target spread evenly over the
            classes: the loss is `(1 - e) * CE(label) + e * mean_k(-log p_k)`.

    Returns:
        `(loss_sum, count)`: scalar tensors in `y_pred`'s float dtype, the sum
        of the (weighted) per-sample losses of the labelled samples and their
        (weighted) number.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) != 2:
        raise ValueError(
            "`y_pred` must be [batch, num_classes] probabilities or logits; "
            f"received shape {tuple(y_pred.shape)}."
        )
    dtype = y_pred.dtype
    y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    labelled = ops.greater_equal(y_true, 0)
    # Missing labels are replaced by class 0 for the computation and then
    # given weight 0; the probabilities are clipped inside the op, so every
    # per-sample loss (and its gradient) is finite.
    safe_labels = ops.where(labelled, y_true, ops.zeros_like(y_true))
    per_sample = ops.sparse_categorical_crossentropy(
        safe_labels, y_pred, from_logits=from_logits, axis=-1
    )
    if label_smoothing:
        # The uniform part of the smoothed target: -mean_k log p_k, with the
        # probabilities clipped as the cross-entropy op clips them.
        if from_logits:
            log_probabilities = ops.log_softmax(y_pred, axis=-1)
        else:
            epsilon = 1e-7
            log_probabilities = ops.log(ops.clip(y_pred, epsilon, 1.0 - epsilon))
        uniform = -ops.mean(log_probabilities, axis=-1)
        per_sample = (1.0 - label_smoothing) * per_sample + label_smoothing * uniform
    weights = ops.cast(labelled, dtype)
    if sample_weight is not None:
        weights = weights * ops.reshape(ops.cast(sample_weight, dtype), (-1,))
    loss_sum = ops.sum(ops.where(labelled, per_sample, ops.zeros_like(per_sample)) * weights)
    return loss_sum, ops.sum(weights)


def masked_sparse_categorical_crossentropy(
    y_true, y_pred, sample_weight=None, from_logits=False, global_count=None
):
    """Mean sparse categorical cross-entropy over the labelled samples (0 if none).

    Args:
        y_true: Integer labels `[batch]` or `[batch, 1]`; -1 marks a missing label.
        y_pred: Class probabilities `[batch, num_classes]` (or logits with
            `from_logits=True`).
        sample_weight: Optional per-sample weights `[batch]`.
        from_logits: Whether `y_pred` holds logits.
        global_count: Optional number of labelled samples in the *global*
            batch under `tf.distribute` (see the module docstring); the
            replica's loss sum is divided by it instead of by the replica's
            own count.

    Returns:
        Scalar tensor: the loss sum divided by the (global) count of labelled
        samples, exactly 0 when that count is 0.
    """
    loss_sum, count = masked_sparse_categorical_crossentropy_sum(
        y_true, y_pred, sample_weight=sample_weight, from_logits=from_logits
    )
    if global_count is not None:
        count = ops.cast(global_count, loss_sum.dtype)
    return ops.divide_no_nan(loss_sum, count)
