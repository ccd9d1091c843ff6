"""Paper 002: the multi-task semi-supervised adversarial autoencoder (AAE) and its baselines.

Trains and evaluates the model of Latif et al. (2020) and its baselines on a
labelled emotional corpus, with optional additional speech (no emotion
labels) for the auxiliary speaker and gender tasks and the unsupervised
phases (`SETTINGS`):

* `stl`: the AAE, single task (emotion); additional speech feeds the
  reconstruction and regularisation phases ("Proposed (Single Task)");
* `mtl`: the AAE, multi-task (emotion + speaker + gender), the paper's model;
* `ae`: the semi-supervised autoencoder without discriminator, multi-task;
* `cnn`: the supervised CNN (encoder + emotion classifier, labelled data only;
  see "Training budget of the CNN" below);
* `gender`, `speaker`: the AAE with one auxiliary task (Table 5's rows).

Segments of the log-mel spectrogram are trained on; utterances are scored by
averaging their segments' posteriors. Model selection (best epoch, learning
rate halving) looks at validation data from the training speakers only. The
speaker task is evaluated as verification: d-vectors of the speaker head's
last hidden layer, enrolment with `enrolment` utterances per speaker, EER
over the test fold's utterances plus held-out speakers of the additional
corpora (never trained on), as the paper does with LibriSpeech's test set.

Training budget of the CNN: the settings with additional speech train on the
fold's labelled plus additional segments, the CNN on the labelled ones only.
With one pass over its data per epoch the CNN would make far fewer optimizer
updates per epoch, and the shared schedule (`epochs`, the halving patience,
counted in epochs) would stop it after a fraction of the others' updates. By
default (`cnn_epoch="matched"`) an epoch of the CNN therefore cycles the
fold's labelled training segments up to the number of training segments of
the settings with additional speech in the same fold
(`ser_keras.data.splits.cycle_to_size`), so that every setting makes the same
number of updates per epoch and in all. `cnn_epoch="labelled"` keeps one pass
over the labelled segments per epoch. Each fold's `updates_per_epoch` and
`train_segments_per_epoch` are written to results.json.

The training recipe (`ser_keras.training.recipe`; none of it is in the
paper): its normalisation applies to every utterance's whole log-mel
spectrogram (labelled, additional and held-out speech, each speaker or
corpus over its own frames) before it is cut into segments, so that the
export, which standardises the whole utterance and then averages segment
posteriors, sees what training saw. SpecAugment masks the training segments
(pre-training included); AdamW and `peak_learning_rate` replace the
optimizer of every phase (pre-training included) and the paper's
restore-best-and-halve schedule halves them as it halves the paper's; batch
normalisation is recalibrated on the training segments after training.
The recipe's cosine schedule (with its warm-up) and label smoothing are not
applied (`AAEMultiTask.recipe_unsupported` gives the reasons; a
configuration that sets them is refused).

Without corpora, a synthetic EMO-DB-shaped corpus and synthetic unlabelled
English speech are generated with eSpeak NG (once, cached).

    from ser_keras.experiments import AAEMultiTask, AAEMultiTaskConfig
    result = AAEMultiTask(AAEMultiTaskConfig(settings=("mtl", "cnn"), folds=1)).run()

Reference:
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020
    (arXiv:1907.06078).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import ClassVar

import numpy as np

from ser_keras.cli import reduced_note
from ser_keras.corpora.labels import DEFAULT_LABEL_MAPS, get_label_map
from ser_keras.experiments import config as config_lib
from ser_keras.experiments.base import (
    BestModel,
    Experiment,
    ExperimentResult,
    check_speaker_independence,
    speaker_counts,
    split_manifest,
)
from ser_keras.experiments.config import ConfigError, ExperimentConfig, preset_field

# name: (variant of ser_keras.models.aae_mtl.VARIANTS, tasks, trains on the
#        additional speech, row title in the layout of Table 3, row of Table 5 or None)
SETTINGS = {
    "stl": ("aae_stl", ("emotion",), True, "Proposed (single task)", None),
    "mtl": (
        "aae_mtl",
        ("emotion", "speaker", "gender"),
        True,
        "Semi-supervised AAE (proposed, multi-task)",
        "Both",
    ),
    "ae": (
        "ae_mtl",
        ("emotion", "speaker", "gender"),
        True,
        "Semi-supervised AE (multi-task)",
        None,
    ),
    # The supervised CNN has no unsupervised phase and no auxiliary head:
    # speech without emotion labels would contribute nothing to it.
    "cnn": ("cnn_stl", ("emotion",), False, "CNN (single task)", None),
    "gender": ("aae_mtl", ("emotion", "gender"), True, "AAE, gender auxiliary task", "Gender"),
    "speaker": ("aae_mtl", ("emotion", "speaker"), True, "AAE, speaker auxiliary task", "Speaker"),
}
DEFAULT_SETTINGS = ("stl", "mtl", "ae", "cnn")
PROTOCOLS = ("loso", "kfold10")
GENERATOR_LOSSES = ("minimax", "non_saturating")
CNN_EPOCHS = ("matched", "labelled")
GENDERS = ("female", "male")
# The random stream of the held-out verification speakers: (seed, this).
VERIFICATION_STREAM = 7
# Losses per training phase, for the phase-loss figures.
PHASE_PANELS = (
    ("reconstruction", ("reconstruction_loss",)),
    ("regularisation", ("discriminator_loss", "generator_loss")),
    ("classification", ("emotion_loss", "speaker_loss", "gender_loss")),
)
PRETRAIN_PANEL = ("pre-training (additional speech)", ("speaker_loss", "gender_loss"))

# Run configurations; the model's sizes are `model_preset`, a preset of
# `ser_keras.models.aae_mtl.AAE_MTL_PRESETS` (the front-end takes its number
# of mel bands from it). "paper" holds the paper's numbers (Section 4.3): the
# latif2020 architecture (256-frame x 128-band segments), batch 32, SGD(1e-4)
# for every phase, restore-best-and-halve after 5 epochs without validation
# improvement until the learning rate falls below 1e-5, 20 enrolment
# utterances per speaker, 40 held-out verification speakers (LibriSpeech's
# test set). Not in the paper, ours: the cap of 300 epochs and 10
# pre-training epochs. "quick" is a REDUCED configuration that makes the
# default run finish in minutes on a 2-core CPU: the latif2020_cpu
# architecture, Adam(1e-3) (SGD at 1e-4 learns next to nothing in a few
# epochs), the first 2 folds. "cpu" is the configuration for real results on a
# 2-core CPU: the same architecture and optimizer with the "cpu" training
# recipe (ser_keras.training.recipe), every fold, more epochs (README: run
# times). "tiny" is smoke-test size (cpu_small) for tests.
PRESETS = {
    "quick": {
        "model_preset": "latif2020_cpu",
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-3}},
        "epochs": 8,
        "pretrain_epochs": 2,
        "batch_size": 32,
        "halving_patience": 3,
        "min_learning_rate": 1e-5,
        "folds": 2,
        "enrolment": 10,
        "verification_speakers": 2,
        "synthetic_per_emotion": 3,
        "synthetic_additional_speakers": 6,
        "synthetic_additional_per_speaker": 24,
    },
    "paper": {
        "model_preset": "latif2020",
        "optimizer": {"class_name": "SGD", "config": {"learning_rate": 1e-4}},
        "epochs": 300,
        "pretrain_epochs": 10,
        "batch_size": 32,
        "halving_patience": 5,
        "min_learning_rate": 1e-5,
        "folds": None,
        "enrolment": 20,
        "verification_speakers": 40,
        "synthetic_per_emotion": 8,
        "synthetic_additional_speakers": 12,
        "synthetic_additional_per_speaker": 40,
    },
    "cpu": {
        "model_preset": "latif2020_cpu",
        "recipe": "cpu",
        # The cpu recipe less what this model cannot take (recipe_unsupported):
        # the paper's restore-best-and-halve schedule stays, no label smoothing.
        "lr_schedule": "constant",
        "warmup_epochs": 0,
        "label_smoothing": 0.0,
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-3}},
        "epochs": 20,
        "pretrain_epochs": 3,
        "batch_size": 32,
        "halving_patience": 3,
        "min_learning_rate": 1e-5,
        "folds": None,
        "enrolment": 10,
        "verification_speakers": 4,
        "synthetic_per_emotion": 3,
        "synthetic_additional_speakers": 6,
        "synthetic_additional_per_speaker": 24,
    },
    "tiny": {
        "model_preset": "cpu_small",
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-3}},
        "epochs": 2,
        "pretrain_epochs": 1,
        "batch_size": 32,
        "halving_patience": 3,
        "min_learning_rate": 1e-5,
        "folds": 1,
        "enrolment": 5,
        "verification_speakers": 2,
        "synthetic_per_emotion": 2,
        "synthetic_additional_speakers": 4,
        "synthetic_additional_per_speaker": 8,
    },
}


@dataclasses.dataclass
class AAEMultiTaskConfig(ExperimentConfig):
    """Configuration of `AAEMultiTask`.

    Args:
        labelled: Emotional corpus trained on and evaluated, `KIND:DIR`
            (e.g. `emodb:~/emodb`); None: a synthetic EMO-DB-shaped corpus.
        label_map: Emotion classes of the labelled corpus (a
            `ser_keras.corpora.labels` map); None: the corpus kind's default
            (`DEFAULT_LABEL_MAPS`).
        additional: Speech without emotion labels, `KIND:DIR` each
            (`folder:LANG:DIR` for a folder of unlabelled speech); with
            `labelled` None: synthetic English speech.
        speaker_pattern: Regular expression giving the speaker from the file
            name in `folder:LANG:DIR` corpora (default: the folder name).
        additional_per_speaker: Train on at most N utterances of each
            additional speaker (random, by `seed`); None: all.
        protocol: `"loso"` (leave one speaker out, validation: a share of
            the training speakers' utterances) or `"kfold10"` (the paper's
            speaker-dependent 10 folds).
        settings: Settings to run, from `SETTINGS`.
        generator_loss: `"minimax"` (Eq. 5) or `"non_saturating"`.
        cnn_epoch: `"matched"` or `"labelled"` (module docstring).
        model_preset: Architecture, a key of
            `ser_keras.models.aae_mtl.AAE_MTL_PRESETS`.
        optimizer: Keras optimizer config for every phase.
        epochs: Maximum epochs per fold.
        pretrain_epochs: Epochs of speaker + gender pre-training on the
            additional speech (settings with auxiliary heads; 0: none).
        batch_size: Global batch size.
        halving_patience: Epochs without validation improvement before the
            best weights are restored and the learning rate halved.
        min_learning_rate: Training stops when the learning rate falls below it.
        folds: Run only the first N folds (None: all).
        enrolment: Enrolment utterances per speaker for verification.
        verification_speakers: Speakers of the additional corpora held out
            of all training, for speaker verification.
        validation_fraction: loso: share of the training speakers'
            utterances (stratified by emotion) held out for model selection.
        synthetic_per_emotion: Synthetic EMO-DB size (utterances per emotion
            and speaker).
        synthetic_additional_speakers: Speakers of the synthetic additional speech.
        synthetic_additional_per_speaker: Its utterances per speaker.
        **kwargs: `ExperimentConfig`'s options (`preset`, `seed`, `out`, ...).
    """

    PRESETS: ClassVar[dict] = PRESETS
    DEFAULT_OUT: ClassVar[str] = "runs/train_aae_mtl"
    # Which settings run does not change a fold's result: a resumed run may
    # run others (how many folds run is run control for every experiment).
    RUN_CONTROL: ClassVar[tuple[str, ...]] = ExperimentConfig.RUN_CONTROL + ("settings",)

    labelled: str | None = None
    label_map: str | None = None
    additional: tuple[str, ...] = ()
    speaker_pattern: str | None = None
    additional_per_speaker: int | None = None
    protocol: str = "loso"
    settings: tuple[str, ...] = DEFAULT_SETTINGS
    generator_loss: str = "minimax"
    cnn_epoch: str = "matched"
    model_preset: str = preset_field()
    optimizer: dict = preset_field()
    epochs: int = preset_field()
    pretrain_epochs: int = preset_field()
    batch_size: int = preset_field()
    halving_patience: int = preset_field()
    min_learning_rate: float = preset_field()
    folds: int | None = preset_field()
    enrolment: int = preset_field()
    verification_speakers: int = preset_field()
    validation_fraction: float = 0.15
    synthetic_per_emotion: int = preset_field()
    synthetic_additional_speakers: int = preset_field()
    synthetic_additional_per_speaker: int = preset_field()

    def validate(self) -> None:
        super().validate()
        check = config_lib.check_integer_at_least
        self.settings = config_lib.check_names("settings", self.settings, tuple(SETTINGS))
        config_lib.check_choice("protocol", self.protocol, PROTOCOLS)
        config_lib.check_choice("generator_loss", self.generator_loss, GENERATOR_LOSSES)
        config_lib.check_choice("cnn_epoch", self.cnn_epoch, CNN_EPOCHS)
        check("epochs", self.epochs, 1)
        check("pretrain_epochs", self.pretrain_epochs, 0)
        check("batch_size", self.batch_size, 1)
        check("halving_patience", self.halving_patience, 1)
        config_lib.check_at_least("min_learning_rate", self.min_learning_rate, 0.0)
        check("folds", self.folds, 1, allow_none=True)
        check("enrolment", self.enrolment, 1)
        check("verification_speakers", self.verification_speakers, 0)
        check("additional_per_speaker", self.additional_per_speaker, 1, allow_none=True)
        check("synthetic_per_emotion", self.synthetic_per_emotion, 1)
        check("synthetic_additional_speakers", self.synthetic_additional_speakers, 1)
        check("synthetic_additional_per_speaker", self.synthetic_additional_per_speaker, 1)
        config_lib.check_fraction("validation_fraction", self.validation_fraction, 0.0, 0.5)
        if self.label_map is not None:
            try:
                get_label_map(self.label_map)
            except ValueError as error:
                raise ConfigError("label_map", str(error)) from None
        self.additional = tuple(self.additional or ())
        self._check_corpora()

    def _check_corpora(self) -> None:
        """Parses the corpus arguments (and checks their folders) before any data is read."""
        from ser_keras.cli import corpus_specs

        self._labelled_spec, self._additional_specs = None, []
        if self.labelled is None:
            if self.additional:
                raise ConfigError(
                    "additional", "was given without --labelled; give both, or neither."
                )
            return
        (self._labelled_spec,) = corpus_specs([self.labelled], "--labelled")
        if self._labelled_spec.kind == "folder":
            raise ConfigError(
                "labelled",
                f"needs a corpus with emotion labels; {self.labelled!r} is a folder of "
                "unlabelled speech (give it with --additional).",
            )
        if self.label_map is None and self._labelled_spec.kind not in DEFAULT_LABEL_MAPS:
            raise ConfigError(
                "label_map",
                f"is needed: there is no default label map for a {self._labelled_spec.kind!r} "
                "corpus.",
            )
        self._additional_specs = corpus_specs(self.additional, "--additional")

    @property
    def label_map_name(self) -> str:
        """`label_map`, or the labelled corpus kind's default (EMO-DB's when synthetic)."""
        if self.label_map is not None:
            return self.label_map
        kind = self._labelled_spec.kind if self._labelled_spec is not None else "emodb"
        return DEFAULT_LABEL_MAPS[kind]


class AAEMultiTask(Experiment):
    """Paper 002's protocol: the settings x leave-one-speaker-out (or the paper's 10 folds).

    The settings train on the same folds. Model selection (the best epoch
    and the learning-rate halving) looks at the fold's validation part only,
    carved from the training speakers; the test speaker is scored once with
    the selected checkpoint. Under `protocol="loso"` a fold whose test speaker
    is trained or validated on is refused (`SpeakerLeakageError`), and the
    held-out verification speakers are never trained on. The model with the
    best validation UA over all settings and folds is exported (waveform ->
    utterance posteriors of the emotion head, and of the gender head when it
    has one).

    Args:
        config: An `AAEMultiTaskConfig` (None: the `quick` preset with
            `overrides`).
        **overrides: Configuration fields.

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Sections 4-6.
    """

    config_class: ClassVar[type] = AAEMultiTaskConfig
    app_name: ClassVar[str] = "train_aae_mtl"
    export_name: ClassVar[str] = "aae_mtl"
    recipe_unsupported: ClassVar[dict[str, str]] = {
        "lr_schedule": "the paper's schedule restores the best weights and halves every "
        "phase's learning rate after a validation plateau; a cosine schedule cannot be halved",
        "warmup_epochs": "it belongs to the cosine schedule, which the paper's "
        "restore-best-and-halve schedule excludes",
        "label_smoothing": "AAEMultiTaskModel computes its own masked classification losses, "
        "which take no label smoothing",
    }

    # ------------------------------------------------------------ data

    def corpus_specs(self):
        """`(labelled spec, additional specs, description of the data)`."""
        config = self.config
        if config._labelled_spec is not None:
            labelled, additional = config._labelled_spec, config._additional_specs
            description = f"{labelled.kind} at {labelled.directory}"
            if additional:
                description += " + additional " + ", ".join(
                    f"{spec.kind} at {spec.directory}" for spec in additional
                )
            return labelled, additional, description
        from ser_keras.cli import synthetic_corpus_spec

        root = self.synthetic_root()
        emodb = synthetic_corpus_spec(
            root, "emodb", seed=config.seed, per_emotion=config.synthetic_per_emotion
        )
        # Through its manifest, which records the voices' genders.
        extra = synthetic_corpus_spec(
            root,
            "folder",
            seed=config.seed,
            language="en",
            num_speakers=config.synthetic_additional_speakers,
            per_speaker=config.synthetic_additional_per_speaker,
            via_manifest=True,
        )
        return (
            emodb,
            [extra],
            "synthetic (eSpeak NG) EMO-DB-shaped corpus + synthetic unlabelled English speech",
        )

    def model_architecture(self) -> dict:
        """The `model_preset`'s architecture arguments."""
        from ser_keras.models.aae_mtl import get_preset

        return get_preset(self.config.model_preset)

    def frontend(self):
        """The latif log-mel front-end with the model's number of mel bands."""
        from ser_keras.features.logmel import LogMel

        return LogMel.from_preset("latif", num_mels=self.model_architecture()["num_mels"])

    def _additional_listing(self, spec):
        if spec.kind != "folder":
            return spec.load()
        from ser_keras.corpora import load_corpus

        options = {"language": spec.language, "corpus": spec.directory.name or "folder"}
        if self.config.speaker_pattern:
            options["speaker_pattern"] = self.config.speaker_pattern
        return load_corpus("folder", spec.directory, **options)

    def load_data(self) -> dict:
        """Corpora -> waveforms -> held-out speakers -> log-mel segments, with every label."""
        from ser_keras.data.pipeline import compute_features
        from ser_keras.data.splits import cap_per_speaker, choose_held_out_speakers
        from ser_keras.features.framing import segment_features

        config = self.config
        labelled_spec, additional_specs, description = self.corpus_specs()
        emotion_map = get_label_map(config.label_map_name)
        class_names = list(emotion_map.classes)
        self.log(
            f"Data: {description}; emotion classes ({config.label_map_name}): {class_names}"
        )
        skipped = {}
        cached, skipped[labelled_spec.kind] = self.load_corpus(labelled_spec)
        emotion = emotion_map.encode(cached.utterances)
        unmapped = emotion_map.unmapped_counts(cached.utterances)
        if unmapped:
            self.log(
                f"  {labelled_spec.kind}: labels outside {config.label_map_name}, left out: "
                f"{unmapped}"
            )
        keep = np.flatnonzero(emotion >= 0)
        utterances = [cached.utterances[i] for i in keep]
        waveforms = [cached.waveforms[i] for i in keep]
        if not utterances:
            raise ValueError(
                f"No utterance of {labelled_spec.directory} has one of the "
                f"{config.label_map_name} emotions {class_names}."
            )
        num_labelled = len(utterances)

        extra_utterances, extra_waveforms = [], []
        for spec in additional_specs:
            name = f"{spec.kind}:{spec.directory}"
            extra, skipped[name] = self.load_corpus(spec, name, self._additional_listing(spec))
            extra_utterances += extra.utterances
            extra_waveforms += extra.waveforms
            self.log(
                f"  additional {name}: {len(extra.utterances)} utterances of "
                f"{len({u.speaker_id for u in extra.utterances})} speakers"
            )
        # Verification speakers keep all their utterances (enrolment needs
        # many); additional_per_speaker caps the training speakers only.
        held_out = choose_held_out_speakers(
            extra_utterances,
            config.verification_speakers,
            more_than=config.enrolment,
            seed=[config.seed, VERIFICATION_STREAM],
        )
        note = None
        if extra_utterances and len(held_out) < config.verification_speakers:
            note = (
                f"{len(held_out)} of the {config.verification_speakers} verification speakers "
                f"asked for: only {len(held_out)} additional speaker(s) have more than "
                f"{config.enrolment} utterances (enrolment plus at least one test utterance)"
            )
            self.log(f"  note: {note}")
        if held_out:
            self.log(f"  held out for speaker verification only: {held_out}")
        if config.additional_per_speaker is not None:
            is_held = [u.speaker_id in held_out for u in extra_utterances]
            trained = [i for i, h in enumerate(is_held) if not h]
            kept = cap_per_speaker(
                [extra_utterances[i] for i in trained], config.additional_per_speaker, config.seed
            )
            order = [trained[i] for i in kept] + [i for i, h in enumerate(is_held) if h]
            extra_utterances = [extra_utterances[i] for i in order]
            extra_waveforms = [extra_waveforms[i] for i in order]
            self.log(
                f"  additional training speech capped at {config.additional_per_speaker} "
                f"utterances per speaker: {len(kept)} utterances"
            )

        utterances += extra_utterances
        frontend = self.frontend()
        segment_length = int(self.model_architecture()["num_frames"])
        self.log(f"Computing log-mel features for {len(utterances)} utterances ...")
        features = compute_features(frontend, waveforms + extra_waveforms)
        if self.recipe.normalization != "none":
            features = self.normalize_sequences(
                features, utterances, frontend.pad_value, source=description
            )
        segments, segment_utterance = segment_features(
            features, segment_length=segment_length, pad_value=frontend.pad_value
        )
        del features
        self.log(
            f"  {len(segments)} segments of {segment_length} frames "
            f"({len(segments) / len(utterances):.2f} per utterance)"
        )
        emotion_all = np.full(len(utterances), -1, dtype=np.int32)
        emotion_all[:num_labelled] = emotion[keep]
        speaker_ids = np.array([u.speaker_id for u in utterances])
        verification_index = np.flatnonzero(np.isin(speaker_ids, held_out))
        return {
            "description": description,
            "corpus_kind": labelled_spec.kind,
            "class_names": class_names,
            "frontend": frontend,
            "segment_length": segment_length,
            "utterances": utterances,
            "num_labelled": num_labelled,
            "emotion": emotion_all,
            "gender": np.array(
                [GENDERS.index(u.gender) if u.gender in GENDERS else -1 for u in utterances],
                dtype=np.int32,
            ),
            "speaker_ids": speaker_ids,
            "segments": segments,
            "segment_utterance": segment_utterance,
            "held_out_speakers": held_out,
            "verification_note": note,
            "verification_index": verification_index,
            "additional_train_index": np.setdiff1d(
                np.arange(num_labelled, len(utterances)), verification_index
            ),
            "skipped": skipped,
        }

    def folds(self, data) -> list:
        """The protocol's folds over the labelled utterances (the same for every setting)."""
        from ser_keras.data.splits import leave_one_speaker_out, speaker_dependent_kfold

        labelled = data["utterances"][: data["num_labelled"]]
        labels = data["emotion"][: data["num_labelled"]]
        if self.config.protocol == "loso":
            folds = leave_one_speaker_out(
                labelled,
                validation="fraction",
                validation_fraction=self.config.validation_fraction,
                seed=self.config.seed,
                labels=labels,
            )
        else:
            folds = speaker_dependent_kfold(labelled, labels, k=10, seed=self.config.seed)
        return folds if self.config.folds is None else folds[: self.config.folds]

    # ------------------------------------------------------------ model

    def build_model(self, setting: str, num_classes: dict):
        """A compiled `AAEMultiTaskModel` for `setting` (its variant, its tasks' heads)."""
        import keras

        from ser_keras.models.aae_mtl import build_aae_model

        variant, tasks, _, _, _ = SETTINGS[setting]
        model = build_aae_model(
            {task: num_classes[task] for task in tasks},
            variant,
            self.config.model_preset,
            generator_loss=self.config.generator_loss,
            seed=self.config.seed,
            name=setting,
        )
        # A copy: `keras.optimizers.get` rewrites the dict it is given.
        model.compile(optimizer=keras.optimizers.get(copy.deepcopy(self.config.optimizer)))
        return model

    # ------------------------------------------------------------- run

    def run(self) -> ExperimentResult:
        """Runs every setting on every fold, writes the reports, exports the best model."""
        config = self.config
        self.start_strategy()
        self.check_batch_size(config.batch_size)
        architecture = self.model_architecture()
        self.log(
            f"Configuration: preset {config.preset!r} (model {config.model_preset!r}, "
            f"{architecture['num_frames']}-frame x {architecture['num_mels']}-band segments, "
            f"{config.optimizer['class_name']}({config.optimizer['config']['learning_rate']}), "
            f"at most {config.epochs} epochs, {config.pretrain_epochs} pre-training epochs, "
            f"batch {config.batch_size}, protocol {config.protocol})"
            + reduced_note(config.preset != "paper")
        )
        self.log(self.recipe_line())
        if "cnn" in config.settings:
            self.log(
                f"CNN budget (--cnn-epoch {config.cnn_epoch}): "
                + (
                    "each epoch cycles the labelled training segments up to the training "
                    "segments of the settings with additional speech in the same fold (as "
                    "many optimizer updates per epoch)"
                    if config.cnn_epoch == "matched"
                    else "one pass over the labelled training segments per epoch"
                )
            )
        data = self.load_data()
        folds = self.folds(data)
        self.open_run(
            {
                "data": data["description"],
                "label_map": config.label_map_name,
                "num_labelled": data["num_labelled"],
                "num_additional": len(data["utterances"]) - data["num_labelled"],
                "held_out_verification_speakers": data["held_out_speakers"],
            }
        )
        from ser_keras.evaluation import reports

        reports.write_json_atomic(self.out_dir / "skipped.json", data["skipped"])

        results = {"settings": {}}
        best = BestModel()
        self.start_progress(config.settings, len(folds))
        for setting in config.settings:
            variant, tasks, _, title, _ = SETTINGS[setting]
            self.log(f"\n=== {setting}: {title} (variant {variant}, tasks {list(tasks)}) ===")
            fold_results, histories, pretrain_histories = [], {}, {}
            for fold_number, fold in enumerate(folds, start=1):
                result = self.train_setting_fold(data, setting, fold, fold_number)
                fold_dir = self.state.fold_dir(setting, fold.name)
                histories[fold.name] = reports.read_history_csv(fold_dir / "history.csv")
                pretrain_path = fold_dir / "pretrain_history.json"
                if pretrain_path.exists():
                    pretrain_histories[fold.name] = json.loads(pretrain_path.read_text())
                fold_results.append(result)
                best.offer(setting, fold.name, result["best_validation"], fold_dir / "best.keras")
            results["settings"][setting] = self.summarize_setting(setting, fold_results)
            reports.plot_confusion_matrix(
                np.asarray(results["settings"][setting]["confusion"]),
                data["class_names"],
                self.out_dir / f"confusion_{setting}.png",
                title=f"{title} (pooled over {len(fold_results)} folds)",
            )
            panels = [(name, keys, histories) for name, keys in PHASE_PANELS]
            if any(pretrain_histories.values()):
                panels.insert(0, (*PRETRAIN_PANEL, pretrain_histories))
            reports.plot_loss_panels(
                panels,
                self.out_dir / f"phase_losses_{setting}.png",
                f"{title}: losses per phase ({len(fold_results)} folds; dashed = validation)",
            )

        eer_setting = next(
            (
                name
                for name in ("mtl", "ae", "speaker")
                if results["settings"].get(name, {}).get("eer") is not None
            ),
            None,
        )
        results.update(
            eer=results["settings"][eer_setting]["eer"] if eer_setting else None,
            eer_setting=eer_setting,
            units="percent",
            class_names=data["class_names"],
            protocol=config.protocol,
            configuration=self.state.config,
            verification_note=data["verification_note"],
            elapsed_seconds=self.elapsed_seconds(),
        )
        self.write_reports(results, data["corpus_kind"])
        export_path = self.export(best, data)
        return self.finish(results, best, export_path)

    def train_setting_fold(self, data, setting: str, fold, fold_number: int) -> dict:
        """Trains (or reuses) one fold of one setting; returns its `train_fold` result.

        The result also holds the fold's entry extras (segment counts,
        updates per epoch, verification).
        """
        from ser_keras.training.callbacks import RestoreBestAndHalveLearningRate
        from ser_keras.training.runner import Split

        config = self.config
        variant, tasks, uses_additional, _, _ = SETTINGS[setting]
        segments, segment_utterance = data["segments"], data["segment_utterance"]
        speaker_ids, extra_train = data["speaker_ids"], data["additional_train_index"]
        train_index = np.asarray(fold.train)
        if uses_additional:
            train_index = np.concatenate([train_index, extra_train])
        self._check_held_out(data, setting, fold, train_index)

        # The speaker head: one class per speaker of the fold's training side.
        speakers = sorted(
            set(speaker_ids[np.concatenate([fold.train, fold.validation])].tolist())
            | (set(speaker_ids[extra_train].tolist()) if uses_additional else set())
        )
        speaker_index = {speaker: number for number, speaker in enumerate(speakers)}
        task_labels = {
            "emotion": data["emotion"],
            "speaker": np.array(
                [speaker_index.get(s, -1) for s in speaker_ids.tolist()], dtype=np.int32
            ),
            "gender": data["gender"],
        }
        num_classes = {
            "emotion": len(data["class_names"]),
            "speaker": max(2, len(speakers)),
            "gender": len(GENDERS),
        }

        def segment_rows(utterance_indices):
            return np.flatnonzero(np.isin(segment_utterance, utterance_indices))

        # Training segments per epoch. A setting without the additional speech
        # (cnn) is matched by default to those with it: as many segments per
        # epoch, hence as many optimizer updates.
        labelled_segments = len(segment_rows(fold.train))
        train_segments = epoch_size = len(segment_rows(train_index))
        matched_size = None
        if not uses_additional and config.cnn_epoch == "matched":
            matched_size = len(segment_rows(np.concatenate([fold.train, extra_train])))
            epoch_size = max(epoch_size, matched_size)
        updates_per_epoch = -(-epoch_size // config.batch_size)

        def make_split(indices, part):
            from ser_keras.data.splits import cycle_to_size

            rows = segment_rows(indices)
            if part == "test":
                return Split(
                    {"segments": segments[rows], "utterance_ids": segment_utterance[rows]},
                    {"emotion": data["emotion"][np.sort(indices)]},
                )
            if part == "train" and matched_size is not None:
                rows = cycle_to_size(rows, matched_size, [config.seed, fold_number])
            owners = segment_utterance[rows]
            return Split(segments[rows], {task: task_labels[task][owners] for task in tasks})

        fold_dir = self.state.fold_dir(setting, fold.name)
        auxiliary = [task for task in tasks if task != "emotion"]
        pretrain = (
            auxiliary
            if config.pretrain_epochs > 0 and uses_additional and len(extra_train)
            else []
        )

        def build_model():
            model = self.build_model(setting, num_classes)
            if pretrain:
                self._pretrain(model, fold_dir, pretrain, segment_rows(extra_train), data,
                               task_labels)
            return model

        def predict_fn(model, inputs):
            if not isinstance(inputs, dict):
                # Validation segments (the batch-norm recalibration's check):
                # segment posteriors, as in the validation UA that selects
                # the checkpoint.
                return model.predict(inputs, batch_size=config.batch_size, verbose=0)["emotion"]
            _, posteriors = model.predict_utterances(
                inputs["segments"], inputs["utterance_ids"], batch_size=config.batch_size
            )
            return posteriors["emotion"]

        if not (fold_dir / "result.json").exists():
            self.log(
                f"[{setting}] fold {fold.name}: training on {train_segments} segments of "
                f"{len(train_index)} utterances"
                + (
                    f", cycled to {epoch_size} segments per epoch "
                    f"({epoch_size / labelled_segments:.2f} passes, as many as the settings "
                    "with additional speech: --cnn-epoch matched)"
                    if epoch_size > labelled_segments and not uses_additional
                    else ""
                )
                + f", {updates_per_epoch} updates per epoch"
                + (f" after {config.pretrain_epochs} pre-training epochs" if pretrain else "")
            )
        result = self.train_fold(
            setting=setting,
            fold_name=fold.name,
            fold_number=fold_number,
            utterances=data["utterances"],
            train_index=train_index,
            validation_index=fold.validation,
            test_index=fold.test,
            make_split=make_split,
            build_model=build_model,
            class_names=data["class_names"],
            epochs=config.epochs,
            batch_size=config.batch_size,
            # The paper's 10 folds hold every speaker (speaker-dependent).
            speaker_independent=config.protocol == "loso",
            pad_value=data["frontend"].pad_value,
            monitor="val_emotion_ua",
            predict_fn=predict_fn,
            extra_callbacks=[
                RestoreBestAndHalveLearningRate(
                    monitor="val_emotion_ua",
                    patience=config.halving_patience,
                    min_learning_rate=config.min_learning_rate,
                )
            ],
        )
        test_rows = segment_rows(fold.test)
        result.update(
            labelled_train_segments=int(labelled_segments),
            train_segments_per_epoch=int(epoch_size),
            updates_per_epoch=int(updates_per_epoch),
            num_test_utterances=int(len(fold.test)),
            num_test_segments=int(len(test_rows)),
        )
        if "speaker" in tasks:
            result["verification"] = self.verification(
                data, fold_dir, np.concatenate([fold.test, data["verification_index"]])
            )
        eer = (result.get("verification") or {}).get("eer")
        self.log(
            f"[{setting}] fold {fold.name}: WA {100 * result['wa']:.2f}  "
            f"UA {100 * result['ua']:.2f}"
            + (
                f"  EER {100 * eer:.2f}"
                if eer is not None
                else (
                    f"  EER n/a ({result['verification'].get('reason')})"
                    if "verification" in result
                    else ""
                )
            )
            + f"  (best validation UA {100 * (result['best_validation'] or 0):.2f} at epoch "
            f"{result['best_epoch']})"
        )
        return result

    def _check_held_out(self, data, setting, fold, train_index) -> None:
        """Refuses a fold that trains or validates on a held-out verification speaker."""
        if len(data["verification_index"]):
            manifest = split_manifest(
                data["utterances"], train_index, fold.validation, data["verification_index"]
            )
            check_speaker_independence(
                manifest, f"{setting}, fold {fold.name} (held-out verification speakers)"
            )

    def _pretrain(self, model, fold_dir, tasks, rows, data, task_labels) -> None:
        """Section 4.3: speaker and gender classification on the additional speech first.

        Those weights start the emotional training; they are kept in the
        fold's folder, so that a resumed fold starts from the same weights.
        The training recipe's augmentation and optimizer apply here too.
        """
        from ser_keras.data.pipeline import make_dataset, num_batches
        from ser_keras.evaluation import reports
        from ser_keras.utils.atomic import atomic_path

        recipe = self.recipe
        if recipe.changes_optimization:
            # The recipe's optimizer for the pre-training (`train_fold` gives
            # the emotional training a fresh one); compiled before the saved
            # weights load, so that their optimizer state matches.
            recipe.compile(
                model,
                copy.deepcopy(self.config.optimizer),
                steps_per_epoch=num_batches(len(rows), self.config.batch_size),
                epochs=self.config.pretrain_epochs,
            )
        weights = fold_dir / "pretrained.weights.h5"
        if weights.exists():
            model.load_weights(str(weights))
            return
        owners = data["segment_utterance"][rows]
        segments = data["segments"][rows]
        dataset = make_dataset(
            segments,
            {task: task_labels[task][owners] for task in tasks},
            batch_size=self.config.batch_size,
            shuffle=True,
            seed=self.config.seed,
            augment=recipe.augmentation(segments, data["frontend"].pad_value),
        )
        history = model.pretrain_auxiliary(
            dataset, tasks=tuple(tasks), epochs=self.config.pretrain_epochs, shuffle=False,
            verbose=0,
        )
        reports.write_json_atomic(fold_dir / "pretrain_history.json", history.history)
        # Atomic: a kill mid-write must not leave a truncated file that a
        # resumed run would fail to load (it then simply pre-trains again).
        with atomic_path(weights, suffix=".tmp.weights.h5") as temporary:
            model.save_weights(str(temporary))

    def verification(self, data, fold_dir, utterance_indices) -> dict:
        """EER of the fold's best model (`speaker_head_eer`); cached in `verification.json`.

        The trial list holds the fold's test utterances and those of the
        held-out verification speakers, none of them trained on (under loso).
        """
        path = fold_dir / "verification.json"
        if path.exists():
            return json.loads(path.read_text())
        import keras

        from ser_keras.evaluation import reports
        from ser_keras.evaluation.verification import speaker_head_eer

        model = keras.models.load_model(str(fold_dir / "best.keras"))
        rows = np.flatnonzero(np.isin(data["segment_utterance"], utterance_indices))
        result = speaker_head_eer(
            model,
            data["segments"][rows],
            data["segment_utterance"][rows],
            data["speaker_ids"],
            num_enrolment=self.config.enrolment,
            seed=self.config.seed,
            batch_size=self.config.batch_size,
        )
        result["speakers"] = speaker_counts(data["utterances"], utterance_indices)
        reports.write_json_atomic(path, result)
        return json.loads(path.read_text())

    # ----------------------------------------------------------- reports

    def summarize_setting(self, setting: str, fold_results) -> dict:
        """`setting_summary` plus the fold extras, the variant, the tasks and the EER."""
        from ser_keras.evaluation.metrics import mean_and_spread

        variant, tasks, _, title, _ = SETTINGS[setting]
        summary = self.setting_summary(fold_results, title)
        for entry, result in zip(summary["folds"], fold_results, strict=True):
            for key in ("labelled_train_segments", "train_segments_per_epoch",
                        "updates_per_epoch", "num_test_utterances", "num_test_segments",
                        "confusion"):
                entry[key] = result[key]
            if "verification" in result:
                eer = result["verification"].get("eer")
                entry["eer"] = 100 * eer if eer is not None else None
                entry["verification"] = result["verification"]
        summary.update(variant=variant, tasks=list(tasks))
        if "speaker" in tasks:
            eers = [e["eer"] for e in summary["folds"] if e.get("eer") is not None]
            summary["eer"], summary["eer_std"] = mean_and_spread(eers) if eers else (None, None)
            summary["eer_folds"] = len(eers)
        return summary

    def write_reports(self, results: dict, corpus: str) -> None:
        """`results.md` (Tables 3 and 5 of the paper in layout, EER, folds, confusions), plots.

        Args:
            results: The content of `results.json`.
            corpus: The labelled corpus's kind, for the table headers.
        """
        from ser_keras.evaluation import reports

        settings, class_names = results["settings"], results["class_names"]
        config = results["configuration"]
        protocol_title = {
            "loso": "leave-one-speaker-out",
            "kfold10": "10-fold cross validation",
        }[results["protocol"]]
        table3 = reports.markdown_table(
            ["Model", f"{corpus} UA (%)", f"{corpus} WA (%)"],
            [
                [settings[name]["title"], _score(settings[name], "ua"),
                 _score(settings[name], "wa")]
                for name in ("cnn", "ae", "mtl", "stl", "gender", "speaker")
                if name in settings
            ],
        )
        table5_rows = [
            [SETTINGS[name][4], _score(settings[name], "wa"), _score(settings[name], "ua")]
            for name in ("gender", "speaker", "mtl")
            if name in settings
        ]
        eer_rows = [
            [name, _score(entry, "eer"), f"{entry.get('eer_folds', 0)} of {len(entry['folds'])}"]
            for name, entry in settings.items()
            if "speaker" in entry["tasks"]
        ]
        fold_rows = [
            [
                name, fold["fold"], f"{fold['wa']:.2f}", f"{fold['ua']:.2f}",
                "n/a" if fold.get("eer") is None else f"{fold['eer']:.2f}",
                fold["best_epoch"], fold["epochs_run"],
            ]
            for name, entry in settings.items()
            for fold in entry["folds"]
        ]
        num_folds = len(next(iter(settings.values()))["folds"])
        chance = 100 / len(class_names)
        sections = [
            "# Semi-supervised multi-task AAE (Latif et al. 2020)",
            "",
            f"Data: {config['data']}.",
            f"Preset {config['preset']} (model {config['model_preset']}), "
            f"{config['epochs']} epochs at most ({config['pretrain_epochs']} pre-training "
            f"epochs), {num_folds} {protocol_title} fold(s), seed {config['seed']}.",
            f"{len(class_names)} classes ({', '.join(class_names)}): chance is "
            f"{chance:.2f} % UA.",
            "Mean ± standard deviation over folds, percent.",
            "",
            f"## UA by model (layout of Table 3, {protocol_title})",
            "",
            table3,
            "",
            "## Impact of auxiliary tasks (layout of Table 5, primary task: categorical emotion)",
            "",
            reports.markdown_table(["Secondary tasks", "WA", "UA"], table5_rows)
            if table5_rows
            else "No setting with auxiliary tasks was run (settings gender, speaker, mtl).",
            "",
            "## Speaker verification EER (%) from d-vectors",
            "",
            (
                reports.markdown_table(["setting", "EER", "folds with an EER"], eer_rows)
                + f"\n\nEnrolment: {config['enrolment']} utterances per speaker; held-out "
                f"verification speakers: {len(config['held_out_verification_speakers'])}."
            )
            if eer_rows
            else "No setting with a speaker head was run.",
            "",
            "## Per fold",
            "",
            reports.markdown_table(
                ["setting", "fold", "WA", "UA", "EER", "best epoch", "epochs"], fold_rows
            ),
        ]
        for entry in settings.values():
            sections += [
                "",
                f"## Confusion matrix, {entry['title']} (rows: true, columns: predicted, "
                "% of row)",
                "",
                reports.confusion_markdown(np.asarray(entry["confusion"]), class_names),
            ]
        reports.write_text_atomic(self.out_dir / "results.md", "\n".join(sections) + "\n")
        reports.plot_settings_comparison(
            settings,
            self.out_dir / "settings_comparison.png",
            units="percent",
            chance=chance,
            error_bars=f"± 1 standard deviation over {num_folds} {protocol_title} fold(s)",
            title=f"Semi-supervised multi-task AAE (Latif et al. 2020), {num_folds} fold(s): "
            f"{config['data']}"[:110],
        )
        self.log("\n" + table3)
        if table5_rows:
            self.log("\n" + reports.markdown_table(["Secondary tasks", "WA", "UA"], table5_rows))

    def export(self, best: BestModel, data):
        """Exports the best model's waveform -> utterance posteriors (emotion, and gender)."""
        from ser_keras.export.segment_model import SegmentAveragingModel, segment_classifier

        if best.setting is None:
            return None
        # The speaker head classifies the training speakers only: not served.
        tasks = tuple(task for task in ("emotion", "gender") if task in SETTINGS[best.setting][1])
        label_names = {"emotion": data["class_names"]}
        if "gender" in tasks:
            label_names["gender"] = list(GENDERS)

        def serving_model(model):
            return SegmentAveragingModel(
                segment_classifier(model, tasks),
                pad_value=data["frontend"].pad_value,
                name=self.export_name,
            )

        return self.export_best(
            best,
            frontend=data["frontend"],
            label_names=label_names,
            metadata={
                "protocol": self.config.protocol,
                "data": data["description"],
                "segment_length": data["segment_length"],
            },
            serving_model=serving_model,
        )


def _score(entry: dict, key: str) -> str:
    value, spread = entry.get(key), entry.get(f"{key}_std")
    if value is None:
        return "n/a"
    return f"{value:.2f} ± {spread:.2f}"
