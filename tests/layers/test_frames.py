"""ser_keras.layers.frames: the frame layers of Kim et al.'s frame-level networks."""

import keras
import numpy as np
import pytest

from ser_keras.layers.frames import (
    FeatureStandardization,
    FlattenFrames,
    FrameValidity,
    MaskedFrameMean,
    MaskFrames,
)

LAYERS = (FrameValidity, FeatureStandardization, MaskFrames, FlattenFrames, MaskedFrameMean)


def _features():
    """2 utterances of 4 frames x 3 features; the second has 2 padded frames (all 0)."""
    values = np.arange(1, 25, dtype="float32").reshape(2, 4, 3)
    values[1, 2:] = 0.0
    return values


@pytest.mark.parametrize("layer", LAYERS)
def test_registered_names_are_kept(layer):
    # The names the layers had in ser_keras.models.kim_mtl: .keras files
    # written before the move still load.
    assert keras.saving.get_registered_name(layer) == f"ser_keras>{layer.__name__}"
    assert keras.saving.get_registered_object(f"ser_keras>{layer.__name__}") is layer


def test_validity_masking_and_masked_mean():
    features = _features()
    valid = FrameValidity(pad_value=0.0)(features)
    np.testing.assert_array_equal(valid, [[True] * 4, [True, True, False, False]])
    masked = MaskFrames()([features + 1.0, valid])
    assert np.all(np.asarray(masked)[1, 2:] == 0.0)
    np.testing.assert_allclose(np.asarray(masked)[0], features[0] + 1.0)
    mean = np.asarray(MaskedFrameMean()([features, valid]))
    np.testing.assert_allclose(mean[0], features[0].mean(axis=0))
    np.testing.assert_allclose(mean[1], features[1, :2].mean(axis=0))
    # An utterance without a valid frame gets zeros, not NaN.
    empty = np.zeros((1, 3, 2), dtype="float32")
    np.testing.assert_array_equal(
        MaskedFrameMean()([empty, FrameValidity()(empty)]), np.zeros((1, 2))
    )
    assert np.asarray(FlattenFrames()(features)).shape == (8, 3)


def test_standardization_reads_its_weights_at_every_call():
    layer = FeatureStandardization(epsilon=0.0)
    frames = np.random.default_rng(0).normal(3.0, 2.0, (500, 3)).astype("float32")
    layer.build((None, 3))
    layer.adapt(frames)
    out = np.asarray(layer(frames))
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=0), 1.0, atol=1e-4)
    layer.set_weights([np.zeros(3), np.full(3, 4.0)])
    np.testing.assert_allclose(np.asarray(layer(frames)), frames / 2.0, rtol=1e-5)


def test_a_model_of_the_layers_saves_and_loads(tmp_path):
    inputs = keras.Input((None, 3))
    valid = FrameValidity(name="valid")(inputs)
    x = FeatureStandardization(name="norm")(inputs)
    x = MaskFrames()([x, valid])
    model = keras.Model(inputs, {"mean": MaskedFrameMean()([x, valid]), "flat": FlattenFrames()(x)})
    model.get_layer("norm").set_weights([np.ones(3), np.full(3, 4.0)])
    path = tmp_path / "frames.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    features = _features()
    for name, value in model(features).items():
        np.testing.assert_allclose(loaded(features)[name], value, rtol=1e-6)
