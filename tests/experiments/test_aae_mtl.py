"""Paper 002's experiment and the AAE's training step, through their public API.

The experiment runs once (module fixture) on a tiny synthetic corpus with
every fit recorded; the AAE tests call `AAEMultiTaskModel.train_step` on a
`cpu_small` model built the way the experiment builds it.
"""

import dataclasses
import json

import keras
import numpy as np
import pytest

from ser_keras.data import pipeline
from ser_keras.experiments import (
    AAEMultiTask,
    AAEMultiTaskConfig,
    ConfigError,
    SpeakerLeakageError,
    aae_mtl,
)
from ser_keras.export.saved_model import load_metadata
from ser_keras.models.aae_mtl import VARIANTS, AAEMultiTaskModel, build_aae_model, get_preset
from ser_keras.training import runner
from ser_keras.training.recipe import RECIPES, TrainingRecipe

NUM_CLASSES = {"emotion": 3, "speaker": 4, "gender": 2}
ARCHITECTURE = get_preset("cpu_small")
FRAMES, MELS = ARCHITECTURE["num_frames"], ARCHITECTURE["num_mels"]


def _tiny_config(root, **changes):
    options = dict(
        preset="tiny",
        settings=("mtl", "cnn"),
        epochs=1,
        pretrain_epochs=0,
        folds=2,
        synthetic_per_emotion=1,
        quiet=True,
        out=str(root / "run"),
        cache_dir=str(root / "cache"),
        export_dir=None,
    )
    options.update(changes)
    return AAEMultiTaskConfig(**options)


# A training recipe with every option the experiment applies changed, so
# that the tiny run checks that each reaches the training (pre-training
# included) and the export, as well as the protocol.
RECIPE = dict(
    normalization="speaker",
    spec_augment=True,
    adamw=True,
    weight_decay=0.01,
    peak_learning_rate=2e-3,
    recalibrate_batch_norm=True,
)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny run of mtl and cnn on two leave-one-speaker-out folds, every fit recorded."""
    root = tmp_path_factory.mktemp("aae_experiment")
    calls, pretraining, datasets = [], [], []
    real_fit = runner.fit_and_evaluate
    real_pretrain = AAEMultiTaskModel.pretrain_auxiliary
    real_make_dataset = pipeline.make_dataset

    def recording_fit(build_model, train, validation, test, **options):
        compiled = build_model()
        result = real_fit(build_model, train, validation, test, **options)
        calls.append(
            {
                "fold_dir": options["fold_dir"],
                "train": train,
                "validation": validation,
                "test": test,
                "monitor": options["monitor"],
                "callback_monitors": [
                    getattr(callback, "monitor", None) for callback in options["extra_callbacks"]
                ],
                "augment": options.get("augment"),
                "optimizers": compiled.phase_optimizers,
                "result": result,
            }
        )
        return result

    def recording_pretrain(self, x=None, y=None, **options):
        pretraining.append({"optimizers": self.phase_optimizers, "augment": datasets[-1]})
        return real_pretrain(self, x, y, **options)

    def recording_make_dataset(inputs, labels=None, **options):
        datasets.append(options.get("augment"))
        return real_make_dataset(inputs, labels, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "fit_and_evaluate", recording_fit)
        patch.setattr(AAEMultiTaskModel, "pretrain_auxiliary", recording_pretrain)
        patch.setattr(pipeline, "make_dataset", recording_make_dataset)
        config = _tiny_config(
            root, pretrain_epochs=1, export_dir=str(root / "exported"), **RECIPE
        )
        result = AAEMultiTask(config).run()
    return root, result, calls, pretraining


def _speakers(entries):
    return {entry["speaker"] for entry in entries}


def _rows(inputs):
    segments = inputs["segments"] if isinstance(inputs, dict) else inputs
    return {row.tobytes() for row in np.asarray(segments)}


# --------------------------------------------------------------- configuration


def test_config_takes_the_preset_and_overrides():
    config = AAEMultiTaskConfig(epochs=3)
    assert config.epochs == 3 and config.settings == aae_mtl.DEFAULT_SETTINGS
    assert config.batch_size == aae_mtl.PRESETS["quick"]["batch_size"]
    paper = AAEMultiTaskConfig(preset="paper")
    assert paper.model_preset == "latif2020" and paper.folds is None
    assert paper.optimizer == {"class_name": "SGD", "config": {"learning_rate": 1e-4}}
    # The front-end takes its mel bands from the model preset: one number.
    for preset in aae_mtl.PRESETS:
        experiment = AAEMultiTask(AAEMultiTaskConfig(preset=preset))
        assert experiment.frontend().num_mels == experiment.model_architecture()["num_mels"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"epochs": 0}, "epochs"),
        ({"pretrain_epochs": -1}, "pretrain_epochs"),
        ({"folds": 0}, "folds"),
        ({"settings": ("mtl", "bogus")}, "settings"),
        ({"protocol": "random"}, "protocol"),
        ({"cnn_epoch": "twice"}, "cnn_epoch"),
        ({"label_map": "nope"}, "label_map"),
        ({"additional": ("folder:bn:/tmp",)}, "additional"),
        ({"labelled": "folder:bn:/tmp"}, "labelled"),
        ({"validation_fraction": 0.9}, "validation_fraction"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        AAEMultiTaskConfig(**changes)
    assert info.value.field == field


# ------------------------------------------------------------ protocol wiring


def test_no_test_speaker_is_trained_or_validated_on(finished):
    _, result, _, _ = finished
    held_out = set(result.results["configuration"]["held_out_verification_speakers"])
    assert held_out
    for entry in result.results["settings"].values():
        assert len(entry["folds"]) == 2
        for fold in entry["folds"]:
            test = _speakers(fold["test_speakers"])
            assert test == {f"emodb:{fold['fold'].split('_')[-1]}"}
            assert not test & _speakers(fold["train_speakers"])
            assert not test & _speakers(fold["validation_speakers"])
            # The speakers held out for verification are never trained on either.
            assert not held_out & _speakers(fold["train_speakers"])
            assert not held_out & _speakers(fold["validation_speakers"])
    first = result.results["settings"]["mtl"]["folds"][0]
    # Verification trials: the test speaker and the held-out speakers.
    trials = _speakers(first["verification"]["speakers"])
    assert trials == held_out | _speakers(first["test_speakers"])


def test_every_setting_uses_the_same_folds(finished):
    _, result, calls, _ = finished
    mtl, cnn = (result.results["settings"][name]["folds"] for name in ("mtl", "cnn"))
    assert [fold["fold"] for fold in mtl] == [fold["fold"] for fold in cnn]
    for a, b in zip(mtl, cnn, strict=True):
        assert a["test_speakers"] == b["test_speakers"]
        assert a["validation_speakers"] == b["validation_speakers"]
        labelled = [item for item in a["train_speakers"] if item["speaker"].startswith("emodb:")]
        assert labelled == b["train_speakers"]
    by_fold = {}
    for call in calls:
        by_fold.setdefault(call["fold_dir"].name, []).append(call)
    assert len(by_fold) == 2
    for first, second in by_fold.values():
        np.testing.assert_array_equal(
            first["test"].inputs["utterance_ids"], second["test"].inputs["utterance_ids"]
        )
        assert _rows(first["validation"].inputs) == _rows(second["validation"].inputs)


def test_checkpoint_is_selected_on_validation_rows_only(finished):
    _, _, calls, _ = finished
    assert len(calls) == 4
    for call in calls:
        test_rows = _rows(call["test"].inputs)
        assert not test_rows & _rows(call["validation"].inputs)
        assert not test_rows & _rows(call["train"].inputs)
        assert call["monitor"] == "val_emotion_ua"
        assert call["callback_monitors"] == ["val_emotion_ua"]


def test_settings_build_their_variants(finished):
    root, result, _, _ = finished
    for setting in ("mtl", "cnn"):
        variant, tasks, _, _, _ = aae_mtl.SETTINGS[setting]
        fold = result.results["settings"][setting]["folds"][0]
        model = keras.models.load_model(
            str(root / "run" / setting / f"fold_{fold['fold']}" / "best.keras")
        )
        assert model.tasks == tasks
        assert model.alpha == VARIANTS[variant]["alpha"]
        assert model.beta == VARIANTS[variant]["beta"]
        assert (model.decoder is not None) == VARIANTS[variant]["reconstruction"]
        assert (model.discriminator is not None) == VARIANTS[variant]["adversarial"]
        if "speaker" in tasks:
            # One speaker class per training speaker (labelled and additional).
            trained = _speakers(fold["train_speakers"]) | _speakers(fold["validation_speakers"])
            assert model.classifiers["speaker"].output.shape[-1] == len(trained)
    # The cnn's epoch is matched to the mtl's (as many optimizer updates).
    mtl, cnn = (result.results["settings"][name]["folds"][0] for name in ("mtl", "cnn"))
    assert cnn["updates_per_epoch"] == mtl["updates_per_epoch"]
    assert cnn["labelled_train_segments"] < cnn["train_segments_per_epoch"]


def test_a_fold_that_leaks_the_test_speaker_is_refused(tmp_path, monkeypatch, finished):
    root, _, _, _ = finished
    original = AAEMultiTask.folds

    def validating_on_the_test_speaker(self, data):
        return [dataclasses.replace(fold, validation=fold.test) for fold in original(self, data)]

    monkeypatch.setattr(AAEMultiTask, "folds", validating_on_the_test_speaker)
    config = _tiny_config(tmp_path, settings=("cnn",), folds=1, cache_dir=str(root / "cache"))
    with pytest.raises(SpeakerLeakageError, match="emodb:"):
        AAEMultiTask(config).run()
    assert not list((tmp_path / "run").rglob("result.json"))


def test_additional_per_speaker_caps_the_training_speakers_only(tmp_path, finished):
    root, result, _, _ = finished
    config = _tiny_config(tmp_path, additional_per_speaker=3, cache_dir=str(root / "cache"))
    data = AAEMultiTask(config).load_data()
    held_out = set(data["held_out_speakers"])
    assert held_out == set(result.results["configuration"]["held_out_verification_speakers"])
    counts = {}
    for utterance in data["utterances"][data["num_labelled"]:]:
        counts[utterance.speaker_id] = counts.get(utterance.speaker_id, 0) + 1
    per_speaker = aae_mtl.PRESETS["tiny"]["synthetic_additional_per_speaker"]
    assert {counts[speaker] for speaker in held_out} == {per_speaker}
    assert {n for speaker, n in counts.items() if speaker not in held_out} == {3}
    trained = {data["speaker_ids"][i] for i in data["additional_train_index"]}
    assert trained == set(counts) - held_out


def test_results_json_holds_the_manifest_next_to_the_metrics(finished):
    root, result, _, _ = finished
    on_disk = json.loads((root / "run" / "results.json").read_text())
    fold = on_disk["settings"]["mtl"]["folds"][0]
    assert {"wa", "ua", "train_speakers", "validation_speakers", "test_speakers"} <= set(fold)
    assert all(item["utterances"] > 0 for item in fold["train_speakers"])
    assert (root / "run" / "phase_losses_mtl.png").stat().st_size > 0


def test_results_md_names_the_data_preset_folds_epochs_and_chance(finished):
    root, _, _, _ = finished
    on_disk = json.loads((root / "run" / "results.json").read_text())
    configuration, class_names = on_disk["configuration"], on_disk["class_names"]
    num_folds = len(on_disk["settings"]["mtl"]["folds"])
    text = (root / "run" / "results.md").read_text()
    assert f"Data: {configuration['data']}." in text
    assert f"Preset {configuration['preset']} (model {configuration['model_preset']})" in text
    assert f"{configuration['epochs']} epochs at most" in text
    assert f"{num_folds} leave-one-speaker-out fold(s)" in text
    assert f"chance is {100 / len(class_names):.2f} % UA" in text


# ------------------------------------------------------------ training recipe


def test_the_training_recipe_reaches_every_fold(finished):
    _, result, calls, _ = finished
    assert calls
    for call in calls:
        # Per-speaker normalisation of whole utterances: the test part holds
        # every segment of the test speaker, so each band has mean 0 and
        # deviation 1 over its valid (not padding, 0.0) frames.
        segments = call["test"].inputs["segments"]
        frames = segments[~np.all(segments == 0.0, axis=-1)]
        np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-3)
        np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-2)
        augment = call["augment"]
        assert augment is not None and augment.mask_value == 0.0 and augment.pad_value == 0.0
        # Every phase's optimizer is the recipe's.
        for optimizer in call["optimizers"].values():
            assert isinstance(optimizer, keras.optimizers.AdamW)
            assert float(optimizer.learning_rate) == pytest.approx(2e-3)
            assert optimizer.weight_decay == pytest.approx(0.01)
        # The recalibration ran through the model's call and its validation check.
        recalibration = call["result"]["batch_norm_recalibration"]
        assert recalibration["layers"] > 0
        assert 0 <= recalibration["validation_ua_after"] <= 100
    recorded = result.results["training_recipe"]
    assert recorded == {**dataclasses.asdict(TrainingRecipe()), **RECIPE}
    assert result.results["configuration"]["training_recipe"] == recorded


def test_the_pretraining_takes_the_recipe(finished):
    _, _, _, pretraining = finished
    assert pretraining  # mtl's two folds
    for entry in pretraining:
        assert {type(o) for o in entry["optimizers"].values()} == {keras.optimizers.AdamW}
        assert entry["augment"] is not None and entry["augment"].pad_value == 0.0


def test_the_export_serves_the_speaker_normalisation(finished):
    _, result, _, _ = finished
    metadata = load_metadata(result.export_path)
    assert metadata["speaker_normalization"]["enabled"] is True
    assert metadata["metadata"]["training_recipe"]["normalization"] == "speaker"
    import tensorflow as tf

    loaded = tf.saved_model.load(str(result.export_path))
    assert {"enrol", "serving_enrolled", "serving_default"} <= set(loaded.signatures)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"lr_schedule": "cosine", "warmup_epochs": 2}, "lr_schedule"),
        ({"label_smoothing": 0.1}, "label_smoothing"),
    ],
)
def test_a_recipe_field_the_aae_cannot_apply_is_refused(tmp_path, changes, field):
    config = _tiny_config(tmp_path, **changes)
    with pytest.raises(ConfigError) as info:
        AAEMultiTask(config)
    assert info.value.field == field
    assert AAEMultiTask.recipe_unsupported[field] in str(info.value)
    assert not (tmp_path / "run").exists()
    # The same fields at the papers' values pass.
    AAEMultiTask(_tiny_config(tmp_path, recipe="paper"))


def test_the_cpu_preset_uses_the_cpu_recipe():
    config = AAEMultiTaskConfig(preset="cpu")
    # The cpu recipe less the fields the AAE cannot take, set back by its preset.
    expected = dataclasses.replace(
        RECIPES["cpu"], lr_schedule="constant", warmup_epochs=0, label_smoothing=0.0
    )
    assert config.training_recipe() == expected
    assert AAEMultiTask(config).recipe == expected
    assert AAEMultiTaskConfig().training_recipe() == RECIPES["paper"]
    assert AAEMultiTaskConfig(preset="paper").training_recipe() == RECIPES["paper"]


# --------------------------------------------------------- the AAE's training


def _model(alpha=None, generator_loss="minimax", seed=0):
    keras.utils.set_random_seed(seed)
    return build_aae_model(
        NUM_CLASSES, "aae_mtl", "cpu_small", alpha=alpha, generator_loss=generator_loss, seed=seed
    )


def _batch(size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(size, FRAMES, MELS)).astype("float32")
    y = {task: rng.integers(0, count, size).astype("int32") for task, count in NUM_CLASSES.items()}
    return x, y


def _sgd(rate):
    return keras.optimizers.SGD(learning_rate=rate)


def _real(model, codes):
    """Mean probability D(.) that the discriminator gives to "drawn from the prior"."""
    return float(np.mean(np.asarray(model.discriminator(codes, training=False))[:, 1]))


def _codes(model, x):
    # Batch statistics (no dropout in the encoder): the same codes for the same
    # weights, whatever the moving statistics.
    return model.encoder(x, training=True)


def _weights(network):
    return [np.array(variable) for variable in network.trainable_variables]


def test_discriminator_learns_prior_samples_real_and_codes_fake():
    model = _model()
    # Only the discriminator learns.
    model.compile(optimizer=_sgd(0.0), discriminator_optimizer=_sgd(0.1))
    model.set_training_stage(phases=["regularisation"])
    x, y = _batch()
    encoder = _weights(model.encoder)
    prior = np.random.default_rng(1).normal(size=_codes(model, x).shape).astype("float32")
    before = _real(model, prior), _real(model, _codes(model, x))
    for _ in range(5):
        model.train_step((x, y))
    after = _real(model, prior), _real(model, _codes(model, x))
    assert after[0] > before[0] + 0.01  # prior samples: "real"
    assert after[1] < before[1] - 0.01  # codes: "fake"
    for old, new in zip(encoder, _weights(model.encoder), strict=True):
        np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("generator_loss", ["minimax", "non_saturating"])
def test_generator_step_moves_codes_towards_real(generator_loss):
    model = _model(generator_loss=generator_loss)
    # The discriminator is fixed; only the encoder learns, as the generator.
    model.compile(optimizer=_sgd(0.0), generator_optimizer=_sgd(0.1))
    model.set_training_stage(phases=["regularisation"])
    x, y = _batch()
    discriminator = _weights(model.discriminator)
    before = _real(model, _codes(model, x))
    for _ in range(3):
        model.train_step((x, y))
    after = _real(model, _codes(model, x))
    assert after > before + 0.001
    for old, new in zip(discriminator, _weights(model.discriminator), strict=True):
        np.testing.assert_array_equal(old, new)


def _reconstruction_update(alpha):
    model = _model(alpha=alpha)
    model.compile(optimizer=_sgd(0.5))
    model.set_training_stage(phases=["reconstruction"])
    networks = [model.encoder, model.decoder]
    before = [w for network in networks for w in _weights(network)]
    model.train_step(_batch())
    after = [w for network in networks for w in _weights(network)]
    return [new - old for old, new in zip(before, after, strict=True)]


def test_alpha_scales_the_reconstruction_update():
    for delta in _reconstruction_update(0.0):
        np.testing.assert_array_equal(delta, 0.0)
    small, large = _reconstruction_update(0.2), _reconstruction_update(0.4)
    assert any(np.abs(delta).max() > 0 for delta in small)
    for a, b in zip(small, large, strict=True):
        # Up to float32 rounding of the weights (about 1e-7).
        np.testing.assert_allclose(b, 2.0 * a, rtol=1e-3, atol=1e-6)


def test_phases_run_in_the_papers_order():
    model = _model()
    model.compile(optimizer=_sgd(0.01))
    applied = []
    for phase, optimizer in model.phase_optimizers.items():
        original = optimizer.apply_gradients

        def recording(pairs, phase=phase, original=original, **kwargs):
            applied.append(phase)
            return original(pairs, **kwargs)

        optimizer.apply_gradients = recording
    model.train_step(_batch())
    assert applied == ["reconstruction", "discriminator", "generator", "classification"]
