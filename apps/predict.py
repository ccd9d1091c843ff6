"""The emotion of audio files, from an exported or a trained model.

    python -m apps.predict --model saved_models/attention_cnn_blstm path/to/wavs
    python -m apps.predict --model saved_models/attention_cnn_blstm a.wav b.flac --json
    python -m apps.predict --model runs/train_savee_crosslang/mtl_xl/fold_savee_DC \\
        recordings/ --csv predictions.csv

`--model` is an exported SavedModel version folder, a model folder (its
highest version), a `.keras` file, a training fold folder holding
`best.keras` or a training run's folder (its best fold by validation score).
Every INPUT is an audio file or a folder searched recursively; any format,
sample rate and channel count `ser_keras.audio.io.load_audio` decodes (a
48 kHz stereo WAV included) is mixed to mono and resampled to the model's
rate. Per file it prints the label, every class's probability, each
auxiliary head's answer and how many seconds of speech were used (and
whether the recording was cut to the model's frame budget). Unusable files
(corrupt, empty, silent, ...) are listed with the reason and do not stop the
others; the exit status is 2 only when no file was usable.

`--json` prints one object `{"predictions": [...], "skipped": [{"path",
"reason"}]}` on stdout (everything else goes to stderr); `--csv FILE` writes
one row per file (a skipped file with its reason).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "predict",
        "Predict the emotion of audio files (or folders of them) with an exported "
        "SavedModel or a trained .keras model.",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH",
        help="An exported SavedModel version folder (saved_models/NAME/VERSION), a model "
        "folder (saved_models/NAME: its latest version), a .keras file, or a training run's "
        "fold folder holding best.keras (or the run's folder: its best fold by validation "
        "score).",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="Audio files or folders (searched recursively), any format, sample rate and "
        "channel count.",
    )
    parser.add_argument(
        "--enrol",
        nargs="+",
        metavar="AUDIO",
        help="For a model trained with per-speaker (or per-corpus) normalisation: recordings "
        "(files or folders) of the speaker of every INPUT, from which the export's enrol "
        "signature computes that speaker's statistics. Without it such a model uses its "
        "fallback statistics and says so per file.",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json",
        action="store_true",
        help='Print one JSON object {"predictions": [...], "skipped": [...]} on stdout.',
    )
    output.add_argument(
        "--csv",
        metavar="FILE",
        help="Write one CSV row per file (label, probabilities, speech seconds, cut, "
        "auxiliary answers; the reason for a skipped file).",
    )
    from ser_keras.predict import DEFAULT_BATCH_SIZE

    parser.add_argument(
        "--batch-size",
        type=cli.positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help="Files decoded and run together.",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def _check_csv_path(text):
    path = pathlib.Path(text)
    if path.is_dir():
        raise ValueError(f"--csv {text}: is a folder, not a file.")
    if not path.parent.is_dir():
        raise ValueError(f"--csv {text}: the folder {str(path.parent)!r} does not exist.")
    return path


def run(args) -> int:
    from ser_keras.predict import Predictor

    csv_path = _check_csv_path(args.csv) if args.csv else None
    try:
        predictor = Predictor(args.model, batch_size=args.batch_size)
    except ValueError as error:
        raise ValueError(f"--model: {error}") from None
    if args.enrol:
        try:
            predictor.enrol(args.enrol)
        except ValueError as error:
            raise ValueError(f"--enrol: {error}") from None
    # With --json, stdout holds the JSON object alone.
    info = sys.stderr if args.json else sys.stdout
    print(f"Model: {predictor.describe()}", file=info, flush=True)

    result = predictor.predict(args.inputs)
    if args.json:
        import json

        print(json.dumps(result.to_dict(), indent=2))
    elif csv_path is not None:
        from ser_keras.utils.atomic import write_text_atomic

        write_text_atomic(csv_path, csv_text(result, predictor))
        print(
            f"Wrote {csv_path}: {len(result.predictions)} file(s) predicted, "
            f"{len(result.skipped)} skipped."
        )
        print_skipped(result.skipped)
    else:
        for record in result.predictions:
            print(format_record(record))
        print_skipped(result.skipped)
        print(f"{len(result.predictions)} file(s) predicted, {len(result.skipped)} skipped.")
    if not result.predictions:
        print("error: no input file could be used.", file=sys.stderr)
        return 2
    return 0


def format_record(record) -> str:
    """The lines printed for one file: label, probabilities, auxiliary answers."""
    speech = f"{record['speech_seconds']:.2f} s of speech"
    if record["cut"]:
        speech += f", cut to the model's limit; {record['duration_seconds']:.2f} s recorded"
    lines = [f"{record['path']}: {record['label']}  ({speech})"]
    lines.append(
        "    " + "  ".join(f"{name} {value:.3f}" for name, value in record["probabilities"].items())
    )
    for task, answer in record["auxiliary"].items():
        lines.append(f"    {task}: {answer}")
    return "\n".join(lines)


def print_skipped(skipped) -> None:
    if skipped:
        print(f"Skipped {len(skipped)} file(s):")
        for entry in skipped:
            print(f"    {entry['path']}: {entry['reason']}")


def csv_text(result, predictor) -> str:
    """The CSV of `--csv`: a row per predicted file, then one per skipped file."""
    import csv
    import io

    classes = predictor.label_names.get(predictor.primary_task) or sorted(
        result.predictions[0]["probabilities"] if result.predictions else []
    )
    auxiliary = [task for task in predictor.tasks if task != predictor.primary_task]
    columns = (
        ["path", "label"]
        + [f"probability_{name}" for name in classes]
        + ["speech_seconds", "cut"]
        + auxiliary
        + ["skipped_reason"]
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in result.predictions:
        row = {"path": record["path"], "label": record["label"]}
        row.update({f"probability_{k}": v for k, v in record["probabilities"].items()})
        row.update(speech_seconds=record["speech_seconds"], cut=record["cut"])
        row.update(record["auxiliary"])
        writer.writerow(row)
    for entry in result.skipped:
        writer.writerow({"path": entry["path"], "skipped_reason": entry["reason"]})
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
