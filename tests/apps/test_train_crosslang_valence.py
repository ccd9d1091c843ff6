"""The paper 000 app end to end, on tiny synthetic corpora (real training, 1 epoch).

The protocol's wiring is tested in tests/experiments/test_crosslang_valence.py.
"""

import json

import numpy as np
import pytest

from apps import train_crosslang_valence as app


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tiny(out, cache_dir, *extra):
    return [
        "--synthetic-per-emotion", "1", "--epochs", "1", "--quiet",
        "--out", str(out), "--cache-dir", str(cache_dir), *extra,
    ]


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ["--labelled", "--target", "--unlabelled", "--settings", "--target-samples",
                   "--epochs", "--seed", "--runs", "--out", "--export-dir", "--protocol",
                   "--labelled-fraction", "--alpha", "--resume", "--target-sampling",
                   "--normalize", "--unlabelled-target-audio", "--no-target-audio",
                   "--recipe", "--normalization", "--spec-augment", "--label-smoothing"]:
        assert option in text


def test_synthetic_run_writes_table3_results_and_exports(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    export_dir = tmp_path / "exported"
    # One setting keeps the test fast; the slow test below runs the others.
    arguments = _tiny(out, cache_dir, "--settings", "mtl_extra", "--export-dir",
                      str(export_dir))
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "REDUCED configuration" in printed
    # Three languages: English labelled, French and Spanish unlabelled speech;
    # the German and Urdu targets' audio is not trained on by default.
    assert "languages en/es/fr" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["unlabelled_target_audio"] is False
    assert results["targets"] == {"emodb": "emodb", "urdu": "urdu"}
    assert set(results["settings"]) == {"mtl_extra"}
    for setting in results["settings"].values():
        assert set(setting) == {"emodb", "urdu"}
        for entry in setting.values():
            assert 0.0 <= entry["ua"] <= 100.0 and 0.0 <= entry["wa"] <= 100.0
            assert [run["seed"] for run in entry["runs"]] == [0]
            (run,) = entry["runs"]
            tested = {speaker["speaker"] for speaker in run["test_speakers"]}
            trained = {speaker["speaker"] for speaker in run["train_speakers"]}
            assert tested and not tested & trained
    # Every labelled target utterance is scored once (synthetic EMO-DB: 70).
    assert np.sum(results["settings"]["mtl_extra"]["emodb"]["confusion"]) == 70
    table = (out / "results.md").read_text()
    assert "| Model | emodb | urdu |" in table
    assert "Proposed (with additional data) (paper) | 63.7 | 60.9 |" in table
    for target in ("emodb", "urdu"):
        assert (out / f"table3_{target}.png").stat().st_size > 0
    version = export_dir / "resnet_lstm_mtl" / "1"
    assert (version / "saved_model.pb").exists()
    assert results["export"] == str(version)
    assert results["exported"]["setting"] == "mtl_extra"
    assert results["exported"]["fold"] == "seed0_targets"

    # Resuming reuses every finished model and gives the same figures.
    assert app.main(_tiny(out, cache_dir, "--settings", "mtl_extra", "--no-export",
                          "--resume")) == 0
    assert "already finished" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["settings"] == results["settings"]


def test_corpus_normalised_run_exports_with_the_domain_statistics(tmp_path, cache_dir, capsys):
    import tensorflow as tf

    from ser_keras.export.saved_model import METADATA_FILENAME

    out, export_dir = tmp_path / "run", tmp_path / "exported"
    arguments = _tiny(out, cache_dir, "--settings", "mtl_extra", "--normalization", "corpus",
                      "--export-domain", "urdu", "--export-dir", str(export_dir))
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "every band z-normalised per corpus" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["normalization"] == "corpus"
    assert results["training_recipe"]["normalization"] == "corpus"
    version = export_dir / "resnet_lstm_mtl" / "1"
    document = json.loads((version / "assets.extra" / METADATA_FILENAME).read_text())
    assert "urdu's statistics" in document["metadata"]["feature_normalization"]
    # serving_default standardises with URDU's statistics (the export domain);
    # enrol gives another corpus's.
    fallback = document["speaker_normalization"]["fallback"]
    assert "urdu corpus (24 utterances" in fallback["source"]
    # Enrolment takes a corpus's audio, and the metadata says so.
    assert document["speaker_normalization"]["group"] == "corpus"
    assert "with a corpus's statistics" in document["speaker_normalization"]["description"]
    assert {"serving_default", "enrol", "serving_enrolled"} <= set(
        tf.saved_model.load(str(version)).signatures
    )

    # A corpus the run does not have is named in the error.
    bad = _tiny(tmp_path / "bad", cache_dir, "--settings", "mtl_extra", "--normalization",
                "corpus", "--export-domain", "savee_typo", "--export-dir", str(export_dir))
    assert app.main(bad) == 2
    assert "savee_typo" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, normalization",
    [
        (["--normalize", "utterance"], "none"),
        (["--normalize", "corpus"], "corpus"),
        (["--normalize", "speaker", "--normalization", "speaker"], "speaker"),
        (["--preset", "cpu"], "corpus"),
        (["--preset", "cpu", "--normalize", "utterance"], "none"),
        ([], "none"),
    ],
)
def test_deprecated_normalize_is_an_alias_of_normalization(tmp_path, monkeypatch, arguments,
                                                           normalization):
    configs = []
    monkeypatch.setattr(app.experiment.CrossLanguageValence, "run",
                        lambda self: configs.append(self.config))
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 0
    assert configs[0].training_recipe().normalization == normalization


def test_stl_makes_as_many_updates_as_mtl_extra_unless_told_otherwise(tmp_path, cache_dir,
                                                                      capsys):
    import keras

    def steps(out):
        # The optimizer's iterations in the saved model (one epoch: the best).

        model = keras.models.load_model(out / "stl" / "fold_seed0_targets" / "best.keras")
        return int(keras.ops.convert_to_numpy(model.optimizer.iterations))

    matched, labelled = tmp_path / "matched", tmp_path / "labelled"
    common = ("--settings", "stl", "--labelled-fraction", "0.5", "--no-export")
    assert app.main(_tiny(matched, cache_dir, *common)) == 0
    printed = capsys.readouterr().out
    assert app.main(_tiny(labelled, cache_dir, *common, "--stl-epoch", "labelled")) == 0
    # Synthetic SAVEE: 24 labelled training utterances at 1 per emotion and
    # speaker; matched doubles them at a labelled fraction of 0.5.
    line = next(x for x in printed.splitlines() if "[stl] seed0_targets: 48 samples" in x)
    assert "(48 with emotion labels, 24 distinct)" in line, line
    assert steps(matched) == 2 * steps(labelled)
    config = json.loads((matched / "results.json").read_text())["configuration"]
    assert config["stl_epoch"] == "matched"


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--settings", "stl,bogus"], "bogus"),
        (["--labelled", "emodb:/tmp"], "--target"),
        (["--labelled", "emodb:/no/such/emodb", "--target", "urdu:/no/such/urdu",
          "--settings", "stl"], "/no/such/emodb"),
        (["--labelled", "emodb:/tmp", "--target", "urdu:/tmp"], "--unlabelled"),
        (["--target-samples", "25,x"], "25,x"),
        (["--labelled-fraction", "1.5"], "1.5"),
        (["--runs", "0"], "--runs"),
        (["--folds", "0"], "--folds"),
        (["--label-map", "nine_class"], "nine_class"),
        (["--normalize", "corpus", "--normalization", "speaker"], "deprecated alias"),
        (["--export-domain", "emodb"], "with --normalization none"),
        (["--alpha", "-1"], "--alpha"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_target_audio_options_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--out", str(tmp_path / "run"), "--unlabelled-target-audio",
                  "--no-target-audio"])
    assert exit_info.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.slow
def test_target_samples_and_within_protocol(tmp_path, cache_dir, capsys):
    out = tmp_path / "curve"
    assert app.main(_tiny(out, cache_dir, "--settings", "stl,mtl_no_extra", "--target-samples",
                          "0,4", "--no-export")) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["settings"]) == {"stl", "mtl_no_extra"}
    assert set(results["target_samples"]) == {"4"}
    assert (out / "figure3_target_samples.png").stat().st_size > 0
    # Speaker-independent by default: the 4 added target utterances come from
    # half of the 10 speakers, the other half (35 utterances) is tested.
    assert results["configuration"]["target_sampling"] == "speakers"
    assert "tested on the other 5 (35 utterances)" in capsys.readouterr().out
    emodb = results["target_samples"]["4"]["mtl_no_extra"]["emodb"]
    assert np.sum(emodb["confusion"]) == 35

    # --target-sampling any: drawn from every speaker, the rest tested.
    paper = tmp_path / "curve_any"
    assert app.main(_tiny(paper, cache_dir, "--settings", "stl", "--target-samples", "4",
                          "--target-sampling", "any", "--no-export")) == 0
    emodb = json.loads((paper / "results.json").read_text())["target_samples"]["4"]["stl"]["emodb"]
    assert np.sum(emodb["confusion"]) == 70 - 4

    within = tmp_path / "within"
    assert app.main(_tiny(within, cache_dir, "--protocol", "within", "--folds", "1")) == 0
    results = json.loads((within / "results.json").read_text())
    assert set(results["within"]) == {"savee", "emodb", "urdu"}
    assert results["within"]["urdu"]["protocol"].endswith("5 folds")
