"""Training-schedule callbacks from the papers.

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
            as `ser_keras.training.aae.AAEMultiTaskModel`) gives all of them.

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


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that replaces its files atomically.

    Keras' callback writes the weights and then `training_metadata.json` in
    place, so a job killed during the second write leaves an empty JSON file
    and the resumed `fit` stops on a `JSONDecodeError` (seen on a cross-corpus
    run killed when its session ended). Here each file is written to a
    temporary file in the backup folder and moved into place. The weights are
    replaced before the metadata: a job killed between the two moves resumes
    from the newer weights at the older epoch count, so it repeats one epoch
    rather than skipping one. `ser_keras.training.runner.fit_and_evaluate`
    also discards backups that cannot be read (written by the plain callback,
    or damaged) before training.

    Args:
        backup_dir: Folder of the backup, as for `BackupAndRestore`.
        **kwargs: Further `BackupAndRestore` arguments.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        # Keras takes the file format from the name: keep `.weights.h5` last.
        with atomic_path(self._weights_path, suffix=".tmp.weights.h5") as temporary:
            self.model.save_weights(str(temporary), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        write_text_atomic(self._training_metadata_path, json.dumps(metadata))
