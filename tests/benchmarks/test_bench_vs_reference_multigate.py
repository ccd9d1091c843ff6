"""benchmarks.bench_vs_reference for paper 003 (multilingual_gating) on its tiny synthetic corpora.

The speaker split's first repeat, one epoch of the `multigate` (a head per
language) and `base` (one head over the union of the classes) variants on
the synthetic English and German corpora; every deep fold and every SVM fit
is recorded, and the experiment's data.
"""

import json

import numpy as np
import pytest

from benchmarks import bench_vs_reference as bench
from ser_keras.experiments import multilingual_gating
from ser_keras.features import opensmile_functionals
from tests.benchmarks.recording import run_recorded

VARIANTS = ("multigate", "base")


def _argv(root, *extra):
    return [
        "--experiment", "multilingual_gating",
        "--preset", "quick",
        "--seeds", "1",
        "--settings", ",".join(VARIANTS),
        "--folds", "1",
        "--epochs", "1",
        "--set", "split=speaker",
        "--set", "ablation=none",
        "--set", "experts=statistics",
        "--set", "synthetic_per_emotion=2",
        "--set", "synthetic_emodb_per_emotion=1",
        "--cache-dir", str(root / "cache"),
        "--out", str(root / "out"),
        *extra,
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny multilingual benchmark run: deep folds, SVM fits and the experiment's data."""
    root = tmp_path_factory.mktemp("bench_vs_reference_multigate")
    loaded = []
    real_load = multilingual_gating.MultilingualGating.load_data

    def recording_load(self, *args, **kwargs):
        loaded.append(real_load(self, *args, **kwargs))
        return loaded[-1]

    deep, reference = run_recorded(
        _argv(root),
        patches=[(multilingual_gating.MultilingualGating, "load_data", recording_load)],
    )
    # The benchmark loads the data once; the experiment's run is given that very object.
    assert len(loaded) == 1
    return root / "out", deep, reference, loaded[0]


def test_each_language_has_its_own_svm_on_the_deep_models_rows_of_that_language(finished):
    _, deep, reference, data = finished
    assert [(f["setting"], f["fold"]) for f in deep] == [(v, "r1") for v in VARIANTS]
    assert sorted(data.languages) == ["de", "en"]
    speakers = np.asarray([u.speaker_id for u in data.utterances])
    for fold in deep:
        # Every variant trains on every language's training rows.
        assert set(data.language_of[fold["train"]]) == set(data.languages)
        rows = np.union1d(fold["train"], fold["validation"])
        for language in data.languages:
            own = data.rows_of(language)
            fits = [
                fit for fit in reference
                if np.array_equal(fit["train"], rows[np.isin(rows, own)])
                and np.array_equal(fit["test"], fold["test"][np.isin(fold["test"], own)])
            ]
            # Both variants share one SVM per feature set and language.
            assert sorted(fit["feature_set"] for fit in fits) == sorted(bench.FEATURE_SETS), (
                fold["setting"], language
            )
    assert len(reference) == len(data.languages) * len(bench.FEATURE_SETS)
    union = list(data.union)
    for fit in reference:
        (language,) = set(data.language_of[np.concatenate([fit["train"], fit["test"]])])
        assert not set(speakers[fit["test"]]) & set(speakers[fit["train"]])
        # Labels in the union of the classes: each row's class in its language.
        names = data.class_names[language]
        for rows in (fit["train"], fit["test"]):
            assert [union[label] for label in fit["labels"][rows]] == [
                names[label] for label in data.language_labels[language][rows]
            ]


def test_the_deep_scores_are_the_experiments_per_language(finished):
    out, deep, reference, data = finished
    experiment = json.loads((out / "deep" / "seed_0" / "results.json").read_text())
    results = json.loads((out / "results.json").read_text())
    settings = [f"{v}/{language}" for v in VARIANTS for language in data.languages]
    assert list(results["settings"]) == settings
    assert results["class_names"] == list(data.union)
    for run in results["runs"]:
        variant, language = run["setting"].split("/")
        (deep_fold,) = experiment["folds"][variant]
        scores = deep_fold["languages"][language]
        assert run["deep"] == {"ua": scores["ua"], "wa": scores["wa"]}
        (fold,) = [f for f in deep if f["setting"] == variant]
        own = fold["test"][np.isin(fold["test"], data.rows_of(language))]
        assert run["test_rows"] == own.tolist() and len(own) == scores["num_test"]
        tested = {entry["speaker"] for entry in run["test_speakers"]}
        assert tested == {data.utterances[i].speaker_id for i in own}
        assert not tested & {entry["speaker"] for entry in run["reference_train_speakers"]}
    for entry in results["settings"].values():
        deep_scores = entry["systems"]["deep"]
        # One fold: the pooled confusion (the language's languages.json) gives its scores.
        assert deep_scores["pooled_ua"] == pytest.approx(deep_scores["ua"])
        assert deep_scores["pooled_wa"] == pytest.approx(deep_scores["wa"])


def test_a_split_that_is_not_by_speaker_is_refused_naming_the_option(
    tmp_path, capsys, monkeypatch
):
    def no_data(self, *args):
        raise AssertionError("data loaded before the split was checked")

    monkeypatch.setattr(multilingual_gating.MultilingualGating, "load_data", no_data)
    monkeypatch.setattr(opensmile_functionals, "opensmile_available", lambda: True)
    argv = _argv(tmp_path)
    argv[argv.index("split=speaker")] = "split=random"
    assert bench.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "--set split" in error and "Received: 'random'" in error
    assert not (tmp_path / "out").exists()


def test_every_corpus_is_one_of_corpus_and_folds_are_repeats(tmp_path):
    folders = [tmp_path / name for name in ("emodb", "ravdess")]
    for folder in folders:
        folder.mkdir()
    argv = _argv(tmp_path, "--corpus", f"emodb:{folders[0]}", "--corpus", f"ravdess:{folders[1]}")
    argv[argv.index("--folds") + 1] = "2"
    config = bench.build_config(
        bench.EXPERIMENTS["multilingual_gating"], bench.build_parser().parse_args(argv), 0,
        tmp_path,
    )
    assert config.corpus == (f"emodb:{folders[0]}", f"ravdess:{folders[1]}")
    assert config.repeats == 2
    assert config.variants == VARIANTS
