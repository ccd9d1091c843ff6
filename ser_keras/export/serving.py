"""Serving exported models with TF Serving: config, requests, checks, export sidecars.

`ser_keras.export.saved_model.export_saved_model` writes
`<base_dir>/<name>/<version>/`. This module covers what surrounds it:

- **models.config** (`write_models_config`): TF Serving's text-proto
  `ModelServerConfig` listing every model folder under `<base_dir>`, so that
  one server serves them all:

      docker run -p 8500:8500 -p 8501:8501 \\
          --mount type=bind,source="$PWD/saved_models",target=/models \\
          tensorflow/serving --model_config_file=/models/models.config

- **Requests**: `make_predict_request` builds a gRPC `PredictRequest`
  (tensorflow-serving-api's `predict_pb2`, the `serving` extra);
  `rest_predict_body` and `rest_predict_url` build a REST `:predict` call
  (`POST http://host:8501/v1/models/<name>:predict` with a JSON body);
  `waveform_batch` pads variable-length waveforms into the `waveform` +
  `lengths` pair the `serving_default` signature takes. The audio's sample
  rate must be given to `waveform_batch` (and may be given to the request
  builders): audio at another rate than the model's (the export's
  `"sample_rate"`, 16 kHz) is refused with a `ValueError` naming both
  (`check_sample_rate`), never sent as if it were 16 kHz.
- **Checks**: `validate_inputs` checks a request's inputs against a
  signature's and raises a `ValueError` naming the bad input (missing or
  unknown names, dtypes, ranks, fixed sizes, batch sizes that disagree,
  negative lengths, NaN samples) before anything is sent;
  `serve_predict_request` does in-process what the model server does with a
  `PredictRequest` (decode the tensors, call the named signature, encode the
  outputs), for tests and for checking a client without a server.
- **Speaker enrolment** (exports with speaker normalisation, whose
  `enrol` signature turns one speaker's recordings into per-band statistics
  and whose `serving_enrolled` takes them): `rest_enrol_body` /
  `make_enrol_request` build the `enrol` call, `enrolment_statistics` reads
  `band_mean` and `band_std` from its answer (REST, gRPC or in-process),
  `enrolled_inputs`, `rest_enrolled_body` and `make_enrolled_request` build
  the `serving_enrolled` call with them.
- **Export sidecars** (`write_export_sidecar`, `read_export_sidecar`): a
  small JSON file beside a trained `.keras` model (`best.keras` ->
  `best.export.json`) with what the export needs besides the weights -- the
  front-end (preset + overrides) and the label names per task -- so that
  `python -m apps.export` exports it without options.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from ser_keras.audio.io import AudioOptions
from ser_keras.corpora.records import SkippedFile
from ser_keras.export.saved_model import (
    BAND_MEAN,
    BAND_STD,
    ENROL_SIGNATURE,
    ENROLLED_SIGNATURE,
    SERVING_SIGNATURE,
    describe_frontend,
    frontend_from_description,
)
from ser_keras.utils.atomic import write_text_atomic
from ser_keras.utils.validation import positive_int

MODELS_CONFIG_FILENAME = "models.config"
# Where the `docker run --mount ... target=/models` above puts the base folder.
DEFAULT_SERVING_ROOT = "/models"
VERSION_POLICIES = ("latest", "all")
REST_LAYOUTS = ("columnar", "row")
REST_PORT = 8501
# The rate every front-end preset (and so every export of this package) takes:
# `load_audio`'s default output rate.
DEFAULT_SAMPLE_RATE = AudioOptions.sample_rate
SIDECAR_SUFFIX = ".export.json"
SIDECAR_FORMAT = "ser_keras.export_sidecar/1"


# ---------------------------------------------------------------------------
# models.config


@dataclasses.dataclass
class ServedModels:
    """The model folders found under a base folder.

    Attributes:
        base_dir: The base folder (e.g. `saved_models/`).
        models: Model name -> its version numbers (ascending), for every
            folder holding at least one `<version>/saved_model.pb`.
        skipped: Folders left out or version folders that cannot be served,
            with the reason.
        config_path: The `models.config` written (None when only listed).
    """

    base_dir: pathlib.Path
    models: dict
    skipped: list
    config_path: pathlib.Path | None = None


def find_served_models(base_dir):
    """Lists the servable model folders under `base_dir` (TF Serving's layout).

    A model folder is a non-hidden subfolder with at least one integer-named
    version folder holding a `saved_model.pb`; hidden folders (the exporter's
    temporary ones) and files are ignored.

    Args:
        base_dir: The folder holding one subfolder per model.

    Returns:
        A `ServedModels`.

    Raises:
        ValueError: `base_dir` is not a folder.
    """
    base_dir = pathlib.Path(base_dir)
    if not base_dir.is_dir():
        raise ValueError(f"The export folder {str(base_dir)!r} does not exist or is not a folder.")
    models, skipped = {}, []
    for folder in sorted(base_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        versions = []
        for version_dir in folder.iterdir():
            if not (version_dir.is_dir() and version_dir.name.isdigit()):
                continue
            if (version_dir / "saved_model.pb").is_file():
                versions.append(int(version_dir.name))
            else:
                skipped.append(
                    SkippedFile(str(version_dir), "version folder without a saved_model.pb")
                )
        if versions:
            models[folder.name] = sorted(versions)
        else:
            skipped.append(
                SkippedFile(str(folder), "no <version>/saved_model.pb inside: not a model folder")
            )
    return ServedModels(base_dir, models, skipped)


def _text_proto_string(value):
    """`value` as a text-proto string literal (quotes and backslashes escaped)."""
    if any(ord(character) < 32 for character in value):
        raise ValueError(f"Control characters cannot go into models.config: {value!r}.")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def models_config_text(names, *, serving_root=DEFAULT_SERVING_ROOT, version_policy="latest"):
    """TF Serving's `ModelServerConfig` text proto serving the models `names`.

    Args:
        names: Model names (folder names under the base folder).
        serving_root: The base folder as the server sees it: each model's
            `base_path` is `<serving_root>/<name>` (`/models` in the docker
            command of this module's docstring; an absolute host path for a
            `tensorflow_model_server` running outside a container).
        version_policy: `"latest"` (serve the highest version, TF Serving's
            default) or `"all"` (serve every version, each reachable at
            `/v1/models/<name>/versions/<n>`).

    Returns:
        The text, parseable by `google.protobuf.text_format` into
        `tensorflow_serving.config.model_server_config_pb2.ModelServerConfig`.
    """
    if version_policy not in VERSION_POLICIES:
        raise ValueError(
            f"`version_policy` must be one of {VERSION_POLICIES}; received {version_policy!r}."
        )
    names = list(names)
    if not names:
        raise ValueError("`names` is empty: a models.config needs at least one model.")
    if not isinstance(serving_root, str) or not serving_root:
        raise ValueError(f"`serving_root` must be a non-empty path; received {serving_root!r}.")
    policy = (
        ["      latest {", "        num_versions: 1", "      }"]
        if version_policy == "latest"
        else ["      all {", "      }"]
    )
    lines = [
        "# TF Serving ModelServerConfig written by ser_keras (python -m apps.export):",
        "# one entry per model folder. Serve with",
        "#   tensorflow_model_server --model_config_file=<this file> --rest_api_port=8501",
        "model_config_list {",
    ]
    root = serving_root.rstrip("/") or "/"
    for name in names:
        lines += [
            "  config {",
            f"    name: {_text_proto_string(name)}",
            f"    base_path: {_text_proto_string(root.rstrip('/') + '/' + name)}",
            '    model_platform: "tensorflow"',
            "    model_version_policy {",
            *policy,
            "    }",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(
    base_dir,
    *,
    serving_root=DEFAULT_SERVING_ROOT,
    version_policy="latest",
    filename=MODELS_CONFIG_FILENAME,
):
    """Writes `<base_dir>/models.config` listing every model folder under `base_dir`.

    Rewritten (atomically) from what is on disk, so it always lists exactly
    the servable folders.

    Args:
        base_dir: The export folder (`saved_models/`).
        serving_root: `base_dir` as the server sees it (see
            `models_config_text`); None: `base_dir`'s absolute path here.
        version_policy: `"latest"` or `"all"` (see `models_config_text`).
        filename: Name of the file written in `base_dir`.

    Returns:
        A `ServedModels` with `config_path` set; its `skipped` lists folders
        that were left out, with the reason.

    Raises:
        ValueError: `base_dir` is missing or holds no model folder.
    """
    found = find_served_models(base_dir)
    if not found.models:
        reasons = "; ".join(f"{entry.path}: {entry.reason}" for entry in found.skipped[:5])
        raise ValueError(
            f"No model folder (<name>/<version>/saved_model.pb) under {str(found.base_dir)!r}"
            + (f" ({reasons})" if reasons else "")
            + "."
        )
    root = str(found.base_dir.resolve()) if serving_root is None else serving_root
    text = models_config_text(found.models, serving_root=root, version_policy=version_policy)
    found.config_path = write_text_atomic(found.base_dir / filename, text)
    return found


# ---------------------------------------------------------------------------
# Request inputs: specs and validation


def _load(saved_model):
    if isinstance(saved_model, (str, pathlib.Path)):
        path = pathlib.Path(saved_model)
        if not (path / "saved_model.pb").is_file():
            raise ValueError(f"No saved_model.pb in {str(path)!r}.")
        return tf.saved_model.load(str(path))
    return saved_model


def _signature(saved_model, signature_name):
    loaded = _load(saved_model)
    signatures = getattr(loaded, "signatures", None)
    if signatures is None:
        raise ValueError(f"Not a loaded SavedModel (no signatures): {loaded!r}.")
    if signature_name not in signatures:
        raise ValueError(
            f"The SavedModel has no signature {signature_name!r}; it has {sorted(signatures)}."
        )
    return signatures[signature_name]


def signature_input_specs(saved_model, signature_name=SERVING_SIGNATURE):
    """The inputs a signature takes, as `tf.TensorSpec`s.

    Args:
        saved_model: An export folder (`<base>/<name>/<version>`) or the
            object `tf.saved_model.load` returned.
        signature_name: e.g. `"serving_default"` or `"features"`.

    Returns:
        Dict input name -> `tf.TensorSpec` (dtype and shape; None dims are
        free).
    """
    signature = _signature(saved_model, signature_name)
    return dict(signature.structured_input_signature[1])


def _describe_spec(spec):
    dims = ", ".join("None" if d is None else str(d) for d in spec.shape.as_list())
    return f"{spec.dtype.name} [{dims}]"


def _is_tensor_proto(value):
    return type(value).__name__ == "TensorProto" and hasattr(value, "tensor_shape")


def _as_array(name, value, spec):
    """`value` as a numpy array of `spec`'s dtype; ValueError naming `name`."""
    expected = spec.dtype.as_numpy_dtype
    if _is_tensor_proto(value):
        array, typed = tf.make_ndarray(value), True
    elif isinstance(value, tf.Tensor):
        array, typed = value.numpy(), True
    elif isinstance(value, (np.ndarray, np.generic)):
        array, typed = np.asarray(value), True
    else:  # JSON-like values: numbers, strings, nested lists
        typed = False
        try:
            array = np.asarray(value)
        except ValueError as error:
            raise ValueError(
                f"Input {name!r} is ragged or not numeric ({error}); it must be "
                f"{_describe_spec(spec)}. Pad waveforms to one length and pass their true "
                "lengths (see `waveform_batch`)."
            ) from None
        if array.dtype == object:
            raise ValueError(
                f"Input {name!r} is ragged or mixes types; it must be {_describe_spec(spec)}."
            )
    if typed:
        if spec.dtype == tf.string and array.dtype.kind in "OSU":
            array = array.astype(object)
        elif array.dtype != expected:
            raise ValueError(
                f"Input {name!r} must be {_describe_spec(spec)}; received dtype "
                f"{array.dtype.name} (convert it with .astype({np.dtype(expected).name!r}))."
            )
    else:
        kind = array.dtype.kind
        if spec.dtype.is_floating and kind in "iuf":
            array = array.astype(expected)
        elif spec.dtype.is_integer and kind in "iu":
            array = array.astype(expected)
        elif spec.dtype.is_integer and kind == "f" and np.all(np.mod(array, 1) == 0):
            array = array.astype(expected)
        elif spec.dtype == tf.string and kind in "SU":
            array = array.astype(object)
        else:
            raise ValueError(
                f"Input {name!r} must be {_describe_spec(spec)}; received values of type "
                f"{array.dtype.name}."
            )
    shape = spec.shape.as_list()
    if array.ndim != len(shape):
        hint = (
            " (one utterance? add a batch axis: waveform[None])"
            if array.ndim == 1 and (len(shape) == 2)
            else ""
        )
        raise ValueError(
            f"Input {name!r} must have rank {len(shape)} ({_describe_spec(spec)}); received "
            f"shape {tuple(array.shape)}{hint}."
        )
    for axis, (want, got) in enumerate(zip(shape, array.shape, strict=True)):
        if want is not None and want != got:
            raise ValueError(
                f"Input {name!r} must be {_describe_spec(spec)}; received shape "
                f"{tuple(array.shape)} (axis {axis} is {got}, not {want})."
            )
    return array


def validate_inputs(inputs, specs, *, signature_name=SERVING_SIGNATURE):
    """Checks a request's inputs against a signature's; returns them as arrays.

    Typed values (numpy arrays, `tf.Tensor`s, `TensorProto`s, as in a gRPC
    request) must have exactly the signature's dtype; JSON-like values
    (numbers, nested lists, as in a REST body) are converted to it when that
    loses nothing (integers to float32, integral numbers to int32), as TF
    Serving's REST API does.

    Args:
        inputs: Mapping input name -> value.
        specs: Mapping input name -> `tf.TensorSpec` (`signature_input_specs`).
        signature_name: Named in the error messages.

    Returns:
        Dict input name -> numpy array with the signature's dtype.

    Raises:
        ValueError: Naming the bad input: a missing or unknown input, a wrong
            dtype, rank or fixed dimension, inputs whose batch sizes (first
            axis) disagree, a negative `lengths` entry, or non-finite values
            in a floating-point input.
    """
    if not isinstance(inputs, Mapping):
        raise ValueError(
            f"Request inputs must be a mapping name -> value; received {type(inputs).__name__}."
        )
    takes = ", ".join(f"{k} {_describe_spec(v)}" for k, v in sorted(specs.items()))
    unknown = sorted(set(inputs) - set(specs))
    if unknown:
        raise ValueError(
            f"Unknown input(s) {unknown} for signature {signature_name!r}; it takes: {takes}."
        )
    missing = sorted(set(specs) - set(inputs))
    if missing:
        raise ValueError(
            f"Missing input(s) {missing} of signature {signature_name!r}; it takes: {takes}."
        )
    arrays = {name: _as_array(name, inputs[name], specs[name]) for name in sorted(specs)}

    batched = {
        name: array.shape[0]
        for name, array in arrays.items()
        if specs[name].shape.rank and specs[name].shape[0] is None
    }
    if len(set(batched.values())) > 1:
        sizes = ", ".join(f"{name} has {size}" for name, size in batched.items())
        raise ValueError(
            f"The inputs of signature {signature_name!r} disagree on the batch size (first "
            f"axis): {sizes}."
        )
    for name, array in arrays.items():
        if specs[name].dtype.is_floating and not np.all(np.isfinite(array)):
            rows = sorted({int(i) for i in np.argwhere(~np.isfinite(array))[:, 0]})
            raise ValueError(f"Input {name!r} has NaN or inf values (rows {rows[:10]}).")
        if name == "lengths" and specs[name].dtype.is_integer and np.any(array < 0):
            rows = np.flatnonzero(array < 0).tolist()
            raise ValueError(
                f"Input 'lengths' must be sample counts >= 0; rows {rows[:10]} are negative."
            )
    return arrays


def check_sample_rate(sample_rate, model_sample_rate=DEFAULT_SAMPLE_RATE):
    """Refuses audio at a rate other than the model's.

    An exported model takes mono waveforms at its front-end's rate (16 kHz for
    every preset; the export records it as `"sample_rate"` in
    `assets.extra/ser_keras.json`: `load_metadata(path)["sample_rate"]`).
    Audio at another rate is not an error the model could notice: 22.05 kHz
    samples sent as 16 kHz ones are heard 1.4 times slower and an octave
    lower, and still get a confident label.

    Args:
        sample_rate: The rate of the audio, in Hz.
        model_sample_rate: The rate the model takes, in Hz.

    Raises:
        ValueError: `sample_rate` is not a positive integer or differs from
            `model_sample_rate`; the message names both and how to resample.
    """
    model_sample_rate = positive_int("model_sample_rate", model_sample_rate)
    if isinstance(sample_rate, float) and sample_rate.is_integer():
        sample_rate = int(sample_rate)
    sample_rate = positive_int("sample_rate", sample_rate)
    if sample_rate != model_sample_rate:
        raise ValueError(
            f"The model takes {model_sample_rate} Hz audio; received audio at {sample_rate} Hz. "
            f"Resample it first: ser_keras.audio.io.load_audio(path, "
            f"sample_rate={model_sample_rate}, trim=False) decodes and resamples a file "
            "(python -m apps.predict and ser_keras.predict do it for you)."
        )
    return sample_rate


def waveform_batch(waveforms, *, sample_rate, model_sample_rate=DEFAULT_SAMPLE_RATE):
    """Pads waveforms into the `serving_default` inputs.

    Args:
        waveforms: Sequence of 1-D float arrays (mono).
        sample_rate: Their rate in Hz; it must be the model's
            (`check_sample_rate`): a request never carries audio at another
            rate.
        model_sample_rate: The rate the model takes (the export's
            `"sample_rate"`; 16000 for every preset).

    Returns:
        Dict with `waveform` float32 `[batch, longest]` (zero-padded) and
        `lengths` int32 `[batch]` (true sample counts).

    Raises:
        ValueError: Audio at another rate than the model's (naming both), no
            waveforms, a waveform that is not 1-D, or non-finite samples,
            naming the waveform.
    """
    from ser_keras.data.pipeline import _check_waveforms

    check_sample_rate(sample_rate, model_sample_rate)
    arrays = _check_waveforms(list(waveforms))
    if not arrays:
        raise ValueError("`waveforms` is empty: a request needs at least one waveform.")
    lengths = np.array([array.shape[0] for array in arrays], dtype=np.int32)
    waveform = np.zeros((len(arrays), int(lengths.max())), dtype=np.float32)
    for row, array in enumerate(arrays):
        waveform[row, : array.shape[0]] = array
    return {"waveform": waveform, "lengths": lengths}


# ---------------------------------------------------------------------------
# gRPC PredictRequest


def _predict_pb2():
    try:
        from tensorflow_serving.apis import predict_pb2
    except ImportError as error:
        raise ImportError(
            "Building gRPC requests needs tensorflow-serving-api: "
            "pip install 'ser_keras[serving]' (or pip install tensorflow-serving-api)."
        ) from error
    return predict_pb2


def _request_arrays(inputs, specs, signature_name):
    """The arrays of a request: checked against `specs` when given, else as given."""
    if specs is not None:
        return validate_inputs(inputs, specs, signature_name=signature_name)
    if isinstance(inputs, Mapping):
        return {name: np.asarray(value) for name, value in inputs.items()}
    raise ValueError(f"`inputs` must be a mapping name -> array; received {inputs!r}.")


def make_predict_request(
    model_name,
    inputs,
    *,
    signature_name=SERVING_SIGNATURE,
    version=None,
    specs=None,
    sample_rate=None,
    model_sample_rate=DEFAULT_SAMPLE_RATE,
):
    """A TF Serving gRPC `PredictRequest` for an exported model.

    Args:
        model_name: The served model's name (its folder name).
        inputs: Mapping input name -> array (e.g. `waveform_batch(...)`).
        signature_name: The signature to call.
        version: Optional integer version; None lets the server choose (the
            latest under the default policy).
        specs: Optional `signature_input_specs(...)`: the inputs are then
            checked with `validate_inputs` (and JSON-like values converted)
            before they are encoded. Without it arrays are encoded with their
            own dtypes.
        sample_rate: Optional rate of the `waveform` input in Hz, refused
            when it is not `model_sample_rate` (`check_sample_rate`).
        model_sample_rate: The rate the model takes (the export's
            `"sample_rate"`).

    Returns:
        `tensorflow_serving.apis.predict_pb2.PredictRequest`.

    Raises:
        ValueError: A bad model name or version, audio at another rate than
            the model's, or (with `specs`) a bad input.
    """
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"`model_name` must be a non-empty string; received {model_name!r}.")
    if sample_rate is not None:
        check_sample_rate(sample_rate, model_sample_rate)
    predict_pb2 = _predict_pb2()
    arrays = _request_arrays(inputs, specs, signature_name)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        version = positive_int("version", version)
        request.model_spec.version.value = version
    for name, array in arrays.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def predict_request_inputs(request):
    """The inputs of a `PredictRequest` decoded to numpy arrays (`tf.make_ndarray`)."""
    return {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}


def serve_predict_request(saved_model, request):
    """Answers a `PredictRequest` as TF Serving's Predict API does, in this process.

    The signature named in the request (`serving_default` when empty) is
    called with the request's tensors, after `validate_inputs`; every output
    is encoded in the response with `tf.make_tensor_proto`.

    Args:
        saved_model: An export folder or a loaded SavedModel.
        request: A `predict_pb2.PredictRequest`.

    Returns:
        `predict_pb2.PredictResponse`.

    Raises:
        ValueError: The signature is unknown or an input is bad (named).
    """
    predict_pb2 = _predict_pb2()
    signature_name = request.model_spec.signature_name or SERVING_SIGNATURE
    signature = _signature(saved_model, signature_name)
    specs = dict(signature.structured_input_signature[1])
    arrays = validate_inputs(dict(request.inputs), specs, signature_name=signature_name)
    outputs = signature(**{name: tf.constant(array) for name, array in arrays.items()})
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.signature_name = signature_name
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return response


# ---------------------------------------------------------------------------
# REST


def _jsonable(array):
    if array.dtype == object:  # strings
        return [
            _jsonable(np.asarray(item, dtype=object)) if np.ndim(item) else _to_text(item)
            for item in array
        ]
    return array.tolist()


def _to_text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def rest_predict_body(
    inputs,
    *,
    signature_name=SERVING_SIGNATURE,
    layout="columnar",
    specs=None,
    sample_rate=None,
    model_sample_rate=DEFAULT_SAMPLE_RATE,
):
    """The JSON body of a REST `:predict` call (a dict; `json.dumps` it).

    Args:
        inputs: Mapping input name -> array (e.g. `waveform_batch(...)`).
        signature_name: The signature to call.
        layout: `"columnar"` (`{"inputs": {name: batch}}`, any inputs) or
            `"row"` (`{"instances": [{name: row}, ...]}`, every input batched
            along its first axis with the same batch size).
        specs: Optional `signature_input_specs(...)` to check the inputs with
            `validate_inputs` first.
        sample_rate: Optional rate of the `waveform` input in Hz, refused
            when it is not `model_sample_rate` (`check_sample_rate`).
        model_sample_rate: The rate the model takes (the export's
            `"sample_rate"`).

    Returns:
        A JSON-serialisable dict. float32 values are written as the decimal
        numbers that convert back to the same float32 values.

    Raises:
        ValueError: A bad layout, audio at another rate than the model's,
            non-finite values, or (with `specs`) a bad input.
    """
    if layout not in REST_LAYOUTS:
        raise ValueError(f"`layout` must be one of {REST_LAYOUTS}; received {layout!r}.")
    if sample_rate is not None:
        check_sample_rate(sample_rate, model_sample_rate)
    arrays = _request_arrays(inputs, specs, signature_name)
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise ValueError(f"Input {name!r} has NaN or inf values, which JSON cannot hold.")
    body = {"signature_name": signature_name}
    if layout == "columnar":
        body["inputs"] = {name: _jsonable(array) for name, array in arrays.items()}
        return body
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in arrays.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise ValueError(
            f"The row layout needs every input batched with one batch size; received {sizes}. "
            "Use layout='columnar'."
        )
    batch = next(iter(sizes.values()))
    body["instances"] = [
        {
            name: _jsonable(array[row]) if array.ndim > 1 else array[row].item()
            for name, array in arrays.items()
        }
        for row in range(batch)
    ]
    return body


def rest_body_inputs(body, specs, *, signature_name=None):
    """The inputs a REST `:predict` body carries, checked and converted to arrays.

    What the server does with the body before calling the signature: read
    `inputs` (columnar) or stack `instances` (row), convert the JSON values to
    the signature's dtypes, and refuse what does not fit (`validate_inputs`).

    Args:
        body: The body as a dict (`json.loads` of the text).
        specs: `signature_input_specs(...)` of the signature called.
        signature_name: For the messages; default the body's own.

    Returns:
        Dict input name -> numpy array.
    """
    if not isinstance(body, Mapping):
        raise ValueError(f"A REST body must be a JSON object; received {type(body).__name__}.")
    signature_name = signature_name or body.get("signature_name", SERVING_SIGNATURE)
    if ("inputs" in body) == ("instances" in body):
        raise ValueError(
            'A REST body needs exactly one of "inputs" (columnar) or "instances" (row).'
        )
    if "inputs" in body:
        inputs = body["inputs"]
        if not isinstance(inputs, Mapping):  # a single unnamed input
            names = list(specs)
            if len(names) != 1:
                raise ValueError(
                    f'"inputs" must name the inputs when a signature takes several: {names}.'
                )
            inputs = {names[0]: inputs}
        return validate_inputs(inputs, specs, signature_name=signature_name)
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise ValueError('"instances" must be a non-empty list of rows.')
    stacked = {}
    for index, instance in enumerate(instances):
        if not isinstance(instance, Mapping):
            raise ValueError(f'Row {index} of "instances" must be an object name -> value.')
        for name, value in instance.items():
            stacked.setdefault(name, []).append(value)
    incomplete = sorted(name for name, rows in stacked.items() if len(rows) != len(instances))
    if incomplete:
        raise ValueError(f'Some rows of "instances" lack the input(s) {incomplete}.')
    return validate_inputs(stacked, specs, signature_name=signature_name)


def rest_predict_url(model_name, *, host="localhost", port=REST_PORT, version=None):
    """`http://<host>:<port>/v1/models/<name>[/versions/<n>]:predict`."""
    if not isinstance(model_name, str) or not model_name or "/" in model_name:
        raise ValueError(f"`model_name` must be a plain model name; received {model_name!r}.")
    url = f"http://{host}:{int(port)}/v1/models/{model_name}"
    if version is not None:
        version = positive_int("version", version)
        url += f"/versions/{version}"
    return url + ":predict"


# ---------------------------------------------------------------------------
# Speaker enrolment


def _checked_band_statistics(band_mean, band_std):
    """`(mean, std)` as float32 `[mels]` arrays; ValueError naming the bad one."""
    arrays = {}
    for name, value in ((BAND_MEAN, band_mean), (BAND_STD, band_std)):
        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(
                f"`{name}` must be 1-D, one value per mel band (the `enrol` output); received "
                f"shape {array.shape}."
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"`{name}` has NaN or inf values.")
        arrays[name] = array
    if arrays[BAND_MEAN].shape != arrays[BAND_STD].shape:
        raise ValueError(
            f"`{BAND_MEAN}` and `{BAND_STD}` must hold as many bands; received "
            f"{arrays[BAND_MEAN].size} and {arrays[BAND_STD].size}."
        )
    if np.any(arrays[BAND_STD] < 0):
        raise ValueError(f"`{BAND_STD}` must be >= 0; received {arrays[BAND_STD].tolist()}.")
    return arrays[BAND_MEAN], arrays[BAND_STD]


def enrolled_inputs(
    waveforms, band_mean, band_std, *, sample_rate, model_sample_rate=DEFAULT_SAMPLE_RATE
):
    """The `serving_enrolled` inputs for one speaker's waveforms.

    Args:
        waveforms: Sequence of 1-D float arrays (mono) of the speaker.
        band_mean, band_std: The speaker's statistics, `[mels]` each (the
            `enrol` outputs: `enrolment_statistics`).
        sample_rate: The waveforms' rate in Hz (must be the model's).
        model_sample_rate: The rate the model takes.

    Returns:
        `waveform_batch(...)` plus `band_mean` and `band_std` float32
        `[batch, mels]` (the statistics on every row).

    Raises:
        ValueError: As `waveform_batch`, or statistics that are not 1-D,
            finite, as many, with `band_std` >= 0.
    """
    mean, std = _checked_band_statistics(band_mean, band_std)
    inputs = waveform_batch(waveforms, sample_rate=sample_rate, model_sample_rate=model_sample_rate)
    rows = inputs["lengths"].shape[0]
    inputs[BAND_MEAN] = np.tile(mean, (rows, 1))
    inputs[BAND_STD] = np.tile(std, (rows, 1))
    return inputs


def enrolment_statistics(response):
    """`(band_mean, band_std)`, float32 `[mels]` each, from an `enrol` answer.

    Args:
        response: The REST response body (a dict with `"outputs"`, the answer
            to a columnar request such as `rest_enrol_body`'s), a gRPC
            `PredictResponse`, or the dict the `enrol` signature returns
            in-process.

    Returns:
        The two arrays, ready for `enrolled_inputs`.

    Raises:
        ValueError: The answer lacks them (e.g. an error body, or a model
            without speaker normalisation).
    """
    outputs = getattr(response, "outputs", None)
    if outputs is not None and not isinstance(response, Mapping):  # a PredictResponse
        values = {name: tf.make_ndarray(outputs[name]) for name in outputs}
    elif isinstance(response, Mapping):
        values = response.get("outputs", response)
        if not isinstance(values, Mapping):
            raise ValueError(
                f'An enrol answer\'s "outputs" must be an object; received {values!r}.'
            )
    else:
        raise ValueError(f"Not an enrol answer: {type(response).__name__}.")
    missing = [name for name in (BAND_MEAN, BAND_STD) if name not in values]
    if missing:
        shown = {k: values[k] for k in list(values)[:5]}
        raise ValueError(f"The enrol answer lacks {missing}; received {shown!r}.")
    arrays = [
        np.asarray(v.numpy() if isinstance(v, tf.Tensor) else v, dtype=np.float32)
        for v in (values[BAND_MEAN], values[BAND_STD])
    ]
    return _checked_band_statistics(*arrays)


def rest_enrol_body(waveforms, *, sample_rate, model_sample_rate=DEFAULT_SAMPLE_RATE, specs=None):
    """The REST body of an `enrol` call: one speaker's recordings (columnar layout).

    `POST .../v1/models/<name>:predict` with it answers
    `{"outputs": {"band_mean": [...], "band_std": [...], "frames": n,
    "no_speech": [...]}}` (`enrolment_statistics` reads it).

    Args:
        waveforms: Sequence of 1-D float arrays (mono) of ONE speaker.
        sample_rate: Their rate in Hz (must be the model's).
        model_sample_rate: The rate the model takes.
        specs: Optional `signature_input_specs(saved_model, "enrol")`.

    Returns:
        A JSON-serialisable dict.
    """
    inputs = waveform_batch(waveforms, sample_rate=sample_rate, model_sample_rate=model_sample_rate)
    return rest_predict_body(inputs, signature_name=ENROL_SIGNATURE, specs=specs)


def rest_enrolled_body(
    waveforms,
    band_mean,
    band_std,
    *,
    sample_rate,
    model_sample_rate=DEFAULT_SAMPLE_RATE,
    layout="columnar",
    specs=None,
):
    """The REST body of a `serving_enrolled` call (`enrolled_inputs`, then `rest_predict_body`).

    Every input is batched, so both layouts work (`"row"`: one instance per
    waveform, each with its statistics).
    """
    inputs = enrolled_inputs(
        waveforms,
        band_mean,
        band_std,
        sample_rate=sample_rate,
        model_sample_rate=model_sample_rate,
    )
    return rest_predict_body(inputs, signature_name=ENROLLED_SIGNATURE, layout=layout, specs=specs)


def make_enrol_request(
    model_name,
    waveforms,
    *,
    sample_rate,
    version=None,
    model_sample_rate=DEFAULT_SAMPLE_RATE,
    specs=None,
):
    """A gRPC `PredictRequest` calling `enrol` on one speaker's recordings."""
    inputs = waveform_batch(waveforms, sample_rate=sample_rate, model_sample_rate=model_sample_rate)
    return make_predict_request(
        model_name, inputs, signature_name=ENROL_SIGNATURE, version=version, specs=specs
    )


def make_enrolled_request(
    model_name,
    waveforms,
    band_mean,
    band_std,
    *,
    sample_rate,
    version=None,
    model_sample_rate=DEFAULT_SAMPLE_RATE,
    specs=None,
):
    """A gRPC `PredictRequest` calling `serving_enrolled` (`enrolled_inputs`)."""
    inputs = enrolled_inputs(
        waveforms,
        band_mean,
        band_std,
        sample_rate=sample_rate,
        model_sample_rate=model_sample_rate,
    )
    return make_predict_request(
        model_name, inputs, signature_name=ENROLLED_SIGNATURE, version=version, specs=specs
    )


# ---------------------------------------------------------------------------
# Export sidecars


def sidecar_path(model_path):
    """The sidecar file of a `.keras` model: `best.keras` -> `best.export.json`."""
    model_path = pathlib.Path(model_path)
    return model_path.with_name(model_path.stem + SIDECAR_SUFFIX)


def _checked_label_names(label_names, where):
    if not isinstance(label_names, Mapping) or not label_names:
        raise ValueError(
            f"{where}: `label_names` must be a dict task -> names; received {label_names!r}."
        )
    checked = {}
    for task, names in label_names.items():
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or len(names) < 2:
            raise ValueError(
                f"{where}: the label names of task {task!r} must be a list of at least two "
                f"names; received {names!r}."
            )
        names = [str(name) for name in names]
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: task {task!r} repeats a label name: {names}.")
        checked[str(task)] = names
    return checked


def write_export_sidecar(model_path, *, frontend, label_names, name=None, metadata=None):
    """Writes `<stem>.export.json` beside a `.keras` model: what exporting it needs.

    Apps call this next to the checkpoint they keep, so that
    `python -m apps.export --model-dir <folder>` needs no options.

    Args:
        model_path: The `.keras` file (it need not exist yet).
        frontend: The `LogMel` front-end the model was trained behind
            (stored as preset + overrides + config: `describe_frontend`).
        label_names: Dict task -> class names in class-index order.
        name: Suggested served-model name (the export folder name).
        metadata: Optional JSON-serialisable dict copied into the export's
            metadata (app, setting, fold, scores, ...).

    Returns:
        The sidecar's path.
    """
    from ser_keras.evaluation.reports import write_json_atomic

    model_path = pathlib.Path(model_path)
    if model_path.suffix != ".keras":
        raise ValueError(f"`model_path` must be a .keras file; received {str(model_path)!r}.")
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"`name` must be a plain folder name or None; received {name!r}.")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValueError(f"`metadata` must be a dict or None; received {metadata!r}.")
    document = {
        "format": SIDECAR_FORMAT,
        "model": model_path.name,
        "name": name,
        "frontend": describe_frontend(frontend),
        "label_names": _checked_label_names(label_names, "write_export_sidecar"),
        "metadata": dict(metadata or {}),
    }
    try:
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"The sidecar must be JSON-serialisable: {error}") from error
    return write_json_atomic(sidecar_path(model_path), document)


def read_export_sidecar(model_path):
    """The sidecar of a `.keras` model as a dict, or None when there is none.

    Returns:
        Dict with `frontend` (a description `frontend_from_description`
        builds), `label_names`, `name` and `metadata`.

    Raises:
        ValueError: The sidecar exists but is not valid (named, with why).
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Cannot read the export sidecar {path}: {error}") from error
    if not isinstance(document, dict) or document.get("format") != SIDECAR_FORMAT:
        raise ValueError(
            f'{path} is not a ser_keras export sidecar (expected "format": {SIDECAR_FORMAT!r}).'
        )
    if document.get("frontend") is not None:
        frontend_from_description(document["frontend"])  # refuses a bad description now
    if document.get("label_names") is not None:
        document["label_names"] = _checked_label_names(document["label_names"], str(path))
    document.setdefault("metadata", {})
    document.setdefault("name", None)
    return document
