"""Paper 003: multilingual SER with multi-gating and NAS (Wang et al.), Tables 3-4, Figure 4.

All languages are trained at once in the five multi-domain variants of
Table 3 (Base, Shared-Bottom, OMoE, MMoE and the paper's multi-gating model
with its hard-concrete NAS module), each on the same per-language splits;
the auxiliary-loss ablation of Table 4 trains single-language models (or the
multi-gating model) with and without the contrastive loss; the mean gate
weights per language and expert give Figure 4(b). Each corpus's language
comes from its loader (EMO-DB de, RAVDESS en, URDU ur, TurEV-DB tr, ...);
corpora of one language form one domain whose label set is the union of
their label maps. Without corpora, synthetic eSpeak NG corpora are generated
(once, cached): a SAVEE-shaped English one and an EMO-DB-shaped German one.

    from ser_keras.experiments import MultilingualGating, MultilingualGatingConfig
    result = MultilingualGating(MultilingualGatingConfig(epochs=2, variants=("multigate",))).run()
    result.results["table3"]["multigate"]["de"]["ua"]

Protocol (Section 3): per language, a random 20 % test split and 20 % of the
rest for validation, stratified by emotion (`split="speaker"` holds out
whole speakers instead: `ser_keras.data.splits.language_split`); the
checkpoint with the best mean validation UA over the languages is scored
once on the test part; every configuration is repeated (`repeats`, the
paper's 5) with seeds `seed + repeat` and the mean is reported. Table cells
are UA/WA in percent (the paper gives fractions). The random split is the paper's and
is not speaker-independent by design: its folds are refused only when a test
utterance is also trained or validated on, and `results.json` says which
speakers each part holds (`folds`).

The training recipe (`ser_keras.training.recipe`; none of it is in the
paper) acts on the log-mel input, from which the model computes its logmel,
MFCC and statistics experts: its normalisation z-normalises every band of the
padded log-mel features of every row, before the splits are cut, and
SpecAugment masks them in the training batches. The utterance-level experts
(eGeMAPS functionals, `embedding` files) are neither normalised by the recipe
nor masked: they keep their z-normalisation over the training rows, as the
recipe's normalisation is of frames of bands (and the export, which serves it,
takes no such expert), and a functional summarises the whole utterance, so
no frame or band of it can be masked. The recipe's optimizer, learning-rate
schedule and label smoothing recompile the model (a `MultiTaskModel`). It has
no batch normalisation, so `recalibrate_batch_norm` finds nothing to
recalibrate (each fold's `result.json` records 0 layers).

Reference:
    Z. Wang, Q. Meng, H. Lan, X. Zhang, K. Guo, A. Gupta, "Multilingual
    Speech Emotion Recognition With Multi-Gating Mechanism and Neural
    Architecture Search".
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import ClassVar

import numpy as np

from ser_keras.cli import reduced_note
from ser_keras.data.splits import LANGUAGE_SPLIT_MODES
from ser_keras.experiments import config as config_lib
from ser_keras.experiments.base import BestModel, Experiment, ExperimentResult
from ser_keras.experiments.config import ConfigError, ExperimentConfig, preset_field

# The multi-domain variants of Table 3 in its row order, and the tables' row
# titles ("single" is Table 4's single-language model).
TABLE3_VARIANTS = ("base", "shared_bottom", "omoe", "mmoe", "multigate")
VARIANT_TITLES = {
    "single": "Single language",
    "base": "Base",
    "shared_bottom": "SB",
    "omoe": "OMoE",
    "mmoe": "MMoE",
    "multigate": "Ours",
}
# The model's internal experts (`ser_keras.models.multigate.EXPERT_KINDS`,
# named here because that module imports TensorFlow; a test checks that they
# agree) and the experts computed outside the model.
MODEL_EXPERTS = ("logmel", "mfcc", "statistics")
EMBEDDING_EXPERTS = ("egemaps",)
ABLATIONS = ("single", "multigate", "none")
# Names an `embedding` cannot take: the model's inputs and experts.
RESERVED_NAMES = ("features",) + MODEL_EXPERTS + EMBEDDING_EXPERTS

# Published figures (Table 3 and Table 4, UA/WA) on IEMOCAP (en), EMO-DB (de)
# and CaFE (fr), shown next to ours for orientation only.
PAPER_TABLE3 = {
    "base": {"en": (0.3333, 0.6459), "de": (0.6403, 0.8586), "fr": (0.6860, 0.7646)},
    "shared_bottom": {"en": (0.6507, 0.6570), "de": (0.8628, 0.8702), "fr": (0.8538, 0.8410)},
    "omoe": {"en": (0.6723, 0.6722), "de": (0.9398, 0.9443), "fr": (0.8580, 0.8417)},
    "mmoe": {"en": (0.6883, 0.6815), "de": (0.9419, 0.9443), "fr": (0.8638, 0.8415)},
    "multigate": {"en": (0.7045, 0.7126), "de": (0.9578, 0.9536), "fr": (0.8713, 0.8514)},
}
PAPER_TABLE4 = {
    "with_aux": {"en": (0.7434, 0.7331), "de": (0.9556, 0.9536), "fr": (0.9070, 0.8910)},
    "without_aux": {"en": (0.7213, 0.7219), "de": (0.9493, 0.9536), "fr": (0.8935, 0.8712)},
}

# "quick" is a REDUCED configuration that makes the default run finish in
# minutes on a 2-core CPU (printed at start so nobody mistakes it for the
# paper's). "paper": the paper's sizes and its 20 epochs (Section 5.1; the
# batch size of 64 is ours, the paper states none) and 5 repeats. "cpu": the
# CPU-sized model with the "cpu" training recipe (ser_keras.training.recipe),
# trained longer than "quick" (whose 12 epochs under-train it: every best
# epoch was one of the last three) over 3 repeats (README: run times).
PRESETS = {
    "quick": {
        "model_preset": "wang_cpu",
        "epochs": 12,
        "batch_size": 32,
        "repeats": 1,
        "ablation": "multigate",
        "synthetic_per_emotion": 5,
        "synthetic_emodb_per_emotion": 2,
    },
    "paper": {
        "model_preset": "wang",
        "epochs": 20,
        "batch_size": 64,
        "repeats": 5,
        "ablation": "single",
        "synthetic_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
    "cpu": {
        "model_preset": "wang_cpu",
        "recipe": "cpu",
        "epochs": 30,
        "batch_size": 32,
        "repeats": 3,
        "ablation": "multigate",
        "synthetic_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
}


def parse_embedding_files(entries) -> dict[str, pathlib.Path]:
    """`{name: path}` of `NAME=FILE.npz` entries, each file checked to exist.

    Raises:
        ConfigError: (field `embedding`) a malformed entry, a missing file, or
            a name that is repeated or one of `RESERVED_NAMES`.
    """
    files = {}
    for text in entries or ():
        name, separator, path = str(text).partition("=")
        name = name.strip()
        if not separator or not name or not path:
            raise ConfigError("embedding", f"takes NAME=FILE.npz. Received: {text!r}")
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise ConfigError("embedding", f"{name}: file not found. Received: {str(path)!r}")
        if name in files or name in RESERVED_NAMES:
            raise ConfigError("embedding", f"names {name!r}, which is taken or repeated.")
        files[name] = path
    return files


@dataclasses.dataclass
class MultilingualGatingConfig(ExperimentConfig):
    """Configuration of `MultilingualGating`.

    Args:
        corpus: Labelled corpora, `KIND:DIR` each (the loader gives the
            language); None: synthetic English (SAVEE layout) and German
            (EMO-DB layout) corpora.
        variants: Table 3 variants to train, from `TABLE3_VARIANTS`.
        ablation: Table 4's auxiliary-loss ablation (`ABLATIONS`): "single"
            trains single-language models with and without the contrastive
            loss (the paper's protocol); "multigate" retrains the multi-gating
            model without it; "none" skips it.
        experts: Feature experts, from `MODEL_EXPERTS` and
            `EMBEDDING_EXPERTS` ("egemaps": eGeMAPS functionals, skipped with
            a message where openSMILE is not installed).
        gate_selector: The expert whose vector feeds the softmax gates, or
            "concat"; None: the model preset's ("statistics") when that
            expert is used, else "concat".
        embedding: Utterance-level embeddings computed elsewhere, as extra
            experts: `NAME=FILE.npz` entries, each an .npz with `paths`
            (audio file paths) and `embeddings` `[N, dim]`.
        model_preset: `MultiGatingSER` preset.
        epochs: Epochs per training run.
        batch_size: Global batch size.
        repeats: Repeats of every configuration (repeat r: seed + r).
        split: "random" (the paper's 20 % test split per language, stratified
            by emotion) or "speaker" (about 20 % of each language's speakers
            tested).
        synthetic_per_emotion: Synthetic English size (utterances per emotion
            and speaker).
        synthetic_emodb_per_emotion: Synthetic German size.
        **kwargs: `ExperimentConfig`'s options (`preset`, `seed`, `out`, ...).
    """

    PRESETS: ClassVar[dict] = PRESETS
    DEFAULT_OUT: ClassVar[str] = "runs/train_multilingual_gating"

    corpus: tuple[str, ...] | None = None
    variants: tuple[str, ...] = TABLE3_VARIANTS
    ablation: str = preset_field()
    experts: tuple[str, ...] = MODEL_EXPERTS
    gate_selector: str | None = None
    embedding: tuple[str, ...] = ()
    model_preset: str = preset_field()
    epochs: int = preset_field()
    batch_size: int = preset_field()
    repeats: int = preset_field()
    split: str = "random"
    synthetic_per_emotion: int = preset_field()
    synthetic_emodb_per_emotion: int = preset_field()

    def validate(self) -> None:
        super().validate()
        self.variants = config_lib.check_names("variants", self.variants, TABLE3_VARIANTS)
        config_lib.check_choice("ablation", self.ablation, ABLATIONS)
        self.experts = config_lib.check_names(
            "experts", self.experts, MODEL_EXPERTS + EMBEDDING_EXPERTS
        )
        self.embedding = tuple(self.embedding or ())
        self._embedding_files = parse_embedding_files(self.embedding)
        if self.gate_selector is not None:
            choices = ("concat",) + self.experts + tuple(self._embedding_files)
            config_lib.check_choice("gate_selector", self.gate_selector, choices)
        config_lib.check_integer_at_least("epochs", self.epochs, 1)
        config_lib.check_integer_at_least("batch_size", self.batch_size, 1)
        config_lib.check_integer_at_least("repeats", self.repeats, 1)
        config_lib.check_choice("split", self.split, LANGUAGE_SPLIT_MODES)
        config_lib.check_integer_at_least("synthetic_per_emotion", self.synthetic_per_emotion, 2)
        config_lib.check_integer_at_least(
            "synthetic_emodb_per_emotion", self.synthetic_emodb_per_emotion, 1
        )
        from ser_keras.cli import corpus_specs

        # Parsed (and the folders checked) now, before any data is read.
        if self.corpus is not None:
            self.corpus = tuple(self.corpus)
        self._specs = corpus_specs(self.corpus, "--corpus") if self.corpus else None

    @property
    def embedding_files(self) -> dict[str, pathlib.Path]:
        """`{name: path}` of the `embedding` entries."""
        return dict(self._embedding_files)


# ------------------------------------------------------------- the data


def corpus_label_map(kind: str, utterances, where: str = ""):
    """The label map of a corpus: its kind's default, else the labels it carries.

    Args:
        kind: The corpus kind.
        utterances: Its utterances (their labels name the classes of a kind
            without a default map, e.g. a manifest).
        where: The corpus, for the error message.

    Raises:
        ValueError: A corpus without a default map and without labels.
    """
    from ser_keras.corpora.labels import DEFAULT_LABEL_MAPS, LabelMap, default_label_map

    if kind in DEFAULT_LABEL_MAPS:
        return default_label_map(kind)
    labels = sorted({u.label for u in utterances if u.label is not None})
    if not labels:
        raise ValueError(
            f"{where or kind}: no emotion labels; this experiment needs labelled corpora."
        )
    return LabelMap(f"{kind}_labels", tuple(labels))


def load_embedding_file(name: str, path, utterances):
    """One embedding expert's vectors, matched to the utterances by audio path.

    Args:
        name: The embedding's name (for messages).
        path: An .npz with `paths` (audio file paths) and `embeddings`
            `[len(paths), dim]`.
        utterances: The utterances to match.

    Returns:
        `(array, keep, skipped)`: float32 `[len(utterances), dim]` (zeros
        where missing), the bool mask of utterances with a finite vector, and
        a `SkippedFile` for each one without.

    Raises:
        ValueError: The file lacks the arrays or their shapes disagree.
    """
    from ser_keras.corpora.records import SkippedFile

    with np.load(path, allow_pickle=False) as data:
        if "paths" not in data or "embeddings" not in data:
            raise ValueError(
                f"embedding {name}: {path} must hold arrays 'paths' and 'embeddings'; "
                f"it holds {sorted(data.files)}."
            )
        paths = [str(pathlib.Path(p).expanduser().resolve()) for p in data["paths"].tolist()]
        vectors = np.asarray(data["embeddings"], dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(paths):
        raise ValueError(
            f"embedding {name}: 'embeddings' must be [len(paths), dim]; received "
            f"{vectors.shape} for {len(paths)} paths."
        )
    lookup = {p: i for i, p in enumerate(paths)}
    array = np.zeros((len(utterances), vectors.shape[1]), dtype=np.float32)
    keep = np.zeros(len(utterances), dtype=bool)
    skipped = []
    for position, utterance in enumerate(utterances):
        row = lookup.get(str(pathlib.Path(utterance.path).resolve()))
        if row is None or not np.all(np.isfinite(vectors[row])):
            reason = "no" if row is None else "a non-finite"
            skipped.append(SkippedFile(str(utterance.path), f"{reason} {name} embedding in {path}"))
        else:
            array[position] = vectors[row]
            keep[position] = True
    return array, keep, skipped


@dataclasses.dataclass
class MultilingualData:
    """The labelled utterances of every language, their features and labels.

    Attributes:
        description: The data, in words.
        utterances: Every usable utterance.
        corpus_names: Each utterance's corpus (`kind:DIR`).
        languages: The languages, in order of first appearance.
        class_names: Language -> its classes (the union of its corpora's maps).
        language_of: Each utterance's language (object array).
        language_labels: Language -> int32 label per utterance in that
            language's classes (-1 for other languages).
        union_labels: int32 label per utterance in `union_of_classes` (the
            shared head of "base").
        union: The union of the languages' classes, sorted.
        features: Log-mel features `[N, frames, mels]`.
        embeddings: Embedding expert name -> `[N, dim]` (unstandardised).
        frontend: The log-mel front-end.
        skipped: For `skipped.json`.
    """

    description: str
    utterances: list
    corpus_names: list
    languages: list
    class_names: dict
    language_of: np.ndarray
    language_labels: dict
    union_labels: np.ndarray
    union: tuple
    features: np.ndarray
    embeddings: dict
    frontend: object
    skipped: dict

    def rows_of(self, language: str) -> np.ndarray:
        """Row indices of a language's utterances."""
        return np.flatnonzero(self.language_of == language)

    def summary(self, language: str) -> dict:
        """A language's classes, utterance count and corpora (`results.json`'s `languages`)."""
        rows = self.rows_of(language)
        return {
            "class_names": self.class_names[language],
            "num_utterances": int(rows.size),
            "corpora": sorted({self.corpus_names[row] for row in rows}),
        }

    def inputs(self, indices, statistics_from):
        """Model inputs of rows: the features, or a dict with the standardised embeddings.

        Every embedding is standardised with the mean and deviation of the
        rows `statistics_from` (the training rows).
        """
        if not self.embeddings:
            return self.features[indices]
        result = {"features": self.features[indices]}
        for name, array in self.embeddings.items():
            mean = array[statistics_from].mean(axis=0)
            scale = array[statistics_from].std(axis=0)
            scale[scale < 1e-8] = 1.0
            result[name] = ((array[indices] - mean) / scale).astype(np.float32)
        return result

    def labels(self, indices, variant: str, languages) -> dict:
        """The label dict of rows for a variant's heads (-1: another language's row)."""
        from ser_keras.models import multigate

        if variant == "base":
            return {multigate.SHARED_TASK: self.union_labels[indices]}
        return {
            multigate.task_name(language): self.language_labels[language][indices]
            for language in languages
        }


def features_view_augmentation(augment):
    """An augmentation of dict inputs that augments their `"features"` view only.

    Args:
        augment: A `(features, seed) -> features` augmentation of
            `[batch, frames, bands]` batches, e.g. `SpecAugment`.

    Returns:
        A `(inputs, seed) -> inputs` augmentation for `make_dataset` (its
        `augment`): the other views pass unchanged.
    """

    def apply(inputs, seed):
        return {**inputs, "features": augment(inputs["features"], seed)}

    return apply


def model_label_names(variant: str, class_names: dict) -> dict:
    """Task -> class names of a variant's heads."""
    from ser_keras.models import multigate

    if variant == "base":
        return {multigate.SHARED_TASK: list(multigate.union_of_classes(class_names))}
    return {multigate.task_name(language): list(names) for language, names in class_names.items()}


# ---------------------------------------------------------- the scores


def score_languages(details, variant, languages, test, data: MultilingualData) -> dict:
    """UA/WA per language on the test rows, and the mean gate weights per language.

    Args:
        details: `MultiGatingSER.predict_details` of the test rows.
        variant: The model's variant.
        languages: The languages the model was trained on.
        test: The test rows.
        data: The experiment's data.

    Returns:
        `{"languages": {language: {ua, wa, macro_f1, num_test, confusion,
        class_names}}, "gates": {language: [weight per expert]}, "units":
        "percent"}`; UA, WA and macro-F1 in percent.
    """
    from ser_keras.evaluation.metrics import summarize
    from ser_keras.models import multigate

    record = {"languages": {}, "gates": {}, "units": "percent"}
    test_languages = data.language_of[test]
    for language in languages:
        rows = test_languages == language
        if variant == "base":
            task = multigate.SHARED_TASK
            y_true, names = data.union_labels[test][rows], list(data.union)
        else:
            task = multigate.task_name(language)
            y_true = data.language_labels[language][test][rows]
            names = data.class_names[language]
        probabilities = np.asarray(details["probabilities"][task])[rows]
        summary = summarize(y_true, probabilities, names)
        record["languages"][language] = {
            "ua": 100 * summary["ua"],
            "wa": 100 * summary["wa"],
            "macro_f1": 100 * summary["macro_f1"],
            "num_test": summary["num_samples"],
            "confusion": summary["confusion"],
            "class_names": names,
        }
        gates = details.get("gates") or {}
        if task in gates:
            record["gates"][language] = np.asarray(gates[task])[rows].mean(axis=0).tolist()
    return record


def record_in_percent(record: dict) -> dict:
    """A stored `languages.json` record with its scores in percent.

    Records written before scores were stored in percent have no `units`
    key and hold fractions; they are converted.

    Args:
        record: The content of a `languages.json`.

    Returns:
        The record, its UA, WA, macro-F1 and best validation mean UA in
        percent, with `"units": "percent"`.

    Raises:
        ValueError: If `units` is neither absent nor `"percent"`.
    """
    units = record.get("units")
    if units == "percent":
        return record
    if units is not None:
        raise ValueError(f"`units` of a languages.json must be 'percent'; received {units!r}.")
    record = {**record, "units": "percent"}
    record["languages"] = {
        language: {
            **entry,
            **{key: 100 * entry[key] for key in ("ua", "wa", "macro_f1") if key in entry},
        }
        for language, entry in record["languages"].items()
    }
    if record.get("best_validation_mean_ua") is not None:
        record["best_validation_mean_ua"] = 100 * record["best_validation_mean_ua"]
    return record


def aggregate_repeats(records, languages) -> dict:
    """Mean and spread over repeats of UA and WA per language (a Table 3/4 row)."""
    from ser_keras.evaluation.metrics import mean_and_spread

    table = {}
    for language in languages:
        uas = [r["languages"][language]["ua"] for r in records]
        was = [r["languages"][language]["wa"] for r in records]
        ua, ua_std = mean_and_spread(uas)
        wa, wa_std = mean_and_spread(was)
        table[language] = {
            "ua": ua,
            "wa": wa,
            "ua_std": ua_std,
            "wa_std": wa_std,
            "repeats": [{"ua": u, "wa": w} for u, w in zip(uas, was, strict=True)],
        }
    return table


def mean_gate_weights(records, languages) -> dict:
    """Language -> {expert: mean gate weight over repeats} (Figure 4(b))."""
    gates = {}
    for language in languages:
        values = [r["gates"][language] for r in records if language in r.get("gates", {})]
        if values:
            names = records[0]["expert_names"]
            gates[language] = dict(zip(names, np.mean(values, axis=0).tolist(), strict=True))
    return gates


def mean_connections(records, languages) -> dict:
    """Language -> the NAS connection gates `xi` averaged over repeats."""
    return {
        language: np.mean([r["connections"][language] for r in records], axis=0).tolist()
        for language in languages
        if all(language in r.get("connections", {}) for r in records)
    }


def table_cell(entry) -> str:
    """`"UA/WA"` of a table entry (`"n/a"` for none)."""
    if entry is None:
        return "n/a"
    return f"{entry['ua']:.2f}/{entry['wa']:.2f}"


# ----------------------------------------------------------- experiment


class MultilingualGating(Experiment):
    """Paper 003's protocol: Table 3's variants and Table 4's ablation x repeats.

    Every setting (a Table 3 variant, or an ablation model) is trained once
    per repeat on that repeat's split (the same rows for every setting); the
    checkpoint with the best mean validation UA over the languages is scored
    on the test rows. The model with the best validation score over every
    setting trained on all languages (Table 3's variants and the multi-gating
    ablation) and every repeat is exported as `multilingual_<variant>`; the
    single-language models of the ablation are not candidates.

    Args:
        config: A `MultilingualGatingConfig` (None: the `quick` preset with
            `overrides`).
        **overrides: Configuration fields.

    Reference:
        Wang et al., Sections 3 and 5 (Tables 3-4, Figure 4).
    """

    config_class: ClassVar[type] = MultilingualGatingConfig
    app_name: ClassVar[str] = "train_multilingual_gating"
    # The export is named after the exported variant: `multilingual_<variant>`.
    export_name: ClassVar[str] = "multilingual_multigate"

    # ----------------------------------------------------------- setup

    def model_preset(self) -> dict:
        """The `MultiGatingSER` preset's arguments."""
        from ser_keras.models import multigate

        if self.config.model_preset not in multigate.PRESETS:
            raise ConfigError(
                "model_preset",
                f"must be one of {', '.join(multigate.PRESETS)}. "
                f"Received: {self.config.model_preset!r}",
            )
        return dict(multigate.PRESETS[self.config.model_preset])

    def resolve_experts(self, model_preset: dict):
        """`(internal experts, use eGeMAPS, gate selector)` available on this machine.

        Raises:
            ConfigError: No expert is left, or the gate selector names an
                expert that is not available.
        """
        from ser_keras.features.opensmile_functionals import opensmile_available

        config = self.config
        internal = tuple(e for e in config.experts if e in MODEL_EXPERTS)
        use_egemaps = "egemaps" in config.experts
        if use_egemaps and not opensmile_available():
            self.log(
                "Skipping the 'egemaps' expert: the opensmile package is not installed "
                "(pip install opensmile to use it)."
            )
            use_egemaps = False
        embedding_names = tuple(config.embedding_files)
        if not internal and not use_egemaps and not embedding_names:
            raise ConfigError(
                "experts",
                f"leaves no feature expert to train with. Received: {','.join(config.experts)}",
            )
        available = set(internal) | set(embedding_names) | ({"egemaps"} if use_egemaps else set())
        gate_selector = config.gate_selector or model_preset["gate_selector"]
        if config.gate_selector is None and gate_selector not in available:
            gate_selector = "concat"
        elif gate_selector != "concat" and gate_selector not in available:
            raise ConfigError(
                "gate_selector",
                f"must be 'concat' or one of the experts in use {sorted(available)}. "
                f"Received: {gate_selector!r}",
            )
        return internal, use_egemaps, gate_selector

    def corpus_specs(self):
        """The corpora's specs and a description of the data."""
        config = self.config
        if config._specs:
            return config._specs, " + ".join(
                f"{spec.kind} at {spec.directory}" for spec in config._specs
            )
        from ser_keras.cli import synthetic_corpus_spec

        root = self.synthetic_root()
        specs = [
            synthetic_corpus_spec(
                root, "savee", seed=config.seed, per_emotion=config.synthetic_per_emotion
            ),
            synthetic_corpus_spec(
                root, "emodb", seed=config.seed, per_emotion=config.synthetic_emodb_per_emotion
            ),
        ]
        return specs, "synthetic (eSpeak NG) SAVEE-layout English + EMO-DB-layout German"

    def load_data(self, specs, description, model_preset, use_egemaps) -> MultilingualData:
        """Loads the corpora, groups them by language, computes the features."""
        from ser_keras.data.pipeline import compute_features
        from ser_keras.features.logmel import LogMel
        from ser_keras.models import multigate

        utterances, waveforms, label_texts, corpus_names = [], [], [], []
        skipped_report = {}
        language_maps = {}
        sample_rate = None
        for spec in specs:
            name = f"{spec.kind}:{spec.directory}"
            cached, skipped_report[name] = self.load_corpus(spec, name)
            sample_rate = cached.sample_rate
            label_map = corpus_label_map(spec.kind, cached.utterances, name)
            encoded = label_map.encode(cached.utterances)
            unmapped = label_map.unmapped_counts(cached.utterances)
            if unmapped:
                self.log(f"  {name}: labels outside {label_map.name}, left out: {unmapped}")
            kept = 0
            rows = zip(cached.utterances, cached.waveforms, encoded, strict=True)
            for utterance, waveform, index in rows:
                if index < 0:
                    continue
                if not utterance.language:
                    raise ValueError(
                        f"{name}: the loader gives no language for {utterance.path}; use a "
                        "corpus kind that sets one (or a manifest with a language column)."
                    )
                utterances.append(utterance)
                waveforms.append(waveform)
                label_texts.append(label_map.classes[index])
                corpus_names.append(name)
                kept += 1
                classes = language_maps.setdefault(utterance.language, [])
                classes.extend(c for c in label_map.classes if c not in classes)
            if kept == 0:
                raise ValueError(f"No usable labelled utterance in {name}.")
            self.log(f"  {name}: {kept} labelled utterances")
        languages = list(language_maps)
        class_names = {language: list(language_maps[language]) for language in languages}

        # Embedding experts: utterances without one are skipped.
        embeddings = {}
        keep = np.ones(len(utterances), dtype=bool)
        embedding_skipped = []
        for name, path in self.config.embedding_files.items():
            array, has, skipped = load_embedding_file(name, path, utterances)
            embeddings[name] = array
            keep &= has
            embedding_skipped += skipped
        if embedding_skipped:
            self.log(
                f"  skipped {len(embedding_skipped)} utterance(s) without an embedding "
                "(skipped.json)"
            )
            skipped_report["embeddings"] = [entry.to_dict() for entry in embedding_skipped]
        if not keep.all():
            utterances = [u for u, k in zip(utterances, keep, strict=True) if k]
            waveforms = [w for w, k in zip(waveforms, keep, strict=True) if k]
            label_texts = [t for t, k in zip(label_texts, keep, strict=True) if k]
            corpus_names = [c for c, k in zip(corpus_names, keep, strict=True) if k]
            embeddings = {name: array[keep] for name, array in embeddings.items()}
        if not utterances:
            raise ValueError("No utterance is left after matching the embeddings.")
        if use_egemaps:
            from ser_keras.features.opensmile_functionals import opensmile_functionals

            self.log(f"Computing eGeMAPS functionals for {len(waveforms)} utterances ...")
            embeddings["egemaps"] = opensmile_functionals(waveforms, sample_rate)

        frontend = LogMel.from_preset("fu2021", num_frames=model_preset["num_frames"])
        self.log(
            f"Computing fu2021 log-mel features ({model_preset['num_frames']} frames) for "
            f"{len(waveforms)} utterances ..."
        )
        features = self.normalize_features(
            compute_features(frontend, waveforms), utterances, frontend.pad_value,
            source="labelled",
        )

        language_of = np.array([u.language for u in utterances], dtype=object)
        union = multigate.union_of_classes(class_names)
        data = MultilingualData(
            description=description,
            utterances=utterances,
            corpus_names=corpus_names,
            languages=languages,
            class_names=class_names,
            language_of=language_of,
            language_labels={
                language: np.array(
                    [
                        class_names[language].index(text) if lang == language else -1
                        for text, lang in zip(label_texts, language_of, strict=True)
                    ],
                    dtype=np.int32,
                )
                for language in languages
            },
            union_labels=np.array([union.index(t) for t in label_texts], dtype=np.int32),
            union=union,
            features=features,
            embeddings=embeddings,
            frontend=frontend,
            skipped=skipped_report,
        )
        for language in languages:
            self.log(
                f"  language {language}: {data.rows_of(language).size} utterances, classes "
                f"{class_names[language]}"
            )
        return data

    def splits(self, data: MultilingualData) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """`(train, validation, test)` rows of every repeat: each language split, joined.

        The same splits serve every setting.

        Raises:
            ConfigError: A speaker split of a language with one speaker.
            ValueError: A language without rows in a part.
        """
        from ser_keras.data.splits import language_split

        config = self.config
        splits = []
        for repeat in range(config.repeats):
            parts = [[], [], []]
            for language in data.languages:
                try:
                    split = language_split(
                        data.rows_of(language),
                        data.language_labels[language],
                        data.utterances,
                        config.split,
                        seed=config.seed,
                        repeat=repeat,
                    )
                except ValueError as error:
                    raise ConfigError("split", f"is {config.split!r}, but: {error}") from None
                for store, part in zip(parts, split, strict=True):
                    store.append(part)
            train, validation, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
            for name, part in (("training", train), ("validation", validation), ("test", test)):
                for language in data.languages:
                    if not np.any(data.language_of[part] == language):
                        raise ValueError(
                            f"Repeat {repeat + 1}: language {language!r} has no {name} "
                            "utterance (too few utterances); add data or use the random split."
                        )
            splits.append((train, validation, test))
        return splits

    def log_recipe_scope(self, data: MultilingualData) -> None:
        """Says which recipe fields do not reach every input (module docstring)."""
        recipe = self.recipe
        if data.embeddings and (recipe.normalization != "none" or recipe.spec_augment):
            self.log(
                f"  The utterance-level experts ({', '.join(sorted(data.embeddings))}) keep "
                "their z-normalisation over the training rows: the recipe's normalisation "
                "and SpecAugment act on the log-mel features only."
            )
        if recipe.recalibrate_batch_norm:
            self.log(
                "  Batch-norm recalibration: the multi-gating models have no batch "
                "normalisation, so there is nothing to recalibrate (0 layers)."
            )

    def settings(self, languages) -> list[tuple[str, str, list, dict]]:
        """`(setting, variant, languages, model overrides)` of every setting, in run order."""
        config = self.config
        settings = [(variant, variant, list(languages), {}) for variant in config.variants]
        if config.ablation == "single":
            for language in languages:
                settings.append((f"single_{language}_aux", "single", [language], {}))
                settings.append(
                    (
                        f"single_{language}_noaux",
                        "single",
                        [language],
                        {"contrastive_weights": {language: 0.0}},
                    )
                )
        elif config.ablation == "multigate":
            if "multigate" not in config.variants:
                settings.append(("multigate", "multigate", list(languages), {}))
            settings.append(
                (
                    "multigate_noaux",
                    "multigate",
                    list(languages),
                    {"contrastive_weights": {language: 0.0 for language in languages}},
                )
            )
        return settings

    # ------------------------------------------------------------- run

    def run(self) -> ExperimentResult:
        """Trains every setting on every repeat, writes the reports, exports the best model."""
        from ser_keras.evaluation import reports

        config = self.config
        self.start_strategy()
        self.check_batch_size(config.batch_size)
        model_preset = self.model_preset()
        internal, use_egemaps, gate_selector = self.resolve_experts(model_preset)
        specs, description = self.corpus_specs()
        self.log(f"Data: {description}")
        self.log(
            f"Configuration: preset {config.preset!r} (model preset {config.model_preset!r}, "
            f"{config.epochs} epochs, batch {config.batch_size}, {config.repeats} "
            f"repeat(s), ablation {config.ablation!r}, split {config.split!r})"
            + reduced_note(config.preset == "quick")
        )
        self.log(self.recipe_line())
        data = self.load_data(specs, description, model_preset, use_egemaps)
        self.log_recipe_scope(data)
        languages = data.languages
        self.open_run(
            {
                "data": description,
                "experts": list(internal),
                "embeddings": sorted(data.embeddings),
                "gate_selector": gate_selector,
                "class_names": data.class_names,
                "num_utterances": len(data.utterances),
            }
        )
        reports.write_json_atomic(self.out_dir / "skipped.json", data.skipped)
        splits = self.splits(data)
        model_arguments = {
            **model_preset,
            "experts": internal,
            "embedding_dims": {name: int(a.shape[1]) for name, a in data.embeddings.items()},
            "gate_selector": gate_selector,
            "num_frames": data.features.shape[1],
            "num_mels": data.features.shape[2],
        }

        settings = self.settings(languages)
        self.start_progress([setting for setting, *_ in settings], config.repeats)
        best = BestModel()
        records = {}
        results = {
            "languages": {language: data.summary(language) for language in languages},
            "table3": {},
            "table4": {},
            "gate_weights": {},
            "connections": {},
            "folds": {},
        }
        for setting, variant, setting_languages, overrides in settings:
            if setting in config.variants:
                self.log(f"\n=== Table 3: {VARIANT_TITLES[variant]} ({variant}) ===")
            elif not records or list(records)[-1] in config.variants:
                self.log(f"\n=== Table 4: auxiliary-loss ablation ({config.ablation}) ===")
            records[setting] = [
                self.train_setting(
                    data, splits, setting, variant, setting_languages, repeat,
                    {**model_arguments, **overrides},
                )
                for repeat in range(config.repeats)
            ]
            results["folds"][setting] = [self.fold_entry(record) for record in records[setting]]
            if setting_languages == languages:
                for record in records[setting]:
                    validation = record["best_validation_mean_ua"]
                    best.offer(  # BestModel holds fractions; the record, percent
                        setting, record["fold"], None if validation is None else validation / 100,
                        pathlib.Path(record["fold_dir"]) / "best.keras",
                    )
            if setting in config.variants:
                results["table3"][variant] = aggregate_repeats(records[setting], languages)
                results["gate_weights"][variant] = mean_gate_weights(records[setting], languages)
                if variant == "multigate":
                    results["connections"] = mean_connections(records[setting], languages)
                self.print_row(VARIANT_TITLES[variant], results["table3"][variant], languages)
        if config.ablation != "none":
            results["table4"] = self.table4(records, languages)

        results.update(
            units="percent",
            expert_names=next(
                (r[0]["expert_names"] for r in records.values() if r), list(internal)
            ),
            configuration=self.state.config,
            elapsed_seconds=self.elapsed_seconds(),
        )
        self.write_reports(results, languages)
        export_path = self.export(best, data)
        return self.finish(results, best, export_path, score_name="validation_mean_ua")

    def train_setting(self, data, splits, setting, variant, languages, repeat, arguments) -> dict:
        """Trains (or reuses) one setting on one repeat; returns its record (`languages.json`)."""
        from ser_keras.evaluation import reports
        from ser_keras.models import multigate
        from ser_keras.training.runner import Split

        train, validation, test = splits[repeat]
        if languages != data.languages:
            mask = np.isin(data.language_of, languages)
            train, validation, test = (part[mask[part]] for part in (train, validation, test))
        class_names = {language: data.class_names[language] for language in languages}
        label_names = model_label_names(variant, class_names)
        task = next(iter(label_names))
        seed = self.config.seed + repeat
        made = {}

        def make_split(indices, part):
            labels = data.labels(indices, variant, languages)
            made[part] = Split(data.inputs(indices, train), labels)
            return made[part]

        def build_model():
            model = multigate.MultiGatingSER(
                class_names=class_names, variant=variant, seed=seed, **arguments
            )
            model.adapt_normalization(made["train"].inputs)  # training rows only
            model.compile(optimizer=multigate.make_optimizer())
            return model

        captured = {}

        def predict_fn(model, inputs):
            captured["details"] = model.predict_details(inputs, batch_size=self.config.batch_size)
            captured["connections"] = {k: v.tolist() for k, v in model.connection_gates().items()}
            captured["expert_names"] = list(model.expert_names)
            return captured["details"]["probabilities"][task]

        fit_options = {}
        if self.recipe.spec_augment and data.embeddings:
            # Dict inputs: the recipe's SpecAugment masks the log-mel view only.
            fit_options["augment"] = features_view_augmentation(
                self.recipe.augmentation(data.features[train], data.frontend.pad_value)
            )
        fold_name = f"r{repeat + 1}"
        result = self.train_fold(
            setting=setting,
            fold_name=fold_name,
            fold_number=repeat + 1,
            utterances=data.utterances,
            train_index=train,
            validation_index=validation,
            test_index=test,
            make_split=make_split,
            build_model=build_model,
            class_names=label_names[task],
            epochs=self.config.epochs,
            batch_size=self.config.batch_size,
            seed=seed,
            speaker_independent=self.config.split == "speaker",
            monitor="val_mean_ua",
            task=task,
            predict_fn=predict_fn,
            pad_value=data.frontend.pad_value,
            **fit_options,
            sidecar=None if data.embeddings else {
                "frontend": data.frontend,
                "label_names": label_names,
                "name": f"multilingual_{variant}",
                "metadata": {"app": self.app_name, "setting": setting, "variant": variant},
            },
        )
        fold_dir = self.state.fold_dir(setting, fold_name)
        manifest = {
            key: result[key] for key in ("train_speakers", "validation_speakers", "test_speakers")
        }
        scores_path = fold_dir / "languages.json"
        if scores_path.exists():
            return {**record_in_percent(json.loads(scores_path.read_text())), **manifest}
        if "details" not in captured:
            # The fold finished in an earlier run but its scores were not written.
            import keras

            predict_fn(keras.saving.load_model(str(fold_dir / "best.keras")), made["test"].inputs)
        record = score_languages(captured["details"], variant, languages, test, data)
        record.update(
            connections=captured["connections"],
            expert_names=captured["expert_names"],
            fold=fold_name,
            best_validation_mean_ua=(
                None if result["best_validation"] is None else 100 * result["best_validation"]
            ),
            best_epoch=result["best_epoch"],
            epochs_run=result["epochs_run"],
            num_train=int(len(train)),
            num_validation=int(len(validation)),
            num_test=int(len(test)),
            fold_dir=str(fold_dir),
            speaker_independent=self.config.split == "speaker",
            **manifest,
        )
        reports.write_json_atomic(scores_path, record)
        return record

    @staticmethod
    def fold_entry(record: dict) -> dict:
        """A repeat's line in `results.json`'s `folds`: scores per language, the manifest."""
        return {
            "fold": record["fold"],
            "languages": {
                language: {key: entry[key] for key in ("ua", "wa", "macro_f1", "num_test")}
                for language, entry in record["languages"].items()
            },
            "best_validation_mean_ua": record["best_validation_mean_ua"],
            "best_epoch": record["best_epoch"],
            "epochs_run": record["epochs_run"],
            "speaker_independent": record["speaker_independent"],
            "train_speakers": record["train_speakers"],
            "validation_speakers": record["validation_speakers"],
            "test_speakers": record["test_speakers"],
        }

    def table4(self, records, languages) -> dict:
        """Table 4 (with and without the auxiliary loss) from the ablation's records."""
        if self.config.ablation == "single":
            with_aux = {
                language: aggregate_repeats(records[f"single_{language}_aux"], [language])[language]
                for language in languages
            }
            without_aux = {
                language: aggregate_repeats(records[f"single_{language}_noaux"], [language])[
                    language
                ]
                for language in languages
            }
        else:
            with_aux = aggregate_repeats(records["multigate"], languages)
            without_aux = aggregate_repeats(records["multigate_noaux"], languages)
        self.print_row("with aux loss", with_aux, languages)
        self.print_row("w/o aux loss", without_aux, languages)
        return {"protocol": self.config.ablation, "with_aux": with_aux, "without_aux": without_aux}

    def print_row(self, title, row, languages) -> None:
        self.log(
            f"  {title}: " + "  ".join(f"{lang} {table_cell(row.get(lang))}" for lang in languages)
        )

    def export(self, best: BestModel, data: MultilingualData):
        """Exports `best` as `multilingual_<variant>` (nothing with embedding experts)."""
        if best.model_path is None or self.outputs.export_dir is None:
            return None
        if data.embeddings:
            self.log(
                "\nNot exported: the model takes utterance-level embeddings besides the log-mel "
                "features, which a waveform-in SavedModel cannot compute."
            )
            return None
        variant = "multigate" if best.setting == "multigate_noaux" else best.setting
        self.export_name = f"multilingual_{variant}"
        return self.export_best(
            best,
            frontend=data.frontend,
            label_names=model_label_names(variant, data.class_names),
            metadata={"variant": variant, "languages": data.languages, "data": data.description},
        )

    def write_reports(self, results, languages) -> None:
        """`results.md` (Tables 3-4, gate weights, NAS connections) and the Figure 4 plot."""
        from ser_keras.evaluation import reports

        configuration = results["configuration"]
        sections = [
            "# Multilingual SER with multi-gating and NAS (layout of Wang et al., Tables 3-4)",
            "",
            f"Data: {configuration['data']}.",
            f"Preset {configuration['preset']} (model {configuration['model_preset']}), "
            f"{configuration['epochs']} epochs, {configuration['repeats']} repeat(s) of a "
            f"{configuration['split']} split, seed {configuration['seed']}.",
            "Chance (UA of a constant guess, 100 / number of classes): "
            + ", ".join(
                f"{language} {100 / len(entry['class_names']):.2f} %"
                for language, entry in results["languages"].items()
            )
            + ".",
            "Cells: UA/WA on the test part in percent, mean over repeats.",
            "",
            "| language | corpora | utterances | classes | chance UA (%) |",
            "|---|---|---|---|---|",
        ]
        for language, entry in results["languages"].items():
            sections.append(
                f"| {language} | {', '.join(entry['corpora'])} | {entry['num_utterances']} | "
                f"{', '.join(entry['class_names'])} | {100 / len(entry['class_names']):.2f} |"
            )
        if results["table3"]:
            rows = [
                [VARIANT_TITLES[variant]] + [table_cell(table.get(lang)) for lang in languages]
                for variant, table in results["table3"].items()
            ]
            sections += [
                "",
                "## Table 3: multi-domain training methods (UA/WA)",
                "",
                reports.markdown_table(["Method"] + languages, rows),
            ]
        if results["table4"]:
            table4 = results["table4"]
            rows = [
                [title] + [table_cell(table4[key].get(lang)) for lang in languages]
                for key, title in (("with_aux", "with aux loss"), ("without_aux", "w/o aux loss"))
            ]
            protocol = (
                "single-language models"
                if table4["protocol"] == "single"
                else "the multi-gating model trained on all languages"
            )
            sections += [
                "",
                f"## Table 4: auxiliary-loss ablation ({protocol}; UA/WA)",
                "",
                reports.markdown_table([""] + languages, rows),
            ]
        sections += self.gate_sections(results)
        sections += paper_reference_sections()
        reports.write_text_atomic(self.out_dir / "results.md", "\n".join(sections) + "\n")

    def gate_sections(self, results) -> list[str]:
        """Figure 4(b)'s gate weights (table and plot) and the NAS connections."""
        from ser_keras.evaluation import reports

        experts = results["expert_names"]
        sections = []
        gate_rows = [
            [VARIANT_TITLES[variant], language]
            + [f"{weights.get(e, float('nan')):.3f}" for e in experts]
            for variant, table in results["gate_weights"].items()
            for language, weights in table.items()
        ]
        if gate_rows:
            sections += [
                "",
                "## Figure 4(b): mean softmax gate weight per expert (test utterances)",
                "",
                reports.markdown_table(["Method", "language"] + list(experts), gate_rows),
            ]
            multigate_gates = results["gate_weights"].get("multigate") or next(
                iter(v for v in results["gate_weights"].values() if v), {}
            )
            if multigate_gates:
                reports.plot_settings_comparison(
                    {lang: dict(weights) for lang, weights in multigate_gates.items()},
                    self.out_dir / "gate_weights.png",
                    metrics=list(experts),
                    title="Figure 4(b): mean gate weight per language and expert (%)",
                    chance=1 / len(experts),
                    error_bars="none; dashed line: uniform gate weight (1 / number of experts); "
                    "means over repeats and test utterances",
                )
        for language, matrix in results["connections"].items():
            rows = [
                [f"u_{i + 1} ({experts[i]})"] + [f"{v:.3f}" for v in row]
                for i, row in enumerate(matrix)
            ]
            sections += [
                "",
                f"## NAS connections of {language} (deterministic hard-concrete gates "
                "xi_ij; rows u_i, columns v_j)",
                "",
                reports.markdown_table(
                    [""] + [f"v_{j + 1} ({e})" for j, e in enumerate(experts)], rows
                ),
            ]
        return sections


def paper_reference_sections() -> list[str]:
    """The published Tables 3-4 (IEMOCAP en, EMO-DB de, CaFE fr), for orientation."""
    from ser_keras.evaluation import reports

    languages = ["en", "de", "fr"]
    rows = [
        [VARIANT_TITLES[variant]]
        + [
            f"{100 * ua:.2f}/{100 * wa:.2f}"
            for ua, wa in (PAPER_TABLE3[variant][lang] for lang in languages)
        ]
        for variant in PAPER_TABLE3
    ]
    rows += [
        [title]
        + [
            f"{100 * ua:.2f}/{100 * wa:.2f}"
            for ua, wa in (PAPER_TABLE4[key][lang] for lang in languages)
        ]
        for key, title in (
            ("with_aux", "Table 4 with aux loss"),
            ("without_aux", "Table 4 w/o aux loss"),
        )
    ]
    return [
        "",
        "## Published figures, for orientation (IEMOCAP en, EMO-DB de, CaFE fr; "
        "other corpora and experts than ours)",
        "",
        reports.markdown_table(["Method"] + languages, rows),
    ]
