"""benchmarks.bench_vs_reference for paper 002 (aae_mtl) on its tiny synthetic corpora.

The settings `stl` (labelled plus unlabelled additional speech) and `cnn`
(labelled only) run one epoch of one leave-one-speaker-out fold; every deep
fold and every SVM fit is recorded.
"""

import json

import numpy as np
import pytest

from benchmarks import bench_vs_reference as bench
from tests.benchmarks.recording import run_recorded

SETTINGS = ("stl", "cnn")


def _argv(root, *extra):
    return [
        "--experiment", "aae_mtl",
        "--preset", "tiny",
        "--seeds", "1",
        "--settings", ",".join(SETTINGS),
        "--folds", "1",
        "--epochs", "1",
        "--set", "pretrain_epochs=0",
        "--set", "synthetic_per_emotion=1",
        "--cache-dir", str(root / "cache"),
        "--out", str(root / "out"),
        *extra,
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny aae_mtl benchmark run: every deep fold (rows, test labels) and SVM fit."""
    root = tmp_path_factory.mktemp("bench_vs_reference_aae_mtl")
    deep, reference = run_recorded(_argv(root), test_labels=True)
    return root / "out", deep, reference


def test_the_svm_fits_the_labelled_training_rows_and_scores_the_deep_models_test_rows(
    finished,
):
    out, deep, reference = finished
    assert [(f["setting"], f["fold"]) for f in deep] == [(s, deep[0]["fold"]) for s in SETTINGS]
    stl, cnn = deep
    np.testing.assert_array_equal(stl["test"], cnn["test"])
    corpora = np.asarray([u.corpus for u in stl["utterances"]])
    speakers = np.asarray([u.speaker_id for u in stl["utterances"]])
    (labelled_corpus,) = set(corpora[stl["test"]])
    # stl trains on the additional (unlabelled) speech too, cnn does not.
    assert set(corpora[stl["train"]]) - {labelled_corpus}
    assert set(corpora[cnn["train"]]) == {labelled_corpus}
    for fold in deep:
        rows = np.union1d(fold["train"], fold["validation"])
        expected_train = rows[corpora[rows] == labelled_corpus]
        np.testing.assert_array_equal(
            expected_train, np.union1d(cnn["train"], cnn["validation"])
        )
        fits = [
            fit for fit in reference
            if np.array_equal(fit["test"], fold["test"])
            and np.array_equal(fit["train"], expected_train)
        ]
        # Both settings share one SVM per feature set: the same labelled rows.
        assert sorted(fit["feature_set"] for fit in fits) == sorted(bench.FEATURE_SETS)
    assert len(reference) == len(bench.FEATURE_SETS)
    test_speakers = set(speakers[stl["test"]])
    for fit in reference:
        assert fit["finite"]
        assert not test_speakers & set(speakers[fit["train"]])
        # The SVM learns and is scored with the deep model's emotion labels.
        np.testing.assert_array_equal(fit["labels"][fit["test"]], stl["test_labels"])
        assert (fit["labels"][fit["train"]] >= 0).all()
    experiment = json.loads((out / "deep" / "seed_0" / "results.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert [r["setting"] for r in results["runs"]] == list(SETTINGS)
    for run in results["runs"]:
        (deep_fold,) = experiment["settings"][run["setting"]]["folds"]
        assert run["fold"] == deep_fold["fold"] == stl["fold"]
        assert run["deep"] == {"ua": deep_fold["ua"], "wa": deep_fold["wa"]}
        assert run["test_rows"] == stl["test"].tolist()
        assert run["num_reference_train_rows"] == len(reference[0]["train"])
        assert {e["speaker"] for e in run["reference_train_speakers"]} == set(
            speakers[reference[0]["train"]]
        )
        for system in ("deep", *bench.FEATURE_SETS):
            assert 0 <= run[system]["ua"] <= 100


def test_corpora_after_the_first_are_the_additional_speech(tmp_path):
    folders = [tmp_path / name for name in ("emodb", "en1", "en2")]
    for folder in folders:
        folder.mkdir()
    argv = _argv(tmp_path)
    for kind, folder in zip(("emodb", "folder:en", "folder:en"), folders, strict=True):
        argv += ["--corpus", f"{kind}:{folder}"]
    config = bench.build_config(
        bench.EXPERIMENTS["aae_mtl"], bench.build_parser().parse_args(argv), 0, tmp_path
    )
    assert config.labelled == f"emodb:{folders[0]}"
    assert config.additional == (f"folder:en:{folders[1]}", f"folder:en:{folders[2]}")
