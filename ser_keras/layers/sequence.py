"""Layers over padded frame sequences: a padding mask, masked statistics and attention pooling.

A front-end such as `ser_keras.features.logmel.LogMel` pads every utterance
to a fixed number of frames with a constant value. These layers let a model
ignore that padding:

* `FrameMask`: the boolean mask of the frames that are not padding;
* `MaskedStatisticsPooling`: the mean and standard deviation of every
  feature over the valid frames (utterance-level functionals);
* `LastStateAttention`: attention pooling of a sequence with one query, the
  recurrent encoder's last state (Wang et al., eq. 1-2).

They are registered with Keras under `ser_keras>FrameMask`,
`ser_keras>MaskedStatisticsPooling` and `ser_keras>LastStateAttention` (their
names since they were defined in `ser_keras.models.multigate`, so saved
models keep loading).

Reference:
    Z. Wang, Q. Meng, H. Lan, X. Zhang, K. Guo, A. Gupta, "Multilingual
    Speech Emotion Recognition With Multi-Gating Mechanism and Neural
    Architecture Search", Section 4.1.
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ser_keras")
class FrameMask(keras.layers.Layer):
    """Boolean `[batch, frames]` mask of the frames that are not padding.

    A frame is padding when every value equals `pad_value` (the LogMel
    front-end's padding beyond an utterance's length). The first frame is
    always valid, so no sequence is empty.

    Args:
        pad_value: The padding value; None marks every frame valid.
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    def __init__(self, pad_value=-1.0, **kwargs):
        super().__init__(**kwargs)
        self.pad_value = None if pad_value is None else float(pad_value)

    def call(self, features):
        shape = ops.shape(features)
        if self.pad_value is None:
            return ops.ones((shape[0], shape[1]), dtype="bool")
        valid = ops.any(ops.not_equal(features, self.pad_value), axis=-1)
        first = ops.expand_dims(ops.equal(ops.arange(shape[1]), 0), 0)
        return ops.logical_or(valid, first)

    def compute_output_spec(self, features):
        return keras.KerasTensor(features.shape[:2], dtype="bool")

    def get_config(self):
        config = super().get_config()
        config.update({"pad_value": self.pad_value})
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class MaskedStatisticsPooling(keras.layers.Layer):
    """Mean and standard deviation of every feature over the valid frames.

    Call arguments:
        inputs: `[batch, frames, features]`.
        mask: Optional boolean `[batch, frames]`.

    Returns:
        `[batch, 2 * features]`: the means, then the standard deviations.
    """

    def call(self, inputs, mask=None):
        if mask is None:
            weights = ops.ones(ops.shape(inputs)[:2], dtype=inputs.dtype)
        else:
            weights = ops.cast(mask, inputs.dtype)
        weights = ops.expand_dims(weights, -1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        mean = ops.sum(inputs * weights, axis=1) / count
        variance = ops.sum(ops.square(inputs - ops.expand_dims(mean, 1)) * weights, axis=1) / count
        return ops.concatenate([mean, ops.sqrt(variance + 1e-8)], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


@keras.saving.register_keras_serializable(package="ser_keras")
class LastStateAttention(keras.layers.Layer):
    """Attention over a sequence with one query vector (eq. 1-2).

    `s = softmax(q W_Q (H W_K)^T / sqrt(k)) H W_V`: the query is the
    BiLSTM's last hidden state `z_hat` (size `k`), the keys and values the
    BiLSTM's whole output sequence `H`; masked frames get no weight.

    Args:
        units: Size of the projections (the attention "hidden size").
        kernel_initializer: Initializer of `W_Q`, `W_K`, `W_V`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Call arguments:
        query: `[batch, k]`.
        sequence: `[batch, frames, features]`.
        mask: Optional boolean `[batch, frames]`.

    Returns:
        `[batch, units]`.

    Reference:
        Wang et al., Section 4.1, eq. 1-2.
    """

    def __init__(self, units, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be a positive integer; received {units!r}.")
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, query_shape, sequence_shape):
        if query_shape[-1] is None or sequence_shape[-1] is None:
            raise ValueError(
                "LastStateAttention needs known feature sizes; received query shape "
                f"{tuple(query_shape)} and sequence shape {tuple(sequence_shape)}."
            )
        self.query_size = int(query_shape[-1])
        features = int(sequence_shape[-1])
        self.query_kernel = self.add_weight(
            name="query_kernel",
            shape=(self.query_size, self.units),
            initializer=self.kernel_initializer,
        )
        self.key_kernel = self.add_weight(
            name="key_kernel", shape=(features, self.units), initializer=self.kernel_initializer
        )
        self.value_kernel = self.add_weight(
            name="value_kernel", shape=(features, self.units), initializer=self.kernel_initializer
        )

    def call(self, query, sequence, mask=None):
        projected_query = ops.matmul(query, self.query_kernel)
        keys = ops.matmul(sequence, self.key_kernel)
        values = ops.matmul(sequence, self.value_kernel)
        scores = ops.einsum("bd,btd->bt", projected_query, keys) / math.sqrt(self.query_size)
        if mask is not None:
            valid = ops.cast(mask, "bool")
            scores = ops.where(valid, scores, ops.full_like(scores, -1e9))
        weights = ops.softmax(scores, axis=-1)
        if mask is not None:
            weights = weights * ops.cast(valid, weights.dtype)
        return ops.einsum("bt,btd->bd", weights, values)

    def compute_output_shape(self, query_shape, sequence_shape):
        return (query_shape[0], self.units)

    def compute_mask(self, *args, **kwargs):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
