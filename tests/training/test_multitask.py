import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from ser_keras.training.multitask import MultiTaskModel
from tests.model_checks import PROJECT_ROOT, check_model


def _build(task_weights=None, l2=0.0):
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(
        16, activation="relu", kernel_regularizer=keras.regularizers.L2(l2) if l2 else None
    )(inputs)
    outputs = {
        "emotion": keras.layers.Dense(3, activation="softmax", name="emotion")(hidden),
        "speaker": keras.layers.Dense(2, activation="softmax", name="speaker")(hidden),
    }
    return MultiTaskModel(inputs, outputs, task_weights=task_weights)


def _data(num=96, seed=0, missing_every=3):
    rng = np.random.default_rng(seed)
    emotion = rng.integers(0, 3, num).astype("int32")
    speaker = rng.integers(0, 2, num).astype("int32")
    x = rng.normal(0.0, 0.5, (num, 6)).astype("float32")
    x[np.arange(num), emotion] += 2.0
    x[:, 4] += 2.0 * speaker - 1.0
    emotion[::missing_every] = -1  # every third sample has no emotion label
    return x, {"emotion": emotion, "speaker": speaker}


def test_fit_learns_and_reports_masked_metrics():
    keras.utils.set_random_seed(0)
    model = _build()
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    x, y = _data()
    x_val, y_val = _data(48, seed=1)
    history = model.fit(
        x, y, validation_data=(x_val, y_val), epochs=8, batch_size=16, verbose=0
    ).history
    for key in ("loss", "emotion_loss", "emotion_accuracy", "emotion_ua", "speaker_ua"):
        assert key in history and f"val_{key}" in history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_emotion_ua"][-1] > 0.8
    predictions = model.predict(x_val, verbose=0)
    assert set(predictions) == {"emotion", "speaker"}
    assert predictions["emotion"].shape == (48, 3) and predictions["speaker"].shape == (48, 2)


def test_loss_is_the_weighted_sum_of_masked_means_plus_regularisation():
    model = _build(task_weights={"emotion": 1.0, "speaker": 0.5}, l2=0.01)
    model.compile(optimizer="sgd")
    x, y = _data(12)
    y["speaker"][:4] = -1
    logs = model.evaluate(x, y, batch_size=12, return_dict=True, verbose=0)
    probabilities = model.predict(x, verbose=0)

    def masked_mean(task):
        labelled = y[task] >= 0
        picked = probabilities[task][labelled, y[task][labelled]]
        return float(np.mean(-np.log(picked)))

    kernel = model.layers[1].kernel.numpy()
    regularisation = 0.01 * float(np.sum(kernel**2))
    np.testing.assert_allclose(logs["emotion_loss"], masked_mean("emotion"), rtol=1e-5)
    np.testing.assert_allclose(logs["speaker_loss"], masked_mean("speaker"), rtol=1e-5)
    np.testing.assert_allclose(
        logs["loss"],
        masked_mean("emotion") + 0.5 * masked_mean("speaker") + regularisation,
        rtol=1e-5,
    )


def test_batch_without_labels_of_a_task_contributes_zero_not_nan():
    model = _build()
    model.compile(optimizer="sgd")
    x, y = _data(8)
    y["emotion"][:] = -1
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert history["emotion_loss"] == [0.0]
    assert np.isfinite(history["loss"][0]) and history["loss"][0] > 0
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.parametrize("task_weights", [{"emotion": 1.0, "speaker": 0.0}, {"emotion": 1.0}])
def test_switched_off_task_leaves_its_head_unchanged(task_weights):
    model = _build(task_weights=task_weights)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    assert model.active_tasks == ("emotion",)
    assert model.task_weights == {"emotion": 1.0, "speaker": 0.0}
    speaker_before = [w.numpy().copy() for w in model.get_layer("speaker").weights]
    emotion_before = [w.numpy().copy() for w in model.get_layer("emotion").weights]
    x, y = _data(32)
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert not any(key.startswith("speaker") for key in history)
    for before, weight in zip(speaker_before, model.get_layer("speaker").weights, strict=True):
        np.testing.assert_array_equal(weight.numpy(), before)
    assert not np.allclose(model.get_layer("emotion").weights[0].numpy(), emotion_before[0])


def test_labels_missing_a_task_and_plain_arrays():
    model = _build()
    model.compile(optimizer="sgd")
    x, y = _data(16)
    # Evaluation data without speaker labels: only the emotion metrics are reported.
    logs = model.evaluate(x, {"emotion": y["emotion"]}, return_dict=True, verbose=0)
    assert "emotion_ua" in logs and not any(k.startswith("speaker") for k in logs)
    single = _build(task_weights={"emotion": 1.0})
    single.compile(optimizer="sgd")
    logs = single.evaluate(x, y["emotion"], return_dict=True, verbose=0)
    assert set(logs) == {"loss", "emotion_loss", "emotion_accuracy", "emotion_ua"}
    with pytest.raises(ValueError, match="dict task"):
        model.evaluate(x, y["emotion"], verbose=0)


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="not outputs"):
        _build(task_weights={"emotion": 1.0, "gender": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        _build(task_weights={"emotion": -1.0})
    with pytest.raises(ValueError, match="At least one"):
        _build(task_weights={"emotion": 0.0})
    inputs = keras.Input((6,))
    with pytest.raises(ValueError, match="dict"):
        MultiTaskModel(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model = _build()
    with pytest.raises(ValueError, match="loss"):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="metrics"):
        model.compile(optimizer="sgd", metrics=["accuracy"])


def test_config_and_keras_round_trips_keep_task_weights_and_optimizer(tmp_path):
    model = _build(task_weights={"emotion": 1.0, "speaker": 0.25})
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x, y = _data(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    check_model(model, x[:4], {"emotion": (4, 3), "speaker": (4, 2)}, tmp_path)
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    assert reloaded.task_weights == {"emotion": 1.0, "speaker": 0.25}
    assert int(reloaded.optimizer.iterations.numpy()) == 2
    # Training continues after loading.
    history = reloaded.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


# Two logical CPU devices must be configured before TensorFlow starts: own process.
_DISTRIBUTED = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tests.training.test_multitask import _build, _data

    x, y = _data(16)
    y["emotion"][:] = -1
    y["emotion"][[0, 1, 2, 9]] = [0, 1, 2, 1]  # replica 1 holds 3 labels, replica 2 one

    def one_step(strategy):
        keras.utils.set_random_seed(1)
        with strategy.scope():
            model = _build(l2=0.01)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        # One step on one batch: the logged values are those before the update.
        history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
        logs = {key: values[0] for key, values in history.items()}
        return logs, [w.tolist() for w in model.get_weights()]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    result = {"single": one_step(tf.distribute.get_strategy()), "mirrored": one_step(mirrored)}
    print(json.dumps(result))
    """
)


def test_mirrored_strategy_gives_the_single_device_step():
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    completed = subprocess.run(
        [sys.executable, "-c", _DISTRIBUTED],
        cwd=str(PROJECT_ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    single_logs, single_weights = result["single"]
    mirrored_logs, mirrored_weights = result["mirrored"]
    for key in ("loss", "emotion_loss", "speaker_loss", "emotion_ua"):
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-5, atol=1e-6)
    for single, mirrored in zip(single_weights, mirrored_weights, strict=True):
        np.testing.assert_allclose(np.array(mirrored), np.array(single), rtol=1e-4, atol=1e-6)
