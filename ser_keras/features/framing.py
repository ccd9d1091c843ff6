"""Fixed-length segments of variable-length feature sequences, and back.

Latif et al. (paper 002, Section 4.2) cut each utterance's spectrogram into
fixed-width segments of 256 frames, give every segment its utterance's label,
train on segments, and at test time average the segments' posterior
probabilities per utterance. `segment_features` cuts, `expand_labels` copies
the utterance labels to the segments, `average_by_utterance` averages.

Segmenting rules (the paper does not spell them out; ours):
* segments start every `hop_length` frames (default: `segment_length`, i.e.
  non-overlapping);
* an utterance shorter than one segment gives one segment, padded with
  `pad_value` at the end (every utterance is represented at test time);
* the last partial segment of a longer utterance is padded (`last_segment=
  "pad"`, default: no speech is lost) or dropped (`"drop"`).
"""

import numpy as np

from ser_keras.utils.validation import positive_int

LAST_SEGMENT_MODES = ("pad", "drop")


def _segment_starts(num_frames, segment_length=256, hop_length=None, last_segment="pad"):
    """Start frames of the segments of one utterance of `num_frames` frames.

    Args:
        num_frames: the utterance's frame count.
        segment_length: frames per segment.
        hop_length: frames between segment starts; `None` means `segment_length`.
        last_segment: `"pad"` or `"drop"` (see the module docstring).

    Returns:
        list of int start frames (at least one).
    """
    hop_length = segment_length if hop_length is None else hop_length
    if num_frames <= segment_length:
        return [0]
    full = list(range(0, num_frames - segment_length + 1, hop_length))
    next_start = full[-1] + hop_length
    if last_segment == "pad" and next_start < num_frames and full[-1] + segment_length < num_frames:
        full.append(next_start)
    return full


def segment_features(
    features, segment_length=256, hop_length=None, last_segment="pad", pad_value=0.0
):
    """Cuts variable-length feature sequences into fixed-length segments.

    Args:
        features: sequence of arrays `[frames_i, ...]` (one per utterance),
            e.g. the output of `compute_features` with a variable-length
            front-end.
        segment_length: frames per segment (paper 002: 256).
        hop_length: frames between segment starts; `None` = `segment_length`.
        last_segment: `"pad"` (pad the last partial segment with `pad_value`)
            or `"drop"` (drop it; an utterance shorter than one segment is
            still padded to one segment).
        pad_value: value of padded frames.

    Returns:
        `(segments, utterance_ids)`: float32 `[num_segments, segment_length,
        ...]` and int32 `[num_segments]`, the index in `features` each segment
        comes from (segments in utterance order).

    Reference:
        Latif et al., multi-task semi-supervised adversarial autoencoding for
        SER, Section 4.2.
    """
    segment_length = positive_int("segment_length", segment_length)
    hop_length = positive_int("hop_length", hop_length, allow_none=True)
    if last_segment not in LAST_SEGMENT_MODES:
        raise ValueError(
            f"`last_segment` must be one of {LAST_SEGMENT_MODES}. Received: {last_segment!r}"
        )
    arrays = [np.asarray(item, dtype=np.float32) for item in features]
    if not arrays:
        raise ValueError("`features` is empty: nothing to segment.")
    trailing = {array.shape[1:] for array in arrays}
    if any(array.ndim < 1 for array in arrays) or len(trailing) != 1:
        raise ValueError(
            "All feature arrays need a frame axis first and the same trailing shape. "
            f"Received trailing shapes: {sorted(trailing)}"
        )
    trailing_shape = trailing.pop()

    starts_per_utterance = [
        _segment_starts(array.shape[0], segment_length, hop_length, last_segment)
        for array in arrays
    ]
    total = sum(len(starts) for starts in starts_per_utterance)
    segments = np.full((total, segment_length) + trailing_shape, pad_value, dtype=np.float32)
    utterance_ids = np.empty(total, dtype=np.int32)
    position = 0
    for index, (array, starts) in enumerate(zip(arrays, starts_per_utterance, strict=True)):
        for start in starts:
            piece = array[start : start + segment_length]
            segments[position, : piece.shape[0]] = piece
            utterance_ids[position] = index
            position += 1
    return segments, utterance_ids


def expand_labels(labels, utterance_ids):
    """Gives every segment its utterance's labels.

    Args:
        labels: int array `[num_utterances]` or dict task -> such arrays.
        utterance_ids: `[num_segments]` from `segment_features`.

    Returns:
        The same structure indexed per segment.
    """
    utterance_ids = np.asarray(utterance_ids)
    if isinstance(labels, dict):
        return {task: np.asarray(values)[utterance_ids] for task, values in labels.items()}
    return np.asarray(labels)[utterance_ids]


def average_by_utterance(posteriors, utterance_ids):
    """Averages segment posteriors per utterance (utterance-level prediction).

    Args:
        posteriors: `[num_segments, ...]` values per segment, e.g. class
            probabilities `[num_segments, num_classes]`.
        utterance_ids: `[num_segments]` utterance id of each segment (any
            sortable ids, e.g. the indices from `segment_features`).

    Returns:
        `(ids, averaged)`: the sorted unique ids `[num_utterances]` and float32
        `[num_utterances, ...]`, row i the mean over the segments of `ids[i]`.

    Reference:
        Latif et al., multi-task semi-supervised adversarial autoencoding for
        SER, Section 4.2.
    """
    posteriors = np.asarray(posteriors, dtype=np.float64)
    utterance_ids = np.asarray(utterance_ids)
    if posteriors.ndim < 1 or utterance_ids.shape != (posteriors.shape[0],):
        raise ValueError(
            "Expected posteriors [num_segments, ...] and utterance_ids [num_segments]. "
            f"Received shapes {posteriors.shape} and {utterance_ids.shape}"
        )
    ids, inverse = np.unique(utterance_ids, return_inverse=True)
    sums = np.zeros((ids.shape[0],) + posteriors.shape[1:])
    np.add.at(sums, inverse, posteriors)
    counts = np.bincount(inverse, minlength=ids.shape[0])
    counts = counts.reshape((-1,) + (1,) * (posteriors.ndim - 1))
    return ids, (sums / counts).astype(np.float32)
