"""Export a trained model with its front-end as a versioned SavedModel for TF Serving.

Layout (what TF Serving's model server watches):

    <base_dir>/<name>/<version>/saved_model.pb
                               variables/
                               assets.extra/ser_keras.json

`<version>` is a positive integer; a new export takes the next one. The export
is written into a hidden temporary folder inside `<base_dir>/<name>` (TF
Serving ignores non-numeric folders), verified there, and only then renamed
into place, so a failed export leaves no partial version and never touches
existing ones.

Signatures:

- `serving_default`: `waveform` float32 `[batch, samples]` (mono, at the
  front-end's sample rate, 16 kHz for the presets; zero-padded to the batch's
  longest) and `lengths` int32 `[batch]` (true sample counts) ->
  `emotion_probabilities` float32 `[batch, num_emotions]`, `emotion_label`
  string `[batch]`, and for every other head `<task>_probabilities` (plus
  `<task>_label` when label names were given for it). By default the graph
  first trims each utterance's leading and trailing non-speech
  (`ser_keras.features.trimming.TrimSilence`: the criterion and defaults of
  `ser_keras.audio.io.load_audio`, which trims every training waveform), so
  a client sends raw audio; `trim_silence=False` leaves the waveform as sent.
- `features`: `features` float32 `[batch, frames, mels]` (the front-end's
  output) -> the same outputs.

Both signatures check their inputs at run time (ranks, one `lengths` entry per
row, lengths >= 0, finite samples) and fail with an `InvalidArgumentError`
naming the input; dtypes are checked by the signature itself.

The label names, the front-end (its preset, the arguments that differ from
the preset, and its whole configuration: `describe_frontend`), the silence
trimming (`"trim_silence"`: `describe_trimming`) and the metadata are stored
in `assets.extra/ser_keras.json` and in the SavedModel itself:
`loaded.ser_keras_metadata` (a string variable holding the same JSON) and
`loaded.<task>_label_names` (a string vector variable) after
`tf.saved_model.load` -- no ser_keras import is needed to serve or inspect.

Serving with the real server (not installable here): see
`ser_keras.export.serving` (`models.config` for several models, request
builders) and `python -m apps.export`.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

METADATA_FILENAME = "ser_keras.json"
SERVING_SIGNATURE = "serving_default"
FEATURES_SIGNATURE = "features"
# Task whose head also gives the model's single output when it has no dict outputs.
PRIMARY_TASK = "emotion"


def _existing_versions(model_dir):
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(base_dir, name):
    """The version number an export of `name` into `base_dir` would get (1 when none exists)."""
    versions = _existing_versions(pathlib.Path(base_dir) / name)
    return versions[-1] + 1 if versions else 1


def _as_task_dict(outputs):
    if isinstance(outputs, dict):
        return outputs
    if isinstance(outputs, (list, tuple)):
        raise ValueError(
            "The model must output a dict task -> probabilities (or a single tensor, taken as "
            f"the {PRIMARY_TASK!r} head); received a {type(outputs).__name__} of "
            f"{len(outputs)} outputs."
        )
    return {PRIMARY_TASK: outputs}


def _model_feature_shape(model, frontend):
    """`(frames, mels)` the model takes, checked against the front-end's output."""
    frontend_shape = tuple(frontend.compute_output_shape((None, None)))[1:]
    model_shape = None
    inputs = getattr(model, "inputs", None)
    if inputs:
        if len(inputs) != 1:
            raise ValueError(
                f"The model must take one features input; it has {len(inputs)} inputs."
            )
        model_shape = tuple(inputs[0].shape)[1:]
        if len(model_shape) != 2:
            raise ValueError(
                f"The model's input must be [batch, frames, mels]; received {inputs[0].shape}."
            )
        for model_dim, frontend_dim in zip(model_shape, frontend_shape, strict=True):
            if model_dim is not None and frontend_dim is not None and model_dim != frontend_dim:
                raise ValueError(
                    f"The front-end produces features [batch, {frontend_shape[0]}, "
                    f"{frontend_shape[1]}] but the model takes [batch, {model_shape[0]}, "
                    f"{model_shape[1]}]."
                )
    frames = (model_shape[0] if model_shape else None) or frontend_shape[0]
    mels = (model_shape[1] if model_shape else None) or frontend_shape[1]
    if mels is None:
        raise ValueError("Neither the model nor the front-end fixes the number of mel bands.")
    return frames, mels


def _json_or_none(value):
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


class _ExportedFunctions:
    """The signature functions: front-end + model -> dict of named outputs."""

    def __init__(self, model, frontend, tasks, label_names, feature_shape, trimmer=None):
        self.model = model
        self.frontend = frontend
        self.trimmer = trimmer
        self.tasks = tasks
        self.label_names = label_names
        self.feature_shape = feature_shape

    def outputs(self, features):
        predictions = _as_task_dict(self.model(features, training=False))
        result = {}
        for task in self.tasks:
            probabilities = tf.cast(predictions[task], tf.float32)
            result[f"{task}_probabilities"] = probabilities
            if task in self.label_names:
                names = tf.constant(self.label_names[task], dtype=tf.string)
                result[f"{task}_label"] = tf.gather(names, tf.argmax(probabilities, axis=-1))
        return result

    def serve(self, waveform, lengths):
        waveform, lengths = _checked_waveform_inputs(waveform, lengths)
        if self.trimmer is not None:
            waveform, lengths = self.trimmer((waveform, lengths))
        return self.outputs(self.frontend((waveform, lengths)))

    def features(self, features):
        # `ensure_shape` is a run-time check: a signature's placeholders do not
        # refuse a tensor of another rank (a rank-2 `features` would otherwise
        # fail deep inside the model with an unrelated message).
        features = tf.ensure_shape(features, self.feature_shape, name="check_features")
        return self.outputs(features)


def _checked_waveform_inputs(waveform, lengths):
    """Run-time checks of the `serving_default` inputs, with messages naming them.

    A SavedModel signature checks the dtypes of its inputs but not their ranks
    or sizes (neither does TF Serving): without these checks a rank-1
    `waveform` fails inside the front-end with "slice index 1 of dimension 0
    out of bounds", a `lengths` of one entry is silently broadcast to every
    row, and negative lengths or NaN samples give meaningless probabilities.
    """
    waveform = tf.ensure_shape(waveform, [None, None], name="check_waveform")
    lengths = tf.ensure_shape(lengths, [None], name="check_lengths")
    checks = [
        tf.debugging.assert_equal(
            tf.shape(lengths)[0],
            tf.shape(waveform)[0],
            message="`lengths` must hold one entry per row of `waveform` (lengths, rows):",
        ),
        tf.debugging.assert_non_negative(
            lengths, message="`lengths` must be sample counts >= 0; received:"
        ),
        tf.debugging.assert_all_finite(waveform, message="`waveform` has NaN or inf samples"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(waveform), tf.identity(lengths)


def _write_saved_model(path, model, frontend, trimmer, tasks, names, frames, mels, document_json):
    """Writes the SavedModel: signatures as concrete functions, variables tracked by a tf.Module.

    Only the variables are attached to the saved object (not the Keras
    objects, and no `tf.function` attributes): TensorFlow then traces each
    signature once instead of re-tracing the whole model while saving.
    """
    functions = _ExportedFunctions(model, frontend, tasks, names, [None, frames, mels], trimmer)
    serve = tf.function(
        functions.serve,
        input_signature=[
            tf.TensorSpec([None, None], tf.float32, name="waveform"),
            tf.TensorSpec([None], tf.int32, name="lengths"),
        ],
        autograph=False,
    )
    features = tf.function(
        functions.features,
        input_signature=[tf.TensorSpec([None, frames, mels], tf.float32, name="features")],
        autograph=False,
    )
    module = tf.Module(name="ser_keras_export")
    module.model_variables = list(model.variables)
    module.frontend_variables = list(frontend.variables)
    module.ser_keras_metadata = tf.Variable(
        document_json, trainable=False, name="ser_keras_metadata"
    )
    for task, values in names.items():
        setattr(
            module,
            f"{task}_label_names",
            tf.Variable(values, dtype=tf.string, trainable=False, name=f"{task}_label_names"),
        )
    tf.saved_model.save(
        module,
        str(path),
        signatures={
            SERVING_SIGNATURE: serve.get_concrete_function(),
            FEATURES_SIGNATURE: features.get_concrete_function(),
        },
    )


def export_saved_model(
    model,
    base_dir,
    name,
    *,
    frontend,
    label_names,
    version=None,
    metadata=None,
    trim_silence=True,
    verify=True,
    tolerance=1e-4,
):
    """Exports `frontend` + `model` as `base_dir/name/<version>/` for TF Serving.

    `serving_default` runs: input checks -> silence trimming (unless
    `trim_silence=False`) -> `frontend` -> `model`; `features` runs `model`
    alone.

    Args:
        model: A built Keras model taking features `[batch, frames, mels]` and
            returning a dict task -> softmax probabilities (a single tensor is
            taken as the `"emotion"` head), e.g. a `MultiTaskModel`.
        base_dir: Folder holding one subfolder per served model (the package's
            `saved_models/`); created when missing.
        name: Model name (the subfolder; TF Serving's `MODEL_NAME`).
        frontend: The feature front-end layer (a `ser_keras.features.logmel.
            LogMel`) mapping `(waveform, lengths)` to the model's features.
        label_names: Dict task -> list of class names in class-index order.
            Required for the `"emotion"` task (gives `emotion_label`);
            optional for the others.
        version: Integer version to write; None takes the next one after the
            existing versions (1 for the first export). An existing version is
            never overwritten.
        metadata: Optional JSON-serialisable dict stored with the export
            (training run, data, scores, ...).
        trim_silence: How `serving_default` trims each utterance's leading
            and trailing non-speech before the front-end, to match how the
            training audio was decoded: `True` (default) trims as
            `load_audio` does with `AudioOptions()`' defaults (what every
            training app uses); `False` or `None` does not trim (for a model
            trained on untrimmed audio, `AudioOptions(trim=False)`); an
            `ser_keras.audio.io.AudioOptions` trims as those options do
            (none when `trim=False`; `remove_pauses=True` is refused: pauses
            inside utterances are not removed in the graph); a
            `ser_keras.features.trimming.TrimSilence` layer is used as is.
            Its sample rate must be the front-end's.
        verify: Reload the written SavedModel (before it is moved into place)
            and check that both signatures reproduce the Keras model's
            probabilities on a random batch (whose first row has silence
            around noise; with trimming, the expected probabilities are
            those of the rows trimmed in numpy by `ser_keras.audio.io.
            trim_silence`).
        tolerance: Absolute tolerance of that check.

    Returns:
        `pathlib.Path` of the version folder.

    Raises:
        ValueError: Bad arguments (unknown task in `label_names`, wrong number
            of names, existing version, metadata not JSON, shapes of the
            front-end and the model that do not match, a `trim_silence` of
            another type or sample rate).
        RuntimeError: Verification failed (nothing is left behind).
    """
    if not isinstance(name, str) or not name or name.startswith(".") or os.sep in name:
        raise ValueError(f"`name` must be a plain folder name; received {name!r}.")
    if not isinstance(frontend, keras.layers.Layer):
        raise ValueError(
            f"`frontend` must be a Keras layer (a LogMel front-end); received {frontend!r}."
        )
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValueError(f"`metadata` must be a dict or None; received {metadata!r}.")
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as error:
            raise ValueError(f"`metadata` must be JSON-serialisable: {error}") from error
    if not isinstance(label_names, dict):
        raise ValueError(f"`label_names` must be a dict task -> names; received {label_names!r}.")

    frames, mels = _model_feature_shape(model, frontend)
    sample_rate = int(getattr(frontend, "sample_rate", 16000))
    trimmer = _silence_trimmer(trim_silence, sample_rate)

    # The output structure (symbolic, no computation) fixes the tasks and their sizes.
    predictions = _as_task_dict(
        model.compute_output_spec(keras.KerasTensor((None, frames, mels), dtype="float32"))
    )
    num_classes = {task: int(value.shape[-1]) for task, value in predictions.items()}
    tasks = tuple(predictions)

    unknown = sorted(set(label_names) - set(tasks))
    if unknown:
        raise ValueError(f"`label_names` names tasks {unknown} the model lacks (tasks: {tasks}).")
    if PRIMARY_TASK in tasks and PRIMARY_TASK not in label_names:
        raise ValueError(f"`label_names` must give the {PRIMARY_TASK!r} class names.")
    names = {}
    for task, values in label_names.items():
        values = [str(v) for v in values]
        if len(values) != num_classes[task]:
            raise ValueError(
                f"Task {task!r} has {num_classes[task]} classes but {len(values)} label names "
                f"were given: {values}."
            )
        names[task] = values

    model_dir = pathlib.Path(base_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    existing = _existing_versions(model_dir)
    if version is None:
        version = existing[-1] + 1 if existing else 1
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer or None; received {version!r}.")
    final_dir = model_dir / str(version)
    if final_dir.exists():
        raise ValueError(f"Version {version} of {name!r} exists already: {final_dir}.")

    output_keys = []
    for task in tasks:
        output_keys.append(f"{task}_probabilities")
        if task in names:
            output_keys.append(f"{task}_label")
    document = {
        "format": "ser_keras.saved_model/1",
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_name": model.name,
        "model_config": _json_or_none(_safe_config(model)),
        "tasks": {
            task: {"num_classes": num_classes[task], "label_names": names.get(task)}
            for task in tasks
        },
        "frontend": describe_frontend(frontend),
        "trim_silence": describe_trimming(trimmer),
        "sample_rate": sample_rate,
        "num_frames": frames,
        "num_mels": mels,
        "signatures": {
            SERVING_SIGNATURE: {
                "inputs": {
                    "waveform": "float32 [batch, samples]",
                    "lengths": "int32 [batch]",
                },
                "outputs": output_keys,
            },
            FEATURES_SIGNATURE: {
                "inputs": {"features": f"float32 [batch, {frames}, {mels}]"},
                "outputs": output_keys,
            },
        },
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "ser_keras": _package_version(),
        },
        "metadata": metadata or {},
    }
    document_json = json.dumps(document, indent=2, sort_keys=True)

    temporary_dir = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        _write_saved_model(
            temporary_dir, model, frontend, trimmer, tasks, names, frames, mels, document_json
        )
        extra = temporary_dir / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / METADATA_FILENAME).write_text(document_json + "\n")
        if verify:
            _verify(temporary_dir, model, frontend, trimmer, tasks, names, frames, mels, tolerance)
        if final_dir.exists():
            raise ValueError(f"Version {version} of {name!r} appeared during the export.")
        os.rename(temporary_dir, final_dir)
    except BaseException:
        shutil.rmtree(temporary_dir, ignore_errors=True)
        raise
    return final_dir


# Layer arguments that do not change what a front-end computes.
_LAYER_BASE_KEYS = ("name", "trainable", "dtype")


def _silence_trimmer(trim_silence, sample_rate):
    """The `TrimSilence` layer `export_saved_model`'s `trim_silence` asks for, or None."""
    from ser_keras.audio.io import AudioOptions
    from ser_keras.features.trimming import TrimSilence

    if trim_silence is None or trim_silence is False:
        return None
    if trim_silence is True:
        return TrimSilence(sample_rate=sample_rate, name="trim_silence")
    if isinstance(trim_silence, AudioOptions):
        if not (trim_silence.trim or trim_silence.remove_pauses):
            return None
        try:
            return TrimSilence.from_audio_options(
                trim_silence, sample_rate=sample_rate, name="trim_silence"
            )
        except ValueError as error:
            raise ValueError(f"`trim_silence`: {error}") from error
    if isinstance(trim_silence, TrimSilence):
        if trim_silence.sample_rate != sample_rate:
            raise ValueError(
                f"`trim_silence` works at {trim_silence.sample_rate} Hz but the front-end "
                f"takes {sample_rate} Hz waveforms."
            )
        return trim_silence
    raise ValueError(
        "`trim_silence` must be True, False, None, an AudioOptions or a TrimSilence layer; "
        f"received {trim_silence!r}."
    )


def describe_trimming(trimmer):
    """The `"trim_silence"` entry of an export's metadata.

    Args:
        trimmer: The `TrimSilence` layer in front of the front-end, or None.

    Returns:
        A JSON-serialisable dict: `enabled` (bool) and `description` (in
        words); with trimming also `class` (module-qualified), `config` (the
        layer's arguments: `sample_rate`, `top_db`, `frame_length` and
        `hop_length` in seconds, `silence_floor_db`), `frame_samples` and
        `hop_samples` (the frame sizes in samples).
    """
    if trimmer is None:
        return {
            "enabled": False,
            "description": "serving_default computes features from the waveform as sent "
            "(no silence trimming).",
        }
    config = {
        key: value for key, value in trimmer.get_config().items() if key not in _LAYER_BASE_KEYS
    }
    return {
        "enabled": True,
        "class": f"{type(trimmer).__module__}.{type(trimmer).__qualname__}",
        "config": config,
        "frame_samples": trimmer.frame_samples,
        "hop_samples": trimmer.hop_samples,
        "description": "serving_default trims each utterance's leading and trailing "
        f"non-speech before the front-end, as ser_keras.audio.io.trim_silence does: frames "
        f"of {trimmer.frame_samples} samples every {trimmer.hop_samples} samples more than "
        f"{config['top_db']:g} dB below the utterance's loudest frame"
        + (
            ""
            if config["silence_floor_db"] is None
            else f"; an utterance peaking below {config['silence_floor_db']:g} dBFS becomes empty"
        )
        + ".",
    }


def describe_frontend(frontend):
    """A JSON description of a front-end that rebuilds it without guessing.

    Args:
        frontend: A Keras layer, normally a `ser_keras.features.logmel.LogMel`.

    Returns:
        A dict with `class` (module-qualified class name), `config` (its
        `get_config()`, None when not JSON-serialisable), and for a `LogMel`
        `preset` (the nearest preset of `FRONTEND_PRESETS`: the one from which
        the fewest arguments differ) and `overrides` (those arguments), so
        that `LogMel.from_preset(preset, **overrides)` computes the same
        features. `preset` and `overrides` are None for other layers.
    """
    config = frontend.get_config()
    description = {
        "class": f"{type(frontend).__module__}.{type(frontend).__qualname__}",
        "config": _json_or_none(config),
        "preset": None,
        "overrides": None,
    }
    from ser_keras.features.logmel import FRONTEND_PRESETS, LogMel

    if isinstance(frontend, LogMel) and description["config"] is not None:
        best = None
        for preset in FRONTEND_PRESETS:
            reference = LogMel.from_preset(preset).get_config()
            overrides = {
                key: config[key]
                for key in reference
                if key not in _LAYER_BASE_KEYS and config.get(key) != reference[key]
            }
            if best is None or len(overrides) < len(best[1]):
                best = (preset, overrides)
        description["preset"], description["overrides"] = best
    return description


def frontend_from_description(description):
    """Builds the front-end a `describe_frontend` dict (or a hand-written one) describes.

    Args:
        description: A dict with `preset` (a `FRONTEND_PRESETS` name) and
            optionally `overrides` (constructor arguments replacing the
            preset's), or with a LogMel `config` (`LogMel.get_config()`). The
            preset is used when both are given.

    Returns:
        A `ser_keras.features.logmel.LogMel` layer.

    Raises:
        ValueError: Neither a preset nor a config, an unknown preset or
            argument, or a class other than LogMel.
    """
    from ser_keras.features.logmel import LogMel

    if not isinstance(description, dict):
        raise ValueError(
            f"A front-end description must be a dict with 'preset' or 'config'; "
            f"received {description!r}."
        )
    class_name = description.get("class")
    if class_name and class_name.rsplit(".", 1)[-1] != LogMel.__name__:
        raise ValueError(f"Only LogMel front-ends can be rebuilt; received class {class_name!r}.")
    try:
        if description.get("preset"):
            return LogMel.from_preset(description["preset"], **(description.get("overrides") or {}))
        if description.get("config"):
            return LogMel.from_config(dict(description["config"]))
    except TypeError as error:  # an unknown constructor argument
        raise ValueError(f"Cannot build the front-end {description!r}: {error}") from error
    raise ValueError(
        f"A front-end description needs a 'preset' or a 'config'; received keys "
        f"{sorted(description)}."
    )


def load_metadata(export_dir):
    """The `ser_keras.json` document of an exported version folder, as a dict."""
    path = pathlib.Path(export_dir) / "assets.extra" / METADATA_FILENAME
    if not path.is_file():
        raise ValueError(f"No {METADATA_FILENAME} in {export_dir} (not a ser_keras export?).")
    return json.loads(path.read_text())


def _safe_config(model):
    try:
        return model.get_config()
    except Exception:  # noqa: BLE001 - a model without a config still exports.
        return None


def _package_version():
    import ser_keras

    return getattr(ser_keras, "__version__", None)


_TRIM_ARGUMENTS = ("sample_rate", "top_db", "frame_length", "hop_length", "silence_floor_db")


def _verification_waveform(sample_rate, rng):
    """Two rows: silence, noise, faint noise (1.5 s); and 0.5 s of noise (the padded row)."""
    waveform = (0.1 * rng.standard_normal((2, int(1.5 * sample_rate)))).astype("float32")
    quarter = sample_rate // 4
    waveform[0, :quarter] = 0.0
    waveform[0, -quarter:] *= 1e-3
    lengths = np.array([waveform.shape[1], sample_rate // 2], dtype="int32")
    return waveform, lengths


def _verify(export_dir, model, frontend, trimmer, tasks, names, frames, mels, tolerance):
    """Reloads the export and compares both signatures with the Keras model.

    With trimming, the `serving_default` reference is the front-end and the
    model on the rows trimmed by the numpy `trim_silence` (so the in-graph
    trimming is checked against the training one).
    """
    loaded = tf.saved_model.load(str(export_dir))
    missing = {SERVING_SIGNATURE, FEATURES_SIGNATURE} - set(loaded.signatures)
    if missing:
        raise RuntimeError(f"The export lacks the signatures {sorted(missing)}.")
    rng = np.random.default_rng(1)
    sample_rate = int(getattr(frontend, "sample_rate", 16000))
    waveform, lengths = _verification_waveform(sample_rate, rng)
    if trimmer is None:
        features = keras.ops.convert_to_numpy(frontend((waveform, lengths)))
    else:
        from ser_keras.features.trimming import trim_silence_batch

        config = trimmer.get_config()
        trimmed, trimmed_lengths, _ = trim_silence_batch(
            waveform,
            lengths,
            **{key: config[key] for key in _TRIM_ARGUMENTS},
        )
        features = keras.ops.convert_to_numpy(frontend((trimmed, trimmed_lengths)))
    num_frames = frames or features.shape[1]
    random_features = rng.standard_normal((2, num_frames, mels)).astype("float32")

    checks = (
        (
            SERVING_SIGNATURE,
            {"waveform": tf.constant(waveform), "lengths": tf.constant(lengths)},
            features,
        ),
        (FEATURES_SIGNATURE, {"features": tf.constant(random_features)}, random_features),
    )
    for signature, inputs, keras_inputs in checks:
        served = loaded.signatures[signature](**inputs)
        expected = _as_task_dict(model(keras_inputs, training=False))
        for task in tasks:
            want = keras.ops.convert_to_numpy(expected[task]).astype("float32")
            got = served[f"{task}_probabilities"].numpy()
            if got.shape != want.shape:
                raise RuntimeError(
                    f"Export verification failed: signature {signature!r}, task {task!r}: "
                    f"shape {got.shape} != {want.shape}."
                )
            if not np.allclose(got, want, atol=tolerance, rtol=0):
                raise RuntimeError(
                    f"Export verification failed: signature {signature!r}, task {task!r}: "
                    f"max difference {np.max(np.abs(got - want)):.3g} (tolerance {tolerance})."
                )
            if task in names:
                labels = [v.decode() for v in served[f"{task}_label"].numpy()]
                expected_labels = [names[task][i] for i in np.argmax(got, axis=-1)]
                if labels != expected_labels:
                    raise RuntimeError(
                        f"Export verification failed: {signature!r} labels {labels} != "
                        f"{expected_labels}."
                    )
