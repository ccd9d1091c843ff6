"""Layers for frame-level models over padded frame sequences.

A batch of utterances of different lengths is padded to its longest with
frames whose every feature is `pad_value`, which no real frame has (see
`ser_keras.features.frame_features.FrameFeatures`). These layers find the
real frames, keep the padding out of the computation, and turn frame-level
outputs into what training and serving need:

* `FrameValidity`: `[B, T, F]` -> bool `[B, T]`, the frames that are not padding;
* `FeatureStandardization`: per-feature `(x - mean) / sqrt(variance + eps)`
  with the statistics held as non-trainable weights (set by `adapt`);
* `MaskFrames`: sets the padded frames of `[B, T, D]` to 0;
* `FlattenFrames`: `[B, T, C]` -> `[B * T, C]`, for frame-level losses;
* `MaskedFrameMean`: `[B, T, C]` -> mean over each utterance's valid frames `[B, C]`.

They are the building blocks of `ser_keras.models.kim_mtl.KimMTL` (Kim et al.
2017, frame-level DNN/LSTM multi-task networks). Their registered Keras names
(`ser_keras>FrameValidity`, ...) are those they had there, so `.keras` files
written before they moved here still load.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="ser_keras")
class FrameValidity(keras.layers.Layer):
    """`[batch, frames, features]` -> bool `[batch, frames]`: frames not entirely `pad_value`.

    Args:
        pad_value: The value every feature of a padded frame holds.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, pad_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.pad_value = float(pad_value)

    def call(self, features):
        return ops.any(ops.not_equal(features, self.pad_value), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def compute_output_spec(self, features):
        return keras.KerasTensor(features.shape[:-1], dtype="bool")

    def get_config(self):
        config = super().get_config()
        config["pad_value"] = self.pad_value
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class FeatureStandardization(keras.layers.Layer):
    """Per-feature standardisation with statistics held as non-trainable weights.

    `(x - mean) / sqrt(variance + epsilon)` over the last axis. Unlike
    `keras.layers.Normalization`, whose call reads a copy of its statistics
    made at `adapt()`/load time, the weights are read at every call, so
    `set_weights()` takes effect (the shared model checks rely on it).

    Args:
        epsilon: Added to the variance.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        size = int(input_shape[-1])
        self.mean = self.add_weight(
            shape=(size,), initializer="zeros", trainable=False, name="mean"
        )
        self.variance = self.add_weight(
            shape=(size,), initializer="ones", trainable=False, name="variance"
        )

    def adapt(self, frames):
        """Sets the statistics from `[num_frames, features]` (NumPy)."""
        frames = np.asarray(frames, dtype=np.float64)
        self.mean.assign(frames.mean(axis=0).astype("float32"))
        self.variance.assign(frames.var(axis=0).astype("float32"))

    def call(self, inputs):
        return (inputs - self.mean) / ops.sqrt(self.variance + self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class MaskFrames(keras.layers.Layer):
    """`[x, valid]` -> `x` with the frames where `valid` is False set to 0."""

    def call(self, inputs):
        values, valid = inputs
        return ops.where(valid[..., None], values, ops.zeros_like(values))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])


@keras.saving.register_keras_serializable(package="ser_keras")
class FlattenFrames(keras.layers.Layer):
    """`[batch, frames, classes]` -> `[batch * frames, classes]` (frame-level training)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # consumes the LSTM's mask (padding is in the labels)

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, values):
        return ops.reshape(values, (-1, ops.shape(values)[-1]))

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])


@keras.saving.register_keras_serializable(package="ser_keras")
class MaskedFrameMean(keras.layers.Layer):
    """`[probabilities [B, T, C], valid [B, T]]` -> mean over the valid frames `[B, C]`.

    An utterance without a valid frame gets zeros.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True  # the explicit `valid` input replaces the LSTM's mask

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs):
        values, valid = inputs
        weights = ops.cast(valid, values.dtype)[..., None]
        total = ops.sum(values * weights, axis=1)
        count = ops.sum(weights, axis=1)
        return ops.divide_no_nan(total, count)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], input_shape[0][-1])
