"""Paper 004: the attention CNN-BLSTM on SAVEE, with EMO-DB added across languages.

The four settings of Table 2 in Fu et al.: single task (`stl`), multitask
with a speaker head (`mtl`), cross-language training with EMO-DB's six
emotions shared with SAVEE (`xl`), and both (`mtl_xl`), each evaluated
leave-one-speaker-out over SAVEE's four speakers. Without corpora, synthetic
eSpeak NG SAVEE- and EMO-DB-shaped corpora are generated (once, cached).

    from ser_keras.experiments import FuSaveeCrossLanguage, FuSaveeCrossLanguageConfig
    result = FuSaveeCrossLanguage(FuSaveeCrossLanguageConfig(epochs=3, folds=1)).run()

Reference:
    Fu, C., Liu, C., Ishi, C. T., Ishiguro, H. "An end-to-end multitask
    learning model to improve speech emotion recognition", EUSIPCO 2020.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from ser_keras.cli import reduced_note
from ser_keras.experiments import config as config_lib
from ser_keras.experiments.base import BestModel, Experiment, ExperimentResult
from ser_keras.experiments.config import ExperimentConfig, preset_field

# name: (speaker head, EMO-DB added to training, Table 2 row)
SETTINGS = {
    "stl": (False, False, "single task"),
    "mtl": (True, False, "multitask"),
    "xl": (False, True, "cross-language training"),
    "mtl_xl": (True, True, "multitask cross-language training"),
}

# "quick" is a REDUCED configuration that makes the default run finish in
# minutes on a 2-core CPU (printed at start so nobody mistakes it for the
# paper's); "paper" holds the paper's sizes and 300 epochs with early stopping
# on validation UA (the patience is ours: the paper gives none); "cpu" is the
# configuration for real results on a 2-core CPU in hours: the CPU-sized model with
# the "cpu" training recipe (ser_keras.training.recipe; README: run times).
PRESETS = {
    "quick": {
        "model_preset": "fu2021_cpu",
        "epochs": 10,
        "folds": 2,
        "patience": None,
        "batch_size": 64,
        "synthetic_per_emotion": 8,
        "synthetic_emodb_per_emotion": 4,
    },
    "paper": {
        "model_preset": "fu2021",
        "epochs": 300,
        "folds": None,
        "patience": 30,
        "batch_size": 64,
        "synthetic_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
    "cpu": {
        "model_preset": "fu2021_cpu",
        "recipe": "cpu",
        "epochs": 30,
        "folds": None,
        "patience": None,
        "batch_size": 64,
        "synthetic_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
}


@dataclasses.dataclass
class FuSaveeCrossLanguageConfig(ExperimentConfig):
    """Configuration of `FuSaveeCrossLanguage`.

    Args:
        savee: The corpus evaluated leave-one-speaker-out, `[KIND:]DIR` (a
            SAVEE folder, or a stand-in such as `ravdess:DIR`); None: a
            synthetic SAVEE-shaped corpus.
        emodb: EMO-DB folder added to training in the `xl` settings; None:
            synthetic (only when `savee` is None too).
        settings: Settings to run, from `SETTINGS`.
        model_preset: `AttentionCNNBLSTM` preset.
        epochs: Maximum epochs per fold.
        folds: Run only the first N folds (None: all).
        patience: Early-stopping patience in epochs (None: none).
        batch_size: Global batch size.
        validation_fraction: Share of the training speakers' utterances
            (stratified by emotion) that selects the checkpoint.
        num_frames: Frames of the log-mel input (the paper: 256).
        synthetic_per_emotion: Synthetic SAVEE size (utterances per emotion
            and speaker).
        synthetic_emodb_per_emotion: Synthetic EMO-DB size.
        **kwargs: `ExperimentConfig`'s options (`preset`, `seed`, `out`, ...).
    """

    PRESETS: ClassVar[dict] = PRESETS
    DEFAULT_OUT: ClassVar[str] = "runs/train_savee_crosslang"

    savee: str | None = None
    emodb: str | None = None
    settings: tuple[str, ...] = tuple(SETTINGS)
    model_preset: str = preset_field()
    epochs: int = preset_field()
    folds: int | None = preset_field()
    patience: int | None = preset_field()
    batch_size: int = preset_field()
    validation_fraction: float = 0.15
    num_frames: int = 256
    synthetic_per_emotion: int = preset_field()
    synthetic_emodb_per_emotion: int = preset_field()

    def validate(self) -> None:
        super().validate()
        self.settings = config_lib.check_names("settings", self.settings, tuple(SETTINGS))
        config_lib.check_integer_at_least("epochs", self.epochs, 1)
        config_lib.check_integer_at_least("folds", self.folds, 1, allow_none=True)
        config_lib.check_integer_at_least("patience", self.patience, 1, allow_none=True)
        config_lib.check_integer_at_least("batch_size", self.batch_size, 1)
        config_lib.check_fraction("validation_fraction", self.validation_fraction, 0.0, 0.5)
        config_lib.check_integer_at_least("num_frames", self.num_frames, 8)
        config_lib.check_integer_at_least("synthetic_per_emotion", self.synthetic_per_emotion, 2)
        config_lib.check_integer_at_least(
            "synthetic_emodb_per_emotion", self.synthetic_emodb_per_emotion, 1
        )
        from ser_keras.cli import corpus_specs

        # Parsed (and the folders checked) now, before any data is read.
        needs_emodb = any(SETTINGS[name][1] for name in self.settings)
        self._savee_spec = (
            corpus_specs([self.savee], "--savee", default_kind="savee")[0] if self.savee else None
        )
        if self.savee is None and self.emodb is not None:
            raise config_lib.ConfigError(
                "emodb", "was given without savee; give both, or neither."
            )
        if self.savee is not None and needs_emodb and self.emodb is None:
            raise config_lib.ConfigError(
                "emodb",
                "is needed: settings xl and mtl_xl add EMO-DB to training (or run only the "
                "settings stl,mtl).",
            )
        self._emodb_spec = (
            corpus_specs([self.emodb], "--emodb", default_kind="emodb")[0]
            if self.emodb and needs_emodb
            else None
        )


class FuSaveeCrossLanguage(Experiment):
    """Paper 004's protocol: four settings x leave-one-SAVEE-speaker-out.

    Model selection: a stratified share of the training speakers' utterances
    (`validation_fraction`) is held out; the checkpoint with the best
    validation UA is evaluated once on the test speaker. The speaker head
    covers every training speaker of the fold (EMO-DB's too in `mtl_xl`).
    The model with the best validation UA over all settings and folds is
    exported.

    Args:
        config: A `FuSaveeCrossLanguageConfig` (None: the `quick` preset with
            `overrides`).
        **overrides: Configuration fields.

    Reference:
        Fu et al., EUSIPCO 2020, Section 3 (settings, Table 2).
    """

    config_class: ClassVar[type] = FuSaveeCrossLanguageConfig
    app_name: ClassVar[str] = "train_savee_crosslang"
    export_name: ClassVar[str] = "attention_cnn_blstm"

    # ------------------------------------------------------------ data

    def _corpus_specs(self):
        config = self.config
        needs_emodb = any(SETTINGS[name][1] for name in config.settings)
        if config._savee_spec is not None:
            primary, emodb = config._savee_spec, config._emodb_spec
            description = f"{primary.kind} at {primary.directory}" + (
                f" + EMO-DB at {emodb.directory}" if emodb else ""
            )
            return primary, emodb, description
        from ser_keras.cli import synthetic_corpus_spec

        root = self.synthetic_root()
        primary = synthetic_corpus_spec(
            root, "savee", seed=config.seed, per_emotion=config.synthetic_per_emotion
        )
        emodb = None
        if needs_emodb:
            emodb = synthetic_corpus_spec(
                root, "emodb", seed=config.seed, per_emotion=config.synthetic_emodb_per_emotion
            )
        return primary, emodb, "synthetic (eSpeak NG) SAVEE- and EMO-DB-shaped corpora"

    def load_data(self):
        """Loads both corpora; returns a dict of utterances, labels, features, counts."""
        from ser_keras.corpora.labels import get_label_map
        from ser_keras.data.pipeline import compute_features

        primary_spec, emodb_spec, description = self._corpus_specs()
        self.log(f"Data: {description}")
        emotion_map = get_label_map("savee7")
        common_map = get_label_map("common6")

        primary, primary_skipped = self.load_corpus(primary_spec)
        labels = emotion_map.encode(primary.utterances)
        keep = labels >= 0
        unmapped = emotion_map.unmapped_counts(primary.utterances)
        if unmapped:
            self.log(f"  {primary_spec.kind}: labels outside SAVEE's seven, left out: {unmapped}")
        utterances = [u for u, k in zip(primary.utterances, keep, strict=True) if k]
        waveforms = [w for w, k in zip(primary.waveforms, keep, strict=True) if k]
        labels = labels[keep]
        if not utterances:
            raise ValueError(f"No usable utterances in {primary_spec.directory}.")
        num_primary = len(utterances)

        extra_skipped = []
        if emodb_spec is not None:
            emodb, extra_skipped = self.load_corpus(emodb_spec, "emodb")
            # Only EMO-DB's emotions shared with SAVEE (the paper drops boredom).
            shared = np.array(
                [
                    emotion_map.index(u.label) if common_map.index(u.label) >= 0 else -1
                    for u in emodb.utterances
                ],
                dtype=np.int32,
            )
            extra_keep = shared >= 0
            utterances += [u for u, k in zip(emodb.utterances, extra_keep, strict=True) if k]
            waveforms += [w for w, k in zip(emodb.waveforms, extra_keep, strict=True) if k]
            labels = np.concatenate([labels, shared[extra_keep]])
            self.log(
                f"  emodb: {len(utterances) - num_primary} utterances with SAVEE's shared six "
                f"emotions ({int((~extra_keep).sum())} left out: other emotions)"
            )

        frontend = self.frontend()
        self.log(f"Computing fu2021 log-mel features for {len(waveforms)} utterances ...")
        features = self.normalize_features(
            compute_features(frontend, waveforms), utterances, frontend.pad_value,
            source=description,
        )
        cropped = sum(
            frontend.num_frames_for_samples(len(w)) > self.config.num_frames for w in waveforms
        )
        self.log(
            f"  input: {self.config.num_frames} frames of {features.shape[2]} mels"
            + ("" if self.config.num_frames == 256 else " (the paper: 256)")
            + f"; {cropped} utterance(s) longer than that are cut"
        )
        return {
            "description": description,
            "utterances": utterances,
            "labels": labels.astype(np.int32),
            "features": features,
            "num_primary": num_primary,
            "class_names": list(emotion_map.classes),
            "frontend": frontend,
            "skipped": {"primary": primary_skipped, "emodb": extra_skipped},
        }

    def frontend(self):
        from ser_keras.features.logmel import LogMel

        return LogMel.from_preset("fu2021", num_frames=self.config.num_frames)

    def folds(self, data):
        """Leave-one-SAVEE-speaker-out folds, validation carved from the training speakers."""
        from ser_keras.data.splits import leave_one_speaker_out

        folds = leave_one_speaker_out(
            data["utterances"][: data["num_primary"]],
            validation="fraction",
            validation_fraction=self.config.validation_fraction,
            seed=self.config.seed,
        )
        return folds if self.config.folds is None else folds[: self.config.folds]

    # ------------------------------------------------------------- run

    def run(self) -> ExperimentResult:
        """Runs every setting on every fold, writes the reports, exports the best model."""
        config = self.config
        self.start_strategy()
        self.check_batch_size(config.batch_size)
        data = self.load_data()
        self.log(
            f"Configuration: preset {config.preset!r} (model preset {config.model_preset!r}, "
            f"{config.epochs} epochs, batch {config.batch_size}, "
            + (f"first {config.folds} folds" if config.folds else "all folds")
            + (f", early stopping after {config.patience} epochs" if config.patience else "")
            + ")"
            + reduced_note(config.preset == "quick")
        )
        self.log(self.recipe_line())
        folds = self.folds(data)
        num_primary = data["num_primary"]
        num_extra = len(data["utterances"]) - num_primary
        self.open_run(
            {"data": data["description"], "num_primary": num_primary, "num_extra": num_extra}
        )
        from ser_keras.evaluation import reports

        reports.write_json_atomic(self.out_dir / "skipped.json", data["skipped"])

        results = {"settings": {}}
        best = BestModel()
        self.start_progress(config.settings, len(folds))
        for setting in config.settings:
            with_speaker, crosslang, title = SETTINGS[setting]
            self.log(f"\n=== {setting}: {title} ===")
            fold_results = []
            for fold_number, fold in enumerate(folds, start=1):
                train_index = np.asarray(fold.train)
                if crosslang:
                    train_index = np.concatenate(
                        [train_index, num_primary + np.arange(num_extra)]
                    )
                result = self._train_setting_fold(
                    data, setting, with_speaker, fold, fold_number, train_index
                )
                fold_results.append(result)
                self.log(
                    f"[{setting}] fold {fold.name}: WA {100 * result['wa']:.2f}  "
                    f"UA {100 * result['ua']:.2f}  (best validation UA "
                    f"{100 * (result['best_validation'] or 0):.2f} at epoch "
                    f"{result['best_epoch']})"
                )
                best.offer(
                    setting,
                    fold.name,
                    result["best_validation"],
                    self.state.fold_dir(setting, fold.name) / "best.keras",
                )
            results["settings"][setting] = self.setting_summary(fold_results, title)
            reports.plot_confusion_matrix(
                np.asarray(results["settings"][setting]["confusion"]),
                data["class_names"],
                self.out_dir / f"confusion_{setting}.png",
                title=f"{title} (pooled over {len(fold_results)} folds)",
            )

        results.update(
            units="percent",
            class_names=data["class_names"],
            configuration=self.state.config,
            elapsed_seconds=self.elapsed_seconds(),
        )
        self.write_reports(results)
        export_path = self.export_best(
            best,
            frontend=data["frontend"],
            label_names={"emotion": data["class_names"]},
            metadata={"data": data["description"]},
        )
        return self.finish(results, best, export_path)

    def _train_setting_fold(self, data, setting, with_speaker, fold, fold_number, train_index):
        from ser_keras.models.attention_cnn_blstm import AttentionCNNBLSTM
        from ser_keras.training.runner import Split

        utterances, labels, features = data["utterances"], data["labels"], data["features"]
        # The speaker head covers every speaker of the training rows.
        speakers = sorted({utterances[i].speaker_id for i in train_index})
        speaker_index = {speaker: number for number, speaker in enumerate(speakers)}

        def make_split(indices, part):
            split_labels = {"emotion": labels[indices]}
            if with_speaker:
                split_labels["speaker"] = np.array(
                    [
                        -1 if part == "test" else speaker_index.get(utterances[i].speaker_id, -1)
                        for i in indices
                    ],
                    dtype=np.int32,
                )
            return Split(features[indices], split_labels)

        def build_model():
            model = AttentionCNNBLSTM.from_preset(
                self.config.model_preset,
                num_frames=features.shape[1],
                num_mels=features.shape[2],
                num_emotions=len(data["class_names"]),
                num_speakers=len(speakers) if with_speaker else 0,
            )
            model.compile(optimizer="rmsprop")
            return model

        return self.train_fold(
            setting=setting,
            fold_name=fold.name,
            fold_number=fold_number,
            utterances=utterances,
            train_index=train_index,
            validation_index=fold.validation,
            test_index=fold.test,
            make_split=make_split,
            build_model=build_model,
            class_names=data["class_names"],
            epochs=self.config.epochs,
            batch_size=self.config.batch_size,
            patience=self.config.patience,
            sidecar={
                "frontend": data["frontend"],
                "label_names": {"emotion": data["class_names"]},
                "name": self.export_name,
                "metadata": {"app": self.app_name, "setting": setting},
            },
        )

    def write_reports(self, results):
        """`results.md` (Table 2 layout, per fold, confusion matrices) and the settings plot."""
        from ser_keras.evaluation import reports

        class_names = results["class_names"]
        rows = [
            [
                entry["title"],
                f"{entry['wa']:.2f} ± {entry['wa_std']:.2f}",
                f"{entry['ua']:.2f} ± {entry['ua_std']:.2f}",
            ]
            for entry in results["settings"].values()
        ]
        table = reports.markdown_table(["setting", "WA", "UA"], rows)
        fold_rows = [
            [name, fold["fold"], f"{fold['wa']:.2f}", f"{fold['ua']:.2f}"]
            for name, entry in results["settings"].items()
            for fold in entry["folds"]
        ]
        fold_table = reports.markdown_table(["setting", "fold", "WA", "UA"], fold_rows)
        configuration = results["configuration"]
        num_folds = len(next(iter(results["settings"].values()))["folds"])
        chance = 100 / len(class_names)
        sections = [
            "# Attention CNN-BLSTM, leave-one-speaker-out (layout of Table 2, Fu et al. 2020)",
            "",
            f"Data: {configuration['data']}.",
            f"Preset {configuration['preset']} (model {configuration['model_preset']}), "
            f"{configuration['epochs']} epochs at most, {num_folds} leave-one-speaker-out "
            f"fold(s), seed {configuration['seed']}.",
            f"{len(class_names)} classes: chance is {chance:.2f} % UA.",
            "Mean ± standard deviation over folds, percent.",
            "",
            table,
            "",
            "## Per fold",
            "",
            fold_table,
        ]
        for entry in results["settings"].values():
            sections += [
                "",
                f"## Confusion matrix, {entry['title']} "
                "(rows: true, columns: predicted, % of row; layout of Tables 3-4)",
                "",
                reports.confusion_markdown(np.asarray(entry["confusion"]), class_names),
            ]
        reports.write_text_atomic(self.out_dir / "results.md", "\n".join(sections) + "\n")
        reports.plot_settings_comparison(
            results["settings"],
            self.out_dir / "settings_comparison.png",
            units="percent",
            chance=chance,
            title=f"Attention CNN-BLSTM (Fu et al. 2020), {num_folds} fold(s): "
            f"{configuration['data']}"[:110],
        )
        self.log("\n" + table)
