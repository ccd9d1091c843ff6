"""Paper 001's experiment through its public API: configuration and protocol wiring.

The run uses two tiny manifest corpora: `alpha` (3 acted speakers) and `beta`
(2 speakers, each with acted and natural utterances, like IEMOCAP), so that
leave-one-corpus-out splits `beta` into `beta_acted` and `beta_natural`.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest

from ser_keras.experiments import (
    ConfigError,
    GenderNaturalness,
    GenderNaturalnessConfig,
    SpeakerLeakageError,
    gender_naturalness,
)
from ser_keras.export.saved_model import load_metadata
from ser_keras.models import elm as elm_lib
from ser_keras.models import kim_mtl
from ser_keras.training import runner
from ser_keras.training.recipe import RECIPE_FIELDS, RECIPES, TrainingRecipe
from tests.helpers import write_acted_and_natural_corpora


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    return write_acted_and_natural_corpora(tmp_path_factory.mktemp("kim_corpora"), seconds=0.4)


def _tiny_config(root, corpora, **changes):
    options = dict(
        corpora=corpora,
        protocol="both",
        networks=("dnn",),
        aux=("gender",),
        units=4,
        epochs=1,
        folds=1,
        loco_folds=2,
        chunk_frames=20,
        elm_hidden=8,
        quiet=True,
        out=str(root / "run"),
        cache_dir=str(root / "cache"),
        export_dir=str(root / "exported"),
    )
    options.update(changes)
    return GenderNaturalnessConfig(**options)


# A training recipe with every option changed, so that the tiny run checks
# that each reaches the training (and the export) as well as the protocol.
RECIPE = dict(
    normalization="speaker",
    spec_augment=True,
    adamw=True,
    lr_schedule="cosine",
    label_smoothing=0.1,
    recalibrate_batch_norm=True,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, corpora):
    """A tiny run (LOSO and LOCO, DNN STL and Gender-MTL), recording every fit and ELM fit."""
    root = tmp_path_factory.mktemp("kim_experiment")
    calls, elm_fits = [], []
    real_fit = runner.fit_and_evaluate
    real_elm_fit = elm_lib.ExtremeLearningMachine.fit

    def recording_fit(build_model, train, validation, test, **options):
        compiled = build_model()
        first = len(elm_fits)
        result = real_fit(build_model, train, validation, test, **options)
        model = keras.models.load_model(str(options["fold_dir"] / "best.keras"))
        calls.append(
            {
                "fold_dir": options["fold_dir"],
                "train": train,
                "validation": validation,
                "test": test,
                "monitor": options["monitor"],
                "task_weights": dict(model.task_weights),
                "elm_fits": elm_fits[first:],
                "result": dict(result),
                "augment": options.get("augment"),
                "optimizer": compiled.optimizer,
                "label_smoothing": compiled._label_smoothing,
            }
        )
        return result

    def recording_elm_fit(self, features, labels, **options):
        elm_fits.append({"features": np.array(features), "labels": np.array(labels)})
        return real_elm_fit(self, features, labels, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", recording_fit)
        patch.setattr(elm_lib.ExtremeLearningMachine, "fit", recording_elm_fit)
        result = GenderNaturalness(_tiny_config(root, corpora, **RECIPE)).run()
    return root, result, calls


def _folds(results):
    """(protocol, network, variant, fold entry) of every trained fold."""
    return [
        (protocol, network, variant, fold)
        for protocol, by_network in results["protocols"].items()
        for network, by_variant in by_network.items()
        for variant, entry in by_variant.items()
        for fold in entry["folds"]
    ]


def _speakers(part):
    return {item["speaker"] for item in part}


# ------------------------------------------------------------- configuration


def test_config_takes_the_preset_and_overrides():
    config = GenderNaturalnessConfig(epochs=3)
    assert config.epochs == 3 and config.units == gender_naturalness.PRESETS["quick"]["units"]
    paper = GenderNaturalnessConfig(preset="paper")
    assert (paper.units, paper.folds, paper.patience) == (256, None, 10)
    # Section 5.1: batch 128, 10% of the training data for validation, Adam 3e-3.
    assert paper.batch_size == 128 and paper.validation_fraction == 0.1
    assert kim_mtl.LEARNING_RATE == 3e-3
    assert gender_naturalness.AUXILIARY_TASKS == kim_mtl.AUXILIARY_TASKS
    assert GenderNaturalnessConfig(networks="lstm").networks == ("lstm",)


def test_variants_and_protocols_from_the_options():
    assert GenderNaturalnessConfig().variants == {
        "stl": (),
        "gender": ("gender",),
        "naturalness": ("naturalness",),
        "all": ("gender", "naturalness"),
    }
    assert GenderNaturalnessConfig(aux="naturalness").variants == {
        "stl": (),
        "naturalness": ("naturalness",),
    }
    assert GenderNaturalnessConfig(aux="none").variants == {"stl": ()}
    # Synthetic data are two corpora: both protocols by default.
    assert GenderNaturalnessConfig().protocols == ["loso", "loco"]
    assert GenderNaturalnessConfig(protocol="loco").protocols == ["loco"]


def test_one_corpus_runs_loso_and_refuses_loco(corpora):
    alpha, _ = corpora
    assert GenderNaturalnessConfig(corpora=[alpha]).protocols == ["loso"]
    with pytest.raises(ConfigError, match="at least 2 corpora") as info:
        GenderNaturalnessConfig(corpora=[alpha], protocol="loco")
    assert info.value.field == "protocol"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"units": 0}, "units"),
        ({"folds": 0}, "folds"),
        ({"loco_folds": 0}, "loco_folds"),
        ({"patience": 0}, "patience"),
        ({"elm_hidden": 0}, "elm_hidden"),
        ({"chunk_frames": 1}, "chunk_frames"),
        ({"synthetic_per_emotion": 0}, "synthetic_per_emotion"),
        ({"validation_fraction": 0.7}, "validation_fraction"),
        ({"networks": ("cnn",)}, "networks"),
        ({"aux": ("gender", "age")}, "aux"),
        ({"protocol": "kfold"}, "protocol"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        GenderNaturalnessConfig(**changes)
    assert info.value.field == field


# -------------------------------------------------------------- the protocol


def test_no_test_speaker_is_trained_validated_or_fitted_by_the_elm(finished):
    _, result, _ = finished
    folds = _folds(result.results)
    assert {(protocol, fold["fold"]) for protocol, _, _, fold in folds} == {
        ("loso", "alpha_a1"), ("loso", "beta_b1"), ("loco", "alpha"), ("loco", "beta_acted"),
    }
    for protocol, _, _, fold in folds:
        test = _speakers(fold["test_speakers"])
        assert test
        for part in ("train_speakers", "validation_speakers", "elm_train_speakers"):
            assert not test & _speakers(fold[part]), (protocol, fold["fold"], part)
        assert fold["elm_train_speakers"] == fold["train_speakers"]
        if protocol == "loso":  # within corpus: one corpus only
            corpus = fold["test_corpus"]
            assert all(s.startswith(corpus + ":") for s in _speakers(fold["train_speakers"]))


def test_a_corpus_split_by_naturalness_is_not_trained_on_its_test_speakers(finished):
    _, result, _ = finished
    fold = result.results["protocols"]["loco"]["dnn"]["stl"]["folds"][1]
    assert fold["fold"] == "beta_acted"
    assert _speakers(fold["test_speakers"]) == {"beta:b1", "beta:b2"}
    # beta_natural has the same speakers: none of it is trained on.
    assert _speakers(fold["train_speakers"]) == {"alpha:a1", "alpha:a2", "alpha:a3"}
    assert any("beta_acted" in warning and "left out" in warning
               for warning in result.results["warnings"])
    assert result.results["corpus_naturalness"] == {
        "alpha": "acted", "beta_acted": "acted", "beta_natural": "natural",
    }


def test_every_setting_uses_the_same_folds(finished):
    _, result, _ = finished
    for by_network in result.results["protocols"].values():
        entries = [entry["folds"] for by_variant in by_network.values()
                   for entry in by_variant.values()]
        first = entries[0]
        for other in entries[1:]:
            for a, b in zip(first, other, strict=True):
                for key in ("fold", "train_speakers", "validation_speakers", "test_speakers"):
                    assert a[key] == b[key]


def test_checkpoint_is_selected_on_validation_rows_only(finished):
    _, _, calls = finished
    assert len(calls) == 8
    for call in calls:
        assert call["monitor"] == "val_emotion_ua"
        test_frames = {row.tobytes() for sequence in call["test"].inputs for row in sequence}
        for part in ("validation", "train"):
            chunks = np.asarray(call[part].inputs)
            frames = chunks.reshape(-1, chunks.shape[-1])
            frames = frames[np.any(frames != 0.0, axis=-1)]  # padding
            assert frames.size
            assert not any(row.tobytes() in test_frames for row in frames), part


def test_each_variant_trains_its_heads_with_the_papers_weight(finished):
    _, _, calls = finished
    for call in calls:
        variant = call["fold_dir"].parent.name.split("_", 1)[1]
        if variant == "stl":
            assert call["task_weights"] == {"emotion": 1.0}
            assert set(call["train"].labels) == {"emotion"}
        else:
            assert call["task_weights"] == {"emotion": 1.0, "gender": 0.1}
            assert set(call["train"].labels) == {"emotion", "gender"}
        assert set(call["test"].labels) == {"emotion"}


def test_the_elm_is_fitted_on_the_folds_training_utterances(finished):
    _, result, calls = finished
    entries = {
        (f"{protocol}/{network}_{variant}", fold["fold"]): fold
        for protocol, network, variant, fold in _folds(result.results)
    }
    for call in calls:
        setting = f"{call['fold_dir'].parent.parent.name}/{call['fold_dir'].parent.name}"
        fold = entries[(setting, call["fold_dir"].name.removeprefix("fold_"))]
        (fit,) = call["elm_fits"]
        assert fit["features"].shape == (sum(s["utterances"] for s in fold["train_speakers"]), 16)
        assert fit["labels"].min() >= 0


def test_results_reports_and_figure(finished):
    root, result, _ = finished
    on_disk = json.loads((root / "run" / "results.json").read_text())
    assert on_disk["units"] == "percent"
    (test,) = [t for t in on_disk["wilcoxon"] if t["protocol"] == "loco"]
    assert test["comparison"] == "DNN-Gender-MTL vs DNN-STL" and test["n"] == 2
    text = (root / "run" / "results.md").read_text()
    assert "layout of Table 2" in text and "layout of Table 3" in text
    configuration = on_disk["configuration"]
    assert f"Data: {configuration['data']}." in text
    assert f"Preset {configuration['preset']} " in text
    assert f"{configuration['epochs']} epochs at most" in text
    assert "4 classes" in text and "chance is 25.00 % UA" in text
    for protocol, by_network in on_disk["protocols"].items():
        assert f"{len(by_network['dnn']['stl']['folds'])} {protocol} (" in text
    assert (root / "run" / "tsne.png").stat().st_size > 0


def test_results_json_holds_percent(finished):
    """Fold and summary scores of results.json are percent of the fractions `train_fold` returns."""
    _, result, calls = finished
    entries = {
        (f"{protocol}/{network}_{variant}", fold["fold"]): fold
        for protocol, network, variant, fold in _folds(result.results)
    }
    for call in calls:
        setting = f"{call['fold_dir'].parent.parent.name}/{call['fold_dir'].parent.name}"
        fold = entries[(setting, call["fold_dir"].name.removeprefix("fold_"))]
        for key in ("ua", "wa", "macro_f1", "best_validation"):
            assert fold[key] == pytest.approx(100 * call["result"][key]), key
    for protocol, by_network in result.results["protocols"].items():
        for network, by_variant in by_network.items():
            for variant, entry in by_variant.items():
                mean = np.mean([fold["ua"] for fold in entry["folds"]])
                assert entry["ua"] == pytest.approx(mean), (protocol, network, variant)


def test_the_best_validation_model_is_exported(finished):
    root, result, _ = finished
    scores = {
        (f"{protocol}/{network}_{variant}", fold["fold"]): fold["best_validation"]
        for protocol, network, variant, fold in _folds(result.results)
    }
    exported = result.results["exported"]
    assert exported["validation_ua"] == pytest.approx(max(scores.values()))
    assert scores[(exported["setting"], exported["fold"])] == pytest.approx(max(scores.values()))
    assert result.export_path is not None and (result.export_path / "saved_model.pb").exists()
    metadata = json.loads((result.export_path / "assets.extra" / "ser_keras.json").read_text())
    assert metadata["metadata"]["setting"] == exported["setting"]
    assert metadata["metadata"]["fold"] == exported["fold"]


def test_the_training_recipe_reaches_every_fold(finished):
    _, result, calls = finished
    assert calls
    for call in calls:
        if call["fold_dir"].parent.parent.name == "loso":
            # Per-speaker normalisation: the test part is one speaker, all of
            # its utterances, so each feature has mean 0 and deviation 1 over
            # its frames.
            frames = np.concatenate(call["test"].inputs)
            np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-3)
            np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-2)
        augment = call["augment"]
        assert augment.num_frequency_masks == 0 and augment.num_time_masks > 0
        assert augment.mask_value == augment.pad_value == 0.0
        assert isinstance(call["optimizer"], keras.optimizers.AdamW)
        assert isinstance(
            call["optimizer"]._learning_rate, keras.optimizers.schedules.CosineDecay
        )
        assert call["label_smoothing"] == pytest.approx(0.1)
        # No batch normalisation in the networks: nothing is recalibrated,
        # and the check ran on the validation chunks, not through the ELM
        # (fitted once per fold: test_the_elm_is_fitted_on_the_folds_training_utterances).
        assert call["result"]["batch_norm_recalibration"]["layers"] == 0
    recorded = result.results["training_recipe"]
    assert recorded == {**dataclasses.asdict(TrainingRecipe()), **RECIPE}
    assert result.results["configuration"]["training_recipe"] == recorded


def test_time_masking_replaces_whole_frames_by_padding():
    pad_value = 0.0
    features = np.random.default_rng(0).normal(size=(8, 60, 32)).astype("float32")
    features[:, 50:] = pad_value  # padding
    augment = GenderNaturalness.time_masking(pad_value)
    masked = np.asarray(augment(features, np.array([3, 4], dtype="int64")))
    changed = np.any(masked != features, axis=-1)
    assert changed.any()
    # A masked frame is padding in every feature; every other frame is intact.
    np.testing.assert_array_equal(masked[changed], pad_value)
    np.testing.assert_array_equal(masked[~changed], features[~changed])
    assert not changed[:, 50:].any()


def test_the_export_serves_the_speaker_normalisation(finished):
    _, result, _ = finished
    metadata = load_metadata(result.export_path)
    assert metadata["speaker_normalization"]["enabled"] is True
    assert metadata["metadata"]["training_recipe"]["normalization"] == "speaker"
    import tensorflow as tf

    loaded = tf.saved_model.load(str(result.export_path))
    assert {"enrol", "serving_enrolled", "serving_default"} <= set(loaded.signatures)


def test_the_cpu_preset_uses_the_cpu_recipe():
    config = GenderNaturalnessConfig(preset="cpu")
    assert config.training_recipe() == RECIPES["cpu"]
    assert GenderNaturalness(config).recipe == RECIPES["cpu"]
    assert GenderNaturalnessConfig().training_recipe() == RECIPES["paper"]
    assert GenderNaturalnessConfig(preset="paper").training_recipe() == RECIPES["paper"]
    # Every recipe field applies here: none is refused.
    assert not set(GenderNaturalness.recipe_unsupported) & set(RECIPE_FIELDS)
    GenderNaturalness(GenderNaturalnessConfig(preset="cpu", weight_decay=0.01, **RECIPE))


def test_a_fold_that_leaks_test_speakers_is_refused(tmp_path, monkeypatch, corpora):
    original = GenderNaturalness.folds

    def validating_on_the_test_speaker(self, protocol, data):
        folds, test_corpus_of = original(self, protocol, data)
        return [dataclasses.replace(f, validation=f.test) for f in folds], test_corpus_of

    monkeypatch.setattr(GenderNaturalness, "folds", validating_on_the_test_speaker)
    config = _tiny_config(tmp_path, corpora, protocol="loso", aux=(), export_dir=None)
    with pytest.raises(SpeakerLeakageError, match="alpha:a1"):
        GenderNaturalness(config).run()
    assert not (tmp_path / "run" / "loso" / "dnn_stl" / "fold_alpha_a1" / "result.json").exists()
