"""benchmarks.bench_vs_reference on tiny synthetic corpora: the same folds, no leakage, outputs."""

import json

import numpy as np
import pytest

from benchmarks import bench_vs_reference as bench
from ser_keras.experiments import fu_savee_crosslang
from ser_keras.features import opensmile_functionals
from tests.benchmarks.recording import run_recorded

FOLDS = 2
SEEDS = 1
SETTINGS = ("stl", "xl")


def _argv(root, *extra):
    return [
        "--experiment", "fu_savee_crosslang",
        "--preset", "quick",
        "--seeds", str(SEEDS),
        "--settings", ",".join(SETTINGS),
        "--folds", str(FOLDS),
        "--epochs", "1",
        "--set", "num_frames=64",
        "--set", "synthetic_per_emotion=2",
        "--set", "synthetic_emodb_per_emotion=1",
        "--cache-dir", str(root / "cache"),
        "--out", str(root / "out"),
        *extra,
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny benchmark run, recording the rows of every deep fold and every SVM fit."""
    root = tmp_path_factory.mktemp("bench_vs_reference")
    deep, reference = run_recorded(_argv(root))
    return root / "out", deep, reference


def test_the_reference_tests_the_deep_models_rows_and_never_trains_on_a_test_speaker(finished):
    _, deep, reference = finished
    assert len(deep) == SEEDS * len(SETTINGS) * FOLDS
    for fold in deep:
        fits = [
            fit for fit in reference
            if fit["seed"] == fold["seed"] and np.array_equal(fit["test"], fold["test"])
            and np.array_equal(fit["train"], np.union1d(fold["train"], fold["validation"]))
        ]
        # One SVM per feature set on exactly this fold's rows (shared by settings with the
        # same rows).
        assert sorted(fit["feature_set"] for fit in fits) == sorted(bench.FEATURE_SETS), (
            fold["setting"], fold["fold"]
        )
        speakers = np.asarray([u.speaker_id for u in fold["utterances"]])
        test_speakers = set(speakers[fold["test"]])
        assert test_speakers == {f"savee:{fold['fold'].split('_')[-1]}"}
        for fit in fits:
            assert not test_speakers & set(speakers[fit["train"]])
    # Every SVM fit belongs to a deep fold (none on other rows).
    for fit in reference:
        fold = next(
            fold for fold in deep
            if fit["seed"] == fold["seed"] and np.array_equal(fit["test"], fold["test"])
        )
        speakers = np.asarray([u.speaker_id for u in fold["utterances"]])
        assert not set(speakers[fit["test"]]) & set(speakers[fit["train"]])


def test_cross_language_settings_give_the_svm_the_added_corpus_too(finished):
    _, deep, _ = finished
    by_setting = {(f["setting"], f["fold"]): f for f in deep}
    for fold_name in {f["fold"] for f in deep}:
        stl, xl = by_setting[("stl", fold_name)], by_setting[("xl", fold_name)]
        np.testing.assert_array_equal(stl["test"], xl["test"])
        added = {u.corpus for i, u in enumerate(xl["utterances"]) if i in set(xl["train"])}
        assert added == {"savee", "emodb"}


def test_the_outputs(finished):
    out, deep, _ = finished
    results = json.loads((out / "results.json").read_text())
    assert set(results["settings"]) == set(SETTINGS)
    assert len(results["runs"]) == len(deep)
    for run in results["runs"]:
        fold = next(
            f for f in deep
            if (f["seed"], f["setting"], f["fold"]) == (run["seed"], run["setting"], run["fold"])
        )
        assert run["test_rows"] == fold["test"].tolist()
        test = {entry["speaker"] for entry in run["test_speakers"]}
        assert not test & {entry["speaker"] for entry in run["reference_train_speakers"]}
        for system in ("deep", *bench.FEATURE_SETS):
            assert 0 <= run[system]["ua"] <= 100
    for entry in results["settings"].values():
        for feature_set in bench.FEATURE_SETS:
            assert entry["wilcoxon"][feature_set]["n"] == SEEDS * FOLDS
            assert feature_set in entry["systems"]
        assert len(entry["per_fold"]) == FOLDS
    assert "test speaker's statistics" in results["reference"]["egemaps"]["normalisation"]
    markdown = (out / "results.md").read_text()
    assert "| setting | deep UA |" in markdown and "Wilcoxon p vs eGeMAPS" in markdown
    assert (out / "per_fold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The deep runs export nothing.
    assert not list(out.rglob("saved_model.pb"))


def test_an_unknown_preset_is_refused_naming_the_available_ones(tmp_path, capsys):
    presets = fu_savee_crosslang.PRESETS
    name = "cpu" if "cpu" not in presets else "no_such_preset"
    argv = _argv(tmp_path)
    argv[argv.index("--preset") + 1] = name
    assert bench.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert f"--preset {name}" in error and all(preset in error for preset in presets)
    assert not (tmp_path / "out").exists()


def test_without_opensmile_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(opensmile_functionals, "opensmile_available", lambda: False)
    assert bench.main(_argv(tmp_path)) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "openSMILE" in error and ".[reference]" in error
    assert not (tmp_path / "out").exists()
