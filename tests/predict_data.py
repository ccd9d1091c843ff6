"""A tiny trained-like model, its export, and recordings to predict (tests of predict)."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from tests.helpers import speech_like, tiny_multitask_model, write_wav

# 64 frames x 400 samples: a frame budget of 25600 samples = 1.6 s at 16 kHz.
NUM_FRAMES, NUM_MELS = 64, 8
BUDGET_SECONDS = NUM_FRAMES * 400 / 16000
EMOTIONS = ["anger", "happiness", "neutral"]
SPEAKERS = ["savee:DC", "savee:JE"]
# The usable recordings `write_recordings` makes, and the unusable ones with
# what their reason says.
USABLE = ("mono_16k.wav", "rate_22k.wav", "stereo_48k.wav", "nested/deeper/long_16k.flac")
UNUSABLE = {
    "corrupt.wav": "cannot decode",
    "empty.wav": "empty",
    "silent.wav": "no speech",
    "nan.wav": "NaN",
}


def frontend():
    from ser_keras.features.logmel import LogMel

    return LogMel.from_preset("fu2021", num_frames=NUM_FRAMES, num_mels=NUM_MELS)


def tiny_model():
    """A two-head model on [batch, 64, 8] features (fast to build and trace)."""
    return tiny_multitask_model(NUM_FRAMES, NUM_MELS, {"emotion": 3, "speaker": 2}, seed=3)


def save_like_a_run(model, fold_dir, *, best_validation=None):
    """`best.keras` + its sidecar (+ `result.json`), as a training fold keeps them."""
    from ser_keras.export.serving import write_export_sidecar

    fold_dir = pathlib.Path(fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    model.save(fold_dir / "best.keras")
    write_export_sidecar(
        fold_dir / "best.keras",
        frontend=frontend(),
        label_names={"emotion": EMOTIONS, "speaker": SPEAKERS},
        name="tiny",
    )
    if best_validation is not None:
        (fold_dir / "result.json").write_text(json.dumps({"best_validation": best_validation}))
    return fold_dir / "best.keras"


def export_tiny(model, base_dir):
    """Exports `model` as `<base_dir>/tiny/1` (verified)."""
    from ser_keras.export.saved_model import export_saved_model

    return export_saved_model(
        model,
        base_dir,
        "tiny",
        frontend=frontend(),
        label_names={"emotion": EMOTIONS, "speaker": SPEAKERS},
    )


def write_recordings(folder, *, usable=True, unusable=True):
    """The same 1 s of speech at 16 kHz mono, 22.05 kHz mono and 48 kHz stereo, 3 s of
    speech in a nested folder (longer than the budget), a text file (ignored), and
    the unusable files of `UNUSABLE`."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if usable:
        write_wav(folder / "mono_16k.wav", speech_like(1.0, 16000, seed=1), 16000)
        write_wav(folder / "rate_22k.wav", speech_like(1.0, 22050, seed=1), 22050)
        left = speech_like(1.0, 48000, seed=1)
        write_wav(folder / "stereo_48k.wav", np.stack([left, 0.5 * left], axis=1), 48000)
        long = speech_like(3.0, 16000, seed=2)
        write_wav(folder / "nested" / "deeper" / "long_16k.flac", long, 16000)
        (folder / "notes.txt").write_text("not audio")
    if unusable:
        (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + bytes(range(64)))
        (folder / "empty.wav").write_bytes(b"")
        write_wav(folder / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
        samples = speech_like(1.0, 16000, seed=3)
        samples[100:200] = np.nan
        write_wav(folder / "nan.wav", samples, 16000, subtype="FLOAT")
    return folder
