"""Tests of the AAE multi-task trainer: phase isolation, masking, learning, variants, saving."""

import math

import keras
import numpy as np
import pytest

from ser_keras.models.aae_mtl import VARIANTS, AAEMultiTaskModel
from ser_keras.training.callbacks import RestoreBestAndHalveLearningRate
from tests.model_checks import check_model

NUM_CLASSES = {"emotion": 3, "speaker": 4, "gender": 2}
FRAMES, MELS = 32, 16  # the "cpu_small" preset


def _model(variant="aae_mtl", seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return AAEMultiTaskModel.from_preset(
        "cpu_small", variant, num_classes=NUM_CLASSES, seed=seed, **kwargs
    )


def _batch(size=8, seed=0, emotion=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(size, FRAMES, MELS)).astype("float32")
    y = {
        "emotion": rng.integers(0, 3, size) if emotion is None else np.full(size, emotion),
        "speaker": rng.integers(0, 4, size),
        "gender": rng.integers(0, 2, size),
    }
    return x, {task: labels.astype("int32") for task, labels in y.items()}


def _networks(model):
    networks = {"encoder": model.encoder}
    if model.decoder is not None:
        networks["decoder"] = model.decoder
    if model.discriminator is not None:
        networks["discriminator"] = model.discriminator
    for task, head in model.classifiers.items():
        networks[f"{task}_classifier"] = head
    return networks


def _snapshot(model):
    return {
        name: [np.array(v) for v in network.trainable_variables]
        for name, network in _networks(model).items()
    }


def _changed(model, step):
    before = _snapshot(model)
    logs = step()
    after = _snapshot(model)
    changed = {
        name
        for name in before
        if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))
    }
    return changed, logs


def _sgd(rate=0.05):
    return keras.optimizers.SGD(learning_rate=rate)


def test_each_phase_updates_only_its_networks():
    model = _model()
    model.compile(optimizer=_sgd())
    x, y = _batch()

    model.set_training_stage(phases=["reconstruction"])
    changed, logs = _changed(model, lambda: model.train_step((x, y)))
    assert changed == {"encoder", "decoder"}
    assert set(logs) == {"loss", "reconstruction_loss"}

    model.set_training_stage(phases=["regularisation"])
    changed, logs = _changed(model, lambda: model.train_step((x, y)))
    assert changed == {"encoder", "discriminator"}
    assert {"discriminator_loss", "generator_loss"} <= set(logs)

    model.set_training_stage(phases=["classification"])
    changed, logs = _changed(model, lambda: model.train_step((x, y)))
    assert changed == {"encoder", "emotion_classifier", "speaker_classifier", "gender_classifier"}
    assert "reconstruction_loss" not in logs and "emotion_ua" in logs

    model.set_training_stage()
    changed, _ = _changed(model, lambda: model.train_step((x, y)))
    assert changed == set(_networks(model))


def test_discriminator_and_generator_updates_are_separate():
    x, y = _batch()
    # Generator step switched off: the discriminator update alone leaves the encoder as it was.
    model = _model()
    model.compile(optimizer=_sgd(), generator_optimizer=_sgd(0.0))
    model.set_training_stage(phases=["regularisation"])
    changed, _ = _changed(model, lambda: model.train_step((x, y)))
    assert changed == {"discriminator"}
    # Discriminator step switched off: the generator update leaves the discriminator fixed.
    model = _model()
    model.compile(optimizer=_sgd(), discriminator_optimizer=_sgd(0.0))
    model.set_training_stage(phases=["regularisation"])
    changed, _ = _changed(model, lambda: model.train_step((x, y)))
    assert changed == {"encoder"}


@pytest.mark.parametrize("generator_loss", ["minimax", "non_saturating"])
def test_generator_loss_when_the_discriminator_wins(generator_loss):
    # The discriminator is made to call every code fake with D(E(x)) ~ e^-60,
    # far below Keras's probability clip (1e-7).
    model = _model(generator_loss=generator_loss)
    model.compile(optimizer=_sgd(0.0), generator_optimizer=_sgd(0.05))
    model.set_training_stage(phases=["regularisation"])
    last = model.discriminator.get_layer("softmax")
    kernel, _ = last.get_weights()
    last.set_weights([0.1 * kernel, np.array([30.0, -30.0], "float32")])
    x, y = _batch()

    # Values: a batch mean of a per-sample log-probability with weight 1 (the
    # first term of Eq. 5), computed from the logits, not clipped probabilities.
    code = model.encoder(x, training=False)
    hidden = keras.Model(model.discriminator.input, model.discriminator.get_layer("dense_2").output)
    logits = np.asarray(hidden(code, training=False)) @ (0.1 * kernel) + np.array([30.0, -30.0])
    log_real = logits[:, 1] - np.logaddexp(logits[:, 0], logits[:, 1])  # log D(E(x))
    log_fake = logits[:, 0] - np.logaddexp(logits[:, 0], logits[:, 1])  # log(1 - D(E(x)))
    expected = np.mean(log_fake) if generator_loss == "minimax" else -np.mean(log_real)
    logged = float(model.test_step((x, y))["generator_loss"])
    np.testing.assert_allclose(logged, expected, rtol=1e-4, atol=1e-6)
    if generator_loss == "non_saturating":
        assert logged > 50.0 > -math.log(keras.config.epsilon())

    # Gradient: the minimax loss saturates (d log(1 - D) / d logit = -D ~ 0),
    # the non-saturating one keeps the encoder learning (-(1 - D) ~ -1).
    before = [np.array(v) for v in model.encoder.trainable_variables]
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)  # compiled step
    change = max(
        float(np.max(np.abs(np.array(v) - b)))
        for v, b in zip(model.encoder.trainable_variables, before, strict=True)
    )
    if generator_loss == "minimax":
        assert change < 1e-12
    else:
        assert change > 1e-4


def test_batch_without_emotion_labels_trains_only_auxiliary_heads():
    model = _model()
    model.compile(optimizer=_sgd())
    x, y = _batch(emotion=-1)
    changed, logs = _changed(model, lambda: model.train_step((x, y)))
    assert "emotion_classifier" not in changed
    assert {"speaker_classifier", "gender_classifier", "encoder"} <= changed
    for name, value in logs.items():
        assert math.isfinite(float(value)), name
    assert float(logs["emotion_loss"]) == 0.0


def test_unlabelled_samples_are_masked_in_the_emotion_loss():
    model = _model()
    model.compile(optimizer=_sgd())
    x, y = _batch(size=8)
    y["emotion"][4:] = -1
    probabilities = np.asarray(model(x, training=False)["emotion"])
    expected = -np.mean(np.log(probabilities[np.arange(4), y["emotion"][:4]]))
    logs = model.test_step((x, y))
    np.testing.assert_allclose(float(logs["emotion_loss"]), expected, rtol=1e-4)


def test_loss_weights_follow_equations_1_and_2():
    model = _model(alpha=0.4, beta=0.6)
    assert model.task_weights() == {
        "emotion": 0.6,
        "speaker": pytest.approx(0.4),
        "gender": pytest.approx(0.4),
    }
    model.compile(optimizer=_sgd(0.0))
    x, y = _batch()
    logs = model.test_step((x, y))
    expected = (
        0.4 * float(logs["reconstruction_loss"])
        + 0.6 * float(logs["emotion_loss"])
        + 0.4 * (float(logs["speaker_loss"]) + float(logs["gender_loss"]))
    )
    np.testing.assert_allclose(float(logs["loss"]), expected, rtol=1e-5)
    single = _model("aae_stl")
    assert single.task_weights() == {"emotion": 0.6}


def _learnable_data(size=48, seed=0):
    """Emotion class = which third of the mel bands carries energy; learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    emotion = np.arange(size) % 3
    x = 0.3 * rng.normal(size=(size, FRAMES, MELS)).astype("float32")
    for index, label in enumerate(emotion):
        x[index, :, label * 5 : label * 5 + 5] += 2.0
    speaker = rng.integers(0, 4, size)
    gender = emotion % 2
    labels = {"emotion": emotion, "speaker": speaker, "gender": gender}
    return x, {task: value.astype("int32") for task, value in labels.items()}


def test_fit_decreases_losses_and_reports_every_phase():
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3))
    x, y = _learnable_data()
    schedule = RestoreBestAndHalveLearningRate(patience=4, min_learning_rate=1e-6)
    history = model.fit(
        x,
        y,
        batch_size=8,
        epochs=10,
        validation_data=(x, y),
        callbacks=[schedule],
        verbose=0,
        shuffle=True,
    ).history
    for key in (
        "reconstruction_loss",
        "discriminator_loss",
        "generator_loss",
        "emotion_loss",
        "speaker_loss",
        "gender_loss",
        "emotion_accuracy",
        "emotion_ua",
        "val_emotion_ua",
        "val_loss",
        "learning_rate",
    ):
        assert key in history, key
    assert history["emotion_loss"][-1] < 0.7 * history["emotion_loss"][0]
    assert history["reconstruction_loss"][-1] < history["reconstruction_loss"][0]
    assert max(history["val_emotion_ua"]) > 0.6  # chance is 1/3
    # The schedule restored the best epoch's weights at the end.
    final = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert final["emotion_ua"] == pytest.approx(schedule.best, abs=1e-6)


@pytest.mark.parametrize(
    "variant, expected_phases, expected_tasks",
    [
        ("aae_stl", ("reconstruction", "regularisation", "classification"), ("emotion",)),
        ("ae_mtl", ("reconstruction", "classification"), ("emotion", "speaker", "gender")),
        ("ae_stl", ("reconstruction", "classification"), ("emotion",)),
        ("cnn_stl", ("classification",), ("emotion",)),
    ],
)
def test_baseline_variants(variant, expected_phases, expected_tasks):
    model = _model(variant)
    assert model.phases == expected_phases
    assert model.tasks == expected_tasks
    assert (model.alpha, model.beta) == (VARIANTS[variant]["alpha"], VARIANTS[variant]["beta"])
    model.compile(optimizer=_sgd())
    x, y = _batch()
    changed, logs = _changed(model, lambda: model.train_step((x, y)))
    assert changed == set(_networks(model))
    assert ("reconstruction_loss" in logs) == ("reconstruction" in expected_phases)
    assert ("discriminator_loss" in logs) == ("regularisation" in expected_phases)
    assert set(model(x, training=False)) == set(expected_tasks)


def test_pretrain_auxiliary_then_full_training():
    model = _model()
    model.compile(optimizer=_sgd(), run_eagerly=True)
    x, y = _batch(size=16)
    additional = {"speaker": y["speaker"], "gender": y["gender"]}  # no emotion labels at all
    watched = ("emotion_classifier", "decoder", "discriminator")
    before = _snapshot(model)
    history = model.pretrain_auxiliary(x, additional, epochs=1, batch_size=8, verbose=0).history
    after = _snapshot(model)
    for name in watched:
        assert all(np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True)), (
            name
        )
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(before["speaker_classifier"], after["speaker_classifier"], strict=True)
    )
    assert "speaker_loss" in history and "emotion_loss" not in history
    assert "reconstruction_loss" not in history
    assert model.training_stage == (model.phases, model.tasks)
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0).history
    assert {"reconstruction_loss", "generator_loss", "emotion_loss"} <= set(history)


def test_phase_optimizers_and_compile_errors():
    model = _model()
    model.compile()  # the paper: SGD with learning rate 1e-4 for every phase
    optimizers = model.phase_optimizers
    assert list(optimizers) == ["reconstruction", "discriminator", "generator", "classification"]
    assert len({id(o) for o in optimizers.values()}) == 4
    for optimizer in optimizers.values():
        assert isinstance(optimizer, keras.optimizers.SGD)
        assert float(optimizer.learning_rate) == pytest.approx(1e-4)
    shared = _sgd()
    with pytest.raises(ValueError, match="own optimizer"):
        model.compile(reconstruction_optimizer=shared, generator_optimizer=shared)
    with pytest.raises(ValueError, match="own losses"):
        model.compile(loss="mse")
    with pytest.raises(ValueError, match="Labels lack"):
        model.train_step((np.zeros((2, FRAMES, MELS), "float32"), {"emotion": np.zeros(2)}))


def test_constructor_and_preset_errors():
    with pytest.raises(ValueError, match="lacks"):
        AAEMultiTaskModel.from_preset("cpu_small", "aae_mtl", num_classes={"emotion": 3})
    with pytest.raises(ValueError, match="Unknown variant"):
        AAEMultiTaskModel.from_preset("cpu_small", "gan", num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="beta"):
        _model(beta=1.5)
    with pytest.raises(ValueError, match="generator_loss"):
        _model(generator_loss="wasserstein")
    with pytest.raises(ValueError, match="phases"):
        _model("cnn_stl").set_training_stage(phases=["regularisation"])


def test_keras_file_keeps_unused_networks_and_phase_optimizers(tmp_path):
    model = _model(generator_loss="non_saturating")
    model.compile(optimizer=_sgd(0.02))
    path = tmp_path / "aae.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, AAEMultiTaskModel)
    assert restored.get_config()["generator_loss"] == "non_saturating"
    # The decoder and discriminator sit outside the prediction graph; they are saved too.
    for name, network in _networks(model).items():
        for a, b in zip(network.weights, _networks(restored)[name].weights, strict=True):
            np.testing.assert_array_equal(np.array(a), np.array(b))
    assert restored.compiled
    assert float(restored.phase_optimizers["discriminator"].learning_rate) == pytest.approx(0.02)


def test_predict_utterances_averages_segment_posteriors():
    model = _model("ae_stl")
    model.compile(run_eagerly=True)
    x, _ = _batch(size=7)
    utterance_ids = np.array([2, 2, 0, 5, 5, 5, 0])
    ids, posteriors = model.predict_utterances(x, utterance_ids, batch_size=4)
    np.testing.assert_array_equal(ids, [0, 2, 5])
    segment_posteriors = np.asarray(model(x, training=False)["emotion"])
    for row, utterance in enumerate(ids):
        expected = segment_posteriors[utterance_ids == utterance].mean(axis=0)
        np.testing.assert_allclose(posteriors["emotion"][row], expected, rtol=1e-5, atol=1e-6)


def test_shared_model_checks(tmp_path):
    # Shapes, get_config/from_config and .keras round trips (tests/model_checks.py).
    # The SavedModel export path is exercised by the export tests.
    x, _ = _batch(size=2)
    check_model(_model(), x, {"emotion": (2, 3), "speaker": (2, 4), "gender": (2, 2)}, tmp_path)
