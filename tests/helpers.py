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


# The four emotions of paper 001 (Kim et al.), in the order the manifest
# corpora of `write_acted_and_natural_corpora` cycle through them.
FOUR_EMOTIONS = ("neutral", "happiness", "sadness", "anger")


def _write_manifest_corpus(root, corpus, speakers, naturalness_of, first_speaker, seconds):
    """A manifest corpus: 8 utterances per speaker, the four emotions twice.

    Every utterance differs (its own f0 and noise), so frames can be traced.
    """
    root = pathlib.Path(root)
    rows = ["path,speaker,emotion,gender,language,corpus,naturalness"]
    for number, (speaker, gender) in enumerate(speakers, start=first_speaker):
        for index in range(8):
            path = write_wav(
                root / f"{speaker}_{index}.wav",
                speech_like(seconds, f0=110.0 + 25 * number + 3 * index, seed=100 * number + index),
            )
            rows.append(
                f"{path.name},{speaker},{FOUR_EMOTIONS[index % 4]},{gender},en,{corpus},"
                f"{naturalness_of(index)}"
            )
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return f"manifest:{root / 'manifest.csv'}"


def write_acted_and_natural_corpora(root, seconds=0.4):
    """Two tiny manifest corpora for paper 001's protocols, as `KIND:DIR` specs.

    `alpha`: 3 speakers, all acted. `beta`: 2 speakers, each with 4 acted and
    4 natural utterances (as IEMOCAP), so leave-one-corpus-out tests
    `beta_acted` and `beta_natural` as parts.

    Args:
        root: Folder the two corpora are written under.
        seconds: Length of every utterance.

    Returns:
        `(alpha, beta)`: `"manifest:<path>"` specs.
    """
    root = pathlib.Path(root)
    alpha = _write_manifest_corpus(
        root / "alpha", "alpha", [("a1", "f"), ("a2", "m"), ("a3", "f")],
        lambda index: "acted", 0, seconds,
    )
    beta = _write_manifest_corpus(
        root / "beta", "beta", [("b1", "f"), ("b2", "m")],
        lambda index: "acted" if index < 4 else "natural", 3, seconds,
    )
    return alpha, beta
