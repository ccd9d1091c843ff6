"""Paper 001: emotion with gender and naturalness as auxiliary tasks (Kim et al. 2017).

A shared DNN (3 x 256, 250 ms context) or LSTM (2 x 256) maps the 32 frame
features to frame posteriors of emotion (neutral, happiness, sadness, anger)
and, in the multi-task variants, of gender and naturalness (acted / natural),
with `L = L_emotion + 0.1 * L_aux` per auxiliary task
(`ser_keras.models.kim_mtl.KimMTL`). Four functionals of the emotion
posteriors per utterance (16 values) are classified by an Extreme Learning
Machine (`ser_keras.models.elm`). Variants: single-task (STL), Gender-MTL,
Naturalness-MTL and ALL-MTL (both auxiliary tasks).

Protocols:

* `loso`: within-corpus leave-one-speaker-out for every corpus (Table 2);
* `loco`: leave-one-corpus-out over the corpora given (Table 3); a corpus
  with both acted and natural speech (IEMOCAP) is split into its acted and
  natural parts, tested separately, as in the paper.

In every fold 10% of the training utterances (stratified by corpus and
emotion) are held out to select the checkpoint (early stopping on the frame
UA of the emotion head); the ELM is fitted on the fold's training utterances.
The test speakers or corpus are never looked at before the test. The reports:
`results.json`, `results.md` (Tables 2-3 layout, Wilcoxon signed-rank tests
of each MTL variant against STL, pooled confusion matrices as Table 4),
`tsne.png` (Figure 2: t-SNE of the high-level features of the test
utterances). The model with the best validation score over every protocol,
network, variant and fold is exported (waveform -> frame features -> network
-> utterance posteriors, the mean of the frame posteriors); the ELM is a
NumPy back-end outside the SavedModel, named in its metadata.

    from ser_keras.experiments import GenderNaturalness, GenderNaturalnessConfig
    result = GenderNaturalness(GenderNaturalnessConfig(epochs=2, networks=("dnn",))).run()

The training recipe (`ser_keras.training.recipe`; none of it is in the
paper) reaches the network, not the ELM, which is fitted as the paper does
on the network's posteriors: its normalisation applies to every utterance's
32 frame features (each speaker or corpus over its own frames) before the
folds are cut, ahead of the network's own feature standardisation; its
optimizer, learning-rate schedule and label smoothing (frame targets of every
head) train the network. SpecAugment applies as time masking only: the 32
features (F0, voicing, MFCCs, energy and their deltas) are no spectrogram,
so a frequency mask would blank an arbitrary run of unrelated features.
Masked frames take the padding value, so the network leaves them out of its
loss as it does padding. The networks have no batch normalisation: the
recipe's recalibration finds nothing to re-estimate (each fold's result
records 0 layers).

Without corpora, synthetic eSpeak NG SAVEE- and EMO-DB-shaped corpora are
generated (once, cached). They are all acted: the naturalness head then has
one class only and cannot learn anything (recorded as a warning).

Reference:
    J. Kim, G. Englebienne, K. P. Truong, V. Evers, "Towards speech emotion
    recognition 'in the wild' using aggregated corpora and deep multi-task
    learning", Interspeech 2017 (Sections 4-5, Tables 2-4, Figure 2).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from ser_keras.cli import reduced_note
from ser_keras.experiments import config as config_lib
from ser_keras.experiments.base import (
    BestModel,
    Experiment,
    ExperimentResult,
    check_speaker_independence,
    split_manifest,
)
from ser_keras.experiments.config import ExperimentConfig, preset_field

NETWORKS = ("dnn", "lstm")
PROTOCOLS = ("loso", "loco", "both")
PROTOCOL_TITLES = {
    "loso": "within-corpus leave-one-speaker-out",
    "loco": "leave-one-corpus-out",
}
# KimMTL's auxiliary heads (ser_keras.models.kim_mtl.AUXILIARY_TASKS).
AUXILIARY_TASKS = ("gender", "naturalness")
# Variant name -> title in the paper's tables.
VARIANT_TITLES = {
    "stl": "STL",
    "gender": "Gender-MTL",
    "naturalness": "Naturalness-MTL",
    "all": "ALL-MTL",
}

PRESETS = {
    # A REDUCED configuration for a 2-core CPU (NOT the paper's; printed at
    # start): 64 units per layer instead of 256, 8 epochs without early
    # stopping, LOSO limited to one test speaker per corpus, small synthetic
    # corpora.
    "quick": {
        "units": 64,
        "epochs": 8,
        "patience": None,
        "batch_size": 128,
        "folds": 1,
        "synthetic_per_emotion": 3,
        "synthetic_emodb_per_emotion": 2,
    },
    # For real results on a 2-core CPU in hours (README: run times): the
    # "cpu" training recipe (ser_keras.training.recipe), half the paper's
    # units, early stopping, LOSO limited to a few test speakers per corpus
    # (every LOCO fold).
    "cpu": {
        "units": 128,
        "recipe": "cpu",
        "epochs": 30,
        "patience": 6,
        "batch_size": 128,
        "folds": 3,
        "synthetic_per_emotion": 3,
        "synthetic_emodb_per_emotion": 2,
    },
    # The paper's networks and training (Section 5.1: batch 128, Adam with
    # ser_keras.models.kim_mtl.LEARNING_RATE, early stopping); the epoch
    # limit and the patience are ours (the paper gives neither).
    "paper": {
        "units": 256,
        "epochs": 100,
        "patience": 10,
        "batch_size": 128,
        "folds": None,
        "synthetic_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
}


def variants_of(aux: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Variant name -> auxiliary tasks: STL, one MTL per task, and ALL-MTL with 2+ tasks.

    Args:
        aux: The auxiliary tasks studied (a subset of `AUXILIARY_TASKS`).

    Returns:
        E.g. `{"stl": (), "gender": ("gender",), "naturalness":
        ("naturalness",), "all": ("gender", "naturalness")}`.
    """
    variants = {"stl": ()}
    for task in aux:
        variants[task] = (task,)
    if len(aux) > 1:
        variants["all"] = tuple(aux)
    return variants


@dataclasses.dataclass
class GenderNaturalnessConfig(ExperimentConfig):
    """Configuration of `GenderNaturalness`.

    Args:
        corpora: Corpora as `KIND:DIR` (e.g. `emodb:~/emodb`,
            `iemocap:~/IEMOCAP`, `manifest:corpus.csv`); None: synthetic
            SAVEE- and EMO-DB-shaped corpora.
        protocol: `"loso"`, `"loco"` or `"both"`; None: both with 2+
            corpora, loso with one.
        networks: Networks to train, from `NETWORKS`.
        aux: Auxiliary tasks studied (`()` or `"none"`: STL only); see
            `variants_of`.
        units: Units per hidden layer (the paper: 256).
        epochs: Maximum epochs per fold.
        patience: Early-stopping patience in epochs (None: none).
        batch_size: Global batch size (of 2 s chunks).
        folds: At most N leave-one-speaker-out folds per corpus (None: all).
        loco_folds: At most N leave-one-corpus-out folds (None: all).
        validation_fraction: Share of the training utterances (stratified by
            corpus and emotion) held out for early stopping (the paper: 10%).
        chunk_frames: Training sequences are cut into chunks of this many
            frames (2 s); prediction runs over whole utterances.
        elm_hidden: Hidden units of the ELM.
        split_naturalness: In leave-one-corpus-out, test the acted and
            natural parts of a corpus holding both separately.
        synthetic_per_emotion: Synthetic SAVEE size (utterances per speaker
            and emotion).
        synthetic_emodb_per_emotion: Synthetic EMO-DB size.
        **kwargs: `ExperimentConfig`'s options (`preset`, `seed`, `out`, ...).
    """

    PRESETS: ClassVar[dict] = PRESETS
    DEFAULT_OUT: ClassVar[str] = "runs/train_gender_naturalness"
    # `loco_folds`, like `folds`, keeps the first N folds of a fixed list.
    RUN_CONTROL: ClassVar[tuple[str, ...]] = ExperimentConfig.RUN_CONTROL + ("loco_folds",)

    corpora: tuple[str, ...] | None = None
    protocol: str | None = None
    networks: tuple[str, ...] = NETWORKS
    aux: tuple[str, ...] = AUXILIARY_TASKS
    units: int = preset_field()
    epochs: int = preset_field()
    patience: int | None = preset_field()
    batch_size: int = preset_field()
    folds: int | None = preset_field()
    loco_folds: int | None = None
    validation_fraction: float = 0.1
    chunk_frames: int = 200
    elm_hidden: int = 100
    split_naturalness: bool = True
    synthetic_per_emotion: int = preset_field()
    synthetic_emodb_per_emotion: int = preset_field()

    def validate(self) -> None:
        super().validate()
        self.networks = config_lib.check_names("networks", self.networks, NETWORKS)
        if self.aux == "none" or tuple(self.aux) in ((), ("none",)):
            self.aux = ()
        else:
            self.aux = config_lib.check_names("aux", self.aux, AUXILIARY_TASKS)
        if self.protocol is not None:
            config_lib.check_choice("protocol", self.protocol, PROTOCOLS)
        config_lib.check_integer_at_least("epochs", self.epochs, 1)
        config_lib.check_integer_at_least("units", self.units, 1)
        config_lib.check_integer_at_least("batch_size", self.batch_size, 1)
        config_lib.check_integer_at_least("folds", self.folds, 1, allow_none=True)
        config_lib.check_integer_at_least("loco_folds", self.loco_folds, 1, allow_none=True)
        config_lib.check_integer_at_least("patience", self.patience, 1, allow_none=True)
        config_lib.check_integer_at_least("elm_hidden", self.elm_hidden, 1)
        config_lib.check_integer_at_least("chunk_frames", self.chunk_frames, 2)
        config_lib.check_integer_at_least("synthetic_per_emotion", self.synthetic_per_emotion, 1)
        config_lib.check_integer_at_least(
            "synthetic_emodb_per_emotion", self.synthetic_emodb_per_emotion, 1
        )
        config_lib.check_fraction("validation_fraction", self.validation_fraction, 0.0, 0.5)
        if isinstance(self.corpora, str):
            self.corpora = (self.corpora,)
        if self.corpora is not None:
            self.corpora = tuple(self.corpora)
        from ser_keras.cli import corpus_specs

        # Parsed (and the folders checked) now, before any data is read.
        self._specs = corpus_specs(self.corpora, "--corpus") if self.corpora else None
        if "loco" in self.protocols:
            distinct = (
                2 if self._specs is None
                else len({spec.kind + str(spec.directory) for spec in self._specs})
            )
            if distinct < 2:
                raise config_lib.ConfigError(
                    "protocol",
                    f"{self.protocol} needs at least 2 corpora (give --corpus twice or more); "
                    f"received {len(self._specs)}.",
                )

    @property
    def protocols(self) -> list[str]:
        """The protocols run, in order (`protocol` None: both with 2+ corpora, else loso)."""
        protocol = self.protocol
        if protocol is None:
            protocol = "both" if self.corpora is None or len(self.corpora) > 1 else "loso"
        return ["loso", "loco"] if protocol == "both" else [protocol]

    @property
    def variants(self) -> dict[str, tuple[str, ...]]:
        """Variant name -> auxiliary tasks (`variants_of(aux)`)."""
        return variants_of(self.aux)


@dataclasses.dataclass
class FrameData:
    """The utterances of an experiment, their frame features and labels.

    Attributes:
        utterances: The usable utterances (four-class emotion, one frame at least).
        sequences: Their frame features, one `[frames, 32]` array each.
        labels: Task -> int32 class ids per utterance (-1: unknown), for
            `"emotion"`, `"gender"` and `"naturalness"`.
        class_names: The emotion classes.
        description: The data, for the reports.
        frontend: The `FrameFeatures` front-end (exported with the model).
        skipped: What `skipped.json` holds.
    """

    utterances: list
    sequences: list
    labels: dict
    class_names: list
    description: str
    frontend: object
    skipped: dict


class GenderNaturalness(Experiment):
    """Paper 001's protocol: networks x variants x (LOSO and/or LOCO folds), ELM back-end.

    Every network and variant of a protocol is trained on the same folds.
    Model selection: the validation utterances (a stratified share of the
    training utterances) select the checkpoint by the emotion head's frame
    UA; the ELM is fitted on the training utterances' high-level features and
    scores the test utterances once.

    Args:
        config: A `GenderNaturalnessConfig` (None: the `quick` preset with
            `overrides`).
        **overrides: Configuration fields.

    Reference:
        Kim et al., Interspeech 2017, Sections 4-5.
    """

    config_class: ClassVar[type] = GenderNaturalnessConfig
    app_name: ClassVar[str] = "train_gender_naturalness"
    export_name: ClassVar[str] = "kim_mtl"

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.warnings: list[str] = []

    # ------------------------------------------------------------ data

    def corpus_specs(self):
        """`(list of CorpusSpec, description)`: the corpora given, or synthetic ones."""
        config = self.config
        if config._specs is not None:
            specs = config._specs
            return specs, ", ".join(f"{spec.kind} at {spec.directory}" for spec in specs)
        from ser_keras.cli import synthetic_corpus_spec

        root = self.synthetic_root()
        sizes = {
            "savee": config.synthetic_per_emotion,
            "emodb": config.synthetic_emodb_per_emotion,
        }
        specs = [
            synthetic_corpus_spec(root, layout, seed=config.seed, per_emotion=size)
            for layout, size in sizes.items()
        ]
        return specs, "synthetic (eSpeak NG) SAVEE- and EMO-DB-shaped corpora"

    def load_data(self, specs, description) -> FrameData:
        """Loads the corpora (four emotions), computes (or reads back) their frame features."""
        from ser_keras.cli import report_skipped
        from ser_keras.corpora.labels import get_label_map
        from ser_keras.corpora.records import SkippedFile
        from ser_keras.data.feature_cache import cached_sequences
        from ser_keras.features.frame_features import FrameFeatures
        from ser_keras.models.kim_mtl import AUXILIARY_CLASSES

        emotion_map = get_label_map("four_class")
        frontend = FrameFeatures.from_preset("kim2017")
        utterances, waveforms, skipped, left_out = [], [], {}, {}
        for spec in specs:
            listing = spec.load()
            name = listing.corpus
            cached, entries = self.load_corpus(spec, name, listing=listing)
            unmapped = emotion_map.unmapped_counts(cached.utterances)
            if unmapped:
                self.log(f"  {name}: emotions outside the four classes, left out: {unmapped}")
                left_out[name] = unmapped
            too_short = []
            for utterance, waveform in zip(cached.utterances, cached.waveforms, strict=True):
                if emotion_map.index(utterance.label) < 0:
                    continue
                if frontend.num_frames_for_samples(len(waveform)) < 1:
                    too_short.append(
                        SkippedFile(utterance.path, "shorter than one 25 ms frame after trimming")
                    )
                    continue
                utterances.append(utterance)
                waveforms.append(waveform)
            skipped[name] = entries + report_skipped(name, too_short)
        if not utterances:
            raise ValueError(f"No usable four-class utterances in {description}.")

        corpora = sorted({u.corpus for u in utterances})
        self.log(
            "Utterances: "
            + ", ".join(f"{c} {sum(u.corpus == c for u in utterances)}" for c in corpora)
        )
        self.log(f"Computing the 32 frame features of {len(utterances)} utterances ...")
        sequences, path, reused = cached_sequences(
            frontend,
            utterances,
            waveforms,
            self.cache_dir / "kim2017_features",
            progress=not self.config.quiet,
        )
        if reused:
            self.log(f"  frame features: reusing {path}")
        if self.recipe.normalization != "none":
            sequences = self.normalize_sequences(
                sequences, utterances, frontend.pad_value, source=description
            )

        def encode(values, classes):
            index = {name: number for number, name in enumerate(classes)}
            return np.array([index.get(value, -1) for value in values], dtype=np.int32)

        labels = {
            "emotion": emotion_map.encode(utterances),
            "gender": encode([u.gender for u in utterances], AUXILIARY_CLASSES["gender"]),
            "naturalness": encode(
                [u.naturalness for u in utterances], AUXILIARY_CLASSES["naturalness"]
            ),
        }
        return FrameData(
            utterances=utterances,
            sequences=sequences,
            labels=labels,
            class_names=list(emotion_map.classes),
            description=description,
            frontend=frontend,
            skipped={"skipped": skipped, "left_out_emotions": left_out},
        )

    def loco_utterances(self, utterances):
        """The utterances as leave-one-corpus-out sees them (mixed corpora split by naturalness)."""
        from ser_keras.data.splits import split_by_naturalness

        return split_by_naturalness(utterances) if self.config.split_naturalness else list(
            utterances
        )

    def folds(self, protocol: str, data: FrameData):
        """`(folds, test corpus of each fold's name)` of a protocol, indices into `data`."""
        from ser_keras.data import splits

        config = self.config
        emotion = data.labels["emotion"]
        if protocol == "loso":
            for corpus in sorted({u.corpus for u in data.utterances}):
                speakers = {u.speaker_id for u in data.utterances if u.corpus == corpus}
                if len(speakers) < 2:
                    self.log(
                        f"  loso: {corpus} has {len(speakers)} speaker(s); leave-one-speaker-out "
                        "needs at least 2, skipped."
                    )
            folds = splits.within_corpus_leave_one_speaker_out(
                data.utterances,
                validation="fraction",
                validation_fraction=config.validation_fraction,
                seed=config.seed,
                labels=emotion,
                max_folds_per_corpus=config.folds,
            )
            return folds, {
                fold.name: data.utterances[int(fold.test[0])].corpus for fold in folds
            }
        folds = splits.leave_one_corpus_out(
            self.loco_utterances(data.utterances),
            validation="fraction",
            validation_fraction=config.validation_fraction,
            seed=config.seed,
            labels=emotion,
        )
        kept = []
        for fold in folds[: config.loco_folds]:
            # A corpus split into its acted and natural parts has the same
            # speakers in both: the other part's utterances of the tested
            # speakers are left out (the paper trains on them).
            independent = splits.without_test_speakers(fold, data.utterances)
            dropped = fold.train.size + fold.validation.size - (
                independent.train.size + independent.validation.size
            )
            if dropped:
                message = (
                    f"loco fold {fold.name}: {dropped} training/validation utterance(s) of its "
                    "test speakers (from the other naturalness part of their corpus) left out, "
                    "so that the fold stays speaker-independent"
                )
                self.warnings.append(message)
                self.log(f"  {message}")
            kept.append(independent)
        return kept, {fold.name: fold.name for fold in kept}

    # ------------------------------------------------------------- run

    def run(self) -> ExperimentResult:
        """Runs every protocol, network, variant and fold; writes the reports; exports the best."""
        config = self.config
        self.start_strategy()
        self.check_batch_size(config.batch_size)
        specs, description = self.corpus_specs()
        self.log(f"Data: {description}")
        self.log(
            f"Configuration: preset {config.preset!r} ({config.units} units, at most "
            f"{config.epochs} epochs, batch {config.batch_size}"
            + (f", early stopping after {config.patience} epochs" if config.patience else "")
            + f"), networks {list(config.networks)}, variants "
            f"{[VARIANT_TITLES[v] for v in config.variants]}, protocols {config.protocols}"
            + reduced_note(config.preset != "paper")
        )
        self.log(self.recipe_line())
        data = self.load_data(specs, description)
        if self.recipe.spec_augment:
            self.log(f"  applied as {self.time_masking(data.frontend.pad_value).describe()}")
        self.open_run({"data": description, "num_utterances": len(data.utterances)})
        from ser_keras.evaluation import reports

        reports.write_json_atomic(self.out_dir / "skipped.json", data.skipped)

        results = {
            "units": "percent",
            "class_names": data.class_names,
            "configuration": self.state.config,
            "protocols": {},
            "warnings": [],
        }
        protocol_folds = {name: self.folds(name, data) for name in config.protocols}
        best = BestModel()
        settings_per_protocol = len(config.networks) * len(config.variants)
        for position, (protocol, (folds, test_corpus_of)) in enumerate(protocol_folds.items()):
            later = sum(len(f) for f, _ in list(protocol_folds.values())[position + 1 :])
            self._progress_for(protocol, len(folds), later * settings_per_protocol)
            results["protocols"][protocol] = self.run_protocol(
                protocol, folds, test_corpus_of, data, best
            )
            results["warnings"] = sorted(set(results["warnings"]) | set(self.warnings))

        results["elapsed_seconds"] = self.elapsed_seconds()
        from ser_keras.data.splits import corpus_naturalness

        results["corpus_naturalness"] = corpus_naturalness(self.loco_utterances(data.utterances))
        results["wilcoxon"] = self.wilcoxon_tests(results)
        self.write_reports(results, data.class_names)
        tsne_path = self.plot_tsne(results, data.class_names)
        if tsne_path is not None:
            results["tsne_plot"] = str(tsne_path)
        export_path = None
        if self.outputs.export_dir is not None:
            export_path = self.export(best, data, results)
            results["export"] = None if export_path is None else str(export_path)
        return self.finish(results, best, export_path)

    def _progress_for(self, protocol, num_folds, later_folds):
        """A progress line per protocol whose estimate also counts the protocols still to run."""
        previous = self.progress
        progress = self.start_progress(
            [f"{protocol}/{network}_{variant}" for network in self.config.networks
             for variant in self.config.variants],
            num_folds,
        )
        progress.total += later_folds
        if previous is not None:
            progress.trained_seconds, progress.trained = previous.trained_seconds, previous.trained

    def run_protocol(self, protocol, folds, test_corpus_of, data: FrameData, best: BestModel):
        """Trains every network and variant on every fold; returns network -> variant -> summary."""
        config = self.config
        entries = {network: {variant: [] for variant in config.variants}
                   for network in config.networks}
        for number, fold in enumerate(folds, start=1):
            train, validation, test = (
                np.asarray(part) for part in (fold.train, fold.validation, fold.test)
            )
            self.log(
                f"\n=== {protocol} fold {number}/{len(folds)}: {fold.name} "
                f"(train {len(train)}, validation {len(validation)}, test {len(test)}) ==="
            )
            for task in AUXILIARY_TASKS:
                present = sorted(set(data.labels[task][train].tolist()) - {-1})
                if len(present) < 2 and any(task in aux for aux in config.variants.values()):
                    message = (
                        f"{protocol} fold {fold.name}: the training data has "
                        f"{len(present)} {task} class(es) {present}; the {task} head cannot "
                        "learn anything there"
                    )
                    self.warnings.append(message)
                    self.log(f"  warning: {message}")
            chunks = {}  # (part, indices) -> chunks, shared by every network and variant
            for network in config.networks:
                for variant, aux in config.variants.items():
                    result = self.train_variant_fold(
                        data, protocol, fold, number, network, variant, aux, chunks
                    )
                    result["test_corpus"] = test_corpus_of[fold.name]
                    entries[network][variant].append(result)
                    best.offer(
                        result["setting"],
                        fold.name,
                        result["best_validation"],
                        self.state.fold_dir(result["setting"], fold.name) / "best.keras",
                    )
                    self.log(
                        f"[{protocol}] {network.upper()}-{VARIANT_TITLES[variant]} "
                        f"{fold.name}: UA {result['ua']:.3f}  WA {result['wa']:.3f}  "
                        f"(best validation frame UA {result['best_validation'] or 0:.3f}, "
                        f"epoch {result['best_epoch']})"
                    )
        return {
            network: {
                variant: self.variant_summary(network, variant, fold_results)
                for variant, fold_results in by_variant.items()
            }
            for network, by_variant in entries.items()
        }

    FOLD_KEYS: ClassVar[tuple[str, ...]] = (
        "fold", "test_corpus", "ua", "wa", "macro_f1", "best_validation", "best_epoch",
        "epochs_run", "num_train", "num_validation", "num_test",
        "train_speakers", "validation_speakers", "test_speakers", "elm_train_speakers",
        "fold_dir",
    )

    PERCENT_KEYS: ClassVar[tuple[str, ...]] = ("ua", "wa", "macro_f1", "best_validation")

    @classmethod
    def variant_summary(cls, network, variant, fold_results) -> dict:
        """Mean and spread of UA and WA over folds (percent), pooled confusion, the folds.

        Args:
            network: `"dnn"` or `"rnn"`.
            variant: A key of `VARIANT_TITLES`.
            fold_results: `train_fold` results (scores as fractions).

        Returns:
            The summary, its scores (`PERCENT_KEYS`, means and spreads) in percent.
        """
        from ser_keras.evaluation.metrics import mean_and_spread

        ua_mean, ua_std = mean_and_spread([100 * r["ua"] for r in fold_results])
        wa_mean, wa_std = mean_and_spread([100 * r["wa"] for r in fold_results])
        return {
            "title": f"{network.upper()}-{VARIANT_TITLES[variant]}",
            "ua": ua_mean,
            "ua_std": ua_std,
            "wa": wa_mean,
            "wa_std": wa_std,
            "confusion": np.sum([np.asarray(r["confusion"]) for r in fold_results], axis=0)
            .tolist(),
            "folds": [
                {
                    key: (
                        100 * r[key]
                        if key in cls.PERCENT_KEYS and r.get(key) is not None
                        else r.get(key)
                    )
                    for key in cls.FOLD_KEYS
                }
                for r in fold_results
            ],
        }

    @staticmethod
    def time_masking(pad_value):
        """The recipe's SpecAugment as this experiment applies it: time masks only.

        Args:
            pad_value: The front-end's padding value. Masked frames take it,
                so the network treats them as padding (left out of the loss,
                masked in the LSTM).

        Returns:
            A `SpecAugment` without frequency masks.
        """
        from ser_keras.data.augmentation import SpecAugment

        return SpecAugment(num_frequency_masks=0, mask_value=pad_value, pad_value=pad_value)

    def _chunks(self, data, indices, chunks):
        from ser_keras.features.framing import expand_labels, segment_features

        key = indices.tobytes()
        if key not in chunks:
            segments, owners = segment_features(
                [data.sequences[i] for i in indices],
                segment_length=self.config.chunk_frames,
                pad_value=0.0,
            )
            labels = {task: values[indices] for task, values in data.labels.items()}
            chunks[key] = (segments, expand_labels(labels, owners))
        return chunks[key]

    def train_variant_fold(self, data, protocol, fold, fold_number, network, variant, aux,
                           chunks) -> dict:
        """Trains one network and variant on one fold (`train_fold`), the ELM on its training rows.

        The network sees 2 s chunks of the training utterances; the
        validation chunks select its checkpoint. The ELM is fitted on the
        high-level features of exactly the fold's training utterances (its
        speakers are checked, as the network's, against the test speakers)
        and predicts the test utterances.
        """
        import keras

        from ser_keras.models.elm import ExtremeLearningMachine
        from ser_keras.models.kim_mtl import LEARNING_RATE, KimMTL, utterance_functionals
        from ser_keras.training.runner import Split

        config = self.config
        setting = f"{protocol}/{network}_{variant}"
        tasks = ("emotion",) + tuple(aux)
        train_index = np.asarray(fold.train, dtype=np.int64)
        # The ELM back-end is fitted outside fit_and_evaluate: its rows get
        # their own manifest and leakage check.
        elm_train_index = train_index
        elm_manifest = split_manifest(data.utterances, elm_train_index, [], fold.test)
        check_speaker_independence(elm_manifest, f"{setting}, fold {fold.name} (ELM)")
        train_sequences = [data.sequences[i] for i in train_index]
        fold_dir = self.state.fold_dir(setting, fold.name)

        def make_split(indices, part):
            if part == "test":
                sequences = [data.sequences[i] for i in indices]
                return Split(sequences, {"emotion": data.labels["emotion"][indices]})
            segments, labels = self._chunks(data, indices, chunks)
            return Split(segments, {task: labels[task] for task in tasks})

        def build_model():
            model = KimMTL.from_preset(
                f"kim2017_{network}", units=config.units, auxiliary_tasks=aux
            )
            model.adapt_feature_normalization(train_sequences)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE))
            return model

        def elm_predict(model, test_sequences):
            """High-level features -> ELM trained on the training utterances."""
            if isinstance(test_sequences, np.ndarray):
                # Validation chunks (the batch-norm recalibration's check):
                # the network's mean frame posteriors per chunk.
                outputs = model.utterance_model().predict(
                    test_sequences, batch_size=config.batch_size, verbose=0
                )
                return outputs["emotion"]
            elm_sequences = [data.sequences[i] for i in elm_train_index]
            train_features = utterance_functionals(model.predict_frame_posteriors(elm_sequences))
            test_features = utterance_functionals(model.predict_frame_posteriors(test_sequences))
            elm = ExtremeLearningMachine(num_hidden=config.elm_hidden, seed=config.seed)
            elm.fit(
                train_features,
                data.labels["emotion"][elm_train_index],
                num_classes=len(data.class_names),
            )
            elm.save(fold_dir / "elm.npz")
            probabilities = elm.predict_proba(test_features)
            np.savez(
                fold_dir / "high_level_features.npz",
                test_features=test_features,
                test_labels=data.labels["emotion"][fold.test],
                test_predictions=np.argmax(probabilities, axis=1),
                test_indices=fold.test,
            )
            return probabilities

        result = self.train_fold(
            setting=setting,
            fold_name=fold.name,
            fold_number=fold_number,
            utterances=data.utterances,
            train_index=train_index,
            validation_index=fold.validation,
            test_index=fold.test,
            make_split=make_split,
            build_model=build_model,
            class_names=data.class_names,
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=config.patience,
            pad_value=data.frontend.pad_value,
            augment=(
                self.time_masking(data.frontend.pad_value) if self.recipe.spec_augment else None
            ),
            monitor="val_emotion_ua",
            predict_fn=elm_predict,
        )
        result["elm_train_speakers"] = elm_manifest["train_speakers"]
        result["fold_dir"] = str(fold_dir)
        return result

    # ---------------------------------------------------------- reports

    def wilcoxon_tests(self, results) -> list[dict]:
        """MTL vs STL per protocol and network (all folds), and per corpus for LOSO."""
        from ser_keras.evaluation.statistics import paired_tests

        tests = []
        for protocol, summary in results["protocols"].items():
            for network in self.config.networks:
                folds = summary[network]["stl"]["folds"]
                groups = {"all": list(range(len(folds)))}
                if protocol == "loso":
                    for index, fold in enumerate(folds):
                        groups.setdefault(fold["test_corpus"], []).append(index)
                scores = {
                    variant: [fold["ua"] for fold in summary[network][variant]["folds"]]
                    for variant in self.config.variants
                }
                for entry in paired_tests(scores, "stl", groups):
                    variant = entry.pop("system")
                    entry.update(
                        protocol=protocol,
                        network=network,
                        variant=variant,
                        comparison=f"{network.upper()}-{VARIANT_TITLES[variant]} vs "
                        f"{network.upper()}-STL",
                    )
                    tests.append(entry)
        return tests

    def _columns(self):
        order = ["stl", "all", "gender", "naturalness"]
        return [(v, n) for v in order if v in self.config.variants for n in self.config.networks]

    def write_reports(self, results, class_names) -> None:
        """`results.md`: Tables 2-3 layout, the Wilcoxon tests, Table 4 confusion matrices."""
        from ser_keras.evaluation import reports
        from ser_keras.evaluation.statistics import is_significant

        networks, variants = self.config.networks, self.config.variants
        columns = self._columns()
        headers = [f"{n.upper()}-{VARIANT_TITLES[v]}" for v, n in columns]
        config = results["configuration"]
        significant = {
            (e["protocol"], e["network"], e["variant"], e["group"]): is_significant(e)
            for e in results["wilcoxon"]
        }
        sections = [
            "# Kim et al. (2017): gender and naturalness as auxiliary tasks",
            "",
            f"Data: {config['data']}.",
            f"Preset {config['preset']} ({config['units']} units), {config['epochs']} epochs at "
            f"most, seed {config['seed']}; folds: "
            + ", ".join(
                f"{len(summary[networks[0]][next(iter(variants))]['folds'])} {protocol} "
                f"({PROTOCOL_TITLES[protocol]})"
                for protocol, summary in results["protocols"].items()
            )
            + ".",
            f"{len(class_names)} classes ({', '.join(class_names)}): chance is "
            f"{100 / len(class_names):.2f} % UA.",
            "Unweighted accuracy (UA, mean per-class recall) of the ELM on the high-level "
            "features, percent.",
        ]
        if results["warnings"]:
            sections += ["", "Warnings:", ""] + [f"- {w}" for w in results["warnings"]]

        if "loso" in results["protocols"]:
            summary = results["protocols"]["loso"]
            corpora = sorted({f["test_corpus"] for f in summary[networks[0]]["stl"]["folds"]})
            rows, means = [], {column: [] for column in columns}
            for corpus in corpora:
                row = [corpus]
                for variant, network in columns:
                    values = [
                        f["ua"]
                        for f in summary[network][variant]["folds"]
                        if f["test_corpus"] == corpus
                    ]
                    mean = float(np.mean(values))
                    means[(variant, network)].append(mean)
                    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                    mark = (
                        " *"
                        if variant != "stl"
                        and significant.get(("loso", network, variant, corpus), False)
                        else ""
                    )
                    row.append(f"{mean:.2f} ± {std:.2f}{mark}")
                rows.append(row)
            rows.append(["M"] + [f"{np.mean(means[c]):.2f}" for c in columns])
            sections += [
                "",
                "## Within corpus, leave-one-speaker-out (layout of Table 2)",
                "",
                "Mean ± standard deviation over the test speakers; M = mean over corpora; "
                "* = Wilcoxon signed-rank p < 0.05 against the same network's STL over that "
                "corpus's speakers.",
                "",
                reports.markdown_table(["ID"] + headers, rows),
            ]

        if "loco" in results["protocols"]:
            summary = results["protocols"]["loco"]
            naturalness = results["corpus_naturalness"]
            folds = summary[networks[0]]["stl"]["folds"]
            all_corpora = sorted(naturalness)
            rows = []
            by_kind = {"natural": [], "acted": []}
            for index, fold in enumerate(folds):
                corpus = fold["test_corpus"]
                train = "{" + ", ".join(c for c in all_corpora if c != corpus) + "}"
                row = [train, corpus]
                for variant, network in columns:
                    row.append(f"{summary[network][variant]['folds'][index]['ua']:.2f}")
                rows.append(row)
                by_kind.setdefault(naturalness.get(corpus, "unknown"), []).append(index)
            for kind, indices in by_kind.items():
                if not indices:
                    continue
                names = ",".join(folds[i]["test_corpus"] for i in indices)
                row = [f"Mean of {kind}", names]
                for variant, network in columns:
                    values = [summary[network][variant]["folds"][i]["ua"] for i in indices]
                    row.append(f"{np.mean(values):.2f}")
                rows.append(row)
            rows.append(["Overall mean", ""] + [f"{summary[n][v]['ua']:.2f}" for v, n in columns])
            sections += [
                "",
                "## Cross corpus, leave-one-corpus-out (layout of Table 3)",
                "",
                reports.markdown_table(["Train", "Test"] + headers, rows),
            ]

        if results["wilcoxon"]:
            rows = [
                [
                    e["protocol"], e["comparison"], e["group"], e["n"], e["mean_gain"],
                    e["statistic"], e["p_value"], e.get("note", ""),
                ]
                for e in results["wilcoxon"]
            ]
            sections += [
                "",
                "## Wilcoxon signed-rank tests, MTL vs STL (paired fold UAs, two-sided)",
                "",
                reports.markdown_table(
                    ["protocol", "comparison", "folds", "n", "mean UA gain (points)", "W", "p",
                     "note"],
                    rows,
                    float_format="{:.3f}",
                ),
            ]

        for protocol, summary in results["protocols"].items():
            for variant, network in columns:
                if variant not in ("stl", "all") and "all" in variants:
                    continue
                entry = summary[network][variant]
                sections += [
                    "",
                    f"## Confusion matrix, {entry['title']}, {protocol} (pooled over folds; "
                    "rows: true, columns: predicted, % of row; layout of Table 4)",
                    "",
                    reports.confusion_markdown(np.asarray(entry["confusion"]), class_names),
                    "",
                    f"UA {entry['ua']:.2f} %",
                ]
        text = "\n".join(sections) + "\n"
        reports.write_text_atomic(self.out_dir / "results.md", text)
        self.log("\n" + text)

    def plot_tsne(self, results, class_names):
        """Figure 2: t-SNE of the test utterances' high-level features (STL and an MTL variant).

        Returns:
            The PNG's path, or None when there are too few test utterances.
        """
        import pathlib

        from ser_keras.evaluation import reports

        variants = self.config.variants
        protocol = "loco" if "loco" in results["protocols"] else "loso"
        summary = results["protocols"][protocol]
        mtl = "all" if "all" in variants else next((v for v in variants if v != "stl"), None)
        panels = []
        for network in self.config.networks:
            for variant in ("stl", mtl):
                if variant is None:
                    continue
                features, labels = [], []
                for fold in summary[network][variant]["folds"]:
                    path = pathlib.Path(fold["fold_dir"]) / "high_level_features.npz"
                    if not path.exists():
                        continue
                    with np.load(path) as stored:
                        features.append(stored["test_features"])
                        labels.append(stored["test_labels"])
                if features:
                    panels.append(
                        (
                            f"{network.upper()}-{VARIANT_TITLES[variant]}",
                            np.concatenate(features),
                            np.concatenate(labels),
                        )
                    )
        if not panels or min(len(panel[1]) for panel in panels) < 5:
            self.log("Too few test utterances for a t-SNE plot; skipped.")
            return None
        path = reports.plot_tsne(
            panels,
            class_names,
            self.out_dir / "tsne.png",
            title=f"t-SNE of the high-level features of the test utterances ({protocol})",
            seed=self.config.seed,
        )
        self.log(f"t-SNE plot (Figure 2 layout): {path}")
        return path

    # ----------------------------------------------------------- export

    def export(self, best: BestModel, data: FrameData, results):
        """Exports the model with the best validation score (its utterance-level posteriors)."""
        if best.setting is None:
            return None
        from ser_keras.models.kim_mtl import AUXILIARY_CLASSES, DEFAULT_FUNCTIONAL_THRESHOLD

        protocol, name = best.setting.split("/")
        network, variant = name.split("_", 1)
        label_names = {"emotion": data.class_names}
        for task in self.config.variants[variant]:
            label_names[task] = list(AUXILIARY_CLASSES[task])
        fold_dir = best.model_path.parent
        return self.export_best(
            best,
            frontend=data.frontend,
            label_names=label_names,
            serving_model=lambda model: model.utterance_model(),
            metadata={
                "network": network,
                "variant": VARIANT_TITLES[variant],
                "protocol": protocol,
                "data": results["configuration"]["data"],
                "emotion_probabilities": (
                    "mean of the frame-level emotion softmax over the utterance's frames (the "
                    "'mean' functional); the paper's utterance classifier is the ELM below"
                ),
                "elm": {
                    "backend": "numpy: ser_keras.models.elm.ExtremeLearningMachine, NOT part of "
                    "this SavedModel",
                    "inputs": "16 high-level features: max, min, mean and share of frames above "
                    f"{DEFAULT_FUNCTIONAL_THRESHOLD} of each emotion's frame posterior "
                    "(ser_keras.models.kim_mtl.utterance_functionals of the frame posteriors)",
                    "weights": str((fold_dir / "elm.npz").resolve()),
                },
            },
        )
