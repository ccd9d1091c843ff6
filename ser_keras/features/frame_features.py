"""Frame-level acoustic features of Kim et al. (2017) as a Keras layer.

Kim et al. feed a shared DNN or LSTM with 32 features per frame: F0, voicing
probability, zero-crossing rate, 12 MFCC and energy (16 low-level
descriptors) and their first time derivatives, from 25 ms windows every
10 ms of gain-normalised utterances (Section 4.1). `FrameFeatures` computes
them from a waveform batch with TensorFlow ops, so that the same layer serves
feature precomputation (`ser_keras.data.pipeline.compute_features`) and the
exported model (waveform in, emotion posteriors out).

Feature order (`FEATURE_NAMES`): `f0`, `voicing_probability`,
`zero_crossing_rate`, `mfcc_1` ... `mfcc_12`, `log_energy`, then `delta_<name>`
of each in the same order.

Computation, per utterance (samples at or beyond its true length are zero, so
a padded batch gives each utterance's own features):

1. Gain normalisation: the waveform is scaled so that its peak absolute
   sample is 1 (`gain_normalization="peak"`). The paper says only "we
   normalised the gain of utterances"; peak normalisation is our reading.
2. Frames of `frame_length` samples (25 ms) every `frame_step` samples
   (10 ms), starting at sample 0 (no centring); an utterance of `n` samples
   has `1 + (n - frame_length) // frame_step` frames (0 when shorter than a
   frame).
3. MFCC 1-12: the log-mel spectrum of the Hamming-windowed frame (power
   spectrum, 26 Slaney mel bands over 0-8 kHz, `10 log10` in dB; the package's
   `LogMel` layer) followed by an orthonormal DCT-II, keeping coefficients
   1-12 (librosa's `mfcc` on the same log-mel spectrogram). No pre-emphasis
   and no liftering: the paper gives neither, and the models standardise each
   feature, which makes a liftering (a per-coefficient scale) a no-op.
4. Energy: `10 log10(mean(frame**2))` (log RMS energy in dB, floored at
   `amin`), on the unwindowed frame.
5. Zero-crossing rate: the fraction of sign changes in the frame, as
   `librosa.feature.zero_crossing_rate` (`center=False`; samples within 1e-10
   of 0 count as positive).
6. F0 and voicing probability: an autocorrelation pitch tracker after
   Boersma (1993), in TensorFlow ops (no pitch tracker of the paper's
   toolkit is available as one). For each frame a `pitch_frame_length`
   window (40 ms: an autocorrelation needs at least two periods of the lowest
   F0, which 25 ms would limit to 80 Hz) centred on the 25 ms frame is mean-
   removed and Hann-windowed; its autocorrelation (by FFT) is normalised by
   lag 0 and divided by the window's own normalised autocorrelation. Among
   the local maxima with lags for `min_f0`-`max_f0` the one with the best
   `r(lag) - octave_cost * log2(min_f0 * lag / sample_rate)` wins; parabolic
   interpolation refines its lag and height. The voicing probability is that
   height clipped to [0, 1]; a frame is voiced when it is at least
   `voicing_threshold` and the frame's peak amplitude is at least
   `silence_threshold` times the utterance's peak (Praat's defaults 0.45 and
   0.03). F0 is `sample_rate / lag` in Hz for voiced frames, 0 otherwise.
   Deviation from a full Praat/openSMILE tracker: each frame is decided on its
   own (no Viterbi path over candidates, no contour smoothing).
7. Deltas: the regression `d_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum_n n^2)`
   over `delta_width` (2) frames each side, the utterance's first and last
   frames repeated at its edges (HTK's formula; librosa's `delta` with
   `width=5` in the interior).
8. Frames at or beyond an utterance's frame count are set to `pad_value` in
   all 32 features. A real frame never has all 32 features equal to exactly
   0.0 (its log energy is a dB value of its mean square, and the MFCC of a
   non-flat spectrum are not all 0), so with the default `pad_value=0.0`
   models can tell padding from speech by the features alone
   (`ser_keras.models.kim_mtl` does).

Reference:
    J. Kim, G. Englebienne, K. P. Truong, V. Evers, "Towards speech emotion
    recognition 'in the wild' using aggregated corpora and deep multi-task
    learning", Interspeech 2017, Section 4.1. P. Boersma, "Accurate short-term
    analysis of the fundamental frequency and the harmonics-to-noise ratio of
    a sampled sound", IFA Proceedings 17, 1993 (the autocorrelation method).
"""

import keras
import numpy as np
import tensorflow as tf  # tf.signal.frame only (framing of the waveform).
from keras import ops

from ser_keras.features.logmel import LogMel, waveform_batch, waveform_input_shape
from ser_keras.utils.presets import preset_config
from ser_keras.utils.validation import positive_int

GAIN_NORMALIZATIONS = (None, "peak")

_BASE_NAMES = ("f0", "voicing_probability", "zero_crossing_rate")

FRAME_FEATURE_PRESETS = {
    # Kim et al. (paper 001), Section 4.1: 25 ms windows every 10 ms, gain-
    # normalised utterances; F0, voicing probability, ZCR, 12 MFCC + energy and
    # their first derivatives = 32 features. Not stated in the paper, our
    # choices (see the module docstring): peak gain normalisation, Hamming
    # window and 26 Slaney mel bands over 0-8 kHz for the MFCC, a 40 ms Hann
    # window for the autocorrelation pitch tracker with Praat's default floor
    # (75 Hz), a 500 Hz ceiling, Praat's voicing (0.45), silence (0.03) and
    # octave-cost (0.01) settings, deltas over +-2 frames.
    "kim2017": {
        "sample_rate": 16000,
        "frame_length": 400,
        "frame_step": 160,
        "num_mfcc": 12,
        "num_mels": 26,
        "min_frequency": 0.0,
        "max_frequency": 8000.0,
        "window": "hamming",
        "gain_normalization": "peak",
        "pitch_frame_length": 640,
        "min_f0": 75.0,
        "max_f0": 500.0,
        "voicing_threshold": 0.45,
        "silence_threshold": 0.03,
        "octave_cost": 0.01,
        "delta_width": 2,
        "amin": 1e-10,
        "pad_value": 0.0,
    },
}

# Finite stand-in for -inf in masked maxima.
_NEG = -1e30


def feature_names(num_mfcc=12):
    """Names of the `2 * (num_mfcc + 4)` features, in the layer's output order."""
    base = _BASE_NAMES + tuple(f"mfcc_{k}" for k in range(1, num_mfcc + 1)) + ("log_energy",)
    return base + tuple(f"delta_{name}" for name in base)


FEATURE_NAMES = feature_names(12)


def _dct_matrix(num_mels, num_mfcc):
    """`[num_mels, num_mfcc]` orthonormal DCT-II basis for coefficients 1..num_mfcc."""
    mels = np.arange(num_mels)[:, None]
    orders = np.arange(1, num_mfcc + 1)[None, :]
    basis = np.sqrt(2.0 / num_mels) * np.cos(np.pi * orders * (2 * mels + 1) / (2 * num_mels))
    return basis.astype("float32")


@keras.saving.register_keras_serializable(package="ser_keras")
class FrameFeatures(keras.layers.Layer):
    """The 32 frame features of Kim et al. (2017) from a waveform batch.

    Input: a float waveform batch `[batch, samples]`, or `(waveform, lengths)`
    / `{"waveform": ..., "lengths": ...}` with the true sample counts
    `[batch]` (samples beyond them are ignored). Output: float32
    `[batch, frames, num_features]`, `frames` the longest utterance's frame
    count; frames beyond an utterance's own count hold `pad_value`. With the
    defaults, `num_features = 32` in the order of `FEATURE_NAMES`.

    The layer has no weights: its constants (windows, mel filterbank, DCT) are
    computed once in the constructor. It computes in float32.

    Args:
        sample_rate: Sampling rate of the input in Hz.
        frame_length: Analysis window in samples (25 ms = 400 at 16 kHz).
        frame_step: Hop between frames in samples (10 ms = 160).
        num_mfcc: MFCC coefficients kept (1..num_mfcc; c0 is left out, the
            energy stands for it).
        num_mels: Mel bands of the MFCC's filterbank.
        min_frequency: Lowest mel band edge in Hz.
        max_frequency: Highest mel band edge in Hz (`None`: Nyquist).
        window: Window of the MFCC analysis (`librosa.filters.get_window` name).
        gain_normalization: `"peak"` (scale each utterance to peak 1) or None.
        pitch_frame_length: Window of the pitch tracker in samples, centred on
            each frame; at least `frame_length` and long enough for two
            periods of `min_f0`.
        min_f0: Lowest F0 searched, in Hz.
        max_f0: Highest F0 searched, in Hz.
        voicing_threshold: Voicing probability from which a frame is voiced.
        silence_threshold: Frames whose peak amplitude is below this fraction
            of the utterance's peak are unvoiced.
        octave_cost: Preference for higher F0 candidates, per octave.
        delta_width: Frames on each side in the delta regression.
        amin: Floor of the powers before the logarithms.
        pad_value: Value of all features of frames beyond an utterance's end.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Reference:
        Kim et al., "Towards speech emotion recognition 'in the wild' using
        aggregated corpora and deep multi-task learning", Interspeech 2017,
        Section 4.1; Boersma, IFA Proceedings 17, 1993.
    """

    def __init__(
        self,
        sample_rate=16000,
        frame_length=400,
        frame_step=160,
        num_mfcc=12,
        num_mels=26,
        min_frequency=0.0,
        max_frequency=None,
        window="hamming",
        gain_normalization="peak",
        pitch_frame_length=640,
        min_f0=75.0,
        max_f0=500.0,
        voicing_threshold=0.45,
        silence_threshold=0.03,
        octave_cost=0.01,
        delta_width=2,
        amin=1e-10,
        pad_value=0.0,
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        sample_rate = positive_int("sample_rate", sample_rate)
        frame_length = positive_int("frame_length", frame_length)
        frame_step = positive_int("frame_step", frame_step)
        num_mfcc = positive_int("num_mfcc", num_mfcc)
        num_mels = positive_int("num_mels", num_mels)
        pitch_frame_length = positive_int("pitch_frame_length", pitch_frame_length)
        delta_width = positive_int("delta_width", delta_width)
        if num_mfcc >= num_mels:
            raise ValueError(
                f"`num_mfcc` must be smaller than `num_mels`. Received: num_mfcc={num_mfcc}, "
                f"num_mels={num_mels}"
            )
        if gain_normalization not in GAIN_NORMALIZATIONS:
            raise ValueError(
                f"`gain_normalization` must be one of {GAIN_NORMALIZATIONS}. "
                f"Received: gain_normalization={gain_normalization!r}"
            )
        if pitch_frame_length < frame_length or (pitch_frame_length - frame_length) % 2:
            raise ValueError(
                "`pitch_frame_length` must be >= `frame_length` and differ from it by an even "
                f"number of samples. Received: pitch_frame_length={pitch_frame_length}, "
                f"frame_length={frame_length}"
            )
        if not 0.0 < float(min_f0) < float(max_f0) < sample_rate / 2.0:
            raise ValueError(
                "Expected 0 < min_f0 < max_f0 < sample_rate / 2. Received: "
                f"min_f0={min_f0}, max_f0={max_f0}, sample_rate={sample_rate}"
            )
        min_lag = int(np.floor(sample_rate / float(max_f0)))
        max_lag = int(np.ceil(sample_rate / float(min_f0)))
        if min_lag < 2 or max_lag + 2 > pitch_frame_length:
            raise ValueError(
                f"The pitch range min_f0={min_f0} to max_f0={max_f0} Hz needs lags "
                f"{min_lag}-{max_lag} samples; "
                f"`pitch_frame_length`={pitch_frame_length} must exceed {max_lag + 1} "
                "(and max_f0 must stay below sample_rate / 2)."
            )
        for name, value in (
            ("voicing_threshold", voicing_threshold),
            ("silence_threshold", silence_threshold),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value!r}")
        if float(octave_cost) < 0:
            raise ValueError(f"`octave_cost` must be >= 0. Received: octave_cost={octave_cost!r}")
        if float(amin) <= 0:
            raise ValueError(f"`amin` must be positive. Received: amin={amin!r}")

        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.num_mfcc = num_mfcc
        self.num_mels = num_mels
        self.min_frequency = float(min_frequency)
        self.max_frequency = None if max_frequency is None else float(max_frequency)
        self.window = window
        self.gain_normalization = gain_normalization
        self.pitch_frame_length = pitch_frame_length
        self.min_f0 = float(min_f0)
        self.max_f0 = float(max_f0)
        self.voicing_threshold = float(voicing_threshold)
        self.silence_threshold = float(silence_threshold)
        self.octave_cost = float(octave_cost)
        self.delta_width = delta_width
        self.amin = float(amin)
        self.pad_value = float(pad_value)

        # The log-mel spectrum of the MFCC (the package's one log-mel
        # implementation): uncentred frames, FFT of the frame length, dB.
        self.log_mel = LogMel(
            sample_rate=sample_rate,
            frame_length=frame_length,
            frame_step=frame_step,
            fft_length=frame_length,
            num_mels=num_mels,
            min_frequency=min_frequency,
            max_frequency=max_frequency,
            window=window,
            center=False,
            amin=amin,
            reference=1.0,
            top_db=None,
            normalization=None,
            num_frames=None,
            pad_value=0.0,
            name="log_mel",
        )
        self._dct = _dct_matrix(num_mels, num_mfcc)
        # Pitch tracker constants.
        self._min_lag = min_lag
        self._max_lag = max_lag
        self._pitch_offset = (pitch_frame_length - frame_length) // 2
        self._pitch_fft_length = int(2 ** np.ceil(np.log2(pitch_frame_length + max_lag + 2)))
        pitch_window = np.hanning(pitch_frame_length + 2)[1:-1]  # no zero end points
        window_acf = np.correlate(pitch_window, pitch_window, mode="full")[pitch_frame_length - 1 :]
        self._pitch_window = pitch_window.astype("float32")
        self._window_acf = (window_acf[: max_lag + 2] / window_acf[0]).astype("float32")
        lags = np.arange(max_lag + 2, dtype=np.float64)
        with np.errstate(divide="ignore"):
            bonus = -self.octave_cost * np.log2(np.maximum(lags, 1.0) * self.min_f0 / sample_rate)
        self._octave_bonus = bonus.astype("float32")
        lag_mask = (lags >= min_lag) & (lags <= max_lag)
        self._lag_mask = lag_mask
        self.built = True

    @classmethod
    def from_preset(cls, preset, **overrides):
        """Builds the layer of a preset in `FRAME_FEATURE_PRESETS` (e.g. `"kim2017"`).

        Args:
            preset: Preset name.
            **overrides: Constructor arguments replacing the preset's.
        """
        config = preset_config(
            FRAME_FEATURE_PRESETS, preset, overrides, kind="frame-feature preset"
        )
        return cls(**config)

    # ------------------------------------------------------------ geometry
    @property
    def num_features(self):
        """Features per frame: `2 * (num_mfcc + 4)` (32 with the defaults)."""
        return 2 * (self.num_mfcc + 4)

    @property
    def feature_names(self):
        """The output features' names, in order."""
        return feature_names(self.num_mfcc)

    @property
    def num_frames(self):
        """None: the output has each batch's own number of frames (variable length)."""
        return None

    def num_frames_for_samples(self, num_samples):
        """Frame count of an utterance of `num_samples` samples (Python int)."""
        num_samples = int(num_samples)
        if num_samples < self.frame_length:
            return 0
        return 1 + (num_samples - self.frame_length) // self.frame_step

    def frame_lengths(self, lengths):
        """Valid frame counts `[batch]` (int32 tensor) for sample `lengths`."""
        lengths = ops.cast(lengths, "int32")
        return ops.where(
            lengths >= self.frame_length,
            1 + ops.floor_divide(lengths - self.frame_length, self.frame_step),
            ops.zeros_like(lengths),
        )

    # ---------------------------------------------------------------- call
    def call(self, inputs):
        waveform, lengths = waveform_batch(inputs, "float32")
        num_samples = ops.shape(waveform)[1]
        # At least one frame's worth of samples, so that every op has a frame to work on
        # (an utterance shorter than a frame still has 0 valid frames).
        waveform = ops.pad(waveform, ((0, 0), (0, self.frame_length)))
        waveform = waveform[:, : ops.maximum(num_samples, self.frame_length)]

        peak = ops.max(ops.abs(waveform), axis=1, keepdims=True)  # [B, 1]
        if self.gain_normalization == "peak":
            waveform = waveform / ops.where(peak > 0, peak, ops.ones_like(peak))
            peak = ops.where(peak > 0, ops.ones_like(peak), peak)

        frames = tf.signal.frame(waveform, self.frame_length, self.frame_step)  # [B, T, L]
        num_frames = ops.shape(frames)[1]
        valid_frames = self.frame_lengths(lengths)
        frame_mask = ops.arange(num_frames, dtype="int32")[None, :] < valid_frames[:, None]

        log_energy = 10.0 * ops.log10(ops.maximum(ops.mean(ops.square(frames), axis=-1), self.amin))
        zero_crossing_rate = self._zero_crossing_rate(frames)
        log_mel = self.log_mel(waveform)  # [B, T, num_mels], the same frames
        mfcc = ops.matmul(log_mel, ops.convert_to_tensor(self._dct))
        f0, voicing = self._pitch(waveform, num_frames, peak)

        base = ops.concatenate(
            [
                f0[..., None],
                voicing[..., None],
                zero_crossing_rate[..., None],
                mfcc,
                log_energy[..., None],
            ],
            axis=-1,
        )
        deltas = self._deltas(base, valid_frames)
        features = ops.concatenate([base, deltas], axis=-1)
        return ops.where(frame_mask[..., None], features, self.pad_value)

    def _zero_crossing_rate(self, frames):
        # librosa.zero_crossings: |x| <= 1e-10 counts as 0, and 0 as positive.
        negative = ops.logical_and(frames < 0, ops.abs(frames) > 1e-10)
        changes = ops.not_equal(negative[..., 1:], negative[..., :-1])
        return ops.sum(ops.cast(changes, "float32"), axis=-1) / float(self.frame_length)

    def _pitch(self, waveform, num_frames, utterance_peak):
        """F0 (Hz, 0 when unvoiced) and voicing probability, each `[B, T]`."""
        offset = self._pitch_offset
        padded = ops.pad(waveform, ((0, 0), (offset, offset + self.pitch_frame_length)))
        frames = tf.signal.frame(padded, self.pitch_frame_length, self.frame_step)
        frames = frames[:, :num_frames]  # [B, T, P], centred on the analysis frames
        frame_peak = ops.max(ops.abs(frames), axis=-1)
        frames = frames - ops.mean(frames, axis=-1, keepdims=True)
        frames = frames * ops.convert_to_tensor(self._pitch_window)
        real, imag = ops.rfft(frames, fft_length=self._pitch_fft_length)
        power = ops.square(real) + ops.square(imag)
        acf = ops.irfft((power, ops.zeros_like(power)), fft_length=self._pitch_fft_length)
        acf = acf[..., : self._max_lag + 2]  # lags 0 .. max_lag + 1
        energy = acf[..., :1]
        normalised = ops.where(
            energy > 0, acf / ops.where(energy > 0, energy, ops.ones_like(energy)), 0.0
        )
        corrected = normalised / ops.convert_to_tensor(self._window_acf)

        # Local maxima inside the lag range (lag 0 and max_lag + 1 are only neighbours).
        previous = corrected[..., :-2]
        current = corrected[..., 1:-1]
        following = corrected[..., 2:]
        is_peak = ops.logical_and(current >= previous, current > following)
        in_range = ops.convert_to_tensor(self._lag_mask[1:-1])
        is_candidate = ops.logical_and(is_peak, in_range)
        score = current + ops.convert_to_tensor(self._octave_bonus[1:-1])
        score = ops.where(is_candidate, score, _NEG)
        best = ops.argmax(score, axis=-1)  # index into lags 1 .. max_lag
        has_peak = ops.max(score, axis=-1) > _NEG / 2

        best = ops.cast(best, "int32")[..., None]
        left = ops.take_along_axis(previous, best, axis=-1)[..., 0]
        centre = ops.take_along_axis(current, best, axis=-1)[..., 0]
        right = ops.take_along_axis(following, best, axis=-1)[..., 0]
        curvature = left - 2.0 * centre + right
        safe_curvature = ops.where(curvature < 0, curvature, -1.0)
        shift = ops.where(curvature < 0, 0.5 * (left - right) / safe_curvature, 0.0)
        shift = ops.clip(shift, -0.5, 0.5)
        lag = ops.cast(best[..., 0] + 1, "float32") + shift
        height = centre - 0.25 * (left - right) * shift

        voicing = ops.where(has_peak, ops.clip(height, 0.0, 1.0), 0.0)
        loud = frame_peak >= self.silence_threshold * utterance_peak
        voiced = ops.logical_and(
            ops.logical_and(has_peak, voicing >= self.voicing_threshold),
            ops.logical_and(loud, frame_peak > 0),
        )
        f0 = ops.where(voiced, self.sample_rate / ops.maximum(lag, 1.0), 0.0)
        return f0, voicing

    def _deltas(self, base, valid_frames):
        num_frames = ops.shape(base)[1]
        time = ops.arange(num_frames, dtype="int32")[None, :]  # [1, T]
        last = ops.maximum(valid_frames - 1, 0)[:, None]  # [B, 1]
        shape = ops.shape(base)
        total = ops.zeros_like(base)
        for offset in range(1, self.delta_width + 1):
            ahead = ops.minimum(time + offset, last)
            behind = ops.maximum(ops.minimum(time - offset, last), 0)
            ahead = ops.broadcast_to(ahead[..., None], shape)
            behind = ops.broadcast_to(behind[..., None], shape)
            total = total + offset * (
                ops.take_along_axis(base, ahead, axis=1) - ops.take_along_axis(base, behind, axis=1)
            )
        denominator = 2.0 * sum(n * n for n in range(1, self.delta_width + 1))
        return total / denominator

    # -------------------------------------------------------------- config
    def compute_output_shape(self, inputs_shape):
        waveform_shape = waveform_input_shape(inputs_shape)
        batch_size = waveform_shape[0]
        frames = None
        if len(waveform_shape) > 1 and waveform_shape[1] is not None:
            frames = self.num_frames_for_samples(waveform_shape[1])
        return (batch_size, frames, self.num_features)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "num_mfcc": self.num_mfcc,
                "num_mels": self.num_mels,
                "min_frequency": self.min_frequency,
                "max_frequency": self.max_frequency,
                "window": self.window,
                "gain_normalization": self.gain_normalization,
                "pitch_frame_length": self.pitch_frame_length,
                "min_f0": self.min_f0,
                "max_f0": self.max_f0,
                "voicing_threshold": self.voicing_threshold,
                "silence_threshold": self.silence_threshold,
                "octave_cost": self.octave_cost,
                "delta_width": self.delta_width,
                "amin": self.amin,
                "pad_value": self.pad_value,
            }
        )
        return config
