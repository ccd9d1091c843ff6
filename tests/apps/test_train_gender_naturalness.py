"""apps.train_gender_naturalness: the command line of paper 001's experiment.

The protocol's wiring is tested through the library in
tests/experiments/test_gender_naturalness.py; here the app's options, its
default (synthetic) data, the export and `--resume`.
"""

import json

import numpy as np
import pytest

from apps import train_gender_naturalness as app


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tiny(out, cache_dir, *extra):
    return [
        "--synthetic-per-emotion",
        "1",
        "--epochs",
        "1",
        "--folds",
        "1",
        "--units",
        "8",
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
        "--corpus",
        "--protocol",
        "--aux",
        "--networks",
        "--preset",
        "--epochs",
        "--patience",
        "--units",
        "--batch-size",
        "--validation-fraction",
        "--chunk-frames",
        "--elm-hidden",
        "--no-split-naturalness",
        "--out",
        "--export-dir",
        "--no-export",
        "--resume",
        "--folds",
        "--seed",
        "--synthetic-per-emotion",
        "--strategy",
    ]:
        assert option in text


def test_cross_corpus_run_writes_table3_wilcoxon_tsne_and_exports(tmp_path, cache_dir, capsys):
    out, export_dir = tmp_path / "run", tmp_path / "exported"
    arguments = _tiny(
        out,
        cache_dir,
        "--protocol",
        "loco",
        "--networks",
        "dnn",
        "--aux",
        "gender",
        "--export-dir",
        str(export_dir),
    )
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "REDUCED configuration" in printed
    results = json.loads((out / "results.json").read_text())
    configuration = json.loads((out / "run_config.json").read_text())
    # How many folds run is run control (it may change on --resume): the one
    # LOCO fold `--folds 1` asks for is checked on the results below.
    assert configuration["units"] == 8 and "loco_folds" not in configuration
    assert configuration["synthetic_per_emotion"] == configuration[
        "synthetic_emodb_per_emotion"
    ] == 1
    summary = results["protocols"]["loco"]["dnn"]
    assert set(summary) == {"stl", "gender"}
    for entry in summary.values():
        (fold,) = entry["folds"]
        assert fold["test_corpus"] == "emodb" and 0.0 <= fold["ua"] <= 100.0
        assert np.asarray(entry["confusion"]).sum() == fold["num_test"] == 40
        assert {item["speaker"].split(":")[0] for item in fold["test_speakers"]} == {"emodb"}
        assert {item["speaker"].split(":")[0] for item in fold["train_speakers"]} == {"savee"}
    # Synthetic SAVEE has male speakers only: the gender head has one class there.
    assert any("1 gender class" in warning for warning in results["warnings"])
    (test,) = results["wilcoxon"]
    assert test["comparison"] == "DNN-Gender-MTL vs DNN-STL" and test["n"] == 1
    text = (out / "results.md").read_text()
    assert "layout of Table 3" in text and "| {savee} | emodb |" in text
    assert "Wilcoxon" in text and "layout of Table 4" in text
    assert (out / "tsne.png").stat().st_size > 0
    stored = np.load(out / "loco" / "dnn_gender" / "fold_emodb" / "high_level_features.npz")
    assert stored["test_features"].shape == (40, 16)
    assert (out / "loco" / "dnn_gender" / "fold_emodb" / "elm.npz").exists()

    # The export: waveform in, utterance posteriors out, the ELM named in the metadata,
    # the model of the best validation score over both variants.
    import tensorflow as tf

    exported = results["exported"]
    best = max(entry["folds"][0]["best_validation"] for entry in summary.values())
    assert results["units"] == "percent"
    assert exported["validation_ua"] == pytest.approx(best)
    version = export_dir / "kim_mtl" / "1"
    assert results["export"] == str(version)
    metadata = json.loads((version / "assets.extra" / "ser_keras.json").read_text())
    assert "numpy" in metadata["metadata"]["elm"]["backend"]
    assert metadata["metadata"]["setting"] == exported["setting"]
    if exported["setting"] == "loco/dnn_gender":
        assert metadata["tasks"]["gender"]["label_names"] == ["female", "male"]
    loaded = tf.saved_model.load(str(version))
    served = loaded.signatures["serving_default"](
        waveform=tf.constant(np.random.default_rng(0).normal(0, 0.1, (2, 16000)), tf.float32),
        lengths=tf.constant([16000, 8000]),
    )
    np.testing.assert_allclose(served["emotion_probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    assert served["emotion_label"].shape == (2,)

    # Resuming reuses the finished folds and gives the same figures.
    resumed = _tiny(
        out, cache_dir, "--protocol", "loco", "--networks", "dnn", "--aux", "gender",
        "--no-export", "--resume",
    )
    assert app.main(resumed) == 0
    assert "already finished" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["protocols"]["loco"]["dnn"]["gender"]["ua"] == summary["gender"]["ua"]
    # Resuming with other settings is refused.
    assert app.main(resumed[:-1] + ["--elm-hidden", "7", "--resume"]) == 2
    assert "elm_hidden" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--corpus", "emodb:/no/such/emodb"], "/no/such/emodb"),
        (["--corpus", "bogus:/tmp"], "bogus"),
        (["--aux", "gender,age"], "--aux"),
        (["--networks", "cnn"], "--networks"),
        (["--folds", "0"], "--folds"),
        (["--epochs", "0"], "--epochs"),
        (["--chunk-frames", "1"], "--chunk-frames"),
        (["--synthetic-per-emotion", "0"], "--synthetic-per-emotion"),
        (["--validation-fraction", "0.7"], "--validation-fraction"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_loco_needs_two_corpora(tmp_path, capsys):
    from tests.helpers import speech_like, write_wav

    root = tmp_path / "emodb"
    write_wav(root / "wav" / "03a01Wa.wav", speech_like(0.5))
    arguments = ["--out", str(tmp_path / "run"), "--corpus", f"emodb:{root}", "--protocol", "loco"]
    assert app.main(arguments) == 2
    assert "--protocol loco needs at least 2 corpora" in capsys.readouterr().err
