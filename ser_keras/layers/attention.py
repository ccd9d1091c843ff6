"""Attention over time: multi-head self-attention and local-attention pooling.

Both layers take a sequence `[batch, time, features]` and accept a boolean
`[batch, time]` mask (passed explicitly or propagated by Keras masking) that
marks the valid frames; padded frames are never attended to and get no
pooling weight.

Reference:
    C. Fu, C. Liu, C. T. Ishi, H. Ishiguro, "An end-to-end multitask learning
    model to improve speech emotion recognition", EUSIPCO 2020 (eq. 1-4).
    S. Mirsamadi, E. Barsoum, C. Zhang, "Automatic speech emotion recognition
    using recurrent neural networks with local attention", ICASSP 2017.
"""

from __future__ import annotations

import keras
from keras import ops

from ser_keras.utils.validation import positive_int


def _check_sequence_shape(layer_name, input_shape):
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"{layer_name} expects inputs [batch, time, features] with a known feature "
            f"size; received shape {tuple(input_shape)}."
        )


@keras.saving.register_keras_serializable(package="ser_keras")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head scaled-dot-product self-attention over the time axis.

    Every frame attends to every (valid) frame of the same sequence with
    `num_heads` heads in parallel; the heads' outputs are concatenated and
    projected back to the input feature size by an output matrix `W`
    (Fu et al., eq. 1-2). Implemented with `keras.layers.MultiHeadAttention`
    (query, key and value projections with bias, output projection `W`).

    Args:
        num_heads: Number of attention heads (`N_head`; 16 in the paper).
        key_dim: Size of each head's query/key/value projection. `None` (the
            default) uses `features // num_heads`, so that the concatenated
            heads have the input's size (256 / 16 = 16 in the paper); the
            feature size must then be divisible by `num_heads`.
        dropout_rate: Dropout on the attention weights (0 in the paper).
        use_bias: Whether the projections have biases.
        kernel_initializer: Initializer of the projection matrices.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[batch, time, features]`.
        mask: Optional boolean `[batch, time]`, True on valid frames.
        training: Whether dropout is active.
        return_attention_scores: Also return the attention weights
            `[batch, num_heads, time, time]`.

    Returns:
        `[batch, time, features]` (and the scores when asked for). The mask
        is propagated unchanged.

    Reference:
        Fu et al., EUSIPCO 2020, Section 3.3, eq. 1-2.
    """

    def __init__(
        self,
        num_heads,
        key_dim=None,
        dropout_rate=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_heads = positive_int("num_heads", num_heads)
        key_dim = positive_int("key_dim", key_dim, allow_none=True)
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` must be in [0, 1); received {dropout_rate!r}.")
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.dropout_rate = float(dropout_rate)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True
        self.attention = None  # created in build(): the head size depends on the input.

    def build(self, input_shape):
        _check_sequence_shape(type(self).__name__, input_shape)
        features = int(input_shape[-1])
        key_dim = self.key_dim
        if key_dim is None:
            if features % self.num_heads:
                raise ValueError(
                    f"The feature size {features} is not divisible by num_heads="
                    f"{self.num_heads}; pass key_dim explicitly."
                )
            key_dim = features // self.num_heads
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=key_dim,
            dropout=self.dropout_rate,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="multi_head_attention",
        )
        self.attention.build(query_shape=input_shape, value_shape=input_shape)

    def call(self, inputs, mask=None, training=None, return_attention_scores=False):
        if mask is not None:
            mask = ops.cast(mask, "bool")
        return self.attention(
            inputs,
            inputs,
            query_mask=mask,
            value_mask=mask,
            training=training,
            return_attention_scores=return_attention_scores,
        )

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "dropout_rate": self.dropout_rate,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class LocalAttentionPooling(keras.layers.Layer):
    """Weighted average over time with weights from a trainable context vector.

    Each frame `H_i` gets the score `U . H_i`; a softmax over time turns the
    scores into weights `alpha_i` (eq. 3) and the output is the weighted
    average `sum_i alpha_i H_i` (eq. 4). Frames masked out get weight 0; a
    sequence without any valid frame pools to zeros (never NaN).

    Args:
        context_initializer: Initializer of the context vector `U`.
        context_regularizer: Optional regularizer of `U`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[batch, time, features]`.
        mask: Optional boolean `[batch, time]`, True on valid frames.
        return_attention_scores: Also return the weights `alpha`, `[batch, time]`.

    Returns:
        `[batch, features]` (and the weights when asked for).

    Reference:
        Fu et al., EUSIPCO 2020, Section 3.3, eq. 3-4; Mirsamadi et al.,
        ICASSP 2017 (local attention).
    """

    def __init__(self, context_initializer="glorot_uniform", context_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.context_initializer = keras.initializers.get(context_initializer)
        self.context_regularizer = keras.regularizers.get(context_regularizer)
        self.supports_masking = True

    def build(self, input_shape):
        _check_sequence_shape(type(self).__name__, input_shape)
        self.context = self.add_weight(
            name="context",
            shape=(int(input_shape[-1]),),
            initializer=self.context_initializer,
            regularizer=self.context_regularizer,
        )

    def call(self, inputs, mask=None, return_attention_scores=False):
        scores = ops.squeeze(ops.matmul(inputs, ops.expand_dims(self.context, -1)), axis=-1)
        if mask is None:
            weights = ops.softmax(scores, axis=-1)
        else:
            valid = ops.cast(mask, "bool")
            # A large negative score (not -inf) keeps all-masked rows finite;
            # multiplying by the mask afterwards zeroes them exactly.
            floor = ops.cast(-1e4 if scores.dtype == "float16" else -1e9, scores.dtype)
            weights = ops.softmax(ops.where(valid, scores, floor), axis=-1)
            weights = weights * ops.cast(valid, weights.dtype)
        pooled = ops.sum(inputs * ops.expand_dims(weights, -1), axis=1)
        if return_attention_scores:
            return pooled, weights
        return pooled

    def compute_mask(self, inputs, mask=None):
        return None  # the time axis is gone.

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "context_initializer": keras.initializers.serialize(self.context_initializer),
                "context_regularizer": keras.regularizers.serialize(self.context_regularizer),
            }
        )
        return config
