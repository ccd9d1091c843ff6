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
  front-end's sample rate, 16 kHz for the presets, recorded as
  `"sample_rate"` in the metadata; zero-padded to the batch's longest) and
  `lengths` int32 `[batch]` (true sample counts) ->
  `emotion_probabilities` float32 `[batch, num_emotions]`, `emotion_label`
  string `[batch]`, and for every other head `<task>_probabilities` (plus
  `<task>_label` when label names were given for it); and what happened to
  the audio:

  - `speech_seconds` float32 `[batch]`: seconds of (trimmed) audio the
    features were computed from: the trimmed length, capped at the
    front-end's frame budget (`frame_budget_samples`: `num_frames` frames,
    e.g. 256 x 400 samples = 6.4 s for "fu2021"); 0 for a `no_speech` row.
  - `cut` bool `[batch]`: the trimmed audio was longer than the frame
    budget; only its first `speech_seconds` were used.
  - `no_speech` bool `[batch]`: nothing was left to classify (trimming left
    no sample, or the row's peak is below the silence floor, -60 dBFS by
    default, or its length is 0). Its probabilities are those of silence and
    mean nothing: every `<task>_label` of such a row is the empty string.

  By default the graph first trims each utterance's leading and trailing
  non-speech (`ser_keras.features.trimming.TrimSilence`: the criterion and
  defaults of `ser_keras.audio.io.load_audio`, which trims every training
  waveform), so a client sends raw audio; `trim_silence=False` leaves the
  waveform as sent.
- `features`: `features` float32 `[batch, frames, mels]` (the front-end's
  output; standardised per speaker for an export with speaker
  normalisation, as the metadata's `signatures.features.expects` says) ->
  the `<task>_probabilities` and `<task>_label` outputs.

With speaker normalisation (`export_saved_model(...,
speaker_normalization=SpeakerNormalization(...))`, for a model trained on
features z-normalised per band and per speaker, as
`ser_keras.features.normalization.standardize_per_speaker` does), the
front-end's features are standardised per band before the model, and two
signatures are added:

- `enrol`: `waveform` `[batch, samples]` and `lengths` `[batch]` of ONE
  speaker's enrolment recordings -> `band_mean` and `band_std` float32
  `[mels]` (that speaker's statistics: the front-end's features, after the
  same trimming, over every frame that is not padding, as `band_statistics`
  computes them in training; rows with `no_speech` are left out), `frames`
  int32 `[]` (how many frames they come from) and `no_speech` bool
  `[batch]` (the rows left out). Enrolment audio without a speech frame, or
  with NaN or inf samples, is refused. The statistics are reduced over the
  batch: never send `enrol` through server-side batching.
- `serving_enrolled`: `waveform`, `lengths`, `band_mean` and `band_std`
  float32 `[batch, mels]` (each row's speaker's statistics, e.g. `enrol`'s
  outputs repeated per row) -> `serving_default`'s outputs, the features
  standardised as `(x - band_mean) / (band_std + epsilon)` (padding frames
  kept).

`serving_default` then standardises with the fallback statistics stored in
the export (`SpeakerNormalization.fallback_mean`/`fallback_std`, e.g. the
training speakers' pooled statistics; the metadata's
`"speaker_normalization"` says which), so a client without enrolment still
gets an answer; both serving signatures return `normalization` string
`[batch]`: `"enrolled"` or `"fallback"`.

Both signatures check their inputs at run time (ranks, one `lengths` entry per
row, lengths >= 0, finite samples and features) and fail with an
`InvalidArgumentError` naming the input; dtypes are checked by the signature
itself.

The same computations run in this process, without writing anything, through
`ServingFunctions` (what `ser_keras.predict` uses for a `.keras` model).

An export killed before it finished (a `kill -9`, a power cut) leaves its
hidden temporary folder `.tmp-<version>-<process>-<pid>-<random>` behind; the
next export into the same model folder removes such folders when they are
stale (`remove_stale_temporaries`: the process that wrote one is gone, or
nothing in it changed for `STALE_TEMPORARY_SECONDS`).

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

import dataclasses
import datetime
import inspect
import json
import os
import pathlib
import re
import shutil
import socket
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

METADATA_FILENAME = "ser_keras.json"
SERVING_SIGNATURE = "serving_default"
FEATURES_SIGNATURE = "features"
# Task whose head also gives the model's single output when it has no dict outputs.
PRIMARY_TASK = "emotion"
# The `serving_default` outputs saying what happened to the audio (module docstring).
SPEECH_SECONDS_OUTPUT = "speech_seconds"
CUT_OUTPUT = "cut"
NO_SPEECH_OUTPUT = "no_speech"
AUDIO_OUTPUTS = (SPEECH_SECONDS_OUTPUT, CUT_OUTPUT, NO_SPEECH_OUTPUT)
AUDIO_OUTPUT_DESCRIPTIONS = {
    SPEECH_SECONDS_OUTPUT: "float32 [batch]: seconds of (trimmed) audio the features were "
    "computed from, at most the frame budget; 0 when no_speech.",
    CUT_OUTPUT: "bool [batch]: the (trimmed) audio was longer than the frame budget; only its "
    "first speech_seconds were used.",
    NO_SPEECH_OUTPUT: "bool [batch]: nothing left to classify (no sample after trimming, a peak "
    "below the silence floor, or length 0); the probabilities mean nothing and every "
    "<task>_label is the empty string.",
}
# Speaker normalisation (module docstring): its signatures and outputs.
ENROL_SIGNATURE = "enrol"
ENROLLED_SIGNATURE = "serving_enrolled"
NORMALIZATION_OUTPUT = "normalization"
ENROLLED = "enrolled"
FALLBACK = "fallback"
BAND_MEAN = "band_mean"
BAND_STD = "band_std"
ENROLMENT_FRAMES_OUTPUT = "frames"
ENROL_OUTPUTS = (BAND_MEAN, BAND_STD, ENROLMENT_FRAMES_OUTPUT, NO_SPEECH_OUTPUT)
NORMALIZATION_OUTPUT_DESCRIPTION = (
    'string [batch]: the statistics the features were standardised with: "enrolled" '
    '(band_mean and band_std sent to serving_enrolled) or "fallback" (serving_default: the '
    "export's speaker_normalization.fallback statistics)."
)
ENROL_OUTPUT_DESCRIPTIONS = {
    BAND_MEAN: "float32 [mels]: the speaker's per-band mean over the valid frames of every "
    "row with speech (after trimming and the front-end).",
    BAND_STD: "float32 [mels]: the per-band standard deviation over the same frames.",
    ENROLMENT_FRAMES_OUTPUT: "int32 []: how many frames the statistics come from.",
    NO_SPEECH_OUTPUT: "bool [batch]: rows left out of the statistics (no speech).",
}
# Hidden temporary folders of exports in progress: `.tmp-<version>-<process>-<pid>-<random>`
# (`<process>`: this host and PID namespace; `<random>`: mkdtemp's letters, digits and _).
TEMPORARY_PREFIX = ".tmp-"
# A temporary folder that cannot be shown to be abandoned (written on another host or in
# another PID namespace, by a live process, or by an older version of this module) is
# removed only when nothing in it has changed for this long: an export writes its files
# within minutes.
STALE_TEMPORARY_SECONDS = 24 * 60 * 60
_TEMPORARY_NAME = re.compile(
    r"^\.tmp-(?P<version>\d+)-(?P<process>[A-Za-z0-9._]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$"
)


def _existing_versions(model_dir):
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(base_dir, name):
    """The version number an export of `name` into `base_dir` would get (1 when none exists)."""
    versions = _existing_versions(pathlib.Path(base_dir) / name)
    return versions[-1] + 1 if versions else 1


def _process_tag():
    """This host and PID namespace, as letters, digits, `.` and `_` (no `-`).

    Two processes with the same tag see the same process ids: only then can
    one tell whether the other is still running.
    """
    tag = socket.gethostname() or "host"
    try:  # Linux: containers on one host have their own PID namespaces.
        tag += "." + re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        pass
    return re.sub(r"[^A-Za-z0-9.]", "_", tag).strip(".") or "host"


def _process_alive(pid):
    """Whether process `pid` of this PID namespace exists (True when it cannot be told)."""
    if os.name != "posix":  # os.kill(pid, 0) would not be a mere check there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else.
        return True
    return True


def _newest_change(folder):
    """The latest modification time of `folder` and everything inside it (not following links)."""
    newest = os.lstat(folder).st_mtime
    for root, directories, files in os.walk(folder):
        for name in directories + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def remove_stale_temporaries(model_dir, *, now=None):
    """Removes the temporary folders that killed exports left in a model folder.

    An export writes into a hidden `.tmp-<version>-<process>-<pid>-<random>`
    folder and renames it into place; killed before that (`kill -9`, a power
    cut), it leaves the folder behind. One is removed when it is certainly
    abandoned or has long been idle:

    - written by a process of this host and PID namespace (same `<process>`
      tag) whose `<pid>` no longer runs -- the process that wrote it is gone;
    - otherwise (another host or container sharing the folder, a live
      `<pid>`, which may be a reused id, or the `.tmp-<version>-<random>`
      name of earlier versions of this module) only when neither it nor
      anything inside has been modified for `STALE_TEMPORARY_SECONDS`
      (24 hours).

    Folders of exports still running are therefore never removed, and only
    hidden folders with the exporter's name pattern are considered (version
    folders, files and links are left alone). `export_saved_model` calls
    this before it writes.

    Args:
        model_dir: `<base_dir>/<name>`, the folder holding the versions.
        now: The current time (`time.time()`), for tests.

    Returns:
        The removed folders, as `pathlib.Path`s.
    """
    model_dir = pathlib.Path(model_dir)
    if not model_dir.is_dir():
        return []
    now = time.time() if now is None else now
    own_tag, removed = _process_tag(), []
    for folder in sorted(model_dir.iterdir()):
        if not folder.name.startswith(TEMPORARY_PREFIX) or folder.is_symlink():
            continue
        if not folder.is_dir():
            continue
        match = _TEMPORARY_NAME.match(folder.name)
        abandoned = (
            match is not None
            and match["process"] == own_tag
            and int(match["pid"]) != os.getpid()
            and not _process_alive(int(match["pid"]))
        )
        try:
            idle = now - _newest_change(folder) > STALE_TEMPORARY_SECONDS
        except OSError:  # removed meanwhile
            continue
        if abandoned or idle:
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed


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


def _training_epsilon():
    """The `epsilon` that `standardize_per_speaker` adds to the standard deviation."""
    from ser_keras.features.normalization import standardize_per_speaker

    return inspect.signature(standardize_per_speaker).parameters["epsilon"].default


# Whose statistics a `SpeakerNormalization` serves (the recipe's per-speaker or
# per-corpus normalisation).
NORMALIZATION_GROUPS = ("speaker", "corpus")


@dataclasses.dataclass(frozen=True)
class SpeakerNormalization:
    """Speaker normalisation of an export: per-band statistics per speaker, with a fallback.

    For a model trained on features z-normalised per band and per speaker
    (`ser_keras.features.normalization.standardize_per_speaker` on the
    front-end's features, grouped by speaker). `export_saved_model` then puts
    `(x - mean) / (std + epsilon)` (padding frames kept) between the
    front-end and the model, adds the `enrol` and `serving_enrolled`
    signatures, and makes `serving_default` use the fallback statistics
    (module docstring).

    Args:
        fallback_mean: Per-band means `serving_default` standardises with,
            one per mel band: e.g. the training features' pooled statistics,
            `band_statistics(features, pad_value)[0]` before the per-speaker
            standardisation (`from_features`).
        fallback_std: Per-band standard deviations (finite, >= 0), as many.
        fallback_source: What the fallback statistics are, in words (stored
            in the metadata), e.g. `"pooled statistics of the 3 training
            speakers of SAVEE"`.
        epsilon: Added to the standard deviation; None takes
            `standardize_per_speaker`'s default (what training used unless
            it passed another).
        group: Whose statistics the model was trained with: `"speaker"`
            (enrol one speaker's audio) or `"corpus"` (enrol audio of one
            corpus or recording setting, any speakers); said in the
            metadata. The graph is the same.

    Raises:
        ValueError: No or unequal numbers of means and deviations, values
            that are not finite, a negative deviation, an epsilon <= 0, a
            group other than "speaker" or "corpus".
    """

    fallback_mean: tuple
    fallback_std: tuple
    fallback_source: str = "not stated"
    epsilon: float | None = None
    group: str = "speaker"

    def __post_init__(self):
        mean = np.asarray(self.fallback_mean, dtype=np.float64)
        std = np.asarray(self.fallback_std, dtype=np.float64)
        if mean.ndim != 1 or mean.size == 0 or mean.shape != std.shape:
            raise ValueError(
                "`fallback_mean` and `fallback_std` must be 1-D with one value per mel band, as "
                f"many of each; received shapes {mean.shape} and {std.shape}."
            )
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)):
            raise ValueError(
                "`fallback_mean` must be finite and `fallback_std` finite and >= 0; received "
                f"mean={mean.tolist()}, std={std.tolist()}."
            )
        epsilon = _training_epsilon() if self.epsilon is None else self.epsilon
        if not (isinstance(epsilon, (int, float)) and np.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"`epsilon` must be a positive number; received {self.epsilon!r}.")
        if self.group not in NORMALIZATION_GROUPS:
            raise ValueError(
                f"`group` must be one of {NORMALIZATION_GROUPS}; received {self.group!r}."
            )
        if not isinstance(self.fallback_source, str):
            raise ValueError(
                f"`fallback_source` must be a string; received {self.fallback_source!r}."
            )
        object.__setattr__(self, "fallback_mean", tuple(float(v) for v in mean))
        object.__setattr__(self, "fallback_std", tuple(float(v) for v in std))
        object.__setattr__(self, "epsilon", float(epsilon))

    @classmethod
    def from_features(cls, features, pad_value, *, source, epsilon=None, group="speaker"):
        """The fallback of training features (before per-speaker standardisation).

        Args:
            features: float `[utterances, frames, mels]` padded with
                `pad_value` (the front-end's output on the training audio).
            pad_value: The front-end's padding value.
            source: `fallback_source`.
            epsilon: As the constructor's.
            group: As the constructor's.

        Returns:
            A `SpeakerNormalization` whose fallback is `band_statistics(
            features, pad_value)`: the pooled statistics of all speakers.
        """
        from ser_keras.features.normalization import band_statistics

        mean, std = band_statistics(features, pad_value)
        return cls(mean, std, fallback_source=source, epsilon=epsilon, group=group)

    @property
    def num_bands(self):
        return len(self.fallback_mean)

    def describe(self, pad_value):
        """The `"speaker_normalization"` entry of an export's metadata."""
        return {
            "enabled": True,
            "description": f"features z-normalised per mel band with a {self.group}'s "
            f"statistics before the model: (x - band_mean) / (band_std + {self.epsilon:g}); "
            f"frames whose every band is the padding value {pad_value:g} are kept. "
            f"{ENROL_SIGNATURE!r} computes a {self.group}'s statistics from enrolment audio "
            + ("of that speaker" if self.group == "speaker" else "of that corpus or recording "
               "setting (any of its speakers)")
            + f", {ENROLLED_SIGNATURE!r} takes them, {SERVING_SIGNATURE!r} uses the fallback "
            "statistics.",
            "group": self.group,
            "epsilon": self.epsilon,
            "pad_value": pad_value,
            "fallback": {
                "source": self.fallback_source,
                "mean": list(self.fallback_mean),
                "std": list(self.fallback_std),
            },
        }


def standardize_bands_reference(features, mean, std, pad_value, epsilon):
    """The numpy reference of the exported per-band standardisation.

    Args:
        features: float `[batch, frames, mels]`.
        mean, std: `[mels]` (every row) or `[batch, mels]` (one per row).
        pad_value: Frames whose every band equals it are kept as they are.
        epsilon: Added to `std`.

    Returns:
        float32 `[batch, frames, mels]`: what `standardize_per_speaker` gives
        a speaker whose statistics are `mean` and `std`.
    """
    features = np.asarray(features, dtype=np.float32)
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    mean = mean[:, None, :] if mean.ndim == 2 else mean[None, None, :]
    std = std[:, None, :] if std.ndim == 2 else std[None, None, :]
    padding = np.all(features == pad_value, axis=-1, keepdims=True)
    return np.where(padding, features, (features - mean) / (std + np.float32(epsilon)))


def frame_budget_samples(frontend):
    """How many samples of an utterance a front-end's fixed frame count covers.

    A front-end with `num_frames` keeps only its first `num_frames` frames
    (`LogMel`); audio beyond them does not reach the model. For a centred
    front-end (the presets) frame `t` is centred on sample `t * frame_step`,
    so the budget is `num_frames * frame_step` samples (256 x 400 = 102400,
    6.4 s at 16 kHz, for "fu2021"); for an uncentred one it is
    `(num_frames - 1) * frame_step + fft_length`, the end of the last frame.

    Args:
        frontend: A `LogMel` (or a layer with `num_frames`, `frame_step`,
            `fft_length` and `center`).

    Returns:
        The budget in samples, or None when the front-end keeps every frame
        (`num_frames=None`).
    """
    num_frames = getattr(frontend, "num_frames", None)
    if num_frames is None:
        return None
    if getattr(frontend, "center", True):
        return int(num_frames) * int(frontend.frame_step)
    return (int(num_frames) - 1) * int(frontend.frame_step) + int(frontend.fft_length)


def silence_floor_db(trimmer):
    """The level (dBFS) below which `serving_default` flags a row `no_speech`.

    The trimmer's `silence_floor_db`, or `AudioOptions().silence_floor_db`
    (load_audio's, -60 dBFS) without trimming or when the trimmer has none.
    """
    from ser_keras.audio.io import AudioOptions

    floor = None if trimmer is None else trimmer.silence_floor_db
    return AudioOptions.silence_floor_db if floor is None else float(floor)


class ServingFunctions:
    """What an export's signatures compute, also callable in this process.

    `export_saved_model` saves `serve` and `features` as the
    `serving_default` and `features` signatures; `ser_keras.predict` calls
    `serve` directly on a `.keras` model, so a trained model and its export
    answer alike.

    Args:
        model: A built Keras model taking features `[batch, frames, mels]`
            and returning a dict task -> softmax probabilities (a single
            tensor is taken as the `"emotion"` head).
        frontend: The `LogMel` front-end mapping `(waveform, lengths)` to
            the model's features.
        label_names: Dict task -> class names in class-index order; required
            for `"emotion"`, optional for the other heads.
        trim_silence: As `export_saved_model`'s.
        speaker_normalization: As `export_saved_model`'s (None: the model
            takes the front-end's features as they are).

    Attributes:
        tasks: The model's heads, in output order.
        num_classes: Dict task -> number of classes.
        label_names: Dict task -> names (the tasks that have names).
        num_frames, num_mels: The feature shape the model takes (`num_frames`
            None when variable).
        sample_rate: The front-end's rate in Hz (the waveforms' rate).
        trimmer: The `TrimSilence` layer in front of the front-end, or None.
        budget_samples: `frame_budget_samples(frontend)`.
        task_outputs: The outputs of both signatures, per task.
        serving_outputs: `task_outputs` plus `AUDIO_OUTPUTS` (plus
            `NORMALIZATION_OUTPUT` with speaker normalisation).
        speaker_normalization: The `SpeakerNormalization`, or None.
        pad_value: The front-end's padding value (None when it has none).

    Raises:
        ValueError: A front-end that is not a layer, shapes of the front-end
            and the model that do not match, an unknown task or a wrong
            number of names in `label_names`, a bad `trim_silence`, a
            `speaker_normalization` that is not a `SpeakerNormalization` or
            holds another number of bands than the features, or a front-end
            without `pad_value` under speaker normalisation.
    """

    def __init__(self, model, frontend, label_names, trim_silence=True, speaker_normalization=None):
        if not isinstance(frontend, keras.layers.Layer):
            raise ValueError(
                f"`frontend` must be a Keras layer (a LogMel front-end); received {frontend!r}."
            )
        if not isinstance(label_names, dict):
            raise ValueError(
                f"`label_names` must be a dict task -> names; received {label_names!r}."
            )
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
            raise ValueError(
                f"`label_names` names tasks {unknown} the model lacks (tasks: {tasks})."
            )
        if PRIMARY_TASK in tasks and PRIMARY_TASK not in label_names:
            raise ValueError(f"`label_names` must give the {PRIMARY_TASK!r} class names.")
        names = {}
        for task, values in label_names.items():
            values = [str(v) for v in values]
            if len(values) != num_classes[task]:
                raise ValueError(
                    f"Task {task!r} has {num_classes[task]} classes but {len(values)} label "
                    f"names were given: {values}."
                )
            names[task] = values

        self.model = model
        self.frontend = frontend
        self.trimmer = trimmer
        self.tasks = tasks
        self.num_classes = num_classes
        self.label_names = names
        self.num_frames = frames
        self.num_mels = mels
        self.sample_rate = sample_rate
        self.budget_samples = frame_budget_samples(frontend)
        self.silence_floor_db = silence_floor_db(trimmer)
        self.task_outputs = []
        for task in tasks:
            self.task_outputs.append(f"{task}_probabilities")
            if task in names:
                self.task_outputs.append(f"{task}_label")
        self.serving_outputs = self.task_outputs + list(AUDIO_OUTPUTS)
        self.pad_value = getattr(frontend, "pad_value", None)
        self.speaker_normalization = speaker_normalization
        if speaker_normalization is not None:
            if not isinstance(speaker_normalization, SpeakerNormalization):
                raise ValueError(
                    "`speaker_normalization` must be a SpeakerNormalization or None; received "
                    f"{speaker_normalization!r}."
                )
            if speaker_normalization.num_bands != mels:
                raise ValueError(
                    f"`speaker_normalization` holds statistics of {speaker_normalization.num_bands}"
                    f" bands; the features have {mels} mel bands."
                )
            if self.pad_value is None:
                raise ValueError(
                    "Speaker normalisation needs a front-end with a `pad_value` (a LogMel); "
                    f"received {frontend!r}."
                )
            self.pad_value = float(self.pad_value)
            self.serving_outputs.append(NORMALIZATION_OUTPUT)

    def outputs(self, features, no_speech=None):
        """The model's outputs on `features`, per task (labels blank where `no_speech`)."""
        predictions = _as_task_dict(self.model(features, training=False))
        result = {}
        for task in self.tasks:
            probabilities = tf.cast(predictions[task], tf.float32)
            result[f"{task}_probabilities"] = probabilities
            if task in self.label_names:
                names = tf.constant(self.label_names[task], dtype=tf.string)
                labels = tf.gather(names, tf.argmax(probabilities, axis=-1))
                if no_speech is not None:
                    labels = tf.where(no_speech, tf.constant("", tf.string), labels)
                result[f"{task}_label"] = labels
        return result

    def audio_outputs(self, waveform, lengths, used_lengths):
        """`speech_seconds`, `cut` and `no_speech` of rows whose used lengths are `used_lengths`.

        Args:
            waveform: The batch as received (before trimming), `[batch, samples]`.
            lengths: Its true lengths `[batch]`.
            used_lengths: The lengths the front-end received (after trimming).
        """
        samples = tf.range(tf.shape(waveform)[1])[None, :] < lengths[:, None]
        peak = tf.reduce_max(tf.where(samples, tf.abs(waveform), tf.zeros_like(waveform)), axis=1)
        floor = 10.0 ** (self.silence_floor_db / 20.0)
        no_speech = (used_lengths <= 0) | (lengths <= 0) | (peak < floor)
        if self.budget_samples is None:
            cut = tf.zeros_like(no_speech)
            used = used_lengths
        else:
            cut = (used_lengths > self.budget_samples) & ~no_speech
            used = tf.minimum(used_lengths, self.budget_samples)
        seconds = tf.cast(used, tf.float32) / float(self.sample_rate)
        return {
            SPEECH_SECONDS_OUTPUT: tf.where(no_speech, tf.zeros_like(seconds), seconds),
            CUT_OUTPUT: cut,
            NO_SPEECH_OUTPUT: no_speech,
        }

    def _front(self, waveform, lengths):
        """Checked inputs -> trimming -> front-end: `(features, audio outputs)`."""
        waveform, lengths = _checked_waveform_inputs(waveform, lengths)
        used_waveform, used_lengths = waveform, lengths
        if self.trimmer is not None:
            used_waveform, used_lengths = self.trimmer((waveform, lengths))
        audio = self.audio_outputs(waveform, lengths, used_lengths)
        return self.frontend((used_waveform, used_lengths)), audio

    def _standardize(self, features, band_mean, band_std):
        """`(x - mean) / (std + epsilon)` with `[batch, mels]` statistics; padding frames kept."""
        epsilon = self.speaker_normalization.epsilon
        padding = tf.reduce_all(tf.equal(features, self.pad_value), axis=-1, keepdims=True)
        standardized = (features - band_mean[:, None, :]) / (band_std[:, None, :] + epsilon)
        return tf.where(padding, features, standardized)

    def _serve_standardized(self, features, audio, band_mean, band_std, source):
        features = self._standardize(features, band_mean, band_std)
        result = self.outputs(features, audio[NO_SPEECH_OUTPUT])
        result.update(audio)
        result[NORMALIZATION_OUTPUT] = tf.fill(tf.shape(audio[NO_SPEECH_OUTPUT]), source)
        return result

    def serve(self, waveform, lengths):
        """The `serving_default` outputs of a padded waveform batch and its lengths."""
        features, audio = self._front(waveform, lengths)
        if self.speaker_normalization is not None:
            rows = tf.shape(features)[0]
            fallback = self.speaker_normalization
            band_mean = tf.tile(tf.constant([fallback.fallback_mean], tf.float32), [rows, 1])
            band_std = tf.tile(tf.constant([fallback.fallback_std], tf.float32), [rows, 1])
            return self._serve_standardized(features, audio, band_mean, band_std, FALLBACK)
        result = self.outputs(features, audio[NO_SPEECH_OUTPUT])
        result.update(audio)
        return result

    def serve_enrolled(self, waveform, lengths, band_mean, band_std):
        """The `serving_enrolled` outputs: features standardised with each row's statistics."""
        features, audio = self._front(waveform, lengths)
        band_mean, band_std = self._checked_statistics(tf.shape(features)[0], band_mean, band_std)
        return self._serve_standardized(features, audio, band_mean, band_std, ENROLLED)

    def _checked_statistics(self, rows, band_mean, band_std):
        """Run-time checks of `serving_enrolled`'s statistics, with messages naming them."""
        mels = self.num_mels
        band_mean = tf.ensure_shape(band_mean, [None, mels], name="check_band_mean")
        band_std = tf.ensure_shape(band_std, [None, mels], name="check_band_std")
        checks = [
            tf.debugging.assert_equal(
                tf.shape(band_mean)[0],
                rows,
                message="`band_mean` must hold one row per row of `waveform` (rows of "
                "band_mean, rows of waveform):",
            ),
            tf.debugging.assert_equal(
                tf.shape(band_std)[0],
                rows,
                message="`band_std` must hold one row per row of `waveform` (rows of "
                "band_std, rows of waveform):",
            ),
            tf.debugging.assert_all_finite(band_mean, message="`band_mean` has NaN or inf values"),
            tf.debugging.assert_all_finite(band_std, message="`band_std` has NaN or inf values"),
            tf.debugging.assert_non_negative(
                band_std, message="`band_std` must be >= 0; received:"
            ),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(band_mean), tf.identity(band_std)

    def enrol(self, waveform, lengths):
        """The `enrol` outputs: one speaker's per-band statistics from enrolment audio.

        Over every frame of the front-end's output that is not entirely
        `pad_value` (as `band_statistics`), in the rows that are not
        `no_speech`; the population standard deviation (numpy's `std`).
        """
        features, audio = self._front(waveform, lengths)
        valid = ~tf.reduce_all(tf.equal(features, self.pad_value), axis=-1)
        valid &= ~audio[NO_SPEECH_OUTPUT][:, None]
        weights = tf.cast(valid, features.dtype)[:, :, None]
        count = tf.reduce_sum(tf.cast(valid, tf.int32))
        check = tf.debugging.assert_positive(
            count,
            message="The enrolment audio holds no speech frame (every row is silent or empty "
            "after trimming); send recordings of the speaker talking.",
        )
        with tf.control_dependencies([check]):
            total = tf.cast(count, features.dtype)
        band_mean = tf.reduce_sum(features * weights, axis=[0, 1]) / total
        centred = (features - band_mean) * weights
        band_std = tf.sqrt(tf.reduce_sum(tf.square(centred), axis=[0, 1]) / total)
        return {
            BAND_MEAN: band_mean,
            BAND_STD: band_std,
            ENROLMENT_FRAMES_OUTPUT: count,
            NO_SPEECH_OUTPUT: audio[NO_SPEECH_OUTPUT],
        }

    def features(self, features):
        """The `features` outputs of a feature batch `[batch, frames, mels]`."""
        # `ensure_shape` is a run-time check: a signature's placeholders do not
        # refuse a tensor of another rank (a rank-2 `features` would otherwise
        # fail deep inside the model with an unrelated message).
        features = tf.ensure_shape(
            features, [None, self.num_frames, self.num_mels], name="check_features"
        )
        check = tf.debugging.assert_all_finite(features, message="`features` has NaN or inf values")
        with tf.control_dependencies([check]):
            features = tf.identity(features)
        return self.outputs(features)

    def serve_function(self):
        """`serve` as a `tf.function` with the `serving_default` input signature."""
        return tf.function(
            self.serve,
            input_signature=[
                tf.TensorSpec([None, None], tf.float32, name="waveform"),
                tf.TensorSpec([None], tf.int32, name="lengths"),
            ],
            autograph=False,
        )

    def enrol_function(self):
        """`enrol` as a `tf.function` with the `enrol` input signature."""
        return tf.function(
            self.enrol,
            input_signature=[
                tf.TensorSpec([None, None], tf.float32, name="waveform"),
                tf.TensorSpec([None], tf.int32, name="lengths"),
            ],
            autograph=False,
        )

    def enrolled_function(self):
        """`serve_enrolled` as a `tf.function` with the `serving_enrolled` input signature."""
        return tf.function(
            self.serve_enrolled,
            input_signature=[
                tf.TensorSpec([None, None], tf.float32, name="waveform"),
                tf.TensorSpec([None], tf.int32, name="lengths"),
                tf.TensorSpec([None, self.num_mels], tf.float32, name=BAND_MEAN),
                tf.TensorSpec([None, self.num_mels], tf.float32, name=BAND_STD),
            ],
            autograph=False,
        )

    def features_function(self):
        """`features` as a `tf.function` with the `features` input signature."""
        return tf.function(
            self.features,
            input_signature=[
                tf.TensorSpec([None, self.num_frames, self.num_mels], tf.float32, name="features")
            ],
            autograph=False,
        )


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


def _tf_variable(variable):
    """The `tf.Variable` a Keras variable holds (the variable itself otherwise)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def _write_saved_model(path, functions, document_json):
    """Writes the SavedModel: signatures as concrete functions, variables tracked by a tf.Module.

    Only the variables are attached to the saved object (not the Keras
    objects, and no `tf.function` attributes): TensorFlow then traces each
    signature once instead of re-tracing the whole model while saving.
    """
    module = tf.Module(name="ser_keras_export")
    # The tf.Variables themselves, those the traced functions capture: tracking the Keras
    # variables wrapping them saves a second copy that a graph-mode loader (TF Serving's
    # C++ loader, tf.compat.v1.saved_model.loader) restores while the functions read the
    # first, uninitialised one ("Could not find variable ...").
    module.model_variables = [_tf_variable(v) for v in functions.model.variables]
    module.frontend_variables = [_tf_variable(v) for v in functions.frontend.variables]
    module.ser_keras_metadata = tf.Variable(
        document_json, trainable=False, name="ser_keras_metadata"
    )
    for task, values in functions.label_names.items():
        setattr(
            module,
            f"{task}_label_names",
            tf.Variable(values, dtype=tf.string, trainable=False, name=f"{task}_label_names"),
        )
    signatures = {
        SERVING_SIGNATURE: functions.serve_function().get_concrete_function(),
        FEATURES_SIGNATURE: functions.features_function().get_concrete_function(),
    }
    normalization = functions.speaker_normalization
    if normalization is not None:
        module.fallback_band_mean = tf.Variable(
            normalization.fallback_mean, dtype=tf.float32, trainable=False, name="fallback_mean"
        )
        module.fallback_band_std = tf.Variable(
            normalization.fallback_std, dtype=tf.float32, trainable=False, name="fallback_std"
        )
        signatures[ENROL_SIGNATURE] = functions.enrol_function().get_concrete_function()
        signatures[ENROLLED_SIGNATURE] = functions.enrolled_function().get_concrete_function()
    tf.saved_model.save(module, str(path), signatures=signatures)


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
    speaker_normalization=None,
    verify=True,
    tolerance=1e-4,
):
    """Exports `frontend` + `model` as `base_dir/name/<version>/` for TF Serving.

    `serving_default` runs: input checks -> silence trimming (unless
    `trim_silence=False`) -> `frontend` -> `model`, and says how much speech
    was used, whether it was cut and whether there was any (module
    docstring); `features` runs `model` alone. Temporary folders that killed
    exports left in `base_dir/name` are removed first
    (`remove_stale_temporaries`).

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
        speaker_normalization: None (default: the model takes the
            front-end's features as they are), or a `SpeakerNormalization`
            for a model trained on features standardised per speaker
            (`standardize_per_speaker`): the features are then standardised
            per band before the model, `enrol` and `serving_enrolled` are
            added and `serving_default` uses the fallback statistics
            (module docstring); the metadata's `"speaker_normalization"`
            records them.
        verify: Reload the written SavedModel (before it is moved into place)
            and check that both signatures reproduce the Keras model's
            probabilities on a random batch (a row with silence around noise,
            a shorter row and a silent row; with trimming, the expected
            probabilities are those of the rows trimmed in numpy by
            `ser_keras.audio.io.trim_silence`), and that `speech_seconds`,
            `cut` and `no_speech` are those computed in numpy. With speaker
            normalisation also that `enrol` gives `band_statistics` of the
            front-end's features, and that `serving_enrolled` and
            `serving_default` reproduce the model on features standardised
            with the given and the fallback statistics.
        tolerance: Absolute tolerance of that check.

    Returns:
        `pathlib.Path` of the version folder.

    Raises:
        ValueError: Bad arguments (unknown task in `label_names`, wrong number
            of names, existing version, metadata not JSON, shapes of the
            front-end and the model that do not match, a `trim_silence` of
            another type or sample rate, a bad `speaker_normalization`).
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
    functions = ServingFunctions(model, frontend, label_names, trim_silence, speaker_normalization)
    tasks, names = functions.tasks, functions.label_names
    frames, mels = functions.num_frames, functions.num_mels

    model_dir = pathlib.Path(base_dir) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)
    existing = _existing_versions(model_dir)
    if version is None:
        version = existing[-1] + 1 if existing else 1
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer or None; received {version!r}.")
    final_dir = model_dir / str(version)
    if final_dir.exists():
        raise ValueError(f"Version {version} of {name!r} exists already: {final_dir}.")

    budget = functions.budget_samples
    document = {
        "format": "ser_keras.saved_model/1",
        "name": name,
        "version": version,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "model_name": model.name,
        "model_config": _json_or_none(_safe_config(model)),
        "tasks": {
            task: {"num_classes": functions.num_classes[task], "label_names": names.get(task)}
            for task in tasks
        },
        "frontend": describe_frontend(frontend),
        "trim_silence": describe_trimming(functions.trimmer),
        "sample_rate": functions.sample_rate,
        "num_frames": frames,
        "num_mels": mels,
        "frame_budget": {
            "samples": budget,
            "seconds": None if budget is None else budget / functions.sample_rate,
        },
        "silence_floor_db": functions.silence_floor_db,
        "signatures": {
            SERVING_SIGNATURE: {
                "inputs": {
                    "waveform": f"float32 [batch, samples] (mono, {functions.sample_rate} Hz)",
                    "lengths": "int32 [batch]",
                },
                "outputs": functions.serving_outputs,
                "output_descriptions": AUDIO_OUTPUT_DESCRIPTIONS,
            },
            FEATURES_SIGNATURE: {
                "inputs": {"features": f"float32 [batch, {frames}, {mels}]"},
                "outputs": functions.task_outputs,
                "expects": (
                    "the front-end's features as they are"
                    if speaker_normalization is None
                    else "the front-end's features standardised per speaker and per band, "
                    "(x - band_mean) / (band_std + epsilon) with padding frames kept (see "
                    "speaker_normalization): the model alone, no normalisation in front"
                ),
            },
        },
        "speaker_normalization": (
            {"enabled": False}
            if speaker_normalization is None
            else speaker_normalization.describe(functions.pad_value)
        ),
        "versions": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "ser_keras": _package_version(),
        },
        "metadata": metadata or {},
    }
    if speaker_normalization is not None:
        audio_inputs = document["signatures"][SERVING_SIGNATURE]["inputs"]
        document["signatures"][SERVING_SIGNATURE]["output_descriptions"] = {
            **AUDIO_OUTPUT_DESCRIPTIONS,
            NORMALIZATION_OUTPUT: NORMALIZATION_OUTPUT_DESCRIPTION,
        }
        document["signatures"][ENROL_SIGNATURE] = {
            "inputs": dict(audio_inputs),
            "outputs": list(ENROL_OUTPUTS),
            "output_descriptions": ENROL_OUTPUT_DESCRIPTIONS,
        }
        document["signatures"][ENROLLED_SIGNATURE] = {
            "inputs": {
                **audio_inputs,
                BAND_MEAN: f"float32 [batch, {mels}] (each row's speaker's enrol band_mean)",
                BAND_STD: f"float32 [batch, {mels}] (each row's speaker's enrol band_std)",
            },
            "outputs": functions.serving_outputs,
            "output_descriptions": document["signatures"][SERVING_SIGNATURE]["output_descriptions"],
        }
    document_json = json.dumps(document, indent=2, sort_keys=True)

    temporary_dir = pathlib.Path(
        tempfile.mkdtemp(
            prefix=f"{TEMPORARY_PREFIX}{version}-{_process_tag()}-{os.getpid()}-", dir=model_dir
        )
    )
    try:
        _write_saved_model(temporary_dir, functions, document_json)
        extra = temporary_dir / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / METADATA_FILENAME).write_text(document_json + "\n")
        if verify:
            _verify(temporary_dir, functions, tolerance)
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


def audio_outputs_reference(
    waveform, lengths, *, trimming, sample_rate, budget_samples, silence_floor_db
):
    """The `speech_seconds`, `cut` and `no_speech` outputs computed in numpy.

    The reference of `ServingFunctions.audio_outputs` (export verification
    checks one against the other), and what `ser_keras.predict` computes for
    an export written before those outputs existed.

    Args:
        waveform: float `[batch, samples]`, zero-padded.
        lengths: int `[batch]` true lengths.
        trimming: The trimmer's arguments (`TrimSilence.get_config()`, or an
            export's `trim_silence["config"]`), or None without trimming.
        sample_rate: The waveforms' rate in Hz.
        budget_samples: `frame_budget_samples(frontend)` (None: no budget).
        silence_floor_db: `silence_floor_db(trimmer)`.

    Returns:
        `(used_waveform, used_lengths, outputs)`: the batch the front-end
        receives (trimmed or as given) and a dict of numpy arrays keyed by
        `AUDIO_OUTPUTS`.
    """
    from ser_keras.features.trimming import trim_silence_batch

    waveform = np.asarray(waveform, dtype=np.float32)
    lengths = np.clip(np.asarray(lengths, dtype=np.int64), 0, waveform.shape[1])
    if trimming is None:
        used_waveform, used_lengths = waveform, lengths
    else:
        used_waveform, used_lengths, _ = trim_silence_batch(
            waveform, lengths, **{key: trimming[key] for key in _TRIM_ARGUMENTS}
        )
    valid = np.arange(waveform.shape[1])[None, :] < lengths[:, None]
    peak = np.max(np.where(valid, np.abs(waveform), 0.0), axis=1, initial=0.0)
    no_speech = (used_lengths <= 0) | (lengths <= 0) | (peak < 10.0 ** (silence_floor_db / 20.0))
    if budget_samples is None:
        cut, used = np.zeros_like(no_speech), used_lengths
    else:
        cut = (used_lengths > budget_samples) & ~no_speech
        used = np.minimum(used_lengths, budget_samples)
    seconds = np.where(no_speech, 0.0, used / float(sample_rate)).astype(np.float32)
    outputs = {SPEECH_SECONDS_OUTPUT: seconds, CUT_OUTPUT: cut, NO_SPEECH_OUTPUT: no_speech}
    return used_waveform, np.asarray(used_lengths, dtype=np.int32), outputs


def _verification_waveform(sample_rate, rng):
    """Three rows: silence, noise, faint noise (1.5 s); 0.5 s of noise (a padded row);
    digital silence (a `no_speech` row)."""
    waveform = (0.1 * rng.standard_normal((3, int(1.5 * sample_rate)))).astype("float32")
    quarter = sample_rate // 4
    waveform[0, :quarter] = 0.0
    waveform[0, -quarter:] *= 1e-3
    waveform[1, sample_rate // 2 :] = 0.0
    waveform[2] = 0.0
    lengths = np.array([waveform.shape[1], sample_rate // 2, waveform.shape[1]], dtype="int32")
    return waveform, lengths


def _verify(export_dir, functions, tolerance):
    """Reloads the export and compares both signatures with the Keras model.

    With trimming, the `serving_default` reference is the front-end and the
    model on the rows trimmed by the numpy `trim_silence` (so the in-graph
    trimming is checked against the training one); `speech_seconds`, `cut`
    and `no_speech` are compared with `audio_outputs_reference`.
    """
    model, frontend, names = functions.model, functions.frontend, functions.label_names
    normalization = functions.speaker_normalization
    loaded = tf.saved_model.load(str(export_dir))
    expected_signatures = {SERVING_SIGNATURE, FEATURES_SIGNATURE}
    if normalization is not None:
        expected_signatures |= {ENROL_SIGNATURE, ENROLLED_SIGNATURE}
    missing = expected_signatures - set(loaded.signatures)
    if missing:
        raise RuntimeError(f"The export lacks the signatures {sorted(missing)}.")
    rng = np.random.default_rng(1)
    waveform, lengths = _verification_waveform(functions.sample_rate, rng)
    trimmed, trimmed_lengths, audio = audio_outputs_reference(
        waveform,
        lengths,
        trimming=None if functions.trimmer is None else functions.trimmer.get_config(),
        sample_rate=functions.sample_rate,
        budget_samples=functions.budget_samples,
        silence_floor_db=functions.silence_floor_db,
    )
    features = keras.ops.convert_to_numpy(frontend((trimmed, trimmed_lengths)))
    num_frames = functions.num_frames or features.shape[1]
    random_features = rng.standard_normal((2, num_frames, functions.num_mels)).astype("float32")
    audio_inputs = {"waveform": tf.constant(waveform), "lengths": tf.constant(lengths)}

    serving_features, enrolled_checks, normalized_by = features, (), {}
    if normalization is not None:
        pad_value, epsilon = functions.pad_value, normalization.epsilon
        serving_features = standardize_bands_reference(
            features, normalization.fallback_mean, normalization.fallback_std, pad_value, epsilon
        )
        band_mean, band_std = _verify_enrol(loaded, audio_inputs, features, audio, functions)
        # Row 1 with other statistics: each row is standardised with its own.
        rows_mean = np.stack([band_mean, band_mean + 0.5, band_mean]).astype("float32")
        rows_std = np.stack([band_std, 2.0 * band_std + 0.1, band_std]).astype("float32")
        enrolled_checks = (
            (
                ENROLLED_SIGNATURE,
                {
                    **audio_inputs,
                    BAND_MEAN: tf.constant(rows_mean),
                    BAND_STD: tf.constant(rows_std),
                },
                standardize_bands_reference(features, rows_mean, rows_std, pad_value, epsilon),
                audio[NO_SPEECH_OUTPUT],
            ),
        )
        normalized_by = {SERVING_SIGNATURE: FALLBACK, ENROLLED_SIGNATURE: ENROLLED}

    checks = (
        (SERVING_SIGNATURE, audio_inputs, serving_features, audio[NO_SPEECH_OUTPUT]),
        (
            FEATURES_SIGNATURE,
            {"features": tf.constant(random_features)},
            random_features,
            np.zeros(len(random_features), dtype=bool),
        ),
        *enrolled_checks,
    )
    for signature, inputs, keras_inputs, no_speech in checks:
        served = loaded.signatures[signature](**inputs)
        if signature in normalized_by:
            got = [v.decode() for v in served[NORMALIZATION_OUTPUT].numpy()]
            if got != [normalized_by[signature]] * len(waveform):
                raise RuntimeError(
                    f"Export verification failed: {signature!r} output "
                    f"{NORMALIZATION_OUTPUT!r} is {got}, expected {normalized_by[signature]!r}."
                )
        expected = _as_task_dict(model(keras_inputs, training=False))
        for task in functions.tasks:
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
                expected_labels = [
                    "" if silent else names[task][i]
                    for i, silent in zip(np.argmax(got, axis=-1), no_speech, strict=True)
                ]
                if labels != expected_labels:
                    raise RuntimeError(
                        f"Export verification failed: {signature!r} labels {labels} != "
                        f"{expected_labels}."
                    )
    served = loaded.signatures[SERVING_SIGNATURE](
        waveform=tf.constant(waveform), lengths=tf.constant(lengths)
    )
    for key, want in audio.items():
        got = served[key].numpy()
        matches = (
            np.allclose(got, want, rtol=0, atol=1e-6)
            if key == SPEECH_SECONDS_OUTPUT
            else np.array_equal(got, want)
        )
        if not matches:
            raise RuntimeError(
                f"Export verification failed: {SERVING_SIGNATURE!r} output {key!r} is "
                f"{got.tolist()}, expected {want.tolist()}."
            )


def _verify_enrol(loaded, audio_inputs, features, audio, functions):
    """Checks `enrol` against `band_statistics`; returns the reference statistics."""
    from ser_keras.features.normalization import band_statistics

    speech = ~audio[NO_SPEECH_OUTPUT]
    want_mean, want_std = band_statistics(features[speech], functions.pad_value)
    frames = int(np.sum(~np.all(features[speech] == functions.pad_value, axis=-1)))
    served = loaded.signatures[ENROL_SIGNATURE](**audio_inputs)
    for key, want in ((BAND_MEAN, want_mean), (BAND_STD, want_std)):
        got = served[key].numpy()
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            raise RuntimeError(
                f"Export verification failed: {ENROL_SIGNATURE!r} output {key!r} is "
                f"{got.tolist()}, expected band_statistics' {want.tolist()}."
            )
    got_frames = int(served[ENROLMENT_FRAMES_OUTPUT].numpy())
    got_silent = served[NO_SPEECH_OUTPUT].numpy()
    if got_frames != frames or not np.array_equal(got_silent, audio[NO_SPEECH_OUTPUT]):
        raise RuntimeError(
            f"Export verification failed: {ENROL_SIGNATURE!r} used {got_frames} frames "
            f"(no_speech {got_silent.tolist()}); expected {frames} "
            f"({audio[NO_SPEECH_OUTPUT].tolist()})."
        )
    return want_mean, want_std
