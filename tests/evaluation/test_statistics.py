"""ser_keras.evaluation.statistics: Wilcoxon signed-rank tests of paired fold scores."""

import pytest

from ser_keras.evaluation.statistics import is_significant, paired_tests, wilcoxon_signed_rank


def test_wilcoxon_of_paired_fold_scores():
    gains = wilcoxon_signed_rank([0.5, 0.6, 0.7, 0.8, 0.9, 0.75, 0.65], [0.4] * 7)
    assert gains["n"] == 7 and gains["p_value"] == pytest.approx(2 / 2**7)
    assert gains["mean_gain"] == pytest.approx(0.3)
    assert "note" not in gains and is_significant(gains)
    assert wilcoxon_signed_rank([0.5, 0.5], [0.5, 0.5])["note"] == "all differences are zero"
    few = wilcoxon_signed_rank([0.6, 0.7], [0.5, 0.5])
    assert "cannot be reached" in few["note"] and not is_significant(few)
    # Six pairs can reach p < 0.05 (2 / 2**6 = 0.031).
    assert "note" not in wilcoxon_signed_rank([0.6] * 6, [0.5] * 6)
    assert wilcoxon_signed_rank([], [])["note"] == "no paired folds"


def test_wilcoxon_refuses_unpaired_scores():
    with pytest.raises(ValueError, match="paired"):
        wilcoxon_signed_rank([0.5, 0.6], [0.5])


def test_paired_tests_compare_every_system_with_the_baseline_per_group():
    scores = {"stl": [0.4, 0.5, 0.6], "gender": [0.5, 0.6, 0.7], "all": [0.4, 0.5, 0.6]}
    tests = paired_tests(scores, "stl", {"all": [0, 1, 2], "x": [0, 1]})
    assert [(t["system"], t["group"], t["n"]) for t in tests] == [
        ("gender", "all", 3), ("gender", "x", 2), ("all", "all", 3), ("all", "x", 2),
    ]
    assert tests[0]["mean_gain"] == pytest.approx(0.1)
    assert tests[2]["note"] == "all differences are zero"
    with pytest.raises(ValueError, match="baseline"):
        paired_tests(scores, "lstm", {"all": [0]})
