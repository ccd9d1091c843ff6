"""Significance tests of paired scores (e.g. the UA of two systems on the same folds).

Kim et al. (2017) compare each multi-task variant with the single-task
baseline by a Wilcoxon signed-rank test over the test speakers or corpora
(the folds) and mark p < 0.05 in Tables 2-3; `wilcoxon_signed_rank` is that
test on paired fold scores, with the cases where it cannot run (or cannot
reach significance) said in a `note` rather than raised.

Reference:
    J. Kim, G. Englebienne, K. P. Truong, V. Evers, "Towards speech emotion
    recognition 'in the wild' using aggregated corpora and deep multi-task
    learning", Interspeech 2017, Section 5.2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The significance level the papers use.
SIGNIFICANCE_LEVEL = 0.05


def wilcoxon_signed_rank(scores, baseline_scores) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired scores.

    Args:
        scores: The scores of the system tested, one per fold.
        baseline_scores: The baseline's scores on the same folds, in the same
            order.

    Returns:
        A dict with `n` (pairs), `mean_gain` (mean of `scores -
        baseline_scores`, None without pairs), `statistic` and `p_value`
        (scipy's, None when the test cannot run), and a `note` when there is
        no pair, every difference is zero, or there are too few pairs for a
        two-sided p-value below `SIGNIFICANCE_LEVEL` (fewer than 6: the
        smallest p possible is `2 / 2**n`).

    Raises:
        ValueError: The two sequences differ in length.
    """
    scores = np.asarray(scores, dtype=float).ravel()
    baseline_scores = np.asarray(baseline_scores, dtype=float).ravel()
    if scores.shape != baseline_scores.shape:
        raise ValueError(
            "`scores` and `baseline_scores` must be paired (the same length). "
            f"Received: {scores.size} and {baseline_scores.size} scores"
        )
    entry = {
        "n": int(scores.size),
        "mean_gain": float(np.mean(scores - baseline_scores)) if scores.size else None,
        "statistic": None,
        "p_value": None,
    }
    if scores.size == 0:
        entry["note"] = "no paired folds"
    elif np.all(scores == baseline_scores):
        entry["note"] = "all differences are zero"
    else:
        from scipy import stats

        result = stats.wilcoxon(scores, baseline_scores)
        entry["statistic"] = float(result.statistic)
        entry["p_value"] = float(result.pvalue)
        smallest = 2 / 2**scores.size
        if smallest >= SIGNIFICANCE_LEVEL:
            entry["note"] = (
                f"only {scores.size} pairs: the smallest two-sided p-value possible is "
                f"{smallest:.3g}, so p < {SIGNIFICANCE_LEVEL:g} cannot be reached"
            )
    return entry


def format_p_value(test: dict, missing: str = "n/a") -> str:
    """A `wilcoxon_signed_rank` result's p-value to 3 significant digits, `missing` without one."""
    return missing if test.get("p_value") is None else f"{test['p_value']:.3g}"


def is_significant(test: dict, level: float = SIGNIFICANCE_LEVEL) -> bool:
    """Whether a `wilcoxon_signed_rank` result has a p-value below `level`."""
    return test.get("p_value") is not None and test["p_value"] < level


def paired_tests(
    scores: dict[str, Sequence[float]], baseline: str, groups: dict[str, Sequence[int]]
) -> list[dict]:
    """`wilcoxon_signed_rank` of every system against `baseline`, per group of folds.

    Args:
        scores: System name -> its score on each fold (the same folds, in
            the same order, for every system).
        baseline: The system the others are compared with.
        groups: Group name -> the fold positions it holds (e.g. `"all"` and
            one group per corpus).

    Returns:
        One dict per (system other than the baseline, group), in the order
        given: the test's result plus `system` and `group`.

    Raises:
        ValueError: `baseline` is not among `scores`.
    """
    if baseline not in scores:
        raise ValueError(f"`baseline` must be one of {list(scores)}. Received: {baseline!r}")
    tests = []
    for system, values in scores.items():
        if system == baseline:
            continue
        for group, positions in groups.items():
            entry = wilcoxon_signed_rank(
                [values[i] for i in positions], [scores[baseline][i] for i in positions]
            )
            entry.update(system=system, group=group)
            tests.append(entry)
    return tests
