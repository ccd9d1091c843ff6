"""Resumable training and evaluation of one fold, and the state of a whole run.

Every app trains folds the same way: seed, build, fit with validation data from
the training speakers, keep the weights of the best validation epoch, evaluate
the test fold once with them. This module is that one place. A fold whose
`result.json` exists is finished and is not trained again; a fold interrupted
mid-training, even by `kill -9`, continues from its last completed epoch and
ends exactly as the uninterrupted run would have (same `history.csv`, test
metrics and confusion matrix): `AtomicBackupAndRestore` keeps the weights,
the optimizer state, the epoch and the callbacks' state, `SeedEachEpoch`
makes each epoch's dropout a function of `(seed, epoch)`, and each epoch's
order and augmentation of the training data are one too
(`make_dataset(..., epochs=...)`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import pathlib
import shutil
from collections.abc import Callable

import keras
import numpy as np

from ser_keras.evaluation import metrics as metrics_lib
from ser_keras.evaluation import reports
from ser_keras.training.callbacks import AtomicBackupAndRestore, SeedEachEpoch, derived_seed
from ser_keras.utils.atomic import atomic_path, write_file_atomic


@dataclasses.dataclass
class Split:
    """Inputs and labels of one part of a fold.

    Attributes:
        inputs: Model inputs: an array `[N, ...]` or a dict of arrays.
        labels: Task name -> int array `[N]`; -1 marks a missing label.
    """

    inputs: object
    labels: dict

    def __len__(self) -> int:
        first = next(iter(self.inputs.values())) if isinstance(self.inputs, dict) else self.inputs
        return int(len(first))


def _best_so_far(history_path: pathlib.Path, monitor: str, mode: str) -> float | None:
    """Best value of `monitor` in an existing CSVLogger file, for a resumed fit."""
    if not history_path.exists():
        return None
    values = []
    with open(history_path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                values.append(float(row[monitor]))
            except (KeyError, TypeError, ValueError):
                continue
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def _history_prefix(history_path: pathlib.Path, completed: int) -> bytes | None:
    """The header and first `completed` rows of a CSVLogger file, as written.

    `CSVLogger` writes an epoch's row before `AtomicBackupAndRestore` commits
    that epoch's backup, so a job killed in between leaves one row more than
    the backup covers (the epoch runs again on resume), and a job killed
    while writing a row leaves part of one. Neither belongs to the history.

    Args:
        history_path: The `history.csv` of the fold.
        completed: Epochs completed according to the backup.

    Returns:
        The bytes to keep, or `None` when no row is to be kept.

    Raises:
        ValueError: The file lacks some of the `completed` rows.
    """
    if completed == 0:
        return None
    lines = history_path.read_bytes().splitlines(keepends=True) if history_path.exists() else []
    kept = lines[: completed + 1]
    numbers = [line.split(b",", 1)[0].strip() for line in kept[1:]]
    if (
        len(kept) < completed + 1
        or not all(line.endswith(b"\n") for line in kept)
        or numbers != [str(number).encode() for number in range(completed)]
    ):
        raise ValueError(
            f"{history_path}: the backup has {completed} completed epochs, the history "
            f"{max(len(lines) - 1, 0)} rows"
        )
    return b"".join(kept)


def _read_history(history_path: pathlib.Path) -> dict:
    history: dict[str, list[float]] = {}
    if not history_path.exists():
        return history
    with open(history_path, newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key == "epoch":
                    continue
                try:
                    history.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    continue
    return history


# Scores of a fold result that are accuracies (fractions in memory, percent in result.json).
PERCENT_SCORES = ("wa", "ua", "macro_f1")


def stored_result(result: dict, monitor: str) -> dict:
    """A fold result as `result.json` holds it: accuracies in percent.

    WA, UA, macro-F1 and the per-class recalls are written in percent, and
    `best_validation` too when `monitor` is an accuracy (a monitored loss is
    kept as it is). `percent_keys` names the converted scores.

    Args:
        result: The fold result, scores as fractions (as `fit_and_evaluate`
            returns it).
        monitor: The monitored validation metric.

    Returns:
        A new dict with `"units": "percent"` and `percent_keys`.
    """
    keys = [key for key in PERCENT_SCORES if result.get(key) is not None]
    if "loss" not in monitor and result.get("best_validation") is not None:
        keys.append("best_validation")
    stored = {**result, **{key: 100 * result[key] for key in keys}}
    if isinstance(result.get("per_class_recall"), dict):
        stored["per_class_recall"] = {
            name: None if value is None else 100 * value
            for name, value in result["per_class_recall"].items()
        }
        keys.append("per_class_recall")
    stored.update(units="percent", percent_keys=keys)
    return stored


def loaded_result(stored: dict) -> dict:
    """A fold result read from `result.json`, its scores back as fractions.

    A `result.json` without `units` (written before scores were stored in
    percent) holds fractions and is returned as it is.

    Args:
        stored: The content of a `result.json`.

    Returns:
        The result as `fit_and_evaluate` returns it (fractions, no `units`).

    Raises:
        ValueError: If `units` is neither absent nor `"percent"`.
    """
    units = stored.get("units")
    if units is None:
        return dict(stored)
    if units != "percent":
        raise ValueError(f"`units` of a result.json must be 'percent'; received {units!r}.")
    result = {key: value for key, value in stored.items() if key not in ("units", "percent_keys")}
    for key in stored.get("percent_keys", []):
        if key == "per_class_recall":
            result[key] = {
                name: None if value is None else value / 100
                for name, value in stored[key].items()
            }
        elif stored[key] is not None:
            result[key] = stored[key] / 100
    return result


def fit_and_evaluate(
    build_model: Callable[[], keras.Model],
    train: Split,
    validation: Split,
    test: Split,
    *,
    fold_dir,
    class_names,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    monitor: str = "val_emotion_ua",
    patience: int | None = None,
    verbose: int = 1,
    task: str = "emotion",
    predict_fn: Callable[[keras.Model, object], np.ndarray] | None = None,
    extra_callbacks=(),
    strategy=None,
    augment=None,
    recalibrate_batch_norm: bool = False,
) -> dict:
    """Trains one fold (resumably) and evaluates its test part once.

    Args:
        build_model: Returns a freshly built and compiled model.
        train: Training split.
        validation: Validation split, carved from the training speakers.
            Checkpoint selection and early stopping look at it, never at `test`.
        test: The held-out test split.
        fold_dir: Folder for this fold's checkpoints, history and result.
        class_names: Names of the `task` classes, for the report.
        epochs: Maximum number of epochs.
        batch_size: Batch size.
        seed: Seed for weights initialisation, shuffling and dropout.
        monitor: Validation metric selecting the best epoch (maximised when
            it names an accuracy or `ua`, minimised when it names a loss).
        patience: Epochs without improvement before early stopping; `None`
            trains all `epochs`.
        verbose: Keras `fit` verbosity.
        task: The task whose test predictions are scored.
        predict_fn: Optional `(model, inputs) -> probabilities` for models
            whose prediction is not `model.predict(inputs)[task]` (for example
            segment-averaging models). It is given the test split's inputs
            and, with `recalibrate_batch_norm`, the validation split's; it
            must return one row of probabilities per row of `labels[task]`
            of the split it is given.
        extra_callbacks: More Keras callbacks.
        strategy: Optional `tf.distribute.Strategy`; the model is built and
            compiled under its scope, and `batch_size` is the global batch.
        augment: Optional augmentation of the training batches only (see
            `make_dataset`), e.g. `ser_keras.data.augmentation.SpecAugment`.
        recalibrate_batch_norm: After loading the selected checkpoint,
            replace its batch-norm moving statistics by those of the
            (un-augmented) training data
            (`ser_keras.training.recipe.recalibrate_batch_norm`); the saved
            `best.keras` and the test scores are the recalibrated model's
            unless recalibration lowered the validation UA (then the moving
            statistics are put back); `batch_norm_recalibration` records the
            validation UA (percent) before and after and whether it was kept.

    Returns:
        A dict with `wa`, `ua`, `macro_f1`, `confusion`, `per_class_recall`,
        `best_validation` (the monitored value), `best_epoch`, `epochs_run`,
        `num_train`, `num_validation`, `num_test`, scores as fractions. It is
        also written to `fold_dir/result.json` with the accuracies in percent
        (`stored_result`); the best model is kept as `fold_dir/best.keras`. A
        fold whose `result.json` exists is not trained again: its result is
        read back (`loaded_result`), as fractions.
    """
    from ser_keras.data.pipeline import make_dataset, num_batches

    fold_dir = pathlib.Path(fold_dir)
    result_path = fold_dir / "result.json"
    if result_path.exists():
        with open(result_path) as handle:
            return loaded_result(json.load(handle))
    if epochs < 1:
        raise ValueError(f"`epochs` must be at least 1. Received: epochs={epochs}")
    if len(train) == 0 or len(validation) == 0 or len(test) == 0:
        raise ValueError(
            "Every split of a fold needs samples. Received sizes: "
            f"train={len(train)}, validation={len(validation)}, test={len(test)}"
        )
    fold_dir.mkdir(parents=True, exist_ok=True)
    mode = "min" if "loss" in monitor else "max"
    backup_dir = fold_dir / "backup"
    history_path = fold_dir / "history.csv"
    weights_path = fold_dir / "best.weights.h5"
    damaged = _unreadable_fold_state(fold_dir)
    if damaged:
        # A partial fold that cannot be continued is trained again from its
        # first epoch, rather than stopping the whole run.
        print(
            f"Warning: {fold_dir} holds an interrupted fold whose state cannot be read "
            f"({damaged}); training this fold again from epoch 1.",
            flush=True,
        )
        shutil.rmtree(backup_dir, ignore_errors=True)
    metadata = AtomicBackupAndRestore.read_metadata(backup_dir)
    completed = min(metadata["epoch"], epochs) if metadata else 0
    kept = _history_prefix(history_path, completed)
    if kept is None:
        # No completed epoch: whatever a killed first epoch left goes.
        for stale in (history_path, weights_path):
            stale.unlink(missing_ok=True)
    elif kept != history_path.read_bytes():
        write_file_atomic(history_path, lambda handle: handle.write(kept))

    keras.utils.set_random_seed(seed)
    if strategy is not None:
        from ser_keras.training.distribute import num_replicas, synchronize_batch_norm

        with strategy.scope():
            model = build_model()
            if num_replicas(strategy) > 1:
                # Batch statistics of the global batch, as on one device.
                synchronize_batch_norm(model)
    else:
        model = build_model()

    # The batches of epochs `completed`..`epochs - 1`, each epoch's order a
    # function of (seed, epoch): the same as in an uninterrupted run.
    train_data = make_dataset(
        train.inputs, train.labels, batch_size=batch_size, shuffle=True, seed=seed,
        augment=augment, epochs=epochs, initial_epoch=completed,
    )
    validation_data = make_dataset(validation.inputs, validation.labels, batch_size=batch_size)

    callbacks = [
        SeedEachEpoch(seed),
        keras.callbacks.ModelCheckpoint(
            str(weights_path),
            monitor=monitor,
            mode=mode,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=_best_so_far(history_path, monitor, mode),
        ),
        keras.callbacks.CSVLogger(str(history_path), append=True),
    ]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience)
        )
    callbacks.extend(extra_callbacks)
    # Last: it restores the others' state after they reset themselves, and
    # backs up an epoch after they have all logged it.
    callbacks.append(
        AtomicBackupAndRestore(str(backup_dir), callbacks=list(callbacks), delete_checkpoint=False)
    )
    model.fit(
        train_data,
        validation_data=validation_data,
        epochs=epochs,
        initial_epoch=completed,
        steps_per_epoch=num_batches(len(train), batch_size),
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # make_dataset orders each epoch
    )

    if weights_path.exists():
        model.load_weights(str(weights_path))
    history = _read_history(history_path)
    monitored = history.get(monitor, [])
    best_epoch = (
        int(np.argmax(monitored) if mode == "max" else np.argmin(monitored)) if monitored else -1
    )

    def predict(split):
        if predict_fn is not None:
            return predict_fn(model, split.inputs)
        outputs = model.predict(split.inputs, batch_size=batch_size, verbose=0)
        return outputs[task] if isinstance(outputs, dict) else outputs

    recalibration = None
    if recalibrate_batch_norm:
        from ser_keras.training.recipe import batch_norm_layers
        from ser_keras.training.recipe import recalibrate_batch_norm as recalibrate

        statistics = [
            variable
            for layer in batch_norm_layers(model)
            for variable in (layer.moving_mean, layer.moving_variance)
        ]

        def validation_ua():
            predictions = np.argmax(predict(validation), axis=-1)
            return 100 * metrics_lib.unweighted_accuracy(validation.labels[task], predictions)

        before = validation_ua()
        moving = [np.array(variable) for variable in statistics]
        layers = recalibrate(
            model, train.inputs, batch_size=batch_size, seed=derived_seed(seed, 1)
        )
        after = validation_ua() if layers else before
        # A choice made on validation data: the recalibrated statistics are
        # kept unless they lower the validation UA.
        kept = bool(layers) and after >= before
        if layers and not kept:
            for variable, value in zip(statistics, moving, strict=True):
                variable.assign(value)
        recalibration = {
            "layers": layers,
            "validation_ua_before": before,
            "validation_ua_after": after,
            "kept": kept,
            "units": "percent",
        }

    predictions = np.argmax(predict(test), axis=-1)
    summary = metrics_lib.summarize(test.labels[task], predictions, list(class_names))
    result = dict(summary)
    result.update(
        best_validation=float(monitored[best_epoch]) if monitored else None,
        best_epoch=best_epoch + 1,
        epochs_run=len(next(iter(history.values()))) if history else 0,
        num_train=len(train),
        num_validation=len(validation),
        num_test=len(test),
    )
    if recalibration is not None:
        result["batch_norm_recalibration"] = recalibration
    if history:
        reports.plot_training_curves(
            history,
            fold_dir / "training_curves.png",
            title=f"{fold_dir.parent.name}, {fold_dir.name.removeprefix('fold_')}",
            selected_epoch=best_epoch + 1 if monitored else None,
        )
    _save_model_atomic(model, fold_dir / "best.keras")
    stored = stored_result(result, monitor)
    reports.write_json_atomic(result_path, stored)
    shutil.rmtree(fold_dir / "backup", ignore_errors=True)
    # Read back as a reused fold is, so that a fresh and a reused fold give equal results.
    return loaded_result(stored)


def _unreadable_fold_state(fold_dir: pathlib.Path) -> str | None:
    """Why an interrupted fold's state cannot be continued; `None` when it can.

    Keras' own `BackupAndRestore` wrote its files in place, so a run killed
    mid-write (before `AtomicBackupAndRestore`) can leave an empty
    `training_metadata.json` or a truncated weights file; `ModelCheckpoint`
    still writes `best.weights.h5` in place; and a backup of an earlier
    version, written before the history row of its epoch, can cover an epoch
    that `history.csv` lacks.
    """
    import zipfile

    import h5py

    backup_dir = fold_dir / "backup"
    try:
        metadata = AtomicBackupAndRestore.read_metadata(backup_dir)
    except ValueError as error:
        return str(error)
    weights_files = [backup_dir / "latest.weights.h5", fold_dir / "best.weights.h5"]
    if metadata and metadata.get("weights"):
        weights_files.insert(0, backup_dir / metadata["weights"])
    for name in ("weights", "state"):
        if metadata and metadata.get(name) and not (backup_dir / metadata[name]).exists():
            return f"{backup_dir / metadata[name]} is missing"
    for weights in weights_files:
        if weights.exists():
            try:
                with h5py.File(weights, "r"):
                    pass
            except OSError as error:
                return f"{weights}: {error}"
    if metadata and metadata.get("state"):
        state = backup_dir / metadata["state"]
        try:
            with np.load(state) as stored:
                json.loads(str(stored["__state__"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            return f"{state}: {type(error).__name__}: {error}"
    try:
        _history_prefix(fold_dir / "history.csv", metadata["epoch"] if metadata else 0)
    except ValueError as error:
        return str(error)
    return None


def _save_model_atomic(model: keras.Model, path: pathlib.Path) -> None:
    with atomic_path(path) as temporary:  # named .tmp.keras: Keras takes the format from it
        model.save(str(temporary))


class RunState:
    """The configuration of a run, kept in `<out>/run_config.json`.

    A run folder belongs to one configuration: resuming with other settings
    that change results (sizes, epochs, seed, data) would mix incompatible
    folds, so it is refused with the differences named.

    Args:
        out_dir: The run's output folder.
        config: JSON-serialisable configuration of the run.
        resume: Whether continuing an existing run is wanted. Without it, an
            existing run in `out_dir` is an error rather than silently
            overwritten or mixed.
    """

    FILENAME = "run_config.json"

    def __init__(self, out_dir, config: dict, resume: bool):
        self.out_dir = pathlib.Path(out_dir)
        self.config = json.loads(json.dumps(config, default=str))
        path = self.out_dir / self.FILENAME
        if path.exists():
            with open(path) as handle:
                previous = json.load(handle)
            if not resume:
                raise ValueError(
                    f"{self.out_dir} already holds a run. Pass --resume to continue it, "
                    "or choose another --out folder."
                )
            differences = sorted(
                key
                for key in set(previous) | set(self.config)
                if previous.get(key) != self.config.get(key)
            )
            if differences:
                raise ValueError(
                    f"Cannot resume the run in {self.out_dir}: its configuration differs in "
                    f"{differences} (stored: {[previous.get(k) for k in differences]}, "
                    f"now: {[self.config.get(k) for k in differences]})."
                )
        else:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            reports.write_json_atomic(path, self.config)

    @property
    def fingerprint(self) -> str:
        text = json.dumps(self.config, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def fold_dir(self, setting: str, fold_name: str) -> pathlib.Path:
        return self.out_dir / setting / f"fold_{fold_name}"
