"""Tests of ser_keras.features.framing: fixed segments and utterance averaging."""

import numpy as np
import pytest

from ser_keras.features.framing import average_by_utterance, expand_labels, segment_features


def _ramp(frames, mels=4, offset=0.0):
    return (np.arange(frames, dtype=np.float32)[:, None] + offset) * np.ones((1, mels), np.float32)


def test_segments_pad_short_utterances_and_last_partial_segment():
    features = [_ramp(100), _ramp(256, offset=1000), _ramp(600, offset=2000)]
    segments, ids = segment_features(features, segment_length=256, pad_value=-5.0)
    assert segments.shape == (1 + 1 + 3, 256, 4)
    np.testing.assert_array_equal(ids, [0, 1, 2, 2, 2])
    # Short utterance: its 100 frames then padding.
    np.testing.assert_array_equal(segments[0, :100, 0], np.arange(100))
    assert np.all(segments[0, 100:] == -5.0)
    # Exact length: one segment, no padding.
    np.testing.assert_array_equal(segments[1, :, 0], 1000 + np.arange(256))
    # 600 frames: [0, 256), [256, 512), [512, 600) + 168 padded frames.
    np.testing.assert_array_equal(segments[3, :, 0], 2256 + np.arange(256))
    np.testing.assert_array_equal(segments[4, :88, 0], 2512 + np.arange(88))
    assert np.all(segments[4, 88:] == -5.0)


def test_drop_mode_drops_only_partial_tails():
    features = [_ramp(100), _ramp(600)]
    segments, ids = segment_features(features, segment_length=256, last_segment="drop")
    np.testing.assert_array_equal(ids, [0, 1, 1])
    assert segments.shape == (3, 256, 4)
    assert np.all(segments[0, 100:] == 0.0)


def test_overlapping_segments():
    segments, ids = segment_features([_ramp(600)], segment_length=256, hop_length=128)
    np.testing.assert_array_equal(ids, [0, 0, 0, 0])
    np.testing.assert_array_equal(segments[:, 0, 0], [0, 128, 256, 384])
    np.testing.assert_array_equal(segments[3, :216, 0], 384 + np.arange(216))


def test_expand_labels_and_average_by_utterance_invert_segmentation():
    features = [_ramp(300), _ramp(50), _ramp(700)]
    segments, ids = segment_features(features)
    labels = {"emotion": np.array([2, -1, 0]), "speaker": np.array([5, 6, 7])}
    expanded = expand_labels(labels, ids)
    np.testing.assert_array_equal(expanded["emotion"], [2, 2, -1, 0, 0, 0])
    np.testing.assert_array_equal(expand_labels(labels["speaker"], ids), [5, 5, 6, 7, 7, 7])

    posteriors = np.array(
        [[0.2, 0.8], [0.6, 0.4], [1.0, 0.0], [0.1, 0.9], [0.3, 0.7], [0.5, 0.5]], np.float32
    )
    utterances, averaged = average_by_utterance(posteriors, ids)
    np.testing.assert_array_equal(utterances, [0, 1, 2])
    np.testing.assert_allclose(averaged, [[0.4, 0.6], [1.0, 0.0], [0.3, 0.7]], atol=1e-6)


def test_average_by_utterance_accepts_arbitrary_ids():
    ids, averaged = average_by_utterance(np.array([[1.0], [3.0], [5.0]]), np.array([9, 4, 9]))
    np.testing.assert_array_equal(ids, [4, 9])
    np.testing.assert_allclose(averaged, [[3.0], [3.0]])


@pytest.mark.parametrize(
    "kwargs",
    [{"segment_length": 0}, {"hop_length": -1}, {"last_segment": "keep"}],
)
def test_invalid_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        segment_features([_ramp(10)], **kwargs)


def test_mismatched_feature_shapes_raise():
    with pytest.raises(ValueError, match="trailing shape"):
        segment_features([_ramp(10, mels=4), _ramp(10, mels=5)])
    with pytest.raises(ValueError, match="shapes"):
        average_by_utterance(np.zeros((3, 2)), np.zeros(4))
