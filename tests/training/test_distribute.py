"""tf.distribute: strategy choice, batch sizes, replica shares, AAE phases, two workers.

MultiTaskModel's mirrored step (labels missing unevenly across replicas) is
checked in test_multitask.py, the metrics' cross-replica sums in
test_metrics.py; this file covers the rest. tests/conftest.py splits the CPU
into 2 logical devices, so MirroredStrategy runs in-process with 2 replicas.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.models import aae_mtl
from ser_keras.models.aae_mtl import AAEMultiTaskModel
from ser_keras.training import distribute
from ser_keras.training.multitask import MultiTaskModel
from tests.model_checks import PROJECT_ROOT

NUM_CLASSES = {"emotion": 3, "speaker": 4, "gender": 2}


@pytest.fixture(scope="module")
def mirrored():
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    assert len(cpus) >= 2, f"tests/conftest.py should give 2 logical CPU devices; got {cpus}"
    return distribute.get_strategy("mirrored", devices=cpus[:2])


# ------------------------------------------------------------- choosing a strategy


def test_get_strategy_by_name(mirrored):
    default = distribute.get_strategy("none")
    assert default is tf.distribute.get_strategy()
    assert distribute.num_replicas(default) == 1
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert distribute.num_replicas(mirrored) == 2
    assert distribute.is_chief(mirrored) and distribute.is_chief()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "horovod"}, "'horovod'"),
        ({"name": "Mirrored"}, "'Mirrored'"),
        ({"name": "none", "devices": ["/cpu:0"]}, "mirrored strategy only"),
        ({"name": "multiworker", "communication": "mpi"}, "'mpi'"),
    ],
)
def test_get_strategy_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distribute.get_strategy(**kwargs)


def test_multiworker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG") as error:
        distribute.get_strategy("multiworker")
    assert '"cluster"' in str(error.value) and '"task"' in str(error.value)


@pytest.mark.parametrize(
    "value, message",
    [
        ("{not json", "must be JSON"),
        ('{"task": {"type": "worker", "index": 0}}', '"cluster"'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', '"task"'),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
            "not in",
        ),
        (
            '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
            "not in",
        ),
    ],
)
def test_tf_config_errors_name_the_value(value, message):
    with pytest.raises(ValueError, match=message) as error:
        distribute.parse_tf_config(value)
    assert repr(value) in str(error.value) or "not in its cluster" in str(error.value)


def test_tf_config_accepts_a_cluster():
    value = json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    )
    assert distribute.parse_tf_config(value)["task"]["index"] == 1


def test_strategy_argument():
    parser = argparse.ArgumentParser()
    distribute.add_strategy_argument(parser)
    assert parser.parse_args([]).strategy == "none"
    assert parser.parse_args(["--strategy", "multiworker"]).strategy == "multiworker"
    with pytest.raises(SystemExit):
        parser.parse_args(["--strategy", "tpu"])


def test_batch_sizes(mirrored):
    assert distribute.global_batch_size(16, mirrored) == 32
    assert distribute.per_replica_batch_size(32, mirrored) == 16
    assert distribute.per_replica_batch_size(7) == 7  # default strategy: one replica
    with pytest.raises(ValueError, match="received 31"):
        distribute.per_replica_batch_size(31, mirrored)
    with pytest.raises(ValueError, match="received 0"):
        distribute.global_batch_size(0, mirrored)
    with pytest.raises(ValueError, match="'32'"):
        distribute.per_replica_batch_size("32", mirrored)


def test_chief_and_worker_folders(tmp_path):
    def fake_strategy(task_type, task_id, cluster):
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id
        )
        return types.SimpleNamespace(cluster_resolver=resolver)

    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    with_chief = {"chief": ["127.0.0.1:3"], **workers}
    assert distribute.is_chief(fake_strategy("worker", 0, workers))
    assert not distribute.is_chief(fake_strategy("worker", 1, workers))
    assert distribute.is_chief(fake_strategy("chief", 0, with_chief))
    assert not distribute.is_chief(fake_strategy("worker", 0, with_chief))
    assert distribute.worker_output_dir(tmp_path, fake_strategy("worker", 0, workers)) == tmp_path
    assert distribute.worker_output_dir(tmp_path, fake_strategy("worker", 1, workers)) == (
        tmp_path / "workers" / "worker_1"
    )


# ------------------------------------------------------------- inside a step


def _per_replica(strategy, first, second):
    return strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant([first, second][context.replica_id_in_sync_group], tf.float32)
    )


def test_global_batch_mean_shares_add_up_with_uneven_and_empty_replicas(mirrored):
    @tf.function
    def shares(values):
        return mirrored.run(distribute.global_batch_mean, args=(values,))

    for first, second in (([1.0, 2.0, 3.0], [10.0]), ([1.0, 2.0, 6.0], [])):
        result = [
            float(v)
            for v in mirrored.experimental_local_results(
                shares(_per_replica(mirrored, first, second))
            )
        ]
        assert all(np.isfinite(result))
        assert sum(result) == pytest.approx(np.mean(first + second))
    assert float(distribute.global_batch_mean(tf.constant([1.0, 2.0, 6.0]))) == pytest.approx(3.0)


def test_replica_seed_differs_per_replica(mirrored):
    seed = tf.constant([7, 3], tf.int64)
    np.testing.assert_array_equal(distribute.replica_seed(seed).numpy(), seed.numpy())

    @tf.function
    def draw():
        return mirrored.run(
            lambda: tf.random.stateless_normal((4,), seed=distribute.replica_seed(seed))
        )

    first, second = (v.numpy() for v in mirrored.experimental_local_results(draw()))
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(first, draw().values[0].numpy())  # deterministic


# ------------------------------------------------------------- AAE phases


class _ConstantPriorAAE(AAEMultiTaskModel):
    """Prior samples of a constant: the same on one device and on every replica.

    Random prior samples cannot coincide between one device and two replicas
    (their streams differ, see test_aae_prior_samples_differ_per_replica).
    """

    def _prior_samples(self, shape):
        return tf.fill(shape, 0.5)


def _aae():
    """The cpu_small AAE without dropout (whose masks are random draws too)."""
    keras.utils.set_random_seed(5)
    networks = aae_mtl.build_aae_networks(
        NUM_CLASSES, **aae_mtl.get_preset("cpu_small", dropout_rate=0.0)
    )
    model = _ConstantPriorAAE(
        encoder=networks["encoder"],
        classifiers=networks["classifiers"],
        decoder=networks["decoder"],
        discriminator=networks["discriminator"],
        seed=5,
    )
    assert distribute.synchronize_batch_norm(model) == 8
    assert distribute.synchronize_batch_norm(model) == 0
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def _aae_data(size=31):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(size, 32, 16)).astype("float32")
    emotion = np.full(size, -1, "int32")
    # Batch 1 (0-15): replica 1 holds 3 emotion labels, replica 2 one;
    # batch 2 (16-30, split 8 + 7): replica 1 holds none.
    emotion[[0, 1, 2, 9, 25, 30]] = [0, 1, 2, 1, 2, 0]
    speaker = rng.integers(0, 4, size).astype("int32")
    speaker[8:12] = -1
    gender = rng.integers(0, 2, size).astype("int32")
    return x, {"emotion": emotion, "speaker": speaker, "gender": gender}


def _fit_epoch(model, x, y):
    history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0).history
    return {key: values[0] for key, values in history.items()}


def _assert_same_step(single, mirrored_model, single_logs, mirrored_logs):
    assert set(mirrored_logs) == set(single_logs)
    for key, value in single_logs.items():
        np.testing.assert_allclose(mirrored_logs[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    for variable, reference in zip(mirrored_model.weights, single.weights, strict=True):
        np.testing.assert_allclose(
            np.array(variable), np.array(reference), rtol=1e-4, atol=1e-5, err_msg=variable.path
        )


def test_aae_phases_under_mirrored_strategy_match_one_device(mirrored):
    # Two steps: a global batch of 16 (8 + 8), then the last batch of 15,
    # split 8 + 7 over the two replicas: every phase must average over the
    # global batch, not average the replicas' means. (Keras' fit fails under
    # MirroredStrategy when its *first* batch splits unevenly.)
    x, y = _aae_data()
    parts = mirrored.experimental_distribute_dataset(tf.data.Dataset.from_tensors(x[16:]))
    sizes = [len(part) for part in mirrored.experimental_local_results(next(iter(parts)))]
    assert sizes == [8, 7]

    single = _aae()
    with mirrored.scope():
        replicated = _aae()
    for before, other in zip(single.get_weights(), replicated.get_weights(), strict=True):
        np.testing.assert_array_equal(before, other)
    initial = [w.copy() for w in single.get_weights()]

    # All three phases with their four optimizers.
    single_logs = _fit_epoch(single, x, y)
    mirrored_logs = _fit_epoch(replicated, x, y)
    assert {"reconstruction_loss", "discriminator_loss", "generator_loss"} <= set(single_logs)
    _assert_same_step(single, replicated, single_logs, mirrored_logs)
    changed = [not np.allclose(a, b) for a, b in zip(initial, single.get_weights(), strict=True)]
    assert sum(changed) > len(changed) // 2  # the step moved the networks

    # A restricted stage (pre-training of the auxiliary heads) reports its
    # metrics aggregated over the replicas too.
    for model in (single, replicated):
        model.set_training_stage(phases=("classification",), tasks=("speaker", "gender"))
        model.run_eagerly = True  # the same steps, without a second (slow) tracing
    single_logs = _fit_epoch(single, x, y)
    mirrored_logs = _fit_epoch(replicated, x, y)
    assert set(single_logs) == {
        "loss",
        "speaker_loss",
        "speaker_accuracy",
        "gender_loss",
        "gender_accuracy",
    }
    _assert_same_step(single, replicated, single_logs, mirrored_logs)


def test_aae_prior_samples_differ_per_replica(mirrored):
    with mirrored.scope():
        model = AAEMultiTaskModel.from_preset(
            "cpu_small", "aae_stl", num_classes=NUM_CLASSES, seed=1
        )

    @tf.function
    def draw():
        return mirrored.run(lambda: model._prior_samples((6, 2)))

    first, second = (v.numpy() for v in mirrored.experimental_local_results(draw()))
    assert first.shape == (6, 2) and not np.allclose(first, second)
    assert 0.3 < np.std(np.concatenate([first, second])) < 3.0  # N(0, 1) samples


# ------------------------------------------------------------- two workers


def _mlp():
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = {
        "emotion": keras.layers.Dense(3, activation="softmax", name="emotion")(hidden),
        "speaker": keras.layers.Dense(2, activation="softmax", name="speaker")(hidden),
    }
    model = MultiTaskModel(inputs, outputs, task_weights={"emotion": 1.0, "speaker": 0.5})
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    return model


def _mlp_data(num=32):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(num, 6)).astype("float32")
    emotion = rng.integers(0, 3, num).astype("int32")
    emotion[[1, 2, 3, 5, 8, 13, 21, 22, 23, 30]] = -1  # gaps fall unevenly on the workers
    speaker = rng.integers(0, 2, num).astype("int32")
    return x, {"emotion": emotion, "speaker": speaker}


def _train_mlp():
    """Two steps of 16 (global batch), through the apps' tf.data pipeline."""
    from ser_keras.data.pipeline import make_dataset

    x, y = _mlp_data()
    keras.utils.set_random_seed(6)
    model = _mlp()
    history = model.fit(
        make_dataset(x, y, batch_size=16), epochs=1, shuffle=False, verbose=0
    ).history
    probabilities = model.predict(x, batch_size=16, verbose=0)["emotion"]
    return {
        "logs": {key: values[-1] for key, values in history.items()},
        "weights": [w.tolist() for w in model.get_weights()],
        "predicted": len(probabilities),
    }


_WORKER = textwrap.dedent(
    """
    import json, os, sys
    from ser_keras.training import distribute
    strategy = distribute.get_strategy("multiworker", communication="ring")  # first TF op
    from tests.training.test_distribute import _train_mlp
    with strategy.scope():
        result = _train_mlp()
    result.update(
        replicas=strategy.num_replicas_in_sync,
        chief=distribute.is_chief(strategy),
        output_dir=str(distribute.worker_output_dir("run", strategy)),
    )
    print("RESULT " + json.dumps(result))
    """
)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_workers_on_localhost_train_like_one_device():
    addresses = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    workers = []
    for index in range(2):
        env = dict(
            os.environ,
            PYTHONPATH=str(PROJECT_ROOT),
            CUDA_VISIBLE_DEVICES="",
            TF_CPP_MIN_LOG_LEVEL="3",
            KERAS_BACKEND="tensorflow",
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
            ),
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", _WORKER],
                cwd=str(PROJECT_ROOT),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=240)
            lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
            assert worker.returncode == 0 and lines, stderr[-3000:]
            results.append(json.loads(lines[-1][len("RESULT ") :]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()

    reference = _train_mlp()  # one device, same global batches
    assert [r["chief"] for r in results] == [True, False]
    assert [r["output_dir"] for r in results] == ["run", os.path.join("run", "workers", "worker_1")]
    for result in results:
        assert result["replicas"] == 2
        assert result["predicted"] == 32  # predict gathers both workers' parts
        for key, value in reference["logs"].items():
            np.testing.assert_allclose(result["logs"][key], value, rtol=1e-5, atol=1e-6)
        for weight, expected in zip(result["weights"], reference["weights"], strict=True):
            np.testing.assert_allclose(np.array(weight), np.array(expected), rtol=1e-5, atol=1e-6)
