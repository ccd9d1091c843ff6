"""Speech emotion recognition scores computed with NumPy: WA, UA, macro-F1, confusion.

Every function takes integer class ids in `y_true` where `-1` marks a sample
without a label for the task (an unlabelled or unmapped utterance): those
samples are left out of every score. `y_pred` holds predicted class ids, or
class probabilities `[N, num_classes]` whose arg-max is the prediction.
Scores are fractions in `[0, 1]` (reports multiply by 100); a score over no
labelled sample is `nan`.

The Keras counterpart that runs inside `fit()` (so that `val_emotion_ua` can be
monitored) is `ser_keras.training.metrics.UnweightedAccuracy`; the two agree
(tests/training/test_metrics.py).

Reference:
    Fu et al., "An end-to-end multitask learning model to improve speech
    emotion recognition" (EUSIPCO 2020), Section 4.1: weighted accuracy (WA)
    and unweighted accuracy (UA); Tables 3-4 give per-class recall as a
    confusion matrix with rows = true class, columns = prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

MISSING_LABEL = -1


def _labelled(y_true, y_pred):
    """Validates inputs and returns `(y_true, y_pred)` restricted to labelled samples."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim == 2 and y_true.shape[1] == 1:
        y_true = y_true[:, 0]
    if y_true.ndim != 1:
        raise ValueError(
            f"`y_true` must be a 1-D array of class ids; received shape {y_true.shape}."
        )
    if y_true.size and not np.issubdtype(y_true.dtype, np.integer):
        if not np.all(np.equal(np.mod(y_true, 1), 0)):
            raise ValueError(
                f"`y_true` must hold integer class ids (-1 = no label); received "
                f"dtype {y_true.dtype} with non-integer values."
            )
    y_true = y_true.astype(np.int64)
    if y_pred.ndim == 2:
        y_pred = np.argmax(y_pred, axis=-1) if y_pred.shape[1] > 1 else y_pred[:, 0]
    if y_pred.ndim != 1:
        raise ValueError(
            "`y_pred` must be class ids [N] or probabilities [N, num_classes]; "
            f"received shape {y_pred.shape}."
        )
    if y_pred.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"`y_true` and `y_pred` differ in length: {y_true.shape[0]} vs {y_pred.shape[0]}."
        )
    y_pred = y_pred.astype(np.int64)
    bad = y_true < MISSING_LABEL
    if np.any(bad):
        raise ValueError(
            "`y_true` holds negative class ids other than -1 (the missing-label marker): "
            f"{sorted(set(y_true[bad].tolist()))[:10]}."
        )
    keep = y_true != MISSING_LABEL
    y_true, y_pred = y_true[keep], y_pred[keep]
    if np.any(y_pred < 0):
        raise ValueError(
            f"`y_pred` holds negative class ids: {sorted(set(y_pred[y_pred < 0].tolist()))[:10]}."
        )
    return y_true, y_pred


def weighted_accuracy(y_true, y_pred) -> float:
    """Weighted accuracy (WA): the fraction of labelled samples predicted correctly.

    Called "weighted" in SER papers because each class counts in proportion
    to its number of samples.

    Args:
        y_true: Integer class ids `[N]`; `-1` = no label (ignored).
        y_pred: Predicted class ids `[N]` or probabilities `[N, num_classes]`.

    Returns:
        WA in `[0, 1]`, or `nan` when no sample is labelled.
    """
    y_true, y_pred = _labelled(y_true, y_pred)
    if y_true.size == 0:
        return float("nan")
    return float(np.mean(y_true == y_pred))


def per_class_recall(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Recall of every class: correct predictions of the class / its labelled samples.

    Args:
        y_true: Integer class ids `[N]`; `-1` = no label (ignored).
        y_pred: Predicted class ids `[N]` or probabilities `[N, num_classes]`.
        num_classes: Length of the result; defaults to one more than the
            largest class id seen.

    Returns:
        float64 array `[num_classes]`; `nan` for classes absent from `y_true`.
    """
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    support = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.diag(matrix) / support
    recall[support == 0] = np.nan
    return recall


def unweighted_accuracy(y_true, y_pred) -> float:
    """Unweighted accuracy (UA, unweighted average recall): mean per-class recall.

    The mean runs over the classes present in `y_true` (classes without a
    labelled sample have no recall to average), so every present class counts
    equally whatever its size.

    Args:
        y_true: Integer class ids `[N]`; `-1` = no label (ignored).
        y_pred: Predicted class ids `[N]` or probabilities `[N, num_classes]`.

    Returns:
        UA in `[0, 1]`, or `nan` when no sample is labelled.
    """
    y_true, y_pred = _labelled(y_true, y_pred)
    if y_true.size == 0:
        return float("nan")
    recall = per_class_recall(y_true, y_pred)
    return float(np.nanmean(recall))


def macro_f1(y_true, y_pred) -> float:
    """Macro-averaged F1: the mean over classes of `2 * precision * recall / (precision + recall)`.

    The mean runs over the classes present in `y_true` or `y_pred` (as
    scikit-learn's `f1_score(average="macro")` does); a class with no correct
    prediction scores 0.

    Args:
        y_true: Integer class ids `[N]`; `-1` = no label (ignored).
        y_pred: Predicted class ids `[N]` or probabilities `[N, num_classes]`.

    Returns:
        Macro-F1 in `[0, 1]`, or `nan` when no sample is labelled.
    """
    y_true, y_pred = _labelled(y_true, y_pred)
    if y_true.size == 0:
        return float("nan")
    matrix = confusion_matrix(y_true, y_pred)
    true_positives = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    present = (support > 0) | (predicted > 0)
    denominator = support + predicted  # 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denominator > 0, 2.0 * true_positives / denominator, 0.0)
    return float(np.mean(f1[present]))


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts of (true class, predicted class) pairs over the labelled samples.

    Args:
        y_true: Integer class ids `[N]`; `-1` = no label (ignored).
        y_pred: Predicted class ids `[N]` or probabilities `[N, num_classes]`.
        num_classes: Size of the matrix; defaults to one more than the largest
            class id seen in either array.

    Returns:
        int64 array `[num_classes, num_classes]`: rows = true class,
        columns = predicted class.
    """
    y_true, y_pred = _labelled(y_true, y_pred)
    largest = int(max(y_true.max(initial=-1), y_pred.max(initial=-1)))
    if num_classes is None:
        num_classes = largest + 1
    else:
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"`num_classes` must be at least 1; received {num_classes}.")
        if largest >= num_classes:
            raise ValueError(
                f"Class id {largest} found but `num_classes` is {num_classes}."
            )
    flat = y_true * num_classes + y_pred
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def summarize(y_true, y_pred, class_names: Sequence[str]) -> dict:
    """All scores of one evaluation, ready for a JSON report.

    Args:
        y_true: Integer class ids `[N]`; `-1` = no label (ignored).
        y_pred: Predicted class ids `[N]` or probabilities `[N, num_classes]`.
        class_names: Name of each class id, in order.

    Returns:
        A dict with `wa`, `ua`, `macro_f1` (fractions, `nan` when nothing is
        labelled), `confusion` (list of lists of counts, rows = true class),
        `per_class_recall` (class name -> recall, `None` for a class without
        labelled samples), `support` (class name -> labelled samples),
        `num_samples` (labelled samples scored) and `class_names`.
    """
    class_names = [str(name) for name in class_names]
    if not class_names:
        raise ValueError("`class_names` is empty; pass the name of every class id.")
    matrix = confusion_matrix(y_true, y_pred, num_classes=len(class_names))
    support = matrix.sum(axis=1)
    recall = per_class_recall(y_true, y_pred, num_classes=len(class_names))
    return {
        "wa": weighted_accuracy(y_true, y_pred),
        "ua": unweighted_accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
        "num_samples": int(support.sum()),
        "class_names": class_names,
        "confusion": matrix.tolist(),
        "per_class_recall": {
            name: (None if support[i] == 0 else float(recall[i]))
            for i, name in enumerate(class_names)
        },
        "support": {name: int(support[i]) for i, name in enumerate(class_names)},
    }


def mean_and_spread(values: Iterable[float], ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation of scores over folds and/or seeds.

    Non-finite values (a fold without labelled test samples scores `nan`) are
    left out.

    Args:
        values: Scores, e.g. the UA of every fold.
        ddof: Delta degrees of freedom of the standard deviation; 1 (default)
            gives the sample standard deviation.

    Returns:
        `(mean, std)`; std is 0.0 for a single value; `(nan, nan)` when no
        finite value is given.
    """
    array = np.asarray([float(v) for v in values if v is not None], dtype=np.float64)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return float("nan"), float("nan")
    if array.size <= ddof:
        return float(array.mean()), 0.0
    return float(array.mean()), float(array.std(ddof=ddof))


SCORE_NAMES = ("wa", "ua", "macro_f1")


def summarize_folds(
    fold_predictions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
) -> dict:
    """Scores per fold, their mean and spread, and the scores of all folds pooled.

    "Pooled" concatenates the test predictions of every fold and scores them
    once (each test utterance counts once); "mean"/"std" average the per-fold
    scores (each fold counts once). Papers report either; both are kept.

    Args:
        fold_predictions: Fold name -> `(y_true, y_pred)` of its test set.
        class_names: Name of each class id, in order.

    Returns:
        `{"folds": {name: summarize(...)}, "mean": {score: value},
        "std": {score: value}, "pooled": summarize(all folds)}` with scores
        `wa`, `ua` and `macro_f1`.
    """
    if not fold_predictions:
        raise ValueError("`fold_predictions` is empty; pass at least one fold.")
    folds = {}
    all_true, all_pred = [], []
    for name, (y_true, y_pred) in fold_predictions.items():
        y_true_l, y_pred_l = _labelled(y_true, y_pred)
        folds[str(name)] = summarize(y_true_l, y_pred_l, class_names)
        all_true.append(y_true_l)
        all_pred.append(y_pred_l)
    pooled = summarize(np.concatenate(all_true), np.concatenate(all_pred), class_names)
    mean, std = {}, {}
    for score in SCORE_NAMES:
        mean[score], std[score] = mean_and_spread(f[score] for f in folds.values())
    return {"folds": folds, "mean": mean, "std": std, "pooled": pooled}

