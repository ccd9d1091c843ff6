"""Running KerasTuner searches: tuners, trial checks, speaker folds, trial tables.

KerasTuner catches every exception a trial raises, marks the trial failed (or
invalid) and goes on; when every trial fails, `get_best_hyperparameters()`
still returns a "best" set (a trial's values, never trained). Measured with
keras-tuner 1.4.8 on TF 2.21 without `tensorboard` installed: every trial
failed with ModuleNotFoundError and the search "succeeded". So after a search
call `raise_for_failed_trials(tuner)`: it raises `TrialFailureError` naming
every trial whose status is not COMPLETED, with the end of its traceback.

A search resumes where it stopped: a tuner created with `overwrite=False` on
an existing project folder reloads the finished trials, re-runs the one that
was interrupted and continues up to `max_trials`.
"""

from __future__ import annotations

import pathlib

import keras_tuner
import numpy as np

from ser_keras.tuning.experiment import TUNERS
from ser_keras.tuning.hypermodels import OBJECTIVE_NAME, emotion_ua_objective
from ser_keras.utils.validation import positive_int


class TrialFailureError(RuntimeError):
    """Raised when a search has trials that did not complete."""


def make_tuner(
    kind,
    hypermodel,
    *,
    max_trials,
    directory,
    project_name,
    max_epochs=None,
    hyperband_factor=3,
    seed=0,
    overwrite=False,
    distribution_strategy=None,
    executions_per_trial=1,
    objective=None,
):
    """Creates a KerasTuner tuner maximising `val_emotion_ua`.

    Args:
        kind: `"random"` (RandomSearch), `"bayesian"` (BayesianOptimization,
            Gaussian process) or `"hyperband"`.
        hypermodel: A `keras_tuner.HyperModel` (e.g. of
            `ser_keras.tuning.hypermodels`).
        max_trials: Maximum number of trials. Hyperband's schedule follows
            `max_epochs` and `hyperband_factor`; `max_trials` caps it too.
        directory: Folder of the tuner's projects.
        project_name: Project folder inside `directory` (trials, oracle
            state, checkpoints).
        max_epochs: Hyperband's most epochs per trial (required for it).
        hyperband_factor: Hyperband's reduction factor (>= 2).
        seed: Seed of the oracle's sampling.
        overwrite: False (default) reloads an existing project and continues
            its search; True deletes it first.
        distribution_strategy: Optional `tf.distribute.Strategy`: the tuner
            builds and trains every model under its scope.
        executions_per_trial: Models trained per trial (scores averaged).
        objective: The objective; default `emotion_ua_objective()`.

    Returns:
        A `keras_tuner.Tuner`.
    """
    if kind not in TUNERS:
        raise ValueError(f"Unknown tuner {kind!r}; expected one of {', '.join(TUNERS)}.")
    max_trials = positive_int("max_trials", max_trials)
    objective = objective or emotion_ua_objective()
    common = dict(
        objective=objective,
        seed=seed,
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        distribution_strategy=distribution_strategy,
        executions_per_trial=executions_per_trial,
    )
    if kind == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=int(max_trials), **common)
    if kind == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=int(max_trials), **common)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, (int, np.integer)) or (
        max_epochs < 1
    ):
        raise ValueError(
            f"Hyperband needs `max_epochs`, a positive integer; received {max_epochs!r}."
        )
    if isinstance(hyperband_factor, bool) or not isinstance(hyperband_factor, int) or (
        hyperband_factor < 2
    ):
        raise ValueError(
            f"`hyperband_factor` must be an integer >= 2; received {hyperband_factor!r}."
        )
    tuner = keras_tuner.Hyperband(
        hypermodel, max_epochs=int(max_epochs), factor=hyperband_factor, **common
    )
    # Hyperband's oracle takes no max_trials; the base Oracle stops creating
    # trials once it holds max_trials (the attribute is not saved with the
    # oracle's state, so it is set again on every (re)load).
    tuner.oracle.max_trials = int(max_trials)
    return tuner


def failed_trials(tuner):
    """The tuner's trials whose status is not COMPLETED, in trial-id order."""
    trials = tuner.oracle.trials
    return [
        trials[trial_id]
        for trial_id in sorted(trials)
        if trials[trial_id].status != keras_tuner.engine.trial.TrialStatus.COMPLETED
    ]


def raise_for_failed_trials(tuner, expected_trials=None):
    """Raises `TrialFailureError` unless every trial of the search completed.

    Args:
        tuner: A tuner after `search`.
        expected_trials: Optional number of trials the search should hold
            (e.g. `max_trials`); fewer completed trials is an error too.

    Raises:
        TrialFailureError: With the id, status and the last lines of the
            traceback of every trial that did not complete, or when the
            search holds no (or fewer than `expected_trials`) trials.
    """
    trials = tuner.oracle.trials
    if not trials:
        raise TrialFailureError(f"The search in {tuner.project_dir} ran no trial.")
    failed = failed_trials(tuner)
    if failed:
        details = []
        for trial in failed:
            message = (trial.message or "").strip().splitlines()
            tail = " | ".join(line.strip() for line in message[-3:]) or "no message"
            details.append(f"trial {trial.trial_id}: {trial.status}: {tail}")
        raise TrialFailureError(
            f"{len(failed)} of {len(trials)} trials did not complete in {tuner.project_dir}:\n"
            + "\n".join(details)
        )
    if expected_trials is not None and len(trials) < expected_trials:
        raise TrialFailureError(
            f"The search in {tuner.project_dir} completed {len(trials)} trials; "
            f"{expected_trials} were expected."
        )


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def trial_table(tuner):
    """One row per trial: id, status, score, best step, metrics and hyperparameters.

    Args:
        tuner: A tuner (during or after a search).

    Returns:
        List of dicts with `trial_id`, `status`, `score` (the objective, or
        None), `best_step`, `metrics` (name -> best value) and
        `hyperparameters` (name -> value, Hyperband's `tuner/...` entries
        included), ordered by trial id.
    """
    rows = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        metrics = {}
        for name in trial.metrics.metrics:
            value = trial.metrics.get_best_value(name)
            if value is not None:
                metrics[name] = float(value)
        rows.append(
            {
                "trial_id": trial.trial_id,
                "status": trial.status,
                "score": None if trial.score is None else float(trial.score),
                "best_step": _plain(trial.best_step),
                "metrics": metrics,
                "hyperparameters": {k: _plain(v) for k, v in trial.hyperparameters.values.items()},
            }
        )
    return rows


# Hyperband's bookkeeping entries of a trial's hyperparameters (left out of the table).
_TUNER_ENTRIES = ("tuner/trial_id", "tuner/bracket", "tuner/round")


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


def write_trials(out_dir, rows) -> str:
    """Writes the trial table as `trials.md` and `trials.json`; returns the Markdown table.

    Args:
        out_dir: The project folder.
        rows: `trial_table(tuner)`.

    Returns:
        The Markdown table: trial, status, validation UA (%), best epoch and
        one column per hyperparameter.
    """
    from ser_keras.evaluation import reports

    names = []
    for row in rows:
        for name in row["hyperparameters"]:
            if name not in names and name not in _TUNER_ENTRIES:
                names.append(name)
    headers = ["trial", "status", "val_emotion_ua (%)", "best epoch"] + names
    table_rows = []
    for row in rows:
        score = None if row["score"] is None else 100 * row["score"]
        table_rows.append(
            [row["trial_id"], row["status"], score, row["best_step"]]
            + [_format(row["hyperparameters"].get(name)) for name in names]
        )
    table = reports.markdown_table(headers, table_rows)
    out_dir = pathlib.Path(out_dir)
    reports.write_text_atomic(out_dir / "trials.md", "# Trials\n\n" + table + "\n")
    reports.write_json_atomic(out_dir / "trials.json", [trial_in_percent(row) for row in rows])
    return table


def _is_accuracy(name: str) -> bool:
    """UA or accuracy (or its spread, `_std`), not a loss."""
    name = name.removesuffix("_std")
    return name.endswith(("_ua", "_accuracy")) or name in ("ua", "accuracy")


def trial_in_percent(row: dict) -> dict:
    """A `trial_table` row with its score and accuracy metrics in percent (as every JSON file).

    Losses stay as they are; the row gains `"units": "percent"`.
    """
    row = dict(row)
    if row.get("score") is not None:
        row["score"] = 100 * row["score"]
    row["metrics"] = {
        name: 100 * value if _is_accuracy(name) and value is not None else value
        for name, value in (row.get("metrics") or {}).items()
    }
    row["units"] = "percent"
    return row


def best_trial(tuner):
    """The completed trial with the best objective value.

    Raises:
        TrialFailureError: When no trial completed with a score.
    """
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].score is None:
        raise TrialFailureError(f"No trial of the search in {tuner.project_dir} has a score.")
    return best[0]


def speaker_validation_folds(
    utterances, indices, num_folds, *, test_corpus=None, labels=None, seed=0
):
    """Validation folds carved from training speakers, for the speaker-fold objective.

    The labelled speakers among `utterances[indices]` (of `test_corpus` where
    given) are dealt into `num_folds` groups (`speaker_kfold`); each fold
    validates on one group and trains on the rest of `indices`. Nothing
    outside `indices` is used: pass the training side of an evaluation fold,
    never its test speakers.

    Args:
        utterances: All utterances (`Utterance` records).
        indices: Indices of the training utterances to split (the tuning
            pool).
        num_folds: Number of folds, from 2 to the pool's labelled speakers.
        test_corpus: Corpus whose speakers validate; other corpora's
            utterances stay in training.
        labels: Optional label per utterance of `utterances` (-1 = unlabelled),
            as for `ser_keras.data.splits`.
        seed: Seed of the speaker shuffle.

    Returns:
        `ser_keras.data.splits.Fold`s whose `train` and `validation` index
        `utterances` (subsets of `indices`), `test` empty, and
        `validation_speakers` the held-out speakers.
    """
    from ser_keras.data.splits import Fold, speaker_kfold

    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size == 0:
        raise ValueError("`indices` is empty: the tuning pool holds no utterance.")
    pool = [utterances[i] for i in indices]
    pool_labels = None if labels is None else np.asarray(labels)[indices]
    folds = []
    for fold in speaker_kfold(
        pool, num_folds, test_corpus=test_corpus, validation="none", seed=seed, labels=pool_labels
    ):
        folds.append(
            Fold(
                name=fold.name,
                train=np.sort(indices[fold.train]),
                validation=np.sort(indices[fold.test]),
                test=np.zeros(0, dtype=np.int64),
                test_speakers=(),
                validation_speakers=fold.test_speakers,
            )
        )
    return folds


__all__ = [
    "OBJECTIVE_NAME",
    "TUNERS",
    "TrialFailureError",
    "best_trial",
    "failed_trials",
    "make_tuner",
    "raise_for_failed_trials",
    "speaker_validation_folds",
    "trial_table",
    "write_trials",
]
