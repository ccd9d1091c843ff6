import math

import numpy as np
import pytest
from sklearn import metrics as sk

from ser_keras.evaluation import metrics

# Table 3 of Fu et al. (EUSIPCO 2020) as counts: the paper prints row-normalised
# percentages; these counts reproduce every printed value (e.g. 7/12 = 58.33).
FU2021_CLASSES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
FU2021_TABLE3_COUNTS = np.array([
    [7, 0, 3, 2, 0, 0, 0],
    [0, 8, 0, 0, 1, 0, 0],
    [2, 0, 5, 1, 1, 1, 2],
    [4, 0, 0, 7, 0, 0, 1],
    [0, 0, 0, 0, 23, 2, 0],
    [0, 0, 0, 0, 2, 8, 0],
    [3, 1, 0, 2, 0, 0, 5],
])


def labels_from_confusion(matrix):
    y_true, y_pred = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            y_true += [i] * int(count)
            y_pred += [j] * int(count)
    return np.array(y_true), np.array(y_pred)


def random_labels(seed, n=300, num_classes=5, missing=0.2):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, num_classes, n)
    # Correct 60% of the time, so scores are far from both 0 and chance.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, num_classes, n))
    y_true = np.where(rng.random(n) < missing, -1, y_true)
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_scikit_learn_ignoring_missing_labels(seed):
    y_true, y_pred = random_labels(seed)
    keep = y_true != -1
    assert metrics.weighted_accuracy(y_true, y_pred) == pytest.approx(
        sk.accuracy_score(y_true[keep], y_pred[keep])
    )
    assert metrics.unweighted_accuracy(y_true, y_pred) == pytest.approx(
        sk.balanced_accuracy_score(y_true[keep], y_pred[keep])
    )
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx(
        sk.f1_score(y_true[keep], y_pred[keep], average="macro")
    )
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, y_pred, num_classes=5),
        sk.confusion_matrix(y_true[keep], y_pred[keep], labels=range(5)),
    )


def test_unweighted_accuracy_averages_classes_present_in_y_true():
    # Class 2 is predicted but never true: UA averages classes 0 and 1 only.
    y_true = [0, 0, 0, 0, 1, -1]
    y_pred = [0, 0, 0, 2, 1, 1]
    assert metrics.weighted_accuracy(y_true, y_pred) == pytest.approx(4 / 5)
    assert metrics.unweighted_accuracy(y_true, y_pred) == pytest.approx((3 / 4 + 1) / 2)
    # F1 counts class 2 (present in y_pred) with F1 = 0, as scikit-learn does.
    assert metrics.macro_f1(y_true, y_pred) == pytest.approx(
        sk.f1_score([0, 0, 0, 0, 1], [0, 0, 0, 2, 1], average="macro")
    )


def test_probabilities_are_reduced_by_argmax():
    y_true = np.array([0, 1, 2, -1])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.5, 0.2, 0.3], [1, 0, 0]])
    assert metrics.weighted_accuracy(y_true, probabilities) == pytest.approx(2 / 3)
    assert metrics.unweighted_accuracy(y_true, probabilities) == pytest.approx(2 / 3)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y_true, probabilities, 3), [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    )


def test_paper_table3_recalls():
    y_true, y_pred = labels_from_confusion(FU2021_TABLE3_COUNTS)
    summary = metrics.summarize(y_true, y_pred, FU2021_CLASSES)
    printed = [58.33, 88.89, 41.67, 58.33, 92.00, 80.00, 45.45]  # diagonal of Table 3
    recalls = [summary["per_class_recall"][name] for name in FU2021_CLASSES]
    np.testing.assert_allclose(np.round(100 * np.array(recalls), 2), printed)
    assert summary["ua"] == pytest.approx(np.mean(recalls))
    assert summary["wa"] == pytest.approx(63 / 91)
    assert summary["confusion"] == FU2021_TABLE3_COUNTS.tolist()
    assert summary["support"]["neutral"] == 25


def test_summarize_structure_and_absent_classes():
    summary = metrics.summarize([0, 0, 1, -1], [0, 1, 1, 2], ["a", "b", "c"])
    assert set(summary) == {
        "wa", "ua", "macro_f1", "num_samples", "class_names", "confusion",
        "per_class_recall", "support",
    }
    assert summary["num_samples"] == 3
    assert summary["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": None}
    assert summary["support"] == {"a": 2, "b": 1, "c": 0}
    assert summary["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    for key in ("wa", "ua", "macro_f1"):
        assert 0.0 <= summary[key] <= 1.0


def test_nothing_labelled_gives_nan():
    assert math.isnan(metrics.weighted_accuracy([-1, -1], [0, 1]))
    assert math.isnan(metrics.unweighted_accuracy([], []))
    summary = metrics.summarize([-1], [0], ["a", "b"])
    assert math.isnan(summary["ua"]) and summary["num_samples"] == 0


def test_bad_input_raises_with_the_value():
    with pytest.raises(ValueError, match="3 vs 2"):
        metrics.weighted_accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="-2"):
        metrics.unweighted_accuracy([0, -2], [0, 1])
    with pytest.raises(ValueError, match="Class id 4 .* 3"):
        metrics.confusion_matrix([0, 4], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="Class id 2"):
        metrics.summarize([0, 1], [0, 2], ["a", "b"])
    with pytest.raises(ValueError, match="non-integer"):
        metrics.weighted_accuracy([0.5, 1.0], [0, 1])


def test_mean_and_spread():
    mean, std = metrics.mean_and_spread([0.5, 0.7, float("nan")])
    assert mean == pytest.approx(0.6)
    assert std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert metrics.mean_and_spread([0.4]) == (0.4, 0.0)
    assert all(math.isnan(v) for v in metrics.mean_and_spread([]))
    assert metrics.mean_and_spread([0.5, 0.7], ddof=0)[1] == pytest.approx(0.1)


def test_summarize_folds_pools_and_averages():
    folds = {
        "speaker_a": (np.array([0, 0, 0, 1]), np.array([0, 0, 0, 1])),  # all correct
        "speaker_b": (np.array([0, 1, -1]), np.array([1, 1, 0])),  # half correct
    }
    result = metrics.summarize_folds(folds, ["neutral", "anger"])
    assert result["folds"]["speaker_a"]["wa"] == 1.0
    assert result["folds"]["speaker_b"]["wa"] == 0.5
    assert result["mean"]["wa"] == pytest.approx(0.75)
    assert result["std"]["wa"] == pytest.approx(np.std([1.0, 0.5], ddof=1))
    # Pooled: 5 correct of 6 labelled test utterances.
    assert result["pooled"]["wa"] == pytest.approx(5 / 6)
    assert result["pooled"]["num_samples"] == 6
    assert result["pooled"]["ua"] == pytest.approx((3 / 4 + 2 / 2) / 2)
    with pytest.raises(ValueError, match="empty"):
        metrics.summarize_folds({}, ["a"])
