"""Tests of ser_keras.audio.io: decoding, mono, resampling, trimming, bad files."""

import pickle

import numpy as np
import pytest
import soundfile

from ser_keras.audio import io
from ser_keras.audio.io import AudioError, audio_info, load_audio, trim_silence
from tests.helpers import speech_like, write_wav

RATE = 16000


def _tone(frequency, seconds, sample_rate, amplitude=0.5):
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _peak_frequency(waveform, sample_rate):
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.shape[0])))
    return np.fft.rfftfreq(waveform.shape[0], 1.0 / sample_rate)[np.argmax(spectrum)]


def _expect_error(path, kind, *words, **options):
    with pytest.raises(AudioError) as caught:
        load_audio(path, **options)
    error = caught.value
    assert error.kind == kind, error
    assert error.path == str(path)
    assert str(path) in str(error)
    for word in words:
        assert word in error.reason, error.reason
    return error


# Decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, subtype, tolerance",
    [
        ("a.wav", "PCM_16", 1e-4),
        ("a.wav", "PCM_24", 1e-6),
        ("a.wav", "FLOAT", 1e-7),
        ("a.flac", "PCM_16", 1e-4),
        ("a.ogg", "VORBIS", None),  # lossy: compared by correlation
        ("a.wav", "ULAW", None),  # companded 8-bit: accepted, unlike 8-bit PCM
    ],
)
def test_decodes_formats(tmp_path, name, subtype, tolerance):
    signal = speech_like(seconds=0.5, sample_rate=RATE)
    path = write_wav(tmp_path / name, signal, RATE, subtype=subtype)

    waveform = load_audio(path, trim=False)

    assert waveform.dtype == np.float32 and waveform.ndim == 1
    assert waveform.flags.c_contiguous and waveform.flags.owndata
    if tolerance is not None:
        np.testing.assert_allclose(waveform, signal, atol=tolerance)
    else:
        # Vorbis may pad or delay by a few samples; compare the common part.
        assert abs(waveform.shape[0] - signal.shape[0]) <= 64
        n = min(waveform.shape[0], signal.shape[0])
        assert np.corrcoef(waveform[:n], signal[:n])[0, 1] > 0.98


def test_path_may_be_str_or_pathlike_and_extension_case_is_ignored(tmp_path):
    signal = speech_like(seconds=0.3)
    path = write_wav(tmp_path / "LOUD.WAV", signal)
    np.testing.assert_array_equal(load_audio(path, trim=False), load_audio(str(path), trim=False))


def test_stereo_is_mixed_down_by_averaging(tmp_path):
    signal = speech_like(seconds=0.5)
    stereo = np.stack([signal, 0.5 * signal], axis=1)
    path = write_wav(tmp_path / "stereo.wav", stereo, RATE)

    waveform = load_audio(path, trim=False)

    assert waveform.shape == signal.shape
    np.testing.assert_allclose(waveform, 0.75 * signal, atol=1e-4)


@pytest.mark.parametrize("source_rate", [22050, 44100, 8000])
def test_resamples_to_16k_keeping_length_and_pitch(tmp_path, source_rate):
    seconds, frequency = 1.0, 1000.0
    path = write_wav(
        tmp_path / "tone.wav", _tone(frequency, seconds, source_rate), source_rate, "FLOAT"
    )

    waveform = load_audio(path, sample_rate=RATE, trim=False)

    assert abs(waveform.shape[0] - seconds * RATE) <= 1
    assert abs(_peak_frequency(waveform, RATE) - frequency) <= 1.0
    # High-quality band limiting: resampling leaves no image or alias above
    # the tone anywhere near its level (> 100 dB down).
    spectrum = np.abs(np.fft.rfft(waveform * np.hanning(waveform.shape[0]))) ** 2
    frequencies = np.fft.rfftfreq(waveform.shape[0], 1.0 / RATE)
    assert 10 * np.log10(spectrum[frequencies > 1100].max() / spectrum.max()) < -100


def test_sample_rate_none_keeps_the_file_rate(tmp_path):
    signal = _tone(440.0, 0.5, 22050)
    path = write_wav(tmp_path / "tone.wav", signal, 22050, "FLOAT")
    waveform = load_audio(path, sample_rate=None, trim=False)
    np.testing.assert_array_equal(waveform, signal)


def test_audio_info_reads_the_header(tmp_path):
    stereo = np.zeros((11025, 2), dtype=np.float32)
    stereo[:, 0] = 0.1
    path = write_wav(tmp_path / "info.flac", stereo, 22050)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (22050, 2, 11025)
    assert info.duration == pytest.approx(0.5)
    assert (info.format, info.subtype) == ("FLAC", "PCM_16")


# Trimming ---------------------------------------------------------------------


def _padded_speech(lead, speech, trail, sample_rate=RATE, noise_db=-75.0, seed=1):
    """Speech between stretches of faint noise (noise_db dBFS rms)."""
    rng = np.random.default_rng(seed)
    voice = speech_like(seconds=speech, sample_rate=sample_rate)
    parts = [np.zeros(int(lead * sample_rate)), voice, np.zeros(int(trail * sample_rate))]
    signal = np.concatenate(parts)
    signal += 10 ** (noise_db / 20) * rng.standard_normal(signal.shape[0])
    return signal.astype(np.float32), voice


def test_trims_leading_and_trailing_silence(tmp_path):
    signal, voice = _padded_speech(lead=0.5, speech=1.0, trail=0.7)
    path = write_wav(tmp_path / "padded.wav", signal, RATE, "FLOAT")

    untrimmed = load_audio(path, trim=False)
    trimmed = load_audio(path)

    assert untrimmed.shape[0] == signal.shape[0]
    _, (start, end) = trim_silence(untrimmed, RATE)
    # The speech spans samples [8000, 24000); its syllable envelope rises from
    # zero, so the 40 dB criterion starts within a frame (64 ms) of its onset.
    assert 0.5 * RATE - 0.064 * RATE <= start <= 0.5 * RATE + 0.03 * RATE
    assert 1.5 * RATE - 0.03 * RATE <= end <= 1.5 * RATE + 0.064 * RATE
    np.testing.assert_array_equal(trimmed, untrimmed[start:end])
    # Tight: nothing of the silences is left beyond a frame each side.
    assert 0.95 * RATE <= trimmed.shape[0] <= 1.13 * RATE


def test_trim_bounds_match_librosa(tmp_path):
    librosa = pytest.importorskip("librosa")
    signal, _ = _padded_speech(lead=0.3, speech=0.8, trail=0.4, noise_db=-50.0)
    for top_db in (20.0, 40.0):
        _, bounds = trim_silence(signal, RATE, top_db=top_db)
        _, expected = librosa.effects.trim(signal, top_db=top_db, frame_length=1024, hop_length=256)
        assert bounds == tuple(int(b) for b in expected)


def test_remove_pauses_cuts_inner_silence(tmp_path):
    first, _ = _padded_speech(lead=0.2, speech=0.6, trail=0.5, seed=2)
    second, _ = _padded_speech(lead=0.0, speech=0.6, trail=0.2, seed=3)
    path = write_wav(tmp_path / "pause.wav", np.concatenate([first, second]), RATE, "FLOAT")

    trimmed = load_audio(path)
    no_pauses = load_audio(path, remove_pauses=True)

    # Trimming keeps the 0.5 s pause; removing pauses drops most of it.
    assert trimmed.shape[0] >= 1.6 * RATE
    assert no_pauses.shape[0] <= trimmed.shape[0] - 0.4 * RATE
    assert no_pauses.shape[0] >= 1.1 * RATE


# Bad input ------------------------------------------------------------------


def test_audio_error_is_a_value_error_and_pickles():
    error = AudioError("/x/a.wav", "silent: peak", "silent")
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, copy.kind) == (error.path, error.reason, error.kind)
    with pytest.raises(ValueError, match="'strange'"):
        AudioError("/x/a.wav", "why", "strange")


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nowhere.wav", "missing", "not found")


@pytest.mark.parametrize("name", ["notes.txt", "no_extension", "clip.m4a"])
def test_unknown_extension(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"hello")
    error = _expect_error(path, "unsupported_format", "extension")
    with pytest.raises(AudioError):
        audio_info(path)
    assert not io.is_audio_path(path)
    assert ".flac" in error.reason  # lists the accepted ones


def test_corrupt_and_truncated_files_are_unreadable(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not a wave file at all" * 10)
    _expect_error(garbage, "unreadable", "cannot decode")

    good = write_wav(tmp_path / "good.wav", speech_like(0.3))
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[:20])
    _expect_error(truncated, "unreadable", "cannot decode")
    with pytest.raises(AudioError, match="cannot decode"):
        audio_info(truncated)

    folder = tmp_path / "folder.wav"
    folder.mkdir()
    _expect_error(folder, "unreadable", "folder")


def test_empty_file(tmp_path):
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    assert soundfile.info(str(path)).frames == 0
    _expect_error(path, "empty", "no audio samples")


@pytest.mark.parametrize(
    "samples",
    [np.zeros(RATE, np.float32), np.full(RATE, 1e-5, np.float32)],
    ids=["zeros", "below_floor"],
)
def test_silent_file(tmp_path, samples):
    path = write_wav(tmp_path / "silent.wav", samples, RATE, "FLOAT")
    _expect_error(path, "silent", "dBFS floor")
    # A lower floor accepts the faint one (it is then trimmed, not rejected).
    if samples.any():
        assert load_audio(path, silence_floor_db=-120.0).shape[0] > 0


def test_stereo_in_opposite_phase_is_silent_after_mixdown(tmp_path):
    signal = speech_like(0.5)
    path = write_wav(tmp_path / "phase.wav", np.stack([signal, -signal], axis=1))
    _expect_error(path, "silent", "after mixing to mono")


def test_non_finite_samples(tmp_path):
    signal = speech_like(0.5)
    signal[100], signal[200] = np.nan, np.inf
    path = write_wav(tmp_path / "nan.wav", signal, RATE, "FLOAT")
    _expect_error(path, "non_finite", "2 of", "NaN or infinite")


@pytest.mark.parametrize("name, subtype", [("u8.wav", "PCM_U8"), ("s8.flac", "PCM_S8")])
def test_eight_bit_audio_is_rejected(tmp_path, name, subtype):
    path = write_wav(tmp_path / name, speech_like(0.5), RATE, subtype)
    assert soundfile.info(str(path)).subtype == subtype
    _expect_error(path, "unsupported_encoding", "8-bit", subtype)


def test_too_short_after_trimming(tmp_path):
    burst = _tone(300.0, 0.04, RATE)
    signal = np.concatenate([np.zeros(RATE // 2), burst, np.zeros(RATE // 2)]).astype(np.float32)
    path = write_wav(tmp_path / "burst.wav", signal, RATE, "FLOAT")
    _expect_error(path, "too_short", "after trimming", "minimum 0.1 s")
    # Without trimming it is a second long; a lower minimum accepts it trimmed.
    assert load_audio(path, trim=False).shape[0] == signal.shape[0]
    assert load_audio(path, min_duration=0.0).shape[0] < 0.2 * RATE
    clip = write_wav(tmp_path / "clip.wav", burst, RATE, "FLOAT")
    error = _expect_error(clip, "too_short", "0.040 s, minimum", trim=False)
    assert "trimming" not in error.reason


@pytest.mark.parametrize(
    "options, shown",
    [
        ({"sample_rate": 0}, "0"),
        ({"sample_rate": 16000.5}, "16000.5"),
        ({"sample_rate": "16k"}, "'16k'"),
        ({"trim_db": -3.0}, "-3.0"),
        ({"min_duration": -1}, "-1"),
        ({"silence_floor_db": 6.0}, "6.0"),
        ({"resample_quality": "best"}, "'best'"),
        ({"trim_frame_length": 0.01, "trim_hop_length": 0.02}, "0.02"),
    ],
)
def test_bad_arguments_name_the_value(tmp_path, options, shown):
    path = write_wav(tmp_path / "a.wav", speech_like(0.3))
    with pytest.raises(ValueError, match="(?i)received|must not exceed") as caught:
        load_audio(path, **options)
    assert not isinstance(caught.value, AudioError)
    assert shown in str(caught.value)


# Real data ------------------------------------------------------------------


@pytest.mark.real_data
def test_decodes_emodb_files_to_16k(shared_data):
    files = sorted((shared_data / "emodb" / "wav").glob("*.wav"))[:4]
    if not files:
        pytest.skip(f"no EMO-DB files in {shared_data / 'emodb' / 'wav'}")
    for path in files:
        info = audio_info(path)
        assert info.sample_rate == 22050
        untrimmed = load_audio(path, trim=False)
        assert abs(untrimmed.shape[0] - info.frames * RATE / info.sample_rate) <= 1
        reference, _ = soundfile.read(str(path), dtype="float32")
        # Same level and the same speech: the 16 kHz waveform's rms matches
        # the 22.05 kHz file's (EMO-DB has little energy above 8 kHz).
        rms = np.sqrt(np.mean(untrimmed.astype(np.float64) ** 2))
        reference_rms = np.sqrt(np.mean(reference.astype(np.float64) ** 2))
        assert rms == pytest.approx(reference_rms, rel=0.05)
        trimmed = load_audio(path)
        assert 0.5 * RATE < trimmed.shape[0] <= untrimmed.shape[0]
        assert trimmed.dtype == np.float32 and np.isfinite(trimmed).all()
