"""Tests of the AAE multi-task network builders (Latif et al., Section 4.3)."""

import numpy as np
import pytest

from ser_keras.models import aae_mtl
from tests.model_checks import check_model


@pytest.fixture(scope="module")
def paper_networks():
    """The paper preset's networks, built once for the module."""
    config = aae_mtl.get_preset("latif2020")
    return aae_mtl.build_aae_networks({"emotion": 4, "speaker": 10, "gender": 2}, **config)


def test_paper_preset_maps_a_128_by_256_segment_to_a_16_by_16_by_32_code(paper_networks):
    encoder, decoder = paper_networks["encoder"], paper_networks["decoder"]
    assert tuple(encoder.input.shape) == (None, 256, 128)
    assert tuple(encoder.output.shape) == (None, 16, 16, 32)
    assert tuple(decoder.input.shape) == (None, 16, 16, 32)
    assert tuple(decoder.output.shape) == (None, 256, 128)
    segment = np.zeros((1, 256, 128), "float32")
    assert tuple(encoder(segment, training=False).shape) == (1, 16, 16, 32)
    assert aae_mtl.latent_shape(
        **{
            key: aae_mtl.AAE_MTL_PRESETS["latif2020"][key]
            for key in ("num_frames", "num_mels", "encoder_filters", "pool_sizes")
        }
    ) == (16, 16, 32)


def test_encoder_stages_follow_the_paper(paper_networks):
    names = [layer.__class__.__name__ for layer in paper_networks["encoder"].layers]
    assert names.count("Conv2D") == 3
    assert names.count("BatchNormalization") == 3
    assert names.count("MaxPooling2D") == 3
    # Batch normalisation before the nonlinearity; the code itself is linear.
    assert names.count("ReLU") == 2
    first = names.index("Conv2D")
    assert names[first : first + 4] == ["Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D"]
    decoder_names = [layer.__class__.__name__ for layer in paper_networks["decoder"].layers]
    assert decoder_names.count("Conv2DTranspose") == 3


def test_classifiers_and_discriminator_layout(paper_networks):
    heads = paper_networks["classifiers"]
    assert [int(heads[t].output.shape[-1]) for t in ("emotion", "speaker", "gender")] == [4, 10, 2]
    for head in list(heads.values()) + [paper_networks["discriminator"]]:
        kinds = [layer.__class__.__name__ for layer in head.layers]
        assert kinds.count("Conv2D") == 1 and kinds.count("MaxPooling2D") == 1
        assert kinds.count("Dense") == 3  # two hidden dense layers + the softmax layer
        dropout = [layer for layer in head.layers if layer.__class__.__name__ == "Dropout"]
        assert len(dropout) == 1 and dropout[0].rate == pytest.approx(0.3)
        dense = [layer for layer in head.layers if layer.__class__.__name__ == "Dense"]
        assert kinds.index("Dropout") == kinds.index("Dense") + 1  # between the dense layers
        assert dense[-1].get_config()["activation"] == "softmax"
    assert int(paper_networks["discriminator"].output.shape[-1]) == 2
    code = np.random.default_rng(0).normal(size=(3, 16, 16, 32)).astype("float32")
    probabilities = np.asarray(heads["emotion"](code, training=False))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


def test_cpu_preset_and_variants_of_the_builder():
    config = aae_mtl.get_preset("cpu_small")
    networks = aae_mtl.build_aae_networks(
        {"emotion": 3}, reconstruction=False, adversarial=False, **config
    )
    assert networks["decoder"] is None and networks["discriminator"] is None
    assert list(networks["classifiers"]) == ["emotion"]
    segments = np.zeros((2, config["num_frames"], config["num_mels"]), "float32")
    code = networks["encoder"](segments, training=False)
    assert tuple(code.shape[1:]) == aae_mtl.latent_shape(
        config["num_frames"], config["num_mels"], config["encoder_filters"], config["pool_sizes"]
    )


def test_invalid_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="not divisible"):
        aae_mtl.build_encoder(num_frames=250)
    with pytest.raises(ValueError, match="one pooling size per stage"):
        aae_mtl.build_encoder(pool_sizes=((2, 2), (2, 2)))
    with pytest.raises(ValueError, match="Unknown AAE preset"):
        aae_mtl.get_preset("latif2019")
    with pytest.raises(ValueError, match="Unknown architecture arguments"):
        aae_mtl.get_preset("latif2020", num_filters=3)
    with pytest.raises(ValueError, match="dropout_rate"):
        aae_mtl.build_classifier(dropout_rate=1.0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        aae_mtl.build_classifier(num_classes=1)
    with pytest.raises(ValueError, match="adversarial"):
        aae_mtl.build_aae_networks({"emotion": 4}, reconstruction=False, adversarial=True)


@pytest.mark.parametrize("network", ["encoder", "decoder", "discriminator", "classifier"])
def test_builders_round_trip(network, tmp_path):
    config = aae_mtl.get_preset("cpu_small")
    encoder_args = {
        key: config[key]
        for key in ("num_frames", "num_mels", "encoder_filters", "kernel_size", "pool_sizes")
    }
    code_shape = aae_mtl.latent_shape(
        config["num_frames"], config["num_mels"], config["encoder_filters"], config["pool_sizes"]
    )
    head_args = {
        key: config[key]
        for key in ("head_filters", "head_kernel_size", "head_pool_size", "head_units")
    }
    rng = np.random.default_rng(0)
    segments = rng.normal(size=(2, config["num_frames"], config["num_mels"])).astype("float32")
    code = rng.normal(size=(2,) + code_shape).astype("float32")
    cases = {
        "encoder": (lambda: aae_mtl.build_encoder(**encoder_args), segments, (2,) + code_shape),
        "decoder": (lambda: aae_mtl.build_decoder(**encoder_args), code, segments.shape),
        "discriminator": (
            lambda: aae_mtl.build_discriminator(code_shape, **head_args),
            code,
            (2, 2),
        ),
        "classifier": (
            lambda: aae_mtl.build_classifier(code_shape, num_classes=5, **head_args),
            code,
            (2, 5),
        ),
    }
    builder, inputs, shape = cases[network]
    check_model(builder, inputs, shape, tmp_path)
