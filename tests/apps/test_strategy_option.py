"""`--strategy` on every training app (chief-only writes: test_train_savee_crosslang)."""

import importlib

import pytest

TRAINING_APPS = (
    "train_savee_crosslang",
    "train_aae_mtl",
    "train_crosslang_valence",
    "train_gender_naturalness",
    "train_multilingual_gating",
    "tune",
)


def _app(name):
    return importlib.import_module(f"apps.{name}")


def _output_arguments(name, tmp_path):
    if name == "tune":
        return ["--model", "aae_mtl", "--directory", str(tmp_path / "tune")]
    return ["--out", str(tmp_path / "run")]


@pytest.mark.parametrize("name", TRAINING_APPS)
def test_help_names_the_strategy_option(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _app(name).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--strategy {none,mirrored,multiworker}" in text


@pytest.mark.parametrize("name", TRAINING_APPS)
def test_wrong_strategy_exits_with_status_2_and_names_it(name, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _app(name).main([*_output_arguments(name, tmp_path), "--strategy", "horovod"])
    assert exit_info.value.code == 2
    assert "'horovod'" in capsys.readouterr().err


@pytest.mark.parametrize("name", TRAINING_APPS)
def test_multiworker_without_tf_config_is_a_clear_error_before_any_work(
    name, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert _app(name).main([*_output_arguments(name, tmp_path), "--strategy", "multiworker"]) == 2
    assert "TF_CONFIG" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no run folder, no corpus generated
