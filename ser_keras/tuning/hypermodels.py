"""KerasTuner `HyperModel`s of the package's model families.

One `HyperModel` per family builds and compiles the family's model from a
`keras_tuner.HyperParameters`:

- `AttentionCNNBLSTMHyperModel`: Fu et al.'s attention CNN-BLSTM (paper 004);
- `ResNetLSTMHyperModel`: Latif et al.'s multi-task ResNet-LSTM with language
  and domain heads (paper 000);
- `AAEMultiTaskHyperModel`: Latif et al.'s multi-task semi-supervised
  adversarial autoencoder (paper 002).

Every hyperparameter's default is the paper's value (or, where the paper gives
none, the value of the family's paper preset, named as such), so a fresh
`HyperParameters` builds the published model; the ranges come from the papers
where they give one (paper 000 searched alpha in 0.1-0.5, paper 002 alpha and
beta in 0.1-1.0) and are our choices around the paper's value elsewhere.

Width hyperparameters (filters, units, heads) are expressed in the paper's
units and scaled to the chosen architecture preset: with a reduced CPU preset
(e.g. `fu2021_cpu`, whose LSTM has 32 units where the paper has 128) the
hyperparameter `lstm_units = 128` builds 32 units and `256` builds 64. The
defaults therefore always build exactly the preset, the paper's numbers stay
the defaults, and a CPU search stays as fast as the CPU preset.

The models keep their own `train_step` (masked multi-task losses, the AAE's
three phases with four optimizers): the tuner calls `fit` unchanged. The
objective is the validation emotion UA, `val_emotion_ua`, maximised
(`emotion_ua_objective()`). `HyperModel.fit` also takes `validation_folds`:
index pairs (or `ser_keras.data.splits.Fold`s) carved from the training
speakers, e.g. by `ser_keras.tuning.search.speaker_validation_folds`; the
trial's score is then the mean over those folds of each fold's best
`val_emotion_ua` (a speaker-independent objective that never sees a test
fold).

Reference:
    C. Fu, C. Liu, C. T. Ishi, H. Ishiguro, "An end-to-end multitask learning
    model to improve speech emotion recognition", EUSIPCO 2020 (paper 004).
    S. Latif et al., multi-task learning with language and domain
    identification on unlabelled speech for cross-language speech emotion
    recognition (paper 000), Section 3.2.
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020 (paper 002),
    Sections 4.3 and 5.1.
"""

from __future__ import annotations

import contextlib
import copy
import math

import keras
import keras_tuner
import numpy as np

from ser_keras.evaluation.metrics import mean_and_spread
from ser_keras.models import aae_mtl, attention_cnn_blstm, resnet_lstm
from ser_keras.training import aae
from ser_keras.utils.presets import preset_config

OBJECTIVE_NAME = "val_emotion_ua"
PRIMARY_TASK = "emotion"

# Learning rates of the papers' optimizers. Paper 004 trains with Keras'
# "rmsprop", whose default learning rate is 0.001. Paper 002 uses SGD with
# 0.0001 (Section 4.3). Paper 000 gives no optimizer: Adam with 0.001 is our
# choice, as in apps.train_crosslang_valence.
FU2021_LEARNING_RATE = 1e-3
LATIF2020_RESNET_LEARNING_RATE = 1e-3  # not in paper 000 (our choice)
LATIF2020_AAE_LEARNING_RATE = aae.PAPER_LEARNING_RATE  # 1e-4, paper 002


def emotion_ua_objective() -> keras_tuner.Objective:
    """The tuning objective: validation emotion UA (`val_emotion_ua`), maximised."""
    return keras_tuner.Objective(OBJECTIVE_NAME, direction="max")


def validation_labels(labels, primary_task=PRIMARY_TASK):
    """Labels for validation data: the primary task's kept, every other task's set to -1.

    Validation speakers are not among the training speakers, so their speaker
    classes do not exist in the model's speaker head; only the primary task
    is scored for model selection. Auxiliary tasks keep their keys (with
    every sample marked "no label"), which every model of the package
    accepts.

    Args:
        labels: Dict task -> int array `[N]` (-1 = missing).
        primary_task: The task whose labels are kept.

    Returns:
        A new dict of int32 arrays.
    """
    if not isinstance(labels, dict) or primary_task not in labels:
        raise ValueError(
            f"`labels` must be a dict task -> int labels including {primary_task!r}; "
            f"received {type(labels).__name__}"
            + (f" with keys {sorted(labels)}" if isinstance(labels, dict) else "")
            + "."
        )
    masked = {}
    for task, values in labels.items():
        values = np.asarray(values).astype(np.int32)
        masked[task] = values if task == primary_task else np.full_like(values, -1)
    return masked


def _take(structure, indices):
    if isinstance(structure, dict):
        return {key: np.asarray(value)[indices] for key, value in structure.items()}
    return np.asarray(structure)[indices]


def _num_samples(x):
    if isinstance(x, dict):
        sizes = {np.asarray(value).shape[0] for value in x.values()}
        if len(sizes) != 1:
            raise ValueError(f"The inputs in `x` have different sample counts: {sorted(sizes)}.")
        return sizes.pop()
    if not hasattr(x, "shape") or not hasattr(x, "__getitem__"):
        raise ValueError(
            "`validation_folds` needs `x` as an array or a dict of arrays (indexed per fold); "
            f"received {type(x).__name__}."
        )
    return int(np.asarray(x).shape[0])


def _check_folds(validation_folds, num_samples):
    """(train, validation) index arrays of every fold, validated."""
    if validation_folds is None or len(validation_folds) == 0:
        raise ValueError(f"`validation_folds` is empty; received {validation_folds!r}.")
    folds = []
    for number, fold in enumerate(validation_folds):
        if hasattr(fold, "train") and hasattr(fold, "validation"):
            train, validation = fold.train, fold.validation
        else:
            try:
                train, validation = fold
            except (TypeError, ValueError):
                raise ValueError(
                    "Each validation fold must be a (train, validation) pair of index arrays "
                    f"or a Fold; fold {number} is {fold!r}."
                ) from None
        train = np.asarray(train, dtype=np.int64).reshape(-1)
        validation = np.asarray(validation, dtype=np.int64).reshape(-1)
        if train.size == 0 or validation.size == 0:
            raise ValueError(
                f"Validation fold {number} needs training and validation samples; received "
                f"{train.size} training and {validation.size} validation indices."
            )
        for part, indices in (("training", train), ("validation", validation)):
            if indices.min() < 0 or indices.max() >= num_samples:
                raise ValueError(
                    f"Validation fold {number} has {part} indices outside [0, {num_samples}): "
                    f"min {indices.min()}, max {indices.max()}."
                )
        overlap = np.intersect1d(train, validation)
        if overlap.size:
            raise ValueError(
                f"Validation fold {number} uses {overlap.size} samples for both training and "
                f"validation (e.g. index {int(overlap[0])})."
            )
        folds.append((train, validation))
    return folds


def _positive_int(value):
    return max(1, int(round(value)))


class SERHyperModel(keras_tuner.HyperModel):
    """Base of the package's HyperModels: preset scaling and the speaker-fold `fit`.

    Subclasses define `model_arguments(hp)` (declares the hyperparameters,
    returns the model's constructor arguments), `optimizer(hp)` and
    `build_model(arguments)`; `build(hp)` returns the compiled model.

    Args:
        preset: Name of an architecture preset of the family, or a dict of
            architecture arguments (missing ones are the paper preset's).
        presets: The family's presets (name -> dict).
        paper_preset: Name of the preset holding the paper's numbers; its
            values are the hyperparameters' defaults and the reference of the
            width scaling.
        fixed: Constructor arguments that are not tuned (data-dependent
            sizes such as `num_frames`).
        name: HyperModel name.
        tunable: Whether the hyperparameters are tunable (KerasTuner).
    """

    #: Constructor arguments that `fixed` may not set (they are tuned).
    tuned_arguments: tuple = ()
    #: Constructor arguments the subclass takes itself (class counts).
    data_arguments: tuple = ()

    def __init__(self, preset, presets, paper_preset, fixed, name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        self.paper = copy.deepcopy(presets[paper_preset])
        if isinstance(preset, str):
            resolved = preset_config(presets, preset)
            self.preset_name = preset
        elif isinstance(preset, dict):
            unknown = sorted(set(preset) - set(self.paper))
            if unknown:
                raise ValueError(
                    f"Unknown architecture arguments {unknown} in the preset dict; expected "
                    f"some of {sorted(self.paper)}."
                )
            self.preset_name = None
            resolved = copy.deepcopy(self.paper)
            resolved.update(copy.deepcopy(preset))
        else:
            raise ValueError(
                f"`preset` must be a preset name ({sorted(presets)}) or a dict of architecture "
                f"arguments; received {preset!r}."
            )
        allowed = (set(self.paper) | {"name", "trainable"}) - set(self.data_arguments)
        unknown = sorted(set(fixed) - allowed)
        if unknown:
            raise ValueError(
                f"Unknown fixed arguments {unknown}; expected some of {sorted(allowed)} "
                f"({list(self.data_arguments)} are the HyperModel's own arguments)."
            )
        tuned = sorted(set(fixed) & set(self.tuned_arguments))
        if tuned:
            raise ValueError(
                f"Arguments {tuned} are tuned; fix a hyperparameter with "
                "keras_tuner.HyperParameters.Fixed (the tuner's `hyperparameters`) instead."
            )
        self.preset = resolved
        self.fixed = dict(fixed)

    # ---------------------------------------------------------------- widths
    def scale_width(self, key, value):
        """A width given in the paper's units, scaled to the preset (at least 1).

        Args:
            key: Architecture argument, e.g. `"lstm_units"`; a tuple argument
                such as `"conv_filters"` scales every entry by
                `value / paper[key][0]`, keeping the preset's ratios.
            value: The width in the paper's units (the hyperparameter's value).

        Returns:
            int, or a tuple of ints for a tuple argument.
        """
        paper, preset = self.paper[key], self.preset[key]
        if isinstance(paper, (tuple, list)):
            ratio = value / paper[0]
            return tuple(_positive_int(width * ratio) for width in preset)
        return _positive_int(preset * value / paper)

    # ------------------------------------------------------------- interface
    def model_arguments(self, hp) -> dict:
        """Declares the hyperparameters and returns the model's constructor arguments."""
        raise NotImplementedError

    def optimizer(self, hp) -> keras.optimizers.Optimizer:
        """Declares the optimizer's hyperparameters and returns a fresh optimizer."""
        raise NotImplementedError

    def build_model(self, arguments) -> keras.Model:
        """The uncompiled model for the constructor arguments of `model_arguments`."""
        raise NotImplementedError

    def build(self, hp):
        """Builds and compiles the model for the hyperparameters `hp`."""
        model = self.build_model(self.model_arguments(hp))
        model.compile(optimizer=self.optimizer(hp))
        return model

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        hp,
        model,
        x=None,
        y=None,
        *,
        validation_data=None,
        validation_folds=None,
        callbacks=None,
        **kwargs,
    ):
        """Trains a trial's model: one validation split, or several speaker folds.

        Without `validation_folds` this is `model.fit(x, y, validation_data=...,
        **kwargs)` and KerasTuner scores the best epoch's `val_emotion_ua`.

        With `validation_folds`, one model per fold (the tuner's model for
        the first, a fresh build of the same hyperparameters for the others)
        is trained on the fold's training samples and validated on its
        validation samples, whose auxiliary-task labels are masked
        (`validation_labels`); the trial's score is the mean over folds of
        each fold's best `val_emotion_ua`. The folds must be carved from the
        training speakers (`speaker_validation_folds`): this method only sees
        `x`, and the test speakers must not be in it. With Hyperband, a trial
        that continues an earlier one trains every fold from scratch for
        `epochs` epochs (each fold needs its own weights; `initial_epoch` is
        ignored).

        Args:
            hp: The trial's hyperparameters.
            model: The model built by the tuner from `hp`.
            x: Inputs: array `[N, ...]` or dict of arrays (with folds), or
                anything `Model.fit` takes (without).
            y: Dict task -> int labels `[N]` (-1 = missing).
            validation_data: Validation data of a single split.
            validation_folds: Sequence of `(train_indices, validation_indices)`
                pairs or `Fold`s (their `train` and `validation`), indices
                into `x`.
            callbacks: Keras callbacks (the tuner adds its own).
            **kwargs: Other `Model.fit` arguments (`epochs`, `batch_size`,
                `verbose`, ...).

        Returns:
            The `History` (single split) or a dict `{"val_emotion_ua": mean,
            "val_emotion_ua_std": standard deviation over folds}`.
        """
        if validation_folds is None:
            return model.fit(
                x, y, validation_data=validation_data, callbacks=callbacks, **kwargs
            )
        if validation_data is not None:
            raise ValueError(
                "Give `validation_data` or `validation_folds`, not both; received both."
            )
        if not isinstance(y, dict):
            raise ValueError(
                "`validation_folds` needs `y` as a dict task -> int labels; received "
                f"{type(y).__name__}."
            )
        folds = _check_folds(validation_folds, _num_samples(x))
        warm_started = "tuner/trial_id" in getattr(hp, "values", {})
        kwargs.pop("initial_epoch", None)
        strategy = getattr(model, "distribute_strategy", None)
        scores = []
        for number, (train, validation) in enumerate(folds):
            fold_model = model
            if number > 0 or warm_started:
                scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
                with scope:
                    fold_model = self.build(hp)
            history = fold_model.fit(
                _take(x, train),
                _take(y, train),
                validation_data=(_take(x, validation), validation_labels(_take(y, validation))),
                callbacks=callbacks,
                **kwargs,
            )
            values = [v for v in history.history.get(OBJECTIVE_NAME, []) if np.isfinite(v)]
            if not values:
                raise ValueError(
                    f"Validation fold {number} reported no {OBJECTIVE_NAME}; its history has "
                    f"{sorted(history.history)}."
                )
            scores.append(max(values))
        mean, spread = mean_and_spread(scores)
        return {OBJECTIVE_NAME: mean, f"{OBJECTIVE_NAME}_std": spread}


class AttentionCNNBLSTMHyperModel(SERHyperModel):
    """Search space of Fu et al.'s attention CNN-BLSTM (paper 004).

    Hyperparameters (defaults = the paper's; widths in the paper's units,
    scaled to `preset`):

    - `learning_rate`: RMSprop learning rate, 1e-4 to 1e-2 (log); default
      0.001, Keras' RMSprop default the paper trained with.
    - `emotion_loss_weight` (gamma of eq. 5) and, with a speaker head,
      `speaker_loss_weight` (theta): 0.1 to 1.0 in steps of 0.1; default 1
      (the paper: "Weights for loss functions in each task were equal to
      1"). The paper gives no range; 0.1-1.0 is the range paper 002 searched
      its loss weights in (our choice).
    - `dropout_rate`: 0.0 to 0.5 in steps of 0.05; default 0.35.
    - `first_conv_filters`: 256, 512 or 1024 filters in the first
      convolution, the others keeping the preset's ratios (paper 512, 1024,
      2048); default 512.
    - `bottleneck_units`: 256, 512 or 1024; default 512.
    - `lstm_units`: 64, 128 or 256 per direction; default 128.
    - `num_attention_heads`: 4, 8 or 16; default 16. The scaled count is
      reduced to a divisor of `2 * lstm_units` where needed (the gcd).

    Args:
        num_emotions: Emotion classes.
        num_speakers: Speaker classes of the auxiliary head (0 = single task).
        preset: `"fu2021"` (the paper's sizes), `"fu2021_cpu"` (widths / 4-8)
            or a dict of architecture arguments.
        name: HyperModel name.
        tunable: Whether the hyperparameters are tunable.
        **fixed: Other constructor arguments of `AttentionCNNBLSTM`, not
            tuned (e.g. `num_frames`, `num_mels`).

    Reference:
        Fu et al., EUSIPCO 2020, Section 3.3, Table 1 and Section 4.1.
    """

    tuned_arguments = (
        "emotion_loss_weight",
        "speaker_loss_weight",
        "dropout_rate",
        "conv_filters",
        "bottleneck_units",
        "lstm_units",
        "num_attention_heads",
    )
    data_arguments = ("num_emotions", "num_speakers")

    def __init__(
        self,
        num_emotions=7,
        num_speakers=0,
        preset="fu2021",
        name="attention_cnn_blstm",
        tunable=True,
        **fixed,
    ):
        super().__init__(
            preset, attention_cnn_blstm.PRESETS, "fu2021", fixed, name=name, tunable=tunable
        )
        self.num_emotions = num_emotions
        self.num_speakers = num_speakers

    def model_arguments(self, hp):
        paper = self.paper
        arguments = dict(self.preset)
        arguments.update(self.fixed)
        arguments["num_emotions"] = self.num_emotions
        arguments["num_speakers"] = self.num_speakers
        arguments["emotion_loss_weight"] = hp.Float(
            "emotion_loss_weight", 0.1, 1.0, step=0.1, default=paper["emotion_loss_weight"]
        )
        if self.num_speakers > 0:
            arguments["speaker_loss_weight"] = hp.Float(
                "speaker_loss_weight", 0.1, 1.0, step=0.1, default=paper["speaker_loss_weight"]
            )
        arguments["dropout_rate"] = hp.Float(
            "dropout_rate", 0.0, 0.5, step=0.05, default=paper["dropout_rate"]
        )
        arguments["conv_filters"] = self.scale_width(
            "conv_filters",
            hp.Choice("first_conv_filters", [256, 512, 1024], default=paper["conv_filters"][0]),
        )
        arguments["bottleneck_units"] = self.scale_width(
            "bottleneck_units",
            hp.Choice("bottleneck_units", [256, 512, 1024], default=paper["bottleneck_units"]),
        )
        lstm_units = self.scale_width(
            "lstm_units", hp.Choice("lstm_units", [64, 128, 256], default=paper["lstm_units"])
        )
        heads = self.scale_width(
            "num_attention_heads",
            hp.Choice("num_attention_heads", [4, 8, 16], default=paper["num_attention_heads"]),
        )
        arguments["lstm_units"] = lstm_units
        arguments["num_attention_heads"] = math.gcd(heads, 2 * lstm_units)
        return arguments

    def optimizer(self, hp):
        learning_rate = hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=FU2021_LEARNING_RATE
        )
        return keras.optimizers.RMSprop(learning_rate=learning_rate)

    def build_model(self, arguments):
        return attention_cnn_blstm.AttentionCNNBLSTM(**arguments)


class ResNetLSTMHyperModel(SERHyperModel):
    """Search space of Latif et al.'s multi-task ResNet-LSTM (paper 000).

    Hyperparameters (defaults = the paper's; widths in the paper's units,
    scaled to `preset`):

    - `alpha`: weight of the auxiliary losses, `L = L_e + alpha (L_l + L_d)`,
      0.1 to 0.5 in steps of 0.1 (the range the paper tried); default 0.3,
      the paper's best. Only with a language or domain head.
    - `lstm_units`: 64, 128 or 256; default 128.
    - `dense_units`: units of each classifier's dense layer, 128, 256 or 512;
      default 256.
    - `dropout_rate`: before each classifier's layers, 0.0 to 0.5 in steps of
      0.1; default 0.0 (not in the paper; the `latif_crosslang` preset's value).
    - `learning_rate`: Adam, 1e-4 to 1e-2 (log); default 0.001 (the paper
      gives no optimizer; our choice).

    Args:
        num_emotions: Emotion classes (the paper: 2, binary valence).
        num_languages: Classes of the language head (0 = none).
        use_domain_head: Whether the model has the domain head.
        preset: `"latif_crosslang"`, `"latif_crosslang_cpu"` or a dict of architecture
            arguments.
        name: HyperModel name.
        tunable: Whether the hyperparameters are tunable.
        **fixed: Other constructor arguments of `ResNetLSTM`, not tuned
            (e.g. `num_frames`, `num_mels`).

    Reference:
        Latif et al. (paper 000), Sections 3.2 and 4.3.
    """

    tuned_arguments = ("alpha", "lstm_units", "dense_units", "dropout_rate")
    data_arguments = ("num_emotions", "num_languages", "use_domain_head")

    def __init__(
        self,
        num_emotions=2,
        num_languages=0,
        use_domain_head=False,
        preset="latif_crosslang",
        name="resnet_lstm_mtl",
        tunable=True,
        **fixed,
    ):
        super().__init__(
            preset, resnet_lstm.RESNET_LSTM_PRESETS, "latif_crosslang", fixed, name=name,
            tunable=tunable,
        )
        self.num_emotions = num_emotions
        self.num_languages = num_languages
        self.use_domain_head = bool(use_domain_head)

    def model_arguments(self, hp):
        paper = self.paper
        arguments = dict(self.preset)
        arguments.update(self.fixed)
        arguments["num_emotions"] = self.num_emotions
        arguments["num_languages"] = self.num_languages
        arguments["use_domain_head"] = self.use_domain_head
        if self.num_languages or self.use_domain_head:
            arguments["alpha"] = hp.Float("alpha", 0.1, 0.5, step=0.1, default=paper["alpha"])
        arguments["lstm_units"] = self.scale_width(
            "lstm_units", hp.Choice("lstm_units", [64, 128, 256], default=paper["lstm_units"])
        )
        arguments["dense_units"] = self.scale_width(
            "dense_units",
            hp.Choice("dense_units", [128, 256, 512], default=paper["dense_units"]),
        )
        arguments["dropout_rate"] = hp.Float(
            "dropout_rate", 0.0, 0.5, step=0.1, default=paper["dropout_rate"]
        )
        return arguments

    def optimizer(self, hp):
        learning_rate = hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=LATIF2020_RESNET_LEARNING_RATE
        )
        return keras.optimizers.Adam(learning_rate=learning_rate)

    def build_model(self, arguments):
        return resnet_lstm.ResNetLSTM(**arguments)


class AAEMultiTaskHyperModel(SERHyperModel):
    """Search space of Latif et al.'s multi-task semi-supervised AAE (paper 002).

    Hyperparameters (defaults = the paper's; widths in the paper's units,
    scaled to `preset`):

    - `alpha`: weight of the reconstruction loss (Eq. 1), 0.1 to 1.0 in steps
      of 0.1 (the paper's search range); default the variant's value (0.4
      for the AAE, 0.3 for the AE: the values the paper selected). Only for
      variants with a decoder.
    - `beta`: weight of the emotion loss in L_c (Eq. 2; auxiliary tasks get
      1 - beta), 0.1 to 1.0 in steps of 0.1; default 0.6 (AAE) / 0.7 (AE).
      Only for variants with a decoder or several tasks.
    - `dropout_rate`: between the classifiers' dense layers, 0.0 to 0.5 in
      steps of 0.1; default 0.3.
    - `code_channels`: depth of the latent code, 16, 32 or 64; default 32
      (the paper's 16 x 16 x 32 code, "determined using the validation set").
    - `head_units`: width of the classifiers' and discriminator's dense
      layers, 64, 128 or 256; default 128 (not in the paper; the
      `latif2020` preset's value).
    - `optimizer`: "sgd" or "adam" for every phase; default "sgd" (the
      paper's). Adam is offered because SGD at the paper's rate learns next
      to nothing in the few epochs of a CPU search.
    - `learning_rate`: 1e-5 to 1e-2 (log); default 0.0001 (the paper's).

    Args:
        num_classes: Dict task -> number of classes, "emotion" first among
            the variant's tasks, e.g. `{"emotion": 4, "speaker": 10,
            "gender": 2}`; a subset of the variant's tasks is allowed.
        variant: A key of `ser_keras.training.aae.VARIANTS`: the networks
            (decoder, discriminator) and the default alpha and beta.
        preset: `"latif2020"`, `"cpu_small"` (of
            `ser_keras.models.aae_mtl.AAE_MTL_PRESETS`) or a dict of
            architecture arguments.
        generator_loss: See `AAEMultiTaskModel`.
        seed: Seed of the prior samples.
        name: HyperModel name.
        tunable: Whether the hyperparameters are tunable.
        **fixed: Other architecture arguments (`num_frames`, `num_mels`,
            `kernel_size`, ...), not tuned.

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Sections 4.3
        and 5.1 (Fig. 5).
    """

    tuned_arguments = ("dropout_rate", "head_units", "encoder_filters")

    def __init__(
        self,
        num_classes,
        variant="aae_mtl",
        preset="latif2020",
        generator_loss="minimax",
        seed=None,
        name="aae_mtl",
        tunable=True,
        **fixed,
    ):
        super().__init__(
            preset, aae_mtl.AAE_MTL_PRESETS, "latif2020", fixed, name=name, tunable=tunable
        )
        if variant not in aae.VARIANTS:
            raise ValueError(
                f"Unknown variant {variant!r}; expected one of {sorted(aae.VARIANTS)}."
            )
        spec = aae.VARIANTS[variant]
        if not isinstance(num_classes, dict) or PRIMARY_TASK not in num_classes:
            raise ValueError(
                f"`num_classes` must be a dict task -> classes including {PRIMARY_TASK!r}; "
                f"received {num_classes!r}."
            )
        unknown = sorted(set(num_classes) - set(spec["tasks"]))
        if unknown:
            raise ValueError(
                f"Variant {variant!r} has the tasks {list(spec['tasks'])}; num_classes names "
                f"{unknown}."
            )
        self.num_classes = {task: int(num_classes[task]) for task in spec["tasks"]
                            if task in num_classes}
        self.variant = variant
        self.generator_loss = generator_loss
        self.seed = seed

    def model_arguments(self, hp):
        spec = aae.VARIANTS[self.variant]
        paper = self.paper
        architecture = dict(self.preset)
        architecture.update(self.fixed)
        filters = list(architecture["encoder_filters"])
        code_channels = hp.Choice(
            "code_channels", [16, 32, 64], default=paper["encoder_filters"][-1]
        )
        filters[-1] = _positive_int(
            self.preset["encoder_filters"][-1] * code_channels / paper["encoder_filters"][-1]
        )
        architecture["encoder_filters"] = tuple(filters)
        architecture["head_units"] = self.scale_width(
            "head_units", hp.Choice("head_units", [64, 128, 256], default=paper["head_units"])
        )
        architecture["dropout_rate"] = hp.Float(
            "dropout_rate", 0.0, 0.5, step=0.1, default=paper["dropout_rate"]
        )
        alpha, beta = spec["alpha"], spec["beta"]
        if spec["reconstruction"]:
            alpha = hp.Float("alpha", 0.1, 1.0, step=0.1, default=spec["alpha"])
        if spec["reconstruction"] or len(self.num_classes) > 1:
            beta = hp.Float("beta", 0.1, 1.0, step=0.1, default=spec["beta"])
        return {
            "architecture": architecture,
            "num_classes": dict(self.num_classes),
            "reconstruction": spec["reconstruction"],
            "adversarial": spec["adversarial"],
            "alpha": alpha,
            "beta": beta,
            "generator_loss": self.generator_loss,
            "seed": self.seed,
        }

    def optimizer(self, hp):
        name = hp.Choice("optimizer", ["sgd", "adam"], default="sgd")
        learning_rate = hp.Float(
            "learning_rate", 1e-5, 1e-2, sampling="log", default=LATIF2020_AAE_LEARNING_RATE
        )
        if name == "adam":
            return keras.optimizers.Adam(learning_rate=learning_rate)
        return keras.optimizers.SGD(learning_rate=learning_rate)

    def build_model(self, arguments):
        networks = aae_mtl.build_aae_networks(
            arguments["num_classes"],
            reconstruction=arguments["reconstruction"],
            adversarial=arguments["adversarial"],
            **arguments["architecture"],
        )
        return aae.AAEMultiTaskModel(
            encoder=networks["encoder"],
            classifiers=networks["classifiers"],
            decoder=networks["decoder"],
            discriminator=networks["discriminator"],
            alpha=arguments["alpha"],
            beta=arguments["beta"],
            generator_loss=arguments["generator_loss"],
            seed=arguments["seed"],
            name=self.variant,
        )


# The model families of `apps.tune --model`.
HYPERMODELS = {
    "attention_cnn_blstm": AttentionCNNBLSTMHyperModel,
    "resnet_lstm_mtl": ResNetLSTMHyperModel,
    "aae_mtl": AAEMultiTaskHyperModel,
}
