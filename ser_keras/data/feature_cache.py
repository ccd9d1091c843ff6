"""A cache of variable-length feature sequences (one `[frames, features]` array per utterance).

Front-ends whose output length follows the utterance (e.g.
`ser_keras.features.frame_features.FrameFeatures`, Kim et al.'s 32 frame
features) are cheap to store and slow to compute in bulk. `cached_sequences`
computes them once per front-end configuration and set of audio files and
reads them back on later runs:

    sequences, path, reused = cached_sequences(frontend, utterances, waveforms, directory)

The cache file is named by a digest of the front-end's `get_config()` and of
every audio file's absolute path, size and modification time, in order, so a
changed file or front-end selects another file. It holds the sequences
concatenated (`features`, float32) with their `lengths`, and is written to a
temporary file moved into place: an interrupted run never leaves half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np


def sequence_cache_path(directory, frontend, utterances: Sequence) -> pathlib.Path:
    """The cache file of `frontend`'s features of `utterances` under `directory`.

    Args:
        directory: The cache folder.
        frontend: A Keras front-end layer (its `get_config()` names the file).
        utterances: The utterances (`Utterance.path` must exist).

    Returns:
        `<directory>/<digest>.npz`.
    """
    digest = hashlib.sha1()
    digest.update(json.dumps(frontend.get_config(), sort_keys=True).encode())
    for utterance in utterances:
        path = pathlib.Path(utterance.path)
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return pathlib.Path(directory) / f"{digest.hexdigest()[:20]}.npz"


def cached_sequences(
    frontend,
    utterances: Sequence,
    waveforms: Sequence[np.ndarray],
    directory,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[list[np.ndarray], pathlib.Path, bool]:
    """The front-end's feature sequence of every waveform, computed once and cached.

    Args:
        frontend: The front-end layer (`waveform -> [frames, features]`).
        utterances: The utterances of `waveforms` (for the cache's name).
        waveforms: One float32 waveform per utterance.
        directory: The cache folder (created when needed).
        batch_size: Waveforms per front-end batch when computing.
        progress: Show a progress bar when computing.

    Returns:
        `(sequences, path, reused)`: one float32 `[frames_i, features]` array
        per utterance, in order; the cache file; whether it was read back.

    Raises:
        ValueError: `utterances` and `waveforms` differ in length.
    """
    if len(utterances) != len(waveforms):
        raise ValueError(
            "One waveform per utterance is needed. Received: "
            f"{len(utterances)} utterances and {len(waveforms)} waveforms"
        )
    from ser_keras.data.pipeline import compute_features

    path = sequence_cache_path(directory, frontend, utterances)
    if path.exists():
        with np.load(path) as data:
            lengths = data["lengths"]
            flat = data["features"]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(lengths))], path, True
    sequences = compute_features(frontend, waveforms, batch_size=batch_size, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial.npz")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    flat = np.concatenate(sequences) if sequences else np.zeros((0, frontend.num_features))
    np.savez(temporary, lengths=lengths, features=flat.astype(np.float32))
    os.replace(temporary, path)
    return sequences, path, False
