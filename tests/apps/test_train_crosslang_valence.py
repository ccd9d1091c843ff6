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
                   "--normalize"]:
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
    # Five languages: English labelled, German and Urdu targets, French and
    # Spanish unlabelled speech.
    assert "languages de/en/es/fr/ur" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["targets"] == {"emodb": "emodb", "urdu": "urdu"}
    assert set(results["settings"]) == {"mtl_extra"}
    for setting in results["settings"].values():
        assert set(setting) == {"emodb", "urdu"}
        for entry in setting.values():
            assert 0.0 <= entry["ua"] <= 100.0 and 0.0 <= entry["wa"] <= 100.0
            assert [run["seed"] for run in entry["runs"]] == [0]
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
    arguments = _tiny(out, cache_dir, "--settings", "mtl_extra", "--normalize", "corpus",
                      "--export-domain", "urdu", "--export-dir", str(export_dir))
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "Standardising every mel band per corpus (5 groups)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["configuration"]["normalize"] == "corpus"
    version = export_dir / "resnet_lstm_mtl" / "1"
    document = json.loads((version / "assets.extra" / METADATA_FILENAME).read_text())
    assert "urdu's statistics" in document["metadata"]["feature_normalization"]
    # The served graph holds the standardisation in front of the model (the
    # export checked itself against that Keras graph before it was moved in).
    assert "BandStandardization" in json.dumps(document["model_config"])
    assert "serving_default" in tf.saved_model.load(str(version)).signatures

    # A corpus the run does not have is named in the error.
    bad = _tiny(tmp_path / "bad", cache_dir, "--settings", "mtl_extra", "--normalize", "corpus",
                "--export-domain", "savee_typo", "--export-dir", str(export_dir))
    assert app.main(bad) == 2
    assert "savee_typo" in capsys.readouterr().err


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
    line = next(x for x in printed.splitlines() if "[stl] seed0_targets: training" in x)
    assert "(48 with emotion labels, 24 distinct)" in line, line
    assert steps(matched) == 2 * steps(labelled)
    config = json.loads((matched / "results.json").read_text())["configuration"]
    assert config["stl_epoch"] == "matched"


def test_fill_cycles_whole_copies_then_a_remainder_without_repeats():
    filled = app._fill(np.arange(5), 12, np.random.default_rng(0))
    assert len(filled) == 12
    counts = np.bincount(filled, minlength=5)
    assert counts.min() == 2 and counts.max() == 3 and (counts == 3).sum() == 2


def test_mix_reaches_the_labelled_fraction_with_every_labelled_sample():
    rng = np.random.default_rng(0)
    labelled, unlabelled = np.arange(10), np.arange(100, 160)
    # More unlabelled samples than the share needs: a random subset, no repeats.
    mixed = app._mix(labelled, unlabelled, 0.5, rng)
    assert sorted(mixed[np.isin(mixed, labelled)]) == list(labelled)
    subset = mixed[np.isin(mixed, unlabelled)]
    assert len(subset) == len(set(subset)) == 10
    # Fewer: every unlabelled sample, then repeats.
    mixed = app._mix(labelled, unlabelled[:5], 0.25, rng)
    assert np.isin(mixed, labelled).sum() == 10 and len(mixed) == 40
    assert set(mixed[10:]) == set(unlabelled[:5])
    natural = app._mix(labelled, unlabelled, None, rng)
    assert sorted(natural) == sorted(np.concatenate([labelled, unlabelled]))


def test_stratified_target_sample_keeps_class_proportions():
    labels = np.array([0] * 30 + [1] * 10)
    chosen = app._stratified_sample(labels, 8, np.random.default_rng(0))
    assert len(chosen) == len(set(chosen)) == 8
    assert (labels[chosen] == 0).sum() == 6 and (labels[chosen] == 1).sum() == 2
    with pytest.raises(ValueError, match="at least one must be left to test"):
        app._stratified_sample(labels, 40, np.random.default_rng(0))
    # Tested on other speakers: every utterance may be drawn, not more.
    assert len(app._stratified_sample(labels, 40, np.random.default_rng(0),
                                      test_elsewhere=True)) == 40
    with pytest.raises(ValueError, match="half of its speakers"):
        app._stratified_sample(labels, 41, np.random.default_rng(0), test_elsewhere=True)


def test_target_samples_come_from_other_speakers_than_the_tested():
    from types import SimpleNamespace

    from ser_keras.corpora.records import Utterance

    # A target of 6 speakers x 4 utterances (2 negative, 2 positive), after 3
    # utterances of another corpus.
    utterances = [Utterance(f"/x/{i}.wav", "ravdess", "en", "a") for i in range(3)]
    utterances += [
        Utterance(f"/t/{s}_{i}.wav", "emodb", "de", f"s{s}") for s in range(6) for i in range(4)
    ]
    pool = SimpleNamespace(
        utterances=utterances,
        emotion=np.array([0, 1, 0] + [0, 0, 1, 1] * 6),
        corpus=np.array([u.corpus for u in utterances]),
    )
    scored = np.arange(3, 27)
    donors, tested = app._split_target_speakers(pool, scored, seed=0)
    speakers = lambda indices: {utterances[i].speaker_id for i in indices}  # noqa: E731
    assert len(speakers(donors)) == len(speakers(tested)) == 3
    assert not speakers(donors) & speakers(tested)
    assert sorted(np.concatenate([donors, tested]).tolist()) == scored.tolist()
    # Another seed deals the speakers differently; the same seed the same way.
    assert any(
        speakers(app._split_target_speakers(pool, scored, seed=seed)[0]) != speakers(donors)
        for seed in range(1, 6)
    )
    np.testing.assert_array_equal(app._split_target_speakers(pool, scored, seed=0)[0], donors)
    one_speaker = np.arange(3, 7)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        app._split_target_speakers(pool, one_speaker, seed=0)


def test_normalize_groups_are_corpora_or_speakers_within_a_corpus():
    from types import SimpleNamespace

    from ser_keras.corpora.records import Utterance

    # Two corpora that both have a speaker "a"; each utterance 2 valid frames
    # and 1 padding frame (pad value 0) of 2 bands.
    utterances = [Utterance(f"/x/{i}.wav", "ravdess", "en", "a") for i in range(2)]
    utterances += [Utterance(f"/y/{i}.wav", "emodb", "de", s) for i, s in enumerate("aab")]
    rng = np.random.default_rng(0)
    features = np.zeros((5, 3, 2), np.float32)
    features[:, :2] = rng.normal(3.0, 2.0, size=(5, 2, 2))
    pool = SimpleNamespace(
        utterances=utterances, features=features,
        corpus=np.array([u.corpus for u in utterances], dtype=object),
    )

    def check(normalized, groups):
        for rows in groups:
            frames = normalized[rows][:, :2].reshape(-1, 2)
            np.testing.assert_allclose(frames.mean(axis=0), 0.0, atol=1e-5)
            np.testing.assert_allclose(frames.std(axis=0), 1.0, atol=1e-3)
        np.testing.assert_array_equal(normalized[:, 2], 0.0)  # padding untouched

    check(app._normalize_groups(pool, "corpus", 0.0), [[0, 1], [2, 3, 4]])
    # Speaker "a" of ravdess and speaker "a" of emodb are different speakers.
    by_speaker = app._normalize_groups(pool, "speaker", 0.0)
    check(by_speaker, [[0, 1], [2, 3], [4]])
    assert not np.allclose(by_speaker, app._normalize_groups(pool, "corpus", 0.0))


def test_unlabelled_arguments():
    spec = app._parse_unlabelled_spec("bn:/data/bangla")
    assert (spec.kind, spec.language, str(spec.directory)) == ("folder", "bn", "/data/bangla")
    spec = app._parse_unlabelled_spec("librispeech:/data/LibriSpeech")
    assert (spec.kind, spec.language) == ("librispeech", None)
    assert app._parse_unlabelled_spec("folder:de:/v/de").language == "de"
    with pytest.raises(ValueError, match="'/no/language'"):
        app._parse_unlabelled_spec("/no/language")


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
        (["--normalize", "speaker"], "--no-export"),
        (["--export-domain", "emodb"], "with --normalize utterance"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    assert expected in capsys.readouterr().err


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
