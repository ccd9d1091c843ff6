"""Paper 000's protocol wiring (`ser_keras.experiments.crosslang_valence`), on tiny synthetic data.

Most runs replace `fit_and_evaluate` by a recorder that trains nothing: the
tests read exactly which rows each model would train, validate and test on
(feature rows mapped back to the utterances) next to the split manifests in
`results.json`. `tests/apps/test_train_crosslang_valence.py` trains for real.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from ser_keras.experiments import (
    ConfigError,
    CrossLanguageValence,
    CrossLanguageValenceConfig,
    SpeakerLeakageError,
)
from ser_keras.experiments import crosslang_valence as valence
from ser_keras.training.recipe import RECIPES, TrainingRecipe


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


class Recorder:
    """A stand-in for `fit_and_evaluate`: records the splits, predicts class 0."""

    def __init__(self):
        self.calls = []

    def __call__(self, build_model, train, validation, test, *, fold_dir, predict_fn=None,
                 class_names, **options):
        self.calls.append({"fold_dir": fold_dir, "train": train, "validation": validation,
                           "test": test, "seed": options["seed"], "options": options})
        num_classes = len(class_names)

        class Model:
            def predict(self, inputs, **kwargs):
                probabilities = np.zeros((len(inputs), num_classes), np.float32)
                probabilities[:, 0] = 1.0
                return {"emotion": probabilities}

        predict_fn(Model(), test.inputs)
        return {"wa": 0.5, "ua": 0.5, "macro_f1": 0.5,
                "confusion": np.zeros((num_classes, num_classes), int).tolist(),
                "best_validation": 0.5 + 0.01 * len(self.calls), "best_epoch": 1,
                "epochs_run": 1}


def _run(tmp_path, cache_dir, monkeypatch, name, **overrides):
    recorder = Recorder()
    monkeypatch.setattr("ser_keras.training.runner.fit_and_evaluate", recorder)
    options = dict(synthetic_per_emotion=1, synthetic_unlabelled_per_speaker=2, epochs=1,
                   quiet=True, export_dir=None, cache_dir=str(cache_dir),
                   out=str(tmp_path / name))
    options.update(overrides)
    experiment = CrossLanguageValence(CrossLanguageValenceConfig(**options))
    result = experiment.run()
    return experiment, recorder, result.results


def _rows(pool, features):
    """Pool indices of the feature rows of a split (each utterance's features are unique)."""
    index = {row.tobytes(): i for i, row in enumerate(pool.features)}
    assert len(index) == len(pool.features)
    return np.array([index[row.tobytes()] for row in features], dtype=np.int64)


def _speakers(pool, rows):
    return {pool.utterances[i].speaker_id for i in rows}


def _manifest_speakers(entries):
    return {entry["speaker"] for entry in entries}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, cache_dir):
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _run(tmp_path_factory.mktemp("default"), cache_dir, monkeypatch, "run",
                   target_samples="0,4")


def test_by_default_no_target_utterance_is_trained_on_but_the_figure3_samples(default_run):
    experiment, recorder, results = default_run
    pool = experiment.pool
    target_rows = set(pool.target_rows().tolist())
    assert results["configuration"]["unlabelled_target_audio"] is False
    assert len(recorder.calls) == 3 * (1 + 2)  # 3 settings x (N = 0, N = 4 per target)
    for call in recorder.calls:
        trained = set(_rows(pool, call["train"].inputs).tolist())
        from_targets = trained & target_rows
        fold = call["fold_dir"].name
        if fold.endswith("_targets"):
            assert not from_targets, fold
        else:
            # N = 4 labelled samples of one target, from speakers that are not tested.
            assert len(from_targets) == 4, fold
            assert {pool.corpus[i] for i in from_targets} == {fold.split("_")[2]}
            tested = _rows(pool, call["test"].inputs)
            assert not _speakers(pool, from_targets) & _speakers(pool, tested), fold
            assert (call["train"].labels["emotion"][
                np.isin(_rows(pool, call["train"].inputs), list(from_targets))
            ] >= 0).all()
    # The manifests in results.json say the same.
    target_speakers = {pool.utterances[i].speaker_id for i in target_rows}
    for setting, per_target in results["settings"].items():
        for entry in per_target.values():
            for run in entry["runs"]:
                assert not _manifest_speakers(run["train_speakers"]) & target_speakers, setting
                assert "allowed_overlap" not in run
    for per_setting in results["target_samples"]["4"].values():
        for entry in per_setting.values():
            for run in entry["runs"]:
                trained = {s["speaker"]: s["utterances"] for s in run["train_speakers"]}
                from_target = {s: n for s, n in trained.items() if s in target_speakers}
                assert sum(from_target.values()) == 4
                assert not set(from_target) & _manifest_speakers(run["test_speakers"])


def test_no_test_speaker_is_validated_on_and_the_folds_are_the_same_across_settings(default_run):
    experiment, recorder, results = default_run
    pool = experiment.pool
    labelled = np.concatenate(list(pool.labelled_corpora.values()))
    validations = {tuple(_rows(pool, call["validation"].inputs)) for call in recorder.calls}
    assert len(validations) == 1  # one validation group for every setting and N
    validation = np.array(validations.pop())
    assert np.isin(validation, labelled).all()
    for call in recorder.calls:
        trained = _rows(pool, call["train"].inputs)
        tested = _rows(pool, call["test"].inputs)
        assert not _speakers(pool, validation) & _speakers(pool, trained)
        assert not _speakers(pool, validation) & _speakers(pool, tested)
        assert not _speakers(pool, trained) & _speakers(pool, tested)
    # The same folds in every setting: the same speakers trained, validated and tested.
    for count, per_count in [("0", results["settings"]), *results["target_samples"].items()]:
        for target in results["targets"]:
            manifests = {
                json.dumps({key: [s for s in run[key] if s["speaker"].startswith(("savee", target))]
                            for key in ("train_speakers", "validation_speakers", "test_speakers")},
                           sort_keys=True)
                for per_target in per_count.values()
                for run in per_target[target]["runs"]
            }
            assert len(manifests) == 1, (count, target)


def test_mtl_no_extra_on_one_language_trains_without_a_language_head(default_run):
    experiment, recorder, results = default_run
    by_fold = {(c["fold_dir"].parent.name, c["fold_dir"].name): c for c in recorder.calls}
    assert "language" not in by_fold["mtl_no_extra", "fold_seed0_targets"]["train"].labels
    assert set(by_fold["mtl_extra", "fold_seed0_targets"]["train"].labels) == {
        "emotion", "language", "domain"
    }
    assert "mtl_no_extra" in results["notes"]


def test_unlabelled_target_audio_adds_every_target_utterance_when_asked(tmp_path, cache_dir,
                                                                        monkeypatch):
    experiment, recorder, results = _run(
        tmp_path, cache_dir, monkeypatch, "with_audio", unlabelled_target_audio=True,
        settings="stl,mtl_no_extra,mtl_extra",
    )
    pool = experiment.pool
    target_rows = pool.target_rows()
    assert results["configuration"]["unlabelled_target_audio"] is True
    by_setting = {call["fold_dir"].parent.name: call for call in recorder.calls}
    # Languages: de/en/ur without additional data, de/en/es/fr/ur with it.
    for setting, num_languages in (("mtl_no_extra", 3), ("mtl_extra", 5)):
        call = by_setting[setting]
        trained = _rows(pool, call["train"].inputs)
        assert np.isin(target_rows, trained).all(), setting
        # ... without their labels, and the languages include the targets'.
        assert (call["train"].labels["emotion"][np.isin(trained, target_rows)] == -1).all()
        assert call["train"].labels["language"].max() == num_languages - 1
        run = results["settings"][setting]["emodb"]["runs"][0]
        assert {s["speaker"] for s in run["allowed_overlap"]["speakers"]} == _speakers(
            pool, target_rows
        )
        assert _speakers(pool, target_rows) <= _manifest_speakers(run["train_speakers"])
    # stl never sees the targets' audio: it only sizes the matched epoch.
    assert not np.isin(_rows(pool, by_setting["stl"]["train"].inputs), target_rows).any()


def test_a_fold_that_validates_on_a_test_speaker_is_refused(tmp_path, cache_dir, monkeypatch):
    def leaky(pool, seed, fraction):
        train, _, _ = real(pool, seed, fraction)
        target = next(iter(pool.targets.values()))
        return train, target[:3], ["leak"]

    real = valence.validation_split
    monkeypatch.setattr(valence, "validation_split", leaky)
    with pytest.raises(SpeakerLeakageError, match="validation"):
        _run(tmp_path, cache_dir, monkeypatch, "leaky", settings="stl")


def test_within_protocol_is_speaker_independent(tmp_path, cache_dir, monkeypatch):
    experiment, recorder, results = _run(tmp_path, cache_dir, monkeypatch, "within",
                                         protocol="within", folds=1)
    pool = experiment.pool
    assert set(results["within"]) == {"savee", "emodb", "urdu"}
    assert len(recorder.calls) == 3
    for call in recorder.calls:
        trained, tested = (_rows(pool, call[part].inputs) for part in ("train", "test"))
        validated = _rows(pool, call["validation"].inputs)
        assert len({pool.corpus[i] for i in np.concatenate([trained, validated, tested])}) == 1
        assert not _speakers(pool, tested) & (_speakers(pool, trained) |
                                              _speakers(pool, validated))
    for entry in results["within"].values():
        for fold in entry["folds"]:
            tested = _manifest_speakers(fold["test_speakers"])
            assert tested and not tested & _manifest_speakers(fold["train_speakers"])
            assert not tested & _manifest_speakers(fold["validation_speakers"])


def test_runs_use_their_own_seeds_and_validation_speakers(tmp_path, cache_dir, monkeypatch):
    experiment, recorder, results = _run(tmp_path, cache_dir, monkeypatch, "runs",
                                         settings="stl", runs=2, seed=0)
    assert [call["seed"] for call in recorder.calls] == [0, 1]
    assert results["seeds"] == [0, 1]
    runs = results["settings"]["stl"]["emodb"]["runs"]
    assert [run["fold"] for run in runs] == ["seed0_targets", "seed1_targets"]


# ---------------------------------------------------------------- config


def test_config_takes_the_preset_and_names_the_field_it_refuses():
    config = CrossLanguageValenceConfig(preset="paper", epochs=3)
    assert (config.epochs, config.model_preset, config.patience) == (3, "latif_crosslang", 20)
    assert config.unlabelled_target_audio is False
    assert CrossLanguageValenceConfig(target_samples="50,0,25").target_samples == (0, 25, 50)
    with pytest.raises(ConfigError, match="target_samples .*Received: '25,x'"):
        CrossLanguageValenceConfig(target_samples="25,x")
    with pytest.raises(ConfigError) as error:
        CrossLanguageValenceConfig(labelled=["emodb:/tmp"])
    assert error.value.field == "target"
    # Speaker normalisation is exported (an enrolment signature); export_domain
    # chooses the statistics of a per-corpus normalisation only.
    assert CrossLanguageValenceConfig(normalization="speaker").export_dir is not None
    with pytest.raises(ConfigError) as error:
        CrossLanguageValenceConfig(export_domain="emodb", normalization="speaker")
    assert error.value.field == "export_domain"
    assert "--normalization speaker" in error.value.as_option()
    with pytest.raises(ConfigError, match="unlabelled_target_audio"):
        CrossLanguageValenceConfig(unlabelled_target_audio="yes")
    # Which models run is not part of what a resumed run must match.
    assert {"settings", "runs", "target_samples"}.isdisjoint(config.run_config())
    assert "unlabelled_target_audio" in config.run_config()


def test_importing_the_experiment_does_not_import_tensorflow():
    code = ("import sys; from ser_keras.experiments import crosslang_valence as v; "
            "v.CrossLanguageValenceConfig(); print('tensorflow' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout
    assert output.strip() == "False"


# ------------------------------------------------------ library functions


def test_fill_cycles_whole_copies_then_a_remainder_without_repeats():
    filled = valence.fill(np.arange(5), 12, np.random.default_rng(0))
    assert len(filled) == 12
    counts = np.bincount(filled, minlength=5)
    assert counts.min() == 2 and counts.max() == 3 and (counts == 3).sum() == 2


def test_mix_epoch_reaches_the_labelled_fraction_with_every_labelled_sample():
    rng = np.random.default_rng(0)
    labelled, unlabelled = np.arange(10), np.arange(100, 160)
    # More unlabelled samples than the share needs: a random subset, no repeats.
    mixed = valence.mix_epoch(labelled, unlabelled, 0.5, rng)
    assert sorted(mixed[np.isin(mixed, labelled)]) == list(labelled)
    subset = mixed[np.isin(mixed, unlabelled)]
    assert len(subset) == len(set(subset)) == 10
    # Fewer: every unlabelled sample, then repeats.
    mixed = valence.mix_epoch(labelled, unlabelled[:5], 0.25, rng)
    assert np.isin(mixed, labelled).sum() == 10 and len(mixed) == 40
    assert set(mixed[10:]) == set(unlabelled[:5])
    natural = valence.mix_epoch(labelled, unlabelled, None, rng)
    assert sorted(natural) == sorted(np.concatenate([labelled, unlabelled]))
    assert valence.unlabelled_per_epoch(10, 5, 0.25) == 30


def test_draw_target_samples_keeps_class_proportions():
    labels = np.array([0] * 30 + [1] * 10)
    chosen = valence.draw_target_samples(labels, 8, np.random.default_rng(0),
                                         tested_elsewhere=False)
    assert len(chosen) == len(set(chosen)) == 8
    assert (labels[chosen] == 0).sum() == 6 and (labels[chosen] == 1).sum() == 2
    with pytest.raises(ValueError, match="at least one must be left to test"):
        valence.draw_target_samples(labels, 40, np.random.default_rng(0), tested_elsewhere=False)
    # Tested on other speakers: every utterance may be drawn, not more.
    assert len(valence.draw_target_samples(labels, 40, np.random.default_rng(0),
                                           tested_elsewhere=True)) == 40
    with pytest.raises(ValueError, match="half of its speakers"):
        valence.draw_target_samples(labels, 41, np.random.default_rng(0), tested_elsewhere=True)


def _pool(utterances, emotion, features=None):
    pool = valence.CorpusPool()
    pool.utterances = utterances
    pool.emotion = np.asarray(emotion)
    pool.corpus = np.array([u.corpus for u in utterances], dtype=object)
    pool.features = features
    return pool


def test_target_samples_come_from_other_speakers_than_the_tested():
    from ser_keras.corpora.records import Utterance

    # A target of 6 speakers x 4 utterances (2 negative, 2 positive), after 3
    # utterances of another corpus.
    utterances = [Utterance(f"/x/{i}.wav", "ravdess", "en", "a") for i in range(3)]
    utterances += [
        Utterance(f"/t/{s}_{i}.wav", "emodb", "de", f"s{s}") for s in range(6) for i in range(4)
    ]
    pool = _pool(utterances, [0, 1, 0] + [0, 0, 1, 1] * 6)
    scored = np.arange(3, 27)
    donors, tested = valence.split_target_speakers(pool, scored, seed=0)
    speakers = lambda indices: {utterances[i].speaker_id for i in indices}  # noqa: E731
    assert len(speakers(donors)) == len(speakers(tested)) == 3
    assert not speakers(donors) & speakers(tested)
    assert sorted(np.concatenate([donors, tested]).tolist()) == scored.tolist()
    # Another seed deals the speakers differently; the same seed the same way.
    assert any(
        speakers(valence.split_target_speakers(pool, scored, seed=seed)[0]) != speakers(donors)
        for seed in range(1, 6)
    )
    np.testing.assert_array_equal(valence.split_target_speakers(pool, scored, seed=0)[0], donors)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        valence.split_target_speakers(pool, np.arange(3, 7), seed=0)


def test_normalization_groups_keep_two_corpora_of_one_kind_apart():
    from ser_keras.corpora.records import Utterance

    # Two folders of unlabelled speech (one kind, two corpora of the run)
    # with a speaker "a" each, and an EMO-DB speaker "a".
    utterances = [Utterance(f"/fr/{i}.wav", "folder", "fr", "a") for i in range(2)]
    utterances += [Utterance(f"/es/{i}.wav", "folder", "es", "a") for i in range(2)]
    utterances += [Utterance("/de/0.wav", "emodb", "de", "a")]
    pool = _pool(utterances, [-1] * 5)
    pool.corpus = np.array(["folder_fr", "folder_fr", "folder_es", "folder_es", "emodb"],
                           dtype=object)
    records = valence.normalization_records(pool)
    assert [r.path for r in records] == [u.path for u in utterances]

    def groups(mode):
        found = TrainingRecipe(normalization=mode).normalization_groups(records)
        return [sorted(i for i, g in enumerate(found) if g == group) for group in set(found)]

    assert sorted(groups("corpus")) == [[0, 1], [2, 3], [4]]
    assert sorted(groups("speaker")) == [[0, 1], [2, 3], [4]]


def test_results_record_the_training_recipe_and_the_default_trains_as_the_paper(default_run):
    experiment, recorder, results = default_run
    assert results["training_recipe"] == RECIPES["paper"].to_dict()
    assert results["configuration"]["training_recipe"] == RECIPES["paper"].to_dict()
    for call in recorder.calls:
        assert call["options"].get("augment") is None
        assert call["options"]["recalibrate_batch_norm"] is False


def test_the_recipe_reaches_training(tmp_path, cache_dir, monkeypatch):
    experiment, recorder, results = _run(
        tmp_path, cache_dir, monkeypatch, "recipe", settings="stl,mtl_extra",
        recipe="cpu", normalization="corpus",
    )
    pool = experiment.pool
    assert results["training_recipe"]["normalization"] == "corpus"
    # The rows given to the fits cover the pool; every corpus of the run (the
    # two unlabelled folders apart, though of one kind) has each band at mean
    # 0 and deviation 1 over its valid frames.
    rows = np.unique(np.concatenate([
        _rows(pool, call[part].inputs)
        for call in recorder.calls for part in ("train", "validation", "test")
    ]))
    np.testing.assert_array_equal(rows, np.arange(len(pool.utterances)))
    pad_value = experiment.frontend.pad_value
    assert len(set(pool.corpus)) == 5
    for name in set(pool.corpus):
        features = pool.features[pool.corpus == name]
        frames = features[~np.all(features == pad_value, axis=-1)]
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-3)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-2)
    for call in recorder.calls:
        augment = call["options"]["augment"]
        assert (augment.pad_value, augment.mask_value) == (pad_value, 0.0)
        assert call["options"]["recalibrate_batch_norm"] is True


def test_unlabelled_arguments():
    spec = valence.parse_unlabelled_spec("bn:/data/bangla")
    assert (spec.kind, spec.language, str(spec.directory)) == ("folder", "bn", "/data/bangla")
    spec = valence.parse_unlabelled_spec("librispeech:/data/LibriSpeech")
    assert (spec.kind, spec.language) == ("librispeech", None)
    assert valence.parse_unlabelled_spec("folder:de:/v/de").language == "de"
    with pytest.raises(ValueError, match="'/no/language'"):
        valence.parse_unlabelled_spec("/no/language")
