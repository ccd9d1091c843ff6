"""Tests of ser_keras.features.logmel: librosa equivalence, presets, masking, export."""

import keras
import librosa
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.features.logmel import FRONTEND_PRESETS, LogMel
from tests.helpers import speech_like

# float32 STFT noise is ~0.0005 dB on bins within 80 dB of the peak (measured
# on EMO-DB); 0.01 dB leaves a 20x margin and still catches any real mismatch
# (a wrong window, padding or filterbank moves bins by tenths of a dB or more).
TOLERANCE_DB = 0.01


def _librosa_logmel(layer, waveform, ref=1.0):
    power = librosa.feature.melspectrogram(
        y=waveform,
        sr=layer.sample_rate,
        n_fft=layer.fft_length,
        hop_length=layer.frame_step,
        win_length=layer.frame_length,
        window=layer.window,
        center=layer.center,
        n_mels=layer.num_mels,
        fmin=layer.min_frequency,
        fmax=layer.max_frequency,
    )
    return librosa.power_to_db(power, ref=ref, top_db=layer.top_db).T


def _pad_batch(waveforms, fill=0.0):
    lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
    batch = np.full((len(waveforms), lengths.max()), fill, dtype=np.float32)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    return batch, lengths


def _max_difference_db(layer, waveforms, ref=1.0):
    """Largest |layer - librosa| (dB) over bins within 80 dB of each utterance's peak."""
    batch, lengths = _pad_batch(waveforms)
    outputs = np.asarray(layer((batch, lengths)))
    worst = 0.0
    for row, waveform in enumerate(waveforms):
        expected = _librosa_logmel(layer, waveform, ref=ref)
        frames = layer.num_frames_for_samples(len(waveform))
        assert expected.shape[0] == frames
        actual = outputs[row, :frames]
        keep = expected > expected.max() - 80.0  # float32 noise only below that
        worst = max(worst, float(np.abs(actual - expected)[keep].max()))
        assert np.all(outputs[row, frames:] == layer.pad_value)
    return worst


@pytest.mark.parametrize(
    "preset, overrides",
    [("fu2021", {}), ("latif", {}), ("latif", {"center": False, "top_db": None})],
)
def test_matches_librosa_on_speech_like_signals(preset, overrides):
    layer = LogMel.from_preset(preset, normalization=None, num_frames=None, **overrides)
    waveforms = [
        speech_like(1.3, f0=120.0, seed=1),
        speech_like(0.77, f0=210.0, seed=2),
        speech_like(2.0, f0=95.0, seed=3)[:31_111],
    ]
    assert _max_difference_db(layer, waveforms) < TOLERANCE_DB


def test_reference_max_matches_librosa():
    layer = LogMel.from_preset("latif", normalization=None, reference="max")
    waveforms = [speech_like(0.9, seed=4), speech_like(0.5, f0=180.0, seed=5)]
    assert _max_difference_db(layer, waveforms, ref=np.max) < TOLERANCE_DB


@pytest.mark.real_data
@pytest.mark.parametrize("preset", ["fu2021", "latif"])
def test_matches_librosa_on_emodb(shared_data, preset):
    import soundfile
    import soxr

    files = sorted((shared_data / "emodb" / "wav").glob("*.wav"))
    if len(files) < 6:
        pytest.skip(f"EMO-DB wav files not found under {shared_data / 'emodb' / 'wav'}")
    waveforms = []
    for path in files[::90][:6]:
        samples, rate = soundfile.read(str(path), dtype="float32")
        waveforms.append(soxr.resample(samples, rate, 16000).astype(np.float32))
    # Different true lengths in one padded batch (the EMO-DB copies here are 2 s).
    waveforms = [w[: len(w) - 3_000 * index] for index, w in enumerate(waveforms)]
    layer = LogMel.from_preset(preset, normalization=None, num_frames=None)
    assert _max_difference_db(layer, waveforms) < TOLERANCE_DB


def test_fu2021_fixed_length_padding_and_cropping():
    layer = LogMel.from_preset("fu2021")
    short = speech_like(1.0, seed=6)  # 1 + 16000 // 400 = 41 frames
    long = speech_like(8.0, seed=7)  # 321 frames, cut to 256
    batch, lengths = _pad_batch([short, long])
    outputs = np.asarray(layer((batch, lengths)))
    assert outputs.shape == (2, 256, 128)
    assert np.all(outputs[0, 41:] == -1.0)
    valid = outputs[0, :41]
    assert valid.min() == pytest.approx(0.0) and valid.max() == pytest.approx(1.0)
    assert np.all(outputs[1] >= 0.0)
    # Cropping keeps the first 256 frames of the whole utterance's features.
    uncropped = np.asarray(LogMel.from_preset("fu2021", num_frames=None)(long[None]))
    assert uncropped.shape == (1, 321, 128)
    np.testing.assert_allclose(outputs[1], uncropped[0, :256], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(layer.frame_lengths(lengths)), [41, 256])


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"normalization": "standard"},
        {"normalization": None, "reference": "max"},
        {"num_frames": None, "pad_value": 0.0},
    ],
)
def test_padding_never_leaks_into_valid_frames(overrides):
    layer = LogMel.from_preset("fu2021", **overrides)
    short = speech_like(0.6, f0=200.0, seed=8)
    long = speech_like(2.5, seed=9)
    # Non-zero garbage beyond the true length must be ignored too.
    batch, lengths = _pad_batch([short, long], fill=0.7)
    batched = np.asarray(layer((batch, lengths)))
    alone = np.asarray(layer(short[None]))
    frames = layer.num_frames_for_samples(len(short))
    np.testing.assert_allclose(batched[0, :frames], alone[0, :frames], atol=1e-5)
    assert np.all(batched[0, frames:] == layer.pad_value)


def test_lengths_default_to_full_waveform_and_dict_input():
    layer = LogMel.from_preset("latif_6s")
    batch, lengths = _pad_batch([speech_like(0.5, seed=10), speech_like(0.5, seed=11)])
    without = np.asarray(layer(batch))
    with_tuple = np.asarray(layer((batch, lengths)))
    with_dict = np.asarray(layer({"waveform": batch, "lengths": lengths}))
    assert without.shape == (2, 600, 128)
    np.testing.assert_allclose(without, with_tuple, atol=1e-6)
    np.testing.assert_allclose(without, with_dict, atol=1e-6)


def test_frame_counts_match_librosa():
    for preset in ("fu2021", "latif"):
        layer = LogMel.from_preset(preset, num_frames=None)
        for samples in (0, 1, 399, 400, 401, 16000, 31_999):
            expected = librosa.util.frame(
                np.pad(np.zeros(samples), layer.fft_length // 2),
                frame_length=layer.fft_length,
                hop_length=layer.frame_step,
            ).shape[1]
            assert layer.num_frames_for_samples(samples) == expected


def test_presets_hold_the_papers_numbers():
    fu = FRONTEND_PRESETS["fu2021"]
    assert (fu["sample_rate"], fu["fft_length"], fu["frame_step"], fu["num_mels"]) == (
        16000,
        800,
        400,
        128,
    )
    assert (fu["num_frames"], fu["pad_value"]) == (256, -1.0)
    latif = FRONTEND_PRESETS["latif"]
    assert (latif["frame_length"], latif["frame_step"], latif["window"]) == (400, 160, "hamming")
    assert (latif["min_frequency"], latif["max_frequency"], latif["num_frames"]) == (
        0.0,
        8000.0,
        None,
    )
    assert FRONTEND_PRESETS["latif_6s"]["num_frames"] == 600


def test_config_round_trip_and_overrides():
    layer = LogMel.from_preset("latif", num_frames=300, top_db=None, name="frontend")
    config = layer.get_config()
    clone = LogMel.from_config(config)
    assert clone.get_config() == config
    assert config["num_frames"] == 300 and config["top_db"] is None
    waveform = speech_like(0.4, seed=12)[None]
    np.testing.assert_array_equal(np.asarray(layer(waveform)), np.asarray(clone(waveform)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fft_length": 256, "frame_length": 400},
        {"normalization": "global"},
        {"max_frequency": 9000.0},
        {"window": "no-such-window"},
        {"num_frames": 0},
        {"reference": "min"},
        {"frame_step": 0},
    ],
)
def test_invalid_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        LogMel(**kwargs)


def test_unknown_preset_names_the_value():
    with pytest.raises(ValueError, match="no_such_preset"):
        LogMel.from_preset("no_such_preset")


def test_functional_model_keras_file_round_trip(tmp_path):
    waveform = keras.Input(shape=(None,), name="waveform")
    lengths = keras.Input(shape=(), dtype="int32", name="lengths")
    features = LogMel.from_preset("fu2021", name="logmel")((waveform, lengths))
    assert tuple(features.shape) == (None, 256, 128)
    pooled = keras.layers.GlobalAveragePooling1D()(features)
    outputs = keras.layers.Dense(3, activation="softmax")(pooled)
    model = keras.Model({"waveform": waveform, "lengths": lengths}, outputs)

    batch, batch_lengths = _pad_batch([speech_like(0.7, seed=13), speech_like(1.1, seed=14)])
    inputs = {"waveform": batch, "lengths": batch_lengths}
    expected = model.predict(inputs, verbose=0)
    path = tmp_path / "frontend_model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(inputs, verbose=0), expected, atol=1e-6)
    assert restored.get_layer("logmel").get_config() == model.get_layer("logmel").get_config()


def test_saved_model_with_dynamic_batch_and_length(tmp_path):
    layer = LogMel.from_preset("fu2021")
    module = tf.Module()
    module.layer = layer
    module.serve = tf.function(
        lambda waveform, lengths: layer((waveform, lengths)),
        input_signature=[
            tf.TensorSpec([None, None], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ],
    )
    tf.saved_model.save(module, str(tmp_path / "frontend"))
    restored = tf.saved_model.load(str(tmp_path / "frontend"))
    for seconds in ((0.5,), (0.3, 1.2, 0.9)):
        batch, lengths = _pad_batch([speech_like(s, seed=15) for s in seconds])
        expected = np.asarray(layer((batch, lengths)))
        actual = restored.serve(tf.constant(batch), tf.constant(lengths)).numpy()
        np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_computes_in_float32_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = LogMel.from_preset("fu2021")
        outputs = layer(speech_like(0.3, seed=16)[None])
    finally:
        keras.config.set_dtype_policy(previous)
    assert outputs.dtype == "float32"
