"""A KerasTuner search over a model family's hyperparameters, on held-out speakers.

`TuneSearch` runs the search of `apps.tune` from a typed configuration
(`TuneConfig`), usable from Python as well:

    from ser_keras.tuning.experiment import TuneConfig, TuneSearch
    result = TuneSearch(TuneConfig(model="aae_mtl", max_trials=2, epochs=2)).run()
    result.results["hyperparameters"]

It searches the space of `ser_keras.tuning.hypermodels` (loss weights from the
papers' ranges, dropout, widths, learning rate; defaults = the papers' values)
of one model family (`MODELS`), maximising the validation emotion UA
(`val_emotion_ua`; for `multigate` the mean over the languages' heads). The
first corpus's first speaker (or `test_speaker`) is held out as the test
speaker and never reaches the tuner. Validation (`objective`):

- `validation_speakers`: `validation_speakers` speakers of the first corpus
  (for `multigate`, of every language), held out of training, score every
  trial;
- `speaker_folds`: the training speakers (of the first corpus; for
  `multigate`, of every corpus) are dealt into `cv_folds` groups and each
  trial scores the mean over folds of the best validation UA, one model per
  fold.

Every validation split is checked before the search: its training and
validation speakers are disjoint and hold no test speaker
(`check_search_split`); the speakers of each part, with utterance counts,
are written to `best_hyperparameters.json` (`splits`).

The search state lives in `<directory>/<project_name>/` (KerasTuner's trials,
oracle and checkpoints, plus `run_config.json`); `resume` continues an
interrupted search. At the end the best hyperparameters are written to
`best_hyperparameters.json` (with the model arguments they build at the
chosen preset), and every trial to `trials.md` and `trials.json`. A search
with a trial that did not complete raises `TrialFailureError` after writing
the trials (KerasTuner alone would still report a "best" set).

Without `data`, small synthetic eSpeak NG corpora are generated (once,
cached): SAVEE-shaped English for the attention CNN-BLSTM, the same plus
unlabelled French speech for the ResNet-LSTM, EMO-DB-shaped German for the
AAE, EMO-DB-shaped German plus SAVEE-shaped English for Kim et al.'s model and
SAVEE-shaped English plus EMO-DB-shaped German for the multi-gating model.

This module imports neither TensorFlow nor Keras at import time: building a
configuration (and `apps.tune --help`) stays fast.

Reference:
    Fu et al., EUSIPCO 2020 (paper 004); Latif et al., cross-language SER
    with unlabelled data (paper 000), Section 3.2; Latif et al., IEEE Trans.
    Affective Computing 2020 (paper 002), Section 5.1; Kim et al., Interspeech
    2017 (paper 001), Sections 4.2 and 5.1; Wang et al., multilingual SER with
    multi-gating and NAS (paper 003), Section 5.1.
"""

from __future__ import annotations

import copy
import dataclasses
import pathlib
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from ser_keras.cli import reduced_note
from ser_keras.corpora.labels import LABEL_MAP_NAMES, default_label_map
from ser_keras.corpora.records import GENDERS
from ser_keras.experiments import config as config_lib
from ser_keras.experiments.base import (
    Experiment,
    ExperimentResult,
    SpeakerLeakageError,
    check_speaker_independence,
    split_manifest,
)
from ser_keras.experiments.config import FROM_PRESET, ConfigError, ExperimentConfig, preset_field

MODELS = ("attention_cnn_blstm", "resnet_lstm_mtl", "aae_mtl", "kim_mtl", "multigate")
OBJECTIVES = ("validation_speakers", "speaker_folds")
TUNERS = ("random", "bayesian", "hyperband")

# Per model family: front-end preset, paper batch size, and the architecture
# preset, epochs and early-stopping patience of each run preset. "paper" holds
# the papers' numbers (004: batch 64, 300 epochs; 002: batch 32, restore-best-
# and-halve after 5 epochs, SGD; 000 gives no schedule: the 100 epochs and
# patience 20 of apps.train_crosslang_valence, our choice; 001: batch 128 and
# early stopping, whose 100 epochs and patience 10 are ours; 003: 20 epochs,
# the best kept, its batch size 64 ours). "quick" is a REDUCED configuration
# for a CPU: the models' CPU presets (Kim et al.'s model has none: its LSTM
# with 64 units, as apps.train_gender_naturalness --preset quick) and a few
# epochs. Kim et al.'s model trains on chunks of `chunk_frames` frames (2 s,
# apps.train_gender_naturalness --chunk-frames).
FAMILIES = {
    "attention_cnn_blstm": {
        "frontend": "fu2021",
        "batch_size": 64,
        "quick": {"model_preset": "fu2021_cpu", "epochs": 10, "patience": None},
        "paper": {"model_preset": "fu2021", "epochs": 300, "patience": 30},
    },
    "resnet_lstm_mtl": {
        "frontend": "latif_6s",
        "batch_size": 32,
        "quick": {"model_preset": "latif_crosslang_cpu", "epochs": 6, "patience": None},
        "paper": {"model_preset": "latif_crosslang", "epochs": 100, "patience": 20},
    },
    "aae_mtl": {
        "frontend": "latif",
        "batch_size": 32,
        "quick": {"model_preset": "cpu_small", "epochs": 6, "patience": None},
        "paper": {"model_preset": "latif2020", "epochs": 300, "patience": 5},
    },
    "kim_mtl": {
        "frontend": "kim2017",
        "batch_size": 128,
        "chunk_frames": 200,
        "quick": {"model_preset": {"units": 64}, "epochs": 8, "patience": None},
        "paper": {"model_preset": "kim2017_lstm", "epochs": 100, "patience": 10},
    },
    "multigate": {
        "frontend": "fu2021",
        "batch_size": 64,
        "quick": {"model_preset": "wang_cpu", "epochs": 12, "patience": None},
        "paper": {"model_preset": "wang", "epochs": 20, "patience": None},
    },
}

# The run presets' values shared by every family: the synthetic corpora's
# utterances per speaker and emotion.
PRESETS = {
    "quick": {"synthetic_per_emotion": 3},
    "paper": {"synthetic_per_emotion": 15},
}


def family_preset(model: str, preset: str) -> dict:
    """The values a run preset gives a model family's search.

    Args:
        model: A key of `FAMILIES`.
        preset: `"quick"` or `"paper"`.

    Returns:
        A new dict with `model_preset`, `epochs`, `patience`, `batch_size`
        and `synthetic_per_emotion`.
    """
    family = FAMILIES[model]
    return copy.deepcopy(
        {**PRESETS[preset], "batch_size": family["batch_size"], **family[preset]}
    )


@dataclasses.dataclass
class TuneConfig(ExperimentConfig):
    """Configuration of `TuneSearch`.

    Fields marked "preset" come from `family_preset(model, preset)` unless
    given.

    Args:
        model: The model family, one of `MODELS` (required).
        tuner: `"random"`, `"bayesian"` or `"hyperband"` (KerasTuner
            RandomSearch, BayesianOptimization, Hyperband).
        max_trials: Number of trials (Hyperband's schedule follows `epochs`
            and `hyperband_factor`; `max_trials` caps it).
        data: Corpora as `KIND:DIR` texts; the first one's speakers are
            tested and validated, the others (and utterances without an
            emotion label) only train. None: synthetic corpora.
        label_map: Emotion label map; None: binary valence for
            `resnet_lstm_mtl`, four classes for `kim_mtl`, each corpus's own
            (`ser_keras.corpora.labels.default_label_map`) otherwise (for
            `multigate`, a label set per language).
        objective: `"validation_speakers"` or `"speaker_folds"`.
        cv_folds: Folds of the `speaker_folds` objective.
        validation_speakers: Speakers held out for the `validation_speakers`
            objective.
        test_speaker: Speaker of the first corpus kept out of the search, as
            the corpus names it (e.g. `"DC"`); None: the first speaker.
        model_preset: Architecture preset (preset).
        epochs: Epochs per trial (preset).
        batch_size: Global batch size (preset; the paper's).
        patience: Early stopping on `val_emotion_ua` after this many epochs
            without improvement (`aae_mtl`: restore the best weights and
            halve the learning rate, as paper 002); None: none (preset).
        single_task: `attention_cnn_blstm` without its speaker head.
        hyperband_factor: Hyperband's reduction factor.
        directory: Folder of the search projects.
        project_name: Project folder inside `directory` (None: the model's
            name). `out` is set to the project folder.
        synthetic_per_emotion: Synthetic corpora: utterances per speaker and
            emotion (preset).
        **kwargs: `ExperimentConfig`'s options (`preset`, `seed`, `resume`,
            `cache_dir`, `quiet`, `strategy`).
    """

    PRESETS: ClassVar[dict] = PRESETS
    DEFAULT_OUT: ClassVar[str] = "runs/tune"

    export_dir: str | None = None
    model: str | None = None
    tuner: str = "random"
    max_trials: int = 3
    data: tuple[str, ...] | None = None
    label_map: str | None = None
    objective: str = "validation_speakers"
    cv_folds: int = 3
    validation_speakers: int = 1
    test_speaker: str | None = None
    model_preset: str | dict = preset_field()
    epochs: int = preset_field()
    batch_size: int = preset_field()
    patience: int | None = preset_field()
    single_task: bool = False
    hyperband_factor: int = 3
    directory: str = "runs/tune"
    project_name: str | None = None
    synthetic_per_emotion: int = preset_field()

    def __post_init__(self):
        config_lib.check_choice("model", self.model, MODELS)
        config_lib.check_choice("preset", self.preset, tuple(self.PRESETS))
        for name, value in family_preset(self.model, self.preset).items():
            if getattr(self, name) is FROM_PRESET:
                setattr(self, name, value)
        super().__post_init__()

    @property
    def project_dir(self) -> pathlib.Path:
        """`<directory>/<project_name>` (the model's name by default)."""
        return pathlib.Path(self.directory) / (self.project_name or self.model)

    def validate(self) -> None:
        self.out = str(self.project_dir)
        super().validate()
        if self.export_dir is not None:
            raise ConfigError("export_dir", f"must be None: a search exports no model. "
                              f"Received: {self.export_dir!r}")
        config_lib.check_choice("tuner", self.tuner, TUNERS)
        if self.label_map is not None:
            config_lib.check_choice("label_map", self.label_map, LABEL_MAP_NAMES)
        config_lib.check_integer_at_least("max_trials", self.max_trials, 1)
        config_lib.check_choice("objective", self.objective, OBJECTIVES)
        config_lib.check_integer_at_least("cv_folds", self.cv_folds, 2)
        config_lib.check_integer_at_least("validation_speakers", self.validation_speakers, 1)
        config_lib.check_integer_at_least("epochs", self.epochs, 1)
        config_lib.check_integer_at_least("batch_size", self.batch_size, 1)
        config_lib.check_integer_at_least("patience", self.patience, 1, allow_none=True)
        config_lib.check_integer_at_least("hyperband_factor", self.hyperband_factor, 2)
        config_lib.check_integer_at_least("synthetic_per_emotion", self.synthetic_per_emotion, 1)
        config_lib.check_output_path("directory", self.directory)
        if self.single_task and self.model != "attention_cnn_blstm":
            raise ConfigError(
                "single_task",
                f"applies to attention_cnn_blstm only. Received: --model {self.model}",
            )
        self._specs = None
        if self.data is not None:
            from ser_keras.cli import corpus_specs

            # Parsed (and the folders checked) now, before any data is read.
            self.data = tuple(self.data)
            self._specs = corpus_specs(self.data, "--data")

    def run_configuration(
        self, data_description: str, label_map: str, test_speakers, num_utterances
    ) -> dict:
        """What `run_config.json` holds: a resumed search must match it.

        Args:
            data_description: The corpora, as `TuneSearch.corpus_specs` describes them.
            label_map: The label map's name (`"per corpus"` for `multigate`'s own).
            test_speakers: The held-out speakers.
            num_utterances: Utterances loaded.

        Returns:
            The dict (keys as `apps.tune` has always written them).
        """
        return {
            "app": TuneSearch.app_name,
            "model": self.model,
            "tuner": self.tuner,
            "objective": self.objective,
            "cv_folds": self.cv_folds if self.objective == "speaker_folds" else None,
            "validation_speakers": (
                self.validation_speakers if self.objective == "validation_speakers" else None
            ),
            "data": data_description,
            "label_map": label_map,
            "preset": self.preset,
            "model_preset": self.model_preset,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "patience": self.patience,
            "single_task": self.single_task,
            "hyperband_factor": self.hyperband_factor if self.tuner == "hyperband" else None,
            "seed": self.seed,
            "test_speakers": list(test_speakers),
            "num_utterances": num_utterances,
        }


# ------------------------------------------------------------------ labels


def model_label_map(model: str) -> str | None:
    """The label map a model family always uses (paper 000: binary valence; 001: four classes)."""
    return {"resnet_lstm_mtl": "binary_valence", "kim_mtl": "four_class"}.get(model)


def label_map_name(model: str, kind: str, label_map: str | None = None) -> str:
    """The emotion label map of a corpus kind in a search.

    Args:
        model: The model family.
        kind: The corpus kind (e.g. `"emodb"`).
        label_map: The label map asked for, which wins; None: the family's
            own (`model_label_map`), else the kind's default.

    Returns:
        A label map name of `ser_keras.corpora.labels`.

    Raises:
        ConfigError: (`label_map`) A kind without a default label map.
    """
    if label_map:
        return label_map
    own = model_label_map(model)
    if own is not None:
        return own
    try:
        return default_label_map(kind).name
    except ValueError as error:
        raise ConfigError("label_map", f"must be given: {error}") from None


def class_index(values: Sequence, rows) -> tuple[np.ndarray, list]:
    """Integer labels of `values` over the classes seen in `rows`.

    Args:
        values: One value per utterance (None = no value).
        rows: The utterances whose values make the classes (the training
            rows: a class seen only in validation has no output unit).

    Returns:
        `(labels, classes)`: int32 `[len(values)]`, -1 for None and for
        values outside the classes, and the sorted classes.
    """
    classes = sorted({values[i] for i in rows if values[i] is not None})
    lookup = {value: number for number, value in enumerate(classes)}
    return np.array([lookup.get(value, -1) for value in values], dtype=np.int32), classes


def language_labels(utterances: Sequence, kinds: Sequence[str], label_maps: dict):
    """`multigate`: each utterance's label in its language's label set, and the sets.

    A language's label set is the union of the label maps of its corpora, in
    order of appearance, as in `apps.train_multilingual_gating`.

    Args:
        utterances: The utterances (each with a `language`).
        kinds: The corpus kind of every utterance.
        label_maps: Dict corpus kind -> `LabelMap`.

    Returns:
        `(emotion, class_names)`: int32 `[N]` (-1 = no label) and a dict
        language -> class names, languages in order of appearance.

    Raises:
        ValueError: An utterance without a language, naming its file.
    """
    class_names = {}
    for utterance, kind in zip(utterances, kinds, strict=True):
        if not utterance.language:
            raise ValueError(
                f"The {kind} loader gives no language for {utterance.path}; multigate needs "
                "one per utterance (a corpus kind that sets it, or a manifest language column)."
            )
        names = class_names.setdefault(utterance.language, [])
        names += [name for name in label_maps[kind].classes if name not in names]
    emotion = np.full(len(utterances), -1, dtype=np.int32)
    for row, (utterance, kind) in enumerate(zip(utterances, kinds, strict=True)):
        index = label_maps[kind].index(utterance.label)
        if index >= 0:
            emotion[row] = class_names[utterance.language].index(label_maps[kind].classes[index])
    return emotion, class_names


def validate_every_language(utterances, fold, emotion, count, seed, log: Callable = print):
    """`multigate`: the fold with `count` validation speakers of each language that has none.

    The validation speakers of a fold come from the first corpus; every other
    language's head would go unscored. Speakers of those languages are moved
    from the training side to validation (the test speakers are never on the
    training side, so they never move).

    Args:
        utterances: The utterances.
        fold: A `ser_keras.data.splits.Fold`.
        emotion: Emotion label per utterance (-1 = none).
        count: Speakers to move per language.
        seed: Seed of the speakers' draw.
        log: Where the notes go.

    Returns:
        A new `Fold`.
    """
    rng = np.random.default_rng(seed)
    train = np.asarray(fold.train, dtype=np.int64)
    validated = {utterances[i].language for i in fold.validation}
    moved = np.zeros(len(utterances), dtype=bool)
    speakers = list(fold.validation_speakers)
    for language in dict.fromkeys(u.language for u in utterances):
        if language in validated:
            continue
        candidates = sorted(
            {utterances[i].speaker_id for i in train
             if utterances[i].language == language and emotion[i] >= 0}
        )
        if len(candidates) <= count:
            log(f"  language {language}: {len(candidates)} labelled training speaker(s), "
                "none held out for validation (its head is not scored)")
            continue
        chosen = {str(s) for s in rng.permutation(candidates)[:count]}
        moved[[i for i in train if utterances[i].speaker_id in chosen]] = True
        speakers += sorted(chosen)
    return dataclasses.replace(
        fold,
        train=train[~moved[train]],
        validation=np.sort(np.concatenate([fold.validation, train[moved[train]]])).astype(
            np.int64
        ),
        validation_speakers=tuple(speakers),
    )


def task_labels(
    model, utterances, emotion, training_rows, language_classes=None, *, single_task=False,
    log: Callable = print,
):
    """Labels per utterance of every task of a family's model, and each task's classes.

    Args:
        model: The model family.
        utterances: The utterances.
        emotion: Emotion label per utterance (-1 = none).
        training_rows: The utterances trained on (auxiliary classes come
            from them: a speaker seen only in validation has no class).
        language_classes: `multigate`: dict language -> class names.
        single_task: `attention_cnn_blstm` without its speaker head.
        log: Where the notes on heads left out go.

    Returns:
        `(labels, classes)`: dict task -> int32 `[N]` (-1 = none) and dict
        auxiliary task -> class names (`multigate`: head -> class names).
    """
    if model == "multigate":
        from ser_keras.models.multigate import task_name

        languages = np.array([u.language for u in utterances])
        labels = {
            task_name(language): np.where(languages == language, emotion, -1).astype(np.int32)
            for language in language_classes
        }
        classes = {task_name(language): names for language, names in language_classes.items()}
        return labels, classes
    labels = {"emotion": emotion}
    classes = {}
    if model == "attention_cnn_blstm" and not single_task:
        labels["speaker"], classes["speaker"] = class_index(
            [u.speaker_id for u in utterances], training_rows
        )
    elif model == "resnet_lstm_mtl":
        languages, names = class_index([u.language for u in utterances], training_rows)
        if len(names) >= 2:
            labels["language"], classes["language"] = languages, names
        else:
            log(f"  one language in training ({names}): no language head")
        labelled = emotion[training_rows] >= 0
        if labelled.any() and not labelled.all():
            labels["domain"] = np.where(emotion >= 0, 0, 1).astype(np.int32)
            classes["domain"] = ["labelled", "unlabelled"]
        else:
            log("  no unlabelled speech in training: no domain head")
    elif model == "aae_mtl":
        speakers, names = class_index([u.speaker_id for u in utterances], training_rows)
        if len(names) >= 2:
            labels["speaker"], classes["speaker"] = speakers, names
        genders = [u.gender if u.gender in GENDERS else None for u in utterances]
        gender_labels, names = class_index(genders, training_rows)
        if len(names) >= 2:
            labels["gender"], classes["gender"] = gender_labels, names
        else:
            log(f"  genders in training: {names}: no gender head")
    elif model == "kim_mtl":
        from ser_keras.models.kim_mtl import AUXILIARY_CLASSES

        for task, names in AUXILIARY_CLASSES.items():
            values = [getattr(u, task) for u in utterances]
            encoded = np.array(
                [names.index(v) if v in names else -1 for v in values], dtype=np.int32
            )
            present = sorted({names[i] for i in encoded[training_rows] if i >= 0})
            if len(present) >= 2:
                labels[task], classes[task] = encoded, list(names)
            else:
                log(f"  {task} classes in training: {present}: no {task} head")
    return labels, classes


# ---------------------------------------------------------- the splits


def check_search_split(manifest: dict, where: str) -> None:
    """Refuses a validation split of a search that is not speaker-independent.

    Args:
        manifest: A `split_manifest` of the part (its training and
            validation rows, and the search's test rows).
        where: The part, for the message.

    Raises:
        SpeakerLeakageError: A test speaker is trained or validated on, or a
            validation speaker is also trained on.
    """
    check_speaker_independence(manifest, where)
    trained = {entry["speaker"] for entry in manifest["train_speakers"]}
    both = sorted(trained & {entry["speaker"] for entry in manifest["validation_speakers"]})
    if both:
        raise SpeakerLeakageError(
            f"{where}: the validation speakers {both} also appear in the training data. "
            "Refusing to search on a validation split that is not speaker-independent."
        )


@dataclasses.dataclass
class SearchData:
    """What a search trains and validates on.

    Attributes:
        utterances: Every utterance loaded.
        test_speakers: The held-out speakers (never searched on).
        test: Utterance indices of the test speakers.
        parts: `(train, validation)` utterance indices of each validation
            split (one for `validation_speakers`, `cv_folds` for
            `speaker_folds`).
        manifests: The `split_manifest` of each part.
        inputs: Model inputs of the needed utterances (segments for the AAE
            and Kim et al.'s model).
        row_utterance: The utterance of every row of `inputs`.
        row_labels: Dict task -> labels of every row of `inputs`.
        x: What the tuner trains on (rows of `inputs`).
        y: Its labels.
        fit_arguments: `validation_data` or `validation_folds` (indices into
            `x`) and the other arguments of the search's `fit`.
    """

    utterances: list
    test_speakers: tuple
    test: np.ndarray
    parts: list
    manifests: list
    inputs: np.ndarray
    row_utterance: np.ndarray
    row_labels: dict
    x: np.ndarray
    y: dict
    fit_arguments: dict


# -------------------------------------------------------------- the search


class TuneSearch(Experiment):
    """A KerasTuner search of a model family's hyperparameters (`apps.tune`).

    Args:
        config: A `TuneConfig`.
        **overrides: Configuration fields.

    Attributes:
        search_data: The `SearchData` of the last `run`.
        hypermodel: The HyperModel searched.
    """

    config_class: ClassVar[type] = TuneConfig
    app_name: ClassVar[str] = "tune"

    def __init__(self, config: TuneConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        self.search_data: SearchData | None = None
        self.hypermodel = None
        self.data_description = None
        self.label_map_description = None
        self.skipped = {}

    # ------------------------------------------------------------ data

    def corpus_specs(self):
        """`(specs, description)`: the configured corpora, or the synthetic defaults."""
        config = self.config
        if config._specs is not None:
            from ser_keras.cli import describe_specs

            return list(config._specs), describe_specs(config._specs)
        from ser_keras.cli import synthetic_corpus_spec

        per_emotion = config.synthetic_per_emotion
        root = self.synthetic_root()
        emodb = synthetic_corpus_spec(root, "emodb", seed=config.seed, per_emotion=per_emotion)
        if config.model == "aae_mtl":
            # EMO-DB's layout has ten speakers of both genders (speaker and gender heads).
            return [emodb], "synthetic (eSpeak NG) EMO-DB-shaped corpus"
        savee = synthetic_corpus_spec(root, "savee", seed=config.seed, per_emotion=per_emotion)
        if config.model == "kim_mtl":
            # Aggregated corpora (paper 001), speakers of both genders tested and validated.
            return [emodb, savee], "synthetic (eSpeak NG) EMO-DB- and SAVEE-shaped corpora"
        if config.model == "multigate":
            # Two languages, each with its own label set (paper 003).
            return [savee, emodb], (
                "synthetic (eSpeak NG) SAVEE-shaped English + EMO-DB-shaped German corpora"
            )
        specs = [savee]
        description = "synthetic (eSpeak NG) SAVEE-shaped corpus"
        if config.model == "resnet_lstm_mtl":
            # Unlabelled speech in a second language: the language and domain heads.
            specs.append(
                synthetic_corpus_spec(
                    root, "folder", seed=config.seed, language="fr", per_speaker=2 * per_emotion
                )
            )
            description += " + unlabelled French speech"
        return specs, description

    def load(self, specs):
        """Loads every corpus through the waveform cache.

        Returns:
            `(utterances, waveforms, skipped, kinds)`: `kinds` holds the
            corpus kind of every utterance.
        """
        from ser_keras.cli import describe_specs

        utterances, waveforms, skipped, kinds = [], [], {}, []
        for spec in specs:
            name = describe_specs([spec])
            cached, skipped[name] = self.load_corpus(spec, name)
            if not cached.utterances:
                raise ValueError(f"No usable audio in {spec.directory} ({spec.kind}).")
            self.log(
                f"  {name}: {len(cached.utterances)} utterances of "
                f"{len({u.speaker_id for u in cached.utterances})} speakers"
            )
            utterances += cached.utterances
            waveforms += cached.waveforms
            kinds += [spec.kind] * len(cached.utterances)
        return utterances, waveforms, skipped, kinds

    def label_maps(self, specs) -> dict:
        """Dict corpus kind -> `LabelMap`, checked before any data is read.

        `multigate` labels every corpus with its own map (a label set per
        language); the other families label every utterance with the first
        corpus's map.
        """
        from ser_keras.corpora.labels import get_label_map

        labelled = specs if self.config.model == "multigate" else specs[:1]
        return {
            spec.kind: get_label_map(
                label_map_name(self.config.model, spec.kind, self.config.label_map)
            )
            for spec in labelled
        }

    def emotion_labels(self, utterances, kinds, label_maps):
        """`(emotion, language_classes)`: emotion label per utterance (-1 = none)."""
        config = self.config
        if config.model == "multigate":
            emotion, language_classes = language_labels(utterances, kinds, label_maps)
            for language, names in language_classes.items():
                self.log(f"  language {language}: classes {names}")
            return emotion, language_classes
        label_map = label_maps[kinds[0]]
        emotion = label_map.encode(utterances).astype(np.int32)
        unmapped = label_map.unmapped_counts(utterances)
        if unmapped:
            use = ("left out, as paper 001" if config.model == "kim_mtl"
                   else "no emotion label, auxiliary tasks only")
            self.log(f"  labels outside {label_map.name} ({use}): {unmapped}")
        return emotion, None

    def test_fold(self, utterances, emotion):
        """The fold of the held-out test speaker: its validation speakers and training side."""
        from ser_keras.data.splits import leave_one_speaker_out

        config = self.config
        primary_corpus = utterances[0].corpus
        folds = leave_one_speaker_out(
            utterances,
            test_corpus=primary_corpus,
            validation="speaker" if config.objective == "validation_speakers" else "none",
            num_validation_speakers=config.validation_speakers,
            seed=config.seed,
            labels=emotion,
        )
        fold = folds[0]
        if config.test_speaker is not None:
            wanted = [f for f in folds if config.test_speaker in
                      {s.split(":", 1)[-1] for s in f.test_speakers} | set(f.test_speakers)]
            if not wanted:
                available = sorted(s for f in folds for s in f.test_speakers)
                raise ConfigError(
                    "test_speaker",
                    f"must be a labelled speaker of {primary_corpus}; available: {available}. "
                    f"Received: {config.test_speaker!r}",
                )
            fold = wanted[0]
        if config.model == "multigate" and config.objective == "validation_speakers":
            fold = validate_every_language(
                utterances, fold, emotion, config.validation_speakers, config.seed, log=self.log
            )
        return fold

    def validation_parts(self, utterances, emotion, fold):
        """`(train, validation)` utterance indices of each validation split of the search."""
        config = self.config
        if config.objective == "validation_speakers":
            self.log(f"Test speaker(s), never searched on: {list(fold.test_speakers)}; "
                     f"validation speaker(s): {list(fold.validation_speakers)}")
            return [(fold.train, fold.validation)]
        from ser_keras.tuning import search

        pool = np.sort(np.concatenate([fold.train, fold.validation]))
        # multigate: every corpus's speakers validate (a head per language).
        cv = search.speaker_validation_folds(
            utterances, pool, config.cv_folds,
            test_corpus=None if config.model == "multigate" else utterances[0].corpus,
            labels=emotion, seed=config.seed,
        )
        self.log(f"Test speaker(s), never searched on: {list(fold.test_speakers)}; validation "
                 f"folds: {[list(f.validation_speakers) for f in cv]}")
        return [(f.train, f.validation) for f in cv]

    def features(self, waveforms, needed):
        """`(inputs, row_utterance)`: model inputs of the `needed` utterances.

        The AAE and Kim et al.'s model take fixed-length segments (several
        rows per utterance); the others one row per utterance.
        """
        from ser_keras.data.pipeline import compute_features
        from ser_keras.features.logmel import LogMel

        config = self.config
        family = FAMILIES[config.model]
        model_preset = config.model_preset
        segment_length = None
        if config.model == "aae_mtl":
            from ser_keras.models.aae_mtl import get_preset

            architecture = get_preset(model_preset)
            frontend = LogMel.from_preset("latif", num_mels=architecture["num_mels"])
            segment_length = int(architecture["num_frames"])
            description = f"{family['frontend']} log-mel features"
        elif config.model == "kim_mtl":
            from ser_keras.features.frame_features import FrameFeatures

            frontend = FrameFeatures.from_preset(family["frontend"])
            segment_length = int(family["chunk_frames"])
            description = f"{frontend.num_features} frame features"
        elif config.model == "multigate":
            from ser_keras.models.multigate import PRESETS as MULTIGATE_PRESETS

            architecture = dict(MULTIGATE_PRESETS["wang"])
            architecture.update(
                MULTIGATE_PRESETS[model_preset] if isinstance(model_preset, str) else model_preset
            )
            frontend = LogMel.from_preset(
                family["frontend"], num_frames=architecture["num_frames"],
                num_mels=architecture["num_mels"],
            )
            description = f"{family['frontend']} log-mel features"
        else:
            frontend = LogMel.from_preset(family["frontend"])
            description = f"{family['frontend']} log-mel features"
        self.log(f"Computing {description} for {needed.size} utterances ...")
        features = compute_features(frontend, [waveforms[i] for i in needed],
                                    batch_size=16 if config.model == "kim_mtl" else 32,
                                    progress=not config.quiet)
        if segment_length is None:
            return features, needed
        from ser_keras.features.framing import segment_features

        segments, owner = segment_features(
            features, segment_length=segment_length, pad_value=frontend.pad_value,
        )
        self.log(f"  {len(segments)} segments of {segment_length} frames")
        return segments, needed[owner]

    def prepare(self) -> SearchData:
        """Loads the data, holds out the test speaker and builds what the tuner sees.

        Sets `search_data` and `hypermodel`.

        Raises:
            SpeakerLeakageError: A validation split that is not
                speaker-independent (`check_search_split`).
        """
        config = self.config
        specs, data_description = self.corpus_specs()
        label_maps = self.label_maps(specs)
        if config.model == "multigate":
            self.label_map_description = config.label_map or "per corpus"
            self.log(f"Data: {data_description}; emotion classes per language "
                     f"({self.label_map_description} label maps)")
        else:
            label_map = label_maps[specs[0].kind]
            self.label_map_description = label_map.name
            self.log(f"Data: {data_description}; emotion classes ({label_map.name}): "
                     f"{list(label_map.classes)}")
        self.log(
            f"Search: {config.tuner}, at most {config.max_trials} trials of {config.model} "
            f"(architecture preset {config.model_preset!r}), {config.epochs} epochs, batch "
            f"{config.batch_size}, objective {config.objective}"
            + (f", patience {config.patience}" if config.patience else "")
            + reduced_note(config.preset == "quick")
        )
        utterances, waveforms, self.skipped, kinds = self.load(specs)
        self.data_description = data_description
        emotion, language_classes = self.emotion_labels(utterances, kinds, label_maps)

        # === The held-out test speaker and the validation splits ===
        fold = self.test_fold(utterances, emotion)
        parts = self.validation_parts(utterances, emotion, fold)
        training_rows = np.unique(np.concatenate([train for train, _ in parts]))
        labels, classes = task_labels(
            config.model, utterances, emotion, training_rows, language_classes,
            single_task=config.single_task, log=self.log,
        )
        # Utterances that carry no label of any task teach nothing.
        useful = np.zeros(len(utterances), dtype=bool)
        for values in labels.values():
            useful |= values >= 0
        if config.model == "kim_mtl":
            # Only utterances of the emotion classes, as apps.train_gender_naturalness (paper 001).
            useful &= emotion >= 0
        parts = [(train[useful[train]], validation[emotion[validation] >= 0])
                 for train, validation in parts]
        manifests = []
        for number, (train, validation) in enumerate(parts):
            if train.size == 0 or validation.size == 0:
                raise ValueError(
                    f"Validation part {number} has {train.size} training and {validation.size} "
                    "validation utterances with labels; give more data or speakers."
                )
            manifest = split_manifest(utterances, train, validation, fold.test)
            check_search_split(manifest, f"validation part {number}")
            manifests.append(manifest)

        # === Features ===
        needed = np.unique(np.concatenate([np.concatenate(part) for part in parts]))
        inputs, row_utterance = self.features(waveforms, needed)
        row_of = {}
        for row, utterance in enumerate(row_utterance):
            row_of.setdefault(int(utterance), []).append(row)

        def rows(utterance_indices):
            return np.array(
                sorted(r for i in utterance_indices for r in row_of[int(i)]), dtype=np.int64
            )

        row_labels = {task: values[row_utterance] for task, values in labels.items()}
        from ser_keras.tuning.hypermodels import build_hypermodel

        num_emotions = None if config.model == "multigate" else label_maps[kinds[0]].num_classes
        self.hypermodel = build_hypermodel(
            config.model, preset=config.model_preset, input_shape=inputs.shape[1:],
            num_emotions=num_emotions, classes=classes, language_classes=language_classes,
            seed=config.seed,
        )

        # === What the tuner sees ===
        fit_arguments = {}
        if config.objective == "validation_speakers":
            (train, validation), = parts
            train_rows, validation_rows = rows(train), rows(validation)
            fit_arguments["validation_data"] = (
                inputs[validation_rows],
                self.hypermodel.mask_validation_labels(
                    {t: v[validation_rows] for t, v in row_labels.items()}
                ),
            )
            x = inputs[train_rows]
            y = {task: values[train_rows] for task, values in row_labels.items()}
        else:
            pool_rows = rows(needed)
            position = {row: number for number, row in enumerate(pool_rows)}
            fit_arguments["validation_folds"] = [
                (
                    np.array([position[r] for r in rows(train)], dtype=np.int64),
                    np.array([position[r] for r in rows(validation)], dtype=np.int64),
                )
                for train, validation in parts
            ]
            x = inputs[pool_rows]
            y = {task: values[pool_rows] for task, values in row_labels.items()}
        self.log(f"Tasks: {', '.join(row_labels)}; {len(x)} training samples"
                 + (f" in {len(parts)} folds" if config.objective == "speaker_folds" else ""))
        self.search_data = SearchData(
            utterances=utterances, test_speakers=tuple(fold.test_speakers),
            test=np.asarray(fold.test, dtype=np.int64), parts=parts, manifests=manifests,
            inputs=inputs, row_utterance=np.asarray(row_utterance), row_labels=row_labels,
            x=x, y=y, fit_arguments=fit_arguments,
        )
        return self.search_data

    def callbacks(self) -> list:
        """Early stopping on `val_emotion_ua` (the AAE: restore the best and halve the rate)."""
        if not self.config.patience:
            return []
        if self.config.model == "aae_mtl":
            from ser_keras.training.callbacks import RestoreBestAndHalveLearningRate

            return [RestoreBestAndHalveLearningRate(patience=self.config.patience)]
        import keras

        return [keras.callbacks.EarlyStopping(
            monitor="val_emotion_ua", mode="max", patience=self.config.patience
        )]

    # ------------------------------------------------------------- run

    def run(self) -> ExperimentResult:
        """Runs the search; writes the trials and the best hyperparameters.

        Returns:
            An `ExperimentResult` whose `results` are `best_hyperparameters.json`'s.

        Raises:
            ValueError: The project folder holds a search and `resume` is off.
            TrialFailureError: A trial did not complete (the trials are
                written first).
        """
        import keras

        from ser_keras.cli import worker_outputs
        from ser_keras.evaluation import reports
        from ser_keras.training.runner import RunState
        from ser_keras.tuning import search

        config = self.config
        # MultiWorkerMirroredStrategy must exist before other TensorFlow
        # operations run; the tuner's `distribution_strategy` is None for "none".
        strategy = self.start_strategy()
        self.check_batch_size(config.batch_size)
        # On a multi-worker cluster every worker runs the same trials; only the
        # chief's project folder holds the results, the others get their own.
        self.outputs = worker_outputs(config.directory, strategy)
        directory, chief = self.outputs.out_dir, self.outputs.is_chief
        project_name = config.project_name or config.model
        project_dir = directory / project_name
        if project_dir.exists() and not config.resume:
            raise ValueError(
                f"{project_dir} already holds a search. Pass --resume to continue it, or choose "
                "another --directory or --project-name."
            )
        data = self.prepare()
        self.state = RunState(
            project_dir,
            config.run_configuration(
                self.data_description, self.label_map_description, data.test_speakers,
                len(data.utterances),
            ),
            resume=config.resume,
        )
        reports.write_json_atomic(self.out_dir / "skipped.json", self.skipped)
        keras.utils.set_random_seed(config.seed)
        tuner = search.make_tuner(
            config.tuner,
            self.hypermodel,
            max_trials=config.max_trials,
            directory=directory,
            project_name=project_name,
            max_epochs=config.epochs,
            hyperband_factor=config.hyperband_factor,
            seed=config.seed,
            overwrite=False,
            distribution_strategy=strategy,
        )
        search_error = None
        try:
            tuner.search(
                data.x, data.y, epochs=config.epochs, batch_size=config.batch_size,
                callbacks=self.callbacks(), verbose=0 if config.quiet else 2,
                **data.fit_arguments,
            )
        except RuntimeError as error:  # KerasTuner gives up after consecutive failed trials
            search_error = error
        rows = search.trial_table(tuner)
        if chief:
            self.log("\n" + search.write_trials(self.out_dir, rows))
        if search_error is not None:
            raise search.TrialFailureError(str(search_error))
        search.raise_for_failed_trials(tuner)

        best = search.best_trial(tuner)
        best_values = {k: v for k, v in best.hyperparameters.values.items()
                       if not k.startswith("tuner/")}
        num_parts = len(data.parts)
        result = {
            "model": config.model,
            "objective": "val_emotion_ua" + (
                f" (mean over {num_parts} speaker folds)"
                if config.objective == "speaker_folds" else ""
            ),
            "score": 100 * best.score,
            "units": "percent",
            "trial_id": best.trial_id,
            "hyperparameters": best_values,
            "model_arguments": self.hypermodel.model_arguments(best.hyperparameters.copy()),
            "model_preset": config.model_preset,
            "test_speakers": list(data.test_speakers),
            "num_trials": len(rows),
            "elapsed_seconds": self.elapsed_seconds(),
            "splits": data.manifests,
        }
        if chief:
            reports.write_json_atomic(self.out_dir / "best_hyperparameters.json", result)
        self.log(f"\nBest trial {best.trial_id}: val_emotion_ua {100 * best.score:.2f} %")
        for name, value in best_values.items():
            self.log(f"  {name} = {value}")
        self.log(f"\nResults in {self.out_dir} ({self.elapsed_seconds():.0f} s).")
        return ExperimentResult(result, self.out_dir)


__all__ = [
    "FAMILIES",
    "MODELS",
    "OBJECTIVES",
    "PRESETS",
    "TUNERS",
    "SearchData",
    "TuneConfig",
    "TuneSearch",
    "check_search_split",
    "class_index",
    "family_preset",
    "label_map_name",
    "language_labels",
    "model_label_map",
    "task_labels",
    "validate_every_language",
]
