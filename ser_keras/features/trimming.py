"""Trimming leading and trailing non-speech inside the graph, as training's decoding does.

Training waveforms are trimmed when they are decoded
(`ser_keras.audio.io.load_audio` -> `trim_silence`, in numpy). A served model
receives raw waveforms, so the export (`ser_keras.export.saved_model`) puts
`TrimSilence` in front of the front-end: the same criterion, batched and in
`keras.ops`, giving the same start and end samples as the numpy function.

`trim_silence_batch` is the numpy reference of the layer on a padded batch
(what training's decoding gives each row), for checks and tests.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ser_keras.audio.io import AudioOptions, _frame_samples, trim_silence
from ser_keras.features.logmel import (
    split_waveform_inputs,
    waveform_batch,
    waveform_input_shape,
)
from ser_keras.utils.validation import positive_int, positive_number

# Floor of the frame power before the logarithm, as in `frame_energy_db`
# (librosa's `power_to_db(amin=1e-10)`): -100 dB.
_AMIN = 1e-10
_MIN_DB = -100.0
# Below any frame's dB value, for masked maxima.
_NEG_DB = -1e30


def _silence_floor(value):
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value > 0
    ):
        raise ValueError(
            "`silence_floor_db` must be a level <= 0 dBFS or None. "
            f"Received: silence_floor_db={value!r}"
        )
    return float(value)


@keras.saving.register_keras_serializable(package="ser_keras")
class TrimSilence(keras.layers.Layer):
    """Trims each utterance's leading and trailing non-speech, as training's decoding does.

    Input: a tuple `(waveform, lengths)` (or a dict `{"waveform": ...,
    "lengths": ...}`, or a waveform alone) where `waveform` `[batch, samples]`
    is a zero-padded batch and `lengths` `[batch]` (int) holds each row's true
    number of samples; samples at or beyond a row's length are ignored.
    Output: `(trimmed_waveform, trimmed_lengths)`: `[batch, samples']` in the
    layer's dtype (float32 by default) and int32 `[batch]`, where row `b` is
    `trim_silence(waveform[b, :lengths[b]], ...)` of `ser_keras.audio.io`
    (the same start and end samples), moved to the start of the row and
    zero-padded; `samples'` is the longest trimmed length of the batch (0
    when every row trims to nothing).

    The criterion is that of `frame_energy_db` / `nonsilent_intervals`:
    frames of `frame_length` seconds every `hop_length` seconds, centred (the
    utterance padded with `frame_length // 2` zeros at each end, in
    samples), mean-square energy per frame from cumulative sums of the
    squared samples, in dB relative to the loudest frame of the utterance
    (floored at -100 dB); a frame is speech when it is above `-top_db`. The
    trimmed utterance runs from the first speech frame `k` (sample
    `k * hop`) to the end of the last one (sample `(k + 1) * hop`, at most
    the utterance's length), so up to `frame_length // 2 + hop` samples of
    silence stay on either side of the speech, as with `trim_silence`.

    The energies are computed in float64 whatever the layer's dtype, as
    numpy computes them: float32 cumulative sums over a whole utterance lose
    enough precision to move frames near the threshold (on the EMO-DB files
    with noise added at either end, the end of 8% to 41% of them moved, by up
    to 1.2 s; in float64 every start and end equals numpy's). On the JAX
    backend this needs `jax_enable_x64`.

    An utterance whose peak `|sample|` is below `silence_floor_db` dBFS (an
    all-zero row included, and a row of length 0) gives length 0, as
    `load_audio` rejects such a file as silent before trimming; with
    `silence_floor_db=None` an all-zero row is kept whole, as `trim_silence`
    keeps it (every frame is then as loud as the loudest). A row of length 0
    gives the front-end an empty waveform: a centred `LogMel` computes one
    frame from zeros (all bands at their floor; 0 after either
    normalisation) and `pad_value` beyond it, so a served model still
    returns probabilities for it, those of silence.

    Only the ends are trimmed: pauses inside the utterance are kept (as
    with `AudioOptions(remove_pauses=False)`, the default).

    Args:
        sample_rate: rate of the input waveforms in Hz (the front-end's).
        top_db: frames more than this many dB below the loudest frame are
            non-speech (`AudioOptions.trim_db`).
        frame_length: energy frame length in seconds
            (`AudioOptions.trim_frame_length`); rounded to samples as
            `nonsilent_intervals` rounds it.
        hop_length: energy frame step in seconds
            (`AudioOptions.trim_hop_length`): the trimming resolution.
        silence_floor_db: a row whose peak is below this level (dBFS) trims
            to length 0 (`AudioOptions.silence_floor_db`); `None` applies
            the relative criterion only.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    ```python
    trim = TrimSilence()  # AudioOptions' defaults, 16 kHz
    trimmed, trimmed_lengths = trim((waveform, lengths))
    features = LogMel.from_preset("latif")((trimmed, trimmed_lengths))
    ```

    Reference:
        `ser_keras.audio.io.trim_silence` (numpy), itself
        `librosa.effects.trim` with frame sizes in seconds.
    """

    # Dtype of the energies (see above); float32 is only for measuring the difference.
    _energy_dtype = "float64"

    def __init__(
        self,
        sample_rate=16000,
        top_db=AudioOptions.trim_db,
        frame_length=AudioOptions.trim_frame_length,
        hop_length=AudioOptions.trim_hop_length,
        silence_floor_db=AudioOptions.silence_floor_db,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.sample_rate = positive_int("sample_rate", sample_rate)
        self.top_db = positive_number("top_db", top_db)
        self.frame_length = positive_number("frame_length", frame_length)
        self.hop_length = positive_number("hop_length", hop_length)
        self.silence_floor_db = _silence_floor(silence_floor_db)
        # The sizes in samples, rounded as `nonsilent_intervals` rounds them.
        self._frame = _frame_samples(self.frame_length, self.sample_rate)
        self._hop = _frame_samples(self.hop_length, self.sample_rate)
        self._pad = self._frame // 2
        self.built = True

    @classmethod
    def from_audio_options(cls, options=None, sample_rate=None, **kwargs):
        """The layer trimming as `load_audio` with `options` does.

        Args:
            options: An `ser_keras.audio.io.AudioOptions` (default: the
                defaults, training's decoding).
            sample_rate: Rate of the waveforms the layer receives; default
                `options.sample_rate`. Must equal it when both are given.
            **kwargs: Layer arguments (`name`, ...).

        Returns:
            A `TrimSilence`.

        Raises:
            ValueError: `options` does not trim (`trim=False`), removes
                pauses inside utterances (not done in the graph), or its rate
                differs from `sample_rate`.
        """
        options = AudioOptions() if options is None else options
        if not isinstance(options, AudioOptions):
            raise ValueError(f"`options` must be an AudioOptions. Received: options={options!r}")
        if options.remove_pauses:
            raise ValueError(
                "TrimSilence trims the ends only; these options also remove pauses inside "
                f"utterances (remove_pauses=True). Received: options={options!r}"
            )
        if not options.trim:
            raise ValueError(
                f"These options do not trim (trim=False). Received: options={options!r}"
            )
        if sample_rate is None:
            sample_rate = options.sample_rate
        elif options.sample_rate is not None and options.sample_rate != sample_rate:
            raise ValueError(
                f"`sample_rate` ({sample_rate!r}) differs from the options' "
                f"({options.sample_rate!r})."
            )
        if sample_rate is None:
            raise ValueError("`sample_rate` is needed when options.sample_rate is None.")
        return cls(
            sample_rate=sample_rate,
            top_db=options.trim_db,
            frame_length=options.trim_frame_length,
            hop_length=options.trim_hop_length,
            silence_floor_db=options.silence_floor_db,
            **kwargs,
        )

    @property
    def frame_samples(self):
        """The energy frame length in samples."""
        return self._frame

    @property
    def hop_samples(self):
        """The energy frame step in samples."""
        return self._hop

    def trim_bounds(self, inputs):
        """`(starts, ends)` int32 `[batch]`: each row's trimmed part is `[start, end)`.

        Both are 0 for a row that trims to nothing.
        """
        waveform, lengths = waveform_batch(inputs, self.compute_dtype)
        return self._bounds(waveform, ops.maximum(lengths, 0))

    def _bounds(self, waveform, lengths):
        frame, hop, pad = self._frame, self._hop, self._pad
        num_samples = ops.shape(waveform)[1]

        # cumulative[:, i] = sum of the first i squared samples of the row
        # padded with `pad` zeros on each side (and a leading 0 for i = 0).
        squares = ops.square(ops.cast(waveform, self._energy_dtype))
        cumulative = ops.cumsum(ops.pad(squares, ((0, 0), (1 + pad, pad))), axis=1)
        padded_length = num_samples + 2 * pad
        num_frames = 1 + ops.maximum(padded_length - frame, 0) // hop
        starts = ops.arange(num_frames, dtype="int32") * hop
        ends = ops.minimum(starts + frame, padded_length)
        # A row's samples beyond its length are zeros, so its frames' sums
        # equal those of the row alone (numpy clips the ends at the row's own
        # padded length: the squares there are zeros too).
        energy = ops.take(cumulative, ends, axis=1) - ops.take(cumulative, starts, axis=1)
        power = ops.maximum(energy, 0.0) / float(frame)
        power_db = 10.0 * ops.log10(ops.maximum(power, _AMIN))

        frame_index = ops.arange(num_frames, dtype="int32")[None, :]
        row_frames = 1 + ops.maximum(lengths + 2 * pad - frame, 0) // hop
        valid = frame_index < row_frames[:, None]
        reference = ops.maximum(
            ops.max(ops.where(valid, power_db, _NEG_DB), axis=1, keepdims=True, initial=_NEG_DB),
            _MIN_DB,
        )
        speech = (power_db - reference) > -self.top_db
        # A frame starting at or beyond the row's end maps to an empty
        # interval, which `nonsilent_intervals` drops.
        speech = speech & valid & (frame_index * hop < lengths[:, None])

        has_speech = ops.any(speech, axis=1)
        if self.silence_floor_db is not None:
            peak = ops.max(ops.abs(ops.cast(waveform, "float64")), axis=1, initial=0.0)
            has_speech = has_speech & (peak >= 10.0 ** (self.silence_floor_db / 20.0))
        speech_int = ops.cast(speech, "int32")
        first = ops.cast(ops.argmax(speech_int, axis=1), "int32")
        last = num_frames - 1 - ops.cast(ops.argmax(ops.flip(speech_int, axis=1), axis=1), "int32")
        start = ops.where(has_speech, first * hop, 0)
        end = ops.where(has_speech, ops.minimum((last + 1) * hop, lengths), 0)
        return start, end

    def call(self, inputs):
        waveform, lengths = waveform_batch(inputs, self.compute_dtype)
        lengths = ops.maximum(lengths, 0)
        start, end = self._bounds(waveform, lengths)
        trimmed_lengths = end - start
        width = ops.max(trimmed_lengths, initial=0)
        offsets = ops.arange(width, dtype="int32")[None, :]
        # Indices into the flattened batch; those past a row's end (masked
        # below) are clipped into the row.
        num_samples = ops.shape(waveform)[1]
        columns = ops.minimum(start[:, None] + offsets, ops.maximum(num_samples - 1, 0))
        rows = ops.arange(ops.shape(waveform)[0], dtype="int64")[:, None] * ops.cast(
            num_samples, "int64"
        )
        gathered = ops.take(ops.reshape(waveform, (-1,)), rows + ops.cast(columns, "int64"))
        trimmed = ops.where(offsets < trimmed_lengths[:, None], gathered, ops.zeros_like(gathered))
        return trimmed, trimmed_lengths

    def compute_output_shape(self, inputs_shape):
        batch_size = waveform_input_shape(inputs_shape)[0]
        return (batch_size, None), (batch_size,)

    def compute_output_spec(self, inputs):
        waveform, _ = split_waveform_inputs(inputs)
        batch_size = waveform.shape[0]
        return (
            keras.KerasTensor((batch_size, None), dtype=self.compute_dtype),
            keras.KerasTensor((batch_size,), dtype="int32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "top_db": self.top_db,
                "frame_length": self.frame_length,
                "hop_length": self.hop_length,
                "silence_floor_db": self.silence_floor_db,
            }
        )
        return config


def trim_silence_batch(
    waveform,
    lengths=None,
    *,
    sample_rate=16000,
    top_db=AudioOptions.trim_db,
    frame_length=AudioOptions.trim_frame_length,
    hop_length=AudioOptions.trim_hop_length,
    silence_floor_db=AudioOptions.silence_floor_db,
):
    """The numpy reference of `TrimSilence`: `trim_silence` on each row of a padded batch.

    Args:
        waveform: float `[batch, samples]`, zero-padded.
        lengths: int `[batch]` true sample counts (capped at `samples`);
            None for full rows.
        sample_rate, top_db, frame_length, hop_length, silence_floor_db: as
            for `TrimSilence`.

    Returns:
        `(trimmed, trimmed_lengths, bounds)`: float32 `[batch, longest]`
        (rows left-aligned, zero-padded), int32 `[batch]`, and int64
        `[batch, 2]` of each row's `(start, end)` in the untrimmed row.
    """
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim != 2:
        raise ValueError(f"`waveform` must be [batch, samples]. Received shape: {waveform.shape}")
    if lengths is None:
        lengths = np.full(waveform.shape[0], waveform.shape[1])
    lengths = np.clip(np.asarray(lengths).reshape(-1), 0, waveform.shape[1])
    floor = None if silence_floor_db is None else 10.0 ** (silence_floor_db / 20.0)
    rows, bounds = [], []
    for row, length in zip(waveform, lengths, strict=True):
        samples = row[: int(length)]
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        if floor is not None and peak < floor:
            trimmed, bound = samples[:0], (0, 0)
        else:
            trimmed, bound = trim_silence(samples, sample_rate, top_db, frame_length, hop_length)
        rows.append(trimmed)
        bounds.append(bound)
    trimmed_lengths = np.array([r.shape[0] for r in rows], dtype=np.int32)
    width = int(trimmed_lengths.max()) if rows else 0
    batch = np.zeros((waveform.shape[0], width), dtype=np.float32)
    for index, trimmed in enumerate(rows):
        batch[index, : trimmed.shape[0]] = trimmed
    return batch, trimmed_lengths, np.array(bounds, dtype=np.int64).reshape(-1, 2)


__all__ = ["TrimSilence", "trim_silence_batch"]
