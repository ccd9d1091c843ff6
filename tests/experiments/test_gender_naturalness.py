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
from ser_keras.models import elm as elm_lib
from ser_keras.models import kim_mtl
from ser_keras.training import runner
from tests.helpers import speech_like, write_wav

EMOTIONS = ("neutral", "happiness", "sadness", "anger")


def _write_corpus(root, corpus, speakers, naturalness_of, first_speaker=0):
    """A manifest corpus: 8 utterances of 0.4 s per speaker, the four emotions twice.

    Every utterance differs (its own f0 and noise), so frames can be traced.
    """
    rows = ["path,speaker,emotion,gender,language,corpus,naturalness"]
    for number, (speaker, gender) in enumerate(speakers, start=first_speaker):
        for index in range(8):
            path = write_wav(
                root / f"{speaker}_{index}.wav",
                speech_like(0.4, f0=110.0 + 25 * number + 3 * index, seed=100 * number + index),
            )
            rows.append(
                f"{path.name},{speaker},{EMOTIONS[index % 4]},{gender},en,{corpus},"
                f"{naturalness_of(index)}"
            )
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return f"manifest:{root / 'manifest.csv'}"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("kim_corpora")
    alpha = _write_corpus(
        root / "alpha", "alpha", [("a1", "f"), ("a2", "m"), ("a3", "f")], lambda index: "acted"
    )
    beta = _write_corpus(
        root / "beta", "beta", [("b1", "f"), ("b2", "m")],
        lambda index: "acted" if index < 4 else "natural", first_speaker=3,
    )
    return alpha, beta


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


@pytest.fixture(scope="module")
def finished(tmp_path_factory, corpora):
    """A tiny run (LOSO and LOCO, DNN STL and Gender-MTL), recording every fit and ELM fit."""
    root = tmp_path_factory.mktemp("kim_experiment")
    calls, elm_fits = [], []
    real_fit = runner.fit_and_evaluate
    real_elm_fit = elm_lib.ExtremeLearningMachine.fit

    def recording_fit(build_model, train, validation, test, **options):
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
            }
        )
        return result

    def recording_elm_fit(self, features, labels, **options):
        elm_fits.append({"features": np.array(features), "labels": np.array(labels)})
        return real_elm_fit(self, features, labels, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", recording_fit)
        patch.setattr(elm_lib.ExtremeLearningMachine, "fit", recording_elm_fit)
        result = GenderNaturalness(_tiny_config(root, corpora)).run()
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
