"""The emotion of audio files, from a trained or an exported model.

    from ser_keras.predict import Predictor

    predictor = Predictor("saved_models/attention_cnn_blstm")
    result = predictor.predict(["interview.wav", "recordings/"])
    for record in result.predictions:
        print(record["path"], record["label"], record["probabilities"])
    for entry in result.skipped:
        print(entry["path"], entry["reason"])

or in one call, `ser_keras.predict("saved_models/attention_cnn_blstm",
["interview.wav"])` (this module is callable: `ser_keras.predict(...)` is
`ser_keras.predict.predict(...)`). `python -m apps.predict` is the same on
the command line.

The model is what `ser_keras.export.sources.locate_model` finds: an exported
SavedModel version folder, a model folder (its highest version), a `.keras`
file, a training fold folder holding `best.keras` or a training run's folder
(its best fold by validation score). A `.keras` model's front-end and label
names come from the sidecar the training apps write beside it
(`best.export.json`); it is run through the same computations as its export
(`ser_keras.export.saved_model.ServingFunctions`), so both answer alike.

Every input file is decoded by the package's own audio path
(`ser_keras.audio.io.load_audio`: any format libsndfile reads, every channel
count mixed to mono, any sample rate resampled to the model's, which the
export records), not trimmed there: the model's graph trims leading and
trailing silence as training's decoding did. A file that cannot be used --
missing, corrupt, empty, NaN samples, silent (`no speech`), too short once
trimmed -- is listed in `skipped` with the reason and never stops the
others.

An export with speaker normalisation (`export_saved_model(...,
speaker_normalization=...)`) standardises the features with a speaker's
statistics: `Predictor(model, enrolment=[files of the speaker])` computes
them once with the export's `enrol` signature and predicts through
`serving_enrolled`; without `enrolment` its `serving_default` uses the
export's fallback statistics, and every record says so (`"normalization":
"fallback"` and a `"note"`).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
import types

import numpy as np

from ser_keras.audio.io import (
    AUDIO_EXTENSIONS,
    KNOWN_AUDIO_EXTENSIONS,
    AudioError,
    AudioOptions,
    load_audio,
)
from ser_keras.utils.validation import positive_int

DEFAULT_BATCH_SIZE = 16
# Digits kept of the probabilities and seconds in the records.
DIGITS = 6
NO_SPEECH_REASON = "no speech"
FALLBACK_NOTE = (
    "no enrolment: the features were standardised with the export's fallback statistics, "
    "not this speaker's (give enrolment recordings of the speaker for per-speaker normalisation)"
)


@dataclasses.dataclass
class Predictions:
    """What `Predictor.predict` returns.

    Attributes:
        predictions: One record per usable file, in input order: a dict with
            `path`, `label` (the primary head's answer, `"emotion"` when the
            model has it), `probabilities` (dict class -> probability),
            `auxiliary` (dict head -> its top class, for every other head;
            the class index when the head has no label names),
            `auxiliary_probabilities` (dict head -> dict class ->
            probability), `speech_seconds` (seconds of trimmed audio the
            model used, at most its frame budget), `cut` (the trimmed audio
            was longer than the budget: only its first `speech_seconds`
            were used) and `duration_seconds` (the decoded file's length);
            for a model with speaker normalisation also `normalization`
            (`"enrolled"` or `"fallback"`), and with the fallback a `note`.
        skipped: One dict `{"path", "reason"}` per unusable file or input.
    """

    predictions: list
    skipped: list

    def to_dict(self):
        """`{"predictions": [...], "skipped": [...]}` (what `apps.predict --json` prints)."""
        return {"predictions": self.predictions, "skipped": self.skipped}


def _extensions():
    return tuple(sorted(set(AUDIO_EXTENSIONS) | set(KNOWN_AUDIO_EXTENSIONS)))


def collect_audio_files(inputs):
    """The audio files that `inputs` name: files as given, folders searched recursively.

    In a folder, files whose extension is an audio format's
    (`AUDIO_EXTENSIONS`, `KNOWN_AUDIO_EXTENSIONS`) are taken, in path order;
    hidden files and folders are ignored, symbolic links to folders are not
    followed. A file named explicitly is taken whatever its extension (its
    decoding then says why it cannot be used).

    Args:
        inputs: A path, or a sequence of paths (files or folders).

    Returns:
        `(files, skipped)`: the files (`str`, each once) and dicts `{"path",
        "reason"}` for inputs that name nothing usable (a missing path, a
        folder without audio files).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    extensions = _extensions()
    files, skipped, seen = [], [], set()

    def add(path):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            files.append(str(path))

    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            found = []
            for root, folders, names in os.walk(path):
                folders[:] = sorted(name for name in folders if not name.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and name.lower().endswith(extensions):
                        found.append(pathlib.Path(root) / name)
            if not found:
                skipped.append(
                    {
                        "path": str(path),
                        "reason": "no audio files in this folder (" + ", ".join(extensions) + ")",
                    }
                )
            for file in found:
                add(file)
        elif path.exists() or path.is_symlink():
            add(path)  # a broken link is reported by the decoder
        else:
            skipped.append({"path": str(path), "reason": "no such file or folder"})
    return files, skipped


def _skip_reason(error):
    if error.kind == "silent":
        return f"{NO_SPEECH_REASON}: {error.reason}"
    return error.reason


class Predictor:
    """A model ready to predict the emotion of audio files.

    Args:
        model_path: An exported SavedModel version folder
            (`saved_models/<name>/<version>`), a model folder (its highest
            version), a `.keras` file, a training fold folder with
            `best.keras`, or a training run's folder (the fold checkpoint
            with the best validation score; see
            `ser_keras.export.sources.locate_model`).
        batch_size: Files decoded and run together.
        frontend: For a `.keras` model only: the front-end (a preset name, a
            description or a `LogMel`) when it has no sidecar or to replace
            the sidecar's.
        label_names: For a `.keras` model only: dict task -> class names,
            replacing the sidecar's.
        trim_silence: For a `.keras` model only: how its audio is trimmed
            (`export_saved_model`'s argument; default `True`, as every
            training app decodes). An export records its own.
        enrolment: For an export with speaker normalisation: audio files
            (or folders) of the ONE speaker whose recordings will be
            predicted; their per-band statistics (the `enrol` signature)
            standardise the features of every prediction. None: the
            export's fallback statistics (each record notes it).

    Attributes:
        model_path: The version folder or `.keras` file used.
        kind: `"saved_model"` or `"keras"`.
        note: How `model_path` was chosen from a folder ("" when named).
        sample_rate: The rate the model takes; every file is resampled to it.
        tasks: The model's heads.
        primary_task: The head whose answer is a record's `label`.
        label_names: Dict task -> class names (the heads that have them).
        budget_seconds: Seconds of trimmed audio the model uses at most
            (None: all of it).
        speaker_normalization: Whether the model standardises per speaker
            (an export with the `enrol` signature).
        enrolment: With `enrolment` given: a dict with `files` (those used),
            `skipped` (`{"path", "reason"}` of the unusable ones), `frames`,
            `band_mean` and `band_std` (lists); else None.

    Raises:
        ValueError: The path names no model, the model's front-end or
            label names are unknown (naming what to give), `enrolment` for a
            model without speaker normalisation, or enrolment files of which
            none is usable.
    """

    def __init__(
        self,
        model_path,
        *,
        batch_size=DEFAULT_BATCH_SIZE,
        frontend=None,
        label_names=None,
        trim_silence=True,
        enrolment=None,
    ):
        from ser_keras.export.sources import locate_model

        self.speaker_normalization = False
        self.enrolment = None

        self.batch_size = positive_int("batch_size", batch_size)
        location = locate_model(model_path)
        self.model_path, self.kind, self.note = location.path, location.kind, location.note
        if self.kind == "saved_model":
            if frontend is not None or label_names is not None:
                raise ValueError(
                    "`frontend` and `label_names` apply to .keras models; an export records "
                    f"its own ({self.model_path})."
                )
            self._load_saved_model()
        else:
            self._load_keras_model(frontend, label_names, trim_silence)
        from ser_keras.export.saved_model import PRIMARY_TASK

        self.primary_task = PRIMARY_TASK if PRIMARY_TASK in self.tasks else self.tasks[0]
        self.budget_seconds = (
            None if self._budget_samples is None else self._budget_samples / self.sample_rate
        )
        if enrolment is not None:
            self.enrol(enrolment)

    # ------------------------------------------------------------- loading

    def _load_saved_model(self):
        import tensorflow as tf

        from ser_keras.export.saved_model import (
            ENROL_SIGNATURE,
            NO_SPEECH_OUTPUT,
            SERVING_SIGNATURE,
            frame_budget_samples,
            frontend_from_description,
            load_metadata,
        )

        document = load_metadata(self.model_path)
        loaded = tf.saved_model.load(str(self.model_path))
        signature = loaded.signatures[SERVING_SIGNATURE]
        self._loaded = loaded
        self.speaker_normalization = ENROL_SIGNATURE in loaded.signatures
        self.sample_rate = int(document["sample_rate"])
        outputs = document["signatures"][SERVING_SIGNATURE]["outputs"]
        self.tasks = tuple(
            key[: -len("_probabilities")] for key in outputs if key.endswith("_probabilities")
        )
        self.label_names = {
            task: list(info["label_names"])
            for task, info in document["tasks"].items()
            if info.get("label_names")
        }
        trimming = document.get("trim_silence") or {}
        self._trimming = trimming.get("config") if trimming.get("enabled") else None
        budget = (document.get("frame_budget") or {}).get("samples")
        if budget is None and "frame_budget" not in document:
            budget = frame_budget_samples(frontend_from_description(document["frontend"]))
        self._budget_samples = budget
        floor = (self._trimming or {}).get("silence_floor_db")
        self._silence_floor_db = document.get(
            "silence_floor_db", AudioOptions.silence_floor_db if floor is None else floor
        )
        # Exports written before `speech_seconds`, `cut` and `no_speech` existed: computed here.
        self._audio_outputs_in_graph = NO_SPEECH_OUTPUT in signature.structured_outputs
        self._signature = signature

    def _load_keras_model(self, frontend, label_names, trim_silence):
        from ser_keras.export.saved_model import ServingFunctions
        from ser_keras.export.sources import load_keras_model, resolve_model_inputs

        inputs = resolve_model_inputs(self.model_path, frontend=frontend, label_names=label_names)
        model = load_keras_model(self.model_path)
        functions = ServingFunctions(model, inputs.frontend, inputs.label_names, trim_silence)
        self.sample_rate = functions.sample_rate
        self.tasks = functions.tasks
        self.label_names = functions.label_names
        self._budget_samples = functions.budget_samples
        self._audio_outputs_in_graph = True
        self._functions = functions
        self._serve = functions.serve_function()

    def enrol(self, enrolment):
        """Computes a speaker's statistics with the export's `enrol` signature.

        Later predictions standardise with them (`serving_enrolled`), as
        training standardised each speaker with its own statistics.

        Args:
            enrolment: Audio files or folders of the speaker.

        Raises:
            ValueError: The model has no speaker normalisation, or no
                enrolment recording is usable.
        """
        import tensorflow as tf

        from ser_keras.export.saved_model import (
            BAND_MEAN,
            BAND_STD,
            ENROL_SIGNATURE,
            ENROLMENT_FRAMES_OUTPUT,
        )

        if not self.speaker_normalization:
            raise ValueError(
                f"`enrolment` needs an export with speaker normalisation (an {ENROL_SIGNATURE!r} "
                f"signature); {self.model_path} has none."
            )
        files, skipped = collect_audio_files(enrolment)
        used, waveforms = [], []
        for path in files:
            try:
                waveforms.append(self.decode(path))
                used.append(path)
            except (AudioError, OSError, ValueError, RuntimeError) as error:
                reason = _skip_reason(error) if isinstance(error, AudioError) else str(error)
                skipped.append({"path": path, "reason": reason})
        if not waveforms:
            reasons = "; ".join(f"{entry['path']}: {entry['reason']}" for entry in skipped[:5])
            raise ValueError(f"No usable enrolment recording ({reasons or 'none given'}).")
        lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
        batch = np.zeros((len(waveforms), int(lengths.max())), dtype=np.float32)
        for row, waveform in enumerate(waveforms):
            batch[row, : len(waveform)] = waveform
        try:
            outputs = self._loaded.signatures[ENROL_SIGNATURE](
                waveform=tf.constant(batch), lengths=tf.constant(lengths)
            )
        except tf.errors.InvalidArgumentError as error:
            message = str(error.message).strip().splitlines()
            raise ValueError(f"Enrolment failed: {message[0] if message else error}") from None
        self._band_mean = outputs[BAND_MEAN].numpy()
        self._band_std = outputs[BAND_STD].numpy()
        self.enrolment = {
            "files": used,
            "skipped": skipped,
            "frames": int(outputs[ENROLMENT_FRAMES_OUTPUT].numpy()),
            "band_mean": [round(float(v), DIGITS) for v in self._band_mean],
            "band_std": [round(float(v), DIGITS) for v in self._band_std],
        }

    # ----------------------------------------------------------- predicting

    def _run(self, waveforms):
        """The model's outputs (numpy) on a list of decoded waveforms."""
        import tensorflow as tf

        from ser_keras.export.saved_model import (
            BAND_MEAN,
            BAND_STD,
            ENROLLED_SIGNATURE,
            audio_outputs_reference,
        )

        lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
        batch = np.zeros((len(waveforms), int(lengths.max())), dtype=np.float32)
        for row, waveform in enumerate(waveforms):
            batch[row, : len(waveform)] = waveform
        call = self._serve if self.kind == "keras" else self._signature
        statistics = {}
        if self.enrolment is not None:
            call = self._loaded.signatures[ENROLLED_SIGNATURE]
            rows = (len(waveforms), 1)
            statistics = {
                BAND_MEAN: tf.constant(np.tile(self._band_mean, rows)),
                BAND_STD: tf.constant(np.tile(self._band_std, rows)),
            }
        outputs = call(waveform=tf.constant(batch), lengths=tf.constant(lengths), **statistics)
        outputs = {key: value.numpy() for key, value in outputs.items()}
        if not self._audio_outputs_in_graph:
            _, _, audio = audio_outputs_reference(
                batch,
                lengths,
                trimming=self._trimming,
                sample_rate=self.sample_rate,
                budget_samples=self._budget_samples,
                silence_floor_db=self._silence_floor_db,
            )
            outputs.update(audio)
        return outputs

    def _record(self, path, waveform, outputs, row):
        from ser_keras.export.saved_model import (
            CUT_OUTPUT,
            FALLBACK,
            NO_SPEECH_OUTPUT,
            NORMALIZATION_OUTPUT,
            SPEECH_SECONDS_OUTPUT,
        )

        if bool(outputs[NO_SPEECH_OUTPUT][row]):
            return None, (
                f"{NO_SPEECH_REASON}: nothing is left once leading and trailing silence are trimmed"
            )
        speech_seconds = float(outputs[SPEECH_SECONDS_OUTPUT][row])
        minimum = AudioOptions.min_duration
        if speech_seconds < minimum:
            return None, (
                f"too short: {speech_seconds:.3f} s after trimming silence, minimum {minimum:g} s"
            )
        answers, probabilities = {}, {}
        for task in self.tasks:
            values = outputs[f"{task}_probabilities"][row]
            names = self.label_names.get(task) or [str(i) for i in range(len(values))]
            top = int(np.argmax(values))
            answers[task] = names[top] if task in self.label_names else top
            probabilities[task] = {
                name: round(float(value), DIGITS) for name, value in zip(names, values, strict=True)
            }
        primary = self.primary_task
        record = {
            "path": path,
            "label": answers[primary],
            "probabilities": probabilities[primary],
            "auxiliary": {task: answers[task] for task in self.tasks if task != primary},
            "auxiliary_probabilities": {
                task: probabilities[task] for task in self.tasks if task != primary
            },
            "speech_seconds": round(speech_seconds, DIGITS),
            "cut": bool(outputs[CUT_OUTPUT][row]),
            "duration_seconds": round(len(waveform) / self.sample_rate, DIGITS),
        }
        if NORMALIZATION_OUTPUT in outputs:
            normalization = outputs[NORMALIZATION_OUTPUT][row]
            normalization = (
                normalization.decode() if isinstance(normalization, bytes) else str(normalization)
            )
            record["normalization"] = normalization
            if normalization == FALLBACK:
                record["note"] = FALLBACK_NOTE
        return record, None

    def _predict_batch(self, paths, waveforms):
        """Records and skipped entries of one decoded batch (a failing batch is split)."""
        import tensorflow as tf

        try:
            outputs = self._run(waveforms)
        except (tf.errors.OpError, ValueError) as error:
            if len(waveforms) > 1:
                records, skipped = [], []
                for path, waveform in zip(paths, waveforms, strict=True):
                    more_records, more_skipped = self._predict_batch([path], [waveform])
                    records += more_records
                    skipped += more_skipped
                return records, skipped
            message = str(getattr(error, "message", error)).strip().splitlines()
            reason = f"the model failed on it: {message[0] if message else type(error).__name__}"
            return [], [{"path": paths[0], "reason": reason}]
        records, skipped = [], []
        for row, (path, waveform) in enumerate(zip(paths, waveforms, strict=True)):
            record, reason = self._record(path, waveform, outputs, row)
            if record is None:
                skipped.append({"path": path, "reason": reason})
            else:
                records.append(record)
        return records, skipped

    def decode(self, path):
        """Decodes a file as `predict` does: mono, at the model's rate, untrimmed.

        Raises:
            AudioError: The file cannot be used (`reason` says why).
        """
        return load_audio(path, sample_rate=self.sample_rate, trim=False)

    def predict(self, inputs):
        """Predicts every audio file that `inputs` name.

        Args:
            inputs: A path or a sequence of paths: audio files (any format,
                sample rate and channel count the package decodes) and
                folders (searched recursively; `collect_audio_files`).

        Returns:
            `Predictions`: one record per usable file and the unusable ones
            with the reason.
        """
        files, skipped = collect_audio_files(inputs)
        predictions = []
        paths, waveforms = [], []

        def flush():
            if paths:
                records, more_skipped = self._predict_batch(list(paths), list(waveforms))
                predictions.extend(records)
                skipped.extend(more_skipped)
                paths.clear()
                waveforms.clear()

        for path in files:
            try:
                waveform = self.decode(path)
            except AudioError as error:
                skipped.append({"path": path, "reason": _skip_reason(error)})
                continue
            except (OSError, ValueError, RuntimeError) as error:
                skipped.append(
                    {"path": path, "reason": f"cannot decode: {type(error).__name__}: {error}"}
                )
                continue
            paths.append(path)
            waveforms.append(waveform)
            if len(paths) == self.batch_size:
                flush()
        flush()
        return Predictions(predictions, skipped)

    def describe(self):
        """One line: the model used, its rate, its budget and how it was chosen."""
        kind = "exported SavedModel" if self.kind == "saved_model" else "Keras model"
        budget = "" if self.budget_seconds is None else f", uses at most {self.budget_seconds:g} s"
        note = f"; {self.note}" if self.note else ""
        if self.enrolment is not None:
            note += (
                f"; speaker statistics from {len(self.enrolment['files'])} enrolment "
                f"recording(s), {self.enrolment['frames']} frames"
            )
        elif self.speaker_normalization:
            note += "; no enrolment: the export's fallback speaker statistics"
        return f"{self.model_path} ({kind}, {self.sample_rate} Hz{budget}{note})"


def predict(model_path, inputs, **options):
    """Predicts the emotion of audio files with a model: `Predictor(model_path, **options).
    predict(inputs)`.

    Args:
        model_path: As `Predictor`'s.
        inputs: Audio files and folders, as `Predictor.predict`'s.
        **options: `Predictor`'s keyword arguments (`batch_size`, ...).

    Returns:
        `Predictions`.
    """
    return Predictor(model_path, **options).predict(inputs)


class _CallableModule(types.ModuleType):
    """Makes `ser_keras.predict(...)` call `predict` (this module stays a module)."""

    def __call__(self, model_path, inputs, **options):
        return predict(model_path, inputs, **options)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Predictions", "Predictor", "collect_audio_files", "predict"]
