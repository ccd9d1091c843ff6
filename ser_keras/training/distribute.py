"""Training on several accelerators and hosts with `tf.distribute`.

The apps take `--strategy none|mirrored|multiworker` (`add_strategy_argument`)
and build their models under `get_strategy(name).scope()`:

* `none`: TensorFlow's default strategy (one process, one device);
* `mirrored`: `tf.distribute.MirroredStrategy`, one replica per local GPU (the
  CPU when there is none), gradients all-reduced every step;
* `multiworker`: `tf.distribute.MultiWorkerMirroredStrategy`, the same across
  hosts; every host runs the same program with its own `TF_CONFIG`.

The batch size the apps take is the *global* batch (the papers' batch sizes),
split over the replicas. The package's custom `train_step`s (`MultiTaskModel`,
`AAEMultiTaskModel`) divide every loss by the size of the global batch (for a
masked loss: by the global number of labelled samples), so that the SUM
all-reduce of the replicas' gradients is the gradient of the single-device
loss on the same global batch; `global_batch_mean` is that division for
per-sample losses.

Two things differ from one device unless handled:

* `keras.layers.BatchNormalization` normalises each replica's part of the
  batch with that part's statistics; `synchronize_batch_norm(model)` makes
  them global (one all-reduce per layer and step).
* Random draws from a `keras.random.SeedGenerator` are the same on every
  replica (they read the same mirrored seed state); `replica_seed` gives each
  replica its own stream.

On a multi-worker cluster every worker runs the same steps, but only the chief
should write results: `is_chief` and `worker_output_dir`.

`MultiWorkerMirroredStrategy` must be created when the program starts, before
other TensorFlow operations run.
"""

from __future__ import annotations

import json
import os
import pathlib

import tensorflow as tf  # tf.distribute is TensorFlow's.

# The strategy names and `--strategy` live in ser_keras.cli, which builds the
# apps' parsers without importing TensorFlow; re-exported here.
from ser_keras.cli import STRATEGIES, add_strategy_argument  # noqa: F401

COMMUNICATIONS = ("auto", "ring", "nccl")

_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


def parse_tf_config(value: str | None = None) -> dict:
    """Reads and checks the `TF_CONFIG` cluster description.

    Args:
        value: The JSON text; None reads the `TF_CONFIG` environment variable.

    Returns:
        The parsed dict, with `cluster` (job name -> list of "host:port") and
        `task` (`type`, `index`) checked.

    Raises:
        ValueError: `TF_CONFIG` is unset, not JSON, or does not describe this
            task inside the cluster; the message names the value and shows an
            example.
    """
    if value is None:
        value = os.environ.get("TF_CONFIG")
    if value is None or not value.strip():
        raise ValueError(
            "--strategy multiworker needs the TF_CONFIG environment variable, which is not "
            "set. Set it on every host to the same cluster and to that host's own task, e.g. "
            f"on the first host {_TF_CONFIG_EXAMPLE} and on the second the same with "
            '"index": 1; then start the same command on every host.'
        )
    try:
        config = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"TF_CONFIG must be JSON ({error}); received TF_CONFIG={value!r}. "
            f"Example: {_TF_CONFIG_EXAMPLE}"
        ) from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if (
        not isinstance(cluster, dict)
        or not cluster
        or not all(isinstance(addresses, list) and addresses for addresses in cluster.values())
    ):
        raise ValueError(
            'TF_CONFIG needs a "cluster" dict of job name -> non-empty list of '
            f'"host:port" addresses; received TF_CONFIG={value!r}. '
            f"Example: {_TF_CONFIG_EXAMPLE}"
        )
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise ValueError(
            'TF_CONFIG needs a "task" dict with this host\'s "type" and "index"; '
            f"received TF_CONFIG={value!r}. Example: {_TF_CONFIG_EXAMPLE}"
        )
    task_type, index = task["type"], task["index"]
    if (
        task_type not in cluster
        or not isinstance(index, int)
        or not (0 <= index < len(cluster[task_type]))
    ):
        raise ValueError(
            f"TF_CONFIG's task {task!r} is not in its cluster {cluster!r}: the type must be a "
            "job of the cluster and the index a position in that job's address list."
        )
    return config


def get_strategy(
    name: str = "none", *, devices=None, communication: str = "auto"
) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` for `--strategy NAME`.

    Args:
        name: "none" (TensorFlow's default strategy: one device; its
            `scope()` changes nothing), "mirrored" (`MirroredStrategy` over
            `devices`: default every local GPU, or the CPU when there is none)
            or "multiworker" (`MultiWorkerMirroredStrategy` over the cluster
            described by `TF_CONFIG`).
        devices: For "mirrored" only: device names, e.g. `["/gpu:0",
            "/gpu:1"]`; None takes TensorFlow's default.
        communication: For "multiworker" only: collective implementation,
            "auto", "ring" (gRPC, works everywhere) or "nccl" (GPUs).

    Returns:
        The strategy. Build and compile models under `strategy.scope()`.

    Raises:
        ValueError: Unknown `name` or `communication`, `devices` given for
            another strategy than "mirrored", or "multiworker" without a valid
            `TF_CONFIG` (the message says what to set).
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; expected one of {list(STRATEGIES)}.")
    if devices is not None and name != "mirrored":
        raise ValueError(
            f"`devices` applies to the mirrored strategy only; received devices={devices!r} "
            f"with strategy {name!r}."
        )
    if communication not in COMMUNICATIONS:
        raise ValueError(
            f"Unknown communication {communication!r}; expected one of {list(COMMUNICATIONS)}."
        )
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=None if devices is None else list(devices))
    parse_tf_config()
    implementation = {
        "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
        "ring": tf.distribute.experimental.CommunicationImplementation.RING,
        "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL,
    }[communication]
    return _MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation
        )
    )


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """`MultiWorkerMirroredStrategy` whose `reduce` takes what Keras 3 gives it.

    With several workers, Keras 3.15's TensorFlow trainer calls `reduce` in
    two ways that `MultiWorkerMirroredStrategy` (TF 2.21) refuses, so that
    `fit` fails before its first step (keras-team/keras#20585):

    * on a nested structure (the first input batch, to build the model):
      "Attempt to convert a value (PerReplica...) to a Tensor";
      `MirroredStrategy` accepts it. Each leaf is reduced here.
    * with `axis=0` on the scalar logs of every step, meaning the mean over
      the replicas: "Invalid reduction dimension 0 for input with 0
      dimensions". A scalar is reduced over the replicas only here.
    """

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, (tuple, list, dict)):
            return tf.nest.map_structure(lambda leaf: self.reduce(reduce_op, leaf, axis), value)
        if axis is not None and _rank(value) == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def _rank(value):
    """Static rank of a tensor or of a per-replica value's parts (None if unknown)."""
    parts = getattr(value, "values", (value,))
    shape = getattr(parts[0], "shape", None)
    return None if shape is None else shape.rank


# --------------------------------------------------------------- batch sizes


def num_replicas(strategy: tf.distribute.Strategy | None = None) -> int:
    """Number of replicas that train in sync (1 for None / the default strategy)."""
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    return int(strategy.num_replicas_in_sync)


def global_batch_size(per_replica_batch_size: int, strategy=None) -> int:
    """The global batch for a per-replica batch: `per_replica * num_replicas`.

    Args:
        per_replica_batch_size: Samples per replica and step (> 0).
        strategy: The strategy; None is the current one.

    Returns:
        The batch size to give `fit` / `make_dataset`.
    """
    if isinstance(per_replica_batch_size, bool) or not isinstance(per_replica_batch_size, int):
        raise ValueError(
            f"The per-replica batch size must be an int; received {per_replica_batch_size!r}."
        )
    if per_replica_batch_size < 1:
        raise ValueError(
            f"The per-replica batch size must be >= 1; received {per_replica_batch_size}."
        )
    return per_replica_batch_size * num_replicas(strategy)


def per_replica_batch_size(global_batch_size: int, strategy=None) -> int:
    """Samples each replica gets of a global batch.

    Args:
        global_batch_size: The batch size given to `fit` (> 0).
        strategy: The strategy; None is the current one.

    Returns:
        `global_batch_size // num_replicas`.

    Raises:
        ValueError: When the global batch is not a positive multiple of the
            number of replicas (tf.distribute would split it unevenly: the
            losses stay exact, but the replicas' work is unbalanced and a
            replica may get no sample at all).
    """
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int):
        raise ValueError(f"The global batch size must be an int; received {global_batch_size!r}.")
    replicas = num_replicas(strategy)
    if global_batch_size < 1 or global_batch_size % replicas:
        raise ValueError(
            f"The global batch size must be a positive multiple of the {replicas} replicas; "
            f"received {global_batch_size}. Use e.g. "
            f"{max(1, round(global_batch_size / replicas)) * replicas}."
        )
    return global_batch_size // replicas


# ----------------------------------------------------- inside a train_step


def replica_context():
    """`(num_replicas, replica_context)` inside a step; `(1, None)` on one replica.

    Inside `strategy.run` of a strategy with several replicas (Keras' `fit`,
    `evaluate`) the context is the replica's `tf.distribute.ReplicaContext`,
    whose `all_reduce` sums values over the global batch.
    """
    strategy = tf.distribute.get_strategy()
    context = tf.distribute.get_replica_context()
    if strategy.num_replicas_in_sync > 1 and context is not None:
        return strategy.num_replicas_in_sync, context
    return 1, None


def global_batch_mean(values):
    """This replica's share of the mean of `values` over the global batch.

    The sum of the replica's `values` divided by the number of values in the
    *global* batch (all-reduced): the replicas' shares add up to the mean over
    the global batch, so the SUM all-reduce of their gradients is the gradient
    of that mean, whatever the split (uneven splits of a last, smaller batch
    included; a replica without samples contributes 0, never NaN). With one
    replica it is the plain mean.

    Args:
        values: Per-sample (or per-element) losses of this replica, any shape.

    Returns:
        Scalar float32 tensor.
    """
    values = tf.cast(values, tf.float32)
    total = tf.reduce_sum(values)
    count = tf.cast(tf.size(values), tf.float32)
    _, context = replica_context()
    if context is not None:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(total, count)


def replica_seed(seed):
    """A stateless-random seed distinct per replica.

    Under `tf.distribute` the replicas share a `keras.random.SeedGenerator`'s
    (mirrored) state, so `keras.random.normal(..., seed=generator)` draws the
    *same* numbers on every replica. Folding the replica's id into the
    drawn seed gives each replica its own stream; with one replica the seed
    is returned unchanged.

    Args:
        seed: A `[2]` integer seed tensor, e.g. `generator.next()`.

    Returns:
        A `[2]` int64 seed for `tf.random.stateless_*`.
    """
    seed = tf.cast(seed, tf.int64)
    _, context = replica_context()
    if context is None:
        return seed
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.cast(tf.random.experimental.stateless_fold_in(seed, replica_id), tf.int64)


def synchronize_batch_norm(model) -> int:
    """Makes every `BatchNormalization` layer of `model` use global batch statistics.

    Under `tf.distribute`, Keras' batch normalisation normalises each replica's
    part of the batch with the statistics of that part (and averages the
    replicas' moving statistics): a small per-replica batch (the papers' 32
    over 8 GPUs is 4 samples) normalises differently from one device, and a
    replica left without samples by a last, smaller batch produces NaN
    statistics. With `synchronized=True` the layer all-reduces its moments
    over the global batch, so training matches one device. Outside a strategy
    the layer computes the same moments in one pass (`E[x^2] - E[x]^2`).
    The setting is saved in the layers' config. Call it before the first
    `fit` (the step is traced with it).

    Args:
        model: A Keras model (sub-models and tracked sub-networks included).

    Returns:
        The number of layers switched.
    """
    import keras

    switched = 0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.synchronized:
            layer.synchronized = True
            switched += 1
    return switched


# ------------------------------------------------------------------ workers


def is_chief(strategy=None) -> bool:
    """Whether this process writes the results (always, but on a multi-worker cluster).

    On a cluster the chief is the task of type "chief", or worker 0 when the
    cluster has no "chief" job (as TensorFlow's multi-worker guides define it).
    """
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if resolver is None or task_type is None:
        return True
    if task_type == "chief":
        return True
    cluster = resolver.cluster_spec().as_dict()
    return task_type == "worker" and "chief" not in cluster and resolver.task_id == 0


def worker_output_dir(out_dir, strategy=None) -> pathlib.Path:
    """The folder this process writes to: `out_dir` on the chief, a private one elsewhere.

    Every worker of a multi-worker cluster runs the same `fit` (checkpoints
    and logs included); only the chief's files are the results. The others
    write to `out_dir/workers/<type>_<index>/` so that workers sharing a file
    system never write the same file.

    Args:
        out_dir: The run's output folder.
        strategy: The strategy; None is the current one.

    Returns:
        `pathlib.Path` (not created).
    """
    out_dir = pathlib.Path(out_dir)
    if strategy is None:
        strategy = tf.distribute.get_strategy()
    if is_chief(strategy):
        return out_dir
    resolver = strategy.cluster_resolver
    return out_dir / "workers" / f"{resolver.task_type}_{resolver.task_id}"
