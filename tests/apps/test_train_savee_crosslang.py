import json
import shutil

import pytest

from apps import train_savee_crosslang as app
from ser_keras.export.saved_model import load_metadata


def _tiny(out, cache_dir, *extra):
    return [
        "--synthetic-per-emotion", "2", "--epochs", "1", "--folds", "1", "--quiet",
        "--out", str(out), "--cache-dir", str(cache_dir), *extra,
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One tiny run of the single-task and multitask cross-language settings."""
    root = tmp_path_factory.mktemp("savee_crosslang")
    arguments = _tiny(
        root / "run", root / "cache", "--settings", "stl,mtl_xl",
        "--export-dir", str(root / "exported"), "--num-frames", "96", "--spec-augment",
    )
    assert app.main(arguments) == 0
    return root, arguments


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ["--savee", "--emodb", "--settings", "--preset", "--epochs", "--folds",
                   "--seed", "--out", "--export-dir", "--resume", "--strategy", "--num-frames",
                   "--spec-augment"]:
        assert option in text


def test_run_writes_table2_results_plots_and_export(finished_run):
    root, _ = finished_run
    out = root / "run"
    results = json.loads((out / "results.json").read_text())
    assert set(results["settings"]) == {"stl", "mtl_xl"}
    assert results["configuration"]["preset"] == "quick"
    for setting, entry in results["settings"].items():
        assert 0.0 <= entry["ua"] <= 100.0 and 0.0 <= entry["wa"] <= 100.0
        assert [fold["fold"] for fold in entry["folds"]] == ["savee_DC"]
        assert (out / f"confusion_{setting}.png").stat().st_size > 0
        assert (out / setting / "fold_savee_DC" / "training_curves.png").exists()
    # The multitask cross-language fold trained on EMO-DB as well as SAVEE.
    mtl_xl_fold = json.loads((out / "mtl_xl" / "fold_savee_DC" / "result.json").read_text())
    stl_fold = json.loads((out / "stl" / "fold_savee_DC" / "result.json").read_text())
    assert mtl_xl_fold["num_train"] > stl_fold["num_train"]
    assert mtl_xl_fold["num_test"] == stl_fold["num_test"]
    markdown = (out / "results.md").read_text()
    assert markdown.count("## Confusion matrix") == 2
    assert "multitask cross-language training" in markdown
    versions = sorted(path.name for path in (root / "exported" / "attention_cnn_blstm").iterdir())
    assert versions == ["1"]
    assert (root / "exported" / "attention_cnn_blstm" / "1" / "saved_model.pb").exists()
    assert 'name: "attention_cnn_blstm"' in (root / "exported" / "models.config").read_text()
    assert results["export"].endswith("attention_cnn_blstm/1")
    # The setting with the best validation UA is exported, and named.
    best = max(
        (fold["best_validation_ua"], name)
        for name, entry in results["settings"].items()
        for fold in entry["folds"]
    )
    assert results["exported"]["validation_ua"] == best[0]
    assert metadata_of_export(root)["setting"] == results["exported"]["setting"]
    # The cropped input and the augmentation are recorded; the export takes 96 frames.
    assert results["configuration"]["num_frames"] == 96
    assert results["configuration"]["spec_augment"] is True
    metadata = load_metadata(root / "exported" / "attention_cnn_blstm" / "1")
    assert metadata["frontend"]["config"]["num_frames"] == 96


def metadata_of_export(root):
    return load_metadata(root / "exported" / "attention_cnn_blstm" / "1")["metadata"]


def test_resume_reuses_finished_folds(finished_run, capsys):
    root, arguments = finished_run
    before = json.loads((root / "run" / "results.json").read_text())
    assert app.main([*arguments, "--no-export", "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out
    after = json.loads((root / "run" / "results.json").read_text())
    for setting in before["settings"]:
        assert after["settings"][setting]["ua"] == before["settings"][setting]["ua"]


def test_resume_with_more_folds_trains_only_the_new_ones(finished_run, tmp_path, capsys):
    """`--folds` may grow on `--resume`: the finished fold is reused, not retrained."""
    root, arguments = finished_run
    shutil.copytree(root / "run", tmp_path / "run")
    first = {
        setting: (tmp_path / "run" / setting / "fold_savee_DC" / "result.json").read_bytes()
        for setting in ("stl", "mtl_xl")
    }
    extended = [*arguments, "--out", str(tmp_path / "run"), "--folds", "2"]
    assert app.main([*extended, "--no-export", "--resume"]) == 0
    assert "already finished" in capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for setting, reused in first.items():
        assert len(results["settings"][setting]["folds"]) == 2
        assert (tmp_path / "run" / setting / "fold_savee_DC" / "result.json").read_bytes() == reused


def test_existing_run_without_resume_is_refused(finished_run, capsys):
    _, arguments = finished_run
    assert app.main(arguments) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--savee", "/no/such/savee"], "/no/such/savee"),
        (["--settings", "stl,bogus"], "bogus"),
        (["--savee", "/tmp", "--settings", "xl"], "--emodb"),
        (["--folds", "0"], "--folds"),
        (["--num-frames", "0"], "--num-frames"),
        (["--epochs", "0"], "--epochs must be an integer of at least 1. Received: 0"),
        (["--epochs", "-1"], "--epochs must be an integer of at least 1. Received: -1"),
        (["--batch-size", "0"], "--batch-size must be an integer of at least 1. Received: 0"),
        (["--validation-fraction", "0.7"], "--validation-fraction"),
        (["--seed", "-3"], "--seed"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, arguments, expected, capsys):
    assert app.main(["--out", str(tmp_path / "run"), *arguments]) == 2
    error = capsys.readouterr().err
    assert expected in error
    assert error.count("\n") == 1 and error.startswith("error: ")
    # Refused before anything is read or written: the corrected rerun is not blocked.
    assert not (tmp_path / "run").exists()


def test_corpus_without_usable_files_is_a_clear_error(tmp_path, capsys):
    savee = tmp_path / "savee" / "AudioData" / "DC"
    savee.mkdir(parents=True)
    (savee / "a01.wav").write_bytes(b"not audio at all")
    arguments = ["--savee", str(tmp_path / "savee"), "--settings", "stl"]
    arguments += ["--out", str(tmp_path / "run")]
    assert app.main(arguments) == 2
    assert "savee" in capsys.readouterr().err


class _NonChiefStrategy:
    """TensorFlow's default strategy, as seen by worker 1 of a two-worker cluster.

    The cluster resolver reads TF_CONFIG like MultiWorkerMirroredStrategy's;
    training itself runs on this process's one device.
    """

    def __init__(self):
        import tensorflow as tf

        self._strategy = tf.distribute.get_strategy()
        self.cluster_resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()

    def __getattr__(self, name):
        return getattr(self._strategy, name)


def test_non_chief_worker_writes_to_its_own_folder_and_exports_nothing(
    finished_run, tmp_path, monkeypatch, capsys
):
    from ser_keras import cli

    config = {"cluster": {"worker": ["host1:1", "host2:1"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    monkeypatch.setattr(cli, "strategy_from_args", lambda args: _NonChiefStrategy())
    out, export_dir = tmp_path / "run", tmp_path / "exported"
    arguments = [
        "--synthetic-per-emotion", "2", "--epochs", "1", "--folds", "1", "--settings", "stl",
        "--quiet", "--out", str(out), "--export-dir", str(export_dir),
        "--cache-dir", str(finished_run[0] / "cache"),  # the corpora of finished_run
    ]
    assert app.main(arguments) == 0
    assert "Not the chief worker" in capsys.readouterr().out
    private = out / "workers" / "worker_1"
    assert (private / "results.json").exists()
    assert (private / "stl" / "fold_savee_DC" / "best.keras").exists()
    assert "export" not in json.loads((private / "results.json").read_text())
    assert sorted(path.name for path in out.iterdir()) == ["workers"]
    assert not export_dir.exists()
