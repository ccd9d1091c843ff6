import keras
import numpy as np
import pytest

from ser_keras.models.multigate import (
    LANGUAGE_SETTINGS,
    PAPER_OPTIMIZER,
    PRESETS,
    VARIANTS,
    MultiGatingSER,
    make_optimizer,
    union_of_classes,
)
from tests.model_checks import check_model

CLASS_NAMES = {
    "en": ["anger", "neutral", "surprise"],
    "de": ["anger", "boredom", "neutral", "sadness"],
}

# Every expert, tiny: sequence encoders on 10 frames of 24 bands.
TINY = {
    "num_frames": 10,
    "num_mels": 24,
    "logmel_conv_filters": 3,
    "logmel_lstm_units": 4,
    "logmel_attention_units": 6,
    "num_mfcc": 8,
    "mfcc_conv_filters": 3,
    "mfcc_lstm_units": 3,
    "mfcc_lstm_layers": 2,
    "mfcc_attention_units": 5,
    "expert_units": 6,
    "tower_units": {"en": 8, "de": 8},
    "shared_tower_units": 8,
}
# No recurrent layer (fast to trace): the functionals plus one external embedding.
FAST = {
    "num_frames": 10,
    "num_mels": 24,
    "experts": ("statistics",),
    "embedding_dims": {"egemaps": 5},
    "expert_units": 6,
    "tower_units": {"en": 8, "de": 8},
    "shared_tower_units": 8,
    "min_samples_per_class": 2,
}


def _features(batch, frames=10, mels=24, valid=(10, 6), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(batch, frames, mels)).astype("float32")
    for row in range(batch):
        x[row, valid[row % len(valid)] :] = -1.0  # the fu2021 padding value
    return x


def _fast_inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "features": _features(batch, seed=seed),
        "egemaps": rng.normal(size=(batch, 5)).astype("float32"),
    }


def test_presets_hold_the_paper_numbers():
    paper = PRESETS["wang"]
    assert (paper["logmel_conv_filters"], paper["logmel_conv_kernel_sizes"]) == (64, (3, 5))
    assert (paper["logmel_lstm_units"], paper["logmel_attention_units"]) == (128, 256)
    assert (paper["mfcc_conv_filters"], paper["mfcc_lstm_units"], paper["mfcc_lstm_layers"]) == (
        32,
        64,
        2,
    )
    assert paper["dropout_rate"] == 0.1
    assert (paper["hard_concrete_beta"], paper["hard_concrete_gamma"]) == (0.9, -0.1)
    assert paper["hard_concrete_delta"] == 2.0
    assert LANGUAGE_SETTINGS["en"] == {
        "tower_units": 256,
        "tower_activations": ("mish", "gelu"),
        "contrastive_weight": 0.1,
    }
    assert LANGUAGE_SETTINGS["de"]["tower_units"] == 512
    assert LANGUAGE_SETTINGS["de"]["contrastive_weight"] == 0.01
    assert LANGUAGE_SETTINGS["fr"]["contrastive_weight"] == 0.015
    assert PAPER_OPTIMIZER == {
        "learning_rate": 1e-3,
        "beta_1": 0.9,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "weight_decay": 1e-5,
    }
    optimizer = make_optimizer()
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert float(optimizer.weight_decay) == 1e-5 and optimizer.epsilon == 1e-8
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    assert float(make_optimizer(learning_rate=3e-4).learning_rate) == pytest.approx(3e-4)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer(momentum=0.9)


def test_multigate_with_every_expert_passes_the_shared_checks(tmp_path):
    model = MultiGatingSER(class_names=CLASS_NAMES, variant="multigate", **TINY)
    assert model.expert_names == ("logmel", "mfcc", "statistics")
    check_model(
        model, _features(3), {"emotion_en": (3, 3), "emotion_de": (3, 4)}, tmp_path, atol=1e-5
    )


@pytest.mark.slow  # the app's test exports (verified in-process) in CI.
def test_exported_model_serves_every_language_without_ser_keras(tmp_path):
    # The functionals expert alone: the export path is the same, minus the
    # recurrent layers' tracing time.
    model = MultiGatingSER(
        class_names=CLASS_NAMES, variant="multigate", **{**TINY, "experts": ("statistics",)}
    )
    check_model(
        model,
        _features(3),
        {"emotion_en": (3, 3), "emotion_de": (3, 4)},
        tmp_path,
        export=True,
        label_names=model.label_names,
        atol=1e-5,
    )


def test_padding_does_not_change_the_prediction():
    model = MultiGatingSER(class_names=CLASS_NAMES, variant="mmoe", **{**TINY, "num_frames": None})
    short = _features(2, frames=6, valid=(6,))
    padded = np.concatenate([short, np.full((2, 5, 24), -1.0, "float32")], axis=1)
    first = model(short, training=False)
    second = model(padded, training=False)
    for task in first:
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(first[task]),
            keras.ops.convert_to_numpy(second[task]),
            atol=1e-5,
        )


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_its_heads(variant):
    class_names = {"de": CLASS_NAMES["de"]} if variant == "single" else CLASS_NAMES
    config = {**FAST, "tower_units": {lang: 8 for lang in class_names}}
    model = MultiGatingSER(class_names=class_names, variant=variant, **config)
    outputs = model.predict(_fast_inputs(4), verbose=0)
    if variant == "base":
        union = union_of_classes(CLASS_NAMES)
        assert union == ("anger", "boredom", "neutral", "sadness", "surprise")
        assert model.label_names == {"emotion": list(union)}
        assert {k: v.shape for k, v in outputs.items()} == {"emotion": (4, 5)}
        # alpha of the shared head: the mean of the languages' (0.1 and 0.01).
        assert model.task_contrastive_weights == {"emotion": pytest.approx(0.055)}
        assert model.task_of("en") == "emotion"
    else:
        expected = {f"emotion_{lang}": (4, len(names)) for lang, names in class_names.items()}
        assert {k: v.shape for k, v in outputs.items()} == expected
        assert model.task_of("de") == "emotion_de"
    details = model.predict_details(_fast_inputs(4))
    gates = details["gates"]
    if variant in ("omoe", "mmoe", "multigate"):
        assert set(gates) == set(expected)
        for weights in gates.values():
            np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    else:
        assert not gates
    gate_layers = {layer.name for layer in model.layers if layer.name.startswith("gate")}
    assert gate_layers == {
        "omoe": {"gate"},
        "mmoe": {"gate_en", "gate_de"},
        "multigate": {"gate_en", "gate_de"},
    }.get(variant, set())
    routing = {layer.name for layer in model.layers if layer.name.startswith("routing")}
    assert routing == ({"routing_en", "routing_de"} if variant == "multigate" else set())


def test_training_adds_the_contrastive_loss_of_equation_6_and_logs_mean_ua():
    model = MultiGatingSER(
        class_names=CLASS_NAMES, variant="multigate", l0_penalty_weight=0.01, seed=1, **FAST
    )
    model.compile(optimizer=make_optimizer())
    rng = np.random.default_rng(0)
    inputs = _fast_inputs(24)
    language = np.repeat([0, 1], 12)
    labels = {
        "emotion_en": np.where(language == 0, np.tile([0, 1, 2], 8), -1).astype("int32"),
        "emotion_de": np.where(language == 1, np.tile([0, 1, 2, 3], 6), -1).astype("int32"),
    }
    # Eq. 6 at inference (no dropout, deterministic gates): CE + alpha * sum_ij L(x_ji).
    details = model.forward_with_details(inputs, training=False)
    expected = 0.0
    for task in ("emotion_en", "emotion_de"):
        probabilities = keras.ops.convert_to_numpy(details["probabilities"][task])
        labelled = labels[task] >= 0
        expected += -np.mean(np.log(probabilities[labelled, labels[task][labelled]]))
        layer = model.contrastive_losses[task]
        expected += model.task_contrastive_weights[task] * float(
            keras.ops.convert_to_numpy(layer(details["representations"][task], labels[task]))
        )
    loss = model.compute_loss(inputs, labels, training=False)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), expected, rtol=1e-4)
    assert model.task_contrastive_weights == {"emotion_en": 0.1, "emotion_de": 0.01}

    scale_before = float(model.contrastive_losses["emotion_en"].similarity_scale.numpy())
    history = model.fit(
        inputs, labels, validation_data=(inputs, labels), epochs=2, batch_size=24, verbose=0
    ).history
    for key in (
        "loss",
        "mean_ua",
        "val_mean_ua",
        "emotion_en_contrastive_loss",
        "val_emotion_de_contrastive_loss",
        "emotion_de_ua",
    ):
        assert key in history and np.all(np.isfinite(history[key])), key
    assert history["emotion_en_contrastive_loss"][0] > 0
    assert float(model.contrastive_losses["emotion_en"].similarity_scale.numpy()) != scale_before
    gates = model.connection_gates()
    assert set(gates) == {"en", "de"} and gates["en"].shape == (2, 2)
    assert not np.allclose(gates["en"], gates["de"])  # per-language NAS
    del rng


def test_alpha_zero_has_no_contrastive_weights():
    model = MultiGatingSER(
        class_names=CLASS_NAMES, variant="mmoe", contrastive_weights={"en": 0.0, "de": 0.0}, **FAST
    )
    assert model.contrastive_losses == {}
    assert not any("similarity" in w.path for w in model.weights)


def test_contrastive_weights_are_saved(tmp_path):
    config = {**FAST, "tower_units": {"de": 8}}
    model = MultiGatingSER(class_names={"de": CLASS_NAMES["de"]}, variant="single", **config)
    model.contrastive_losses["emotion_de"].similarity_bias.assign(-1.25)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert float(reloaded.contrastive_losses["emotion_de"].similarity_bias.numpy()) == -1.25


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ({"class_names": {}}, "class_names"),
        ({"variant": "moe"}, "moe"),
        ({"variant": "single"}, "single"),
        ({"experts": ("logmel", "wav2vec")}, "wav2vec"),
        ({"gate_selector": "ge2e"}, "ge2e"),
        ({"contrastive_weights": {"fr": 0.1}}, "fr"),
        ({"tower_activations": {"en": ("mish", "bogus")}}, "bogus"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"embedding_dims": {"mfcc": 3}}, "mfcc"),
    ],
)
def test_bad_arguments_are_rejected(arguments, expected):
    config = {"class_names": CLASS_NAMES, **FAST, **arguments}
    with pytest.raises(ValueError, match=expected):
        MultiGatingSER(**config)


def test_from_preset_needs_class_names_and_a_known_preset():
    with pytest.raises(ValueError, match="class_names"):
        MultiGatingSER.from_preset("wang_cpu")
    with pytest.raises(ValueError, match="nope"):
        MultiGatingSER.from_preset("nope", class_names=CLASS_NAMES)


def test_functionals_are_standardised_with_training_statistics(tmp_path):
    config = {**FAST, "tower_units": {"de": 8}}
    model = MultiGatingSER(class_names={"de": CLASS_NAMES["de"]}, variant="single", **config)
    inputs = _fast_inputs(16)
    model.adapt_normalization(inputs)
    normalisation = model.get_layer("statistics_normalization")
    view = keras.Model(model.inputs, normalisation.output)
    standardised = view.predict(inputs, verbose=0)
    np.testing.assert_allclose(standardised.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standardised.std(axis=0), 1.0, atol=1e-2)
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        reloaded.predict(inputs, verbose=0)["emotion_de"],
        model.predict(inputs, verbose=0)["emotion_de"],
        atol=1e-6,
    )
