"""Tests of the restore-best-and-halve learning-rate schedule (Latif et al., Section 4.3)."""

import keras
import numpy as np
import pytest

from ser_keras.training.callbacks import RestoreBestAndHalveLearningRate, model_optimizers


def _tiny_model(learning_rate=1e-4):
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss="mse")
    return model


def _set_marker(model, value):
    """Sets every weight to `value`, marking which epoch's weights the model holds."""
    model.set_weights([np.full_like(w, value) for w in model.get_weights()])


def _marker(model):
    return float(model.get_weights()[0].flat[0])


def test_halves_restores_and_stops_below_the_minimum():
    model = _tiny_model(learning_rate=1e-4)
    callback = RestoreBestAndHalveLearningRate(patience=2, min_learning_rate=1e-5)
    callback.set_model(model)
    callback.on_train_begin()
    # UA per epoch: best at epoch 1 (0.6), then no improvement.
    history = [0.5, 0.6, 0.55, 0.58]
    for epoch, value in enumerate(history):
        _set_marker(model, epoch)
        logs = {"val_emotion_ua": value}
        callback.on_epoch_end(epoch, logs)
    # Two epochs without improvement after epoch 1: the weights of epoch 1 are
    # back and the learning rate is halved.
    assert _marker(model) == 1.0
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-5)
    assert logs["learning_rate"] == pytest.approx(5e-5)
    assert callback.reductions == [(3, pytest.approx(5e-5))]
    assert not model.stop_training
    # 5e-5 -> 2.5e-5 -> 1.25e-5 -> 6.25e-6 < 1e-5: stop at the third further halving.
    epoch = 4
    while not model.stop_training:
        _set_marker(model, epoch)
        callback.on_epoch_end(epoch, {"val_emotion_ua": 0.1})
        epoch += 1
        assert epoch < 20
    assert len(callback.reductions) == 4
    assert float(model.optimizer.learning_rate) == pytest.approx(6.25e-6)
    assert callback.stopped_epoch == epoch - 1
    _set_marker(model, 99)
    callback.on_train_end()
    assert _marker(model) == 1.0


def test_improvement_resets_the_wait():
    model = _tiny_model()
    callback = RestoreBestAndHalveLearningRate(patience=2)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate([0.5, 0.4, 0.6, 0.5, 0.7, 0.6]):
        callback.on_epoch_end(epoch, {"val_emotion_ua": value})
    assert callback.reductions == []
    assert callback.best == pytest.approx(0.7) and callback.best_epoch == 4


def test_min_mode_and_missing_monitor():
    model = _tiny_model()
    callback = RestoreBestAndHalveLearningRate(monitor="val_loss", mode="min", patience=1)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0, {"val_loss": 1.0})
    callback.on_epoch_end(1, {"val_loss": 2.0})
    assert float(model.optimizer.learning_rate) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="val_loss"):
        callback.on_epoch_end(2, {"loss": 1.0})
    with pytest.raises(ValueError, match="mode"):
        RestoreBestAndHalveLearningRate(mode="up")


def test_halves_every_phase_optimizer_of_the_aae_trainer():
    from ser_keras.models.aae_mtl import AAEMultiTaskModel

    model = AAEMultiTaskModel.from_preset(
        "cpu_small", "aae_mtl", num_classes={"emotion": 3, "speaker": 4, "gender": 2}
    )
    model.compile()
    assert len(model_optimizers(model)) == 4
    callback = RestoreBestAndHalveLearningRate(patience=1)
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_end(0, {"val_emotion_ua": 0.5})
    callback.on_epoch_end(1, {"val_emotion_ua": 0.4})
    for optimizer in model.phase_optimizers.values():
        assert float(optimizer.learning_rate) == pytest.approx(5e-5)


def test_inside_fit_with_a_schedule_is_rejected():
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    x = np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="schedule"):
        model.fit(
            x,
            np.zeros((4, 1)),
            validation_data=(x, np.zeros((4, 1))),
            callbacks=[RestoreBestAndHalveLearningRate(monitor="val_loss", mode="min")],
            verbose=0,
        )
