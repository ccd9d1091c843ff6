"""Tests of ser_keras.features.frame_features: librosa equivalence, pitch tracking, padding."""

import json

import keras
import librosa
import numpy as np
import pytest

from ser_keras.data.pipeline import compute_features
from ser_keras.features.frame_features import (
    FEATURE_NAMES,
    FRAME_FEATURE_PRESETS,
    FrameFeatures,
)
from tests.helpers import speech_like

SR = 16000
F0, VOICING, ZCR = 0, 1, 2
MFCC = slice(3, 15)
ENERGY = 15


@pytest.fixture(scope="module")
def layer():
    return FrameFeatures.from_preset("kim2017")


def _harmonic(f0_of_time, seconds=1.0, harmonics=5):
    """A harmonic tone whose F0 follows `f0_of_time(t)` (Hz), and the F0 at each frame centre."""
    t = np.arange(int(seconds * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0_of_time(t)) / SR
    signal = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def _features(layer, waveform):
    return keras.ops.convert_to_numpy(layer(waveform[None]))[0]


def test_preset_has_the_papers_frames_and_32_named_features(layer):
    preset = FRAME_FEATURE_PRESETS["kim2017"]
    assert (preset["frame_length"], preset["frame_step"]) == (400, 160)  # 25 ms / 10 ms at 16 kHz
    assert layer.num_features == 32 == len(FEATURE_NAMES) == len(set(FEATURE_NAMES))
    assert FEATURE_NAMES[:3] == ("f0", "voicing_probability", "zero_crossing_rate")
    assert FEATURE_NAMES[15] == "log_energy" and FEATURE_NAMES[16] == "delta_f0"
    assert layer.compute_output_shape((None, None)) == (None, None, 32)
    assert layer.compute_output_shape((3, 16000)) == (3, 98, 32)
    assert [layer.num_frames_for_samples(n) for n in (399, 400, 559, 560)] == [0, 1, 1, 2]


def test_mfcc_energy_zcr_and_deltas_match_librosa(layer):
    waveform = speech_like(1.2, f0=140.0, seed=3)
    features = _features(layer, waveform)
    normalised = waveform / np.abs(waveform).max()  # peak gain normalisation
    frames = dict(n_fft=400, hop_length=160, win_length=400, center=False)
    mel = librosa.feature.melspectrogram(
        y=normalised, sr=SR, window="hamming", n_mels=26, fmin=0.0, fmax=8000.0, **frames
    )
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=13)[1:].T
    assert features.shape == (mfcc.shape[0], 32)
    np.testing.assert_allclose(features[:, MFCC], mfcc, atol=2e-3)
    rms = librosa.feature.rms(y=normalised, frame_length=400, hop_length=160, center=False)[0]
    np.testing.assert_allclose(features[:, ENERGY], 10 * np.log10(rms**2), atol=1e-3)
    zcr = librosa.feature.zero_crossing_rate(
        normalised, frame_length=400, hop_length=160, center=False
    )[0]
    np.testing.assert_allclose(features[:, ZCR], zcr, atol=1e-6)
    deltas = librosa.feature.delta(features[:, :16].T, width=5).T
    np.testing.assert_allclose(features[2:-2, 16:], deltas[2:-2], atol=1e-3)
    # HTK edges: the first frame repeated, so its delta uses frames 0, 0, 1, 2.
    expected_first = (
        1 * (features[1, :16] - features[0, :16]) + 2 * (features[2, :16] - features[0, :16])
    ) / 10
    np.testing.assert_allclose(features[0, 16:], expected_first, atol=1e-3)


def test_gain_normalisation_makes_features_level_independent(layer):
    waveform = speech_like(0.8, seed=1)
    np.testing.assert_allclose(
        _features(layer, 0.05 * waveform), _features(layer, waveform), atol=2e-3
    )
    unnormalised = FrameFeatures.from_preset("kim2017", gain_normalization=None)
    quiet, loud = _features(unnormalised, 0.1 * waveform), _features(unnormalised, waveform)
    np.testing.assert_allclose(loud[:, ENERGY] - quiet[:, ENERGY], 20.0, atol=1e-3)


def test_pitch_tracks_a_glide_within_one_percent(layer):
    glide = _harmonic(lambda t: 100.0 + 200.0 * t)
    features = _features(layer, glide)
    centres = (np.arange(features.shape[0]) * 160 + 200) / SR
    truth = 100.0 + 200.0 * centres
    assert np.all(features[:, F0] > 0)
    assert np.max(np.abs(features[:, F0] - truth) / truth) < 0.01
    assert np.min(features[:, VOICING]) > 0.9


@pytest.mark.parametrize("f0", [80.0, 140.0, 230.0, 420.0])
def test_pitch_of_steady_tones(layer, f0):
    features = _features(layer, _harmonic(lambda t: np.full_like(t, f0), seconds=0.5))
    np.testing.assert_allclose(features[:, F0], f0, rtol=0.005)


def test_noise_and_silence_are_unvoiced(layer):
    noise = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    features = _features(layer, noise)
    assert np.mean(features[:, F0] > 0) < 0.05
    assert np.mean(features[:, VOICING]) < 0.45
    # A tone with a silent gap: the gap's frames are unvoiced with F0 = 0.
    tone = _harmonic(lambda t: np.full_like(t, 150.0), seconds=1.0)
    tone[6000:11000] = 0.0
    features = _features(layer, tone)
    gap = slice(6000 // 160 + 3, 11000 // 160 - 4)
    assert np.all(features[gap, F0] == 0.0) and np.all(features[gap, VOICING] == 0.0)
    assert np.all(np.abs(features[5:30, F0] - 150.0) < 1.5)


def test_padded_batch_gives_each_utterance_its_own_features(layer):
    waveforms = [speech_like(0.9, seed=0), speech_like(0.5, f0=210.0, seed=1)]
    lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
    batch = np.zeros((2, lengths.max() + 500), dtype=np.float32)
    batch[1] = 0.3  # garbage beyond the lengths must not matter
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    output = keras.ops.convert_to_numpy(layer((batch, lengths)))
    for row, waveform in enumerate(waveforms):
        alone = _features(layer, waveform)
        np.testing.assert_allclose(output[row, : len(alone)], alone, atol=1e-3)
        assert np.all(output[row, len(alone) :] == layer.pad_value)
        # No real frame is all pad_value (models find the padding by that).
        assert not np.any(np.all(alone == layer.pad_value, axis=-1))
    assert keras.ops.convert_to_numpy(layer.frame_lengths(lengths)).tolist() == [
        layer.num_frames_for_samples(n) for n in lengths
    ]


def test_compute_features_gives_variable_length_sequences(layer):
    waveforms = [speech_like(s, seed=i) for i, s in enumerate((0.3, 0.7, 0.02))]
    sequences = compute_features(layer, waveforms, batch_size=2)
    assert [s.shape for s in sequences] == [(28, 32), (68, 32), (0, 32)]
    np.testing.assert_allclose(sequences[1], _features(layer, waveforms[1]), atol=1e-3)


def test_config_round_trip_and_bad_arguments():
    layer = FrameFeatures.from_preset("kim2017", min_f0=60.0, name="frames")
    config = json.loads(json.dumps(layer.get_config()))
    clone = FrameFeatures.from_config(config)
    assert clone.get_config() == layer.get_config()
    waveform = speech_like(0.4, seed=2)
    np.testing.assert_array_equal(_features(clone, waveform), _features(layer, waveform))
    with pytest.raises(ValueError, match="min_f0"):
        FrameFeatures(min_f0=20.0)  # two periods of 20 Hz do not fit 40 ms
    with pytest.raises(ValueError, match="gain_normalization"):
        FrameFeatures(gain_normalization="rms")
    with pytest.raises(ValueError, match="bogus"):
        FrameFeatures.from_preset("bogus")
    with pytest.raises(ValueError, match="frame_step"):
        FrameFeatures(frame_step=0)
