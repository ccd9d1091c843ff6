"""Log-mel spectrogram front-end as a Keras layer.

One implementation serves training, evaluation and the exported model: the
layer takes a batch of 16 kHz waveforms (optionally with their true lengths),
and returns log-mel spectrograms that match librosa
(`librosa.feature.melspectrogram` + `librosa.power_to_db`) computed on each
unpadded waveform.

Computation, per utterance:

1. Samples at or beyond the utterance's true length are set to zero, so a
   padded batch gives the same valid frames as each waveform alone.
2. STFT as librosa computes it (`center=True`: `fft_length // 2` zeros on both
   sides, librosa >= 0.10's `pad_mode="constant"`; the window of
   `frame_length` samples centred in `fft_length`), power spectrogram
   `|X|^2`.
3. Slaney-style mel filterbank (`librosa.filters.mel`, `htk=False`,
   `norm="slaney"`), computed once as a constant.
4. `10 * log10(max(amin, S)) - 10 * log10(max(amin, reference))`, then
   `top_db` clipping below the utterance's peak (as `librosa.power_to_db`).
5. Optional per-utterance normalisation whose statistics come from the valid
   frames only (frames computed from padding never enter them).
6. Frames at or beyond the utterance's valid frame count are set to
   `pad_value`; with `num_frames` set, the sequence is cut to its first
   `num_frames` frames or padded with `pad_value` up to `num_frames`.
"""

import keras
import librosa
import numpy as np
from keras import ops

from ser_keras.utils.presets import preset_config
from ser_keras.utils.validation import positive_int

NORMALIZATIONS = (None, "minmax", "standard")

FRONTEND_PRESETS = {
    # Fu et al. (paper 004), Section 3.2: librosa, 16 kHz, "Fourier transform of
    # length 800 with hop length 400", mapped to the mel scale; 128 bands
    # (d_spec = 128); time length cut to 256, shorter padded to 256 with -1.
    # The paper does not state a window (librosa's default: Hann of n_fft
    # samples), a log compression or a normalisation. Our choices, named:
    # power_to_db with librosa's default top_db=80, then per-utterance min-max
    # to [0, 1] over the valid frames, so the -1 padding is distinct from any
    # feature value ("padded with -1 after normalisation").
    "fu2021": {
        "sample_rate": 16000,
        "frame_length": 800,
        "frame_step": 400,
        "fft_length": 800,
        "num_mels": 128,
        "min_frequency": 0.0,
        "max_frequency": 8000.0,
        "window": "hann",
        "center": True,
        "top_db": 80.0,
        "normalization": "minmax",
        "num_frames": 256,
        "pad_value": -1.0,
    },
    # Latif et al. (papers 000 and 002): STFT with an overlapping Hamming window
    # of 25 ms (400 samples at 16 kHz) and a 10 ms shift (160 samples); 128 mel
    # bands over 0-8 kHz. Variable length: paper 002 cuts 256-frame segments
    # (ser_keras.features.framing). Not stated in the papers, our choices:
    # FFT length 512 (next power of two above the window), dB with top_db=80,
    # per-utterance standardisation (zero mean, unit variance over the valid
    # frames), padding value 0 (the utterance mean after standardisation).
    "latif": {
        "sample_rate": 16000,
        "frame_length": 400,
        "frame_step": 160,
        "fft_length": 512,
        "num_mels": 128,
        "min_frequency": 0.0,
        "max_frequency": 8000.0,
        "window": "hamming",
        "center": True,
        "top_db": 80.0,
        "normalization": "standard",
        "num_frames": None,
        "pad_value": 0.0,
    },
    # Latif et al. (paper 000), Section 4.2: as "latif", utterances cropped or
    # zero-padded to 6 seconds. 6 s at a 10 ms shift = 600 frames (a centred
    # STFT of exactly 6 s of audio has 601 frames; the 601st is cut). The paper
    # pads the waveform with zeros; we pad the normalised features with 0.
    "latif_6s": {
        "sample_rate": 16000,
        "frame_length": 400,
        "frame_step": 160,
        "fft_length": 512,
        "num_mels": 128,
        "min_frequency": 0.0,
        "max_frequency": 8000.0,
        "window": "hamming",
        "center": True,
        "top_db": 80.0,
        "normalization": "standard",
        "num_frames": 600,
        "pad_value": 0.0,
    },
}

# Large negative number standing in for -inf in masked maxima (finite, so that
# `0 * _NEG` stays 0 and no NaN can appear).
_NEG = -1e30
# 10 * log10(x) = ln(x) * 10 / ln(10).
_DB_PER_NEPER = float(10.0 / np.log(10.0))


def _masked_max(values, mask):
    """Max over axis 1 of `values` [batch, frames] where `mask`; _NEG if none."""
    return ops.max(ops.where(mask, values, _NEG), axis=1)


def split_waveform_inputs(inputs):
    """`(waveform, lengths or None)` from a waveform layer's inputs.

    The waveform layers (`LogMel`, `FrameFeatures`) take a waveform batch
    `[batch, samples]`, a tuple `(waveform, lengths)` or a dict
    `{"waveform": ..., "lengths": ...}` (`"lengths"` optional).
    """
    if isinstance(inputs, dict):
        if "waveform" not in inputs:
            raise ValueError(
                'A dict input needs a "waveform" key (and optionally "lengths"). '
                f"Received keys: {sorted(inputs)}"
            )
        return inputs["waveform"], inputs.get("lengths")
    if isinstance(inputs, (tuple, list)):
        if len(inputs) != 2:
            raise ValueError(
                "A tuple input must be (waveform, lengths). "
                f"Received a sequence of {len(inputs)} items."
            )
        return inputs[0], inputs[1]
    return inputs, None


def waveform_batch(inputs, dtype):
    """A waveform layer's inputs as `(waveform [batch, samples] of dtype, lengths int32 [batch])`.

    `lengths` are capped at the number of samples (all samples when not
    given), and the samples at or beyond each utterance's length are set to 0,
    so a padded batch gives each utterance's own features.
    """
    waveform, lengths = split_waveform_inputs(inputs)
    waveform = ops.convert_to_tensor(waveform)
    if len(waveform.shape) != 2:
        raise ValueError(
            f"`waveform` must have shape [batch, samples]. Received shape: {waveform.shape}"
        )
    waveform = ops.cast(waveform, dtype)
    batch_size = ops.shape(waveform)[0]
    num_samples = ops.shape(waveform)[1]
    if lengths is None:
        return waveform, ops.full((batch_size,), num_samples, dtype="int32")
    lengths = ops.minimum(ops.reshape(ops.cast(lengths, "int32"), (-1,)), num_samples)
    sample_mask = ops.arange(num_samples, dtype="int32")[None, :] < lengths[:, None]
    return ops.where(sample_mask, waveform, ops.zeros_like(waveform)), lengths


def waveform_input_shape(inputs_shape):
    """The waveform's shape among a waveform layer's input shapes (see `split_waveform_inputs`)."""
    if isinstance(inputs_shape, dict):
        return inputs_shape["waveform"]
    if (
        isinstance(inputs_shape, (tuple, list))
        and inputs_shape
        and isinstance(inputs_shape[0], (tuple, list))
    ):
        return inputs_shape[0]
    return inputs_shape


@keras.saving.register_keras_serializable(package="ser_keras")
class LogMel(keras.layers.Layer):
    """Log-mel spectrogram front-end matching librosa, batched and length-aware.

    Input: a float waveform batch `[batch, samples]`, or a tuple
    `(waveform, lengths)` / dict `{"waveform": ..., "lengths": ...}` where
    `lengths` `[batch]` (int) holds each waveform's true number of samples
    (samples beyond it are ignored). Output: `[batch, frames, num_mels]`
    float32, `frames = num_frames` when set, otherwise the batch's longest
    utterance's frame count (see `frame_lengths`).

    The layer computes in float32 whatever the global dtype policy (a float16
    log of small powers would underflow); pass `dtype=` to override.

    Args:
        sample_rate: sampling rate of the input waveforms in Hz.
        frame_length: analysis window length in samples (librosa `win_length`).
        frame_step: hop between frames in samples (librosa `hop_length`).
        fft_length: FFT size (librosa `n_fft`); `None` means `frame_length`.
            Must be at least `frame_length`.
        num_mels: number of mel bands.
        min_frequency: lowest mel band edge in Hz (librosa `fmin`).
        max_frequency: highest mel band edge in Hz (librosa `fmax`); `None`
            means `sample_rate / 2`.
        window: window name understood by `librosa.filters.get_window`
            (periodic), e.g. `"hann"` or `"hamming"`.
        center: if True, frames are centred on `t * frame_step` with
            `fft_length // 2` zeros padded on both sides (librosa's default with
            `pad_mode="constant"`); if False, the first frame starts at sample 0.
        amin: floor on power before the logarithm (librosa `amin`).
        reference: power mapped to 0 dB: a positive float (librosa
            `ref=1.0` is the default), or `"max"` for each utterance's peak
            (librosa `ref=np.max`).
        top_db: clip values more than `top_db` dB below the utterance's peak
            (librosa `top_db`); `None` disables clipping.
        normalization: per-utterance normalisation over the valid frames:
            `None`, `"minmax"` (to [0, 1] over all valid frames and bands; a
            constant utterance maps to 0) or `"standard"` (zero mean, unit
            variance over all valid frames and bands).
        num_frames: fixed output length in frames (longer sequences keep their
            first `num_frames` frames, shorter ones are padded with
            `pad_value`); `None` keeps the batch's frame count.
        pad_value: value of frames at or beyond an utterance's valid length.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Reference:
        Fu et al., "An end-to-end multitask learning model to improve speech
        emotion recognition", Section 3.2 (preset `"fu2021"`); Latif et al.,
        Section 4.2 of the cross-language multi-task paper and of the
        semi-supervised adversarial autoencoder paper (presets `"latif"`,
        `"latif_6s"`).
    """

    def __init__(
        self,
        sample_rate=16000,
        frame_length=800,
        frame_step=400,
        fft_length=None,
        num_mels=128,
        min_frequency=0.0,
        max_frequency=None,
        window="hann",
        center=True,
        amin=1e-10,
        reference=1.0,
        top_db=80.0,
        normalization=None,
        num_frames=None,
        pad_value=0.0,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        fft_length = frame_length if fft_length is None else fft_length
        sample_rate = positive_int("sample_rate", sample_rate)
        frame_length = positive_int("frame_length", frame_length)
        frame_step = positive_int("frame_step", frame_step)
        fft_length = positive_int("fft_length", fft_length)
        num_mels = positive_int("num_mels", num_mels)
        if fft_length < frame_length:
            raise ValueError(
                "`fft_length` must be >= `frame_length`. Received: "
                f"fft_length={fft_length}, frame_length={frame_length}"
            )
        nyquist = sample_rate / 2.0
        upper = nyquist if max_frequency is None else float(max_frequency)
        if not 0.0 <= float(min_frequency) < upper <= nyquist:
            raise ValueError(
                "Expected 0 <= min_frequency < max_frequency <= sample_rate / 2. Received: "
                f"min_frequency={min_frequency}, max_frequency={max_frequency}, "
                f"sample_rate={sample_rate}"
            )
        if amin <= 0:
            raise ValueError(f"`amin` must be positive. Received: amin={amin}")
        if not (reference == "max" or (isinstance(reference, (int, float)) and reference > 0)):
            raise ValueError(
                f'`reference` must be a positive number or "max". Received: reference={reference!r}'
            )
        if top_db is not None and top_db < 0:
            raise ValueError(f"`top_db` must be non-negative or None. Received: top_db={top_db}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"`normalization` must be one of {NORMALIZATIONS}. "
                f"Received: normalization={normalization!r}"
            )
        num_frames = positive_int("num_frames", num_frames, allow_none=True)
        try:
            window_values = librosa.filters.get_window(window, frame_length, fftbins=True)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"Unknown `window`: {window!r} (see librosa.filters.get_window): {error}"
            ) from error

        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)
        self.fft_length = int(fft_length)
        self.num_mels = int(num_mels)
        self.min_frequency = float(min_frequency)
        self.max_frequency = None if max_frequency is None else float(max_frequency)
        self.window = window
        self.center = bool(center)
        self.amin = float(amin)
        self.reference = reference if reference == "max" else float(reference)
        self.top_db = None if top_db is None else float(top_db)
        self.normalization = normalization
        self.num_frames = None if num_frames is None else int(num_frames)
        self.pad_value = float(pad_value)

        # Constants computed once (not weights: nothing to train or to load).
        self._window_values = window_values.astype("float32")
        # [fft_length // 2 + 1, num_mels], librosa's Slaney filterbank.
        self._mel_matrix = np.ascontiguousarray(
            librosa.filters.mel(
                sr=self.sample_rate,
                n_fft=self.fft_length,
                n_mels=self.num_mels,
                fmin=self.min_frequency,
                fmax=self.max_frequency,
                htk=False,
                norm="slaney",
            ).T.astype("float32")
        )
        self._padding = self.fft_length // 2 if self.center else 0
        self.built = True

    @classmethod
    def from_preset(cls, preset, **overrides):
        """Builds the front-end of a preset in `FRONTEND_PRESETS`.

        Args:
            preset: preset name, e.g. `"fu2021"`, `"latif"`, `"latif_6s"`.
            **overrides: constructor arguments replacing the preset's values
                (including layer arguments such as `name`).

        Returns:
            A `LogMel` layer.
        """
        return cls(**preset_config(FRONTEND_PRESETS, preset, overrides, kind="front-end preset"))

    @property
    def mel_matrix(self):
        """The mel filterbank, `[fft_length // 2 + 1, num_mels]` float32 numpy array."""
        return self._mel_matrix.copy()

    def num_frames_for_samples(self, num_samples):
        """Valid frame count of an utterance of `num_samples` samples (Python int).

        Before `num_frames` cropping; librosa's frame count for the same signal.
        """
        padded = int(num_samples) + 2 * self._padding
        if padded < self.fft_length:
            return 0
        return 1 + (padded - self.fft_length) // self.frame_step

    def frame_lengths(self, lengths):
        """Valid frame counts `[batch]` (int32 tensor) for sample `lengths`.

        Capped at `num_frames` when it is set: the number of frames of each
        output row that are not `pad_value`.
        """
        frames = self._valid_frames(ops.cast(lengths, "int32"))
        if self.num_frames is not None:
            frames = ops.minimum(frames, self.num_frames)
        return frames

    def call(self, inputs):
        waveform, lengths = waveform_batch(inputs, self.compute_dtype)

        # STFT exactly as librosa (center with constant padding; the window of
        # frame_length samples centred in fft_length, which keras.ops.stft does).
        if self._padding:
            waveform = ops.pad(waveform, ((0, 0), (self._padding, self._padding)))
        real, imag = ops.stft(
            waveform,
            sequence_length=self.frame_length,
            sequence_stride=self.frame_step,
            fft_length=self.fft_length,
            window=self._window_values,
            center=False,
        )
        power = ops.square(real) + ops.square(imag)
        mel_power = ops.matmul(power, ops.convert_to_tensor(self._mel_matrix))

        total_frames = ops.shape(mel_power)[1]
        valid_frames = self._valid_frames(lengths)
        # Masked statistics reduce over the mel axis first (a contiguous, cheap
        # reduction), then over the valid frames of [batch, frames] only.
        frame_mask = ops.arange(total_frames, dtype="int32")[None, :] < valid_frames[:, None]

        log_spec = ops.log(ops.maximum(mel_power, self.amin)) * _DB_PER_NEPER
        if self.reference == "max":
            frame_peak = ops.max(mel_power, axis=2)
            peak_power = ops.max(ops.where(frame_mask, frame_peak, 0.0), axis=1)
            reference_db = 10.0 * ops.log10(ops.maximum(peak_power, self.amin))
            log_spec = log_spec - reference_db[:, None, None]
        else:
            reference_db = 10.0 * float(np.log10(max(self.amin, self.reference)))
            if reference_db != 0.0:
                log_spec = log_spec - reference_db
        peak = None
        if self.top_db is not None or self.normalization == "minmax":
            peak = _masked_max(ops.max(log_spec, axis=2), frame_mask)[:, None, None]
        if self.top_db is not None:
            log_spec = ops.maximum(log_spec, peak - self.top_db)
        if self.normalization == "minmax":
            # The peak survives top_db clipping, so it is still the maximum.
            low = -_masked_max(-ops.min(log_spec, axis=2), frame_mask)[:, None, None]
            value_range = peak - low
            scale = ops.where(value_range > 0, 1.0 / ops.maximum(value_range, 1e-12), 0.0)
            log_spec = (log_spec - low) * scale
        elif self.normalization == "standard":
            count = ops.cast(ops.maximum(valid_frames, 1) * self.num_mels, log_spec.dtype)
            frame_weights = ops.cast(frame_mask, log_spec.dtype)
            total = ops.sum(ops.sum(log_spec, axis=2) * frame_weights, axis=1)
            mean = (total / count)[:, None, None]
            centered = log_spec - mean
            squares = ops.sum(ops.sum(ops.square(centered), axis=2) * frame_weights, axis=1)
            std = ops.sqrt(squares / count)[:, None, None]
            log_spec = centered * ops.where(std > 1e-6, 1.0 / ops.maximum(std, 1e-6), 1.0)

        outputs = ops.where(frame_mask[:, :, None], log_spec, self.pad_value)
        if self.num_frames is not None:
            missing = ops.maximum(self.num_frames - total_frames, 0)
            outputs = ops.pad(
                outputs, ((0, 0), (0, missing), (0, 0)), constant_values=self.pad_value
            )
            outputs = outputs[:, : self.num_frames, :]
            outputs = ops.reshape(outputs, (-1, self.num_frames, self.num_mels))
        return outputs

    def _valid_frames(self, lengths):
        padded = lengths + 2 * self._padding
        return ops.where(
            padded >= self.fft_length,
            1 + ops.floor_divide(padded - self.fft_length, self.frame_step),
            ops.zeros_like(padded),
        )

    def compute_output_shape(self, inputs_shape):
        waveform_shape = waveform_input_shape(inputs_shape)
        batch_size = waveform_shape[0]
        if self.num_frames is not None:
            frames = self.num_frames
        elif waveform_shape[1] is None:
            frames = None
        else:
            frames = self.num_frames_for_samples(waveform_shape[1])
        return (batch_size, frames, self.num_mels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "fft_length": self.fft_length,
                "num_mels": self.num_mels,
                "min_frequency": self.min_frequency,
                "max_frequency": self.max_frequency,
                "window": self.window,
                "center": self.center,
                "amin": self.amin,
                "reference": self.reference,
                "top_db": self.top_db,
                "normalization": self.normalization,
                "num_frames": self.num_frames,
                "pad_value": self.pad_value,
            }
        )
        return config
