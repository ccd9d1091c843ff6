"""Per-speaker feature normalisation of precomputed log-mel features.

Z-normalising every mel band per speaker, over that speaker's own valid
frames, removes much of the speaker's voice and recording channel from the
features. It uses no labels, so it applies to an unseen test speaker as well
(given a few of their utterances); it is not part of any of the papers and is
named as a change wherever it is used (see benchmarks/RESULTS.md, EMO-DB
leave-one-speaker-out).
"""

from __future__ import annotations

import numpy as np


def standardize_per_speaker(features, speakers, pad_value, epsilon=1e-5):
    """Z-normalises every feature band per speaker over that speaker's valid frames.

    Args:
        features: float array `[num_utterances, frames, bands]`, padded with
            `pad_value` beyond each utterance's true length (the LogMel
            front-end's padding).
        speakers: one group id per utterance (any hashable values): the
            speaker, or any other grouping (a corpus, for per-corpus
            standardisation).
        pad_value: the padding value; a frame whose every band equals it is
            padding, is left out of the statistics and keeps the value.
        epsilon: added to the standard deviation.

    Returns:
        A new float32 array of the same shape.

    Raises:
        ValueError: if `features` is not 3-D or `speakers` has another length.
    """
    features = np.array(features, dtype=np.float32, copy=True)
    if features.ndim != 3:
        raise ValueError(
            f"`features` must be [utterances, frames, bands]. Received shape {features.shape}."
        )
    speakers = np.asarray(speakers)
    if speakers.shape != (features.shape[0],):
        raise ValueError(
            f"`speakers` must hold one id per utterance ({features.shape[0]}). "
            f"Received shape {speakers.shape}."
        )
    valid = ~np.all(features == pad_value, axis=-1)  # [utterances, frames]
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        block, mask = features[rows], valid[rows]
        frames = block[mask]
        if frames.size == 0:
            continue
        block[mask] = (frames - frames.mean(axis=0)) / (frames.std(axis=0) + epsilon)
        features[rows] = block
    return features
