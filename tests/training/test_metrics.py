import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from ser_keras.evaluation import metrics as np_metrics
from ser_keras.training.metrics import MaskedAccuracy, UnweightedAccuracy

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_batch(rng, batch, num_classes, missing=0.25):
    y_true = rng.integers(0, num_classes, batch)
    y_true = np.where(rng.random(batch) < missing, -1, y_true).astype("int32")
    logits = rng.normal(size=(batch, num_classes)) + 2.0 * np.eye(num_classes)[
        np.maximum(y_true, 0)
    ]
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return y_true, probabilities.astype("float32")


def test_documented_example_and_missing_labels():
    ua = UnweightedAccuracy(num_classes=3)
    accuracy = MaskedAccuracy()
    assert float(ua.result()) == 0.0 and float(accuracy.result()) == 0.0
    y_true = [0, 1, 2, -1]
    y_pred = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [1.0, 0.0, 0.0]]
    ua.update_state(y_true, y_pred)
    accuracy.update_state(y_true, y_pred)
    assert float(ua.result()) == pytest.approx(2 / 3)
    assert float(accuracy.result()) == pytest.approx(2 / 3)
    # A batch with no label at all changes nothing (no NaN).
    ua.update_state([-1, -1], [[1.0, 0, 0], [0, 1.0, 0]])
    accuracy.update_state([-1, -1], [[1.0, 0, 0], [0, 1.0, 0]])
    assert float(ua.result()) == pytest.approx(2 / 3)
    assert float(accuracy.result()) == pytest.approx(2 / 3)
    ua.reset_state()
    accuracy.reset_state()
    assert float(ua.result()) == 0.0 and float(accuracy.result()) == 0.0


def test_ua_differs_from_accuracy_on_unbalanced_classes():
    # 8 of class 0 all right, 2 of class 1 all wrong: WA 0.8, UA 0.5.
    ua = UnweightedAccuracy(2)
    y_pred = np.tile([[0.9, 0.1]], (10, 1))
    ua.update_state(np.array([0] * 8 + [1] * 2)[:, None], y_pred)  # [B, 1] labels
    assert float(ua.result()) == pytest.approx(0.5)


def test_graph_mode_accumulation_matches_numpy():
    rng = np.random.default_rng(0)
    num_classes = 5
    ua = UnweightedAccuracy(num_classes, name="emotion_ua")
    accuracy = MaskedAccuracy(name="emotion_accuracy")

    # Unknown batch size in the signature: one trace serves every batch.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.int32), tf.TensorSpec([None, num_classes], tf.float32)
        ]
    )
    def update(y_true, y_pred):
        ua.update_state(y_true, y_pred)
        accuracy.update_state(y_true, y_pred)
        return ua.result(), accuracy.result()

    all_true, all_pred = [], []
    for batch in (7, 32, 1, 19):
        y_true, y_pred = random_batch(rng, batch, num_classes)
        graph_ua, graph_accuracy = update(tf.constant(y_true), tf.constant(y_pred))
        all_true.append(y_true)
        all_pred.append(y_pred)
        y_all, p_all = np.concatenate(all_true), np.concatenate(all_pred)
        assert float(graph_ua) == pytest.approx(
            np_metrics.unweighted_accuracy(y_all, p_all), abs=1e-6
        )
        assert float(graph_accuracy) == pytest.approx(
            np_metrics.weighted_accuracy(y_all, p_all), abs=1e-6
        )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(ua.confusion).astype(int),
        np_metrics.confusion_matrix(y_all, p_all, num_classes),
    )


def test_sample_weight():
    ua = UnweightedAccuracy(2)
    # The wrong class-0 sample has weight 0: class 0 recall 1, class 1 recall 1.
    ua.update_state([0, 0, 1], [[0.9, 0.1], [0.1, 0.9], [0.2, 0.8]], sample_weight=[1, 0, 1])
    assert float(ua.result()) == pytest.approx(1.0)
    accuracy = MaskedAccuracy()
    accuracy.update_state([0, 0, -1], [[0.9, 0.1], [0.1, 0.9], [0.2, 0.8]], sample_weight=[3, 1, 5])
    assert float(accuracy.result()) == pytest.approx(3 / 4)


def test_config_and_serialization():
    ua = UnweightedAccuracy(num_classes=7, name="emotion_ua")
    config = ua.get_config()
    assert config["num_classes"] == 7 and config["name"] == "emotion_ua"
    restored = keras.metrics.deserialize(keras.metrics.serialize(ua))
    assert isinstance(restored, UnweightedAccuracy) and restored.num_classes == 7
    accuracy = keras.metrics.deserialize(keras.metrics.serialize(MaskedAccuracy(name="acc")))
    assert isinstance(accuracy, MaskedAccuracy) and accuracy.name == "acc"
    for bad in (0, -1, 2.5, True, "7"):
        with pytest.raises(ValueError, match="num_classes"):
            UnweightedAccuracy(bad)
    with pytest.raises(ValueError, match="probabilities"):
        UnweightedAccuracy(2).update_state([0, 1], [0, 1])


# A masked-label model with its own train_step/test_step: the situation of the
# multi-task models.
class MaskedClassifier(keras.Model):
    def __init__(self, num_features, num_classes, **kwargs):
        inputs = keras.Input((num_features,))
        outputs = keras.layers.Dense(num_classes, activation="softmax")(inputs)
        super().__init__(inputs, outputs, **kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_metric = MaskedAccuracy(name="emotion_accuracy")
        self.ua_metric = UnweightedAccuracy(num_classes, name="emotion_ua")

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_metric, self.ua_metric]

    def _masked_loss(self, y, probabilities):
        mask = ops.cast(ops.greater_equal(y, 0), "float32")
        losses = keras.losses.sparse_categorical_crossentropy(ops.maximum(y, 0), probabilities)
        return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)

    def _update(self, y, probabilities, loss):
        self.loss_tracker.update_state(loss)
        self.accuracy_metric.update_state(y, probabilities)
        self.ua_metric.update_state(y, probabilities)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            probabilities = self(x, training=True)
            loss = self._masked_loss(y, probabilities)
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._update(y, probabilities, loss)

    def test_step(self, data):
        x, y = data
        probabilities = self(x, training=False)
        return self._update(y, probabilities, self._masked_loss(y, probabilities))


def make_data(seed, n, num_features=8, num_classes=4):
    centers = np.random.default_rng(123).normal(size=(num_classes, num_features)) * 1.5
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    x = (centers[y] + rng.normal(size=(n, num_features))).astype("float32")
    y = np.where(rng.random(n) < 0.2, -1, y).astype("int32")
    return x, y


def test_val_ua_in_fit_history_is_checkpoint_monitor(tmp_path):
    keras.utils.set_random_seed(0)
    model = MaskedClassifier(8, 4)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    x, y = make_data(0, 128)
    x_val, y_val = make_data(1, 64)
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "best.weights.h5"), monitor="val_emotion_ua", mode="max",
        save_best_only=True, save_weights_only=True,
    )
    history = model.fit(
        x, y, validation_data=(x_val, y_val), batch_size=32, epochs=2, verbose=0,
        callbacks=[checkpoint],
    ).history
    assert {"emotion_ua", "val_emotion_ua", "val_emotion_accuracy"} <= set(history)
    assert (tmp_path / "best.weights.h5").exists()
    probabilities = ops.convert_to_numpy(model(x_val, training=False))
    # Validation runs after the last epoch's updates: same weights as this call.
    assert history["val_emotion_ua"][-1] == pytest.approx(
        np_metrics.unweighted_accuracy(y_val, probabilities), abs=1e-5
    )
    assert history["val_emotion_accuracy"][-1] == pytest.approx(
        np_metrics.weighted_accuracy(y_val, probabilities), abs=1e-5
    )
    assert history["val_emotion_ua"][-1] > 0.5  # separable data: the model learned


# --- tf.distribute: two replicas -------------------------------------------------------
# MirroredStrategy needs two logical CPU devices, which can only be configured
# before TensorFlow initialises. Where the test session already has them, the
# checks run in-process; otherwise in a fresh Python process.


def distributed_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200).astype("int32")
    y[rng.random(200) < 0.2] = -1
    return rng, y


def check_replica_updates(strategy):
    """Metrics updated per replica inside `strategy.run`, read in cross-replica context."""
    rng, y = distributed_labels()
    probabilities = rng.dirichlet(np.ones(4), 200).astype("float32")
    with strategy.scope():
        ua = UnweightedAccuracy(4)
        accuracy = MaskedAccuracy()

    @tf.function
    def step(labels, predictions):
        def update(labels, predictions):
            ua.update_state(labels, predictions)
            accuracy.update_state(labels, predictions)

        strategy.run(update, args=(labels, predictions))

    dataset = tf.data.Dataset.from_tensor_slices((y, probabilities)).batch(32)
    replicas = 0
    for labels, predictions in strategy.experimental_distribute_dataset(dataset):
        replicas = max(replicas, len(strategy.experimental_local_results(labels)))
        step(labels, predictions)
    return {
        "replicas": replicas,
        "ua": float(ua.result()),
        "accuracy": float(accuracy.result()),
        "expected_ua": np_metrics.unweighted_accuracy(y, probabilities),
        "expected_accuracy": np_metrics.weighted_accuracy(y, probabilities),
    }


def check_model_fit(strategy):
    """A model with custom train_step/test_step fitted and evaluated under `strategy`."""
    rng, y = distributed_labels()
    x = rng.normal(size=(200, 8)).astype("float32")
    with strategy.scope():
        model = MaskedClassifier(8, 4)
        model.compile(optimizer="adam")
    history = model.fit(x, y, validation_data=(x, y), batch_size=32, epochs=1, verbose=0).history
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    predicted = model.predict(x, batch_size=32, verbose=0)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "ua": float(logs["emotion_ua"]),
        "accuracy": float(logs["emotion_accuracy"]),
        "val_ua": float(history["val_emotion_ua"][-1]),
        "expected_ua": np_metrics.unweighted_accuracy(y, predicted),
        "expected_accuracy": np_metrics.weighted_accuracy(y, predicted),
    }


SUBPROCESS_SCRIPT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.training import test_metrics
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print("RESULT " + json.dumps(getattr(test_metrics, sys.argv[1])(strategy)))
"""


def run_with_two_replicas(check):
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) >= 2:
        return check(tf.distribute.MirroredStrategy([d.name for d in cpus[:2]]))
    env = dict(
        os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="", PYTHONPATH=PROJECT_ROOT,
    )
    completed = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_SCRIPT, check.__name__], capture_output=True,
        text=True, env=env, timeout=300, cwd=PROJECT_ROOT,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def check_sums(result):
    assert result["replicas"] == 2
    assert result["ua"] == pytest.approx(result["expected_ua"], abs=1e-5)
    assert result["accuracy"] == pytest.approx(result["expected_accuracy"], abs=1e-5)


def test_mirrored_strategy_sums_across_replicas():
    check_sums(run_with_two_replicas(check_replica_updates))


@pytest.mark.slow
def test_mirrored_strategy_fit_and_evaluate():
    result = run_with_two_replicas(check_model_fit)
    check_sums(result)
    # Same weights after fit's single epoch and at evaluate: same validation scores.
    assert result["val_ua"] == pytest.approx(result["ua"], abs=1e-5)
