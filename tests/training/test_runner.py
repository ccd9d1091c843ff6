import json

import keras
import numpy as np
import pytest

from ser_keras.training import runner
from ser_keras.training.multitask import MultiTaskModel
from ser_keras.training.runner import RunState, Split, fit_and_evaluate

NUM_CLASSES = 3


def _data(num, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, num).astype(np.int32)
    centres = np.eye(NUM_CLASSES, 6, dtype=np.float32) * 3.0
    inputs = centres[labels] + rng.normal(0, 0.5, (num, 6)).astype(np.float32)
    return Split(inputs, {"emotion": labels})


def _build():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    emotion = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="emotion")(hidden)
    outputs = {"emotion": emotion}
    model = MultiTaskModel(inputs=inputs, outputs=outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    return model


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt("simulated interruption")


def _run(fold_dir, epochs=6, extra_callbacks=(), build=_build):
    return fit_and_evaluate(
        build,
        _data(96, 0),
        _data(30, 1),
        _data(30, 2),
        fold_dir=fold_dir,
        class_names=["a", "b", "c"],
        epochs=epochs,
        batch_size=16,
        seed=3,
        verbose=0,
        extra_callbacks=extra_callbacks,
    )


def test_fit_and_evaluate_learns_and_writes_its_result(tmp_path):
    result = _run(tmp_path / "fold")
    assert result["ua"] > 0.8 and result["wa"] > 0.8
    assert result["epochs_run"] == 6
    assert 1 <= result["best_epoch"] <= 6
    assert (tmp_path / "fold" / "best.keras").exists()
    assert (tmp_path / "fold" / "training_curves.png").exists()
    with open(tmp_path / "fold" / "result.json") as handle:
        stored = json.load(handle)
    # In memory fractions; on disk percent, named.
    assert stored["units"] == "percent"
    for key in ("ua", "wa", "macro_f1", "best_validation"):
        assert stored[key] == pytest.approx(100 * result[key]), key
        assert key in stored["percent_keys"]
    for name, recall in result["per_class_recall"].items():
        assert stored["per_class_recall"][name] == pytest.approx(100 * recall)
    assert "units" not in result


def test_stored_and_loaded_results_convert_percent():
    result = {"ua": 0.29, "wa": 0.57, "macro_f1": 0.1, "best_validation": 0.7,
              "per_class_recall": {"a": 0.3}, "best_epoch": 2}
    stored = runner.stored_result(result, "val_emotion_ua")
    assert stored["ua"] == pytest.approx(29.0) and stored["best_epoch"] == 2
    loaded = runner.loaded_result(stored)
    assert set(loaded) == set(result)
    for key in ("ua", "wa", "macro_f1", "best_validation"):
        assert loaded[key] == pytest.approx(result[key])
    assert loaded["per_class_recall"]["a"] == pytest.approx(0.3)
    # A monitored loss is not an accuracy: kept as it is.
    assert runner.stored_result(result, "val_loss")["best_validation"] == 0.7
    assert runner.loaded_result(runner.stored_result(result, "val_loss"))[
        "best_validation"
    ] == 0.7
    # A result.json from before (no units) holds fractions.
    assert runner.loaded_result(result) == result
    with pytest.raises(ValueError, match="fraction"):
        runner.loaded_result({**result, "units": "fraction"})


def test_finished_fold_is_not_trained_again(tmp_path):
    first = _run(tmp_path / "fold")

    def must_not_build():
        raise AssertionError("a finished fold was trained again")

    again = _run(tmp_path / "fold", build=must_not_build)
    assert again == first
    assert again["ua"] <= 1.0 and "units" not in again


def test_a_result_json_of_an_older_run_is_read_as_fractions(tmp_path):
    first = _run(tmp_path / "fold")
    old = dict(first)  # fractions, no units
    (tmp_path / "fold" / "result.json").write_text(json.dumps(old))

    def must_not_build():
        raise AssertionError("a finished fold was trained again")

    assert _run(tmp_path / "fold", build=must_not_build) == first


def test_interrupted_fold_resumes_from_its_last_epoch(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "fold", epochs=6, extra_callbacks=[_Interrupt(3)])
    assert not (tmp_path / "fold" / "result.json").exists()
    with open(tmp_path / "fold" / "history.csv") as handle:
        assert len(handle.readlines()) == 1 + 3

    epochs_seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_seen.append(epoch)

    result = _run(tmp_path / "fold", epochs=6, extra_callbacks=[Record()])
    assert epochs_seen == [3, 4, 5]
    assert result["epochs_run"] == 6


def test_empty_split_is_a_clear_error(tmp_path):
    empty = Split(np.zeros((0, 6), np.float32), {"emotion": np.zeros(0, np.int32)})
    with pytest.raises(ValueError, match="validation=0"):
        fit_and_evaluate(
            _build, _data(10, 0), empty, _data(10, 1),
            fold_dir=tmp_path, class_names=["a", "b", "c"], epochs=1,
        )


def test_run_state_refuses_to_mix_configurations(tmp_path):
    RunState(tmp_path, {"epochs": 3}, resume=False)
    with pytest.raises(ValueError, match="--resume"):
        RunState(tmp_path, {"epochs": 3}, resume=False)
    RunState(tmp_path, {"epochs": 3}, resume=True)
    with pytest.raises(ValueError, match="epochs"):
        RunState(tmp_path, {"epochs": 4}, resume=True)


@pytest.mark.parametrize(
    "damage",
    [
        ("backup/training_metadata.json", b""),  # killed while Keras wrote the metadata
        ("backup/training_metadata.json", b'{"batch": 0}'),
        ("backup/latest.weights.h5", b"\x89HDF\r\n\x1a\n truncated"),
        ("best.weights.h5", b""),
    ],
    ids=["empty-metadata", "metadata-without-epoch", "truncated-backup", "empty-best"],
)
def test_unreadable_interrupted_fold_is_trained_again_not_a_crash(tmp_path, capsys, damage):
    fold_dir = tmp_path / "fold"
    with pytest.raises(KeyboardInterrupt):
        _run(fold_dir, epochs=6, extra_callbacks=[_Interrupt(3)])
    name, content = damage
    (fold_dir / name).write_bytes(content)

    epochs_seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            epochs_seen.append(epoch)

    result = _run(fold_dir, epochs=6, extra_callbacks=[Record()])
    printed = capsys.readouterr().out
    assert "cannot be read" in printed and name.split("/")[-1] in printed
    assert epochs_seen == [0, 1, 2, 3, 4, 5]
    assert result["epochs_run"] == 6 and result["ua"] > 0.8
    with open(fold_dir / "history.csv") as handle:
        assert len(handle.readlines()) == 1 + 6


def test_backup_files_are_replaced_not_rewritten_in_place(tmp_path, monkeypatch):
    # A write that dies half-way leaves the previous backup intact and readable.
    fold_dir = tmp_path / "fold"
    with pytest.raises(KeyboardInterrupt):
        _run(fold_dir, epochs=6, extra_callbacks=[_Interrupt(2)])
    metadata = fold_dir / "backup" / "training_metadata.json"
    assert json.loads(metadata.read_text())["epoch"] == 2

    from ser_keras.utils import atomic

    real_replace = atomic.os.replace

    def dying_replace(source, destination):
        if str(destination).endswith("training_metadata.json"):
            raise KeyboardInterrupt("killed while moving the metadata into place")
        real_replace(source, destination)

    monkeypatch.setattr(atomic.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        _run(fold_dir, epochs=6)
    monkeypatch.undo()
    assert json.loads(metadata.read_text())["epoch"] == 2
    # Epoch 3's files were written but never committed: the backup is still
    # epoch 2's, whole, and the resumed run repeats epoch 3 exactly.
    assert sorted(path.name for path in (fold_dir / "backup").iterdir()) == [
        "epoch_00002.state.npz",
        "epoch_00002.weights.h5",
        "epoch_00003.state.npz",
        "epoch_00003.weights.h5",
        "training_metadata.json",
    ]
    result = _run(fold_dir, epochs=6)
    assert result["epochs_run"] == 6
    assert result == _run(tmp_path / "uninterrupted", epochs=6)
    history = (fold_dir / "history.csv").read_bytes()
    assert history == (tmp_path / "uninterrupted" / "history.csv").read_bytes()
