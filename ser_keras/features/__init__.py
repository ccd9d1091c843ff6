"""Feature extraction: the LogMel front-end layer, silence trimming and segment framing."""

from ser_keras.features.framing import average_by_utterance, expand_labels, segment_features
from ser_keras.features.logmel import FRONTEND_PRESETS, LogMel
from ser_keras.features.trimming import TrimSilence

__all__ = [
    "FRONTEND_PRESETS",
    "LogMel",
    "TrimSilence",
    "average_by_utterance",
    "expand_labels",
    "segment_features",
]
