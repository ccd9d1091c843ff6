"""`kill -9` and resume reproduces the uninterrupted run exactly.

Each test trains one fold uninterrupted in a subprocess, and the same fold in
a chain of subprocesses that are killed with SIGKILL at chosen moments and
resumed in a fresh process; the resumed chain must end with the same
`history.csv` (byte for byte), `result.json` (metrics and confusion matrix)
as the uninterrupted run. The models have dropout, the data is shuffled (and
augmented), so a resumed run that does not restore every random state, or
that repeats or drops a history row, ends differently.

Kill moments (epochs counted from 0):
* "epoch_begin:E": at the start of epoch E, after epoch E-1's backup;
* "batch:E:B": after batch B of epoch E (mid-epoch; the backup is epoch
  E-1's, the partial epoch runs again);
* "epoch_end:E": at the end of epoch E after `CSVLogger` wrote its row but
  before the backup committed it (the row must not appear twice);
* "pretrain:E:B": after batch B of pre-training epoch E (AAE).
"""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from ser_keras.data.augmentation import SpecAugment
from ser_keras.data.pipeline import make_dataset, make_waveform_dataset
from ser_keras.models.aae_mtl import AAEMultiTaskModel
from ser_keras.training.callbacks import (
    AtomicBackupAndRestore,
    RestoreBestAndHalveLearningRate,
    SeedEachEpoch,
)
from ser_keras.training.multitask import MultiTaskModel
from ser_keras.training.runner import Split, fit_and_evaluate
from ser_keras.utils.atomic import atomic_path
from tests.conftest import PROJECT_ROOT

CLASSES = ["a", "b", "c"]
SEED = 5


class _Kill(keras.callbacks.Callback):
    """SIGKILLs its own process at the moment `spec` names (see the module docstring)."""

    def __init__(self, spec=""):
        super().__init__()
        where, *numbers = spec.split(":") if spec else ("",)
        self.where = where
        self.numbers = [int(number) for number in numbers]
        self.epoch = None

    def _kill(self):
        os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.where == "epoch_begin" and self.numbers == [epoch]:
            self._kill()

    def on_train_batch_end(self, batch, logs=None):
        if self.where in ("batch", "pretrain") and self.numbers == [self.epoch, batch]:
            self._kill()

    def on_epoch_end(self, epoch, logs=None):
        if self.where == "epoch_end" and self.numbers == [epoch]:
            self._kill()


def _split(count, seed, shape, tasks=("emotion",)):
    rng = np.random.default_rng(seed)
    labels = {task: rng.integers(0, 3 if task == "emotion" else 2, count) for task in tasks}
    centres = rng.normal(0.0, 1.0, (3,) + shape).astype("float32")
    inputs = centres[labels["emotion"]] + rng.normal(0.0, 2.0, (count,) + shape)
    return Split(inputs.astype("float32"), {k: v.astype("int32") for k, v in labels.items()})


# ----------------------------------------------------------------- the MLP

MLP_SHAPE = (10, 6)  # [frames, bands], for SpecAugment


def _mlp():
    inputs = keras.Input(MLP_SHAPE)
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(16, activation="relu")(hidden)
    hidden = keras.layers.Dropout(0.5)(hidden)
    outputs = {"emotion": keras.layers.Dense(3, activation="softmax", name="emotion")(hidden)}
    model = MultiTaskModel(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def train_mlp(fold_dir, kill=""):
    """One fold of the MLP with dropout, shuffling, SpecAugment and early stopping."""
    fit_and_evaluate(
        _mlp,
        _split(40, 0, MLP_SHAPE),
        _split(15, 1, MLP_SHAPE),
        _split(15, 2, MLP_SHAPE),
        fold_dir=fold_dir,
        class_names=CLASSES,
        epochs=7,
        batch_size=8,
        seed=SEED,
        patience=3,
        verbose=0,
        extra_callbacks=[_Kill(kill)],
        augment=SpecAugment(
            num_frequency_masks=1, max_frequency_width=2, num_time_masks=1, max_time_width=3,
            max_time_fraction=0.5, pad_value=None,
        ),
    )


# ----------------------------------------------------------------- the AAE

AAE_SHAPE = (32, 16)  # the "cpu_small" preset
AAE_TASKS = ("emotion", "speaker", "gender")


def _aae():
    model = AAEMultiTaskModel.from_preset(
        "cpu_small", "aae_mtl", num_classes={"emotion": 3, "speaker": 2, "gender": 2}, seed=SEED
    )
    # Eager steps: the AAE's three-phase step takes longer to trace than
    # these few steps take to run (the MLP test covers compiled steps).
    model.compile(optimizer=keras.optimizers.SGD(0.05), run_eagerly=True)
    return model


def train_aae(fold_dir, kill=""):
    """One AAE fold driven as the app drives it: auxiliary pre-training, then the three phases.

    The pre-trained weights (and optimizer state) are kept in the fold folder
    and reused by a resumed run; pre-training killed half-way runs again.
    """
    pretrained = os.path.join(fold_dir, "pretrained.weights.h5")
    pretrain_kill = kill if kill.startswith("pretrain") else ""
    kill = "" if pretrain_kill else kill

    def build():
        model = _aae()
        if os.path.exists(pretrained):
            model.load_weights(pretrained)
            return model
        additional = _split(16, 3, AAE_SHAPE, AAE_TASKS)
        data = make_dataset(
            additional.inputs,
            {task: additional.labels[task] for task in ("speaker", "gender")},
            batch_size=8,
            shuffle=True,
            seed=SEED,
        )
        model.pretrain_auxiliary(
            data, epochs=2, shuffle=False, verbose=0, callbacks=[_Kill(pretrain_kill)]
        )
        with atomic_path(pretrained, suffix=".tmp.weights.h5") as temporary:
            model.save_weights(str(temporary))
        return model

    fit_and_evaluate(
        build,
        _split(24, 0, AAE_SHAPE, AAE_TASKS),
        _split(12, 1, AAE_SHAPE, AAE_TASKS),
        _split(12, 2, AAE_SHAPE),
        fold_dir=fold_dir,
        class_names=CLASSES,
        epochs=4,
        batch_size=8,
        seed=SEED,
        verbose=0,
        extra_callbacks=[
            _Kill(kill),
            # Halves (and restores the best weights) after every epoch
            # without improvement: its wait, best value and best weights
            # must survive the kills.
            RestoreBestAndHalveLearningRate(patience=1, min_learning_rate=1e-7),
        ],
    )


# ------------------------------------------------------------ subprocesses

_SCRIPT = (
    "import sys\n"
    "from tests.training import test_exact_resume as module\n"
    "getattr(module, sys.argv[1])(sys.argv[2], sys.argv[3])\n"
)


def _start(function, fold_dir, kill=""):
    env = dict(
        os.environ,
        PYTHONPATH=str(PROJECT_ROOT),
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="3",
        KERAS_BACKEND="tensorflow",
    )
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, function, str(fold_dir), kill],
        cwd=str(PROJECT_ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process, killed=False):
    """Waits for `process` (killing it after 240 s); checks how it ended."""
    try:
        _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
            stderr = "(timed out)"
    expected = -signal.SIGKILL if killed else 0
    assert process.returncode == expected, stderr[-3000:]


def _backup_epoch(fold_dir):
    with open(fold_dir / "backup" / "training_metadata.json") as handle:
        return json.load(handle)["epoch"]


def _history_rows(fold_dir):
    with open(fold_dir / "history.csv") as handle:
        return len(handle.readlines()) - 1


def _outcome(fold_dir):
    with open(fold_dir / "result.json") as handle:
        result = json.load(handle)
    return (fold_dir / "history.csv").read_bytes(), result


def _check_chain(tmp_path, function, steps):
    """Runs `function` uninterrupted and through the killed-and-resumed `steps`.

    The uninterrupted run goes on in parallel with the chain. The chain's
    outcome equal to an independent run's also shows that two uninterrupted
    runs are bit-identical.

    Args:
        steps: (kill spec, backup epoch after the kill or None, history rows
            after the kill) per killed run; a last run finishes the fold.

    Returns:
        The fold's result.
    """
    reference_dir = tmp_path / "uninterrupted"
    reference_run = _start(function, reference_dir)
    fold_dir = tmp_path / "resumed"
    try:
        for kill, backup_epoch, rows in steps:
            _finish(_start(function, fold_dir, kill), killed=True)
            assert not (fold_dir / "result.json").exists()
            if backup_epoch is not None:
                assert _backup_epoch(fold_dir) == backup_epoch
            if rows is not None:
                assert _history_rows(fold_dir) == rows
        _finish(_start(function, fold_dir))
    except BaseException:
        reference_run.kill()
        reference_run.communicate()
        raise
    _finish(reference_run)

    history, result = _outcome(fold_dir)
    reference_history, reference_result = _outcome(reference_dir)
    assert history.decode() == reference_history.decode()
    assert result == reference_result
    assert result["confusion"] == reference_result["confusion"]
    assert not (fold_dir / "backup").exists()
    return result


def test_killed_and_resumed_fold_matches_the_uninterrupted_run(tmp_path):
    result = _check_chain(
        tmp_path,
        "train_mlp",
        [
            ("epoch_begin:2", 2, 2),  # at an epoch boundary
            ("batch:3:2", 3, 3),  # mid-epoch: epoch 3 runs again
            ("epoch_end:4", 4, 5),  # row 4 written, its backup not: no duplicate row
        ],
    )
    # Early stopping ends the run after epoch 5, with a wait counted partly
    # before the last resume.
    assert result["epochs_run"] == 6


def test_killed_and_resumed_aae_fold_matches_the_uninterrupted_run(tmp_path):
    _check_chain(
        tmp_path,
        "train_aae",
        [
            ("pretrain:1:0", None, None),  # mid pre-training: it runs again
            ("batch:2:1", 2, 2),  # mid-epoch, after a halving of the learning rate
        ],
    )


# ------------------------------------------------------- the pieces, in-process


def test_an_epoch_has_the_same_batches_whether_the_dataset_starts_there_or_before():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20, 10, 6)).astype("float32")
    labels = {"emotion": np.arange(20, dtype="int32") % 3}
    augment = SpecAugment(max_frequency_width=2, max_time_width=3, pad_value=None)

    def batches(initial_epoch):
        dataset = make_dataset(
            features, labels, batch_size=6, shuffle=True, seed=3, augment=augment,
            epochs=4, initial_epoch=initial_epoch,
        )
        return [(x.numpy(), y["emotion"].numpy()) for x, y in dataset]

    from_start, resumed = batches(0), batches(2)
    assert len(from_start) == 4 * 4 and len(resumed) == 2 * 4
    for (x, y), (x_resumed, y_resumed) in zip(from_start[8:], resumed, strict=True):
        np.testing.assert_array_equal(x, x_resumed)
        np.testing.assert_array_equal(y, y_resumed)
    assert batches(0)[0][0].tobytes() == from_start[0][0].tobytes()  # a new dataset: the same
    # Each epoch is a new order of all samples, and masks differ between epochs.
    orders = [np.concatenate([y for _, y in from_start[4 * e : 4 * e + 4]]) for e in range(4)]
    for order in orders:
        assert sorted(order.tolist()) == sorted(labels["emotion"].tolist())
    assert not all(np.array_equal(orders[0], order) for order in orders[1:])
    assert not np.array_equal(from_start[0][0], from_start[4][0])


def test_waveform_batches_of_an_epoch_do_not_depend_on_the_start():
    rng = np.random.default_rng(1)
    waveforms = [rng.normal(size=length).astype("float32") for length in range(50, 60)]

    def batches(initial_epoch):
        dataset = make_waveform_dataset(
            waveforms, batch_size=4, shuffle=True, seed=2, epochs=3, initial_epoch=initial_epoch
        )
        return [batch["waveform"].numpy() for batch in dataset]

    from_start, resumed = batches(0), batches(1)
    assert len(from_start) == 9 and len(resumed) == 6
    for batch, batch_resumed in zip(from_start[3:], resumed, strict=True):
        np.testing.assert_array_equal(batch, batch_resumed)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shuffle": False, "seed": 1}, "shuffle=True"),
        ({"shuffle": True, "seed": None}, "integer seed"),
        ({"shuffle": True, "seed": 1, "repeat": True}, "no repeat"),
        ({"shuffle": True, "seed": 1, "initial_epoch": 3}, "at most `epochs`"),
        ({"shuffle": True, "seed": 1, "initial_epoch": -1}, "initial_epoch=-1"),
    ],
)
def test_per_epoch_order_refuses_what_it_cannot_do(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_dataset(np.zeros((5, 2), "float32"), batch_size=2, epochs=2, **kwargs)


def test_seed_each_epoch_makes_the_dropout_masks_a_function_of_the_epoch():
    inputs = keras.Input((50,))
    model = keras.Model(inputs, keras.layers.Dropout(0.5)(keras.layers.Dropout(0.5)(inputs)))
    callback = SeedEachEpoch(7)
    callback.set_model(model)
    ones = np.ones((2, 50), "float32")

    def masks(epoch, draws_before=0):
        for _ in range(draws_before):  # what an earlier epoch would have drawn
            model(ones, training=True)
        callback.on_epoch_begin(epoch)
        return [np.asarray(model(ones, training=True)) for _ in range(2)]

    first = masks(3)
    again = masks(3, draws_before=5)
    for mask, mask_again in zip(first, again, strict=True):
        np.testing.assert_array_equal(mask, mask_again)
    assert not np.array_equal(first[0], first[1])  # a new mask per step
    assert not np.array_equal(first[0], masks(4)[0])


def _tiny_model():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    return model


def test_backup_restores_the_callbacks_state_and_an_early_stop(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 1)).astype("float32")

    def callbacks():
        # The loss falls: "max" mode sees no improvement after epoch 0 and
        # stops after epoch 1; the halving restores epoch 0's weights.
        stopping = keras.callbacks.EarlyStopping(monitor="loss", mode="max", patience=1)
        halving = RestoreBestAndHalveLearningRate(monitor="loss", mode="max", patience=1)
        backup = AtomicBackupAndRestore(
            str(tmp_path / "backup"), callbacks=[stopping, halving], delete_checkpoint=False
        )
        return stopping, halving, backup

    keras.utils.set_random_seed(0)
    stopping, halving, backup = callbacks()
    _tiny_model().fit(x, y, epochs=5, verbose=0, callbacks=[stopping, halving, backup])
    assert stopping.stopped_epoch == 1 and halving.reductions

    epochs_seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_seen.append(e))
    stopping_again, halving_again, backup_again = callbacks()
    _tiny_model().fit(
        x, y, epochs=5, verbose=0, callbacks=[record, stopping_again, halving_again, backup_again]
    )
    assert epochs_seen == []  # the run had stopped early: nothing left to train
    for name in ("wait", "stopped_epoch", "best", "best_epoch"):
        assert getattr(stopping_again, name) == getattr(stopping, name), name
    for name in ("best", "best_epoch", "wait", "reductions", "stopped_epoch"):
        assert getattr(halving_again, name) == getattr(halving, name), name
    for kept, restored in zip(halving.best_weights, halving_again.best_weights, strict=True):
        np.testing.assert_array_equal(kept, restored)


def test_fold_killed_after_its_last_backup_finishes_without_training(tmp_path):
    class InterruptAtTheEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            raise KeyboardInterrupt("killed after the last epoch's backup")

    epochs_seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: epochs_seen.append(e))

    def run(fold_dir, callbacks):
        return fit_and_evaluate(
            _mlp, _split(24, 0, MLP_SHAPE), _split(9, 1, MLP_SHAPE), _split(9, 2, MLP_SHAPE),
            fold_dir=fold_dir, class_names=CLASSES, epochs=3, batch_size=8, seed=SEED,
            verbose=0, extra_callbacks=callbacks,
        )

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "fold", [InterruptAtTheEnd()])
    assert not (tmp_path / "fold" / "result.json").exists()
    result = run(tmp_path / "fold", [record])
    assert epochs_seen == []
    assert result == run(tmp_path / "uninterrupted", [])
    history = (tmp_path / "fold" / "history.csv").read_bytes()
    assert history == (tmp_path / "uninterrupted" / "history.csv").read_bytes()
