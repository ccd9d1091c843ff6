"""Training-time augmentation of feature batches: SpecAugment-style masking.

Frequency masks (bands set to `mask_value` over the whole utterance) and time
masks (frames set to `mask_value`) on `[batch, frames, bands]` features, as in
SpecAugment without time warping. Padded frames (every band equal to
`pad_value`, the front-end's padding beyond the true length) are never
changed, and time masks are placed inside each utterance's true length.

Masks are drawn with stateless random ops from a per-batch seed, so a
training run is reproducible for its seed; `make_dataset(..., augment=...)`
applies it to training batches only. None of the five papers augments its
inputs: wherever it is used it is named as a change (see
benchmarks/RESULTS.md).

Reference:
    D. S. Park, W. Chan, Y. Zhang, C.-C. Chiu, B. Zoph, E. D. Cubuk, Q. V. Le,
    "SpecAugment: A Simple Data Augmentation Method for Automatic Speech
    Recognition", Interspeech 2019 (Section 2, frequency and time masking).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


def _non_negative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")


@dataclasses.dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masking of `[batch, frames, bands]` feature batches.

    Each utterance gets `num_frequency_masks` bands of width uniform in
    `[0, max_frequency_width]` and `num_time_masks` frame spans of width
    uniform in `[0, max_time_width]` (at most `max_time_fraction` of its
    true length), set to `mask_value`.

    Example:
    ```python
    augment = SpecAugment(num_frequency_masks=2, max_frequency_width=12,
                          num_time_masks=2, max_time_width=8, pad_value=-1.0)
    dataset = make_dataset(features, labels, shuffle=True, seed=0, augment=augment)
    ```

    Args:
        num_frequency_masks: Frequency masks per utterance (SpecAugment's `m_F`).
        max_frequency_width: Largest frequency-mask width in bands (`F`).
        num_time_masks: Time masks per utterance (`m_T`).
        max_time_width: Largest time-mask width in frames (`T`).
        max_time_fraction: Upper bound of a time mask's width as a share of
            the utterance's true length (`p`).
        mask_value: Value written into masked bins (0.0 is the mean of
            per-speaker standardised features).
        pad_value: The front-end's padding value; frames whose every band
            equals it are left as they are. `None`: no padding to respect.

    Reference:
        Park et al., Interspeech 2019, Section 2.
    """

    num_frequency_masks: int = 2
    max_frequency_width: int = 12
    num_time_masks: int = 2
    max_time_width: int = 8
    max_time_fraction: float = 0.2
    mask_value: float = 0.0
    pad_value: float | None = -1.0

    def __post_init__(self):
        for name in ("num_frequency_masks", "max_frequency_width", "num_time_masks",
                     "max_time_width"):
            _non_negative_int(name, getattr(self, name))
        if not 0.0 < float(self.max_time_fraction) <= 1.0:
            raise ValueError(
                "`max_time_fraction` must be in (0, 1]. Received: "
                f"max_time_fraction={self.max_time_fraction!r}"
            )

    def describe(self) -> str:
        """One line naming the augmentation and its parameters, for run outputs."""
        return (
            f"SpecAugment masking (not in the papers): {self.num_frequency_masks} frequency "
            f"mask(s) of <= {self.max_frequency_width} bands, {self.num_time_masks} time "
            f"mask(s) of <= {self.max_time_width} frames (<= {self.max_time_fraction:.0%} of "
            f"the length), value {self.mask_value}"
        )

    def __call__(self, features, seed):
        """Masks a batch of features.

        Args:
            features: float `[batch, frames, bands]` tensor.
            seed: int tensor of shape `[2]`, the stateless random seed of this batch.

        Returns:
            The masked features, same shape and dtype.
        """
        features = tf.convert_to_tensor(features)
        if features.shape.rank != 3:
            raise ValueError(
                f"SpecAugment expects features [batch, frames, bands]; received shape "
                f"{features.shape}."
            )
        shape = tf.shape(features)
        batch, frames, bands = shape[0], shape[1], shape[2]
        if self.pad_value is None:
            valid = tf.ones([batch, frames], dtype=tf.bool)
        else:
            valid = tf.reduce_any(tf.not_equal(features, self.pad_value), axis=-1)
        lengths = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)  # [batch]
        seeds = tf.random.experimental.stateless_split(seed, num=4)

        band_index = tf.range(bands)[tf.newaxis, tf.newaxis, :]  # [1, 1, bands]
        frame_index = tf.range(frames)[tf.newaxis, tf.newaxis, :]  # [1, 1, frames]
        masked_bands = self._spans(
            seeds[0], seeds[1], batch, self.num_frequency_masks,
            tf.fill([batch], self.max_frequency_width), tf.fill([batch], bands), band_index,
        )  # [batch, bands]
        time_limit = tf.minimum(
            self.max_time_width,
            tf.cast(tf.floor(self.max_time_fraction * tf.cast(lengths, tf.float32)), tf.int32),
        )
        masked_frames = self._spans(
            seeds[2], seeds[3], batch, self.num_time_masks, time_limit, lengths, frame_index,
        )  # [batch, frames]
        mask = masked_bands[:, tf.newaxis, :] | masked_frames[:, :, tf.newaxis]
        mask &= valid[:, :, tf.newaxis]
        return tf.where(mask, tf.cast(self.mask_value, features.dtype), features)

    @staticmethod
    def _spans(width_seed, start_seed, batch, count, max_width, extent, index):
        """Boolean `[batch, size]`: `count` random spans per row inside `[0, extent)`."""
        if count == 0:
            return tf.zeros([batch, tf.shape(index)[-1]], dtype=tf.bool)
        uniform = tf.random.stateless_uniform([batch, count], width_seed)
        width = tf.cast(
            tf.floor(uniform * tf.cast(max_width[:, tf.newaxis] + 1, tf.float32)), tf.int32
        )
        room = tf.maximum(extent[:, tf.newaxis] - width, 0)
        uniform = tf.random.stateless_uniform([batch, count], start_seed)
        start = tf.cast(tf.floor(uniform * tf.cast(room + 1, tf.float32)), tf.int32)
        start, width = start[:, :, tf.newaxis], width[:, :, tf.newaxis]
        inside = (index >= start) & (index < start + width)  # [batch, count, size]
        return tf.reduce_any(inside, axis=1)
