import json
import sys

import numpy as np
import pytest

from apps import train_multilingual_gating as app
from ser_keras.corpora.records import Utterance


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tiny(out, cache_dir, *extra):
    # The functionals expert only (no recurrent layer to trace): the app's
    # flow is the same for every expert; the encoders are tested in
    # tests/models/test_multigate.py.
    return [
        "--synthetic-per-emotion",
        "2",
        "--epochs",
        "1",
        "--experts",
        "statistics",
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
        "--variants",
        "--ablation",
        "--experts",
        "--embedding",
        "--preset",
        "--epochs",
        "--repeats",
        "--split",
        "--out",
        "--export-dir",
        "--resume",
    ]:
        assert option in text


def test_default_corpora_give_tables_3_and_4_figure_4_and_an_export(
    tmp_path, cache_dir, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # as where it is not installed
    out = tmp_path / "run"
    export_dir = tmp_path / "exported"
    arguments = _tiny(out, cache_dir, "--variants", "multigate", "--ablation", "multigate")
    arguments[arguments.index("statistics")] = "statistics,egemaps"
    assert app.main(arguments + ["--export-dir", str(export_dir)]) == 0
    printed = capsys.readouterr().out
    assert "REDUCED configuration" in printed
    assert "Skipping the 'egemaps' expert" in printed

    results = json.loads((out / "results.json").read_text())
    assert list(results["languages"]) == ["en", "de"]
    assert results["languages"]["en"]["class_names"] == [
        "anger",
        "disgust",
        "fear",
        "happiness",
        "neutral",
        "sadness",
        "surprise",
    ]
    assert "boredom" in results["languages"]["de"]["class_names"]
    assert set(results["table3"]) == {"multigate"}
    for table in (
        results["table3"]["multigate"],
        results["table4"]["with_aux"],
        results["table4"]["without_aux"],
    ):
        for language in ("en", "de"):
            assert 0.0 <= table[language]["ua"] <= 1.0 and 0.0 <= table[language]["wa"] <= 1.0
    # Without the auxiliary loss the multi-gating model is trained again.
    assert results["table4"]["protocol"] == "multigate"
    assert results["table4"]["with_aux"] == results["table3"]["multigate"]
    assert (out / "multigate_noaux" / "fold_r1" / "languages.json").exists()
    for weights in results["gate_weights"]["multigate"].values():
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-4)
    assert set(results["connections"]) == {"en", "de"}
    text = (out / "results.md").read_text()
    assert "## Table 3" in text and "## Table 4" in text and "| Ours |" in text
    assert (out / "gate_weights.png").stat().st_size > 0
    versions = list((export_dir / "multilingual_multigate").iterdir())
    assert [v.name for v in versions] == ["1"]
    metadata = json.loads((versions[0] / "assets.extra" / "ser_keras.json").read_text())
    assert set(metadata["tasks"]) == {"emotion_en", "emotion_de"}

    # Resuming reuses every finished setting and gives the same figures.
    assert (
        app.main(
            _tiny(
                out,
                cache_dir,
                "--variants",
                "multigate",
                "--ablation",
                "multigate",
                "--no-export",
                "--resume",
            )
        )
        == 0
    )
    assert "already finished" in capsys.readouterr().out
    again = json.loads((out / "results.json").read_text())
    assert again["table3"] == results["table3"]


@pytest.mark.slow
def test_single_language_ablation_and_every_variant(tmp_path, cache_dir):
    out = tmp_path / "run"
    assert app.main(_tiny(out, cache_dir, "--ablation", "single", "--no-export")) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["table3"]) == ["base", "shared_bottom", "omoe", "mmoe", "multigate"]
    assert results["table4"]["protocol"] == "single"
    assert (out / "single_de_noaux" / "fold_r1" / "languages.json").exists()


def _utterances(labels_per_speaker, language="de"):
    utterances = []
    for speaker, labels in labels_per_speaker.items():
        for number, label in enumerate(labels):
            utterances.append(
                Utterance(f"/x/{speaker}_{number}.wav", "emodb", language, speaker, label=label)
            )
    return utterances


def test_random_split_is_stratified_and_disjoint():
    utterances = _utterances({"a": ["anger"] * 10 + ["neutral"] * 10, "b": ["anger"] * 5})
    labels = np.array([0 if u.label == "anger" else 1 for u in utterances])
    indices = np.arange(len(utterances)) + 100  # global indices of this language
    padded = np.concatenate([np.full(100, -1), labels])
    train, validation, test = app._language_split(indices, padded, None, "random", 0, 0)
    assert len(set(train) | set(validation) | set(test)) == len(indices)
    assert not set(train) & set(test) and not set(validation) & set(test)
    assert np.sum(padded[test] == 0) == 3 and np.sum(padded[test] == 1) == 2  # 20 %
    again = app._language_split(indices, padded, None, "random", 0, 0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, validation, test), strict=True))
    other = app._language_split(indices, padded, None, "random", 0, 1)
    assert not np.array_equal(other[2], test)


def test_speaker_split_holds_out_whole_speakers():
    utterances = _utterances({s: ["anger", "neutral"] * 3 for s in "abcde"})
    labels = np.array([0 if u.label == "anger" else 1 for u in utterances])
    indices = np.arange(len(utterances))
    train, validation, test = app._language_split(indices, labels, utterances, "speaker", 0, 0)
    speakers = lambda part: {utterances[i].speaker for i in part}  # noqa: E731
    assert len(speakers(test)) == 1 and not speakers(test) & speakers(train)
    with pytest.raises(ValueError, match="--split random"):
        app._language_split(indices[:6], labels[:6], utterances, "speaker", 0, 0)


def test_embedding_file_matches_paths_and_lists_the_missing(tmp_path):
    utterances = _utterances({"a": ["anger", "neutral", "anger"]})
    path = tmp_path / "emb.npz"
    np.savez(
        path,
        paths=np.array([utterances[0].path, utterances[2].path]),
        embeddings=np.array([[1.0, 2.0], [3.0, 4.0]], dtype="float32"),
    )
    array, keep, skipped = app._load_embedding_file("w2v", path, utterances)
    np.testing.assert_array_equal(keep, [True, False, True])
    np.testing.assert_array_equal(array[2], [3.0, 4.0])
    assert len(skipped) == 1 and "no w2v embedding" in skipped[0].reason


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--corpus", "/no/such/corpus"], "/no/such/corpus"),
        (["--corpus", "emodb:/no/such/emodb"], "/no/such/emodb"),
        (["--variants", "mmoe,bogus"], "bogus"),
        (["--experts", "wav2vec"], "wav2vec"),
        (["--embedding", "w2v"], "NAME=FILE"),
        (["--embedding", "w2v=/no/such.npz"], "/no/such.npz"),
        (["--epochs", "0"], "--epochs"),
        (["--gate-selector", "ge2e"], "ge2e"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    assert expected in capsys.readouterr().err


def test_egemaps_functionals_come_from_opensmile(monkeypatch):
    calls = []

    class FakeSmile:
        def __init__(self, feature_set, feature_level):
            calls.append((feature_set, feature_level))

        def process_signal(self, signal, sampling_rate):
            return np.full((1, 88), float(len(signal)) / sampling_rate)

    fake = type(sys)("opensmile")
    fake.Smile = FakeSmile
    fake.FeatureSet = type("FeatureSet", (), {"eGeMAPSv02": "eGeMAPSv02"})
    fake.FeatureLevel = type("FeatureLevel", (), {"Functionals": "Functionals"})
    monkeypatch.setitem(sys.modules, "opensmile", fake)
    array = app._egemaps_functionals([np.zeros(16000), np.zeros(8000)], 16000)
    assert calls == [("eGeMAPSv02", "Functionals")]
    assert array.shape == (2, 88) and array.dtype == np.float32
    np.testing.assert_allclose(array[:, 0], [1.0, 0.5])
