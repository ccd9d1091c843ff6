import keras
import keras_tuner
import numpy as np
import pytest

from ser_keras.tuning import hypermodels
from tests.tuning.util import TINY_ATTENTION, random_data, tiny_hypermodel


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


def test_single_task_models_have_no_auxiliary_weights():
    hp, _ = _defaults(hypermodels.AttentionCNNBLSTMHyperModel(preset=TINY_ATTENTION))
    assert "speaker_loss_weight" not in hp.values
    hp = keras_tuner.HyperParameters()
    hypermodels.ResNetLSTMHyperModel(preset="latif_crosslang_cpu", num_frames=64).build(hp)
    assert "alpha" not in hp.values


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
