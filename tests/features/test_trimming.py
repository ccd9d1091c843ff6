"""Tests of ser_keras.features.trimming: TrimSilence equals training's numpy trimming."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.audio.io import AudioError, AudioOptions, load_audio, trim_silence
from ser_keras.features.logmel import LogMel
from ser_keras.features.trimming import TrimSilence, trim_silence_batch
from tests.helpers import speech_like, write_wav

RATE = 16000


def _noise(seconds, level, seed):
    """Gaussian noise of RMS `level` (1e-4 is -80 dBFS)."""
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def _pad_batch(waveforms, fill=0.0):
    """Rows padded to the longest with `fill` (not zeros: the padding must be ignored)."""
    lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
    batch = np.full((len(waveforms), max(lengths.max(), 1)), fill, dtype=np.float32)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    return batch, lengths


def _assert_rows_match_trim_silence(layer, waveforms, fill=0.0):
    """Each row of the layer's output is `trim_silence` of that waveform alone."""
    batch, lengths = _pad_batch(waveforms, fill)
    trimmed, trimmed_lengths = layer((batch, lengths))
    trimmed, trimmed_lengths = np.asarray(trimmed), np.asarray(trimmed_lengths)
    starts, ends = (np.asarray(v) for v in layer.trim_bounds((batch, lengths)))
    expected_lengths = []
    for row, waveform in enumerate(waveforms):
        expected, (start, end) = trim_silence(
            waveform, RATE, layer.top_db, layer.frame_length, layer.hop_length
        )
        assert (starts[row], ends[row]) == (start, end), f"row {row}"
        assert trimmed_lengths[row] == end - start
        np.testing.assert_array_equal(trimmed[row, : end - start], expected)
        assert np.all(trimmed[row, end - start :] == 0.0)
        expected_lengths.append(end - start)
    assert trimmed.shape == (len(waveforms), max(expected_lengths))
    return starts, ends


@pytest.mark.parametrize(
    "lead, trail",
    [(0.5, 0.5), (0.3, 0.0), (0.0, 0.4), (0.0, 0.0), (0.123, 0.0777)],
)
@pytest.mark.parametrize("silence", ["zeros", "noise"])
def test_matches_trim_silence_with_silence_at_either_end(lead, trail, silence):
    speech = speech_like(1.0, f0=150.0, seed=1)
    if silence == "zeros":
        before, after = np.zeros(int(lead * RATE), np.float32), np.zeros(int(trail * RATE))
    else:  # -70 dBFS noise, 50 dB below the speech
        before, after = _noise(lead, 3e-4, 2), _noise(trail, 3e-4, 3)
    waveform = np.concatenate([before, speech, after]).astype(np.float32)
    starts, ends = _assert_rows_match_trim_silence(TrimSilence(), [waveform])
    # All of the silence goes but what the centred frames reach from the
    # speech (frame / 2 + hop = 768 samples at most).
    assert starts[0] >= len(before) - 768
    assert len(waveform) - ends[0] >= len(after) - 768


def test_padded_batch_of_different_lengths_gives_each_rows_own_trim():
    waveforms = [
        np.concatenate([np.zeros(5000), speech_like(0.8, seed=4), _noise(0.3, 1e-4, 5)]),
        speech_like(0.6, f0=220.0, seed=6)[:7777],
        np.concatenate([_noise(0.2, 3e-4, 7), speech_like(1.4, f0=95.0, seed=8)]),
        np.concatenate([np.zeros(4097), speech_like(0.3, seed=9), np.zeros(4099)]),
    ]
    waveforms = [w.astype(np.float32) for w in waveforms]
    layer = TrimSilence()
    # Padding of loud garbage: a layer reading it would see a loud tail.
    _assert_rows_match_trim_silence(layer, waveforms, fill=0.9)
    # A row's result does not depend on the rest of the batch.
    alone, alone_length = layer((waveforms[1][None], np.array([len(waveforms[1])])))
    batch, lengths = _pad_batch(waveforms, fill=0.9)
    trimmed, trimmed_lengths = layer((batch, lengths))
    n = int(alone_length[0])
    assert int(trimmed_lengths[1]) == n
    np.testing.assert_array_equal(np.asarray(trimmed)[1, :n], np.asarray(alone)[0, :n])


def test_a_long_utterance_matches_exactly():
    # 20 s with noise near the threshold: float32 cumulative sums over this
    # many samples end the utterance at 325120 instead of 325376 (measured;
    # the energies are float64 in the layer, as in numpy).
    waveform = np.concatenate(
        [_noise(0.3, 2e-3, 10), np.tile(speech_like(1.0, seed=11), 20), _noise(0.5, 2e-3, 12)]
    ).astype(np.float32)
    starts, ends = _assert_rows_match_trim_silence(TrimSilence(), [waveform])
    assert (starts[0], ends[0]) == (4608, 325376)


def test_frame_grid_edge_cases_match():
    # Lengths that are multiples of the hop (a last frame starting at the
    # end), one sample, and an odd frame length (other rounding). No silence
    # floor: some rows peak below it.
    speech = speech_like(0.5, seed=13)
    waveforms = [
        np.concatenate([np.zeros(256 * 20), speech[: 256 * 30]]),
        np.concatenate([speech[: 256 * 30], np.zeros(256 * 3)]),
        speech[:1],
        np.concatenate([np.zeros(1000), speech[:300], np.zeros(1000)]),
    ]
    waveforms = [w.astype(np.float32) for w in waveforms]
    _assert_rows_match_trim_silence(TrimSilence(silence_floor_db=None), waveforms)
    odd = TrimSilence(
        frame_length=1009 / RATE, hop_length=0.0107, top_db=30.0, silence_floor_db=None
    )
    assert (odd.frame_samples, odd.hop_samples) == (1009, 171)
    _assert_rows_match_trim_silence(odd, waveforms)


def test_all_silent_rows_trim_to_length_zero():
    speech = speech_like(0.5, seed=14)
    waveforms = [
        np.zeros(6000, np.float32),  # digital silence
        _noise(0.4, 1e-4, 15),  # peak about -68 dBFS: below the -60 dBFS floor
        np.zeros(0, np.float32),  # an empty row
        speech,
    ]
    batch, lengths = _pad_batch(waveforms, fill=0.5)
    trimmed, trimmed_lengths = TrimSilence()((batch, lengths))
    trimmed_lengths = np.asarray(trimmed_lengths)
    assert trimmed_lengths[:3].tolist() == [0, 0, 0]
    assert trimmed_lengths[3] == trim_silence(speech, RATE)[1][1] - trim_silence(speech, RATE)[1][0]
    assert np.all(np.asarray(trimmed)[:3] == 0.0)
    # The numpy reference agrees; load_audio rejects such files as silent.
    reference, reference_lengths, _ = trim_silence_batch(batch, lengths)
    np.testing.assert_array_equal(reference_lengths, trimmed_lengths)
    np.testing.assert_array_equal(reference, np.asarray(trimmed))

    # Without the floor, trim_silence's own criterion: an all-zero row is as
    # loud as its loudest frame and kept whole; an empty row stays empty.
    layer = TrimSilence(silence_floor_db=None)
    _assert_rows_match_trim_silence(layer, waveforms[:2] + waveforms[3:], fill=0.5)
    _, lengths_without_floor = layer((batch, lengths))
    assert np.asarray(lengths_without_floor)[:3].tolist() == [6000, len(waveforms[1]), 0]

    # What the front-end makes of a row of length 0: one frame computed from
    # zeros (0 after normalisation), then pad_value.
    frontend = LogMel.from_preset("fu2021", num_frames=8)
    features = np.asarray(frontend((trimmed, trimmed_lengths)))
    assert np.all(np.isfinite(features))
    np.testing.assert_array_equal(features[0, 0], 0.0)
    np.testing.assert_array_equal(features[0, 1:], -1.0)


def test_silence_floor_is_load_audios(tmp_path):
    tone = np.sin(2 * np.pi * 440.0 * np.arange(RATE // 2) / RATE)
    for level_db, silent in ((-61.0, True), (-59.0, False)):
        path = write_wav(tmp_path / f"{level_db}.wav", 10 ** (level_db / 20) * tone)
        if silent:
            with pytest.raises(AudioError) as error:
                load_audio(path)
            assert error.value.kind == "silent"
        else:
            load_audio(path)
        samples = load_audio(path, trim=False, silence_floor_db=-100.0)
        _, trimmed_lengths = TrimSilence()((samples[None], np.array([len(samples)])))
        assert (int(np.asarray(trimmed_lengths)[0]) == 0) == silent


def test_defaults_are_training_decodings():
    options = AudioOptions()
    config = TrimSilence().get_config()
    assert config["top_db"] == options.trim_db
    assert config["frame_length"] == options.trim_frame_length
    assert config["hop_length"] == options.trim_hop_length
    assert config["silence_floor_db"] == options.silence_floor_db
    assert config["sample_rate"] == options.sample_rate
    layer = TrimSilence.from_audio_options(
        AudioOptions(trim_db=30.0, trim_hop_length=0.01, silence_floor_db=-50.0)
    )
    assert (layer.top_db, layer.hop_samples, layer.silence_floor_db) == (30.0, 160, -50.0)
    assert (TrimSilence().frame_samples, TrimSilence().hop_samples) == (1024, 256)


def test_config_round_trip_and_serialisation():
    layer = TrimSilence(
        sample_rate=8000, top_db=35.0, frame_length=0.05, hop_length=0.02, silence_floor_db=None
    )
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    for key in ("sample_rate", "top_db", "frame_length", "hop_length", "silence_floor_db"):
        assert key in config
    clone = TrimSilence.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is TrimSilence and restored.get_config() == config

    waveform = np.concatenate([np.zeros(3000), speech_like(0.4, 8000, seed=17)]).astype(np.float32)
    inputs = (waveform[None], np.array([len(waveform)], np.int32))
    for a, b in zip(layer(inputs), restored(inputs), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_symbolic_and_graph_use():
    waveform = keras.Input((None,), name="waveform")
    lengths = keras.Input((), dtype="int32", name="lengths")
    trimmed, trimmed_lengths = TrimSilence()((waveform, lengths))
    assert tuple(trimmed.shape) == (None, None) and trimmed.dtype == "float32"
    assert tuple(trimmed_lengths.shape) == (None,) and trimmed_lengths.dtype == "int32"

    # As the export traces it: unknown batch and sample counts.
    layer = TrimSilence()
    traced = tf.function(
        lambda w, n: layer((w, n)),
        input_signature=[tf.TensorSpec([None, None]), tf.TensorSpec([None], tf.int32)],
    )
    waveform = np.concatenate([np.zeros(4000), speech_like(0.5, seed=18)]).astype(np.float32)
    got, got_lengths = traced(waveform[None], np.array([len(waveform)], np.int32))
    expected, (start, end) = trim_silence(waveform, RATE)
    assert int(got_lengths[0]) == end - start
    np.testing.assert_array_equal(got.numpy()[0], expected)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"sample_rate": 0}, "sample_rate=0"),
        ({"top_db": -3.0}, "top_db=-3.0"),
        ({"frame_length": 0}, "frame_length=0"),
        ({"hop_length": "16ms"}, "hop_length='16ms'"),
        ({"silence_floor_db": 6.0}, "silence_floor_db=6.0"),
        ({"top_db": float("nan")}, "top_db=nan"),
    ],
)
def test_bad_arguments_name_the_value(arguments, message):
    with pytest.raises(ValueError, match=message):
        TrimSilence(**arguments)


def test_audio_options_that_cannot_be_done_in_the_graph_are_refused():
    with pytest.raises(ValueError, match="remove_pauses=True"):
        TrimSilence.from_audio_options(AudioOptions(remove_pauses=True))
    with pytest.raises(ValueError, match="trim=False"):
        TrimSilence.from_audio_options(AudioOptions(trim=False))
    with pytest.raises(ValueError, match="differs"):
        TrimSilence.from_audio_options(AudioOptions(), sample_rate=8000)
    with pytest.raises(ValueError, match="AudioOptions"):
        TrimSilence.from_audio_options({"trim_db": 40})


# Measured on all 535 EMO-DB files with noise of RMS 1e-4, 3e-4, 1e-3 and
# 3e-3 added before and after (2140 utterances): the layer's start and end
# equal trim_silence's for every one. With float32 cumulative sums instead,
# 41, 47, 51 and 218 of the 535 ends differ (by up to 19200 samples).
@pytest.mark.real_data
@pytest.mark.parametrize("level", [3e-4, 3e-3])
def test_matches_trim_silence_on_emodb_with_added_noise(shared_data, level):
    folder = shared_data / "emodb" / "wav"
    files = sorted(folder.glob("*.wav"))
    if len(files) < 20:
        pytest.skip(f"EMO-DB wav files not found under {folder}")
    rng = np.random.default_rng(19)
    waveforms = []
    for path in files[::5]:
        speech = load_audio(path, trim=False)  # 16 kHz, as training decodes it
        lead, trail = rng.integers(1000, 12000, size=2)
        noise = (level * rng.standard_normal(lead + trail)).astype(np.float32)
        waveforms.append(np.concatenate([noise[:lead], speech, noise[lead:]]))
    starts, ends = _assert_rows_match_trim_silence(TrimSilence(), waveforms)
    # Most of the added noise is trimmed away (it is 40+ dB below the speech).
    assert np.mean(starts) > 2000
