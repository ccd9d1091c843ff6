import contextlib
import io
import os
import pathlib
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from apps import export as app
from ser_keras.export.saved_model import load_metadata
from ser_keras.export.serving import write_export_sidecar
from ser_keras.features.logmel import LogMel
from ser_keras.training.multitask import MultiTaskModel
from tests.model_checks import saved_model_loader_command

NUM_FRAMES, NUM_MELS = 20, 10
EMOTIONS = ["anger", "happiness", "neutral"]
SPEAKERS = ["savee:DC", "savee:JE"]


def _frontend():
    return LogMel.from_preset("fu2021", num_frames=NUM_FRAMES, num_mels=NUM_MELS)


def _train_like_an_app(fold_dir):
    """A small two-head model saved as a training run keeps it: best.keras + sidecar."""
    keras.utils.set_random_seed(1)
    features = keras.Input((NUM_FRAMES, NUM_MELS), name="features")
    hidden = keras.layers.Conv1D(6, 3, activation="relu")(features)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    model = MultiTaskModel(
        features,
        {
            "emotion": keras.layers.Dense(3, activation="softmax", name="emotion")(pooled),
            "speaker": keras.layers.Dense(2, activation="softmax", name="speaker")(pooled),
        },
    )
    model.compile(optimizer="rmsprop")
    fold_dir.mkdir(parents=True)
    model.save(fold_dir / "best.keras")
    write_export_sidecar(
        fold_dir / "best.keras",
        frontend=_frontend(),
        label_names={"emotion": EMOTIONS, "speaker": SPEAKERS},
        name="ser_small",
        metadata={"app": "test", "fold": "DC"},
    )
    return model


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = app.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_app")
    fold_dir = root / "run" / "mtl" / "fold_DC"
    model = _train_like_an_app(fold_dir)
    code, out, err = _run("--model-dir", fold_dir, "--export-dir", root / "saved_models")
    assert code == 0, err
    return root, fold_dir, model, out


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in [
        "--model-dir",
        "--name",
        "--version",
        "--export-dir",
        "--frontend",
        "--frontend-option",
        "--labels",
        "--serving-root",
        "--config-only",
        "--no-trim",
    ]:
        assert option in text
    # --no-trim says what it does (argparse wraps the help text).
    assert "Do not trim silence in the served graph" in " ".join(text.split())


def test_export_from_a_sidecar_writes_the_version_and_models_config(exported):
    root, fold_dir, _, printed = exported
    base = root / "saved_models"
    assert sorted(p.name for p in base.iterdir()) == ["models.config", "ser_small"]
    assert sorted(p.name for p in (base / "ser_small").iterdir()) == ["1"]
    document = load_metadata(base / "ser_small" / "1")
    assert document["tasks"]["emotion"]["label_names"] == EMOTIONS
    assert document["tasks"]["speaker"]["label_names"] == SPEAKERS
    assert document["frontend"]["preset"] == "fu2021"
    assert document["frontend"]["overrides"] == {"num_frames": NUM_FRAMES, "num_mels": NUM_MELS}
    assert document["metadata"]["app"] == "test" and document["metadata"]["fold"] == "DC"
    assert document["metadata"]["exported_from"] == str((fold_dir / "best.keras").resolve())
    # Silence trimming in the served graph by default, as training decodes audio.
    assert document["trim_silence"]["enabled"] is True
    assert document["trim_silence"]["config"]["top_db"] == 40.0
    assert "silence trimming: leading and trailing frames more than 40 dB" in printed

    config = (base / "models.config").read_text()
    assert 'name: "ser_small"\n    base_path: "/models/ser_small"' in config
    assert "(verified against the model)" in printed
    assert (
        f"--mount type=bind,source={base.resolve()},target=/models tensorflow/serving "
        "--model_config_file=/models/models.config" in printed
    )
    assert "http://localhost:8501/v1/models/ser_small:predict" in printed


@pytest.fixture(scope="module")
def fresh_processes(exported):
    """`saved_model_cli show --all` and a loader that never imports ser_keras, on the
    export the app wrote, started together (each spends most of its time importing
    TensorFlow: on 2 cores, running them side by side halves the wait)."""
    root = exported[0]
    export_dir = root / "saved_models" / "ser_small" / "1"
    rng = np.random.default_rng(2)
    inputs = {
        "features": rng.uniform(-1, 1, (3, NUM_FRAMES, NUM_MELS)).astype("float32"),
        "waveform": (0.1 * rng.standard_normal((2, 9000))).astype("float32"),
        "lengths": np.array([9000, 4000], dtype="int32"),
    }
    np.savez(root / "inputs.npz", **inputs)
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "3"
    processes = {}
    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
    if cli.exists():
        processes["saved_model_cli"] = subprocess.Popen(
            [str(cli), "show", "--dir", str(export_dir), "--all"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
    # tests/model_checks.py's loader; run outside the project root, where
    # `import ser_keras` would fail.
    processes["loader"] = subprocess.Popen(
        saved_model_loader_command(export_dir, root / "inputs.npz", root / "outputs.npz"),
        cwd=str(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    results = {}

    def result(name):
        if name not in processes:
            pytest.skip(f"no saved_model_cli beside {sys.executable}")
        if name not in results:
            stdout, stderr = processes[name].communicate(timeout=300)
            assert processes[name].returncode == 0, stderr[-3000:]
            results[name] = stdout
        return results[name]

    yield inputs, root / "outputs.npz", result
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_saved_model_cli_lists_both_signatures(fresh_processes):
    text = fresh_processes[2]("saved_model_cli")
    signatures = {}
    for block in re.split(r"\n(?=signature_def\[)", text)[1:]:
        name = re.match(r"signature_def\['([^']+)'\]", block).group(1)
        signatures[name] = {
            (kind, tensor): (dtype, shape)
            for kind, tensor, dtype, shape in re.findall(
                r"(inputs|outputs)\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))",
                block,
            )
        }
    outputs = {
        ("outputs", "emotion_probabilities"): ("DT_FLOAT", "(-1, 3)"),
        ("outputs", "emotion_label"): ("DT_STRING", "(-1)"),
        ("outputs", "speaker_probabilities"): ("DT_FLOAT", "(-1, 2)"),
        ("outputs", "speaker_label"): ("DT_STRING", "(-1)"),
    }
    assert signatures["serving_default"] == {
        ("inputs", "waveform"): ("DT_FLOAT", "(-1, -1)"),
        ("inputs", "lengths"): ("DT_INT32", "(-1)"),
        **outputs,
        ("outputs", "speech_seconds"): ("DT_FLOAT", "(-1)"),
        ("outputs", "cut"): ("DT_BOOL", "(-1)"),
        ("outputs", "no_speech"): ("DT_BOOL", "(-1)"),
    }
    assert signatures["features"] == {
        ("inputs", "features"): ("DT_FLOAT", f"(-1, {NUM_FRAMES}, {NUM_MELS})"),
        **outputs,
    }
    assert "Method name is: tensorflow/serving/predict" in text


def test_a_process_without_ser_keras_serves_the_keras_model_probabilities(
    exported, fresh_processes
):
    _, fold_dir, model, _ = exported
    inputs, outputs_path, result = fresh_processes
    result("loader")
    served = dict(np.load(outputs_path))

    reloaded = keras.saving.load_model(fold_dir / "best.keras", compile=False)
    expected = reloaded(inputs["features"])
    through_frontend = model(_frontend()((inputs["waveform"], inputs["lengths"])))
    for task, names in (("emotion", EMOTIONS), ("speaker", SPEAKERS)):
        np.testing.assert_allclose(
            served[f"features/{task}_probabilities"], expected[task], rtol=0, atol=1e-5
        )
        probabilities = served[f"serving_default/{task}_probabilities"]
        np.testing.assert_allclose(probabilities, through_frontend[task], rtol=0, atol=1e-5)
        labels = [v.decode() for v in served[f"serving_default/{task}_label"]]
        assert labels == [names[i] for i in probabilities.argmax(axis=-1)]


def test_options_stand_in_for_a_missing_sidecar_and_versions_count(exported, tmp_path):
    root, fold_dir, _, _ = exported
    base = tmp_path / "saved_models"
    shutil.copytree(root / "saved_models" / "ser_small", base / "ser_small")
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(fold_dir / "best.keras", plain / "model.keras")  # no sidecar

    code, out, err = _run(
        "--model-dir",
        plain,
        "--export-dir",
        base,
        "--name",
        "ser_small",
        "--version",
        4,
        "--frontend",
        "fu2021",
        "--frontend-option",
        f"num_frames={NUM_FRAMES}",
        "--frontend-option",
        f"num_mels={NUM_MELS}",
        "--labels",
        "anger,happiness,neutral",
        "--serve-versions",
        "all",
        "--no-verify",
        "--no-trim",
    )
    assert code == 0, err
    assert sorted(p.name for p in (base / "ser_small").iterdir()) == ["1", "4"]
    document = load_metadata(base / "ser_small" / "4")
    assert document["trim_silence"]["enabled"] is False
    assert "silence trimming: off (--no-trim)" in out
    assert document["tasks"]["emotion"]["label_names"] == EMOTIONS
    assert document["tasks"]["speaker"]["label_names"] is None  # probabilities only
    assert document["signatures"]["serving_default"]["outputs"] == [
        "emotion_probabilities",
        "emotion_label",
        "speaker_probabilities",
        "speech_seconds",
        "cut",
        "no_speech",
    ]
    assert "ser_small (versions [1, 4])" in out
    assert "all {" in (base / "models.config").read_text()

    # An existing version is refused, and nothing changes.
    code, _, err = _run(
        "--model-dir",
        plain,
        "--export-dir",
        base,
        "--name",
        "ser_small",
        "--version",
        4,
        "--frontend",
        "fu2021",
        "--frontend-option",
        f"num_frames={NUM_FRAMES}",
        "--frontend-option",
        f"num_mels={NUM_MELS}",
        "--labels",
        "anger,happiness,neutral",
    )
    assert code == 2 and "Version 4 of 'ser_small' exists already" in err

    # The front-end must fit the model.
    code, _, err = _run(
        "--model-dir",
        plain,
        "--export-dir",
        base,
        "--name",
        "x",
        "--frontend",
        "fu2021",
        "--labels",
        "anger,happiness,neutral",
    )
    assert code == 2 and "front-end produces features [batch, 256, 128]" in err

    # --config-only rewrites the config from the folders, with host paths on request.
    (base / "models.config").unlink()
    code, out, _ = _run("--config-only", "--export-dir", base, "--host-paths")
    assert code == 0
    assert f'base_path: "{base.resolve()}/ser_small"' in (base / "models.config").read_text()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model-dir", "{tmp}/missing"], "does not exist"),
        (["--model-dir", "{tmp}/two"], r"several models \(\['a.keras', 'b.keras'\]\)"),
        (["--model-dir", "{tmp}/two/a.keras"], "No front-end.*--frontend PRESET"),
        (["--model-dir", "{tmp}/two/a.keras", "--frontend", "fu2021"], "No label names.*--labels"),
        (
            ["--model-dir", "{tmp}/two/a.keras", "--frontend", "fu2021", "--labels", "savee7"],
            "No model name.*--name",
        ),
        (["--model-dir", "{tmp}/two/a.keras", "--labels", "savee8"], "neither.*savee7"),
        (
            ["--model-dir", "{tmp}/two/a.keras", "--labels", "a,b", "--labels", "emotion=c,d"],
            "task 'emotion' twice",
        ),
        (
            ["--model-dir", "{tmp}/two/a.keras", "--frontend", "mfcc", "--labels", "a,b"],
            "Unknown front-end preset: 'mfcc'",
        ),
        (["--model-dir", "{tmp}/two/a.keras", "--frontend-option", "num_frames"], "KEY=VALUE"),
        (["--export-dir", "{tmp}"], "--model-dir is required"),
        (["--config-only", "--export-dir", "{tmp}/two"], "No model folder"),
    ],
)
def test_bad_arguments_are_refused_with_the_reason(tmp_path, arguments, message):
    (tmp_path / "two").mkdir()
    for name in ("a.keras", "b.keras"):
        (tmp_path / "two" / name).write_bytes(b"")
    code, _, err = _run(*[a.format(tmp=tmp_path) for a in arguments])
    assert code == 2
    assert re.search(message, err), err


def test_version_must_be_a_positive_integer(capsys):
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--model-dir", "m.keras", "--version", "0"])
    assert exit_info.value.code == 2
    assert "expected a positive integer, received '0'" in capsys.readouterr().err
