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
        "--additional",
        "--protocol",
        "--settings",
        "--epochs",
        "--pretrain-epochs",
        "--folds",
        "--seed",
        "--out",
        "--export-dir",
        "--resume",
        "--enrolment",
        "--generator-loss",
        "--cnn-epoch",
    ]:
        assert option in text


def test_run_writes_tables_phase_plots_eer_and_serves_waveforms(tmp_path, cache_dir, capsys):
    import tensorflow as tf

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
    # The test speaker plus two held-out additional speakers are verified.
    assert results["eer_setting"] == "mtl"
    assert 0.0 <= results["eer"] <= 100.0
    verification = results["settings"]["mtl"]["folds"][0]["verification"]
    assert verification["num_enrolled_speakers"] == 3
    assert "eer" not in results["settings"]["cnn"]

    tables = (out / "results.md").read_text()
    assert "layout of Table 3" in tables and "layout of Table 5" in tables
    assert "| Both |" in tables and "| CNN (single task) |" in tables
    for setting in ("mtl", "cnn"):
        assert (out / f"phase_losses_{setting}.png").stat().st_size > 0
        assert (out / f"confusion_{setting}.png").stat().st_size > 0
    fold_dir = next((out / "mtl").iterdir())
    pretrain_history = json.loads((fold_dir / "pretrain_history.json").read_text())
    assert set(pretrain_history) >= {"speaker_loss", "gender_loss"}
    assert not (next((out / "cnn").iterdir()) / "pretrain_history.json").exists()

    # The export serves waveforms -> the utterance posteriors of the evaluation path.
    [version] = list((export_dir / "aae_mtl").iterdir())
    assert version.name == "1" and results["export"] == str(version)
    loaded = tf.saved_model.load(str(version))
    serve = loaded.signatures["serving_default"]
    rng = np.random.default_rng(0)
    waveforms = [rng.standard_normal(n).astype("float32") * 0.1 for n in (16000, 7000)]
    batch = np.zeros((2, 16000), "float32")
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    served = serve(waveform=tf.constant(batch), lengths=tf.constant([16000, 7000]))
    assert set(served) == {
        "emotion_probabilities",
        "emotion_label",
        "gender_probabilities",
        "gender_label",
    }
    probabilities = served["emotion_probabilities"].numpy()
    assert probabilities.shape == (2, len(results["class_names"]))

    import keras

    from ser_keras.data.pipeline import compute_features
    from ser_keras.features.framing import segment_features
    from ser_keras.features.logmel import LogMel

    frontend = LogMel.from_preset("latif", **app.PRESETS["tiny"]["frontend"])
    segments, ids = segment_features(compute_features(frontend, waveforms), 32)
    model = keras.models.load_model(
        str(
            out
            / "mtl"
            / json.loads((version / "assets.extra" / "ser_keras.json").read_text())["metadata"][
                "fold"
            ]
            / "best.keras"
        )
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


def test_cnn_epoch_makes_as_many_updates_as_the_settings_with_additional_speech(
    tmp_path, cache_dir, monkeypatch, capsys
):
    from ser_keras.training import callbacks

    # The optimizer updates each model has made at the end of every epoch.
    updates = {}

    class CountingUpdates(callbacks.RestoreBestAndHalveLearningRate):
        def on_epoch_end(self, epoch, logs=None):
            updates.setdefault(self.model.name, []).append(int(self.model.optimizer.iterations))
            super().on_epoch_end(epoch, logs)

    monkeypatch.setattr(callbacks, "RestoreBestAndHalveLearningRate", CountingUpdates)
    quick = ("--pretrain-epochs", "0", "--no-export")
    out = tmp_path / "matched"
    assert app.main(_tiny(out, cache_dir, "--settings", "mtl,cnn", *quick)) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["cnn_epoch"] == "matched"
    mtl, cnn = (results["settings"][name]["folds"][0] for name in ("mtl", "cnn"))
    # The CNN trains on the labelled segments only, the mtl setting on more...
    assert mtl["labelled_train_segments"] == cnn["labelled_train_segments"]
    assert cnn["labelled_train_segments"] < mtl["train_segments_per_epoch"]
    # ... but an epoch of either makes the same number of optimizer updates.
    assert cnn["train_segments_per_epoch"] == mtl["train_segments_per_epoch"]
    assert updates["cnn"] == updates["mtl"] == [mtl["updates_per_epoch"]]
    assert cnn["updates_per_epoch"] == mtl["updates_per_epoch"]
    assert mtl["updates_per_epoch"] == -(-mtl["train_segments_per_epoch"] // 32)
    assert "--cnn-epoch matched" in printed
    assert f"{cnn['updates_per_epoch']} updates per epoch" in printed

    # --cnn-epoch labelled: one pass over the labelled segments, fewer updates.
    out = tmp_path / "one_pass"
    arguments = _tiny(out, cache_dir, "--settings", "cnn", "--cnn-epoch", "labelled", *quick)
    assert app.main(arguments) == 0
    one_pass = json.loads((out / "results.json").read_text())
    assert one_pass["configuration"]["cnn_epoch"] == "labelled"
    fold = one_pass["settings"]["cnn"]["folds"][0]
    assert fold["train_segments_per_epoch"] == cnn["labelled_train_segments"]
    assert updates["cnn"][-1] == fold["updates_per_epoch"] < mtl["updates_per_epoch"]


def test_cycled_rows_are_whole_copies_then_a_subset():
    rows = np.array([10, 11, 12, 13])
    cycled = app._cycled_rows(rows, 10, seed=0)
    assert len(cycled) == 10
    np.testing.assert_array_equal(cycled[:8], np.tile(rows, 2))
    assert len(set(cycled[8:].tolist())) == 2 and set(cycled[8:].tolist()) <= set(rows.tolist())
    np.testing.assert_array_equal(cycled, app._cycled_rows(rows, 10, seed=0))
    np.testing.assert_array_equal(app._cycled_rows(rows, 4, seed=0), rows)
    np.testing.assert_array_equal(app._cycled_rows(rows, 3, seed=0), rows)


def test_kfold10_folds_hold_every_speaker():
    from ser_keras.corpora.records import Utterance

    utterances = [
        Utterance(f"/x/{s}_{i}.wav", "c", "en", str(s), label="anger")
        for s in range(3)
        for i in range(12)
    ]
    folds = app._kfold10(utterances, np.zeros(len(utterances), int), seed=0)
    assert len(folds) == 10
    tested = np.concatenate([fold.test for fold in folds])
    assert sorted(tested.tolist()) == list(range(len(utterances)))
    for fold in folds:
        parts = [set(fold.train.tolist()), set(fold.validation.tolist()), set(fold.test.tolist())]
        assert sum(map(len, parts)) == len(set().union(*parts)) == len(utterances)
        assert {utterances[i].speaker for i in fold.test} == {"0", "1", "2"}
    with pytest.raises(ValueError, match="10 labelled utterances per speaker"):
        app._kfold10(utterances[:20], np.zeros(20, int), seed=0)


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
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    assert expected in capsys.readouterr().err
