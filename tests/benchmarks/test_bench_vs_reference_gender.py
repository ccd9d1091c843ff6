"""benchmarks.bench_vs_reference for paper 001 (gender_naturalness) on two tiny manifest corpora.

`alpha` has 3 acted speakers; `beta` 2 speakers with acted and natural
utterances (as IEMOCAP), so leave-one-corpus-out tests `beta_acted` with its
speakers' natural utterances left out of training. One epoch of the DNN's
STL and Gender-MTL variants on the first two LOCO folds; every deep fold and
every SVM fit is recorded.
"""

import json

import numpy as np
import pytest

from benchmarks import bench_vs_reference as bench
from ser_keras.experiments import gender_naturalness
from ser_keras.features import opensmile_functionals
from tests.benchmarks.recording import run_recorded
from tests.helpers import write_acted_and_natural_corpora

SETTINGS = ("dnn_stl", "dnn_gender")


def _argv(root, corpora, *extra):
    return [
        "--experiment", "gender_naturalness",
        "--preset", "quick",
        "--seeds", "1",
        "--epochs", "1",
        *[item for corpus in corpora for item in ("--corpus", corpus)],
        "--set", "protocol=loco",
        "--set", "loco_folds=2",
        "--set", "networks=dnn",
        "--set", "aux=gender",
        "--set", "units=4",
        "--set", "chunk_frames=20",
        "--set", "elm_hidden=8",
        "--cache-dir", str(root / "cache"),
        "--out", str(root / "out"),
        *extra,
    ]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_gender_corpora")
    return write_acted_and_natural_corpora(root, seconds=0.5)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, corpora):
    """A tiny LOCO benchmark run: every deep fold (rows, test labels) and SVM fit."""
    root = tmp_path_factory.mktemp("bench_vs_reference_gender")
    deep, reference = run_recorded(_argv(root, corpora), test_labels=True)
    return root / "out", deep, reference


def test_the_svm_fits_each_folds_training_rows_and_scores_the_deep_models_test_rows(finished):
    out, deep, reference = finished
    folds = list(dict.fromkeys(f["fold"] for f in deep))
    assert folds == ["alpha", "beta_acted"]
    assert sorted((f["setting"], f["fold"]) for f in deep) == sorted(
        (f"loco/{s}", fold) for s in SETTINGS for fold in folds
    )
    utterances = deep[0]["utterances"]
    speakers = np.asarray([u.speaker_id for u in utterances])
    naturalness = np.asarray([u.naturalness for u in utterances])
    for fold in deep:
        rows = np.union1d(fold["train"], fold["validation"])
        fits = [
            fit for fit in reference
            if np.array_equal(fit["test"], fold["test"]) and np.array_equal(fit["train"], rows)
        ]
        # Both variants share one SVM per feature set: the fold's rows.
        assert sorted(fit["feature_set"] for fit in fits) == sorted(bench.FEATURE_SETS), (
            fold["setting"], fold["fold"]
        )
        for fit in fits:
            # The SVM learns and is scored with the deep model's emotion labels.
            np.testing.assert_array_equal(fit["labels"][fit["test"]], fold["test_labels"])
            assert not set(speakers[fit["test"]]) & set(speakers[fit["train"]])
    # One fit per fold and feature set, each on a deep fold's rows.
    assert len(reference) == len(folds) * len(bench.FEATURE_SETS)
    acted = next(f for f in deep if f["fold"] == "beta_acted")
    tested = set(speakers[acted["test"]])
    assert tested == {"beta:b1", "beta:b2"}
    assert set(naturalness[acted["test"]]) == {"acted"}
    # The natural utterances of the tested speakers are in neither model's training rows.
    for fit in reference:
        if np.array_equal(fit["test"], acted["test"]):
            assert not tested & set(speakers[fit["train"]])


def test_the_deep_scores_are_the_experiments_for_the_same_folds(finished):
    out, deep, reference = finished
    experiment = json.loads((out / "deep" / "seed_0" / "results.json").read_text())
    assert list(experiment["protocols"]) == ["loco"]
    results = json.loads((out / "results.json").read_text())
    assert list(results["settings"]) == list(SETTINGS)
    assert results["class_names"] == experiment["class_names"]
    for run in results["runs"]:
        network, variant = run["setting"].split("_")
        (deep_fold,) = [
            f for f in experiment["protocols"]["loco"][network][variant]["folds"]
            if f["fold"] == run["fold"]
        ]
        assert run["deep"] == {"ua": deep_fold["ua"], "wa": deep_fold["wa"]}
        assert run["test_speakers"] == deep_fold["test_speakers"]
        (fold,) = [
            f for f in deep if (f["setting"], f["fold"]) == ("loco/" + run["setting"], run["fold"])
        ]
        assert run["test_rows"] == fold["test"].tolist()
        assert run["num_reference_train_rows"] == fold["train"].size + fold["validation"].size
        for system in ("deep", *bench.FEATURE_SETS):
            assert 0 <= run[system]["ua"] <= 100


def test_both_protocols_are_refused_naming_the_option(tmp_path, corpora, capsys, monkeypatch):
    def no_data(self, *args):
        raise AssertionError("data loaded before the protocol was checked")

    monkeypatch.setattr(gender_naturalness.GenderNaturalness, "load_data", no_data)
    monkeypatch.setattr(opensmile_functionals, "opensmile_available", lambda: True)
    argv = _argv(tmp_path, corpora)
    argv[argv.index("protocol=loco")] = "protocol=both"
    assert bench.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "--set protocol" in error and "Received: 'both'" in error


def test_settings_are_refused_and_every_corpus_is_one_of_corpora(tmp_path, corpora, capsys):
    argv = _argv(tmp_path, corpora, "--settings", "dnn_stl")
    assert bench.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert "--settings" in error and "--set networks" in error and "'dnn_stl'" in error
    config = bench.build_config(
        bench.EXPERIMENTS["gender_naturalness"],
        bench.build_parser().parse_args(_argv(tmp_path, corpora)), 0, tmp_path,
    )
    assert config.corpora == tuple(corpora)
    assert config.protocols == ["loco"]
