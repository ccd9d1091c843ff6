"""Small helpers for tests that need audio files."""

import pathlib

import numpy as np


def write_wav(path, samples, sample_rate=16000, subtype="PCM_16"):
    """Writes `samples` (float, [-1, 1]; [n] or [n, channels]) as an audio file."""
    import soundfile

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.asarray(samples), sample_rate, subtype=subtype)
    return path


def speech_like(seconds=1.0, sample_rate=16000, f0=140.0, seed=0):
    """A voiced, speech-like test signal: harmonics of `f0` with a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3.0 * t))
    signal = 0.3 * signal * envelope + 0.005 * rng.standard_normal(t.shape)
    return (signal / np.max(np.abs(signal)) * 0.5).astype(np.float32)
