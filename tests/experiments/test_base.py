"""The experiments' shared base: configuration, split manifest, progress, best model."""

import dataclasses
import subprocess
import sys
from typing import ClassVar

import pytest

from ser_keras.corpora.records import Utterance
from ser_keras.experiments import base
from ser_keras.experiments.config import (
    ConfigError,
    ExperimentConfig,
    check_names,
    option_name,
    preset_field,
)


@dataclasses.dataclass
class _Config(ExperimentConfig):
    PRESETS: ClassVar[dict] = {"quick": {"epochs": 2, "folds": None}, "paper": {"epochs": 9}}

    epochs: int = preset_field()
    folds: int | None = preset_field()


def test_fields_come_from_the_preset_unless_given():
    assert _Config().epochs == 2 and _Config().folds is None
    assert _Config(epochs=5).epochs == 5
    # A preset that does not set a field must not leave it silently unset.
    with pytest.raises(ConfigError, match="folds is not set by the preset 'paper'"):
        _Config(preset="paper")
    assert _Config(preset="paper", folds=3).epochs == 9


def test_from_preset_ignores_none_and_refuses_unknown_fields():
    assert _Config.from_preset("quick", epochs=None).epochs == 2
    with pytest.raises(ConfigError, match="bogus is not an option"):
        _Config.from_preset("quick", bogus=1)


def test_run_config_leaves_out_how_to_run():
    config = _Config(resume=True, quiet=True, out="somewhere")
    assert "resume" not in config.run_config() and "out" not in config.run_config()
    assert config.run_config()["epochs"] == 2
    assert config.to_dict()["resume"] is True


def _imported(name: str):
    """`"package.module:Name"` -> that class (imported when the test runs)."""
    import importlib

    module_name, class_name = name.split(":")
    return getattr(importlib.import_module(module_name), class_name)


@pytest.mark.parametrize(
    "config_class, limits",
    [
        ("ser_keras.experiments.fu_savee_crosslang:FuSaveeCrossLanguageConfig", ("folds",)),
        ("ser_keras.experiments.aae_mtl:AAEMultiTaskConfig", ("folds",)),
        ("ser_keras.experiments.crosslang_valence:CrossLanguageValenceConfig", ("folds",)),
        (
            "ser_keras.experiments.gender_naturalness:GenderNaturalnessConfig",
            ("folds", "loco_folds"),
        ),
    ],
)
def test_fold_limits_are_run_control(config_class, limits):
    """How many folds run is not part of the configuration a resumed run must match."""
    config = _imported(config_class)(preset="quick")
    fields = {field.name for field in dataclasses.fields(config)}
    for name in limits:
        assert name in fields
        assert name not in config.run_config()
    assert "seed" in config.run_config() and "epochs" in config.run_config()


@pytest.mark.parametrize(
    "experiment_class",
    [
        "ser_keras.experiments.aae_mtl:AAEMultiTask",
        "ser_keras.experiments.gender_naturalness:GenderNaturalness",
    ],
)
def test_normalize_sequences_normalises_whole_utterances_per_speaker(experiment_class):
    """Variable-length utterances keep their lengths; each speaker's frames get mean 0, sd 1.

    `Experiment.normalize_sequences`, as the two experiments of frame
    sequences (paper 002's AAE, paper 001's networks) call it.
    """
    import types

    import numpy as np

    experiment_type = _imported(experiment_class)
    rng = np.random.default_rng(0)
    lengths = [70, 25, 40, 90]
    sequences = [rng.normal(3.0 * n, 2.0, size=(length, 6)).astype("float32")
                 for n, length in enumerate(lengths)]
    records = [types.SimpleNamespace(corpus="c", speaker_id=speaker) for speaker in "aabb"]
    experiment = experiment_type(experiment_type.config_class(normalization="speaker"))
    normalized = experiment.normalize_sequences(sequences, records, 0.0, source="test")
    assert [len(array) for array in normalized] == lengths
    for rows in ([0, 1], [2, 3]):
        frames = np.concatenate([normalized[i] for i in rows])
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-4)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-3)


def test_errors_name_the_field_and_its_option():
    with pytest.raises(ConfigError) as info:
        _Config(seed=-1)
    assert info.value.field == "seed"
    assert info.value.as_option() == "--seed must be an integer of at least 0. Received: -1"
    assert option_name("num_frames") == "--num-frames"
    assert check_names("settings", "a, b,a", ("a", "b")) == ("a", "b")
    with pytest.raises(ConfigError, match="unknown: c"):
        check_names("settings", "a,c", ("a", "b"))


def _utterances():
    return [
        Utterance(path=f"{corpus}_{speaker}_{n}.wav", corpus=corpus, language="en", speaker=speaker,
                  label="anger")
        for corpus, speaker in [("savee", "DC"), ("savee", "JE"), ("emodb", "03")]
        for n in range(3)
    ]


def test_split_manifest_counts_utterances_per_speaker():
    utterances = _utterances()
    manifest = base.split_manifest(utterances, [3, 4, 5, 6, 7], [8], [0, 1, 2])
    assert manifest["train_speakers"] == [
        {"speaker": "emodb:03", "utterances": 2},
        {"speaker": "savee:JE", "utterances": 3},
    ]
    assert manifest["validation_speakers"] == [{"speaker": "emodb:03", "utterances": 1}]
    assert manifest["test_speakers"] == [{"speaker": "savee:DC", "utterances": 3}]
    base.check_speaker_independence(manifest, "fold 1")


@pytest.mark.parametrize("part", ["train", "validation"])
def test_a_test_speaker_in_training_or_validation_is_refused(part):
    utterances = _utterances()
    rows = {"train": [3, 4], "validation": [5], "test": [0, 1]}
    rows[part] = rows[part] + [2]
    manifest = base.split_manifest(utterances, rows["train"], rows["validation"], rows["test"])
    with pytest.raises(base.SpeakerLeakageError, match=rf"'savee:DC'.*{part}"):
        base.check_speaker_independence(manifest, "stl, fold DC")


def test_best_model_keeps_the_best_validation_score_not_the_last(tmp_path):
    best = base.BestModel()
    best.offer("stl", "DC", 0.40, tmp_path / "a.keras")
    best.offer("mtl", "DC", 0.55, tmp_path / "b.keras")
    best.offer("xl", "DC", 0.30, tmp_path / "c.keras")
    best.offer("mtl_xl", "JE", None, tmp_path / "d.keras")
    assert (best.setting, best.fold, best.validation_score) == ("mtl", "DC", 0.55)
    assert best.model_path == tmp_path / "b.keras"


def test_progress_names_setting_and_fold_and_estimates_the_time_left():
    lines = []
    progress = base.FoldProgress(["stl", "mtl"], 2, print_fn=lambda text, **_: lines.append(text))
    progress.begin("stl", 1)
    progress.end(reused=False)
    progress.begin("stl", 2)
    progress.end(reused=True)
    progress.begin("mtl", 1, "test savee:DC")
    assert lines[0] == "[setting 1/2 stl, fold 1/2]"
    assert lines[1].startswith("[setting 1/2 stl, fold 2/2, about ") and " left]" in lines[1]
    assert lines[2].startswith("[setting 2/2 mtl, fold 1/2, about ")
    assert lines[2].endswith("] test savee:DC")
    assert base.format_duration(30) == "30 s"
    assert base.format_duration(600) == "10 min"
    assert base.format_duration(7500) == "2 h 05 min"


def test_importing_the_experiments_and_building_a_config_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from ser_keras.experiments import FuSaveeCrossLanguageConfig\n"
        "FuSaveeCrossLanguageConfig(epochs=2)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.split() == ["False", "False"]
