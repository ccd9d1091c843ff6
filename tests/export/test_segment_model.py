"""Tests of the in-graph segment averaging used to export segment-trained models."""

import keras
import numpy as np
import pytest

from ser_keras.export.segment_model import (
    FeatureSegmenter,
    SegmentAveragingModel,
    segment_classifier,
)
from ser_keras.features.framing import average_by_utterance, segment_features
from ser_keras.models.aae_mtl import AAEMultiTaskModel
from tests.model_checks import check_model

SEGMENT, MELS = 32, 16  # the "cpu_small" AAE preset
# Frame counts around the segment boundaries: shorter than one segment,
# exactly one, one more than one, several, and a partial last segment.
FRAME_COUNTS = (19, 32, 33, 64, 101)


@pytest.fixture(scope="module")
def aae():
    keras.utils.set_random_seed(0)
    return AAEMultiTaskModel.from_preset(
        "cpu_small", "aae_mtl", num_classes={"emotion": 3, "speaker": 4, "gender": 2}
    )


def _utterances(seed=0, pad_value=0.0):
    rng = np.random.default_rng(seed)
    features = [rng.normal(size=(n, MELS)).astype("float32") for n in FRAME_COUNTS]
    batch = np.full((len(features), max(FRAME_COUNTS), MELS), pad_value, dtype="float32")
    for row, item in enumerate(features):
        batch[row, : len(item)] = item
    return features, batch


@pytest.mark.parametrize("last_segment", ["pad", "drop"])
def test_matches_offline_segmenting_and_averaging(aae, last_segment):
    features, batch = _utterances()
    segments, ids = segment_features(features, SEGMENT, last_segment=last_segment)
    offline = aae.predict(segments, verbose=0)
    model = SegmentAveragingModel(
        segment_classifier(aae, ("emotion", "gender")), last_segment=last_segment
    )
    served = model(batch)
    assert set(served) == {"emotion", "gender"}
    for task in ("emotion", "gender"):
        _, expected = average_by_utterance(offline[task], ids)
        np.testing.assert_allclose(np.asarray(served[task]), expected, rtol=0, atol=1e-5)


def test_padding_of_the_batch_does_not_change_an_utterance(aae):
    features, batch = _utterances(seed=1, pad_value=-1.0)
    model = SegmentAveragingModel(segment_classifier(aae, ("emotion",)), pad_value=-1.0)
    together = np.asarray(model(batch)["emotion"])
    for row, item in enumerate(features):
        alone = np.asarray(model(item[None])["emotion"])
        np.testing.assert_allclose(alone[0], together[row], rtol=0, atol=1e-5)


def test_segmenter_mask_counts_segments_like_segment_features():
    features, batch = _utterances(seed=2)
    for mode in ("pad", "drop"):
        _, ids = segment_features(features, SEGMENT, last_segment=mode)
        layer = FeatureSegmenter(SEGMENT, last_segment=mode)
        segments, mask = layer(batch)
        num_segments = -(-max(FRAME_COUNTS) // SEGMENT)
        assert tuple(segments.shape) == (len(features) * num_segments, SEGMENT, MELS)
        np.testing.assert_array_equal(
            np.asarray(mask).sum(axis=1), np.bincount(ids, minlength=len(features))
        )


def test_config_and_keras_round_trip(aae, tmp_path):
    _, batch = _utterances(seed=3)
    model = SegmentAveragingModel(segment_classifier(aae, ("emotion", "gender")))
    check_model(
        model,
        batch,
        {"emotion": (len(FRAME_COUNTS), 3), "gender": (len(FRAME_COUNTS), 2)},
        tmp_path,
    )


@pytest.mark.slow
def test_export_serves_waveforms_without_ser_keras(aae, tmp_path):
    from ser_keras.features.logmel import LogMel

    _, batch = _utterances(seed=4)
    model = SegmentAveragingModel(segment_classifier(aae, ("emotion", "gender")))
    check_model(
        model,
        batch,
        {"emotion": (len(FRAME_COUNTS), 3), "gender": (len(FRAME_COUNTS), 2)},
        tmp_path,
        export=True,
        frontend=LogMel.from_preset("latif", num_mels=MELS),
        label_names={"emotion": ["a", "b", "c"], "gender": ["female", "male"]},
    )


def test_bad_arguments_name_the_value(aae):
    with pytest.raises(ValueError, match="segment_length"):
        FeatureSegmenter(0)
    with pytest.raises(ValueError, match="bogus"):
        FeatureSegmenter(SEGMENT, last_segment="bogus")
    with pytest.raises(ValueError, match="valence"):
        segment_classifier(aae, ("emotion", "valence"))
    # A segment model without a fixed segment length.
    inputs = keras.Input((None, MELS))
    pooled = keras.layers.GlobalAveragePooling1D()(inputs)
    with pytest.raises(ValueError, match="segment_length"):
        SegmentAveragingModel(keras.Model(inputs, keras.layers.Dense(2)(pooled)))
