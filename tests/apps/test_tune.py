import json
import subprocess
import sys

import pytest

from apps import tune as app
from ser_keras.tuning.experiment import TuneSearch
from tests.tuning.util import record_fits, speaker_splits_of_fits


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _tiny(directory, cache_dir, *extra):
    return [
        "--synthetic-per-emotion", "1", "--epochs", "1", "--quiet",
        "--directory", str(directory), "--cache-dir", str(cache_dir), *extra,
    ]


def _trials(project):
    return json.loads((project / "trials.json").read_text())


def _capture_searches(monkeypatch):
    """The `TuneSearch`es the app runs (their `search_data` after `prepare`)."""
    searches = []
    prepare = TuneSearch.prepare

    def capture(self):
        searches.append(self)
        return prepare(self)

    monkeypatch.setattr(TuneSearch, "prepare", capture)
    return searches


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ["--model", "--tuner", "--max-trials", "--data", "--directory", "--resume",
                   "--objective", "--strategy", "--preset", "--epochs"]:
        assert option in text
    for choice in ["attention_cnn_blstm", "resnet_lstm_mtl", "aae_mtl", "kim_mtl", "multigate",
                   "random", "bayesian", "hyperband", "mirrored", "multiworker"]:
        assert choice in text


def test_help_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from apps import tune\n"
        "tune.build_parser().format_help()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_aae_search_over_speaker_folds_writes_the_best_and_resumes(
    tmp_path, cache_dir, capsys, monkeypatch
):
    fits = record_fits(monkeypatch)
    searches = _capture_searches(monkeypatch)
    arguments = _tiny(
        tmp_path, cache_dir, "--model", "aae_mtl", "--tuner", "random", "--max-trials", "1",
        "--objective", "speaker_folds", "--cv-folds", "2",
    )
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "REDUCED configuration" in printed and "Best trial 0" in printed
    assert "validation folds" in printed
    project = tmp_path / "aae_mtl"
    best = json.loads((project / "best_hyperparameters.json").read_text())
    assert "2 speaker folds" in best["objective"]
    assert set(best["hyperparameters"]) >= {"alpha", "beta", "dropout_rate", "learning_rate"}
    # The speaker head has a class per training speaker: the test speaker is not one.
    assert best["model_arguments"]["num_classes"]["speaker"] == 9
    assert best["model_arguments"]["num_classes"]["gender"] == 2
    # Accuracies are percent in every JSON file the package writes.
    assert best["units"] == "percent" and 0.0 <= best["score"] <= 100.0
    assert len(best["test_speakers"]) == 1
    (first,) = _trials(project)
    assert first["status"] == "COMPLETED" and "val_emotion_ua_std" in first["metrics"]
    assert "| trial | status |" in (project / "trials.md").read_text()
    # Every speaker fold validates on training speakers only: never the test
    # speaker, never a speaker its model trains on.
    data = searches[0].search_data
    test = set(data.test_speakers)
    splits = speaker_splits_of_fits(fits, data)
    assert len(splits) == 2 and test == set(best["test_speakers"])
    for trained, validated in splits:
        assert trained and validated
        assert not (trained | validated) & test, "the test speaker reached the search"
        assert not trained & validated, "a validation speaker was trained on"
    assert [{e["speaker"] for e in split["validation_speakers"]} for split in best["splits"]] == [
        validated for _, validated in splits
    ]

    # The same project again needs --resume; with it the finished search is
    # reloaded, not run again.
    assert app.main(arguments) == 2
    assert "--resume" in capsys.readouterr().err
    assert app.main(arguments + ["--resume"]) == 0
    assert "Reloading Tuner" in capsys.readouterr().out
    assert _trials(project) == [first]


def test_kim_search_on_frame_features_with_a_gender_head(tmp_path, cache_dir, capsys):
    arguments = _tiny(tmp_path, cache_dir, "--model", "kim_mtl", "--max-trials", "1")
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "emotion classes (four_class)" in printed
    assert "32 frame features" in printed and "segments of 200 frames" in printed
    # The synthetic corpora are all acted: no naturalness head.
    assert "no naturalness head" in printed and "Tasks: emotion, gender;" in printed
    best = json.loads((tmp_path / "kim_mtl" / "best_hyperparameters.json").read_text())
    assert best["objective"] == "val_emotion_ua"
    assert best["test_speakers"][0].startswith("emodb:")
    assert 0.05 <= best["hyperparameters"]["auxiliary_loss_weight"] <= 0.5
    assert best["hyperparameters"]["units"] in (64, 128, 256)  # the paper's units
    arguments = best["model_arguments"]
    assert (arguments["network"], arguments["num_emotions"], arguments["num_features"]) == (
        "lstm", 4, 32
    )
    assert arguments["auxiliary_tasks"] == ["gender"]
    assert arguments["units"] == best["hyperparameters"]["units"] // 4  # 64 cells at 256
    (row,) = _trials(tmp_path / "kim_mtl")
    assert row["status"] == "COMPLETED"


def test_multigate_search_validates_every_language(tmp_path, cache_dir, capsys, monkeypatch):
    fits = record_fits(monkeypatch)
    searches = _capture_searches(monkeypatch)
    arguments = _tiny(tmp_path, cache_dir, "--model", "multigate", "--max-trials", "1")
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "Tasks: emotion_en, emotion_de;" in printed
    best = json.loads((tmp_path / "multigate" / "best_hyperparameters.json").read_text())
    # The test speaker is English (SAVEE); English and German speakers validate.
    assert best["test_speakers"][0].startswith("savee:")
    validation = printed.split("validation speaker(s): ")[1].splitlines()[0]
    assert "savee:" in validation and "emodb:" in validation
    # The German speakers moved to validation are no longer trained on.
    ((trained, validated),) = speaker_splits_of_fits(fits, searches[0].search_data)
    assert {speaker.split(":")[0] for speaker in validated} == {"savee", "emodb"}
    assert not trained & validated
    assert not (trained | validated) & set(best["test_speakers"])
    class_names = best["model_arguments"]["class_names"]
    assert list(class_names) == ["en", "de"]
    assert "boredom" in class_names["de"] and "boredom" not in class_names["en"]
    assert "surprise" in class_names["en"] and "surprise" not in class_names["de"]
    for language in ("en", "de"):
        assert 0.001 <= best["hyperparameters"][f"alpha_{language}"] <= 1.0
    (row,) = _trials(tmp_path / "multigate")
    assert row["status"] == "COMPLETED"
    metrics = row["metrics"]
    assert metrics["val_emotion_ua"] == pytest.approx(
        (metrics["val_emotion_en_ua"] + metrics["val_emotion_de_ua"]) / 2
    )
    assert best["score"] == pytest.approx(metrics["val_emotion_ua"])


@pytest.mark.slow
def test_resnet_lstm_search_with_unlabelled_speech(tmp_path, cache_dir, capsys):
    arguments = _tiny(
        tmp_path, cache_dir, "--model", "resnet_lstm_mtl", "--tuner", "bayesian",
        "--max-trials", "2",
    )
    assert app.main(arguments) == 0
    best = json.loads((tmp_path / "resnet_lstm_mtl" / "best_hyperparameters.json").read_text())
    assert 0.1 <= best["hyperparameters"]["alpha"] <= 0.5
    assert best["model_arguments"]["num_languages"] == 2
    assert best["model_arguments"]["use_domain_head"] is True
    assert [row["status"] for row in _trials(tmp_path / "resnet_lstm_mtl")] == ["COMPLETED"] * 2


def test_failed_trial_exits_with_status_1_and_names_it(tmp_path, cache_dir, capsys, monkeypatch):
    from ser_keras.tuning import hypermodels

    def broken_fit(self, hp, model, *args, **kwargs):
        raise RuntimeError("boom in training")

    monkeypatch.setattr(hypermodels.AAEMultiTaskHyperModel, "fit", broken_fit)
    arguments = _tiny(tmp_path, cache_dir, "--model", "aae_mtl", "--max-trials", "2")
    assert app.main(arguments) == 1
    error = capsys.readouterr().err
    assert "2 of 2 trials did not complete" in error and "boom in training" in error
    rows = _trials(tmp_path / "aae_mtl")
    assert [row["status"] for row in rows] == ["FAILED", "FAILED"]
    assert not (tmp_path / "aae_mtl" / "best_hyperparameters.json").exists()


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--model", "aae_mtl", "--data", "/no/such/emodb"], "KIND:DIR"),
        (["--model", "aae_mtl", "--data", "emodb:/no/such/emodb"], "/no/such/emodb"),
        (["--model", "aae_mtl", "--max-trials", "0"], "--max-trials"),
        (["--model", "aae_mtl", "--single-task"], "--single-task"),
        (["--model", "aae_mtl", "--cv-folds", "1"], "--cv-folds"),
        (["--model", "kim_mtl", "--single-task"], "--single-task"),
        (["--model", "kim_mtl", "--patience", "0"], "--patience"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--directory", str(tmp_path), *arguments]) == 2
    assert expected in capsys.readouterr().err
