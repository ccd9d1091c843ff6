"""`build_aae_model`: the one path from presets to an AAE (experiment and hypermodel)."""

import keras
import numpy as np
import pytest

from ser_keras.models.aae_mtl import VARIANTS, AAEMultiTaskModel, build_aae_model, get_preset


def test_heads_are_the_tasks_given_in_the_variants_order():
    model = build_aae_model({"gender": 2, "emotion": 4}, "aae_mtl", "cpu_small", name="gender")
    assert model.tasks == ("emotion", "gender") and model.name == "gender"
    assert (model.alpha, model.beta) == (VARIANTS["aae_mtl"]["alpha"], VARIANTS["aae_mtl"]["beta"])
    assert model.decoder is not None and model.discriminator is not None
    cnn = build_aae_model({"emotion": 4}, "cnn_stl", "cpu_small", alpha=0.0, beta=1.0)
    assert cnn.decoder is None and cnn.discriminator is None and cnn.name == "cnn_stl"


def test_same_weights_as_from_preset_and_architecture_overrides():
    keras.utils.set_random_seed(0)
    built = build_aae_model({"emotion": 4}, "aae_stl", "cpu_small", seed=1)
    keras.utils.set_random_seed(0)
    reference = AAEMultiTaskModel.from_preset("cpu_small", "aae_stl", {"emotion": 4}, seed=1)
    for a, b in zip(built.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # preset=None: the architecture as given (the hypermodel's path).
    wide = build_aae_model(
        {"emotion": 4}, "aae_stl", None, alpha=0.5, **get_preset("cpu_small", head_units=8)
    )
    assert wide.alpha == 0.5
    assert wide.classifiers["emotion"].get_layer("dense_1").units == 8


@pytest.mark.parametrize(
    "num_classes, variant, match",
    [
        ({"speaker": 3}, "aae_mtl", "'emotion' included"),
        ({"emotion": 3, "speaker": 2}, "aae_stl", "tasks among"),
        ({"emotion": 3}, "nope", "Unknown variant"),
    ],
)
def test_refuses_tasks_the_variant_does_not_have(num_classes, variant, match):
    with pytest.raises(ValueError, match=match):
        build_aae_model(num_classes, variant, "cpu_small")
