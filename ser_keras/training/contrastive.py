"""GE2E-style supervised contrastive auxiliary loss (Wang et al., eq. 3-6).

For each batch, the representations that enter a classification tower are
L2-normalised; every emotion present in the batch with at least
`min_samples_per_class` samples gets a centroid (the mean of its samples'
normalised representations, eq. 4); the similarity of sample `x_ji` (emotion
`j`) to centroid `c_k` is the affine-transformed cosine

    S_ji,k = w * cos(x_ji, c_k) + b                      (eq. 3)

with learnable `w` and `b`, and each sample's loss is the cross-entropy of
its own emotion among the retained centroids

    L(x_ji) = -log(exp(S_ji,j) / sum_k exp(S_ji,k))      (eq. 5).

The auxiliary loss is `sum_ij L(x_ji)` (eq. 6: `L_tot = L_CE + alpha *
sum_ij L(x_ji)`); `reduction="mean"` divides by the number of samples that
entered it instead. Samples without a label (-1), and samples of emotions
with fewer than `min_samples_per_class` samples in the batch, are left out
(the paper keeps "the emotions with more than five samples in each batch", so
the default minimum is 6). With fewer than two retained emotions the loss is
exactly 0.

Initial values `w = 10`, `b = -5` and the constraint `w >= 0` are those of
GE2E (Wan et al.); Wang et al. give none. Eq. 4 averages all samples of an
emotion, the sample itself included (GE2E excludes it from its own centroid);
we follow eq. 4.

Reference:
    Z. Wang, Q. Meng, H. Lan, X. Zhang, K. Guo, A. Gupta, "Multilingual
    Speech Emotion Recognition With Multi-Gating Mechanism and Neural
    Architecture Search", Section 4.2, eq. 3-6.
    L. Wan, Q. Wang, A. Papir, I. L. Moreno, "Generalized End-to-End Loss
    for Speaker Verification", ICASSP 2018.
"""

from __future__ import annotations

import keras
from keras import ops

from ser_keras.utils.validation import positive_int

# Paper: "we only retained the emotions with more than five samples in each batch".
MIN_SAMPLES_PER_CLASS = 6
REDUCTIONS = ("sum", "mean")

_NORM_EPSILON = 1e-12
# Logit of a centroid that is not retained (finite: 0 * it stays 0).
_EXCLUDED_LOGIT = -1e9


def _check_options(num_classes, min_samples_per_class, reduction):
    positive_int("num_classes", num_classes)
    positive_int("min_samples_per_class", min_samples_per_class)
    if reduction not in REDUCTIONS:
        raise ValueError(f"`reduction` must be one of {REDUCTIONS}; received {reduction!r}.")


def _l2_normalize(values):
    norm = ops.sqrt(ops.sum(ops.square(values), axis=-1, keepdims=True))
    return values / ops.maximum(norm, _NORM_EPSILON)


def ge2e_similarity(embeddings, labels, num_classes, scale, bias, min_samples_per_class):
    """Similarity matrix of eq. 3 and the masks of the retained samples and emotions.

    Args:
        embeddings: `[batch, features]` representations (normalised here).
        labels: int `[batch]` (or `[batch, 1]`), -1 = no label.
        num_classes: Number of emotion classes.
        scale: `w` of eq. 3 (scalar).
        bias: `b` of eq. 3 (scalar).
        min_samples_per_class: Emotions with fewer samples in the batch are left out.

    Returns:
        `(similarity, kept, retained)`: float32 `[batch, num_classes]` (the
        logits of eq. 5; non-retained emotions get a large negative value),
        bool `[batch]` (samples entering the loss), bool `[num_classes]`
        (emotions with a centroid).
    """
    embeddings = ops.cast(embeddings, "float32")
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    valid = ops.greater_equal(labels, 0)
    safe_labels = ops.where(valid, labels, ops.zeros_like(labels))
    members = ops.one_hot(safe_labels, num_classes, dtype="float32")
    members = members * ops.expand_dims(ops.cast(valid, "float32"), -1)  # [B, C]
    counts = ops.sum(members, axis=0)  # [C]
    retained = ops.greater_equal(counts, float(min_samples_per_class))
    kept = ops.logical_and(valid, ops.take(retained, safe_labels, axis=0))

    normalised = _l2_normalize(embeddings)  # x_ji with L2 normalisation
    centroids = ops.divide_no_nan(
        ops.matmul(ops.transpose(members), normalised), ops.expand_dims(counts, -1)
    )  # eq. 4, [C, D]
    cosine = ops.matmul(normalised, ops.transpose(_l2_normalize(centroids)))  # [B, C]
    similarity = ops.cast(scale, "float32") * cosine + ops.cast(bias, "float32")
    similarity = ops.where(
        ops.expand_dims(retained, 0), similarity, ops.full_like(similarity, _EXCLUDED_LOGIT)
    )
    return similarity, kept, retained


def ge2e_contrastive_loss(
    embeddings,
    labels,
    num_classes,
    scale,
    bias,
    min_samples_per_class=MIN_SAMPLES_PER_CLASS,
    reduction="sum",
):
    """The contrastive auxiliary loss of a batch, `sum_ij L(x_ji)` (eq. 3-6 without alpha).

    Args:
        embeddings: `[batch, features]` representations (the input of the
            classification tower); L2-normalised here.
        labels: int `[batch]` (or `[batch, 1]`); -1 marks a sample without a
            label (e.g. a sample of another language).
        num_classes: Number of emotion classes of `labels`.
        scale: `w` of eq. 3 (a scalar tensor or variable, >= 0).
        bias: `b` of eq. 3.
        min_samples_per_class: Emotions with fewer labelled samples in the
            batch are left out (their samples and their centroid).
        reduction: `"sum"` (eq. 6) or `"mean"` over the samples that entered.

    Returns:
        Scalar float32; 0 when no sample qualifies or a single emotion does.
    """
    _check_options(num_classes, min_samples_per_class, reduction)
    similarity, kept, _ = ge2e_similarity(
        embeddings, labels, num_classes, scale, bias, min_samples_per_class
    )
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    safe_labels = ops.where(kept, labels, ops.zeros_like(labels))
    log_probabilities = ops.log_softmax(similarity, axis=-1)
    own = ops.take_along_axis(log_probabilities, ops.expand_dims(safe_labels, -1), axis=-1)
    per_sample = ops.where(kept, -ops.squeeze(own, -1), ops.zeros_like(own[:, 0]))
    total = ops.sum(per_sample)
    if reduction == "mean":
        return ops.divide_no_nan(total, ops.sum(ops.cast(kept, "float32")))
    return total


@keras.saving.register_keras_serializable(package="ser_keras")
class GE2EContrastiveLoss(keras.layers.Layer):
    """The contrastive auxiliary loss with its learnable `w` and `b` (eq. 3-6).

    Holds `similarity_scale` (`w`, initial 10, constrained >= 0) and
    `similarity_bias` (`b`, initial -5); calling it on a batch of
    representations and their labels returns the scalar loss (without the
    weight `alpha`, which the model applies).

    Args:
        num_classes: Number of emotion classes of the labels.
        min_samples_per_class: Emotions with fewer samples in a batch are left
            out (6: the paper's "more than five").
        reduction: `"sum"` (eq. 6) or `"mean"`.
        initial_scale: Initial `w` (GE2E's 10).
        initial_bias: Initial `b` (GE2E's -5).
        **kwargs: Standard `keras.layers.Layer` arguments.

    Call arguments:
        embeddings: `[batch, features]`.
        labels: int `[batch]`, -1 = no label.

    Returns:
        Scalar float32 loss.

    Reference:
        Wang et al., Section 4.2; Wan et al., ICASSP 2018 (GE2E).
    """

    def __init__(
        self,
        num_classes,
        min_samples_per_class=MIN_SAMPLES_PER_CLASS,
        reduction="sum",
        initial_scale=10.0,
        initial_bias=-5.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_options(num_classes, min_samples_per_class, reduction)
        if float(initial_scale) < 0:
            raise ValueError(f"`initial_scale` must be >= 0; received {initial_scale!r}.")
        self.num_classes = int(num_classes)
        self.min_samples_per_class = int(min_samples_per_class)
        self.reduction = reduction
        self.initial_scale = float(initial_scale)
        self.initial_bias = float(initial_bias)

    def build(self, input_shape=None):
        self.similarity_scale = self.add_weight(
            name="similarity_scale",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_scale),
            constraint=keras.constraints.NonNeg(),
            dtype="float32",
        )
        self.similarity_bias = self.add_weight(
            name="similarity_bias",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_bias),
            dtype="float32",
        )

    def call(self, embeddings, labels):
        return ge2e_contrastive_loss(
            embeddings,
            labels,
            self.num_classes,
            self.similarity_scale,
            self.similarity_bias,
            min_samples_per_class=self.min_samples_per_class,
            reduction=self.reduction,
        )

    def compute_output_shape(self, *args, **kwargs):
        return ()

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "min_samples_per_class": self.min_samples_per_class,
                "reduction": self.reduction,
                "initial_scale": self.initial_scale,
                "initial_bias": self.initial_bias,
            }
        )
        return config
