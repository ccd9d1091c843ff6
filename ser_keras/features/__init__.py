"""Feature extraction: the LogMel front-end layer and segment framing."""

from ser_keras.features.framing import average_by_utterance, expand_labels, segment_features
from ser_keras.features.logmel import FRONTEND_PRESETS, LogMel

__all__ = [
    "FRONTEND_PRESETS",
    "LogMel",
    "average_by_utterance",
    "expand_labels",
    "segment_features",
]
