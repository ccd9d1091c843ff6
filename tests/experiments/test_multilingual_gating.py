"""Paper 003's experiment through its public API: configuration and protocol wiring."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from ser_keras.corpora.records import Utterance
from ser_keras.data import splits
from ser_keras.experiments import (
    ConfigError,
    MultilingualGating,
    MultilingualGatingConfig,
    SpeakerLeakageError,
    multilingual_gating,
)
from ser_keras.experiments.base import check_disjoint_parts
from ser_keras.export.saved_model import load_metadata
from ser_keras.training import runner
from ser_keras.training.recipe import RECIPES

SEED = 4


def _tiny_config(root, **changes):
    # The functionals expert only (no recurrent layer to trace): the wiring is
    # the same for every expert; the encoders are tested in tests/models.
    options = dict(
        variants=("multigate",),
        ablation="multigate",
        experts=("statistics",),
        epochs=1,
        repeats=2,
        split="speaker",
        seed=SEED,
        synthetic_per_emotion=2,
        synthetic_emodb_per_emotion=1,
        quiet=True,
        out=str(root / "run"),
        cache_dir=str(root / "cache"),
        export_dir=str(root / "exported"),
    )
    options.update(changes)
    return MultilingualGatingConfig(**options)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny speaker-split run (multigate with and without the auxiliary loss, 2 repeats).

    Records every fit's splits and options, and the experiment's data.
    """
    root = tmp_path_factory.mktemp("multigate_experiment")
    calls, loaded = [], []
    real_fit = runner.fit_and_evaluate
    real_load = MultilingualGating.load_data

    def recording_fit(build_model, train, validation, test, **options):
        result = real_fit(build_model, train, validation, test, **options)
        model = keras.models.load_model(str(options["fold_dir"] / "best.keras"))
        calls.append(
            {
                "train": train,
                "validation": validation,
                "test": test,
                "options": options,
                "contrastive": model.task_contrastive_weights,
                "result": dict(result),
            }
        )
        return result

    def recording_load(self, *args, **kwargs):
        loaded.append(real_load(self, *args, **kwargs))
        return loaded[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", recording_fit)
        patch.setattr(MultilingualGating, "load_data", recording_load)
        result = MultilingualGating(_tiny_config(root)).run()
    return root, result, calls, loaded[0]


def _speakers(entries):
    return {entry["speaker"] for entry in entries}


# ---------------------------------------------------------- configuration


def test_config_takes_the_preset_and_overrides():
    config = MultilingualGatingConfig(epochs=3)
    assert config.epochs == 3
    assert config.batch_size == multilingual_gating.PRESETS["quick"]["batch_size"]
    assert config.variants == multilingual_gating.TABLE3_VARIANTS and config.split == "random"
    paper = MultilingualGatingConfig(preset="paper")
    assert (paper.model_preset, paper.epochs, paper.repeats) == ("wang", 20, 5)
    assert paper.ablation == "single"


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"repeats": 0}, "repeats"),
        ({"preset": "nope"}, "preset"),
        ({"variants": ("mmoe", "bogus")}, "variants"),
        ({"experts": ("wav2vec",)}, "experts"),
        ({"ablation": "all"}, "ablation"),
        ({"split": "corpus"}, "split"),
        ({"gate_selector": "ge2e"}, "gate_selector"),
        ({"embedding": ("w2v",)}, "embedding"),
        ({"embedding": ("w2v=/no/such.npz",)}, "embedding"),
        ({"synthetic_per_emotion": 1}, "synthetic_per_emotion"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        MultilingualGatingConfig(**changes)
    assert info.value.field == field
    assert str(info.value).startswith(field)


def test_embedding_names_are_checked(tmp_path):
    path = tmp_path / "e.npz"
    np.savez(path, paths=np.array(["/x.wav"]), embeddings=np.zeros((1, 2), "float32"))
    config = MultilingualGatingConfig(embedding=(f"w2v={path}",), gate_selector="w2v")
    assert config.embedding_files == {"w2v": path}
    for taken in ("statistics", "features"):
        with pytest.raises(ConfigError, match="taken or repeated"):
            MultilingualGatingConfig(embedding=(f"{taken}={path}",))
    with pytest.raises(ConfigError, match="taken or repeated"):
        MultilingualGatingConfig(embedding=(f"w2v={path}", f"w2v={path}"))


def test_building_the_config_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from ser_keras.experiments import MultilingualGatingConfig\n"
        "MultilingualGatingConfig(preset='paper', epochs=2)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "assert not heavy, heavy[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_experiment_names_agree_with_the_model():
    from ser_keras.models import multigate

    assert multilingual_gating.MODEL_EXPERTS == multigate.EXPERT_KINDS
    assert set(multilingual_gating.TABLE3_VARIANTS) | {"single"} == set(multigate.VARIANTS)
    assert set(multilingual_gating.VARIANT_TITLES) == set(multigate.VARIANTS)


def test_embedding_file_matches_paths_and_lists_the_missing(tmp_path):
    utterances = [
        Utterance(f"/x/a_{n}.wav", "emodb", "de", "a", label=label)
        for n, label in enumerate(["anger", "neutral", "anger"])
    ]
    path = tmp_path / "emb.npz"
    np.savez(
        path,
        paths=np.array([utterances[0].path, utterances[2].path]),
        embeddings=np.array([[1.0, 2.0], [3.0, 4.0]], dtype="float32"),
    )
    array, keep, skipped = multilingual_gating.load_embedding_file("w2v", path, utterances)
    np.testing.assert_array_equal(keep, [True, False, True])
    np.testing.assert_array_equal(array[2], [3.0, 4.0])
    assert len(skipped) == 1 and "no w2v embedding" in skipped[0].reason


def test_check_disjoint_parts_names_the_shared_rows():
    check_disjoint_parts([0, 1], [2], [3, 4], "here")
    with pytest.raises(SpeakerLeakageError, match=r"here: the test rows \[4\].*validation"):
        check_disjoint_parts([0, 1], [2, 4], [3, 4], "here")


# ----------------------------------------------------------------- wiring


def test_no_test_speaker_is_trained_or_validated_on(finished):
    _, result, _, _ = finished
    folds = result.results["folds"]
    assert set(folds) == {"multigate", "multigate_noaux"}
    for entries in folds.values():
        assert [entry["fold"] for entry in entries] == ["r1", "r2"]
        for entry in entries:
            assert entry["speaker_independent"] is True
            test = _speakers(entry["test_speakers"])
            assert not test & _speakers(entry["train_speakers"])
            assert not test & _speakers(entry["validation_speakers"])
            # Every language is tested, and scored.
            assert {s.split(":")[0] for s in test} == {"savee", "emodb"}
            assert set(entry["languages"]) == {"en", "de"}


def test_every_setting_uses_the_same_folds_and_each_repeat_its_seed(finished):
    _, result, calls, _ = finished
    folds = result.results["folds"]
    with_aux, without_aux = folds["multigate"], folds["multigate_noaux"]
    for a, b in zip(with_aux, without_aux, strict=True):
        for part in ("train_speakers", "validation_speakers", "test_speakers"):
            assert a[part] == b[part]
    by_setting = {}
    for call in calls:
        fold_dir = call["options"]["fold_dir"]
        by_setting.setdefault(fold_dir.parent.name, {})[fold_dir.name] = call
    assert set(by_setting) == {"multigate", "multigate_noaux"}
    for repeat in (1, 2):
        first, second = (by_setting[name][f"fold_r{repeat}"] for name in by_setting)
        assert first["options"]["seed"] == second["options"]["seed"] == SEED + repeat - 1
        for part in ("train", "validation", "test"):
            np.testing.assert_array_equal(first[part].inputs, second[part].inputs)
    # The repeats draw other splits.
    assert not np.array_equal(
        by_setting["multigate"]["fold_r1"]["test"].inputs,
        by_setting["multigate"]["fold_r2"]["test"].inputs,
    )


def test_checkpoint_is_selected_on_validation_rows_only(finished):
    _, result, calls, data = finished
    assert len(calls) == 4
    row_speaker = {
        row.tobytes(): utterance.speaker_id
        for row, utterance in zip(data.features, data.utterances, strict=True)
    }
    for call in calls:
        assert call["options"]["monitor"] == "val_mean_ua"
        test_speakers = {row_speaker[row.tobytes()] for row in call["test"].inputs}
        validation_speakers = {row_speaker[row.tobytes()] for row in call["validation"].inputs}
        train_speakers = {row_speaker[row.tobytes()] for row in call["train"].inputs}
        assert validation_speakers and not validation_speakers & test_speakers
        assert not train_speakers & test_speakers
        # What was passed is what the manifest says.
        entry = next(
            e
            for e in result.results["folds"][call["options"]["fold_dir"].parent.name]
            if f"fold_{e['fold']}" == call["options"]["fold_dir"].name
        )
        assert validation_speakers == _speakers(entry["validation_speakers"])
        assert test_speakers == _speakers(entry["test_speakers"])


def test_the_ablation_trains_without_the_auxiliary_loss(finished):
    _, result, calls, _ = finished
    for call in calls:
        weights = call["contrastive"]
        if call["options"]["fold_dir"].parent.name == "multigate_noaux":
            assert weights and all(value == 0.0 for value in weights.values())
        else:
            assert weights and all(value > 0.0 for value in weights.values())
    table4 = result.results["table4"]
    assert table4["protocol"] == "multigate"
    assert table4["with_aux"] == result.results["table3"]["multigate"]


def test_the_best_validation_model_is_exported(finished):
    root, result, _, _ = finished
    scores = {
        (setting, entry["fold"]): entry["best_validation_mean_ua"]
        for setting, entries in result.results["folds"].items()
        for entry in entries
    }
    exported = result.results["exported"]
    assert exported["validation_mean_ua"] == pytest.approx(max(scores.values()))
    assert scores[(exported["setting"], exported["fold"])] == pytest.approx(max(scores.values()))
    assert result.export_path is not None and (result.export_path / "saved_model.pb").exists()
    assert result.export_path.parent.name == "multilingual_multigate"
    on_disk = json.loads((root / "run" / "results.json").read_text())
    assert on_disk["exported"] == exported


def test_scores_are_written_in_percent(finished):
    """languages.json and results.json hold percent of the fractions `train_fold` returns."""
    root, result, calls, _ = finished
    assert result.results["units"] == "percent"
    assert json.loads((root / "run" / "results.json").read_text())["units"] == "percent"
    for call in calls:
        fold_dir = call["options"]["fold_dir"]
        record = json.loads((fold_dir / "languages.json").read_text())
        assert record["units"] == "percent"
        assert record["best_validation_mean_ua"] == pytest.approx(
            100 * call["result"]["best_validation"]
        )
        (entry,) = [
            e for e in result.results["folds"][fold_dir.parent.name]
            if e["fold"] == fold_dir.name.removeprefix("fold_")
        ]
        for language, scores in record["languages"].items():
            for key in ("ua", "wa", "macro_f1"):
                assert entry["languages"][language][key] == scores[key]
    # The test parts are tiny: the pooled UA over languages is percent, not a fraction.
    uas = [
        scores["ua"]
        for entries in result.results["folds"].values()
        for entry in entries
        for scores in entry["languages"].values()
    ]
    assert max(uas) > 1.0


def test_a_stored_fraction_record_is_read_as_percent():
    old = {
        "languages": {"en": {"ua": 0.5, "wa": 0.25, "macro_f1": 0.4, "num_test": 8}},
        "best_validation_mean_ua": 0.75,
    }
    record = multilingual_gating.record_in_percent(old)
    assert record["units"] == "percent"
    assert record["languages"]["en"] == {"ua": 50.0, "wa": 25.0, "macro_f1": 40.0, "num_test": 8}
    assert record["best_validation_mean_ua"] == 75.0
    assert multilingual_gating.record_in_percent(record) == record
    with pytest.raises(ValueError, match="fraction"):
        multilingual_gating.record_in_percent({**old, "units": "fraction"})


def test_results_md_names_the_setup_and_chance(finished):
    root, result, _, _ = finished
    text = (root / "run" / "results.md").read_text()
    configuration = result.results["configuration"]
    assert f"Data: {configuration['data']}." in text
    assert f"Preset {configuration['preset']} " in text
    assert "1 epochs, 2 repeat(s) of a speaker split" in text
    for language, entry in result.results["languages"].items():
        assert f"{language} {100 / len(entry['class_names']):.2f} %" in text
    assert "in percent" in text


def _leaking_split(part_from, part_to):
    """A `language_split` that also puts the test rows into another part."""
    real = splits.language_split

    def leaking(*args, **kwargs):
        parts = list(real(*args, **kwargs))
        parts[part_to] = np.union1d(parts[part_to], parts[part_from])
        return tuple(parts)

    return leaking


@pytest.mark.parametrize("split, part", [("speaker", 1), ("random", 0)])
def test_a_fold_that_tests_on_what_it_trains_on_is_refused(
    tmp_path, monkeypatch, finished, split, part
):
    root, _, _, _ = finished
    monkeypatch.setattr(splits, "language_split", _leaking_split(2, part))
    config = _tiny_config(
        tmp_path, split=split, repeats=1, cache_dir=str(root / "cache"), export_dir=None
    )
    match = r"the test speakers \[.*\] also appear in the validation" if split == "speaker" else (
        r"the test rows \[.*\].* are also in the training"
    )
    with pytest.raises(SpeakerLeakageError, match=match):
        MultilingualGating(config).run()
    assert not (tmp_path / "run" / "multigate" / "fold_r1" / "result.json").exists()


# ------------------------------------------------------- training recipe


def test_the_cpu_preset_uses_the_cpu_recipe():
    config = MultilingualGatingConfig(preset="cpu")
    assert config.training_recipe() == RECIPES["cpu"]
    assert config.model_preset == "wang_cpu"
    for preset in ("quick", "paper"):
        assert MultilingualGatingConfig(preset=preset).training_recipe() == RECIPES["paper"]


def test_results_record_the_training_recipe(finished):
    root, result, _, _ = finished
    paper = RECIPES["paper"].to_dict()
    assert json.loads((root / "run" / "results.json").read_text())["training_recipe"] == paper
    assert result.results["configuration"]["training_recipe"] == paper


def _valid_frames(features, pad_value=-1.0):
    return ~np.all(features == pad_value, axis=-1)


def test_the_recipe_reaches_training_and_the_export(tmp_path):
    """The cpu recipe with label smoothing and AdamW: every part reaches the fit."""
    calls, loaded = [], []
    real_fit = runner.fit_and_evaluate
    real_load = MultilingualGating.load_data

    def recording_fit(build_model, train, validation, test, **options):
        compiled = build_model()
        calls.append({"parts": (train, validation, test), "options": options,
                      "optimizer": compiled.optimizer,
                      "label_smoothing": compiled._label_smoothing})
        return real_fit(build_model, train, validation, test, **options)

    def recording_load(self, *args, **kwargs):
        loaded.append(real_load(self, *args, **kwargs))
        return loaded[-1]

    config = _tiny_config(tmp_path, ablation="none", repeats=1, recipe="cpu",
                          label_smoothing=0.1, adamw=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", recording_fit)
        patch.setattr(MultilingualGating, "load_data", recording_load)
        result = MultilingualGating(config).run()
    (call,) = calls
    data = loaded[0]
    # Per-speaker normalisation of the rows given to the fit: every band of a
    # speaker's valid frames has mean 0 and deviation 1 over its utterances.
    speaker_of = {
        row.tobytes(): u.speaker_id for row, u in zip(data.features, data.utterances, strict=True)
    }
    rows = np.concatenate([part.inputs for part in call["parts"]])
    speakers = np.array([speaker_of[row.tobytes()] for row in rows])
    assert set(speakers) == {u.speaker_id for u in data.utterances}
    for speaker in set(speakers):
        features = rows[speakers == speaker]
        frames = features[_valid_frames(features)]
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-3)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-2)
    augment = call["options"]["augment"]
    assert (augment.pad_value, augment.mask_value) == (-1.0, 0.0)
    assert call["options"]["recalibrate_batch_norm"] is True
    assert isinstance(call["optimizer"], keras.optimizers.AdamW)
    assert call["label_smoothing"] == pytest.approx(0.1)
    recorded = result.results["training_recipe"]
    assert recorded == {**RECIPES["cpu"].to_dict(), "adamw": True, "label_smoothing": 0.1}
    metadata = load_metadata(result.export_path)
    assert metadata["speaker_normalization"]["enabled"] is True
    assert metadata["metadata"]["training_recipe"] == recorded


class _Stop(Exception):
    pass


def test_spec_augment_masks_only_the_log_mel_view_of_dict_inputs(tmp_path, finished):
    import tensorflow as tf

    root, _, _, data = finished
    path = tmp_path / "w2v.npz"
    vectors = np.random.default_rng(0).normal(size=(len(data.utterances), 3)).astype("float32")
    np.savez(path, paths=np.array([u.path for u in data.utterances]), embeddings=vectors)
    options = []

    def stopping_fit(build_model, train, validation, test, **fit_options):
        options.append((train, fit_options))
        raise _Stop

    config = _tiny_config(tmp_path, cache_dir=str(root / "cache"), export_dir=None,
                          repeats=1, embedding=(f"w2v={path}",), spec_augment=True,
                          normalization="corpus")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", stopping_fit)
        with pytest.raises(_Stop):
            MultilingualGating(config).run()
    ((train, fit_options),) = options
    assert set(train.inputs) == {"features", "w2v"}
    batch = {name: tf.constant(value[:16]) for name, value in train.inputs.items()}
    augmented = fit_options["augment"](batch, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(augmented["w2v"], train.inputs["w2v"][:16])
    features, masked = train.inputs["features"][:16], augmented["features"].numpy()
    changed = masked != features
    assert changed.any()
    np.testing.assert_array_equal(masked[changed], 0.0)  # the mean after normalisation
    # Padding frames are never masked.
    np.testing.assert_array_equal(masked[~_valid_frames(features)], -1.0)
