"""Paper 004's experiment through its public API: configuration and protocol wiring."""

import dataclasses
import json

import keras
import numpy as np
import pytest

from ser_keras.experiments import (
    ConfigError,
    FuSaveeCrossLanguage,
    FuSaveeCrossLanguageConfig,
    SpeakerLeakageError,
    fu_savee_crosslang,
)
from ser_keras.export.saved_model import load_metadata
from ser_keras.training import runner
from ser_keras.training.recipe import RECIPES, TrainingRecipe


def _tiny_config(root, **changes):
    options = dict(
        settings=("stl", "mtl_xl"),
        epochs=1,
        folds=2,
        num_frames=64,
        synthetic_per_emotion=2,
        synthetic_emodb_per_emotion=1,
        quiet=True,
        out=str(root / "run"),
        cache_dir=str(root / "cache"),
        export_dir=str(root / "exported"),
    )
    options.update(changes)
    return FuSaveeCrossLanguageConfig(**options)


# A training recipe with every option changed, so that the tiny run checks
# that each reaches the training (and the export) as well as the protocol.
RECIPE = dict(
    normalization="speaker",
    spec_augment=True,
    adamw=True,
    lr_schedule="cosine",
    label_smoothing=0.1,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run of stl and mtl_xl on two folds, recording every fit's splits."""
    root = tmp_path_factory.mktemp("fu_experiment")
    calls = []
    real_fit = runner.fit_and_evaluate

    def recording_fit(build_model, train, validation, test, **options):
        compiled = build_model()
        result = real_fit(build_model, train, validation, test, **options)
        model = keras.models.load_model(str(options["fold_dir"] / "best.keras"))
        calls.append(
            {
                "fold_dir": options["fold_dir"],
                "train": train,
                "validation": validation,
                "test": test,
                "outputs": {name: int(tensor.shape[-1]) for name, tensor in model.output.items()},
                "augment": options.get("augment"),
                "optimizer": compiled.optimizer,
                "label_smoothing": compiled._label_smoothing,
            }
        )
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", recording_fit)
        result = FuSaveeCrossLanguage(_tiny_config(root, **RECIPE)).run()
    return root, result, calls


def test_config_takes_the_preset_and_overrides():
    config = FuSaveeCrossLanguageConfig(epochs=3)
    assert config.epochs == 3
    assert config.batch_size == fu_savee_crosslang.PRESETS["quick"]["batch_size"]
    paper = FuSaveeCrossLanguageConfig(preset="paper")
    assert paper.model_preset == "fu2021" and paper.folds is None
    assert FuSaveeCrossLanguageConfig.from_preset("paper", epochs=None).epochs == 300


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"folds": 0}, "folds"),
        ({"preset": "nope"}, "preset"),
        ({"settings": ("stl", "bogus")}, "settings"),
        ({"validation_fraction": 0.9}, "validation_fraction"),
        ({"savee": "/tmp", "settings": ("xl",)}, "emodb"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        FuSaveeCrossLanguageConfig(**changes)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_config_refuses_an_output_folder_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ConfigError, match="is a file") as info:
        FuSaveeCrossLanguageConfig(out=str(tmp_path / "taken" / "run"))
    assert info.value.as_option().startswith("--out ")


def test_no_test_speaker_is_trained_or_validated_on(finished):
    _, result, _ = finished
    for entry in result.results["settings"].values():
        for fold in entry["folds"]:
            test = {item["speaker"] for item in fold["test_speakers"]}
            assert test == {f"savee:{fold['fold'].split('_')[-1]}"}
            assert not test & {item["speaker"] for item in fold["train_speakers"]}
            assert not test & {item["speaker"] for item in fold["validation_speakers"]}
            assert all(item["utterances"] > 0 for item in fold["train_speakers"])


def test_every_setting_uses_the_same_folds(finished):
    _, result, _ = finished
    stl, mtl_xl = (result.results["settings"][name]["folds"] for name in ("stl", "mtl_xl"))
    assert [fold["fold"] for fold in stl] == [fold["fold"] for fold in mtl_xl]
    for a, b in zip(stl, mtl_xl, strict=True):
        assert a["test_speakers"] == b["test_speakers"]
        assert a["validation_speakers"] == b["validation_speakers"]
        savee_train = [item for item in b["train_speakers"] if item["speaker"].startswith("savee")]
        assert savee_train == a["train_speakers"]
        # Cross-language training adds EMO-DB's speakers, never as test speakers.
        assert any(item["speaker"].startswith("emodb:") for item in b["train_speakers"])


def test_speaker_head_covers_every_training_speaker(finished):
    _, result, calls = finished
    for call in calls:
        setting = call["fold_dir"].parent.name
        fold = next(
            entry
            for entry in result.results["settings"][setting]["folds"]
            if f"fold_{entry['fold']}" == call["fold_dir"].name
        )
        if setting == "stl":
            assert "speaker" not in call["outputs"]
            continue
        assert call["outputs"]["speaker"] == len(fold["train_speakers"])
        speaker_labels = call["train"].labels["speaker"]
        assert speaker_labels.min() >= 0
        assert len(np.unique(speaker_labels)) == len(fold["train_speakers"])
        # No speaker target for the test speaker.
        assert (call["test"].labels["speaker"] == -1).all()


def test_checkpoint_is_selected_on_validation_rows_only(finished):
    _, _, calls = finished
    assert calls
    for call in calls:
        test_rows = {row.tobytes() for row in call["test"].inputs}
        assert not any(row.tobytes() in test_rows for row in call["validation"].inputs)
        assert not any(row.tobytes() in test_rows for row in call["train"].inputs)


def test_the_best_validation_model_is_exported(finished):
    root, result, _ = finished
    scores = {
        (name, fold["fold"]): fold["best_validation_ua"]
        for name, entry in result.results["settings"].items()
        for fold in entry["folds"]
    }
    exported = result.results["exported"]
    assert exported["validation_ua"] == pytest.approx(max(scores.values()))
    assert scores[(exported["setting"], exported["fold"])] == pytest.approx(max(scores.values()))
    assert result.export_path is not None and (result.export_path / "saved_model.pb").exists()
    on_disk = json.loads((root / "run" / "results.json").read_text())
    assert on_disk["exported"] == exported


def test_a_fold_that_leaks_test_speakers_is_refused(tmp_path, monkeypatch, finished):
    root, _, _ = finished
    original = FuSaveeCrossLanguage.folds

    def validating_on_the_test_speaker(self, data):
        return [dataclasses.replace(fold, validation=fold.test) for fold in original(self, data)]

    monkeypatch.setattr(FuSaveeCrossLanguage, "folds", validating_on_the_test_speaker)
    config = _tiny_config(
        tmp_path, settings=("stl",), folds=1, cache_dir=str(root / "cache"), export_dir=None
    )
    with pytest.raises(SpeakerLeakageError, match="savee:DC"):
        FuSaveeCrossLanguage(config).run()
    assert not (tmp_path / "run" / "stl" / "fold_savee_DC" / "result.json").exists()


def test_the_training_recipe_reaches_every_fold(finished):
    _, result, calls = finished
    assert calls
    for call in calls:
        # Per-speaker normalisation: the test part is one speaker, all of
        # its utterances, so each band has mean 0 and deviation 1 over its
        # valid frames.
        features = call["test"].inputs
        frames = features[~np.all(features == -1.0, axis=-1)]
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-3)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-2)
        assert call["augment"] is not None and call["augment"].mask_value == 0.0
        assert isinstance(call["optimizer"], keras.optimizers.AdamW)
        assert isinstance(
            call["optimizer"]._learning_rate, keras.optimizers.schedules.CosineDecay
        )
        assert call["label_smoothing"] == pytest.approx(0.1)
    recorded = result.results["training_recipe"]
    assert recorded == {**dataclasses.asdict(TrainingRecipe()), **RECIPE}
    assert result.results["configuration"]["training_recipe"] == recorded


def test_the_export_serves_the_speaker_normalisation(finished):
    _, result, _ = finished
    metadata = load_metadata(result.export_path)
    assert metadata["speaker_normalization"]["enabled"] is True
    assert metadata["metadata"]["training_recipe"]["normalization"] == "speaker"
    assert metadata["speaker_normalization"]["group"] == "speaker"
    import tensorflow as tf

    loaded = tf.saved_model.load(str(result.export_path))
    assert {"enrol", "serving_enrolled", "serving_default"} <= set(loaded.signatures)


def test_a_recipe_field_the_experiment_cannot_apply_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(
        FuSaveeCrossLanguage, "recipe_unsupported", {"label_smoothing": "a test reason"}
    )
    config = _tiny_config(tmp_path, label_smoothing=0.2)
    with pytest.raises(ConfigError, match="a test reason") as info:
        FuSaveeCrossLanguage(config)
    assert info.value.field == "label_smoothing"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"normalization": "band"}, "normalization"),
        ({"weight_decay": 0.01}, "weight_decay"),  # without AdamW
        ({"recipe": "fastest"}, "recipe"),
        ({"warmup_epochs": 2}, "warmup_epochs"),  # with a constant learning rate
    ],
)
def test_config_refuses_bad_recipe_values_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        FuSaveeCrossLanguageConfig(**changes)
    assert info.value.field == field


def test_the_cpu_preset_uses_the_cpu_recipe():
    config = FuSaveeCrossLanguageConfig(preset="cpu")
    assert config.training_recipe() == RECIPES["cpu"]
    assert FuSaveeCrossLanguageConfig().training_recipe() == RECIPES["paper"]
    overridden = FuSaveeCrossLanguageConfig(preset="cpu", spec_augment=False)
    assert overridden.training_recipe().spec_augment is False
    assert overridden.training_recipe().normalization == RECIPES["cpu"].normalization
