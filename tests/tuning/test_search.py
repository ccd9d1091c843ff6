import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.corpora.records import Utterance
from ser_keras.tuning import hypermodels, search
from tests.tuning.util import random_data, tiny_hypermodel

COMPLETED = "COMPLETED"


def _search(tuner, family, classes, callbacks=(), epochs=1, **kwargs):
    x, y = random_data(family, classes, count=24)
    x_val, y_val = random_data(family, classes, count=8, seed=1)
    tuner.search(
        x, y, validation_data=(x_val, tuner.hypermodel.mask_validation_labels(y_val)),
        epochs=epochs,
        batch_size=8, verbose=0, callbacks=list(callbacks), **kwargs,
    )


@pytest.mark.parametrize(
    "family, kind",
    [
        ("attention_cnn_blstm", "hyperband"),
        ("resnet_lstm_mtl", "bayesian"),
        ("kim_mtl", "random"),
        ("multigate", "random"),
    ],
)
def test_search_completes_every_trial(tmp_path, family, kind):
    hypermodel, classes = tiny_hypermodel(family)
    trials = 1
    tuner = search.make_tuner(
        kind, hypermodel, max_trials=trials, max_epochs=1, directory=tmp_path,
        project_name=family,
    )
    assert tuner.oracle.objective.name == "val_emotion_ua"
    assert tuner.oracle.objective.direction == "max"
    _search(tuner, family, classes)

    search.raise_for_failed_trials(tuner, expected_trials=trials)
    rows = search.trial_table(tuner)
    assert [row["status"] for row in rows] == [COMPLETED] * trials
    for row in rows:
        assert 0.0 <= row["score"] <= 1.0
        assert row["score"] == pytest.approx(row["metrics"]["val_emotion_ua"])
    best = search.best_trial(tuner)
    assert best.score == max(row["score"] for row in rows)
    assert "learning_rate" in best.hyperparameters.values
    with pytest.raises(search.TrialFailureError, match="5 were expected"):
        search.raise_for_failed_trials(tuner, expected_trials=5)


class _Recorder(keras.callbacks.Callback):
    """Records each fit's validation UA curve (class-level: survives the tuner's deep copies)."""

    fits = []
    strategies = []

    def on_train_begin(self, logs=None):
        _Recorder.fits.append([])
        _Recorder.strategies.append(self.model.distribute_strategy)

    def on_epoch_end(self, epoch, logs=None):
        _Recorder.fits[-1].append(logs["val_emotion_ua"])


@pytest.mark.parametrize("mirrored", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_speaker_fold_objective_is_the_mean_of_the_folds_best_ua(tmp_path, mirrored):
    # Mirrored: a MirroredStrategy of the 2 logical CPUs (tests/conftest.py);
    # every fold's model must be built under the tuner's strategy.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]) if mirrored else None
    hypermodel, classes = tiny_hypermodel("aae_mtl")
    tuner = search.make_tuner(
        "random", hypermodel, max_trials=1, directory=tmp_path, project_name="folds",
        distribution_strategy=strategy,
    )
    x, y = random_data("aae_mtl", classes, count=16)
    folds = [(np.arange(0, 8), np.arange(8, 16)), (np.arange(8, 16), np.arange(0, 8))]
    _Recorder.fits, _Recorder.strategies = [], []
    tuner.search(
        x, y, validation_folds=folds, epochs=2, batch_size=8, verbose=0, callbacks=[_Recorder()]
    )
    search.raise_for_failed_trials(tuner, expected_trials=1)
    assert len(_Recorder.fits) == 2 and all(len(curve) == 2 for curve in _Recorder.fits)
    expected = strategy or tf.distribute.get_strategy()
    assert all(used is expected for used in _Recorder.strategies)
    best = [max(curve) for curve in _Recorder.fits]
    (row,) = search.trial_table(tuner)
    assert row["score"] == pytest.approx(np.mean(best))
    assert row["metrics"]["val_emotion_ua_std"] == pytest.approx(np.std(best, ddof=1))


class _BrokenHyperModel(hypermodels.AttentionCNNBLSTMHyperModel):
    def fit(self, hp, model, *args, **kwargs):
        raise RuntimeError("boom: the trial's training failed")


def test_failed_trials_are_reported_although_keras_tuner_returns_a_best(tmp_path):
    hypermodel = _BrokenHyperModel(preset=tiny_hypermodel("attention_cnn_blstm")[0].preset)
    tuner = search.make_tuner(
        "random", hypermodel, max_trials=2, directory=tmp_path, project_name="broken"
    )
    tuner.search(np.zeros((4, 16, 8)), {"emotion": np.zeros(4, "int32")}, epochs=1, verbose=0)
    # The hazard: KerasTuner swallows the errors and still offers a "best" set.
    assert len(tuner.get_best_hyperparameters(1)) == 1
    assert [trial.status for trial in search.failed_trials(tuner)] == ["FAILED", "FAILED"]
    with pytest.raises(search.TrialFailureError, match="2 of 2 trials did not complete") as info:
        search.raise_for_failed_trials(tuner)
    assert "boom" in str(info.value)


class _Interrupt(keras.callbacks.Callback):
    """Interrupts the search (as Ctrl-C would) when the second trial starts training."""

    starts = 0

    def on_train_begin(self, logs=None):
        _Interrupt.starts += 1
        if _Interrupt.starts == 2:
            raise KeyboardInterrupt


def test_interrupted_search_resumes_where_it_stopped(tmp_path):
    # Also the random search.
    hypermodel, classes = tiny_hypermodel("resnet_lstm_mtl")

    def tuner():
        return search.make_tuner(
            "random", hypermodel, max_trials=2, directory=tmp_path, project_name="resume"
        )

    first = tuner()
    _Interrupt.starts = 0
    with pytest.raises(KeyboardInterrupt):
        _search(first, "resnet_lstm_mtl", classes, callbacks=[_Interrupt()])
    statuses = {row["trial_id"]: row["status"] for row in search.trial_table(first)}
    assert statuses == {"0": COMPLETED, "1": "RUNNING"}
    finished = search.trial_table(first)[0]
    interrupted_values = first.oracle.trials["1"].hyperparameters.values

    resumed = tuner()  # overwrite=False: reloads the project
    _Recorder.fits = []
    _search(resumed, "resnet_lstm_mtl", classes, callbacks=[_Recorder()])
    search.raise_for_failed_trials(resumed, expected_trials=2)
    rows = search.trial_table(resumed)
    assert len(rows) == 2 and len(_Recorder.fits) == 1  # only the interrupted trial ran again
    assert rows[0]["score"] == finished["score"]
    assert resumed.oracle.trials["1"].hyperparameters.values == interrupted_values


@pytest.mark.slow
def test_hyperband_continues_trials_from_their_checkpoints(tmp_path):
    hypermodel, classes = tiny_hypermodel("aae_mtl")
    tuner = search.make_tuner(
        "hyperband", hypermodel, max_trials=3, max_epochs=2, hyperband_factor=2,
        directory=tmp_path, project_name="hyperband",
    )
    _search(tuner, "aae_mtl", classes, epochs=2)
    search.raise_for_failed_trials(tuner, expected_trials=3)
    rows = search.trial_table(tuner)
    continued = [row for row in rows if "tuner/trial_id" in row["hyperparameters"]]
    assert len(rows) == 3 and len(continued) == 1
    assert continued[0]["hyperparameters"]["tuner/initial_epoch"] == 1


def _utterance(corpus, speaker, label, number):
    return Utterance(
        path=f"/{corpus}/{speaker}/{number}.wav", corpus=corpus, language="en", speaker=speaker,
        label=label,
    )


def test_speaker_validation_folds_stay_inside_the_training_pool():
    utterances = []
    for speaker in ("a", "b", "c", "d", "e"):
        utterances += [_utterance("savee", speaker, "anger", n) for n in range(3)]
    utterances += [_utterance("extra", "x", None, n) for n in range(3)]  # unlabelled corpus
    test = np.arange(0, 3)  # speaker "a" is the test speaker
    pool = np.arange(3, len(utterances))
    folds = search.speaker_validation_folds(utterances, pool, 2, test_corpus="savee", seed=0)
    assert len(folds) == 2
    validated = []
    for fold in folds:
        assert np.intersect1d(fold.train, test).size == 0
        assert np.intersect1d(fold.validation, test).size == 0
        assert np.intersect1d(fold.train, fold.validation).size == 0
        assert set(fold.train) | set(fold.validation) == set(pool)
        train_speakers = {utterances[i].speaker for i in fold.train}
        validation_speakers = {utterances[i].speaker for i in fold.validation}
        assert not train_speakers & validation_speakers
        assert "x" in train_speakers  # other corpora stay in training
        validated += sorted(validation_speakers)
    assert sorted(validated) == ["b", "c", "d", "e"]
    with pytest.raises(ValueError, match="k"):
        search.speaker_validation_folds(utterances, pool, 5, test_corpus="savee")


@pytest.mark.parametrize(
    "kind, arguments, expected",
    [
        ("grid", {"max_trials": 2}, "grid"),
        ("random", {"max_trials": 0}, "max_trials"),
        ("hyperband", {"max_trials": 2}, "max_epochs"),
        ("hyperband", {"max_trials": 2, "max_epochs": 3, "hyperband_factor": 1}, "factor"),
    ],
)
def test_make_tuner_refuses_bad_arguments(tmp_path, kind, arguments, expected):
    hypermodel, _ = tiny_hypermodel("aae_mtl")
    with pytest.raises(ValueError, match=expected):
        search.make_tuner(kind, hypermodel, directory=tmp_path, project_name="x", **arguments)


def test_trials_json_holds_accuracies_in_percent_and_losses_as_they_are():
    from ser_keras.tuning.search import trial_in_percent

    row = {
        "trial_id": "0", "status": "COMPLETED", "score": 0.25, "best_step": 3,
        "metrics": {"val_emotion_ua": 0.25, "val_emotion_ua_std": 0.05,
                    "val_emotion_accuracy": 0.5, "val_loss": 1.5},
        "hyperparameters": {},
    }
    converted = trial_in_percent(row)
    assert converted["units"] == "percent" and converted["score"] == 25.0
    assert converted["metrics"] == {
        "val_emotion_ua": 25.0, "val_emotion_ua_std": 5.0,
        "val_emotion_accuracy": 50.0, "val_loss": 1.5,
    }
    assert row["score"] == 0.25  # the in-memory row is left as it was
