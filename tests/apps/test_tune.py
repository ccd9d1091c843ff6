import json

import pytest

from apps import tune as app


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


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ["--model", "--tuner", "--max-trials", "--data", "--directory", "--resume",
                   "--objective", "--strategy", "--preset", "--epochs"]:
        assert option in text
    for choice in ["attention_cnn_blstm", "resnet_lstm_mtl", "aae_mtl", "random", "bayesian",
                   "hyperband", "mirrored", "multiworker"]:
        assert choice in text


def test_aae_search_over_speaker_folds_writes_the_best_and_resumes(tmp_path, cache_dir, capsys):
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
    assert 0.0 <= best["score"] <= 1.0 and len(best["test_speakers"]) == 1
    (first,) = _trials(project)
    assert first["status"] == "COMPLETED" and "val_emotion_ua_std" in first["metrics"]
    assert "| trial | status |" in (project / "trials.md").read_text()

    # The same project again needs --resume; with it the finished search is
    # reloaded, not run again.
    assert app.main(arguments) == 2
    assert "--resume" in capsys.readouterr().err
    assert app.main(arguments + ["--resume"]) == 0
    assert "Reloading Tuner" in capsys.readouterr().out
    assert _trials(project) == [first]


def test_attention_search_on_validation_speakers(tmp_path, cache_dir, capsys):
    arguments = _tiny(tmp_path, cache_dir, "--model", "attention_cnn_blstm", "--max-trials", "1")
    assert app.main(arguments) == 0
    printed = capsys.readouterr().out
    assert "validation speaker(s)" in printed
    best = json.loads((tmp_path / "attention_cnn_blstm" / "best_hyperparameters.json").read_text())
    assert best["objective"] == "val_emotion_ua"
    assert best["hyperparameters"]["speaker_loss_weight"] > 0
    # SAVEE's 4 speakers: 1 tested, 1 validating, 2 in the speaker head.
    assert best["model_arguments"]["num_speakers"] == 2
    assert best["model_arguments"]["conv_filters"][0] <= 128  # the CPU preset's widths
    (row,) = _trials(tmp_path / "attention_cnn_blstm")
    assert row["status"] == "COMPLETED"


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
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--directory", str(tmp_path), *arguments]) == 2
    assert expected in capsys.readouterr().err
