import json

import numpy as np
import pytest

from apps import train_gender_naturalness as app
from ser_keras.corpora.records import Utterance


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
        "--out",
        "--export-dir",
        "--resume",
        "--folds",
        "--seed",
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
    summary = results["protocols"]["loco"]["dnn"]
    assert set(summary) == {"stl", "gender"}
    for entry in summary.values():
        (fold,) = entry["folds"]
        assert fold["test_corpus"] == "emodb" and 0.0 <= fold["ua"] <= 1.0
        assert np.asarray(entry["confusion"]).sum() == fold["num_test"] == 40
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

    # The export (the DNN here; tests/models exports an LSTM): waveform in, utterance
    # posteriors out, the ELM named in the metadata.
    import tensorflow as tf

    version = export_dir / "kim_mtl" / "1"
    metadata = json.loads((version / "assets.extra" / "ser_keras.json").read_text())
    assert "numpy" in metadata["metadata"]["elm"]["backend"]
    assert metadata["tasks"]["gender"]["label_names"] == ["female", "male"]
    loaded = tf.saved_model.load(str(version))
    served = loaded.signatures["serving_default"](
        waveform=tf.constant(np.random.default_rng(0).normal(0, 0.1, (2, 16000)), tf.float32),
        lengths=tf.constant([16000, 8000]),
    )
    np.testing.assert_allclose(served["emotion_probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)
    assert served["emotion_label"].shape == (2,)

    # Resuming reuses the finished folds and gives the same figures.
    assert (
        app.main(
            _tiny(
                out,
                cache_dir,
                "--protocol",
                "loco",
                "--networks",
                "dnn",
                "--aux",
                "gender",
                "--no-export",
                "--resume",
            )
        )
        == 0
    )
    assert "already finished" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["protocols"]["loco"]["dnn"]["gender"]["ua"] == summary["gender"]["ua"]


def _utterances():
    records = []
    for corpus, speakers, naturalness in (
        ("alpha", ["a1", "a2", "a3"], ["acted"]),
        ("beta", ["b1", "b2"], ["acted", "natural"]),
    ):
        for speaker in speakers:
            for number in range(8):
                records.append(
                    Utterance(
                        path=f"/{corpus}/{speaker}_{number}.wav",
                        corpus=corpus,
                        language="en",
                        speaker=speaker,
                        gender="female",
                        label=["neutral", "anger"][number % 2],
                        naturalness=naturalness[number // 4 % len(naturalness)],
                    )
                )
    return records


def test_within_corpus_folds_never_mix_corpora():
    utterances = _utterances()
    emotion = np.array([0 if u.label == "neutral" else 3 for u in utterances], dtype=np.int32)

    class Args:
        validation_fraction = 0.1
        seed = 0

    folds = app._loso_folds(utterances, emotion, Args, max_folds=None)
    assert [(corpus, fold.name) for corpus, fold in folds] == [
        ("alpha", "alpha_a1"),
        ("alpha", "alpha_a2"),
        ("alpha", "alpha_a3"),
        ("beta", "beta_b1"),
        ("beta", "beta_b2"),
    ]
    for corpus, fold in folds:
        for part in (fold.train, fold.validation, fold.test):
            assert {utterances[i].corpus for i in part} <= {corpus}
        assert {utterances[i].speaker_id for i in fold.test} == set(fold.test_speakers)
        assert not set(fold.test) & (set(fold.train) | set(fold.validation))
    assert len(app._loso_folds(utterances, emotion, Args, max_folds=1)) == 2


def test_corpora_with_acted_and_natural_speech_are_split_for_cross_corpus_tests():
    renamed = app._loco_utterances(_utterances(), split=True)
    assert sorted({u.corpus for u in renamed}) == ["alpha", "beta_acted", "beta_natural"]
    assert app._corpus_naturalness(renamed) == {
        "alpha": "acted",
        "beta_acted": "acted",
        "beta_natural": "natural",
    }
    assert {u.corpus for u in app._loco_utterances(_utterances(), split=False)} == {
        "alpha",
        "beta",
    }


def test_wilcoxon_of_paired_fold_scores():
    gains = app._wilcoxon([0.5, 0.6, 0.7, 0.8, 0.9, 0.75, 0.65], [0.4] * 7)
    assert gains["n"] == 7 and gains["p_value"] == pytest.approx(2 / 2**7)
    assert "note" not in gains
    assert app._wilcoxon([0.5, 0.5], [0.5, 0.5])["note"] == "all differences are zero"
    assert "cannot be reached" in app._wilcoxon([0.6, 0.7], [0.5, 0.5])["note"]


def test_variants_from_the_aux_argument():
    assert app._variants("gender,naturalness") == {
        "stl": (),
        "gender": ("gender",),
        "naturalness": ("naturalness",),
        "all": ("gender", "naturalness"),
    }
    assert app._variants("naturalness") == {"stl": (), "naturalness": ("naturalness",)}
    assert app._variants("none") == {"stl": ()}


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--corpus", "emodb:/no/such/emodb"], "/no/such/emodb"),
        (["--corpus", "bogus:/tmp"], "bogus"),
        (["--aux", "gender,age"], "age"),
        (["--networks", "cnn"], "cnn"),
        (["--folds", "0"], "--folds"),
        (["--validation-fraction", "0.7"], "--validation-fraction"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    assert expected in capsys.readouterr().err


def test_loco_needs_two_corpora(tmp_path, capsys):
    from tests.helpers import speech_like, write_wav

    root = tmp_path / "emodb"
    write_wav(root / "wav" / "03a01Wa.wav", speech_like(0.5))
    arguments = ["--out", str(tmp_path / "run"), "--corpus", f"emodb:{root}", "--protocol", "loco"]
    assert app.main(arguments) == 2
    assert "at least 2 corpora" in capsys.readouterr().err
