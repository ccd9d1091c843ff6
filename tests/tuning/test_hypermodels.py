import keras
import keras_tuner
import numpy as np
import pytest

from ser_keras.tuning import hypermodels
from tests.tuning.util import (
    TINY_ATTENTION,
    TINY_KIM,
    random_data,
    tiny_hypermodel,
)

LANGUAGES = {"en": ["anger", "happiness"], "de": ["anger", "boredom"], "fr": ["anger", "joy"]}


def _defaults(hypermodel):
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    return hp, model


# --------------------------------------------------------------------- defaults


def test_attention_defaults_are_the_numbers_of_paper_004():
    hp, model = _defaults(hypermodels.AttentionCNNBLSTMHyperModel(num_emotions=7, num_speakers=3))
    # Fu et al.: loss weights 1 (eq. 5), dropout 0.35, conv 512/1024/2048,
    # bottleneck 512, LSTM 128, 16 heads, Keras RMSprop (learning rate 0.001).
    assert hp.values == {
        "emotion_loss_weight": 1.0,
        "speaker_loss_weight": 1.0,
        "dropout_rate": 0.35,
        "first_conv_filters": 512,
        "bottleneck_units": 512,
        "lstm_units": 128,
        "num_attention_heads": 16,
        "learning_rate": 0.001,
    }
    assert model.conv_filters == (512, 1024, 2048)
    assert (model.bottleneck_units, model.lstm_units, model.num_attention_heads) == (512, 128, 16)
    assert model.task_weights == {"emotion": 1.0, "speaker": 1.0}
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.001)


def test_resnet_defaults_are_the_numbers_of_paper_000():
    hp, model = _defaults(
        hypermodels.ResNetLSTMHyperModel(
            num_emotions=2, num_languages=5, use_domain_head=True, num_frames=600
        )
    )
    # Latif et al. (000): alpha 0.3, LSTM 128, dense 256; dropout and Adam's
    # learning rate are the latif_crosslang preset's / our choice (not in the paper).
    assert hp.values == {
        "alpha": 0.3,
        "lstm_units": 128,
        "dense_units": 256,
        "dropout_rate": 0.0,
        "learning_rate": 0.001,
    }
    assert model.task_weights == {"emotion": 1.0, "language": 0.3, "domain": 0.3}
    assert (model.lstm_units, model.dense_units, model.num_residual_blocks) == (128, 256, 8)


def test_aae_defaults_are_the_numbers_of_paper_002():
    hp, model = _defaults(
        hypermodels.AAEMultiTaskHyperModel({"emotion": 4, "speaker": 10, "gender": 2})
    )
    # Latif et al. (002): alpha 0.4, beta 0.6 (AAE, categorical), dropout 0.3,
    # a 16 x 16 x 32 code, SGD with learning rate 0.0001.
    assert hp.values == {
        "code_channels": 32,
        "head_units": 128,
        "dropout_rate": 0.3,
        "alpha": 0.4,
        "beta": 0.6,
        "optimizer": "sgd",
        "learning_rate": 0.0001,
    }
    assert (model.alpha, model.beta) == (0.4, 0.6)
    assert tuple(model.encoder.output.shape[1:]) == (16, 16, 32)
    for optimizer in model.phase_optimizers.values():
        assert isinstance(optimizer, keras.optimizers.SGD)
        assert float(optimizer.learning_rate) == pytest.approx(1e-4)


def test_ae_variant_defaults_are_the_ae_values_of_paper_002():
    hp, model = _defaults(
        hypermodels.AAEMultiTaskHyperModel(
            {"emotion": 4, "speaker": 5, "gender": 2}, variant="ae_mtl", preset="cpu_small"
        )
    )
    assert (hp.get("alpha"), hp.get("beta")) == (0.3, 0.7)
    assert model.discriminator is None


def test_cnn_variant_has_no_loss_weights_to_tune():
    hp, model = _defaults(
        hypermodels.AAEMultiTaskHyperModel({"emotion": 4}, variant="cnn_stl", preset="cpu_small")
    )
    assert "alpha" not in hp.values and "beta" not in hp.values
    assert model.decoder is None


def test_kim_defaults_are_the_numbers_of_paper_001():
    hp, model = _defaults(hypermodels.KimMTLHyperModel())
    # Kim et al.: LSTM-MTL of 2 layers x 256 cells, dropout .5, lambda .1 for
    # gender and naturalness (eq. 1), Adam with a fixed learning rate of 3e-3.
    assert hp.values == {
        "auxiliary_loss_weight": 0.1,
        "units": 256,
        "dropout_rate": 0.5,
        "learning_rate": 0.003,
    }
    assert (model.network, model.num_layers, model.units, model.num_features) == (
        "lstm", 2, 256, 32
    )
    assert model.dropout_rate == pytest.approx(0.5)
    assert model.task_weights == {"emotion": 1.0, "gender": 0.1, "naturalness": 0.1}
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-3)

    hp, model = _defaults(hypermodels.KimMTLHyperModel(network="dnn"))
    # DNN-MTL: 3 hidden layers of 256 nodes, a 250 ms context window.
    assert hp.get("units") == 256
    assert (model.network, model.num_layers, model.units, model.context_frames) == (
        "dnn", 3, 256, 25
    )


def test_multigate_defaults_are_the_numbers_of_paper_003():
    hp, model = _defaults(hypermodels.MultiGatingHyperModel(LANGUAGES))
    # Wang et al.: alpha 0.1, 0.01, 0.015 for English, German, French; dropout
    # 0.1; LSTM 128 (attention 256) and MFCC LSTM 64; AdamW lr 0.001, weight
    # decay 1e-5. The common expert size 256 is the wang preset's.
    assert hp.values == {
        "alpha_en": 0.1,
        "alpha_de": 0.01,
        "alpha_fr": 0.015,
        "dropout_rate": 0.1,
        "logmel_lstm_units": 128,
        "mfcc_lstm_units": 64,
        "expert_units": 256,
        "learning_rate": 0.001,
    }
    assert model.task_contrastive_weights == {
        "emotion_en": 0.1, "emotion_de": 0.01, "emotion_fr": 0.015
    }
    assert (model.logmel_conv_filters, model.logmel_lstm_units, model.logmel_attention_units) == (
        64, 128, 256
    )
    assert (model.mfcc_conv_filters, model.mfcc_lstm_units, model.mfcc_lstm_layers) == (32, 64, 2)
    assert (model.expert_units, model.variant, model.dropout_rate) == (256, "multigate", 0.1)
    assert model.tower_units == {"en": 256, "de": 512, "fr": 512}
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    assert optimizer.weight_decay == pytest.approx(1e-5)


def test_multigate_variants_declare_their_own_weights():
    hp, model = _defaults(
        hypermodels.MultiGatingHyperModel(LANGUAGES, variant="base", preset="wang_cpu")
    )
    assert "alpha" in hp.values and "alpha_en" not in hp.values
    assert hp.get("alpha") == pytest.approx((0.1 + 0.01 + 0.015) / 3)
    assert model.task_contrastive_weights == {"emotion": pytest.approx(hp.get("alpha"))}
    hp, _ = _defaults(
        hypermodels.MultiGatingHyperModel(
            {"de": ["anger", "boredom"]}, variant="single", preset="wang_cpu",
            experts=("statistics",),
        )
    )
    # No common expert size (the experts are concatenated), no encoder to widen.
    assert set(hp.values) == {"alpha_de", "dropout_rate", "learning_rate"}


def test_single_task_models_have_no_auxiliary_weights():
    hp, _ = _defaults(hypermodels.AttentionCNNBLSTMHyperModel(preset=TINY_ATTENTION))
    assert "speaker_loss_weight" not in hp.values
    hp = keras_tuner.HyperParameters()
    hypermodels.ResNetLSTMHyperModel(preset="latif_crosslang_cpu", num_frames=64).build(hp)
    assert "alpha" not in hp.values
    hp, model = _defaults(hypermodels.KimMTLHyperModel(auxiliary_tasks=(), preset=TINY_KIM))
    assert "auxiliary_loss_weight" not in hp.values
    assert model.task_weights == {"emotion": 1.0}


# -------------------------------------------------------------- search ranges


def _range(hp, name):
    entry = next(item for item in hp.space if item.name == name)
    return entry.min_value, entry.max_value


def test_loss_weight_ranges_come_from_the_papers():
    hp, _ = _defaults(
        hypermodels.ResNetLSTMHyperModel(num_languages=2, preset="latif_crosslang_cpu")
    )
    assert _range(hp, "alpha") == (0.1, 0.5)  # paper 000: "different values of alpha (0.1-0.5)"
    hp, _ = _defaults(
        hypermodels.AAEMultiTaskHyperModel({"emotion": 3, "gender": 2}, preset="cpu_small")
    )
    assert _range(hp, "alpha") == (0.1, 1.0)  # paper 002: "alpha and beta ranging from 0.1 to 1.0"
    assert _range(hp, "beta") == (0.1, 1.0)
    hp, _ = _defaults(
        hypermodels.AttentionCNNBLSTMHyperModel(num_speakers=2, preset=TINY_ATTENTION)
    )
    assert _range(hp, "emotion_loss_weight") == (0.1, 1.0)  # gamma, theta of eq. 5
    assert _range(hp, "speaker_loss_weight") == (0.1, 1.0)
    # Paper 001 sets lambda = 0.1 without a range (ours: half to five times it).
    hp, _ = _defaults(hypermodels.KimMTLHyperModel(auxiliary_tasks=("gender",), preset=TINY_KIM))
    assert _range(hp, "auxiliary_loss_weight") == (0.05, 0.5)
    # Paper 003 uses alpha 0.01 to 0.1 (and 0 in Table 4); a decade either side, log-sampled.
    hp, _ = _defaults(hypermodels.MultiGatingHyperModel(LANGUAGES, preset="wang_cpu"))
    for language in LANGUAGES:
        low, high = _range(hp, f"alpha_{language}")
        assert (low, high) == (0.001, 1.0)
        entry = next(item for item in hp.space if item.name == f"alpha_{language}")
        assert entry.sampling == "log"
    assert {hp.get(f"alpha_{language}") for language in LANGUAGES} == {0.1, 0.01, 0.015}


# ------------------------------------------------------------ preset scaling


def test_cpu_presets_keep_paper_defaults_and_build_cpu_widths():
    from ser_keras.models.aae_mtl import AAE_MTL_PRESETS
    from ser_keras.models.attention_cnn_blstm import PRESETS
    from ser_keras.models.resnet_lstm import RESNET_LSTM_PRESETS

    hp, model = _defaults(
        hypermodels.AttentionCNNBLSTMHyperModel(num_speakers=3, preset="fu2021_cpu")
    )
    assert hp.get("lstm_units") == 128 and hp.get("first_conv_filters") == 512
    cpu = PRESETS["fu2021_cpu"]
    assert model.conv_filters == cpu["conv_filters"]
    assert (model.bottleneck_units, model.lstm_units, model.num_attention_heads) == (
        cpu["bottleneck_units"], cpu["lstm_units"], cpu["num_attention_heads"]
    )

    hp, model = _defaults(
        hypermodels.ResNetLSTMHyperModel(
            num_languages=2, preset="latif_crosslang_cpu", num_frames=64
        )
    )
    assert (hp.get("lstm_units"), hp.get("dense_units")) == (128, 256)
    cpu = RESNET_LSTM_PRESETS["latif_crosslang_cpu"]
    assert (model.lstm_units, model.dense_units) == (cpu["lstm_units"], cpu["dense_units"])

    hp, model = _defaults(
        hypermodels.AAEMultiTaskHyperModel({"emotion": 3, "speaker": 4}, preset="cpu_small")
    )
    assert (hp.get("code_channels"), hp.get("head_units")) == (32, 128)
    cpu = AAE_MTL_PRESETS["cpu_small"]
    assert model.encoder.output.shape[-1] == cpu["encoder_filters"][-1]
    assert model.classifiers["emotion"].get_layer("dense_1").units == cpu["head_units"]


def test_kim_and_multigate_widths_scale_to_the_cpu_presets():
    from ser_keras.models.multigate import PRESETS

    hypermodel = hypermodels.KimMTLHyperModel(preset={"units": 64})  # as apps.tune --preset quick
    hp, model = _defaults(hypermodel)
    assert hp.get("units") == 256 and model.units == 64
    hp.values.update(units=128, auxiliary_loss_weight=0.3, dropout_rate=0.2, learning_rate=0.01)
    model = hypermodel.build(hp)
    assert model.units == 32
    assert model.task_weights == {
        "emotion": 1.0, "gender": pytest.approx(0.3), "naturalness": pytest.approx(0.3)
    }
    assert model.dropout_rate == pytest.approx(0.2)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.01)

    hypermodel = hypermodels.MultiGatingHyperModel(LANGUAGES, preset="wang_cpu")
    hp, model = _defaults(hypermodel)
    cpu = PRESETS["wang_cpu"]
    assert (model.logmel_lstm_units, model.logmel_attention_units) == (
        cpu["logmel_lstm_units"], cpu["logmel_attention_units"]
    )
    assert (model.mfcc_lstm_units, model.mfcc_attention_units, model.expert_units) == (
        cpu["mfcc_lstm_units"], cpu["mfcc_attention_units"], cpu["expert_units"]
    )
    hp.values.update(
        logmel_lstm_units=256, mfcc_lstm_units=32, expert_units=512, alpha_de=0.5,
        dropout_rate=0.3,
    )
    model = hypermodel.build(hp)
    # wang_cpu has a quarter of the paper's log-mel LSTM, attention twice the LSTM.
    assert (model.logmel_lstm_units, model.logmel_attention_units) == (64, 128)
    assert (model.mfcc_lstm_units, model.mfcc_attention_units) == (8, 16)
    assert model.expert_units == 128
    assert model.task_contrastive_weights["emotion_de"] == pytest.approx(0.5)
    assert model.task_contrastive_weights["emotion_en"] == pytest.approx(0.1)
    assert model.dropout_rate == pytest.approx(0.3)


def test_hyperparameter_values_reach_the_model():
    hypermodel = hypermodels.AttentionCNNBLSTMHyperModel(num_speakers=3, preset="fu2021_cpu")
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(
        lstm_units=256, num_attention_heads=8, first_conv_filters=256, dropout_rate=0.1,
        speaker_loss_weight=0.2, learning_rate=0.005,
    )
    model = hypermodel.build(hp)
    # The CPU preset has a quarter of the paper's LSTM and heads, an eighth of its filters.
    assert (model.lstm_units, model.num_attention_heads) == (64, 2)
    assert model.conv_filters == (32, 64, 128)
    assert model.dropout_rate == pytest.approx(0.1)
    assert model.task_weights["speaker"] == pytest.approx(0.2)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)

    hypermodel = hypermodels.ResNetLSTMHyperModel(
        num_languages=2, use_domain_head=True, preset="latif_crosslang_cpu", num_frames=64
    )
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values["alpha"] = 0.1
    assert hypermodel.build(hp).task_weights == {
        "emotion": 1.0, "language": pytest.approx(0.1), "domain": pytest.approx(0.1)
    }

    hypermodel = hypermodels.AAEMultiTaskHyperModel({"emotion": 3, "gender": 2}, preset="cpu_small")
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    hp.values.update(alpha=0.9, beta=0.2, optimizer="adam", learning_rate=0.003)
    model = hypermodel.build(hp)
    assert (model.alpha, model.beta) == (pytest.approx(0.9), pytest.approx(0.2))
    assert model.task_weights() == {"emotion": pytest.approx(0.2), "gender": pytest.approx(0.8)}
    for optimizer in model.phase_optimizers.values():
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert float(optimizer.learning_rate) == pytest.approx(0.003)
    assert len({id(o) for o in model.phase_optimizers.values()}) == 4


def test_scaled_heads_divide_the_attention_width():
    # An LSTM of 3 units (6 features both ways) cannot take the 4 heads the
    # scaled default gives: the count drops to a divisor.
    preset = dict(TINY_ATTENTION, lstm_units=3, num_attention_heads=4)
    _, model = _defaults(hypermodels.AttentionCNNBLSTMHyperModel(preset=preset))
    assert model.num_attention_heads == 2


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: hypermodels.AttentionCNNBLSTMHyperModel(preset="paper2021"), "paper2021"),
        (lambda: hypermodels.AttentionCNNBLSTMHyperModel(lstm_units=64), "lstm_units"),
        (lambda: hypermodels.AttentionCNNBLSTMHyperModel(num_heads=3), "num_heads"),
        (lambda: hypermodels.AttentionCNNBLSTMHyperModel(preset={"depth": 2}), "depth"),
        (lambda: hypermodels.ResNetLSTMHyperModel(alpha=0.2), "alpha"),
        (lambda: hypermodels.AAEMultiTaskHyperModel({"speaker": 3}), "emotion"),
        (lambda: hypermodels.AAEMultiTaskHyperModel({"emotion": 3}, variant="vae"), "vae"),
        (lambda: hypermodels.AAEMultiTaskHyperModel({"emotion": 3, "language": 2}), "language"),
        (lambda: hypermodels.KimMTLHyperModel(network="gru"), "gru"),
        (lambda: hypermodels.KimMTLHyperModel(preset="kim2017_dnn"), "dnn"),
        (lambda: hypermodels.KimMTLHyperModel(units=64), "units"),
        (lambda: hypermodels.KimMTLHyperModel(network="dnn", auxiliary_tasks=("age",)), "age"),
        (lambda: hypermodels.KimMTLHyperModel(optimizer="sgd"), "optimizer"),
        (lambda: hypermodels.MultiGatingHyperModel({}), "class_names"),
        (lambda: hypermodels.MultiGatingHyperModel(LANGUAGES, variant="moe"), "moe"),
        (lambda: hypermodels.MultiGatingHyperModel(LANGUAGES, preset="wang2022"), "wang2022"),
        (
            lambda: hypermodels.MultiGatingHyperModel(LANGUAGES, contrastive_weights={"en": 1}),
            "contrastive_weights",
        ),
    ],
)
def test_bad_arguments_name_the_value(make, expected):
    with pytest.raises(ValueError, match=expected):
        make()


# ------------------------------------------------------------------------ fit


def test_validation_labels_keep_only_the_primary_task():
    labels = {"emotion": np.array([0, 1, -1]), "speaker": np.array([2, 0, 1])}
    masked = hypermodels.validation_labels(labels)
    np.testing.assert_array_equal(masked["emotion"], [0, 1, -1])
    np.testing.assert_array_equal(masked["speaker"], [-1, -1, -1])
    np.testing.assert_array_equal(labels["speaker"], [2, 0, 1])  # not modified
    with pytest.raises(ValueError, match="emotion"):
        hypermodels.validation_labels({"speaker": np.array([0])})


@pytest.mark.parametrize(
    "folds, expected",
    [
        ([], "empty"),
        ([(np.arange(0, 10), np.arange(8, 12))], "both training and validation"),
        ([(np.arange(0, 10), np.arange(10, 40))], "outside"),
        ([(np.arange(0, 10), [])], "validation samples"),
        ([np.arange(3)], "pair"),
    ],
)
def test_bad_validation_folds_are_refused(folds, expected):
    hypermodel, classes = tiny_hypermodel("attention_cnn_blstm")
    x, y = random_data("attention_cnn_blstm", classes, count=24)
    hp = keras_tuner.HyperParameters()
    with pytest.raises(ValueError, match=expected):
        hypermodel.fit(hp, None, x, y, validation_folds=folds)


def test_folds_and_validation_data_together_are_refused():
    hypermodel, classes = tiny_hypermodel("attention_cnn_blstm")
    x, y = random_data("attention_cnn_blstm", classes, count=24)
    with pytest.raises(ValueError, match="not both"):
        hypermodel.fit(
            keras_tuner.HyperParameters(), None, x, y, validation_data=(x, y),
            validation_folds=[(np.arange(12), np.arange(12, 24))],
        )


def _fit(hypermodel, model, x, y, validation, **kwargs):
    return hypermodel.fit(
        keras_tuner.HyperParameters(), model, x, y, validation_data=validation, epochs=1,
        batch_size=8, verbose=0, **kwargs,
    )


def test_kim_fit_standardises_with_the_training_frames_only():
    hypermodel, classes = tiny_hypermodel("kim_mtl")
    x, y = random_data("kim_mtl", classes, count=16)
    x_val, y_val = random_data("kim_mtl", classes, count=8, seed=1)
    x[:8] += 5.0 * (x[:8] != 0.0)  # the first half's frames (not their padding) shifted
    model = hypermodel.build(keras_tuner.HyperParameters())
    history = _fit(hypermodel, model, x, y, (x_val, hypermodels.validation_labels(y_val)))
    assert 0.0 <= history.history["val_emotion_ua"][0] <= 1.0
    frames = x[np.any(x != 0.0, axis=-1)]
    layer = model.get_layer("feature_normalization")
    np.testing.assert_allclose(layer.mean.numpy(), frames.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.variance.numpy(), frames.var(axis=0), rtol=1e-3)

    # With folds, each fold's model is standardised with its own training frames.
    model = hypermodel.build(keras_tuner.HyperParameters())
    result = hypermodel.fit(
        keras_tuner.HyperParameters(), model, x, y,
        validation_folds=[(np.arange(8), np.arange(8, 16)), (np.arange(8, 16), np.arange(8))],
        epochs=1, batch_size=8, verbose=0,
    )
    assert set(result) == {"val_emotion_ua", "val_emotion_ua_std"}
    first = x[:8][np.any(x[:8] != 0.0, axis=-1)]
    np.testing.assert_allclose(
        model.get_layer("feature_normalization").mean.numpy(), first.mean(axis=0), rtol=1e-4,
        atol=1e-4,
    )
    with pytest.raises(ValueError, match="received dict"):
        hypermodel.prepare(model, {"features": x})


def _functionals(x, pad_value=-1.0):
    """Mean and standard deviation of every band over each sample's valid frames (numpy)."""
    rows = []
    for sample in x:
        valid = np.any(sample != pad_value, axis=-1)
        valid[0] = True
        frames = sample[valid]
        rows.append(np.concatenate([frames.mean(axis=0), np.sqrt(frames.var(axis=0) + 1e-8)]))
    return np.stack(rows)


def test_multigate_objective_is_the_mean_ua_of_the_validated_languages():
    hypermodel, classes = tiny_hypermodel("multigate")
    x, y = random_data("multigate", classes, count=16)
    x_val, y_val = random_data("multigate", classes, count=8, seed=1)
    # Validation keeps every language's labels: each head is an emotion head.
    masked = hypermodel.mask_validation_labels(y_val)
    for task in classes:
        np.testing.assert_array_equal(masked[task], y_val[task])
    with pytest.raises(ValueError, match="emotion_en"):
        hypermodel.mask_validation_labels({"emotion": y_val["emotion_en"]})

    model = hypermodel.build(keras_tuner.HyperParameters())
    history = _fit(hypermodel, model, x, y, (x_val, masked)).history
    expected = (history["val_emotion_en_ua"][0] + history["val_emotion_de_ua"][0]) / 2
    assert history["val_emotion_ua"][0] == pytest.approx(expected)
    assert history["val_emotion_ua"][0] == pytest.approx(history["val_mean_ua"][0])
    # The functionals' normalisation comes from the training inputs.
    layer = model.get_layer("statistics_normalization")
    np.testing.assert_allclose(
        np.ravel(layer.mean), _functionals(x).mean(axis=0), rtol=1e-3, atol=1e-4
    )

    # Validation data of one language only: the objective is that head's UA
    # (the other head, without validation labels, reports 0 and is left out).
    only_en = {"emotion_en": masked["emotion_en"], "emotion_de": np.full(8, -1, "int32")}
    model = hypermodel.build(keras_tuner.HyperParameters())
    history = _fit(hypermodel, model, x, y, (x_val, only_en)).history
    assert history["val_emotion_ua"][0] == pytest.approx(history["val_emotion_en_ua"][0])
    assert history["val_emotion_de_ua"][0] == 0.0
