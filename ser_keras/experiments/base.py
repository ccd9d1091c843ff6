"""The shared base of the papers' experiments.

An experiment is one paper's protocol run end to end: corpora -> waveform
cache -> features -> settings x folds -> resumable `fit_and_evaluate` ->
reports -> export. `Experiment` holds what every protocol shares:

* the run folder (`open_run`: `run_config.json`, `--resume` checks) and,
  on a multi-worker cluster, who writes what;
* corpus loading through the waveform cache, with skipped files reported;
* `train_fold`: one fold through `ser_keras.training.runner.fit_and_evaluate`
  with the split manifest (`train_speakers`, `validation_speakers`,
  `test_speakers` as `corpus:speaker` with utterance counts) recorded next to
  the fold's metrics, and a refusal (`SpeakerLeakageError`) to train a fold
  whose test speakers appear in its training or validation data;
* progress ("setting k/N, fold j/M" with an estimate of the time left);
* the export of the model with the best validation score over every setting
  and fold (`BestModel`);
* the training recipe (`ser_keras.training.recipe`), the same for every
  experiment: `normalize_features` applies its input normalisation,
  `train_fold` its augmentation, optimisation and batch-norm recalibration,
  `export_best` serves its normalisation (an enrolment signature for
  per-speaker or per-corpus statistics, an in-graph layer per utterance),
  and `open_run`/`finish` record it.

Experiments are used from Python as well as from the apps:

    from ser_keras.experiments import FuSaveeCrossLanguage
    result = FuSaveeCrossLanguage(FuSaveeCrossLanguageConfig(epochs=3)).run()
    result.results["settings"]["stl"]["ua"]

This module imports TensorFlow only when an experiment runs.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from ser_keras.experiments.config import ExperimentConfig


class SpeakerLeakageError(RuntimeError):
    """A fold whose test speakers also appear in its training or validation data.

    Always a bug in the experiment's wiring, never a user's mistake: the run
    stops before training that fold.
    """


@dataclasses.dataclass
class ExperimentResult:
    """What `Experiment.run()` returns.

    Attributes:
        results: The content of `results.json`.
        out_dir: The run folder.
        export_path: The exported SavedModel version folder, or None.
    """

    results: dict
    out_dir: pathlib.Path
    export_path: pathlib.Path | None = None


# ---------------------------------------------------------- split manifest


def speaker_counts(utterances: Sequence, indices) -> list[dict]:
    """`[{"speaker": "corpus:speaker", "utterances": n}, ...]` of the given rows, sorted."""
    counts: dict[str, int] = {}
    for index in np.asarray(indices, dtype=np.int64).ravel():
        speaker = utterances[int(index)].speaker_id
        counts[speaker] = counts.get(speaker, 0) + 1
    return [{"speaker": speaker, "utterances": counts[speaker]} for speaker in sorted(counts)]


def split_manifest(utterances: Sequence, train, validation, test) -> dict:
    """The speakers of each part of a fold, with utterance counts.

    Args:
        utterances: The records the indices point into (`Utterance`s).
        train: Row indices of the training part.
        validation: Row indices of the validation part.
        test: Row indices of the test part.

    Returns:
        `{"train_speakers": [...], "validation_speakers": [...],
        "test_speakers": [...]}`, each a `speaker_counts` list.
    """
    return {
        "train_speakers": speaker_counts(utterances, train),
        "validation_speakers": speaker_counts(utterances, validation),
        "test_speakers": speaker_counts(utterances, test),
    }


def check_speaker_independence(manifest: dict, where: str) -> None:
    """Raises `SpeakerLeakageError` when a test speaker is also trained or validated on.

    Args:
        manifest: A `split_manifest`.
        where: The fold, for the message (e.g. `"stl, fold savee_DC"`).
    """
    test = {entry["speaker"] for entry in manifest["test_speakers"]}
    for part in ("train_speakers", "validation_speakers"):
        leaked = sorted(test & {entry["speaker"] for entry in manifest[part]})
        if leaked:
            raise SpeakerLeakageError(
                f"{where}: the test speakers {leaked} also appear in the "
                f"{part.split('_')[0]} data. Refusing to train a fold that is not "
                "speaker-independent."
            )


def check_disjoint_parts(train, validation, test, where: str) -> None:
    """Raises `SpeakerLeakageError` when a test row is also a training or validation row.

    The refusal of a protocol that is not speaker-independent by design (a
    random split of utterances): its parts must still not share a row.

    Args:
        train: Row indices of the training part.
        validation: Row indices of the validation part.
        test: Row indices of the test part.
        where: The fold, for the message.
    """
    test = set(np.asarray(test, dtype=np.int64).ravel().tolist())
    for part, indices in (("training", train), ("validation", validation)):
        shared = sorted(test & set(np.asarray(indices, dtype=np.int64).ravel().tolist()))
        if shared:
            raise SpeakerLeakageError(
                f"{where}: the test rows {shared[:10]}{' ...' if len(shared) > 10 else ''} "
                f"are also in the {part} data. Refusing to train a fold that tests on "
                "what it trains on."
            )


# ---------------------------------------------------------------- progress


class FoldProgress:
    """Prints "setting k/N, fold j/M" with an estimate of the time left.

    The estimate is the mean time of the folds trained so far in this process
    (folds reused from an earlier run take no time and do not count) times
    the folds left.

    Args:
        settings: The settings in run order.
        num_folds: Folds per setting.
        print_fn: Where the lines go.
    """

    def __init__(self, settings: Sequence[str], num_folds: int, print_fn=print):
        self.settings = list(settings)
        self.num_folds = int(num_folds)
        self.total = len(self.settings) * self.num_folds
        self.completed = 0
        self.trained_seconds = 0.0
        self.trained = 0
        self._print = print_fn
        self._started = None

    def begin(self, setting: str, fold_number: int, detail: str = "") -> None:
        """Announces fold `fold_number` (from 1) of `setting`."""
        position = self.settings.index(setting) + 1 if setting in self.settings else 0
        left = self.total - self.completed
        estimate = ""
        if self.trained:
            seconds = self.trained_seconds / self.trained * left
            estimate = f", about {format_duration(seconds)} left"
        self._print(
            f"[setting {position}/{len(self.settings)} {setting}, fold {fold_number}/"
            f"{self.num_folds}{estimate}]" + (f" {detail}" if detail else ""),
            flush=True,
        )
        self._started = time.monotonic()

    def end(self, reused: bool) -> None:
        """Marks the announced fold finished (`reused`: its result came from an earlier run)."""
        self.completed += 1
        if not reused and self._started is not None:
            self.trained_seconds += time.monotonic() - self._started
            self.trained += 1
        self._started = None


def format_duration(seconds: float) -> str:
    """`"45 s"`, `"12 min"`, `"2 h 05 min"`."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{int(minutes // 60)} h {int(minutes % 60):02d} min"


# ------------------------------------------------------------- best model


@dataclasses.dataclass
class BestModel:
    """The fold model with the best validation score seen so far, for the export.

    Attributes:
        setting: Its setting.
        fold: Its fold's name.
        validation_score: Its monitored validation score (e.g. UA, 0-1).
        model_path: Its `.keras` file.
    """

    setting: str | None = None
    fold: str | None = None
    validation_score: float = float("-inf")
    model_path: pathlib.Path | None = None

    def offer(self, setting: str, fold: str, validation_score, model_path) -> bool:
        """Keeps this model when its validation score beats the best so far (ties: the first)."""
        score = float("-inf") if validation_score is None else float(validation_score)
        if self.model_path is None or score > self.validation_score:
            self.setting, self.fold = setting, fold
            self.validation_score, self.model_path = score, pathlib.Path(model_path)
            return True
        return False


# -------------------------------------------------------------- experiment


class Experiment:
    """Base of the papers' experiments.

    Subclasses set `config_class`, `app_name` (the `apps/` program and the
    `app` recorded in `results.json`) and `export_name`, and implement
    `run()` with the building blocks below.

    Args:
        config: The configuration (an instance of `config_class`); None uses
            `config_class.from_preset(**overrides)`.
        **overrides: Configuration fields, when `config` is None.
    """

    config_class: ClassVar[type[ExperimentConfig]] = ExperimentConfig
    app_name: ClassVar[str] = "experiment"
    export_name: ClassVar[str | None] = None
    # The recipe fields (`ser_keras.training.recipe.RECIPE_FIELDS`) this
    # experiment cannot apply, with the reason; a configuration that changes
    # one of them is refused before any data is read.
    recipe_unsupported: ClassVar[dict[str, str]] = {}

    def __init__(self, config: ExperimentConfig | None = None, **overrides):
        if config is None:
            config = self.config_class.from_preset(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} takes a {self.config_class.__name__}. "
                f"Received: {type(config).__name__}"
            )
        self._check_recipe_support(config)
        self.config = config
        self.recipe = config.training_recipe()
        self._normalized = False
        self._normalization_fallback = None
        self.strategy = None
        self.state = None
        self.outputs = None
        self.progress: FoldProgress | None = None
        self._started = time.time()

    @classmethod
    def _check_recipe_support(cls, config) -> None:
        from ser_keras.experiments.config import ConfigError
        from ser_keras.training.recipe import RECIPES, TrainingRecipe

        recipe, plain = config.training_recipe(), TrainingRecipe()
        named = RECIPES[config.recipe]
        for field, reason in cls.recipe_unsupported.items():
            value = getattr(recipe, field)
            if value != getattr(plain, field):
                source = (
                    f"recipe {config.recipe!r} sets it to {value!r}"
                    if value == getattr(named, field)
                    else f"it was set to {value!r}"
                )
                raise ConfigError(
                    field,
                    f"is not applied by {cls.app_name} ({reason}); {source}. Leave it at "
                    f"{getattr(plain, field)!r}.",
                )

    # ------------------------------------------------------------ setup

    @property
    def cache_dir(self) -> pathlib.Path:
        from ser_keras.data.cache import default_cache_dir

        return pathlib.Path(self.config.cache_dir or default_cache_dir())

    @property
    def out_dir(self) -> pathlib.Path:
        """The folder this process writes (the run folder, or a worker's own)."""
        if self.state is not None:
            return self.state.out_dir
        return pathlib.Path(self.config.out)

    def log(self, message: str = "") -> None:
        """Prints a progress line (always; `quiet` only silences per-epoch lines)."""
        print(message, flush=True)

    def start_strategy(self):
        """Creates the distribution strategy; call it first in `run()`.

        `MultiWorkerMirroredStrategy` must exist before other TensorFlow
        operations run.
        """
        from ser_keras import cli

        self.strategy = cli.strategy_from_args(self.config)
        return self.strategy

    def check_batch_size(self, batch_size: int, field: str = "batch_size") -> None:
        """Checks that the global batch splits over the strategy's replicas."""
        from ser_keras.experiments.config import ConfigError

        if self.strategy is None:
            return
        from ser_keras.training.distribute import per_replica_batch_size

        try:
            per_replica_batch_size(batch_size, self.strategy)
        except ValueError as error:
            raise ConfigError(field, f"{batch_size}: {error}") from None

    def open_run(self, extra: dict | None = None):
        """Opens (or, with `resume`, reopens) the run folder; returns its `RunState`.

        The stored configuration is the config's `run_config()` plus `extra`
        (what was found in the data: counts, descriptions) and the app's name;
        resuming with a different one is refused with the differences named.
        """
        from ser_keras.cli import worker_outputs
        from ser_keras.training.runner import RunState

        self.outputs = worker_outputs(
            self.config.out, self.strategy, export_dir=self.config.export_dir
        )
        configuration = {
            "app": self.app_name,
            **self.config.run_config(),
            "training_recipe": self.recipe.to_dict(),
            **(extra or {}),
        }
        self.state = RunState(self.outputs.out_dir, configuration, resume=self.config.resume)
        return self.state

    # ----------------------------------------------------------- corpora

    def load_corpus(self, spec, name: str | None = None, listing=None):
        """Lists a corpus and decodes it through the waveform cache.

        Args:
            spec: A `CorpusSpec`.
            name: How the messages name it (default: its kind).
            listing: An already made `spec.load()` (e.g. filtered).

        Returns:
            `(CachedCorpus, skipped)`: the usable utterances and waveforms,
            and every skipped file as a dict (for `skipped.json`).
        """
        from ser_keras.cli import report_skipped
        from ser_keras.data.cache import WaveformCache

        listing = spec.load() if listing is None else listing
        cached = WaveformCache(self.cache_dir / "waveforms").load(
            listing.utterances, progress=not self.config.quiet
        )
        skipped = report_skipped(
            name or spec.kind, list(listing.skipped) + list(cached.skipped), listing.warnings
        )
        return cached, skipped

    def synthetic_root(self) -> pathlib.Path:
        """The folder of the generated default corpora (announced once)."""
        from ser_keras.cli import synthetic_root

        return synthetic_root(self.cache_dir)

    # ------------------------------------------------------------- folds

    # ------------------------------------------------------------ recipe

    def normalize_features(self, features, utterances, pad_value, *, source: str = "training"):
        """Applies the recipe's input normalisation to padded frame features.

        Also keeps what the export needs to serve it: for per-speaker or
        per-corpus normalisation, the pooled band statistics of the raw
        features as the fallback of the enrolment signature
        (`SpeakerNormalization`).

        Args:
            features: `[utterances, frames, bands]`, padded with `pad_value`.
            utterances: The records of the rows (`corpus`, `speaker_id`).
            pad_value: The front-end's padding value.
            source: The data, in words, for the export's fallback record.

        Returns:
            The normalised features (the same array when the recipe's
            normalisation is `"none"`).
        """
        recipe = self.recipe
        self._normalized = True
        if recipe.normalization == "none":
            return features
        if recipe.normalization in ("speaker", "corpus"):
            from ser_keras.export.saved_model import SpeakerNormalization

            self._normalization_fallback = SpeakerNormalization.from_features(
                features,
                pad_value,
                source=f"pooled band statistics of the {len(utterances)} {source} utterances "
                f"(all speakers), before {recipe.normalization} normalisation",
                group=recipe.normalization,
            )
        self.log(
            f"Normalisation: every band z-normalised per {recipe.normalization} over its own "
            "valid frames (training recipe; not in the papers)"
        )
        return recipe.normalize(features, utterances, pad_value)

    def normalize_sequences(self, sequences, utterances, pad_value, *, source: str = "training"):
        """`normalize_features` for variable-length utterances, each normalised whole.

        Args:
            sequences: One `[frames_i, bands]` array per utterance.
            utterances: Their records (`corpus`, `speaker_id`).
            pad_value: The front-end's padding value.
            source: The data, in words (for the export's fallback record).

        Returns:
            The normalised arrays, each of its utterance's length.
        """
        from ser_keras.features.framing import segment_features

        lengths = [len(array) for array in sequences]
        # One segment as long as the longest utterance: the padded
        # [utterances, frames, bands] array normalize_features takes.
        padded, _ = segment_features(sequences, segment_length=max(lengths), pad_value=pad_value)
        padded = self.normalize_features(padded, utterances, pad_value, source=source)
        return [row[:length].copy() for row, length in zip(padded, lengths, strict=True)]

    def recipe_line(self) -> str:
        """"Training recipe 'cpu': ..." for the run log, saying when options changed it."""
        from ser_keras.training.recipe import RECIPES

        named = RECIPES[self.config.recipe]
        changed = [
            f"{field.name}={getattr(self.recipe, field.name)!r}"
            for field in dataclasses.fields(named)
            if getattr(self.recipe, field.name) != getattr(named, field.name)
        ]
        name = repr(self.config.recipe) + (f" with {', '.join(changed)}" if changed else "")
        return f"Training recipe {name}: {self.recipe.describe()}"

    def _recipe_fit_options(self, train_split, *, epochs, batch_size, build_model, fit_options,
                            pad_value):
        """`fit_and_evaluate` options and model builder with the recipe applied."""
        from ser_keras.experiments.config import ConfigError

        recipe = self.recipe
        if recipe.normalization != "none" and not self._normalized:
            raise RuntimeError(
                f"{type(self).__name__} trains without calling normalize_features, so the "
                f"recipe's {recipe.normalization} normalisation would be silently skipped."
            )
        options = dict(fit_options)
        if recipe.spec_augment and options.get("augment") is None:
            inputs = train_split.inputs
            if not (isinstance(inputs, np.ndarray) and inputs.ndim == 3):
                raise ConfigError(
                    "spec_augment",
                    f"needs [utterances, frames, bands] inputs; {self.app_name} trains on "
                    f"{type(inputs).__name__} inputs.",
                )
            options["augment"] = recipe.augmentation(inputs, pad_value)
        options.setdefault("recalibrate_batch_norm", recipe.recalibrate_batch_norm)
        if not recipe.changes_optimization:
            return options, build_model
        from ser_keras.data.pipeline import num_batches

        steps = num_batches(len(train_split), batch_size)

        def build_with_recipe():
            model = build_model()
            return recipe.compile(model, model.optimizer, steps_per_epoch=steps, epochs=epochs)

        return options, build_with_recipe

    def start_progress(self, settings: Sequence[str], num_folds: int) -> FoldProgress:
        self.progress = FoldProgress(settings, num_folds, print_fn=print)
        return self.progress

    def train_fold(
        self,
        *,
        setting: str,
        fold_name: str,
        fold_number: int,
        utterances: Sequence,
        train_index,
        validation_index,
        test_index,
        make_split: Callable[[np.ndarray, str], object],
        build_model: Callable[[], object],
        class_names: Sequence[str],
        epochs: int,
        batch_size: int,
        patience: int | None = None,
        fold_dir: pathlib.Path | None = None,
        sidecar: dict | None = None,
        seed: int | None = None,
        speaker_independent: bool = True,
        pad_value: float | None = None,
        **fit_options,
    ) -> dict:
        """Trains (or reuses) one fold and returns its result with the split manifest.

        Args:
            setting: The setting's name.
            fold_name: The fold's name (its folder is `<setting>/fold_<name>`).
            fold_number: Its position, from 1 (for the progress line).
            utterances: The records the indices point into.
            train_index: Rows trained on.
            validation_index: Rows that select the checkpoint (training
                speakers only).
            test_index: Rows scored once, with the selected checkpoint.
            make_split: `(indices, part) -> Split`, `part` one of "train",
                "validation", "test"; the only way the fold's data is made,
                so the manifest describes exactly what is trained on.
            build_model: Returns a compiled model.
            class_names: The scored task's classes.
            epochs: Maximum epochs.
            batch_size: Global batch size.
            patience: Early-stopping patience (None: none).
            fold_dir: The fold's folder (default `<out>/<setting>/fold_<name>`).
            sidecar: Keyword arguments of `write_export_sidecar` (`frontend`,
                `label_names`, `name`, `metadata`) written next to
                `best.keras`, so that `apps.export` and `apps.predict` can
                use the fold's model; None writes none.
            seed: The fold's seed (None: the configuration's), e.g.
                `seed + repeat` for a protocol repeated with other seeds.
            speaker_independent: False for a protocol that splits utterances,
                not speakers (paper 003's random split): the manifest is
                still recorded, and the refusal is then for a row that is in
                the test part and in the training or validation part
                (`check_disjoint_parts`).
            pad_value: The features' padding value, for the recipe's
                augmentation (None: that of `sidecar["frontend"]`).
            **fit_options: More `fit_and_evaluate` arguments (`task`,
                `predict_fn`, `augment`, `monitor`, ...). The recipe
                (`self.recipe`) adds its augmentation (unless `augment` is
                given), its optimizer and label smoothing (the model from
                `build_model` is compiled again) and batch-norm recalibration.

        Returns:
            `fit_and_evaluate`'s result plus `fold`, `setting` and the
            manifest's `train_speakers`, `validation_speakers` and
            `test_speakers`.

        Raises:
            SpeakerLeakageError: A test speaker is in the training or
                validation rows (with `speaker_independent=False`: a test
                row is).
        """
        from ser_keras.training.runner import fit_and_evaluate

        train_index = np.asarray(train_index, dtype=np.int64)
        validation_index = np.asarray(validation_index, dtype=np.int64)
        test_index = np.asarray(test_index, dtype=np.int64)
        manifest = split_manifest(utterances, train_index, validation_index, test_index)
        if speaker_independent:
            check_speaker_independence(manifest, f"{setting}, fold {fold_name}")
        else:
            check_disjoint_parts(
                train_index, validation_index, test_index, f"{setting}, fold {fold_name}"
            )
        fold_dir = pathlib.Path(fold_dir or self.state.fold_dir(setting, fold_name))
        reused = (fold_dir / "result.json").exists()
        if self.progress is not None:
            test_speakers = ", ".join(entry["speaker"] for entry in manifest["test_speakers"])
            self.progress.begin(
                setting,
                fold_number,
                f"test {test_speakers}: "
                + ("already finished, reusing its result" if reused
                   else f"training on {train_index.size} utterances"),
            )
        train_split = make_split(train_index, "train")
        if pad_value is None and sidecar is not None and sidecar.get("frontend") is not None:
            pad_value = sidecar["frontend"].pad_value
        fit_options, build_model = self._recipe_fit_options(
            train_split,
            epochs=epochs,
            batch_size=batch_size,
            build_model=build_model,
            fit_options=fit_options,
            pad_value=pad_value,
        )
        result = fit_and_evaluate(
            build_model,
            train_split,
            make_split(validation_index, "validation"),
            make_split(test_index, "test"),
            fold_dir=fold_dir,
            class_names=class_names,
            epochs=epochs,
            batch_size=batch_size,
            seed=self.config.seed if seed is None else seed,
            patience=patience,
            verbose=0 if self.config.quiet else 2,
            strategy=self.strategy,
            **fit_options,
        )
        if not reused and sidecar is not None:
            from ser_keras.export.serving import write_export_sidecar

            write_export_sidecar(fold_dir / "best.keras", **sidecar)
        if self.progress is not None:
            self.progress.end(reused)
        result = dict(result)
        result.update(setting=setting, fold=fold_name, **manifest)
        return result

    # ----------------------------------------------------------- summary

    @staticmethod
    def fold_entry(result: dict) -> dict:
        """A fold's line in `results.json`: scores in percent, the split manifest."""
        validation = result.get("best_validation")
        return {
            "fold": result["fold"],
            "wa": 100 * result["wa"],
            "ua": 100 * result["ua"],
            "macro_f1": 100 * result["macro_f1"],
            "best_validation_ua": 100 * validation if validation is not None else None,
            "best_epoch": result.get("best_epoch"),
            "epochs_run": result.get("epochs_run"),
            "train_speakers": result["train_speakers"],
            "validation_speakers": result["validation_speakers"],
            "test_speakers": result["test_speakers"],
        }

    @classmethod
    def setting_summary(cls, fold_results: Sequence[dict], title: str) -> dict:
        """Mean and standard deviation over folds (percent), the folds and the pooled confusion."""
        from ser_keras.evaluation.metrics import mean_and_spread

        wa_mean, wa_std = mean_and_spread([100 * r["wa"] for r in fold_results])
        ua_mean, ua_std = mean_and_spread([100 * r["ua"] for r in fold_results])
        confusion = np.sum([np.asarray(r["confusion"]) for r in fold_results], axis=0)
        return {
            "title": title,
            "wa": wa_mean,
            "ua": ua_mean,
            "wa_std": wa_std,
            "ua_std": ua_std,
            "folds": [cls.fold_entry(result) for result in fold_results],
            "confusion": confusion.tolist(),
        }

    def finish(
        self, results: dict, best: BestModel, export_path, score_name: str = "validation_ua"
    ) -> ExperimentResult:
        """Records the export in `results`, writes `results.json` and says where it is.

        Args:
            results: The run's results (written as `results.json`).
            best: The model the run exported (or would have).
            export_path: The exported version folder, or None.
            score_name: The key of the exported model's validation score
                (percent) under `exported`.

        Returns:
            The `ExperimentResult`.
        """
        from ser_keras.evaluation import reports

        results["training_recipe"] = self.recipe.to_dict()
        if export_path is not None:
            results["export"] = str(export_path)
            results["exported"] = {
                "setting": best.setting,
                "fold": best.fold,
                score_name: 100 * best.validation_score,
            }
        reports.write_json_atomic(self.out_dir / "results.json", results)
        self.log(f"\nResults written to {self.out_dir} in {self.elapsed_seconds():.0f} s.")
        return ExperimentResult(results, self.out_dir, export_path)

    def elapsed_seconds(self) -> float:
        return round(time.time() - self._started, 1)

    def export_best(self, best: BestModel, *, frontend, label_names, metadata=None,
                    serving_model=None, **options):
        """Exports `best` for serving (TF Serving layout); returns the version folder or None.

        Nothing is exported with `export_dir=None`, on a worker that is not
        the chief, or when no fold was trained. `serving_model`, when given,
        turns the loaded fold model into the one exported (e.g.
        `KimMTL.utterance_model`).
        """
        if self.outputs is None or self.outputs.export_dir is None or best.model_path is None:
            return None
        import keras

        from ser_keras.cli import export_for_serving

        model = keras.models.load_model(str(best.model_path))
        if serving_model is not None:
            model = serving_model(model)
        normalization = self.recipe.normalization
        if normalization == "utterance":
            from ser_keras.features.normalization import UtteranceStandardization

            inputs = keras.Input(model.inputs[0].shape[1:], name="features")
            standardize = UtteranceStandardization(
                frontend.pad_value, name="utterance_standardization"
            )
            model = keras.Model(inputs, model(standardize(inputs)), name=model.name)
        elif (
            normalization in ("speaker", "corpus")
            and self._normalization_fallback is not None
            and "speaker_normalization" not in options
        ):
            options["speaker_normalization"] = self._normalization_fallback
        path = export_for_serving(
            model,
            self.outputs.export_dir,
            self.export_name,
            frontend=frontend,
            label_names=label_names,
            metadata={
                "app": self.app_name,
                "setting": best.setting,
                "fold": best.fold,
                "validation_score": 100 * best.validation_score,  # percent, as results.json
                "preset": self.config.preset,
                "training_recipe": self.recipe.to_dict(),
                **(metadata or {}),
            },
            **options,
        )
        self.log(
            f"\nExported the {best.setting} model of fold {best.fold} (the best validation "
            f"score of the run, {100 * best.validation_score:.2f}) to {path}"
        )
        return path
