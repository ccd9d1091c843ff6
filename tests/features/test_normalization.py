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


def test_band_statistics_skip_padding_and_refuse_all_padding():
    from ser_keras.features.normalization import band_statistics

    features = np.full((2, 4, 3), -1.0, np.float32)
    features[0, :3] = [[1, 2, 3], [3, 2, 1], [2, 2, 2]]
    features[1, :1] = [[2, 6, 2]]
    mean, std = band_statistics(features, pad_value=-1.0)
    np.testing.assert_allclose(mean, [2, 3, 2])
    np.testing.assert_allclose(std, np.std([[1, 2, 3], [3, 2, 1], [2, 2, 2], [2, 6, 2]], axis=0),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="no valid frame"):
        band_statistics(np.full((1, 2, 3), -1.0), pad_value=-1.0)


def test_band_standardization_layer_matches_the_offline_normalisation(tmp_path):
    import keras

    from ser_keras.features.normalization import BandStandardization, band_statistics

    rng = np.random.default_rng(1)
    features = rng.normal(2.0, 4.0, (3, 5, 4)).astype("float32")
    features[1, 3:] = 0.0  # padding (pad value 0, as the latif front-end's)
    mean, std = band_statistics(features, pad_value=0.0)
    layer = BandStandardization(mean, std, pad_value=0.0)
    expected = standardize_per_speaker(features, ["corpus"] * 3, pad_value=0.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(features)), expected, atol=1e-5)

    # Inside a model: config round trip and a .keras reload give the same outputs.
    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, BandStandardization(mean, std, name="standardize")(inputs))
    path = tmp_path / "standardize.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(features, verbose=0), expected, atol=1e-5)
    clone = BandStandardization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "arguments, match",
    [
        (dict(mean=[0.0, 1.0], std=[1.0]), "1 standard deviations"),
        (dict(mean=[0.0], std=[-1.0]), "non-negative"),
        (dict(mean=[float("nan")], std=[1.0]), "finite"),
        (dict(mean=[0.0], std=[1.0], epsilon=0.0), "epsilon=0.0"),
    ],
)
def test_band_standardization_refuses_bad_statistics(arguments, match):
    from ser_keras.features.normalization import BandStandardization

    with pytest.raises(ValueError, match=match):
        BandStandardization(**arguments)


def test_band_standardization_refuses_another_number_of_bands():
    import keras

    from ser_keras.features.normalization import BandStandardization

    with pytest.raises(ValueError, match="statistics of 2 bands"):
        BandStandardization([0.0, 0.0], [1.0, 1.0])(keras.Input((5, 3)))
