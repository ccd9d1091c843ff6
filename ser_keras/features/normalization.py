"""Per-speaker or per-corpus feature normalisation of log-mel features.

Z-normalising every mel band per speaker (or per corpus), over that group's
own valid frames, removes much of the speaker's voice and the recording
channel from the features. It uses no labels, so it applies to an unseen test
speaker or corpus as well (given some of its audio); it is not part of any of
the papers and is named as a change wherever it is used (see
benchmarks/RESULTS.md: EMO-DB leave-one-speaker-out, cross-language valence).

`standardize_per_speaker` normalises precomputed features offline;
`band_statistics` gives one group's statistics, and `BandStandardization`
applies fixed statistics inside a model, so that an exported model normalises
its inputs as training did for that group (e.g. a deployment corpus).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _valid_frames(features, pad_value):
    """Bool `[utterances, frames]`: True where a frame is not entirely `pad_value`."""
    return ~np.all(features == pad_value, axis=-1)


def band_statistics(features, pad_value):
    """Per-band mean and standard deviation over the valid frames of `features`.

    Args:
        features: float array `[num_utterances, frames, bands]`, padded with
            `pad_value` (a frame whose every band equals it is padding).
        pad_value: the padding value.

    Returns:
        `(mean, std)`, float32 arrays `[bands]`.

    Raises:
        ValueError: if `features` is not 3-D or has no valid frame.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 3:
        raise ValueError(
            f"`features` must be [utterances, frames, bands]. Received shape {features.shape}."
        )
    frames = features[_valid_frames(features, pad_value)]
    if frames.size == 0:
        raise ValueError(
            f"`features` holds no valid frame: every frame equals pad_value={pad_value}."
        )
    return frames.mean(axis=0), frames.std(axis=0)


def standardize_per_speaker(features, speakers, pad_value, epsilon=1e-5):
    """Z-normalises every feature band per speaker over that speaker's valid frames.

    Args:
        features: float array `[num_utterances, frames, bands]`, padded with
            `pad_value` beyond each utterance's true length (the LogMel
            front-end's padding).
        speakers: one group id per utterance (any hashable values): the
            speaker, or any other grouping (a corpus, for per-corpus
            standardisation).
        pad_value: the padding value; a frame whose every band equals it is
            padding, is left out of the statistics and keeps the value.
        epsilon: added to the standard deviation.

    Returns:
        A new float32 array of the same shape.

    Raises:
        ValueError: if `features` is not 3-D or `speakers` has another length.
    """
    features = np.array(features, dtype=np.float32, copy=True)
    if features.ndim != 3:
        raise ValueError(
            f"`features` must be [utterances, frames, bands]. Received shape {features.shape}."
        )
    speakers = np.asarray(speakers)
    if speakers.shape != (features.shape[0],):
        raise ValueError(
            f"`speakers` must hold one id per utterance ({features.shape[0]}). "
            f"Received shape {speakers.shape}."
        )
    valid = _valid_frames(features, pad_value)  # [utterances, frames]
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        block, mask = features[rows], valid[rows]
        frames = block[mask]
        if frames.size == 0:
            continue
        block[mask] = (frames - frames.mean(axis=0)) / (frames.std(axis=0) + epsilon)
        features[rows] = block
    return features


@keras.saving.register_keras_serializable(package="ser_keras")
class BandStandardization(keras.layers.Layer):
    """Z-normalises every band with fixed statistics; padding frames keep their value.

    `(x - mean) / (std + epsilon)` per band for every frame that is not
    entirely `pad_value`, as `standardize_per_speaker` does offline for one
    group whose statistics (`band_statistics`) are `mean` and `std`. Placed in
    front of a model trained on per-corpus standardised features, it lets the
    exported model take the front-end's features of that corpus.

    Args:
        mean: per-band means, a sequence of `bands` floats.
        std: per-band standard deviations (non-negative), as many.
        pad_value: the front-end's padding value.
        epsilon: added to the standard deviation (that of
            `standardize_per_speaker`).
        **kwargs: `keras.layers.Layer` arguments.

    Input `[batch, frames, bands]`; output of the same shape.
    """

    def __init__(self, mean, std, pad_value=0.0, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        mean = np.asarray(mean, dtype=np.float64).ravel()
        std = np.asarray(std, dtype=np.float64).ravel()
        if mean.size == 0 or mean.shape != std.shape:
            raise ValueError(
                "`mean` and `std` must hold one value per band, as many of each. Received "
                f"{mean.size} means and {std.size} standard deviations."
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)):
            raise ValueError(
                "`mean` must be finite and `std` finite and non-negative. Received "
                f"mean={mean.tolist()}, std={std.tolist()}."
            )
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon}")
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        self.pad_value = float(pad_value)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != len(self.mean):
            raise ValueError(
                f"BandStandardization holds statistics of {len(self.mean)} bands; received "
                f"inputs of shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def call(self, features):
        mean = ops.convert_to_tensor(self.mean, dtype=features.dtype)
        scale = ops.convert_to_tensor(self.std, dtype=features.dtype) + self.epsilon
        padding = ops.all(ops.equal(features, self.pad_value), axis=-1, keepdims=True)
        return ops.where(padding, features, (features - mean) / scale)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            mean=self.mean, std=self.std, pad_value=self.pad_value, epsilon=self.epsilon
        )
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class UtteranceStandardization(keras.layers.Layer):
    """Z-normalises every band over each utterance's own valid frames, inside a model.

    The in-graph form of `standardize_per_speaker` with one group per
    utterance (the training recipe's `normalization="utterance"`), so that an
    exported model takes the front-end's features as they come. Frames whose
    every band equals `pad_value` are left out of the statistics and keep
    their value.

    Args:
        pad_value: The front-end's padding value.
        epsilon: Added to the standard deviation (that of
            `standardize_per_speaker`).
        **kwargs: `keras.layers.Layer` arguments.

    Input `[batch, frames, bands]`; output of the same shape.
    """

    def __init__(self, pad_value=0.0, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        if not epsilon > 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon}")
        self.pad_value = float(pad_value)
        self.epsilon = float(epsilon)

    def call(self, features):
        padding = ops.all(ops.equal(features, self.pad_value), axis=-1, keepdims=True)
        weights = ops.cast(ops.logical_not(padding), features.dtype)  # [batch, frames, 1]
        count = ops.maximum(ops.sum(weights, axis=1, keepdims=True), 1.0)
        mean = ops.sum(features * weights, axis=1, keepdims=True) / count
        variance = ops.sum(ops.square(features - mean) * weights, axis=1, keepdims=True) / count
        standardized = (features - mean) / (ops.sqrt(variance) + self.epsilon)
        return ops.where(padding, features, standardized)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(pad_value=self.pad_value, epsilon=self.epsilon)
        return config
