"""The paper-002 app end to end: its options, outputs, export, resume and errors."""

import json

import numpy as np
import pytest

from apps import train_aae_mtl as app


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tiny(out, cache_dir, *extra):
    return [
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--folds",
        "1",
        "--quiet",
        "--out",
        str(out),
        "--cache-dir",
        str(cache_dir),
        *extra,
    ]


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in [
        "--labelled",
        "--label-map",
        "--additional",
        "--speaker-pattern",
        "--additional-per-speaker",
        "--protocol",
        "--settings",
        "--preset",
        "--epochs",
        "--pretrain-epochs",
        "--folds",
        "--batch-size",
        "--validation-fraction",
        "--seed",
        "--out",
        "--export-dir",
        "--no-export",
        "--resume",
        "--enrolment",
        "--verification-speakers",
        "--generator-loss",
        "--cnn-epoch",
        "--synthetic-per-emotion",
    ]:
        assert option in text
    # The defaults the configuration holds are said in the help.
    assert "Default: loso" in text and "Default: matched" in text


def test_run_writes_tables_phase_plots_eer_and_serves_waveforms(
    tmp_path, cache_dir, monkeypatch, capsys
):
    import keras
    import tensorflow as tf

    from ser_keras.training import callbacks

    # The optimizer updates each model has made by the end of every epoch of
    # its emotional training (pre-training's left out).
    updates = {}

    class CountingUpdates(callbacks.RestoreBestAndHalveLearningRate):
        def on_train_begin(self, logs=None):
            self.start = int(self.model.optimizer.iterations)
            super().on_train_begin(logs)

        def on_epoch_end(self, epoch, logs=None):
            done = int(self.model.optimizer.iterations) - self.start
            updates.setdefault(self.model.name, []).append(done)
            super().on_epoch_end(epoch, logs)

    monkeypatch.setattr(callbacks, "RestoreBestAndHalveLearningRate", CountingUpdates)
    out = tmp_path / "run"
    export_dir = tmp_path / "exported"
    arguments = _tiny(out, cache_dir, "--settings", "mtl,cnn", "--export-dir", str(export_dir))
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "REDUCED configuration" in printed

    results = json.loads((out / "results.json").read_text())
    assert set(results["settings"]) == {"mtl", "cnn"}
    for entry in results["settings"].values():
        assert 0.0 <= entry["wa"] <= 100.0 and 0.0 <= entry["ua"] <= 100.0
        assert len(entry["folds"]) == 1
        fold = entry["folds"][0]
        # Utterance-level scoring: every test utterance once, from its segments.
        assert sum(map(sum, fold["confusion"])) == fold["num_test_utterances"]
        assert fold["num_test_segments"] > fold["num_test_utterances"]
        assert fold["test_speakers"] and fold["train_speakers"] and fold["validation_speakers"]
    # The test speaker plus two held-out additional speakers are verified.
    assert results["eer_setting"] == "mtl"
    assert 0.0 <= results["eer"] <= 100.0
    verification = results["settings"]["mtl"]["folds"][0]["verification"]
    assert verification["num_enrolled_speakers"] == 3
    assert "eer" not in results["settings"]["cnn"]

    # The cnn trains on the labelled segments only, the mtl setting on more, but
    # an epoch of either makes the same number of optimizer updates (matched).
    assert results["configuration"]["cnn_epoch"] == "matched"
    mtl, cnn = (results["settings"][name]["folds"][0] for name in ("mtl", "cnn"))
    assert mtl["labelled_train_segments"] == cnn["labelled_train_segments"]
    assert cnn["labelled_train_segments"] < mtl["train_segments_per_epoch"]
    assert cnn["train_segments_per_epoch"] == mtl["train_segments_per_epoch"]
    assert updates["cnn"] == updates["mtl"] == [mtl["updates_per_epoch"]]
    assert mtl["updates_per_epoch"] == -(-mtl["train_segments_per_epoch"] // 32)
    assert "--cnn-epoch matched" in printed
    assert f"{cnn['updates_per_epoch']} updates per epoch" in printed

    tables = (out / "results.md").read_text()
    assert "layout of Table 3" in tables and "layout of Table 5" in tables
    assert "| Both |" in tables and "| CNN (single task) |" in tables
    for setting in ("mtl", "cnn"):
        assert (out / f"phase_losses_{setting}.png").stat().st_size > 0
        assert (out / f"confusion_{setting}.png").stat().st_size > 0
    pretrain_history = json.loads(
        (out / "mtl" / f"fold_{mtl['fold']}" / "pretrain_history.json").read_text()
    )
    assert set(pretrain_history) >= {"speaker_loss", "gender_loss"}
    assert not (out / "cnn" / f"fold_{cnn['fold']}" / "pretrain_history.json").exists()

    # The model with the best validation UA over settings and folds is exported.
    exported = results["exported"]
    best = max(entry["folds"][0]["best_validation_ua"] for entry in results["settings"].values())
    assert exported["validation_ua"] == pytest.approx(best)
    [version] = list((export_dir / "aae_mtl").iterdir())
    assert version.name == "1" and results["export"] == str(version)
    metadata = json.loads((version / "assets.extra" / "ser_keras.json").read_text())["metadata"]
    assert (metadata["setting"], metadata["fold"]) == (exported["setting"], exported["fold"])

    # The export serves waveforms -> the utterance posteriors of the evaluation path.
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    rng = np.random.default_rng(0)
    waveforms = [rng.standard_normal(n).astype("float32") * 0.1 for n in (16000, 7000)]
    batch = np.zeros((2, 16000), "float32")
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    served = serve(waveform=tf.constant(batch), lengths=tf.constant([16000, 7000]))
    heads = ["emotion"] + (["gender"] if exported["setting"] == "mtl" else [])
    kinds = ("probabilities", "label")
    audio = {"speech_seconds", "cut", "no_speech"}  # what happened to the audio
    assert set(served) == {f"{head}_{kind}" for head in heads for kind in kinds} | audio
    probabilities = served["emotion_probabilities"].numpy()
    assert probabilities.shape == (2, len(results["class_names"]))

    from ser_keras.data.pipeline import compute_features
    from ser_keras.features.framing import segment_features
    from ser_keras.features.logmel import LogMel

    frontend = LogMel.from_preset("latif", num_mels=16)  # the cpu_small model's
    segments, ids = segment_features(compute_features(frontend, waveforms), 32)
    model = keras.models.load_model(
        str(out / exported["setting"] / f"fold_{exported['fold']}" / "best.keras")
    )
    _, offline = model.predict_utterances(segments, ids)
    np.testing.assert_allclose(probabilities, offline["emotion"], rtol=0, atol=1e-5)

    # An existing run is not overwritten; resuming reuses every finished fold.
    assert app.main(_tiny(out, cache_dir, "--settings", "mtl,cnn", "--no-export")) == 2
    assert "--resume" in capsys.readouterr().err
    assert app.main(_tiny(out, cache_dir, "--settings", "mtl", "--no-export", "--resume")) == 0
    assert "already finished" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["settings"]["mtl"]["ua"] == results["settings"]["mtl"]["ua"]
    assert again["eer"] == results["eer"]

    # --cnn-epoch labelled: one pass over the labelled segments, fewer updates.
    out = tmp_path / "one_pass"
    arguments = _tiny(
        out, cache_dir, "--settings", "cnn", "--cnn-epoch", "labelled", "--no-export"
    )
    assert app.main(arguments) == 0
    one_pass = json.loads((out / "results.json").read_text())
    assert one_pass["configuration"]["cnn_epoch"] == "labelled"
    fold = one_pass["settings"]["cnn"]["folds"][0]
    assert fold["train_segments_per_epoch"] == cnn["labelled_train_segments"]
    assert updates["cnn"][-1] == fold["updates_per_epoch"] < mtl["updates_per_epoch"]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--labelled", "/no/such/corpus"], "/no/such/corpus"),
        (["--labelled", "emodb:/no/such/emodb"], "/no/such/emodb"),
        (["--labelled", "folder:bn:/tmp"], "--additional"),
        (["--additional", "folder:bn:/tmp"], "--labelled"),
        (["--settings", "mtl,bogus"], "bogus"),
        (["--folds", "0"], "--folds"),
        (["--protocol", "kfold10", "--pretrain-epochs", "-1"], "--pretrain-epochs"),
        (["--label-map", "nope"], "--label-map"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
