"""The training recipe: validation, normalisation, optimizer, label smoothing, BN recalibration."""

import dataclasses
import types

import keras
import numpy as np
import pytest

from ser_keras.features.normalization import UtteranceStandardization, standardize_per_speaker
from ser_keras.training.losses import masked_sparse_categorical_crossentropy_sum
from ser_keras.training.multitask import MultiTaskModel
from ser_keras.training.recipe import (
    RECIPE_FIELDS,
    RECIPES,
    TrainingRecipe,
    recalibrate_batch_norm,
)
from ser_keras.training.runner import Split, fit_and_evaluate

PAD = -1.0


def _records(pairs):
    return [types.SimpleNamespace(corpus=corpus, speaker_id=speaker) for corpus, speaker in pairs]


def _padded_features(seed=0, count=6, frames=12, bands=5):
    rng = np.random.default_rng(seed)
    features = rng.normal(3.0, 2.0, size=(count, frames, bands)).astype("float32")
    features[:, frames - 3 :, :] = PAD  # the last frames of every utterance are padding
    return features


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"normalization": "band"}, "normalization"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"weight_decay": 0.1}, "weight_decay"),  # without AdamW
        ({"adamw": True, "weight_decay": 2.0}, "weight_decay"),
        ({"peak_learning_rate": 0.0}, "peak_learning_rate"),
        ({"warmup_epochs": 1}, "warmup_epochs"),  # constant schedule
        ({"lr_schedule": "cosine", "warmup_epochs": -1}, "warmup_epochs"),
        ({"spec_augment": "yes"}, "spec_augment"),
    ],
)
def test_a_bad_value_is_refused_with_the_field_and_value(changes, field):
    with pytest.raises(ValueError, match=f"`{field}`.*Received"):
        TrainingRecipe(**changes)


def test_the_paper_recipe_changes_nothing_and_the_fields_are_listed():
    assert RECIPES["paper"].is_paper and not RECIPES["cpu"].is_paper
    assert not RECIPES["paper"].changes_optimization
    assert RECIPE_FIELDS == tuple(field.name for field in dataclasses.fields(TrainingRecipe))
    features = _padded_features()
    records = _records([("a", "1")] * 6)
    assert RECIPES["paper"].normalize(features, records, PAD) is features
    assert RECIPES["paper"].augmentation(features, PAD) is None
    assert RECIPES["paper"].make_optimizer("rmsprop", steps_per_epoch=3, epochs=2) == "rmsprop"


@pytest.mark.parametrize(
    "normalization, groups",
    [
        ("speaker", ["a:1", "a:1", "a:2", "b:1", "b:1", "b:1"]),
        ("corpus", ["a", "a", "a", "b", "b", "b"]),
        ("utterance", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_normalisation_groups_speakers_within_their_corpus(normalization, groups):
    # Speaker "1" of corpus a and speaker "1" of corpus b are different people.
    records = _records([("a", "1"), ("a", "1"), ("a", "2"), ("b", "1"), ("b", "1"), ("b", "1")])
    features = _padded_features()
    recipe = TrainingRecipe(normalization=normalization)
    np.testing.assert_array_equal(
        recipe.normalize(features, records, PAD), standardize_per_speaker(features, groups, PAD)
    )


def test_utterance_standardization_layer_matches_the_offline_normalisation():
    features = _padded_features(seed=3)
    features[2, 4:, :] = PAD  # a shorter utterance
    offline = standardize_per_speaker(features, np.arange(len(features)), PAD)
    layer = UtteranceStandardization(pad_value=PAD)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(features)), offline, atol=1e-4)
    restored = UtteranceStandardization.from_config(layer.get_config())
    assert restored.pad_value == PAD


def test_augmentation_masks_with_the_mean_of_the_features():
    features = _padded_features()
    normalized = TrainingRecipe(normalization="speaker", spec_augment=True)
    assert normalized.augmentation(features, PAD).mask_value == 0.0
    raw = TrainingRecipe(spec_augment=True).augmentation(features, PAD)
    valid = features[~np.all(features == PAD, axis=-1)]
    assert raw.mask_value == pytest.approx(float(valid.mean()))
    assert raw.pad_value == PAD


def test_cosine_schedule_warms_up_then_decays_to_zero():
    recipe = TrainingRecipe(
        adamw=True, weight_decay=0.01, lr_schedule="cosine", warmup_epochs=1,
        peak_learning_rate=0.002,
    )
    optimizer = recipe.make_optimizer(
        keras.optimizers.RMSprop(0.1), steps_per_epoch=10, epochs=5
    )
    assert isinstance(optimizer, keras.optimizers.AdamW)
    assert optimizer.weight_decay == pytest.approx(0.01)
    schedule = optimizer._learning_rate
    rate = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert rate(0) == pytest.approx(0.0)
    assert rate(5) == pytest.approx(0.001)
    assert rate(10) == pytest.approx(0.002)
    assert rate(30) < 0.002
    assert rate(50) == pytest.approx(0.0, abs=1e-9)


def test_the_paper_optimizer_keeps_its_kind_and_rate_under_a_schedule():
    recipe = TrainingRecipe(lr_schedule="cosine")
    optimizer = recipe.make_optimizer(
        keras.optimizers.RMSprop(0.01, rho=0.8), steps_per_epoch=4, epochs=2
    )
    assert isinstance(optimizer, keras.optimizers.RMSprop) and optimizer.rho == 0.8
    assert float(keras.ops.convert_to_numpy(optimizer._learning_rate(0))) == pytest.approx(0.01)


def test_label_smoothing_mixes_the_uniform_target_in():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], "float32")
    labels = np.array([0, 2, -1])  # the last sample has no label
    plain, count = masked_sparse_categorical_crossentropy_sum(labels, probabilities)
    smoothed, _ = masked_sparse_categorical_crossentropy_sum(
        labels, probabilities, label_smoothing=0.2
    )
    rows = probabilities[:2]
    expected = sum(
        0.8 * -np.log(row[label]) + 0.2 * -np.mean(np.log(row))
        for row, label in zip(rows, labels[:2], strict=True)
    )
    assert float(count) == 2
    assert float(smoothed) == pytest.approx(expected, rel=1e-5)
    assert float(smoothed) != pytest.approx(float(plain))


def _tiny_model(with_batch_norm=True, dropout=0.0, momentum=0.99):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, name="dense")(inputs)
    if with_batch_norm:
        hidden = keras.layers.BatchNormalization(momentum=momentum, name="norm")(hidden)
    if dropout:
        hidden = keras.layers.Dropout(dropout)(hidden)
    outputs = {"emotion": keras.layers.Dense(3, activation="softmax", name="emotion")(hidden)}
    return MultiTaskModel(inputs, outputs)


def test_label_smoothing_changes_the_training_loss_only():
    keras.utils.set_random_seed(0)
    model = _tiny_model(with_batch_norm=False)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = {"emotion": np.array([0, 1, 2, 0, 1, 2, 0, 1])}
    model.compile(optimizer="sgd", label_smoothing=0.3)
    training = float(model.compute_loss(x, y, training=True))
    evaluation = float(model.compute_loss(x, y, training=False))
    model.compile(optimizer="sgd")
    assert float(model.compute_loss(x, y, training=True)) == pytest.approx(evaluation)
    assert training != pytest.approx(evaluation)
    with pytest.raises(ValueError, match="label_smoothing"):
        model.compile(optimizer="sgd", label_smoothing=1.0)


def test_label_smoothing_survives_saving_and_loading(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_model(with_batch_norm=False)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = {"emotion": np.array([0, 1, 2, 0, 1, 2, 0, 1])}
    model.compile(optimizer="sgd", label_smoothing=0.3)
    model.train_on_batch(x, y)
    expected = float(model.compute_loss(x, y, training=True))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert float(loaded.compute_loss(x, y, training=True)) == pytest.approx(expected, rel=1e-5)
    assert float(loaded.compute_loss(x, y, training=False)) != pytest.approx(expected)


def test_recalibration_sets_the_exact_statistics_of_the_data():
    keras.utils.set_random_seed(1)
    model = _tiny_model()
    data = np.random.default_rng(1).normal(2.0, 3.0, size=(50, 4)).astype("float32")
    norm = model.get_layer("norm")
    norm.moving_mean.assign(np.full(8, 40.0, "float32"))  # stale statistics
    assert recalibrate_batch_norm(model, data, batch_size=10) == 1
    dense = keras.ops.convert_to_numpy(model.get_layer("dense")(data))
    batches = dense.reshape(5, 10, 8)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(norm.moving_mean), batches.mean(axis=1).mean(axis=0),
        rtol=1e-4, atol=1e-4,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(norm.moving_variance), batches.var(axis=1).mean(axis=0),
        rtol=1e-4, atol=1e-4,
    )
    assert norm.momentum == 0.99  # restored
    assert recalibrate_batch_norm(_tiny_model(with_batch_norm=False), data, batch_size=10) == 0


def _fit_with_recalibration(tmp_path, epochs=2, momentum=0.99):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    x = (rng.normal(size=(60, 4)) + 3 * labels[:, None]).astype("float32")

    def split(rows):
        return Split(x[rows], {"emotion": labels[rows]})

    def build():
        model = _tiny_model(momentum=momentum)
        model.compile(optimizer=keras.optimizers.Adam(0.05))
        return model

    result = fit_and_evaluate(
        build, split(np.arange(36)), split(np.arange(36, 48)), split(np.arange(48, 60)),
        fold_dir=tmp_path / "fold", class_names=["a", "b", "c"], epochs=epochs, batch_size=12,
        verbose=0, recalibrate_batch_norm=True,
    )
    saved = keras.models.load_model(str(tmp_path / "fold" / "best.keras"))
    return result, saved, x[:36]


def test_fit_and_evaluate_saves_and_scores_the_recalibrated_model(tmp_path):
    result, saved, train = _fit_with_recalibration(tmp_path)
    recalibration = result["batch_norm_recalibration"]
    assert recalibration["layers"] == 1 and recalibration["units"] == "percent"
    assert recalibration["kept"] is True
    assert recalibration["validation_ua_after"] >= recalibration["validation_ua_before"]
    # best.keras holds the statistics of the training rows, not the moving averages.
    dense = keras.ops.convert_to_numpy(saved.get_layer("dense")(train))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(saved.get_layer("norm").moving_mean),
        dense.reshape(3, 12, 8).mean(axis=1).mean(axis=0),
        rtol=1e-4, atol=1e-4,
    )


def test_recalibration_that_lowers_the_validation_score_is_undone(tmp_path, monkeypatch):
    import ser_keras.training.recipe as recipe_module

    stored = {}

    def harmful(model, inputs, *, batch_size, seed=0):
        norm = model.get_layer("norm")
        stored["mean"] = keras.ops.convert_to_numpy(norm.moving_mean).copy()
        stored["variance"] = keras.ops.convert_to_numpy(norm.moving_variance).copy()
        norm.moving_mean.assign(np.full(8, 1e3, "float32"))  # every input looks the same
        norm.moving_variance.assign(np.full(8, 1e-6, "float32"))
        return 1

    monkeypatch.setattr(recipe_module, "recalibrate_batch_norm", harmful)
    # Fast-moving statistics: the model validates well before recalibration.
    result, saved, _ = _fit_with_recalibration(tmp_path, epochs=15, momentum=0.5)
    recalibration = result["batch_norm_recalibration"]
    assert recalibration["validation_ua_after"] < recalibration["validation_ua_before"]
    assert recalibration["kept"] is False
    norm = saved.get_layer("norm")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(norm.moving_mean), stored["mean"])
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(norm.moving_variance), stored["variance"]
    )


class _EncoderWithUnusedDecoder(keras.Model):
    """`call` runs the encoder only; the decoder (with its own batch norm) is trained elsewhere."""

    def __init__(self):
        super().__init__()
        self.encoder = keras.Sequential(
            [keras.layers.Dense(6), keras.layers.BatchNormalization(name="encoder_norm")]
        )
        self.decoder = keras.Sequential(
            [keras.layers.Dense(4), keras.layers.BatchNormalization(name="decoder_norm")]
        )

    def call(self, inputs, training=False):
        return self.encoder(inputs, training=training)


def test_layers_the_forward_pass_does_not_reach_keep_their_statistics():
    model = _EncoderWithUnusedDecoder()
    data = np.random.default_rng(2).normal(size=(20, 4)).astype("float32")
    model(data)
    model.decoder(model(data))
    decoder_norm = model.decoder.layers[-1]
    decoder_norm.moving_mean.assign(np.full(4, 0.5, "float32"))
    decoder_norm.moving_variance.assign(np.full(4, 2.0, "float32"))
    assert recalibrate_batch_norm(model, data, batch_size=5) == 1
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(decoder_norm.moving_mean), 0.5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(decoder_norm.moving_variance), 2.0)
    encoder_norm = model.encoder.layers[-1]
    assert np.any(keras.ops.convert_to_numpy(encoder_norm.moving_mean) != 0.0)
