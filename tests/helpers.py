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


def tiny_multitask_model(num_frames, num_mels, heads, *, units=6, seed=0):
    """A small two-layer `MultiTaskModel` on `[batch, num_frames, num_mels]` features.

    Fast to build and trace, for export, serving and predict tests.

    Args:
        num_frames: Frames of the input.
        num_mels: Mel bands of the input.
        heads: Task -> number of classes, e.g. `{"emotion": 3, "speaker": 2}`.
        units: Width of the hidden layer.
        seed: Seed of the weights.
    """
    import keras

    from ser_keras.training.multitask import MultiTaskModel

    keras.utils.set_random_seed(seed)
    features = keras.Input((num_frames, num_mels), name="features")
    hidden = keras.layers.Dense(units, activation="tanh")(features)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    outputs = {
        task: keras.layers.Dense(classes, activation="softmax", name=task)(pooled)
        for task, classes in heads.items()
    }
    return MultiTaskModel(features, outputs)
