"""Export a trained `.keras` model as a versioned SavedModel for TF Serving.

    python -m apps.export --model-dir runs/train_savee_crosslang/mtl_xl/fold_DC \\
        --name attention_cnn_blstm
    python -m apps.export --model-dir model.keras --name ser --frontend fu2021 \\
        --labels savee7 --labels speaker=DC,JE,JK
    python -m apps.export --config-only          # rewrite saved_models/models.config

The model is written to `<export-dir>/<name>/<version>/` (the next version
unless `--version` is given; an existing version is never overwritten), with
the front-end in front of it: the `serving_default` signature takes a 16 kHz
float32 waveform batch and its lengths, trims each utterance's leading and
trailing non-speech as training's decoding does (`load_audio`; `--no-trim`
leaves the waveform as sent, for a model trained on untrimmed audio), and
computes the features. Then `<export-dir>/models.config`
(TF Serving's ModelServerConfig) is rewritten to list every model folder in
`<export-dir>`, so one server serves them all.

The front-end and the label names come from the sidecar beside the model
(`best.keras` -> `best.export.json`, written by
`ser_keras.export.serving.write_export_sidecar`), and `--frontend`,
`--frontend-option` and `--labels` replace what it says (or stand in for a
missing sidecar).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "export",
        "Export a trained .keras model (features in, probabilities out) behind its "
        "log-mel front-end as <export-dir>/<name>/<version>/ for TF Serving, and "
        "rewrite <export-dir>/models.config to list every exported model.",
    )
    parser.add_argument(
        "--model-dir",
        metavar="PATH",
        help="A .keras file, or a folder holding one (best.keras when there are several, "
        "e.g. a fold folder of a training run).",
    )
    parser.add_argument(
        "--name", help="Served model name (folder under --export-dir). Default: the sidecar's."
    )
    parser.add_argument(
        "--version",
        type=cli.positive_int,
        help="Version number to write (default: one more than the highest existing).",
    )
    parser.add_argument(
        "--export-dir", default="saved_models", help="Base folder of the exported models."
    )
    parser.add_argument(
        "--frontend",
        metavar="PRESET",
        help="Front-end preset the model was trained behind (ser_keras.features.logmel."
        "FRONTEND_PRESETS, e.g. fu2021, latif, latif_6s). Default: the sidecar's.",
    )
    parser.add_argument(
        "--frontend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Front-end argument replacing the preset's (VALUE read as JSON, else as text), "
        "e.g. num_frames=300. Repeatable.",
    )
    parser.add_argument(
        "--labels",
        action="append",
        default=[],
        metavar="[TASK=]NAMES",
        help="Class names of a head in class-index order: comma-separated names or a label "
        "map (savee7, common6, emodb7, four_class, binary_valence, ...). Without TASK= it is "
        "the emotion head. Repeatable, one per head. Default: the sidecar's.",
    )
    parser.add_argument(
        "--serving-root",
        default="/models",
        help="--export-dir as the model server sees it: the base_path prefix in "
        "models.config (/models for the docker command printed at the end).",
    )
    parser.add_argument(
        "--host-paths",
        action="store_true",
        help="Write this machine's absolute paths into models.config instead of "
        "--serving-root (for a tensorflow_model_server running outside docker).",
    )
    parser.add_argument(
        "--serve-versions",
        choices=("latest", "all"),
        default="latest",
        help="Version policy in models.config: serve the highest version only, or every one.",
    )
    from ser_keras.audio.io import AudioOptions

    options = AudioOptions()
    parser.add_argument(
        "--no-trim",
        action="store_true",
        help="Do not trim silence in the served graph: serving_default then computes "
        "features from the waveform exactly as sent. By default it first trims each "
        f"utterance's leading and trailing non-speech (frames more than {options.trim_db:g} "
        f"dB below the loudest; {1000 * options.trim_frame_length:g} ms frames, "
        f"{1000 * options.trim_hop_length:g} ms hop), as the training audio was trimmed when "
        "decoded; use --no-trim only for a model trained on untrimmed audio.",
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="Skip reloading the export and comparing it with the Keras model.",
    )
    parser.add_argument(
        "--config-only",
        action="store_true",
        help="Only rewrite <export-dir>/models.config from the folders there.",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def find_model_file(path) -> pathlib.Path:
    """The `.keras` file `--model-dir` names (`ser_keras.export.sources.find_model_file`).

    The file; in a folder, `best.keras` when present (the runner's checkpoint),
    else the only `.keras` file (interrupted `*.partial.keras` saves ignored);
    in a training run's folder, the fold checkpoint with the best validation
    score.
    """
    from ser_keras.export.sources import find_model_file as find

    return find(path, option="--model-dir")


def parse_labels(values) -> dict:
    """`--labels` values -> dict task -> class names (a label map name gives its classes)."""
    from ser_keras.corpora.labels import get_label_map

    labels = {}
    for value in values:
        task, separator, names = value.partition("=")
        if not separator:
            task, names = "emotion", value
        task = task.strip()
        if not task:
            raise ValueError(f"--labels {value!r}: empty task name before '='.")
        if task in labels:
            raise ValueError(f"--labels gives the names of task {task!r} twice.")
        if "," in names:
            parsed = [name.strip() for name in names.split(",")]
            if not all(parsed):
                raise ValueError(f"--labels {value!r}: an empty class name.")
            labels[task] = parsed
        else:
            try:
                labels[task] = list(get_label_map(names.strip()).classes)
            except ValueError as error:
                raise ValueError(
                    f"--labels {value!r}: neither comma-separated class names nor a label "
                    f"map. {error}"
                ) from None
    return labels


def parse_frontend_options(values) -> dict:
    """`--frontend-option KEY=VALUE` values -> dict (VALUE parsed as JSON, else text)."""
    options = {}
    for value in values:
        key, separator, text = value.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--frontend-option must be KEY=VALUE; received {value!r}.")
        try:
            options[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            options[key.strip()] = text
    return options


def resolve_export_inputs(model_path, args):
    """Front-end, label names, name and metadata from the sidecar and the options."""
    from ser_keras.export.sources import resolve_model_inputs

    # The options first: a mistake in them is reported before anything is read.
    options = parse_frontend_options(args.frontend_option)
    cli_labels = parse_labels(args.labels)
    inputs = resolve_model_inputs(
        model_path,
        frontend=args.frontend,
        frontend_overrides=options,
        label_names=cli_labels,
        frontend_hint="pass --frontend PRESET (e.g. fu2021)",
        labels_hint="pass --labels with the emotion classes in class-index order, e.g. "
        "--labels savee7 or --labels anger,happiness,...",
    )
    sidecar = inputs.sidecar or {}
    name = args.name or sidecar.get("name")
    if not name:
        where = f"the sidecar {inputs.sidecar_path}" if inputs.sidecar else "no sidecar"
        raise ValueError(f"No model name ({where}): pass --name.")

    metadata = dict(sidecar.get("metadata") or {})
    metadata["exported_by"] = "apps.export"
    metadata["exported_from"] = str(pathlib.Path(model_path).resolve())
    return inputs.frontend, inputs.label_names, name, metadata


def run(args) -> int:
    from ser_keras.export.serving import write_models_config

    export_dir = pathlib.Path(args.export_dir)
    if args.config_only:
        if args.model_dir:
            raise ValueError("--config-only rewrites models.config only: drop --model-dir.")
        _write_config(export_dir, args, write_models_config)
        return 0
    if not args.model_dir:
        raise ValueError("--model-dir is required (or --config-only).")

    model_path = find_model_file(args.model_dir)
    frontend, label_names, name, metadata = resolve_export_inputs(model_path, args)

    from ser_keras.export.saved_model import export_saved_model, load_metadata
    from ser_keras.export.sources import load_keras_model

    model = load_keras_model(model_path)
    print(f"Exporting {model_path} ({type(model).__name__}) as {name!r} ...", flush=True)
    path = export_saved_model(
        model,
        export_dir,
        name,
        frontend=frontend,
        label_names=label_names,
        version=args.version,
        metadata=metadata,
        trim_silence=not args.no_trim,
        verify=not args.no_verify,
    )
    document = load_metadata(path)
    print(f"Exported to {path}" + ("" if args.no_verify else " (verified against the model)"))
    frontend_info = document["frontend"]
    print(
        f"  front-end: preset {frontend_info['preset']!r}"
        + (f" with {frontend_info['overrides']}" if frontend_info["overrides"] else "")
        + f", {document['sample_rate']} Hz"
    )
    trimming = document["trim_silence"]
    if trimming["enabled"]:
        config = trimming["config"]
        print(
            f"  silence trimming: leading and trailing frames more than {config['top_db']:g} dB "
            f"below the loudest ({trimming['frame_samples']}-sample frames, "
            f"{trimming['hop_samples']}-sample hop), as training's decoding"
        )
    else:
        print("  silence trimming: off (--no-trim): the waveform is used as sent")
    for signature, spec in document["signatures"].items():
        inputs = ", ".join(f"{k} {v}" for k, v in spec["inputs"].items())
        print(f"  signature {signature}: {inputs} -> {', '.join(spec['outputs'])}")
    for task, info in document["tasks"].items():
        if info["label_names"]:
            print(f"  {task} labels: {', '.join(info['label_names'])}")

    found = _write_config(export_dir, args, write_models_config)
    print("\n" + serving_instructions(found, name, args))
    return 0


def serving_instructions(found, name, args) -> str:
    """How to start TF Serving on the export folder and call `name` (printed at the end)."""
    config = found.config_path
    if args.host_paths:
        server = (
            f"  tensorflow_model_server --port=8500 --rest_api_port=8501 "
            f"--model_config_file={config.resolve()}"
        )
    else:
        root = args.serving_root.rstrip("/") or "/"
        server = (
            "  docker run -p 8500:8500 -p 8501:8501 "
            f"--mount type=bind,source={found.base_dir.resolve()},target={root} "
            f"tensorflow/serving --model_config_file={root.rstrip('/')}/{config.name}"
        )
    return (
        "Serve every model of the folder with TF Serving:\n"
        + server
        + "\nand call it (16 kHz mono float32 samples; lengths = true sample counts):\n"
        f"  curl -X POST http://localhost:8501/v1/models/{name}:predict -d "
        '\'{"signature_name": "serving_default", "inputs": '
        '{"waveform": [[0.0, 0.01, -0.02, ...]], "lengths": [16000]}}\''
    )


def _write_config(export_dir, args, write_models_config):
    found = write_models_config(
        export_dir,
        serving_root=None if args.host_paths else args.serving_root,
        version_policy=args.serve_versions,
    )
    listed = ", ".join(f"{name} (versions {versions})" for name, versions in found.models.items())
    print(f"Wrote {found.config_path}: {listed}")
    for entry in found.skipped:
        print(f"  left out {entry.path}: {entry.reason}")
    return found


if __name__ == "__main__":
    sys.exit(main())
