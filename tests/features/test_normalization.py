import numpy as np
import pytest

from ser_keras.features.normalization import standardize_per_speaker


def test_each_speaker_gets_zero_mean_unit_variance_over_valid_frames_only():
    rng = np.random.default_rng(0)
    features = rng.normal(5.0, 3.0, (4, 6, 3)).astype("float32")
    features[0, 4:] = -1.0  # padding of utterance 0
    features[3, 2:] = -1.0
    speakers = ["a", "a", "b", "b"]
    out = standardize_per_speaker(features, speakers, pad_value=-1.0)
    assert np.all(out[0, 4:] == -1.0) and np.all(out[3, 2:] == -1.0)
    for rows, valid in (((0, 1), [slice(0, 4), slice(0, 6)]), ((2, 3), [slice(0, 6), slice(0, 2)])):
        frames = np.concatenate([out[r, v] for r, v in zip(rows, valid, strict=True)])
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-3)
    # Input untouched; another speaker's statistics do not leak in.
    assert features[0, 0, 0] != out[0, 0, 0]
    alone = standardize_per_speaker(features[2:], speakers[2:], pad_value=-1.0)
    np.testing.assert_allclose(alone, out[2:], atol=1e-6)


def test_bad_shapes_are_refused_with_the_received_value():
    with pytest.raises(ValueError, match="Received shape"):
        standardize_per_speaker(np.zeros((2, 3)), ["a", "b"], pad_value=-1.0)
    with pytest.raises(ValueError, match="one id per utterance"):
        standardize_per_speaker(np.zeros((2, 3, 4)), ["a"], pad_value=-1.0)
