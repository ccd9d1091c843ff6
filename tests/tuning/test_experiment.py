"""The search of `apps.tune` through the library: configuration, labels, splits, wiring."""

import json

import numpy as np
import pytest

from ser_keras.corpora.labels import DEFAULT_LABEL_MAPS, get_label_map
from ser_keras.corpora.records import Utterance
from ser_keras.data.splits import Fold
from ser_keras.experiments.base import SpeakerLeakageError, split_manifest
from ser_keras.experiments.config import ConfigError
from ser_keras.tuning import experiment, hypermodels
from ser_keras.tuning.experiment import TuneConfig, TuneSearch
from tests.tuning.util import record_fits, speaker_splits_of_fits, tiny_hypermodel

# ------------------------------------------------------------ configuration


def test_config_takes_the_family_preset_and_overrides():
    config = TuneConfig(model="kim_mtl")
    assert (config.model_preset, config.epochs, config.batch_size, config.patience) == (
        {"units": 64}, 8, 128, None
    )
    assert config.synthetic_per_emotion == experiment.PRESETS["quick"]["synthetic_per_emotion"]
    paper = TuneConfig(model="aae_mtl", preset="paper", epochs=7, directory="runs/x")
    assert (paper.model_preset, paper.epochs, paper.patience) == ("latif2020", 7, 5)
    assert paper.out == "runs/x/aae_mtl" and paper.export_dir is None
    assert TuneConfig(model="aae_mtl", project_name="p").out == "runs/tune/p"
    # Every family the config offers has a HyperModel.
    assert set(experiment.MODELS) == set(hypermodels.HYPERMODELS)


@pytest.mark.parametrize(
    "fields, field",
    [
        ({}, "model"),
        ({"model": "aae_mtl", "max_trials": 0}, "max_trials"),
        ({"model": "aae_mtl", "cv_folds": 1}, "cv_folds"),
        ({"model": "aae_mtl", "single_task": True}, "single_task"),
        ({"model": "aae_mtl", "tuner": "grid"}, "tuner"),
        ({"model": "aae_mtl", "patience": 0}, "patience"),
        ({"model": "aae_mtl", "hyperband_factor": 1}, "hyperband_factor"),
        ({"model": "aae_mtl", "export_dir": "saved_models"}, "export_dir"),
        ({"model": "aae_mtl", "label_map": "savee8"}, "label_map"),
    ],
)
def test_bad_configuration_names_the_field(fields, field):
    with pytest.raises(ConfigError) as error:
        TuneConfig(**fields)
    assert error.value.field == field


# ------------------------------------------------------------------- labels


def _utterance(corpus, speaker, label, language="en", gender="male", naturalness="acted"):
    return Utterance(
        path=f"/{corpus}/{speaker}/{label}.wav", corpus=corpus, language=language,
        speaker=speaker, gender=gender, naturalness=naturalness, label=label,
    )


def test_label_maps_are_the_library_defaults():
    for kind, name in DEFAULT_LABEL_MAPS.items():
        assert experiment.label_map_name("aae_mtl", kind) == name
    assert experiment.label_map_name("resnet_lstm_mtl", "savee") == "binary_valence"
    assert experiment.label_map_name("kim_mtl", "emodb") == "four_class"
    assert experiment.label_map_name("kim_mtl", "emodb", "savee7") == "savee7"
    with pytest.raises(ConfigError) as error:
        experiment.label_map_name("aae_mtl", "folder")
    assert error.value.field == "label_map"


def test_language_labels_index_each_language_s_label_set():
    utterances = [
        _utterance("savee", "DC", "surprise"),
        _utterance("emodb", "03", "boredom", language="de"),
        _utterance("emodb", "03", "anger", language="de"),
        _utterance("emodb", "08", "laughter", language="de"),
    ]
    maps = {"savee": get_label_map("savee7"), "emodb": get_label_map("emodb7")}
    emotion, classes = experiment.language_labels(utterances, ["savee", "emodb", "emodb", "emodb"],
                                                  maps)
    assert list(classes) == ["en", "de"]
    assert classes["en"] == list(maps["savee"].classes)
    assert classes["de"] == list(maps["emodb"].classes)
    assert emotion.tolist() == [
        classes["en"].index("surprise"), classes["de"].index("boredom"),
        classes["de"].index("anger"), -1,
    ]


def test_validate_every_language_moves_training_speakers_only():
    utterances = (
        [_utterance("savee", s, "anger") for s in ("DC", "JE", "JK")]
        + [_utterance("emodb", s, "anger", language="de") for s in ("03", "08", "09")]
    )
    emotion = np.zeros(len(utterances), dtype=np.int32)
    fold = Fold(name="savee_DC", train=np.array([2, 3, 4, 5]), validation=np.array([1]),
                test=np.array([0]), test_speakers=("savee:DC",), validation_speakers=("savee:JE",))
    moved = experiment.validate_every_language(utterances, fold, emotion, 1, seed=0)
    german = {utterances[i].speaker_id for i in moved.validation} - {"savee:JE"}
    assert len(german) == 1 and german < {"emodb:03", "emodb:08", "emodb:09"}
    assert not {utterances[i].speaker_id for i in moved.train} & german
    assert moved.test.tolist() == [0] and moved.validation_speakers[0] == "savee:JE"


def test_task_labels_take_auxiliary_classes_from_training_rows():
    utterances = [
        _utterance("emodb", "03", "anger", gender="male"),
        _utterance("emodb", "08", "anger", gender="female"),
        _utterance("emodb", "09", "anger", gender="female"),
    ]
    emotion = np.zeros(3, dtype=np.int32)
    labels, classes = experiment.task_labels("aae_mtl", utterances, emotion, np.array([0, 1]))
    assert classes == {"speaker": ["emodb:03", "emodb:08"], "gender": ["female", "male"]}
    assert labels["speaker"].tolist() == [0, 1, -1]  # not a training speaker: no class
    labels, classes = experiment.task_labels(
        "attention_cnn_blstm", utterances, emotion, np.array([0, 1]), single_task=True
    )
    assert set(labels) == {"emotion"} and classes == {}
    notes = []
    labels, classes = experiment.task_labels(
        "kim_mtl", utterances, emotion, np.array([0, 1, 2]), log=notes.append
    )
    assert set(classes) == {"gender"} and any("no naturalness head" in n for n in notes)


# ------------------------------------------------------------------ splits


def test_search_splits_must_be_speaker_independent():
    utterances = [_utterance("savee", s, "anger") for s in ("DC", "JE", "JK", "KL")]
    ok = split_manifest(utterances, [2, 3], [1], [0])
    experiment.check_search_split(ok, "part 0")
    with pytest.raises(SpeakerLeakageError, match="savee:DC"):
        experiment.check_search_split(split_manifest(utterances, [2, 3], [0, 1], [0]), "part 0")
    with pytest.raises(SpeakerLeakageError, match="savee:JK"):
        experiment.check_search_split(split_manifest(utterances, [2, 3], [1, 2], [0]), "part 0")


@pytest.mark.parametrize("family", sorted(hypermodels.HYPERMODELS))
def test_hypermodels_build_through_the_experiments_builders(family, monkeypatch):
    """`from_preset` of the model class (the AAE: `aae_mtl.build_aae_model`), as the experiments."""
    import keras_tuner

    from ser_keras.models import aae_mtl

    hypermodel, _ = tiny_hypermodel(family)
    calls = []
    if family == "aae_mtl":
        original = aae_mtl.build_aae_model

        def build_aae_model(num_classes, variant, preset, **kwargs):
            calls.append(preset)
            return original(num_classes, variant, preset, **kwargs)

        monkeypatch.setattr(aae_mtl, "build_aae_model", build_aae_model)
        model_class = aae_mtl.AAEMultiTaskModel
    else:
        model_class = hypermodel.model_class
        original = model_class.from_preset.__func__

        def from_preset(cls, preset, *args, **kwargs):
            calls.append(preset)
            return original(cls, preset, *args, **kwargs)

        monkeypatch.setattr(model_class, "from_preset", classmethod(from_preset))
    model = hypermodel.build(keras_tuner.HyperParameters())
    assert isinstance(model, model_class)
    # A dict preset builds on the paper preset's name (its arguments override every value).
    assert calls == [hypermodel.preset_name or hypermodel.paper_preset]


def test_build_hypermodel_gives_each_family_its_heads():
    built = hypermodels.build_hypermodel(
        "attention_cnn_blstm", preset="fu2021_cpu", input_shape=(256, 128), num_emotions=7,
        classes={"speaker": ["a", "b"]},
    )
    assert (built.num_emotions, built.num_speakers, built.fixed["num_frames"]) == (7, 2, 256)
    built = hypermodels.build_hypermodel(
        "aae_mtl", preset="cpu_small", input_shape=(32, 16), num_emotions=4,
        classes={"gender": ["female", "male"]}, seed=1,
    )
    assert built.num_classes == {"emotion": 4, "gender": 2} and built.variant == "aae_mtl"
    built = hypermodels.build_hypermodel(
        "aae_mtl", preset="cpu_small", input_shape=(32, 16), num_emotions=4,
    )
    assert built.variant == "aae_stl"
    with pytest.raises(ValueError, match="vgg"):
        hypermodels.build_hypermodel("vgg", preset="x", input_shape=(1, 1))


# ------------------------------------------------------------------ a search


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_search_validates_on_training_speakers_only(tmp_path, cache_dir, monkeypatch):
    fits = record_fits(monkeypatch)
    search = TuneSearch(TuneConfig(
        model="attention_cnn_blstm", max_trials=1, epochs=1, synthetic_per_emotion=1,
        quiet=True, directory=str(tmp_path), cache_dir=str(cache_dir),
    ))
    result = search.run()
    data = search.search_data
    test = set(data.test_speakers)
    assert test and {data.utterances[i].speaker_id for i in data.test} == test

    # What the tuner trained and validated on, speaker by speaker.
    (trained, validated), = speaker_splits_of_fits(fits, data)
    assert trained and validated
    assert not trained & test, "the test speaker was trained on"
    assert not validated & test, "the test speaker was validated on"
    assert not trained & validated, "a validation speaker was trained on"

    # The manifest written says the same.
    best = json.loads((tmp_path / "attention_cnn_blstm" / "best_hyperparameters.json").read_text())
    assert best == json.loads(json.dumps(result.results))
    (manifest,) = best["splits"]
    assert {e["speaker"] for e in manifest["validation_speakers"]} == validated
    assert {e["speaker"] for e in manifest["test_speakers"]} == test
    # SAVEE's 4 speakers: 1 tested, 1 validating, 2 in the speaker head.
    assert best["model_arguments"]["num_speakers"] == 2
    assert best["objective"] == "val_emotion_ua"
    assert best["hyperparameters"]["speaker_loss_weight"] > 0
    assert best["model_arguments"]["conv_filters"][0] <= 128  # the CPU preset's widths
    run_config = json.loads((tmp_path / "attention_cnn_blstm" / "run_config.json").read_text())
    assert run_config["label_map"] == "savee7" and run_config["test_speakers"] == sorted(test)
