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
from ser_keras.training import runner


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


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run of stl and mtl_xl on two folds, recording every fit's splits."""
    root = tmp_path_factory.mktemp("fu_experiment")
    calls = []
    real_fit = runner.fit_and_evaluate

    def recording_fit(build_model, train, validation, test, **options):
        result = real_fit(build_model, train, validation, test, **options)
        model = keras.models.load_model(str(options["fold_dir"] / "best.keras"))
        calls.append(
            {
                "fold_dir": options["fold_dir"],
                "train": train,
                "validation": validation,
                "test": test,
                "outputs": {name: int(tensor.shape[-1]) for name, tensor in model.output.items()},
            }
        )
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", recording_fit)
        result = FuSaveeCrossLanguage(_tiny_config(root)).run()
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
