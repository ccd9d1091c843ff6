"""Paper 000: cross-language binary valence with the multi-task ResNet-LSTM.

Latif et al. train on labelled emotional speech in one language (English
IEMOCAP) and measure binary valence UAR on corpora in other languages
(EMO-DB, EMOVO, URDU), in the settings of Table 3:

- `stl`: the single-task ResNet-LSTM baseline;
- `mtl_no_extra`: multi-task with a language-identification head, without
  additional (non-emotional) data;
- `mtl_extra`: multi-task with language and domain heads, trained also on
  unlabelled speech in several languages;
- `mtl_extra_language`, `mtl_extra_domain`: the ablation of Figure 2 (one
  auxiliary head only, with the additional data).

The unlabelled data are the additional corpora (Table 1). The target
corpora's audio joins them, without labels, only with
`unlabelled_target_audio=True`: a deviation from the paper, whose Table 1
lists no target audio among the unlabelled data (training on the test
distribution's audio). `mtl_no_extra` identifies the languages of its
training data: those of the labelled corpora, and the targets' with
`unlabelled_target_audio`; with one language only, it trains without a
language head (a note in the results says so). Model selection uses
validation speakers of the labelled corpora, never a target.

`target_samples=(25, 50, 100, 200)` adds that many labelled target
utterances to training (Figure 3). By default (`target_sampling="speakers"`)
they come from half of the target's speakers and the other half is tested,
so the curve stays speaker-independent; the paper (Section 5.3) does not say
where its samples came from, and `target_sampling="any"` draws them from
every speaker and tests the rest. `protocol="within"` runs Table 2's
within-corpus baseline instead. The `stl` baseline makes as many optimizer
updates per epoch as `mtl_extra` (`stl_epoch="matched"`); `"labelled"` gives
it one pass over its labelled utterances per epoch.

The training recipe (`ser_keras.training.recipe`; none of it is in the paper)
applies as in every experiment: its `normalization` z-normalises every mel
band of every utterance of the pool (labelled, target and unlabelled
corpora; no labels read, but the targets' audio enters the statistics), after
the front-end's own per-utterance scaling (`"none"`: that scaling only, the
paper's); a corpus is named by its name in the run (`normalization_records`),
so two corpora of one kind stay two groups. `train_fold` applies its
augmentation, optimizer, label smoothing and batch-norm recalibration. The
export serves the normalisation (`Experiment.export_best`); with `"corpus"`
its default signature uses the `export_domain` corpus's statistics.

Without corpora, synthetic eSpeak NG corpora are generated (once, cached):
English labelled speech (SAVEE-shaped), German (EMO-DB-shaped) and Urdu
(URDU-shaped) targets, and unlabelled French and Spanish speech.

    from ser_keras.experiments import CrossLanguageValence, CrossLanguageValenceConfig
    result = CrossLanguageValence(CrossLanguageValenceConfig(epochs=2)).run()
    result.results["settings"]["mtl_extra"]["emodb"]["ua"]

Reference:
    S. Latif et al., multi-task learning with language and domain
    identification on unlabelled speech for cross-language speech emotion
    recognition (paper 000 of this project): Tables 1-3, Figures 2-3.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import ClassVar

import numpy as np

from ser_keras.corpora.labels import LABEL_MAP_NAMES
from ser_keras.experiments import config as config_lib
from ser_keras.experiments.base import BestModel, Experiment, ExperimentResult, speaker_counts
from ser_keras.experiments.config import ConfigError, ExperimentConfig, option_name, preset_field

SETTINGS = {
    # name: (language head, domain head, additional unlabelled corpora, title)
    "stl": (False, False, False, "ResNet-LSTM (STL) baseline"),
    "mtl_no_extra": (True, False, False, "Proposed (without additional data)"),
    "mtl_extra": (True, True, True, "Proposed (with additional data)"),
    "mtl_extra_language": (True, False, True, "With additional data, language identification only"),
    "mtl_extra_domain": (False, True, True, "With additional data, domain identification only"),
}
DEFAULT_SETTINGS = ("stl", "mtl_no_extra", "mtl_extra")
PROTOCOLS = ("crosslang", "within")
TARGET_SAMPLINGS = ("speakers", "any")
STL_EPOCHS = ("matched", "labelled")

# Published UAR (%), Table 3 (cross-language, trained on IEMOCAP) and Table 2
# (within corpus), keyed by corpus kind.
PAPER_TABLE3 = {
    "stl": {"emodb": 52.4, "emovo": 54.7, "urdu": 49.6},
    "mtl_no_extra": {"emodb": 57.5, "emovo": 58.3, "urdu": 56.4},
    "mtl_extra": {"emodb": 63.7, "emovo": 62.1, "urdu": 60.9},
}
PAPER_TABLE2 = {"emodb": 81.3, "iemocap": 62.1, "emovo": 74.2, "urdu": 83.4}

# Table 2's URDU protocol: 25 training speakers (validation included), the
# rest tested, five random splits (fewer training speakers when the corpus
# is smaller). Every other corpus: leave one speaker out.
URDU_TRAIN_SPEAKERS = 25
URDU_FOLDS = 5

# The paper gives no optimizer, learning rate, batch size or number of
# epochs; these are our choices (Adam). `quick` is a REDUCED configuration
# for a CPU, printed as such. `cpu`: the CPU-sized model with the "cpu"
# training recipe, but per-corpus normalisation instead of its per-speaker
# one (a preset may set single recipe fields). On RAVDESS -> EMO-DB /
# URDU only per-corpus normalisation lifted the models above chance, and
# per-speaker normalisation hurts URDU, where most speakers speak one emotion
# only (benchmarks/RESULTS.md); 20 epochs (RESULTS.md's runs: 15) for the
# SpecAugment-regularised training (README: run times).
PRESETS = {
    "quick": {
        "model_preset": "latif_crosslang_cpu",
        "epochs": 6,
        "patience": None,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "synthetic_per_emotion": 3,
        "synthetic_unlabelled_per_speaker": 8,
    },
    "paper": {
        "model_preset": "latif_crosslang",
        "epochs": 100,
        "patience": 20,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "synthetic_per_emotion": 15,
        "synthetic_unlabelled_per_speaker": 40,
    },
    "cpu": {
        "model_preset": "latif_crosslang_cpu",
        "recipe": "cpu",
        "normalization": "corpus",
        "epochs": 20,
        "patience": None,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "synthetic_per_emotion": 15,
        "synthetic_unlabelled_per_speaker": 40,
    },
}

# Synthetic default data: languages of the unlabelled folders (two of the
# paper's Voxforge languages).
SYNTHETIC_UNLABELLED_LANGUAGES = ("fr", "es")


# ---------------------------------------------------------------- options


def parse_target_samples(value) -> tuple[int, ...]:
    """`"25,50"` (or a sequence of integers) -> `(25, 50)`, sorted, once each.

    Raises:
        ConfigError: Not non-negative integers.
    """
    try:
        if isinstance(value, str):
            values = [int(part) for part in value.split(",") if part.strip()]
        else:
            values = [int(part) for part in value if not isinstance(part, bool)]
            if len(values) != len(value) or any(int(v) != v for v in value):
                values = []
    except (TypeError, ValueError):
        values = []
    if not values or any(number < 0 for number in values):
        raise ConfigError(
            "target_samples",
            "takes non-negative integers separated by commas, e.g. 25,50,100,200. "
            f"Received: {value!r}",
        )
    return tuple(sorted(set(values)))


def parse_unlabelled_spec(text: str):
    """An unlabelled corpus: `LANG:DIR`, `folder:LANG:DIR` or `KIND:DIR` -> `CorpusSpec`.

    Args:
        text: `LANG:DIR` (a folder of audio in language LANG, ISO 639-1),
            `folder:LANG:DIR`, or `KIND:DIR` of a corpus loader (an emotional
            corpus given here is used without its labels).

    Raises:
        ValueError: None of these forms.
    """
    from ser_keras.corpora import CORPUS_KINDS
    from ser_keras.corpora.spec import CorpusSpec, parse_corpus_spec

    prefix, _, rest = text.partition(":")
    if rest and prefix in CORPUS_KINDS:
        return parse_corpus_spec(text)
    if rest and prefix.isalpha() and 2 <= len(prefix) <= 3 and prefix.islower():
        return CorpusSpec("folder", pathlib.Path(rest).expanduser(), prefix)
    raise ValueError(
        "--unlabelled takes LANG:DIR (ISO 639-1 language code), folder:LANG:DIR or KIND:DIR "
        f"with KIND one of {', '.join(CORPUS_KINDS)}. Received: {text!r}"
    )


def _names(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


@dataclasses.dataclass
class CrossLanguageValenceConfig(ExperimentConfig):
    """Configuration of `CrossLanguageValence`.

    Args:
        labelled: Labelled training corpora, `KIND:DIR` each (e.g.
            `iemocap:~/IEMOCAP`); None with `target` None: synthetic corpora.
        target: Target corpora in other languages, scored for valence UAR.
        unlabelled: Additional unlabelled speech (`parse_unlabelled_spec`).
        settings: Settings to run, from `SETTINGS`.
        protocol: `"crosslang"` (Table 3) or `"within"` (Table 2's
            single-task within-corpus baseline on every corpus).
        target_samples: Labelled target utterances added to training
            (Figure 3), one model per target and N; 0 = none. A string
            `"25,50"` is accepted.
        target_sampling: `"speakers"` (the samples come from half of the
            target's speakers, the other half is tested) or `"any"` (from
            every speaker; the rest is tested).
        model_preset: `ResNetLSTM` preset.
        epochs: Maximum epochs per model.
        patience: Early-stopping patience on validation UA (None: none).
        batch_size: Global batch size.
        learning_rate: Adam's learning rate.
        alpha: Weight of the auxiliary losses, `L = L_e + alpha (L_l + L_d)`.
        labelled_fraction: Share of emotion-labelled samples in the
            multi-task settings' epochs, in (0, 1); None: every sample once
            per epoch, in natural proportion.
        label_map: Emotion label map (`ser_keras.corpora.labels`), e.g.
            `binary_valence` (Table 1).
        unlabelled_target_audio: Add the target corpora's audio, without its
            labels, to the unlabelled training data of the multi-task
            settings (and to the size of `stl`'s matched epoch). Not in the
            paper (its Table 1 lists no target audio): off by default.
        folds: `protocol="within"`: only the first N folds of each corpus.
        runs: Repeat every experiment with seeds seed, seed + 1, ...
        stl_epoch: `"matched"` (the `stl` epoch has as many samples as
            `mtl_extra`'s) or `"labelled"` (one pass over its labelled data).
        export_domain: With `normalization="corpus"`, the corpus whose band
            statistics the exported model's default signature applies
            (default: the first target).
        validation_fraction: Share of the labelled corpora's speakers held
            out for model selection.
        synthetic_per_emotion: Synthetic corpora's utterances per speaker
            and emotion (EMO-DB-shaped: half).
        synthetic_unlabelled_per_speaker: Synthetic unlabelled utterances
            per speaker.
        **kwargs: `ExperimentConfig`'s options (`preset`, `seed`, `out`, ...).

    Raises:
        ConfigError: A value that cannot be used, naming the field.
    """

    PRESETS: ClassVar[dict] = PRESETS
    DEFAULT_OUT: ClassVar[str] = "runs/train_crosslang_valence"
    # Which models run, not what each computes: a resumed run may add
    # settings, target sample counts or runs, reusing the finished models.
    RUN_CONTROL: ClassVar[tuple[str, ...]] = ExperimentConfig.RUN_CONTROL + (
        "settings", "target_samples", "runs", "export_domain",
    )

    labelled: tuple[str, ...] | None = None
    target: tuple[str, ...] | None = None
    unlabelled: tuple[str, ...] | None = None
    settings: tuple[str, ...] = DEFAULT_SETTINGS
    protocol: str = "crosslang"
    target_samples: tuple[int, ...] = (0,)
    target_sampling: str = "speakers"
    model_preset: str = preset_field()
    epochs: int = preset_field()
    patience: int | None = preset_field()
    batch_size: int = preset_field()
    learning_rate: float = preset_field()
    alpha: float = 0.3
    labelled_fraction: float | None = None
    label_map: str = "binary_valence"
    unlabelled_target_audio: bool = False
    folds: int | None = None
    runs: int = 1
    stl_epoch: str = "matched"
    export_domain: str | None = None
    validation_fraction: float = 0.15
    synthetic_per_emotion: int = preset_field()
    synthetic_unlabelled_per_speaker: int = preset_field()

    def validate(self) -> None:
        super().validate()
        self.settings = config_lib.check_names("settings", self.settings, tuple(SETTINGS))
        config_lib.check_choice("protocol", self.protocol, PROTOCOLS)
        self.target_samples = parse_target_samples(self.target_samples)
        config_lib.check_choice("target_sampling", self.target_sampling, TARGET_SAMPLINGS)
        config_lib.check_integer_at_least("epochs", self.epochs, 1)
        config_lib.check_integer_at_least("patience", self.patience, 1, allow_none=True)
        config_lib.check_integer_at_least("batch_size", self.batch_size, 2)
        if isinstance(self.learning_rate, bool) or not (
            isinstance(self.learning_rate, int | float) and self.learning_rate > 0
        ):
            raise ConfigError(
                "learning_rate", f"must be a positive number. Received: {self.learning_rate!r}"
            )
        if isinstance(self.alpha, bool) or not (
            isinstance(self.alpha, int | float) and math.isfinite(self.alpha) and self.alpha >= 0
        ):
            raise ConfigError("alpha", f"must be a non-negative number. Received: {self.alpha!r}")
        if self.labelled_fraction is not None:
            config_lib.check_fraction("labelled_fraction", self.labelled_fraction)
        config_lib.check_choice("label_map", self.label_map, LABEL_MAP_NAMES)
        if not isinstance(self.unlabelled_target_audio, bool):
            raise ConfigError(
                "unlabelled_target_audio",
                f"must be True or False. Received: {self.unlabelled_target_audio!r}",
            )
        config_lib.check_integer_at_least("folds", self.folds, 1, allow_none=True)
        config_lib.check_integer_at_least("runs", self.runs, 1)
        config_lib.check_choice("stl_epoch", self.stl_epoch, STL_EPOCHS)
        config_lib.check_fraction("validation_fraction", self.validation_fraction, 0.0, 0.5)
        config_lib.check_integer_at_least("synthetic_per_emotion", self.synthetic_per_emotion, 1)
        config_lib.check_integer_at_least(
            "synthetic_unlabelled_per_speaker", self.synthetic_unlabelled_per_speaker, 1
        )
        normalization = self.training_recipe().normalization
        if self.export_domain is not None and normalization != "corpus":
            raise ConfigError(
                "export_domain",
                f"chooses the corpus statistics of a {option_name('normalization')} corpus "
                f"export. Received: {option_name('export_domain')} {self.export_domain} with "
                f"{option_name('normalization')} {normalization}.",
            )
        self._check_corpora()

    def _check_corpora(self) -> None:
        from ser_keras.cli import corpus_specs

        self.labelled, self.target = _names(self.labelled), _names(self.target)
        self.unlabelled = _names(self.unlabelled)
        if (self.labelled is None) != (self.target is None):
            missing = "target" if self.target is None else "labelled"
            given = "labelled" if missing == "target" else "target"
            raise ConfigError(
                missing,
                f"is needed with {option_name(given)} (real corpora): give both, or neither "
                f"(synthetic corpora). Received: {option_name('labelled')} "
                f"{' '.join(self.labelled or ['none'])}, {option_name('target')} "
                f"{' '.join(self.target or ['none'])}",
            )
        if self.labelled is None:
            if self.unlabelled is not None:
                raise ConfigError(
                    "unlabelled",
                    f"was given without {option_name('labelled')}/{option_name('target')}; "
                    "give the corpora too, or none.",
                )
            self._specs = None
            return
        labelled = corpus_specs(self.labelled, option_name("labelled"))
        target = corpus_specs(self.target, option_name("target"))
        unlabelled = [parse_unlabelled_spec(text) for text in self.unlabelled or ()]
        extra_settings = [name for name in self.settings if SETTINGS[name][2]]
        if self.protocol == "crosslang" and extra_settings and not unlabelled:
            raise ConfigError(
                "unlabelled",
                f"is needed: settings {extra_settings} train on additional unlabelled speech "
                f"(pass {option_name('unlabelled')} LANG:DIR, or run "
                f"{option_name('settings')} stl,mtl_no_extra).",
            )
        self._specs = (labelled, target, unlabelled)

    def corpus_specs(self):
        """`(labelled, target, unlabelled)` lists of `CorpusSpec`, or None for synthetic data."""
        return self._specs


# ------------------------------------------------------------------- data


class CorpusPool:
    """Every utterance of a run, with its features and roles.

    Attributes:
        utterances: All usable utterances (labelled corpora, targets,
            unlabelled corpora, in that order).
        waveforms: Their waveforms (None once the features are computed).
        features: `[N, frames, mels]` float32 (set by the experiment).
        emotion: Class index per utterance; -1 = none (unlabelled corpora
            always -1).
        corpus: Display name of each utterance's corpus.
        language: Language of each utterance.
        labelled_corpora: Labelled corpus name -> indices of its utterances.
        targets: Target name -> indices of all its utterances (any label).
        extra_corpora: Unlabelled corpus name -> indices of its utterances.
        kinds: Corpus name -> corpus kind (loader).
        skipped: Corpus name -> files left out, with reasons.
    """

    def __init__(self):
        self.utterances = []
        self.waveforms = []
        self.features = None
        self.corpus = []
        self.emotion = []
        self.language = None
        self.labelled_corpora = {}
        self.targets = {}
        self.extra_corpora = {}
        self.kinds = {}
        self.skipped = {}

    def target_rows(self) -> np.ndarray:
        """Indices of every target utterance (labelled or not)."""
        parts = list(self.targets.values())
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _display_name(spec, listing, taken):
    base = listing.corpus if spec.kind != "folder" else f"{spec.directory.name}"
    name, number = base, 2
    while name in taken:
        name, number = f"{base}_{number}", number + 1
    return name


def load_pool(labelled_specs, target_specs, unlabelled_specs, label_map, cache_dir,
              quiet=False) -> CorpusPool:
    """Lists and decodes (through the waveform cache) every corpus of a run.

    A file given in two roles is used once, in the first.

    Args:
        labelled_specs: `CorpusSpec`s of the labelled training corpora.
        target_specs: `CorpusSpec`s of the target corpora.
        unlabelled_specs: `CorpusSpec`s of the unlabelled corpora (labels
            ignored).
        label_map: The `LabelMap` of the emotion task.
        cache_dir: The cache folder (waveforms under `waveforms/`).
        quiet: No progress bars.

    Returns:
        A `CorpusPool` with waveforms (no features yet).

    Raises:
        ValueError: A corpus with no usable audio, or a labelled or target
            corpus with no label in `label_map`.
    """
    from ser_keras.data.cache import WaveformCache

    cache = WaveformCache(pathlib.Path(cache_dir) / "waveforms")
    pool = CorpusPool()
    taken = set()
    seen_paths = set()

    def add(spec, role):
        listing = spec.load()
        name = _display_name(spec, listing, taken)
        taken.add(name)
        pool.kinds[name] = spec.kind
        fresh = [u for u in listing.utterances if u.path not in seen_paths]
        duplicates = len(listing.utterances) - len(fresh)
        cached = cache.load(fresh, progress=not quiet)
        skipped = [entry.to_dict() for entry in list(listing.skipped) + list(cached.skipped)]
        pool.skipped[name] = skipped
        for warning in listing.warnings:
            print(f"  {name}: warning: {warning.path}: {warning.reason}")
        if skipped:
            print(f"  {name}: skipped {len(skipped)} file(s), e.g. {skipped[0]['path']}: "
                  f"{skipped[0]['reason']} (all in skipped.json)")
        if duplicates:
            print(f"  {name}: {duplicates} file(s) already loaded for another role, used once")
        labels = (
            label_map.encode(cached.utterances)
            if role != "unlabelled"
            else np.full(len(cached.utterances), -1, np.int32)
        )
        start = len(pool.utterances)
        rows = zip(cached.utterances, cached.waveforms, labels, strict=True)
        for utterance, waveform, label in rows:
            seen_paths.add(utterance.path)
            pool.utterances.append(utterance)
            pool.waveforms.append(waveform)
            pool.corpus.append(name)
            pool.emotion.append(int(label))
        indices = np.arange(start, len(pool.utterances))
        if role != "unlabelled":
            unmapped = label_map.unmapped_counts(cached.utterances)
            if unmapped:
                what = "left out" if role == "labelled" else "not scored"
                print(f"  {name}: labels outside {label_map.name}, {what}: {unmapped}")
        if len(indices) == 0:
            raise ValueError(f"No usable audio in {spec.kind} corpus at {spec.directory}.")
        if role != "unlabelled" and not (labels >= 0).any():
            raise ValueError(
                f"No utterance of {spec.kind} corpus at {spec.directory} has a label in "
                f"{label_map.name} ({', '.join(label_map.classes)})."
            )
        languages = sorted({u.language for u in cached.utterances})
        print(f"  {name} ({role}, {'/'.join(languages)}): {len(indices)} utterances"
              + ("" if role == "unlabelled" else f", {int((labels >= 0).sum())} labelled"),
              flush=True)
        return name, indices

    for spec in labelled_specs:
        name, indices = add(spec, "labelled")
        pool.labelled_corpora[name] = indices
    for spec in target_specs:
        name, indices = add(spec, "target")
        pool.targets[name] = indices
    for spec in unlabelled_specs:
        name, indices = add(spec, "unlabelled")
        pool.extra_corpora[name] = indices
    pool.emotion = np.asarray(pool.emotion, dtype=np.int32)
    pool.corpus = np.asarray(pool.corpus, dtype=object)
    pool.language = np.asarray([u.language for u in pool.utterances], dtype=object)
    return pool


def normalization_records(pool: CorpusPool) -> list:
    """The pool's utterance records, each with its corpus named as in the run.

    The training recipe groups utterances by `corpus` (per-corpus
    normalisation) and by `corpus:speaker_id` (per speaker). A corpus here
    is its display name in the run (`CorpusPool.corpus`), not its kind, so
    two corpora of one kind (e.g. two `folder`s of unlabelled speech in other
    languages) are two groups, and so are their speakers.

    Returns:
        One `Utterance` per pool row, `corpus` replaced by the display name.
    """
    return [
        dataclasses.replace(utterance, corpus=str(name))
        for utterance, name in zip(pool.utterances, pool.corpus, strict=True)
    ]


def served_statistics(pool: CorpusPool, domain: str | None, pad_value: float) -> dict:
    """The band statistics (before normalisation) of the corpus an export serves.

    Args:
        pool: The pool, features not yet normalised.
        domain: A corpus name of the run; None: the first target.
        pad_value: The front-end's padding value (left out of the statistics).

    Returns:
        `{"corpus": name, "utterances": count, "mean": [mels], "std": [mels]}`.

    Raises:
        ConfigError: `domain` is not a corpus of the run.
    """
    from ser_keras.features.normalization import band_statistics

    names = sorted(set(pool.corpus))
    domain = domain if domain is not None else next(iter(pool.targets))
    if domain not in names:
        raise ConfigError(
            "export_domain", f"must name a corpus of this run ({', '.join(names)}). "
            f"Received: {domain}"
        )
    rows = np.flatnonzero(pool.corpus == domain)
    mean, std = band_statistics(pool.features[rows], pad_value)
    return {"corpus": domain, "utterances": int(rows.size), "mean": mean, "std": std}


# ----------------------------------------------------------------- splits


def validation_split(pool: CorpusPool, seed: int, fraction: float):
    """The labelled corpora's labelled utterances split by speaker for model selection.

    Args:
        pool: The run's pool.
        seed: The run's seed.
        fraction: Share of the labelled speakers held out (`hold_out_speakers`).

    Returns:
        `(train, validation, validation_speakers)`: pool indices and the
        held-out speaker ids.

    Raises:
        ValueError: Fewer than 2 labelled speakers.
    """
    from ser_keras.data.splits import hold_out_speakers

    indices = np.concatenate(list(pool.labelled_corpora.values()))
    indices = indices[pool.emotion[indices] >= 0]
    utterances = [pool.utterances[i] for i in indices]
    speakers = sorted({u.speaker_id for u in utterances})
    if len(speakers) < 2:
        raise ValueError(
            "Validation speakers come from the labelled corpora, which need at least 2 "
            f"speakers. Received: {speakers}"
        )
    train, held_out = hold_out_speakers(
        utterances, fraction, seed=seed, labels=pool.emotion[indices]
    )
    return indices[train], indices[held_out], sorted({utterances[i].speaker_id for i in held_out})


def split_target_speakers(pool: CorpusPool, scored, seed: int):
    """A target's labelled utterances split by speaker: `(sample donors, tested)`.

    Two speaker-disjoint halves (seeded, classes balanced across them where
    the speakers allow): the Figure 3 samples are drawn from the first, the
    second is tested, so the curve stays speaker-independent.

    Raises:
        ValueError: Fewer than 2 speakers.
    """
    from ser_keras.data.splits import hold_out_speakers

    scored = np.asarray(scored, dtype=np.int64)
    utterances = [pool.utterances[i] for i in scored]
    speakers = {u.speaker_id for u in utterances}
    if len(speakers) < 2:
        raise ValueError(
            "--target-sampling speakers needs at least 2 speakers per target corpus; "
            f"{pool.corpus[scored[0]]} has {sorted(speakers)}. Use --target-sampling any."
        )
    donors, tested = hold_out_speakers(utterances, 0.5, seed=seed, labels=pool.emotion[scored])
    return scored[donors], scored[tested]


def draw_target_samples(labels, count: int, rng, *, tested_elsewhere: bool) -> np.ndarray:
    """Positions of `count` Figure 3 samples, stratified by class (`stratified_subset`).

    Args:
        labels: Labels of the utterances the samples may come from.
        count: Samples to draw.
        rng: The run's generator.
        tested_elsewhere: The tested utterances are other speakers' (every
            utterance may be drawn); otherwise at least one must be left.

    Raises:
        ValueError: More samples than the target can give.
    """
    from ser_keras.data.splits import stratified_subset

    min_left = 0 if tested_elsewhere else 1
    if count > len(labels) - min_left:
        raise ValueError(
            f"--target-samples {count} is more than the target can give: "
            f"{len(labels)} labelled utterances"
            + (" in the half of its speakers that gives training samples." if tested_elsewhere
               else ", and at least one must be left to test.")
        )
    return stratified_subset(labels, count, rng, min_left=min_left)


# ------------------------------------------------------------ epoch mixes


def mix_epoch(labelled, unlabelled, fraction, rng) -> np.ndarray:
    """Training indices with emotion-labelled samples at `fraction` (None: natural).

    Every labelled sample is used once per epoch; the unlabelled samples fill
    the epoch to the requested share: a random subset of them when there are
    more, whole copies plus a random remainder when there are fewer. Shuffled
    batches then hold labelled samples at `fraction` on average. With `None`
    every sample is used once, in natural proportion. The subset is drawn
    once per model: the runner trains on a fixed set per fit.

    Args:
        labelled: Indices of the emotion-labelled samples.
        unlabelled: Indices of the unlabelled candidates.
        fraction: Share of labelled samples in (0, 1), or None.
        rng: Generator of the subset.

    Returns:
        The labelled indices followed by the unlabelled ones.
    """
    labelled = np.asarray(labelled, dtype=np.int64)
    unlabelled = np.asarray(unlabelled, dtype=np.int64)
    if fraction is None or len(unlabelled) == 0:
        return np.concatenate([labelled, unlabelled])
    total = unlabelled_per_epoch(len(labelled), len(unlabelled), fraction)
    return np.concatenate([labelled, fill(unlabelled, total, rng)])


def unlabelled_per_epoch(num_labelled: int, num_unlabelled: int, fraction) -> int:
    """Unlabelled samples in an epoch of `mix_epoch` (every one once with `fraction` None)."""
    if fraction is None or num_unlabelled == 0:
        return num_unlabelled
    return max(1, int(round(num_labelled * (1.0 - fraction) / fraction)))


def fill(indices, total: int, rng) -> np.ndarray:
    """`total` samples of `indices`: whole copies, then a random remainder without repeats."""
    indices = np.asarray(indices, dtype=np.int64)
    copies = [indices] * (total // len(indices))
    remainder = total % len(indices)
    if remainder:
        copies.append(rng.choice(indices, size=remainder, replace=False))
    return np.concatenate(copies) if copies else np.zeros(0, np.int64)


def unlabelled_candidates(pool: CorpusPool, extra, use_target_audio: bool, added) -> np.ndarray:
    """Unlabelled training candidates: `extra` (indices, or None) and, when asked, target audio.

    Args:
        pool: The run's pool.
        extra: Indices of the additional unlabelled corpora, or None.
        use_target_audio: Add every target utterance (its label unused).
        added: Labelled target utterances already in training (left out).
    """
    parts = [extra] if extra is not None else []
    if use_target_audio:
        parts += list(pool.targets.values())
    if not parts:
        return np.zeros(0, np.int64)
    return np.setdiff1d(np.concatenate(parts), added)


# ------------------------------------------------------------- experiment


class CrossLanguageValence(Experiment):
    """Paper 000's protocol: Table 3's settings across languages, or Table 2 within corpora.

    `crosslang`: per run (seed), one group of the labelled corpora's speakers
    is held out for model selection (best validation UA); every setting
    trains on the rest and is tested on every target corpus (and, for
    Figure 3, one model per target and N with N labelled target samples).
    `within`: the single-task baseline, leave one speaker out on every
    corpus (URDU: 25 training speakers, five random splits).

    Every model goes through `Experiment.train_fold`: the split manifest is
    recorded with each score in `results.json`, and a model whose test
    speakers are trained or validated on is refused. Deliberate exceptions,
    named in the fold's `allowed_overlap`: the targets' audio without labels
    with `unlabelled_target_audio` (the test utterances themselves), and the
    Figure 3 samples with `target_sampling="any"` (checked then to be other
    utterances than the tested ones). The multi-task model (N = 0) with the
    best validation UA is exported.

    Args:
        config: A `CrossLanguageValenceConfig` (None: the `quick` preset with
            `overrides`).
        **overrides: Configuration fields.

    Reference:
        Latif et al., Sections 4-5, Tables 1-3, Figures 2-3.
    """

    config_class: ClassVar[type] = CrossLanguageValenceConfig
    app_name: ClassVar[str] = "train_crosslang_valence"
    export_name: ClassVar[str] = "resnet_lstm_mtl"

    # ------------------------------------------------------------ data

    def _synthetic_specs(self):
        from ser_keras.cli import synthetic_corpus_spec

        config = self.config
        root = self.synthetic_root()
        per_emotion = config.synthetic_per_emotion
        savee = synthetic_corpus_spec(root, "savee", seed=config.seed, per_emotion=per_emotion)
        emodb = synthetic_corpus_spec(
            root, "emodb", seed=config.seed, per_emotion=max(1, per_emotion // 2)
        )
        urdu = synthetic_corpus_spec(root, "urdu", seed=config.seed, per_emotion=per_emotion)
        unlabelled = [
            synthetic_corpus_spec(
                root, "folder", seed=config.seed, language=language,
                per_speaker=config.synthetic_unlabelled_per_speaker,
            )
            for language in SYNTHETIC_UNLABELLED_LANGUAGES
        ]
        return (
            [savee],
            [emodb, urdu],
            unlabelled,
            "synthetic (eSpeak NG): English SAVEE-shaped labelled corpus; German EMO-DB- and "
            "Urdu URDU-shaped targets; unlabelled French and Spanish speech",
        )

    def load_data(self) -> CorpusPool:
        """Loads every corpus, computes (and normalises) the features; sets `self.pool`.

        Returns:
            The `CorpusPool` (features set, waveforms dropped).
        """
        from ser_keras.cli import describe_specs
        from ser_keras.corpora.labels import get_label_map
        from ser_keras.data.pipeline import compute_features

        config = self.config
        specs = config.corpus_specs()
        if specs is None:
            labelled, target, unlabelled, data = self._synthetic_specs()
        else:
            labelled, target, unlabelled = specs
            data = f"labelled: {describe_specs(labelled)}; targets: {describe_specs(target)}"
            if unlabelled:
                data += f"; unlabelled: {describe_specs(unlabelled)}"
        self.description = data
        self.log(f"Data: {data}")
        # The unlabelled corpora are loaded where a setting trains on them, or
        # where the stl baseline's matched epoch counts them.
        extra_settings = [name for name in config.settings if SETTINGS[name][2]]
        matched_stl = "stl" in config.settings and config.stl_epoch == "matched"
        if config.protocol == "within" or not (extra_settings or matched_stl):
            unlabelled = []
        self.label_map = get_label_map(config.label_map)
        pool = load_pool(labelled, target, unlabelled, self.label_map, self.cache_dir,
                         config.quiet)
        self.frontend = self._frontend()
        self.log(f"Computing latif_6s log-mel features (6 s) for {len(pool.waveforms)} "
                 "utterances ...")
        pool.features = compute_features(self.frontend, pool.waveforms,
                                         progress=not config.quiet)
        pool.waveforms = None  # the features are all that training needs
        self.served = None
        if self.recipe.normalization == "corpus" and config.export_dir is not None:
            self.served = served_statistics(pool, config.export_domain, self.frontend.pad_value)
        if self.recipe.normalization in ("corpus", "speaker"):
            self.log(f"  {self.recipe.normalization} statistics of every corpus of the run, "
                     "targets included (their audio only, no labels)")
        pool.features = self.normalize_features(
            pool.features, normalization_records(pool), self.frontend.pad_value,
            source="labelled, target and unlabelled",
        )
        self.pool = pool
        return pool

    def _frontend(self):
        from ser_keras.features.logmel import LogMel

        return LogMel.from_preset("latif_6s")

    # ------------------------------------------------------------- run

    def run(self) -> ExperimentResult:
        """Runs the protocol, writes the reports, exports the best multi-task model."""
        from ser_keras.cli import reduced_note
        from ser_keras.evaluation import reports

        config = self.config
        self.start_strategy()
        self.check_batch_size(config.batch_size)
        if config.protocol == "crosslang":
            self.log("Target-corpus audio in the unlabelled training data: "
                     + ("yes (--unlabelled-target-audio; not in the paper's Table 1)"
                        if config.unlabelled_target_audio
                        else "no (the paper's Table 1 lists none)"))
        pool = self.load_data()
        self.log(
            f"Configuration: preset {config.preset!r} (model preset {config.model_preset!r}, "
            f"{config.epochs} epochs, batch {config.batch_size}, Adam {config.learning_rate:g}, "
            f"alpha {config.alpha:g}"
            + (f", early stopping after {config.patience} epochs" if config.patience else "")
            + ")"
            + reduced_note(config.preset == "quick")
        )
        self.log(self.recipe_line())
        self.open_run({"data": self.description, "num_utterances": len(pool.utterances)})
        reports.write_json_atomic(self.out_dir / "skipped.json", pool.skipped)
        self.best = BestModel()
        self.best_languages = {}
        self.notes = {}
        if config.protocol == "within":
            results = self._run_within()
        else:
            results = self._run_crosslang()
        results.update(
            units="percent",
            class_names=list(self.label_map.classes),
            configuration=self.state.config,
            seeds=self.seeds,
            elapsed_seconds=self.elapsed_seconds(),
        )
        export_path = None
        if config.protocol == "crosslang":
            export_path = self._export()
        return self.finish(results, self.best, export_path)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.config.seed, self.config.seed + self.config.runs))

    # ---------------------------------------------------------- models

    def _build_model_fn(self, num_languages, use_domain_head):
        import keras

        from ser_keras.models.resnet_lstm import ResNetLSTM

        features, config = self.pool.features, self.config

        def build():
            model = ResNetLSTM.from_preset(
                config.model_preset,
                num_frames=int(features.shape[1]),
                num_mels=int(features.shape[2]),
                num_emotions=self.label_map.num_classes,
                num_languages=num_languages,
                use_domain_head=use_domain_head,
                alpha=config.alpha,
            )
            model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
            return model

        return build

    def _train_model(self, *, setting, fold_name, fold_number, train_rows, train_labels,
                     validation, test, seed, num_languages=0, domain_head=False,
                     languages=(), allowed=None, allowed_reason="",
                     speaker_independent=True):
        """Trains one model through `train_fold`; returns (result, test probabilities).

        `train_rows` are the rows of every training sample of an epoch
        (repeats included), `train_labels` their labels. `allowed` rows are
        trained on although their speakers may be tested (deliberate, named
        in the result's `allowed_overlap`); the leakage check covers the
        other training rows.
        """
        from ser_keras.models.resnet_lstm import DOMAIN_CLASSES
        from ser_keras.training.runner import Split

        pool = self.pool
        distinct = np.unique(train_rows)
        allowed = np.intersect1d(distinct, np.zeros(0, np.int64) if allowed is None else allowed)
        checked = np.setdiff1d(distinct, allowed)
        fold_dir = self.state.fold_dir(setting, fold_name)
        probabilities_path = fold_dir / "test_probabilities.npy"

        def make_split(indices, part):
            if part == "train":
                if not np.array_equal(np.union1d(indices, allowed), distinct):
                    raise RuntimeError(f"{setting} {fold_name}: training rows changed.")
                return Split(pool.features[train_rows], train_labels)
            return Split(pool.features[indices], {"emotion": pool.emotion[indices]})

        def predict(model, inputs):
            probabilities = model.predict(inputs, batch_size=self.config.batch_size, verbose=0)
            probabilities = np.asarray(probabilities["emotion"])
            fold_dir.mkdir(parents=True, exist_ok=True)
            np.save(probabilities_path, probabilities)
            return probabilities

        label_names = {"emotion": list(self.label_map.classes)}
        if num_languages:
            label_names["language"] = list(languages)
        if domain_head:
            label_names["domain"] = list(DOMAIN_CLASSES)
        sidecar = None
        if self.recipe.normalization == "none":  # else the fold model needs its statistics
            sidecar = {
                "frontend": self.frontend,
                "label_names": label_names,
                "name": self.export_name,
                "metadata": {"app": self.app_name, "setting": setting, "fold": fold_name},
            }
        result = self.train_fold(
            setting=setting,
            fold_name=fold_name,
            fold_number=fold_number,
            utterances=pool.utterances,
            train_index=checked,
            validation_index=validation,
            test_index=test,
            make_split=make_split,
            build_model=self._build_model_fn(num_languages, domain_head),
            class_names=list(self.label_map.classes),
            epochs=self.config.epochs,
            batch_size=self.config.batch_size,
            patience=self.config.patience,
            fold_dir=fold_dir,
            sidecar=sidecar,
            seed=seed,
            speaker_independent=speaker_independent,
            pad_value=self.frontend.pad_value,
            predict_fn=predict,
        )
        if allowed.size:
            result["train_speakers"] = speaker_counts(pool.utterances, distinct)
            result["allowed_overlap"] = {
                "reason": allowed_reason,
                "speakers": speaker_counts(pool.utterances, allowed),
            }
        return result, np.load(probabilities_path)

    @staticmethod
    def _manifest(result, test_speakers=None) -> dict:
        entry = {
            "fold": result["fold"],
            "best_validation_ua": (
                100 * result["best_validation"] if result.get("best_validation") is not None
                else None
            ),
            "best_epoch": result.get("best_epoch"),
            "train_speakers": result["train_speakers"],
            "validation_speakers": result["validation_speakers"],
            "test_speakers": result["test_speakers"] if test_speakers is None else test_speakers,
        }
        if "allowed_overlap" in result:
            entry["allowed_overlap"] = result["allowed_overlap"]
        return entry

    # -------------------------------------------------------- crosslang

    def _one_language(self, setting, languages) -> bool:
        """A language head over one language: `mtl_no_extra` goes without it (noted).

        Without additional data and without the targets' audio, the only
        languages are the labelled corpora's; with one, there is nothing to
        identify, and the setting trains its emotion head alone (a note in
        `results.json` and `results.md` says so). Any other setting is an
        error: its unlabelled corpora should bring other languages.

        Returns:
            False (no language head).

        Raises:
            ValueError: `setting` is not `mtl_no_extra`, or target audio is on.
        """
        if setting != "mtl_no_extra" or self.config.unlabelled_target_audio:
            raise ValueError(
                f"Setting {setting} identifies languages, but its training data has one "
                f"language only ({languages}). Add --unlabelled speech in other languages."
            )
        if setting not in self.notes:
            self.notes[setting] = (
                f"{setting}: its training data has one language ({languages[0]}): without "
                "additional data and without the targets' audio (--unlabelled-target-audio, "
                "not in the paper's Table 1) there is no other language to identify, so it "
                "trained without a language head, as a single-task model over one pass of "
                "the labelled data per epoch."
            )
            self.log(f"Note: {self.notes[setting]}")
        return False

    def _draw_target_samples(self, seed, rng):
        """Per target and N > 0: the labelled target utterances added, and those tested."""
        config, pool = self.config, self.pool
        # (N outer, target inner: the order of the draws from `rng`.)
        scored, donors, held_out = {}, {}, {}
        for name in pool.targets:
            scored[name] = pool.targets[name][pool.emotion[pool.targets[name]] >= 0]
            donors[name], held_out[name] = scored[name], None
            if config.target_sampling == "speakers" and any(n > 0 for n in config.target_samples):
                donors[name], held_out[name] = split_target_speakers(pool, scored[name], seed)
                self.log(
                    f"  {name}: target samples drawn from "
                    f"{len({pool.utterances[i].speaker_id for i in donors[name]})} speakers "
                    f"({len(donors[name])} utterances), tested on the other "
                    f"{len({pool.utterances[i].speaker_id for i in held_out[name]})} "
                    f"({len(held_out[name])} utterances)"
                )
        chosen, tested = {}, {}
        for count in (n for n in config.target_samples if n > 0):
            for name in pool.targets:
                chosen[count, name] = donors[name][
                    draw_target_samples(pool.emotion[donors[name]], count, rng,
                                        tested_elsewhere=held_out[name] is not None)
                ]
                tested[count, name] = (
                    held_out[name] if held_out[name] is not None
                    else np.setdiff1d(scored[name], chosen[count, name])
                )
        return chosen, tested

    def _epoch(self, setting, labelled, added, extra_all, seed):
        """The training rows of one model (repeats included) for `setting`."""
        config, pool = self.config, self.pool
        language_head, domain_head, use_extra, _ = SETTINGS[setting]
        target_audio = config.unlabelled_target_audio
        unlabelled = np.zeros(0, np.int64)
        if language_head or domain_head:
            unlabelled = unlabelled_candidates(
                pool, extra_all if use_extra else None, target_audio, added
            )
        rows = mix_epoch(labelled, unlabelled, config.labelled_fraction,
                         np.random.default_rng(seed + 1))
        if setting == "stl" and config.stl_epoch == "matched":
            # As many samples per epoch (so updates) as mtl_extra's epoch.
            candidates = unlabelled_candidates(pool, extra_all, target_audio, added)
            epoch_size = len(labelled) + unlabelled_per_epoch(
                len(labelled), len(candidates), config.labelled_fraction
            )
            rows = fill(labelled, epoch_size, np.random.default_rng(seed + 1))
        return rows

    def _run_crosslang(self) -> dict:
        from ser_keras.evaluation.metrics import summarize

        config, pool = self.config, self.pool
        class_names = list(self.label_map.classes)
        target_names = list(pool.targets)
        target_samples = config.target_samples
        settings = config.settings
        scores = {n: {s: {t: [] for t in target_names} for s in settings} for n in target_samples}
        extra_all = (
            np.concatenate(list(pool.extra_corpora.values()))
            if pool.extra_corpora else np.zeros(0, np.int64)
        )
        models_per_setting = config.runs * sum(
            1 if count == 0 else len(target_names) for count in target_samples
        )
        self.start_progress(settings, models_per_setting)
        fold_numbers = dict.fromkeys(settings, 0)
        target_rows = pool.target_rows()
        for seed in self.seeds:
            train_labelled, validation, validation_speakers = validation_split(
                pool, seed, config.validation_fraction
            )
            self.log(f"\n--- run with seed {seed}: {len(train_labelled)} labelled training "
                     f"utterances, validation speakers {', '.join(validation_speakers)} "
                     f"({len(validation)} utterances) ---")
            chosen, tested = self._draw_target_samples(seed, np.random.default_rng(seed))
            for count in target_samples:
                scopes = [("targets", None)] if count == 0 else [(n, n) for n in target_names]
                for setting in settings:
                    language_head, domain_head, _, _ = SETTINGS[setting]
                    for scope, only_target in scopes:
                        added = chosen[count, only_target] if only_target else np.zeros(0, np.int64)
                        labelled = np.concatenate([train_labelled, added])
                        train_rows = self._epoch(setting, labelled, added, extra_all, seed)
                        is_labelled = np.isin(train_rows, labelled)
                        labels = {"emotion": np.where(is_labelled, pool.emotion[train_rows], -1)}
                        languages = sorted(set(pool.language[train_rows]))
                        num_languages = 0
                        if language_head and len(languages) < 2:
                            language_head = self._one_language(setting, languages)
                        if language_head:
                            num_languages = len(languages)
                            lookup = {language: i for i, language in enumerate(languages)}
                            labels["language"] = np.array(
                                [lookup[x] for x in pool.language[train_rows]], np.int32
                            )
                        if domain_head:
                            labels["domain"] = np.where(is_labelled, 0, 1).astype(np.int32)
                        labels["emotion"] = labels["emotion"].astype(np.int32)
                        if only_target:
                            test = tested[count, only_target]
                        else:
                            test = np.concatenate([pool.targets[n] for n in target_names])
                        test = test[pool.emotion[test] >= 0]

                        fold_name = f"seed{seed}_{scope}" + (f"_n{count}" if count else "")
                        self.log(
                            f"[{setting}] {fold_name}: {len(train_rows)} samples per epoch "
                            f"({int(is_labelled.sum())} with emotion labels"
                            + (f", {len(labelled)} distinct"
                               if setting == "stl" and len(train_rows) > len(labelled) else "")
                            + (f", languages {'/'.join(languages)}" if language_head else "")
                            + ")"
                        )
                        fold_numbers[setting] += 1
                        target_audio = np.setdiff1d(target_rows, added)
                        result, probabilities = self._train_model(
                            setting=setting, fold_name=fold_name,
                            fold_number=fold_numbers[setting], train_rows=train_rows,
                            train_labels=labels, validation=validation, test=test, seed=seed,
                            num_languages=num_languages, domain_head=domain_head,
                            languages=languages,
                            allowed=target_audio if config.unlabelled_target_audio else None,
                            allowed_reason="unlabelled_target_audio: the target corpora's audio "
                            "joins the unlabelled training data, without labels",
                            speaker_independent=not (count and config.target_sampling == "any"),
                        )
                        predictions = probabilities.argmax(axis=-1)
                        line = []
                        for name in target_names:
                            if only_target and name != only_target:
                                continue
                            mask = pool.corpus[test] == name
                            summary = summarize(pool.emotion[test][mask], predictions[mask],
                                                class_names)
                            speakers = speaker_counts(pool.utterances, test[mask])
                            scores[count][setting][name].append(
                                dict(summary, seed=seed, **self._manifest(result, speakers))
                            )
                            line.append(f"{name} UA {100 * summary['ua']:.1f}")
                        self.log(
                            f"[{setting}] {fold_name}: " + ", ".join(line)
                            + f" (best validation UA {100 * (result['best_validation'] or 0):.1f}"
                            f" at epoch {result['best_epoch']})"
                        )
                        if (language_head or domain_head) and count == 0:
                            if self.best.offer(setting, fold_name, result["best_validation"],
                                               self.state.fold_dir(setting, fold_name)
                                               / "best.keras"):
                                self.best_languages = {"languages": languages, "seed": seed}

        results = {"targets": {n: pool.kinds[n] for n in target_names}}
        if self.notes:
            results["notes"] = dict(self.notes)
        if 0 in target_samples:
            results["settings"] = {
                setting: {name: _aggregate(scores[0][setting][name]) for name in target_names}
                for setting in settings
            }
        curve = [n for n in target_samples if n > 0]
        if curve:
            results["target_samples"] = {
                str(n): {
                    setting: {name: _aggregate(scores[n][setting][name]) for name in target_names}
                    for setting in settings
                }
                for n in curve
            }
        self._write_crosslang_reports(results, target_names)
        return results

    # ----------------------------------------------------------- within

    def _within_folds(self, name, indices, seed):
        from ser_keras.data.splits import leave_one_speaker_out, speaker_holdout_folds

        pool = self.pool
        utterances = [pool.utterances[i] for i in indices]
        if pool.kinds[name] == "urdu":
            num_speakers = len({u.speaker_id for u in utterances})
            num_train = min(URDU_TRAIN_SPEAKERS, num_speakers - 1)
            folds = speaker_holdout_folds(
                utterances, num_train, URDU_FOLDS, validation="speaker", seed=seed,
                labels=pool.emotion[indices],
            )
            protocol = f"{num_train} training speakers, {URDU_FOLDS} folds"
        else:
            folds = leave_one_speaker_out(
                utterances, validation="speaker", seed=seed, labels=pool.emotion[indices]
            )
            protocol = "leave one speaker out"
        return (folds[: self.config.folds] if self.config.folds else folds), protocol

    def _run_within(self) -> dict:
        """Table 2: single-task within-corpus baseline on every labelled and target corpus."""
        from ser_keras.evaluation import reports
        from ser_keras.evaluation.metrics import mean_and_spread

        pool = self.pool
        corpora = dict(pool.labelled_corpora)
        corpora.update(pool.targets)
        corpora = {name: rows[pool.emotion[rows] >= 0] for name, rows in corpora.items()}
        plan = {
            name: [(seed, *self._within_folds(name, rows, seed)) for seed in self.seeds]
            for name, rows in corpora.items()
        }
        counts = {name: sum(len(folds) for _, folds, _ in runs) for name, runs in plan.items()}
        progress = self.start_progress([f"within_{name}" for name in corpora], max(counts.values()))
        progress.total = sum(counts.values())
        results = {"within": {}}
        for name, indices in corpora.items():
            progress.num_folds = counts[name]
            fold_results, fold_number = [], 0
            for seed, folds, protocol in plan[name]:
                self.log(f"\n=== within {name}: {protocol}, seed {seed} ({len(folds)} folds) ===")
                for fold in folds:
                    fold_number += 1
                    train = indices[fold.train]
                    result, _ = self._train_model(
                        setting=f"within_{name}", fold_name=f"seed{seed}_{fold.name}",
                        fold_number=fold_number, train_rows=train,
                        train_labels={"emotion": pool.emotion[train]},
                        validation=indices[fold.validation], test=indices[fold.test],
                        seed=seed,
                    )
                    fold_results.append(dict(result, seed=seed, fold_name=fold.name))
                    self.log(f"[within {name}] {fold.name}: UA {100 * result['ua']:.1f}")
            ua, ua_std = mean_and_spread([100 * r["ua"] for r in fold_results])
            wa, wa_std = mean_and_spread([100 * r["wa"] for r in fold_results])
            results["within"][name] = {
                "protocol": protocol, "ua": ua, "ua_std": ua_std, "wa": wa, "wa_std": wa_std,
                "folds": [
                    {**self._manifest(r), "fold": r["fold_name"], "seed": r["seed"],
                     "ua": 100 * r["ua"], "wa": 100 * r["wa"]}
                    for r in fold_results
                ],
            }
        names = list(results["within"])
        rows = [["UAR (%), this run"] + [
            f"{results['within'][n]['ua']:.1f} ± {results['within'][n]['ua_std']:.1f}"
            for n in names
        ]]
        paper = [PAPER_TABLE2.get(pool.kinds[n]) for n in names]
        if any(value is not None for value in paper):
            rows.append(["UAR (%), paper (Table 2)"] + paper)
        table = reports.markdown_table(["", *names], rows, float_format="{:.1f}")
        text = (
            "# Within-corpus binary valence (layout of Table 2, Latif et al.)\n\n"
            + "\n".join(self._header_lines({})) + "\n"
            "Single-task ResNet-LSTM; mean ± std over folds and runs.\n\n" + table + "\n"
        )
        reports.write_text_atomic(self.out_dir / "results.md", text)
        self.log("\n" + table)
        return results

    # ---------------------------------------------------------- reports

    def _header_lines(self, results) -> list[str]:
        """What a reader needs first: data, preset, epochs, runs and the chance level."""
        configuration = results.get("configuration") or self.state.config
        return [
            f"Data: {configuration.get('data', 'see results.json')}.",
            f"Preset {self.config.preset} (model {self.config.model_preset}), "
            f"{self.config.epochs} epochs at most, {self.config.runs} run(s) with seeds "
            f"{self.config.seed}-{self.config.seed + self.config.runs - 1}.",
            "Binary valence (2 classes): chance is 50.0 % UAR.",
        ]

    def _write_crosslang_reports(self, results, target_names):
        from ser_keras.evaluation import reports

        settings, out_dir = self.config.settings, self.out_dir
        kinds = results["targets"]
        sections = [
            "# Cross-language binary valence (layout of Table 3, Latif et al.)",
            "",
            *self._header_lines(results),
            "",
        ]
        if "settings" in results:
            rows = [
                [SETTINGS[s][3]] + [_cell(results["settings"][s][t]) for t in target_names]
                for s in settings
            ]
            paper_rows = [
                [f"{SETTINGS[s][3]} (paper)"]
                + [PAPER_TABLE3[s].get(kinds[t]) for t in target_names]
                for s in settings
                if s in PAPER_TABLE3 and any(kinds[t] in PAPER_TABLE3[s] for t in target_names)
            ]
            table = reports.markdown_table(["Model", *target_names], rows + paper_rows,
                                           float_format="{:.1f}")
            wa_rows = [
                [SETTINGS[s][3]]
                + [f"{results['settings'][s][t]['wa']:.1f}" for t in target_names]
                for s in settings
            ]
            sections += [
                "UAR (%) on each target corpus; mean ± std over runs (seeds) where there are "
                "several. Paper rows: trained on IEMOCAP (Table 3).",
                "",
                table,
                "",
                "## WA (%)",
                "",
                reports.markdown_table(["Model", *target_names], wa_rows),
                "",
            ]
            self.log("\n" + table)
            sections += [f"Note: {note}" for note in results.get("notes", {}).values()]
            sections += [""] if results.get("notes") else []
            for target in target_names:
                per_setting = {
                    s: {
                        key: results["settings"][s][target][key] / 100
                        for key in ("ua", "wa", "ua_std", "wa_std")
                    }
                    for s in settings
                }
                reference = {
                    s: {"ua": PAPER_TABLE3[s][kinds[target]] / 100}
                    for s in settings
                    if kinds[target] in PAPER_TABLE3.get(s, {})
                }
                for key, entry in per_setting.items():
                    entry["title"] = SETTINGS[key][3]
                reports.plot_settings_comparison(
                    per_setting, out_dir / f"table3_{target}.png",
                    title=f"Cross-language valence, target {target}",
                    reference=reference or None,
                    chance=0.5,
                    error_bars=f"± 1 standard deviation over {self.config.runs} run(s)",
                )
        if "target_samples" in results:
            counts = sorted(int(n) for n in results["target_samples"])
            header = ["Setting", "Target"] + (["0"] if "settings" in results else []) + [
                str(n) for n in counts
            ]
            rows = []
            for setting in settings:
                for target in target_names:
                    row = [setting, target]
                    if "settings" in results:
                        row.append(_cell(results["settings"][setting][target]))
                    row += [
                        _cell(results["target_samples"][str(n)][setting][target]) for n in counts
                    ]
                    rows.append(row)
            curve_table = reports.markdown_table(header, rows)
            sections += [
                "## UAR (%) with N labelled target utterances added to training "
                "(layout of Figure 3)",
                "",
                curve_table,
                "",
            ]
            self.log("\n" + curve_table)
            _plot_target_samples(out_dir / "figure3_target_samples.png", results, settings,
                                 target_names, counts)
        reports.write_text_atomic(out_dir / "results.md", "\n".join(sections))

    # ----------------------------------------------------------- export

    def _export(self):
        """Exports the best multi-task model (N = 0) behind the front-end, or returns None.

        The recipe's normalisation is served as `Experiment.export_best`
        serves it; with `"corpus"`, the default signature standardises with
        the `export_domain` corpus's statistics (`SpeakerNormalization`'s
        fallback), and `enrol` gives another corpus's.
        """
        if self.outputs is None or self.outputs.export_dir is None:
            return None
        if self.best.model_path is None:
            self.log("\nNo multi-task setting ran: nothing to export (the export is the best "
                     "multi-task model).")
            return None
        from ser_keras.models.resnet_lstm import DOMAIN_CLASSES

        label_names = {"emotion": list(self.label_map.classes)}
        settings = SETTINGS[self.best.setting]
        if settings[0]:
            label_names["language"] = list(self.best_languages["languages"])
        if settings[1]:
            label_names["domain"] = list(DOMAIN_CLASSES)
        served, options = self.served, {}
        normalization = {
            "none": "per utterance (the front-end)",
            "utterance": "per utterance (the front-end), then every band per utterance",
            "speaker": "per utterance (the front-end), then every band per speaker (enrol the "
            "speaker; serving_default: the run's pooled statistics)",
        }.get(self.recipe.normalization)
        if served is not None:
            from ser_keras.export.saved_model import SpeakerNormalization

            normalization = (f"per utterance (the front-end), then every band with "
                             f"{served['corpus']}'s statistics (serving_default; enrol "
                             "another corpus's audio for its own)")
            options["speaker_normalization"] = SpeakerNormalization(
                served["mean"], served["std"],
                fallback_source=f"band statistics of the {served['corpus']} corpus "
                f"({served['utterances']} utterances, the export domain), before per-corpus "
                "normalisation",
                group="corpus",
            )
        self.log(f"\nExporting the best multi-task model (features normalised {normalization}).")
        return self.export_best(
            self.best,
            frontend=self.frontend,
            label_names=label_names,
            metadata={
                "seed": self.best_languages["seed"],
                "validation_ua": 100 * self.best.validation_score,
                "data": self.description,
                "feature_normalization": normalization,
            },
            **options,
        )


# ----------------------------------------------------------------- helpers


def _aggregate(runs) -> dict:
    """Mean ± std over runs (percent), each run's scores and split manifest, pooled confusion."""
    from ser_keras.evaluation.metrics import mean_and_spread

    entry = {}
    for score in ("ua", "wa", "macro_f1"):
        mean, std = mean_and_spread([100 * r[score] for r in runs])
        entry[score], entry[f"{score}_std"] = mean, std
    manifest_keys = ("fold", "best_validation_ua", "best_epoch", "train_speakers",
                     "validation_speakers", "test_speakers", "allowed_overlap")
    entry["runs"] = [
        {"seed": r["seed"], "ua": 100 * r["ua"], "wa": 100 * r["wa"],
         **{key: r[key] for key in manifest_keys if key in r}}
        for r in runs
    ]
    entry["confusion"] = np.sum([np.asarray(r["confusion"]) for r in runs], axis=0).tolist()
    return entry


def _cell(entry) -> str:
    if entry["ua_std"] and len(entry["runs"]) > 1:
        return f"{entry['ua']:.1f} ± {entry['ua_std']:.1f}"
    return f"{entry['ua']:.1f}"


def _plot_target_samples(path, results, settings, target_names, counts):
    """UAR against the number of target samples, one line per setting and target (Figure 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ser_keras.evaluation.reports import atomic_path

    figure = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for setting in settings:
        for target in target_names:
            xs, ys, spreads = [], [], []
            if "settings" in results:
                entry = results["settings"][setting][target]
                xs.append(0), ys.append(entry["ua"]), spreads.append(entry["ua_std"])
            for n in counts:
                entry = results["target_samples"][str(n)][setting][target]
                xs.append(n), ys.append(entry["ua"]), spreads.append(entry["ua_std"])
            axes.errorbar(xs, ys, yerr=spreads, marker="o", capsize=3,
                          label=f"{target}, {setting}")
    axes.set_xlabel("labelled target utterances in training")
    axes.set_ylabel("UAR (%)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("Adding target samples (layout of Figure 3)")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    figure.clear()
