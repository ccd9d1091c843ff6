"""benchmarks.compare_settings: two settings paired on the same (seed, fold)."""

import json

import pytest

from benchmarks import compare_settings


def _results(setting, scores, speakers=None):
    """A bench_vs_reference-shaped results dict: scores[(seed, fold)] = UA."""
    return {
        "runs": [
            {
                "seed": seed,
                "setting": setting,
                "fold": fold,
                "deep": {"ua": ua, "wa": ua},
                "test_speakers": [{"speaker": (speakers or {}).get(fold, f"c:{fold}")}],
            }
            for (seed, fold), ua in scores.items()
        ]
    }


def _write(tmp_path, name, results):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_pairs_on_seed_and_fold_and_averages_seeds_per_fold(tmp_path, capsys):
    mtl = {(0, "a"): 50.0, (1, "a"): 40.0, (0, "b"): 30.0, (1, "b"): 20.0, (2, "b"): 99.0}
    stl = {(0, "a"): 45.0, (1, "a"): 41.0, (0, "b"): 25.0, (1, "b"): 10.0}
    a = _write(tmp_path, "mtl", _results("mtl", mtl))
    b = _write(tmp_path, "stl", _results("stl", stl))
    out = tmp_path / "comparison.json"
    figure = tmp_path / "comparison.png"
    assert compare_settings.main(
        [f"{a}:mtl", f"{b}:stl", "--json", str(out), "--plot", str(figure)]
    ) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads(out.read_text())
    # Seed 2 of fold b has no stl partner and is left out.
    assert result["pairs"] == 4 and result["seeds"] == [0, 1]
    assert result["mean_difference"] == pytest.approx((5 - 1 + 5 + 10) / 4)
    assert result["wins"] == 3
    assert result["per_fold_difference"] == {"a": pytest.approx(2.0), "b": pytest.approx(7.5)}
    assert [(e["seed"], e["fold"], e["difference"]) for e in result["pair_differences"]] == [
        (0, "a", 5.0), (0, "b", 5.0), (1, "a", -1.0), (1, "b", 10.0)
    ]
    assert result["wilcoxon_folds"]["n"] == 2 and result["wilcoxon_pairs"]["n"] == 4
    assert "| mtl − stl |" in capsys.readouterr().out


def test_runs_on_other_folds_or_a_missing_setting_are_refused(tmp_path, capsys):
    scores = {(0, "a"): 50.0}
    a = _write(tmp_path, "a", _results("mtl", scores, speakers={"a": "c:1"}))
    b = _write(tmp_path, "b", _results("stl", scores, speakers={"a": "c:2"}))
    assert compare_settings.main([f"{a}:mtl", f"{b}:stl"]) == 2
    assert "not on the same folds" in capsys.readouterr().err
    assert compare_settings.main([f"{a}:xl", f"{b}:stl"]) == 2
    assert "no runs of setting 'xl'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_settings.main([str(a), f"{b}:stl"])
    assert "RUN_DIR:SETTING" in capsys.readouterr().err
