"""Training-schedule callbacks from the papers, and the callbacks of exact resumption.

`RestoreBestAndHalveLearningRate` is the AAE paper's schedule. A run killed
at any moment (`kill -9` included) and resumed reproduces the uninterrupted
run bit for bit with three pieces: `AtomicBackupAndRestore` (weights,
optimizer and callback state, committed atomically at each epoch's end),
`SeedEachEpoch` (each epoch's random layers a function of `(seed, epoch)`)
and a dataset whose epoch order is a function of `(seed, epoch)`
(`ser_keras.data.pipeline.make_dataset(..., epochs=...)`);
`ser_keras.training.runner.fit_and_evaluate` combines them.

Reference:
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020, Section 4.3.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
from keras import ops

from ser_keras.utils.atomic import atomic_path, write_text_atomic


def model_optimizers(model) -> list:
    """The optimizers that update `model`: every phase's for multi-optimizer models.

    Args:
        model: a compiled Keras model; one with a `phase_optimizers` dict (such
            as `ser_keras.models.aae_mtl.AAEMultiTaskModel`) gives all of them.

    Returns:
        list of `keras.optimizers.Optimizer`, without duplicates.
    """
    candidates = []
    phase_optimizers = getattr(model, "phase_optimizers", None)
    if phase_optimizers:
        candidates.extend(phase_optimizers.values())
    elif getattr(model, "optimizer", None) is not None:
        candidates.append(model.optimizer)
    unique = []
    for optimizer in candidates:
        if all(optimizer is not seen for seen in unique):
            unique.append(optimizer)
    if not unique:
        raise ValueError(f"Model {model.name!r} has no optimizer; compile it first.")
    return unique


def _learning_rate(optimizer) -> float:
    configured = optimizer.get_config().get("learning_rate")
    if isinstance(configured, dict):  # a serialised LearningRateSchedule
        raise ValueError(
            f"Optimizer {optimizer.name!r} uses the learning-rate schedule "
            f"{configured.get('class_name')}; the halving schedule needs a constant "
            "learning rate it can set."
        )
    return float(ops.convert_to_numpy(optimizer.learning_rate))


class RestoreBestAndHalveLearningRate(keras.callbacks.Callback):
    """Restores the best weights and halves the learning rate on a plateau, then stops.

    Section 4.3: "If the accuracy of the model did not improve on the
    validation set after 5 epochs, we restored the model to best epoch and
    learning rate was halved. This process continued until the learning rate
    reached below 0.00001." After `patience` epochs without improvement of
    `monitor`, the weights of the best epoch are restored and the learning
    rate of every optimizer of the model (each phase's, for multi-optimizer
    models) is multiplied by `factor`; when the learning rate falls below
    `min_learning_rate`, training stops. At the end of training the best
    weights are restored.

    Optimizer state (e.g. momentum) is not rolled back; the paper uses plain
    SGD, which has none.

    Args:
        monitor: the validation metric (default "val_emotion_ua", the UA of
            the paper's "accuracy ... on the validation set").
        mode: "max" (accuracies) or "min" (losses).
        patience: epochs without improvement before a restore + halving
            (paper: 5).
        factor: learning-rate multiplier (paper: 0.5).
        min_learning_rate: training stops once the learning rate falls below
            it (paper: 0.00001).
        min_delta: smallest change that counts as an improvement.
        restore_best_at_end: restore the best weights when training ends.
        verbose: 1 prints each restore + halving.
    """

    def __init__(
        self,
        monitor: str = "val_emotion_ua",
        mode: str = "max",
        patience: int = 5,
        factor: float = 0.5,
        min_learning_rate: float = 1e-5,
        min_delta: float = 0.0,
        restore_best_at_end: bool = True,
        verbose: int = 0,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}.")
        if patience < 1:
            raise ValueError(f"patience must be >= 1; got {patience}.")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1); got {factor}.")
        if min_learning_rate < 0.0:
            raise ValueError(f"min_learning_rate must be >= 0; got {min_learning_rate}.")
        if min_delta < 0.0:
            raise ValueError(f"min_delta must be >= 0; got {min_delta}.")
        self.monitor = monitor
        self.mode = mode
        self.patience = int(patience)
        self.factor = float(factor)
        self.min_learning_rate = float(min_learning_rate)
        self.min_delta = float(min_delta)
        self.restore_best_at_end = bool(restore_best_at_end)
        self.verbose = int(verbose)
        self._reset()

    def _reset(self):
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self.wait = 0
        self.reductions = []  # (epoch, new learning rate) of each halving
        self.stopped_epoch = None

    def _improved(self, value) -> bool:
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_train_begin(self, logs=None):
        self._reset()
        for optimizer in model_optimizers(self.model):
            _learning_rate(optimizer)  # fails early on a schedule

    def get_resume_state(self) -> dict:
        """What this callback carries between epochs, for `AtomicBackupAndRestore`.

        The learning rates themselves are optimizer state, saved with the weights.
        """
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_weights": self.best_weights,
            "wait": self.wait,
            "reductions": [list(reduction) for reduction in self.reductions],
            "stopped_epoch": self.stopped_epoch,
        }

    def set_resume_state(self, state: dict) -> None:
        """Takes back the state `get_resume_state` gave (after `on_train_begin`)."""
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.best_weights = state["best_weights"]
        self.wait = state["wait"]
        self.reductions = [tuple(reduction) for reduction in state["reductions"]]
        self.stopped_epoch = state["stopped_epoch"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.monitor not in logs:
            raise ValueError(
                f"RestoreBestAndHalveLearningRate monitors {self.monitor!r}, which is not in "
                f"the epoch logs {sorted(logs)} (validation data given?)."
            )
        value = float(logs[self.monitor])
        optimizers = model_optimizers(self.model)
        if np.isfinite(value) and self._improved(value):
            self.best = value
            self.best_epoch = epoch
            self.best_weights = self.model.get_weights()
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.wait = 0
                if self.best_weights is not None:
                    self.model.set_weights(self.best_weights)
                rates = []
                for optimizer in optimizers:
                    rate = _learning_rate(optimizer) * self.factor
                    optimizer.learning_rate = rate
                    rates.append(rate)
                self.reductions.append((epoch, max(rates)))
                if self.verbose:
                    print(
                        f"\nEpoch {epoch + 1}: no improvement of {self.monitor} for "
                        f"{self.patience} epochs; restored epoch {self.best_epoch + 1} "
                        f"and set the learning rate to {max(rates):.3g}."
                    )
                if max(rates) < self.min_learning_rate:
                    self.stopped_epoch = epoch
                    self.model.stop_training = True
        logs["learning_rate"] = max(_learning_rate(o) for o in optimizers)

    def on_train_end(self, logs=None):
        if self.restore_best_at_end and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def derived_seed(seed: int, *keys: int) -> int:
    """A seed for `keys` (an epoch, a generator's position) drawn from `seed`.

    Args:
        seed: The run's seed, an integer >= 0.
        *keys: Integers >= 0 naming what the seed is for.

    Returns:
        An int in `[0, 2**31 - 2)`: the range in which TensorFlow's stateless
        random ops keep a Keras seed apart (they reduce it modulo
        `2**31 - 2`).
    """
    entropy = [seed, *keys]
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in entropy):
        raise ValueError(f"Seeds and keys must be integers >= 0. Received: {entropy!r}")
    state = np.random.SeedSequence([int(v) for v in entropy]).generate_state(1, dtype=np.uint64)
    return int(state[0] % (2**31 - 2))


def seed_generator_states(model) -> list:
    """The state variables of every `keras.random.SeedGenerator` of `model`, in a fixed order.

    These drive the model's random layers (`Dropout`, `GaussianNoise`, the
    AAE's prior samples, ...). Keras does not save them with the weights.

    Args:
        model: A built Keras model.

    Returns:
        list of the `[2]` int state variables, in the order of `model.variables`.
    """
    weights = {id(weight) for weight in model.weights}
    return [
        variable
        for variable in model.variables
        if id(variable) not in weights and variable.name == "seed_generator_state"
    ]


class SeedEachEpoch(keras.callbacks.Callback):
    """Makes each epoch's randomness a function of `(seed, epoch)` alone.

    At the start of epoch `e` the Python, NumPy and TensorFlow seeds are set
    (`keras.utils.set_random_seed`) and every `keras.random.SeedGenerator` of
    the model restarts from a state derived from `(seed, e, its position)`.
    Epoch `e` then draws the same dropout masks (and other random values of
    the model) whether the run went through epochs `0..e-1` in this process
    or was resumed from a backup: Keras saves the weights and the optimizer,
    not these generators, which otherwise go on from wherever the process
    left them. Random values drawn outside the model's generators (unseeded
    `keras.random` calls inside a compiled step) are not covered: give every
    random layer its own `SeedGenerator`, as Keras' layers do.

    Pair it with a dataset whose order is a function of the epoch
    (`ser_keras.data.pipeline.make_dataset(..., epochs=...)`).

    Args:
        seed: The run's seed, an integer >= 0.
    """

    def __init__(self, seed: int):
        super().__init__()
        derived_seed(seed)  # checks it
        self.seed = int(seed)

    def on_epoch_begin(self, epoch, logs=None):
        keras.utils.set_random_seed(derived_seed(self.seed, epoch))
        for position, state in enumerate(seed_generator_states(self.model), start=1):
            value = [derived_seed(self.seed, epoch, position), 0]
            state.assign(np.asarray(value, dtype=state.dtype))


# Attributes that hold the state of Keras' own callbacks between epochs.
_KERAS_CALLBACK_STATE = (
    (
        keras.callbacks.EarlyStopping,
        ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    ),
    (keras.callbacks.ReduceLROnPlateau, ("wait", "cooldown_counter", "best")),
    (keras.callbacks.ModelCheckpoint, ("best",)),
)


def _has_state(callback) -> bool:
    return hasattr(callback, "get_resume_state") or any(
        isinstance(callback, kind) for kind, _ in _KERAS_CALLBACK_STATE
    )


def callback_state(callback) -> dict | None:
    """What `callback` carries from one epoch to the next; `None` if nothing.

    A callback gives it by a `get_resume_state()` method returning a dict (and
    takes it back by `set_resume_state(state)`); Keras' `EarlyStopping`,
    `ReduceLROnPlateau` and `ModelCheckpoint` are known here.

    Args:
        callback: A Keras callback.

    Returns:
        dict name -> value (JSON values, or lists of NumPy arrays such as
        kept weights), or None.
    """
    if not _has_state(callback):
        return None
    if hasattr(callback, "get_resume_state"):
        return dict(callback.get_resume_state())
    for kind, names in _KERAS_CALLBACK_STATE:
        if isinstance(callback, kind):
            return {name: getattr(callback, name, None) for name in names}
    return None


def restore_callback_state(callback, state: dict) -> None:
    """Gives `callback` back the state `callback_state` took from it."""
    if hasattr(callback, "set_resume_state"):
        callback.set_resume_state(state)
        return
    for name, value in state.items():
        setattr(callback, name, value)


def _plain(value):
    """A JSON value for a callback state entry (NumPy scalars become Python numbers)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _is_array_list(value) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(item, np.ndarray) for item in value)
    )


def _encode_states(callbacks) -> tuple[dict, dict]:
    """(JSON description, arrays by name) of the states of the callbacks that have one."""
    described, arrays = [], {}
    for position, callback in enumerate(filter(_has_state, callbacks)):
        state = callback_state(callback)
        plain = {}
        for name, value in state.items():
            if _is_array_list(value):
                keys = []
                for index, array in enumerate(value):
                    key = f"{position}.{name}.{index}"
                    arrays[key] = array
                    keys.append(key)
                plain[name] = {"arrays": keys}
            else:
                plain[name] = _plain(value)
        described.append({"class": type(callback).__name__, "state": plain})
    return {"callbacks": described}, arrays


def _decode_states(callbacks, described: dict, arrays) -> None:
    entries = described["callbacks"]
    callbacks = list(filter(_has_state, callbacks))
    classes = [type(callback).__name__ for callback in callbacks]
    stored = [entry["class"] for entry in entries]
    if classes != stored:
        raise ValueError(
            "The backup was written with other stateful callbacks than this run has, so their "
            f"state cannot be restored. Stored: {stored}; now: {classes}."
        )
    for callback, entry in zip(callbacks, entries, strict=True):
        state = {}
        for name, value in entry["state"].items():
            if isinstance(value, dict) and set(value) == {"arrays"}:
                value = [np.array(arrays[key]) for key in value["arrays"]]
            state[name] = value
        restore_callback_state(callback, state)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Backs up training at every epoch's end so that a killed run resumes exactly.

    Each epoch's backup is a weights file (the model's weights and every
    optimizer's state) and a state file (what `callbacks` carry from epoch to
    epoch: best values, waits, kept weights; see `callback_state`; and
    whether training was stopped), written under new names; then
    `training_metadata.json`, which names them and the number of completed
    epochs, is replaced atomically: that move commits the backup, and the
    files of older backups are removed. A job killed at any moment (`kill
    -9` included) thus leaves one complete, consistent backup. Keras' own
    `BackupAndRestore` writes in place, and a job killed during its second
    write left an empty JSON file (seen on a cross-corpus run), or newer
    weights with an older epoch count.

    On `on_train_begin` the latest backup is loaded: weights, optimizer
    state, the callbacks' state, and the first epoch to run (none when the
    backed-up run had stopped early). Put this callback last in the list:
    its `on_train_begin` then comes after the other callbacks reset
    themselves, and its `on_epoch_end` after they wrote their logs (a
    `CSVLogger` row is written before the backup that covers it). Data
    order and random layers are the caller's part (see `SeedEachEpoch` and
    `ser_keras.data.pipeline.make_dataset(..., epochs=...)`).

    Args:
        backup_dir: Folder of the backup.
        callbacks: The other callbacks of the `fit` whose state is backed up
            and restored with the weights.
        delete_checkpoint: Remove the backup when training ends.
    """

    METADATA = "training_metadata.json"

    def __init__(self, backup_dir, callbacks=(), delete_checkpoint=True):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=delete_checkpoint)
        self.state_callbacks = list(callbacks)

    @classmethod
    def read_metadata(cls, backup_dir) -> dict | None:
        """The latest backup's metadata in `backup_dir`; `None` when there is none.

        Args:
            backup_dir: Folder of the backup.

        Returns:
            dict with `epoch` (completed epochs), `stopped` (bool), and the
            names of its `weights` and `state` files (absent in backups of
            earlier versions, which kept `latest.weights.h5`).

        Raises:
            ValueError: The metadata file exists but cannot be read.
        """
        path = os.path.join(backup_dir, cls.METADATA)
        if not os.path.exists(path):
            return None
        with open(path) as handle:
            text = handle.read()
        try:
            metadata = json.loads(text)
            epoch = metadata["epoch"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: {type(error).__name__}: {error}") from error
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"{path}: epoch={epoch!r}")
        metadata.setdefault("stopped", False)
        return metadata

    def on_train_begin(self, logs=None):
        metadata = self.read_metadata(self.backup_dir)
        if metadata is None:
            return
        if not self.model.built:
            raise ValueError(
                f"AtomicBackupAndRestore needs a built model; {self.model.name!r} is not built."
            )
        weights = os.path.join(
            self.backup_dir, metadata.get("weights", "latest.weights.h5")
        )
        if os.path.exists(weights):
            optimizer = self.model.optimizer
            if optimizer is not None and not optimizer.built:
                optimizer.build(self.model.trainable_variables)
            self.model.load_weights(weights)
        if metadata.get("state"):
            with np.load(os.path.join(self.backup_dir, metadata["state"])) as stored:
                arrays = {key: stored[key] for key in stored.files}
            described = json.loads(str(arrays.pop("__state__")))
            _decode_states(self.state_callbacks, described, arrays)
        epoch = metadata["epoch"]
        if metadata["stopped"]:
            # Training had stopped early (e.g. EarlyStopping): no epoch left.
            epoch = max(epoch, int(self.params.get("epochs", epoch)))
        self.model._initial_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        pass  # backups at epoch ends only

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        name = f"epoch_{self._current_epoch:05d}"
        weights = os.path.join(self.backup_dir, f"{name}.weights.h5")
        # Keras takes the file format from the name: keep `.weights.h5` last.
        with atomic_path(weights, suffix=".tmp.weights.h5") as temporary:
            self.model.save_weights(str(temporary), overwrite=True)
        described, arrays = _encode_states(self.state_callbacks)
        arrays["__state__"] = np.array(json.dumps(described))
        state = os.path.join(self.backup_dir, f"{name}.state.npz")
        with atomic_path(state, suffix=".tmp.npz") as temporary:
            np.savez(str(temporary), **arrays)
        metadata = {
            "epoch": self._current_epoch,
            "batch": 0,
            "stopped": bool(self.model.stop_training),
            "weights": os.path.basename(weights),
            "state": os.path.basename(state),
        }
        write_text_atomic(self._training_metadata_path, json.dumps(metadata))
        keep = {self.METADATA, metadata["weights"], metadata["state"]}
        for entry in os.listdir(self.backup_dir):
            if entry not in keep:
                path = os.path.join(self.backup_dir, entry)
                if os.path.isfile(path):
                    os.remove(path)
