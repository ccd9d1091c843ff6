"""Checks every model of the package passes (shared by the models' tests).

`check_model` builds (or takes) a model and checks, in order:

1. output shapes on `sample_inputs` (also that the outputs are finite);
2. `get_config()` -> `from_config()` gives a model of the same class and
   structure (same config after a JSON round trip, same weight shapes) that,
   given the same weights, computes the same outputs;
3. `.keras` save -> `keras.saving.load_model` gives identical outputs;
4. optionally (`export=True`), `export_saved_model` and a
   `tf.saved_model.load` in a separate Python process that never imports
   ser_keras reproduce the probabilities through the `features` signature, and
   the `serving_default` signature returns the label strings.

The loader of step 4 is public for other tests that check an export the same
way: `SAVED_MODEL_LOADER` (its source) and `saved_model_loader_command`.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Python source of a loader run in a fresh interpreter (`python -c SAVED_MODEL_LOADER
#: export_dir inputs.npz outputs.npz`): loads the SavedModel with TensorFlow alone, runs
#: the `features` signature on `inputs["features"]` and `serving_default` on
#: `inputs["waveform"]` / `inputs["lengths"]`, and writes every output to `outputs.npz` as
#: `features/<name>` and `serving_default/<name>` (string tensors as bytes), plus
#: `metadata`. It exits with an error if anything imported ser_keras. Build the command
#: with `saved_model_loader_command`.
SAVED_MODEL_LOADER = textwrap.dedent(
    """
    import json, os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    export_dir, inputs_path, outputs_path = sys.argv[1:4]
    loaded = tf.saved_model.load(export_dir)
    data = np.load(inputs_path)
    features = loaded.signatures["features"](features=tf.constant(data["features"]))
    served = loaded.signatures["serving_default"](
        waveform=tf.constant(data["waveform"]), lengths=tf.constant(data["lengths"])
    )
    def plain(value):  # string tensors come back as object arrays of bytes
        value = value.numpy()
        return value.astype("S") if value.dtype == object else value

    result = {f"features/{k}": plain(v) for k, v in features.items()}
    result.update({f"serving_default/{k}": plain(v) for k, v in served.items()})
    result["metadata"] = np.array(loaded.ser_keras_metadata.numpy())
    np.savez(outputs_path, **result)
    leaked = sorted(m for m in sys.modules if m == "ser_keras" or m.startswith("ser_keras."))
    if leaked:
        raise SystemExit(f"ser_keras was imported: {leaked}")
    """
)


def saved_model_loader_command(export_dir, inputs_path, outputs_path) -> list[str]:
    """The command line that runs `SAVED_MODEL_LOADER` on an exported SavedModel.

    Run it with a working folder outside the project root and without
    `PYTHONPATH`, so that `import ser_keras` would fail there: the SavedModel
    is then shown to load with TensorFlow alone.

    Args:
        export_dir: The SavedModel folder (`export_saved_model`'s result).
        inputs_path: `.npz` holding `features`, `waveform` and `lengths`.
        outputs_path: `.npz` the loader writes.

    Returns:
        The argument list for `subprocess.run` / `subprocess.Popen`.
    """
    return [
        sys.executable,
        "-c",
        SAVED_MODEL_LOADER,
        str(export_dir),
        str(inputs_path),
        str(outputs_path),
    ]


def _as_dict(outputs):
    if isinstance(outputs, dict):
        return {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return {str(i): keras.ops.convert_to_numpy(v) for i, v in enumerate(outputs)}
    return {"output": keras.ops.convert_to_numpy(outputs)}


def _normalised(config):
    """The config as plain JSON types (tuples become lists), for comparison."""
    return json.loads(json.dumps(config, default=str))


def _config_differences(first, second, path="config"):
    """Paths where two normalised configs differ (for the assertion message)."""
    if type(first) is not type(second):
        return [f"{path}: {first!r} != {second!r}"]
    if isinstance(first, dict):
        differences = []
        for key in sorted(set(first) | set(second), key=str):
            if key not in first or key not in second:
                differences.append(f"{path}/{key}: only in one config")
            else:
                differences += _config_differences(first[key], second[key], f"{path}/{key}")
        return differences
    if isinstance(first, list):
        if len(first) != len(second):
            return [f"{path}: {len(first)} items != {len(second)} items"]
        differences = []
        for index, (a, b) in enumerate(zip(first, second, strict=True)):
            differences += _config_differences(a, b, f"{path}[{index}]")
        return differences
    return [] if first == second else [f"{path}: {first!r} != {second!r}"]


def _assert_same_outputs(actual, expected, atol, what):
    assert actual.keys() == expected.keys(), f"{what}: outputs {actual.keys()} != {expected.keys()}"
    for key in expected:
        np.testing.assert_allclose(
            actual[key], expected[key], rtol=0, atol=atol, err_msg=f"{what}: output {key!r}"
        )


def check_model(
    model_or_builder,
    sample_inputs,
    expected_output_shapes,
    tmp_path,
    *,
    export=False,
    frontend=None,
    label_names=None,
    atol=1e-6,
    export_atol=1e-5,
):
    """Runs the shared checks on a model; returns the model.

    Args:
        model_or_builder: A built Keras model, or a callable returning one.
        sample_inputs: A batch the model takes (array or structure of arrays).
        expected_output_shapes: Output shape(s): a dict name -> shape tuple
            for dict outputs, else a tuple.
        tmp_path: A folder for the saved files (pytest's `tmp_path`).
        export: Also export with `export_saved_model` and reload the
            SavedModel in a separate process that never imports ser_keras
            (the model must take log-mel features and output probabilities).
        frontend: The front-end for the export; default: the `"fu2021"`
            LogMel with the model's number of frames and mel bands.
        label_names: Dict task -> class names for the export; default
            `"class_<i>"` names for every task.
        atol: Tolerance of the config and `.keras` round trips.
        export_atol: Tolerance of the exported probabilities.
    """
    tmp_path = pathlib.Path(tmp_path)
    is_model = isinstance(model_or_builder, keras.Model)
    model = model_or_builder if is_model else model_or_builder()
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model (or a builder of one); got {type(model)}.")

    # 1. Output shapes.
    outputs = _as_dict(model(sample_inputs, training=False))
    if isinstance(expected_output_shapes, dict):
        expected_shapes = {k: tuple(v) for k, v in expected_output_shapes.items()}
    else:
        expected_shapes = {next(iter(outputs)): tuple(expected_output_shapes)}
    assert {k: tuple(v.shape) for k, v in outputs.items()} == expected_shapes
    for key, value in outputs.items():
        assert np.all(np.isfinite(value)), f"output {key!r} has non-finite values"

    # 2. get_config -> from_config: same class, same config, same weights layout.
    config = model.get_config()
    json.dumps(config)  # a config must be JSON-serialisable
    clone = type(model).from_config(copy.deepcopy(config))
    assert type(clone) is type(model)
    differences = _config_differences(_normalised(config), _normalised(clone.get_config()))
    assert not differences, "from_config changed the config:\n" + "\n".join(differences[:20])
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]
    clone.set_weights(model.get_weights())
    _assert_same_outputs(
        _as_dict(clone(sample_inputs, training=False)), outputs, atol, "from_config"
    )

    # 3. .keras round trip.
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded) is type(model)
    _assert_same_outputs(_as_dict(reloaded(sample_inputs, training=False)), outputs, atol, ".keras")
    # ... and in a fresh Python that imported nothing but `ser_keras.models`,
    # as the README tells users: every class in the file must be registered
    # by that import.
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, keras, ser_keras.models; "
            "print(type(keras.saving.load_model(sys.argv[1])).__name__)",
            str(path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
    )
    assert completed.returncode == 0, (
        f"{path.name} does not load after `import ser_keras.models`:\n{completed.stderr[-3000:]}"
    )
    assert completed.stdout.strip().splitlines()[-1] == type(model).__name__

    # 4. SavedModel export, loaded without ser_keras.
    if export:
        _check_export(model, sample_inputs, outputs, tmp_path, frontend, label_names, export_atol)
    return model


def _check_export(model, sample_inputs, outputs, tmp_path, frontend, label_names, atol):
    from ser_keras.export.saved_model import export_saved_model
    from ser_keras.features.logmel import LogMel

    num_frames, num_mels = tuple(model.inputs[0].shape)[1:]
    if frontend is None:
        frontend = LogMel.from_preset("fu2021", num_frames=num_frames, num_mels=num_mels)
    if label_names is None:
        label_names = {
            task: [f"class_{i}" for i in range(value.shape[-1])] for task, value in outputs.items()
        }
    # verify=False: the separate process below checks more than the in-process reload.
    export_dir = export_saved_model(
        model,
        tmp_path / "saved_models",
        "check",
        frontend=frontend,
        label_names=label_names,
        verify=False,
    )
    assert export_dir == tmp_path / "saved_models" / "check" / "1"

    rng = np.random.default_rng(0)
    sample_rate = frontend.sample_rate
    waveform = (0.1 * rng.standard_normal((2, sample_rate))).astype("float32")
    lengths = np.array([sample_rate, sample_rate // 3], dtype="int32")
    inputs_path = tmp_path / "export_inputs.npz"
    outputs_path = tmp_path / "export_outputs.npz"
    np.savez(
        inputs_path,
        features=np.asarray(sample_inputs, dtype="float32"),
        waveform=waveform,
        lengths=lengths,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        saved_model_loader_command(export_dir, inputs_path, outputs_path),
        cwd=str(tmp_path),  # not the project root, so `import ser_keras` would fail
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    served = dict(np.load(outputs_path, allow_pickle=True))

    for task, expected in outputs.items():
        np.testing.assert_allclose(
            served[f"features/{task}_probabilities"], expected, rtol=0, atol=atol
        )
    served_features = keras.ops.convert_to_numpy(frontend((waveform, lengths)))
    through_keras = _as_dict(model(served_features, training=False))
    for task, expected in through_keras.items():
        probabilities = served[f"serving_default/{task}_probabilities"]
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=atol)
        if task in label_names:
            labels = [v.decode() for v in served[f"serving_default/{task}_label"]]
            assert labels == [label_names[task][i] for i in np.argmax(probabilities, axis=-1)]
    metadata = json.loads(served["metadata"].item().decode())
    assert metadata["tasks"][next(iter(label_names))]["label_names"] == list(
        label_names[next(iter(label_names))]
    )
