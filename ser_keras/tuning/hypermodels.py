"""KerasTuner `HyperModel`s of the package's model families.

One `HyperModel` per family builds and compiles the family's model from a
`keras_tuner.HyperParameters`:

- `AttentionCNNBLSTMHyperModel`: Fu et al.'s attention CNN-BLSTM (paper 004);
- `ResNetLSTMHyperModel`: Latif et al.'s multi-task ResNet-LSTM with language
  and domain heads (paper 000);
- `AAEMultiTaskHyperModel`: Latif et al.'s multi-task semi-supervised
  adversarial autoencoder (paper 002);
- `KimMTLHyperModel`: Kim et al.'s frame-level LSTM-MTL / DNN-MTL with gender
  and naturalness as auxiliary tasks (paper 001);
- `MultiGatingHyperModel`: Wang et al.'s multilingual multi-gating model with
  its NAS module and contrastive auxiliary loss (paper 003).

Every hyperparameter's default is the paper's value (or, where the paper gives
none, the value of the family's paper preset, named as such), so a fresh
`HyperParameters` builds the published model; the ranges come from the papers
where they give one (paper 000 searched alpha in 0.1-0.5, paper 002 alpha and
beta in 0.1-1.0) and are our choices around the paper's value elsewhere
(papers 001 and 003 give single values: lambda 0.1; alpha 0.1, 0.01, 0.015).

Width hyperparameters (filters, units, heads) are expressed in the paper's
units and scaled to the chosen architecture preset: with a reduced CPU preset
(e.g. `fu2021_cpu`, whose LSTM has 32 units where the paper has 128) the
hyperparameter `lstm_units = 128` builds 32 units and `256` builds 64. The
defaults therefore always build exactly the preset, the paper's numbers stay
the defaults, and a CPU search stays as fast as the CPU preset. Every
HyperModel builds its model the way the experiments do: with the model
class's `from_preset` (the AAE: `ser_keras.models.aae_mtl.build_aae_model`),
the preset's arguments overridden by the hyperparameters' values.

The models keep their own `train_step` (masked multi-task losses, the AAE's
three phases with four optimizers, Kim et al.'s frame-level labels, Wang et
al.'s contrastive loss): the tuner calls `fit` unchanged. Layers fitted to the
training data (the feature standardisation of Kim et al.'s model, the
functionals' normalisation of Wang et al.'s) are adapted by `fit` to the
samples each model trains on (`SERHyperModel.prepare`). The objective is the
validation emotion UA, `val_emotion_ua`, maximised (`emotion_ua_objective()`);
for Wang et al.'s model, whose heads are per language (`emotion_<language>`),
it is the mean of the validation UAs of the languages with validation labels
(`MultiGatingHyperModel`). `HyperModel.fit` also takes `validation_folds`:
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
    J. Kim, G. Englebienne, K. P. Truong, V. Evers, "Towards speech emotion
    recognition 'in the wild' using aggregated corpora and deep multi-task
    learning", Interspeech 2017 (paper 001), Sections 4.2 and 5.1.
    Z. Wang, Q. Meng, H. Lan, X. Zhang, K. Guo, A. Gupta, "Multilingual Speech
    Emotion Recognition With Multi-Gating Mechanism and Neural Architecture
    Search" (paper 003), Sections 4 and 5.1.
"""

from __future__ import annotations

import contextlib
import copy
import math

import keras
import keras_tuner
import numpy as np

from ser_keras.evaluation.metrics import mean_and_spread
from ser_keras.models import aae_mtl, attention_cnn_blstm, kim_mtl, multigate, resnet_lstm
from ser_keras.utils.presets import preset_config

OBJECTIVE_NAME = "val_emotion_ua"
PRIMARY_TASK = "emotion"


def paper_optimizer_settings(family: str) -> dict:
    """The paper's optimizer arguments of a model family, read from its model module.

    The one place that reads the model modules' training settings: paper
    001 trains with Adam at a fixed learning rate of 3e-3, paper 003 with
    AdamW, lr 0.001, betas 0.9/0.999, epsilon 1e-8 and weight decay 1e-5
    (both Section 5.1).

    Args:
        family: `"kim_mtl"` or `"multigate"`.

    Returns:
        A new dict of optimizer arguments (`learning_rate`, ...).

    Raises:
        ValueError: Another family, naming it.
    """
    if family == "kim_mtl":
        return {"learning_rate": kim_mtl.LEARNING_RATE}
    if family == "multigate":
        return dict(multigate.PAPER_OPTIMIZER)
    raise ValueError(
        "`family` must be 'kim_mtl' or 'multigate' (the families whose model modules state "
        f"the paper's optimizer). Received: {family!r}"
    )


# Learning rates of the papers' optimizers. Paper 004 trains with Keras'
# "rmsprop", whose default learning rate is 0.001. Paper 002 uses SGD with
# 0.0001 (Section 4.3). Paper 000 gives no optimizer: Adam with 0.001 is our
# choice, as in apps.train_crosslang_valence.
FU2021_LEARNING_RATE = 1e-3
LATIF2020_RESNET_LEARNING_RATE = 1e-3  # not in paper 000 (our choice)
LATIF2020_AAE_LEARNING_RATE = aae_mtl.PAPER_LEARNING_RATE  # 1e-4, paper 002
KIM2017_LEARNING_RATE = paper_optimizer_settings("kim_mtl")["learning_rate"]  # paper 001
WANG_OPTIMIZER = paper_optimizer_settings("multigate")  # paper 003's AdamW


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


def _labels_of(validation_data):
    """The labels of `Model.fit`'s `validation_data` (an `(x, y[, weights])` tuple), or None."""
    if isinstance(validation_data, (tuple, list)) and len(validation_data) >= 2:
        return validation_data[1]
    return None


class _MeanHeadUA(keras.callbacks.Callback):
    """Adds `val_emotion_ua` to the epoch logs: the mean of some heads' validation UAs.

    For models without an `emotion` head (one emotion head per language). It
    runs before the other callbacks of the fit (the tuner's, early stopping,
    `History`), which therefore see the objective. Logs that already hold
    `val_emotion_ua` are left as they are.

    Args:
        tasks: The heads whose `val_<task>_ua` are averaged.
    """

    def __init__(self, tasks):
        super().__init__()
        self.tasks = tuple(tasks)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or OBJECTIVE_NAME in logs:
            return
        values = [logs[f"val_{task}_ua"] for task in self.tasks if f"val_{task}_ua" in logs]
        if values:
            logs[OBJECTIVE_NAME] = float(np.mean([float(value) for value in values]))


class SERHyperModel(keras_tuner.HyperModel):
    """Base of the package's HyperModels: preset scaling and the speaker-fold `fit`.

    Subclasses set `model_class` and define `model_arguments(hp)` (declares
    the hyperparameters, returns the model's constructor arguments) and
    `optimizer(hp)`; `build_model(arguments)` builds the model through
    `model_class.from_preset`, the path the experiments take, and
    `build(hp)` returns it compiled. Models
    with layers fitted to the training data override `prepare(model, x)`;
    models without an `emotion` head override `mask_validation_labels` and
    `objective_callbacks`.

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
    #: Model constructor arguments outside the presets that `fixed` may set.
    other_arguments: tuple = ()
    #: The family's model class (`build_model` calls its `from_preset`).
    model_class: type | None = None

    def __init__(self, preset, presets, paper_preset, fixed, name=None, tunable=True):
        super().__init__(name=name, tunable=tunable)
        self.paper = copy.deepcopy(presets[paper_preset])
        self.paper_preset = paper_preset
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
        tuned = sorted(set(fixed) & set(self.tuned_arguments))
        if tuned:
            raise ValueError(
                f"Arguments {tuned} are tuned; fix a hyperparameter with "
                "keras_tuner.HyperParameters.Fixed (the tuner's `hyperparameters`) instead."
            )
        allowed = (set(self.paper) | {"name", "trainable"} | set(self.other_arguments)) - set(
            self.data_arguments
        )
        unknown = sorted(set(fixed) - allowed)
        if unknown:
            raise ValueError(
                f"Unknown fixed arguments {unknown}; expected some of {sorted(allowed)} "
                f"({list(self.data_arguments)} are the HyperModel's own arguments)."
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
        """The uncompiled model for the constructor arguments of `model_arguments`.

        Built by `model_class.from_preset`, as the experiments build theirs:
        the preset's name (the paper preset's for a dict preset) with
        `arguments` as overrides. `arguments` set every architecture
        argument, so the model is the one they describe.
        """
        return self.model_class.from_preset(self.preset_name or self.paper_preset, **arguments)

    def build(self, hp):
        """Builds and compiles the model for the hyperparameters `hp`."""
        model = self.build_model(self.model_arguments(hp))
        model.compile(optimizer=self.optimizer(hp))
        return model

    # ------------------------------------------------------------ data hooks
    def prepare(self, model, x):
        """Fits the model's data-dependent layers to the inputs it trains on (default: none).

        `fit` calls it before every `Model.fit`, with that fit's training
        inputs (a fold's training samples with `validation_folds`), so no
        statistic comes from validation or test data.

        Args:
            model: A model built by `build`.
            x: The training inputs of the fit.
        """

    def mask_validation_labels(self, labels):
        """Labels for validation data: `validation_labels(labels)` (emotion kept)."""
        return validation_labels(labels)

    def objective_callbacks(self, validation_y):
        """Callbacks that add `val_emotion_ua` to the logs of a fit (default: none).

        Args:
            validation_y: The fit's validation labels (dict task -> labels),
                or None where unknown.

        Returns:
            A list of Keras callbacks, run before the fit's other callbacks.
        """
        return []

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
        (`mask_validation_labels`); the trial's score is the mean over folds of
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
            self.prepare(model, x)
            extra = self.objective_callbacks(_labels_of(validation_data))
            if extra:
                callbacks = extra + list(callbacks or [])
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
            train_x = _take(x, train)
            self.prepare(fold_model, train_x)
            validation_y = self.mask_validation_labels(_take(y, validation))
            history = fold_model.fit(
                train_x,
                _take(y, train),
                validation_data=(_take(x, validation), validation_y),
                callbacks=self.objective_callbacks(validation_y) + list(callbacks or []),
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
    model_class = attention_cnn_blstm.AttentionCNNBLSTM

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
    model_class = resnet_lstm.ResNetLSTM

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
        variant: A key of `ser_keras.models.aae_mtl.VARIANTS`: the networks
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
        if variant not in aae_mtl.VARIANTS:
            raise ValueError(
                f"Unknown variant {variant!r}; expected one of {sorted(aae_mtl.VARIANTS)}."
            )
        spec = aae_mtl.VARIANTS[variant]
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
        spec = aae_mtl.VARIANTS[self.variant]
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
        """The uncompiled `AAEMultiTaskModel` of the variant and tasks.

        Built by `ser_keras.models.aae_mtl.build_aae_model`, the path the
        paper-002 experiment takes (its heads: the tasks of `num_classes`,
        any subset of the variant's).
        """
        return aae_mtl.build_aae_model(
            arguments["num_classes"],
            self.variant,
            self.preset_name or self.paper_preset,
            alpha=arguments["alpha"],
            beta=arguments["beta"],
            generator_loss=arguments["generator_loss"],
            seed=arguments["seed"],
            **arguments["architecture"],
        )


def _frames_of(x, pad_value, owner):
    """The frames of `[samples, frames, features]` inputs that are not padding, `[N, features]`."""
    if isinstance(x, dict) or not hasattr(x, "shape") or len(x.shape) != 3:
        raise ValueError(
            f"{owner} adapts its feature standardisation to the training frames: `x` must be "
            "an array [samples, frames, features]; received "
            + (f"shape {tuple(x.shape)}." if hasattr(x, "shape") else f"{type(x).__name__}.")
        )
    x = np.asarray(x, dtype=np.float32)
    return x[np.any(x != pad_value, axis=-1)]


class KimMTLHyperModel(SERHyperModel):
    """Search space of Kim et al.'s frame-level multi-task LSTM / DNN (paper 001).

    Hyperparameters (defaults = the paper's; widths in the paper's units,
    scaled to `preset`):

    - `auxiliary_loss_weight`: lambda of eq. 1, the weight of each auxiliary
      task's loss, 0.05 to 0.5 in steps of 0.05; default 0.1 (the paper's,
      set "empirically"; it gives no range, ours spans half to five times
      it). Only with auxiliary tasks.
    - `units`: cells per LSTM layer / nodes per DNN layer, 64, 128 or 256;
      default 256. The paper found "no more gains with higher number of
      layers and nodes", so the range goes down from its value.
    - `dropout_rate`: after every hidden layer, 0.0 to 0.7 in steps of 0.1;
      default 0.5 (the paper's p = .5).
    - `learning_rate`: Adam, 3e-4 to 3e-2 (log); default 3e-3 (the paper's
      fixed rate).

    The network (LSTM-MTL, 2 layers; DNN-MTL, 3 layers with a 250 ms context
    window) is a constructor argument, not a hyperparameter; the layer counts
    stay the paper's (the preset's). `fit` sets the model's feature
    standardisation from the frames it trains on (padding excluded), as
    `apps.train_gender_naturalness` does with each fold's training utterances.

    Args:
        num_emotions: Emotion classes (the paper: 4).
        auxiliary_tasks: Subset of `("gender", "naturalness")`; `()` gives
            the single-task baseline (no `auxiliary_loss_weight`).
        network: `"lstm"` (the paper's best, LSTM-MTL) or `"dnn"`.
        preset: A preset of `ser_keras.models.kim_mtl.PRESETS` of the same
            network (default `"kim2017_<network>"`, the paper's sizes) or a
            dict of architecture arguments, e.g. `{"units": 64}` for a CPU.
        name: HyperModel name.
        tunable: Whether the hyperparameters are tunable.
        **fixed: Other constructor arguments of `KimMTL`, not tuned (e.g.
            `num_features`, `context_frames`).

    Reference:
        Kim et al., Interspeech 2017, Sections 4.2 and 5.1 (eq. 1).
    """

    tuned_arguments = ("auxiliary_loss_weight", "units", "dropout_rate")
    data_arguments = ("network", "num_emotions", "auxiliary_tasks")
    model_class = kim_mtl.KimMTL

    def __init__(
        self,
        num_emotions=4,
        auxiliary_tasks=kim_mtl.AUXILIARY_TASKS,
        network="lstm",
        preset=None,
        name="kim_mtl",
        tunable=True,
        **fixed,
    ):
        if network not in kim_mtl.NETWORKS:
            raise ValueError(
                f"`network` must be one of {kim_mtl.NETWORKS}; received {network!r}."
            )
        paper_preset = f"kim2017_{network}"
        super().__init__(
            paper_preset if preset is None else preset, kim_mtl.PRESETS, paper_preset, fixed,
            name=name, tunable=tunable,
        )
        if self.preset["network"] != network:
            raise ValueError(
                f"Preset {preset!r} is a {self.preset['network']!r} network; `network` is "
                f"{network!r}."
            )
        tasks = (auxiliary_tasks,) if isinstance(auxiliary_tasks, str) else tuple(auxiliary_tasks)
        if any(task not in kim_mtl.AUXILIARY_TASKS for task in tasks) or len(set(tasks)) != len(
            tasks
        ):
            raise ValueError(
                f"`auxiliary_tasks` must name distinct tasks from {kim_mtl.AUXILIARY_TASKS}; "
                f"received {auxiliary_tasks!r}."
            )
        self.network = network
        self.num_emotions = num_emotions
        self.auxiliary_tasks = tasks

    def model_arguments(self, hp):
        paper = self.paper
        arguments = dict(self.preset)
        arguments.update(self.fixed)
        arguments["network"] = self.network
        arguments["num_emotions"] = self.num_emotions
        arguments["auxiliary_tasks"] = self.auxiliary_tasks
        if self.auxiliary_tasks:
            arguments["auxiliary_loss_weight"] = hp.Float(
                "auxiliary_loss_weight", 0.05, 0.5, step=0.05,
                default=paper["auxiliary_loss_weight"],
            )
        arguments["units"] = self.scale_width(
            "units", hp.Choice("units", [64, 128, 256], default=paper["units"])
        )
        arguments["dropout_rate"] = hp.Float(
            "dropout_rate", 0.0, 0.7, step=0.1, default=paper["dropout_rate"]
        )
        return arguments

    def optimizer(self, hp):
        learning_rate = hp.Float(
            "learning_rate", 3e-4, 3e-2, sampling="log", default=KIM2017_LEARNING_RATE
        )
        return keras.optimizers.Adam(learning_rate=learning_rate)

    def prepare(self, model, x):
        """Sets the feature standardisation from the training frames (padding excluded)."""
        model.adapt_feature_normalization(_frames_of(x, model.pad_value, type(self).__name__))


class MultiGatingHyperModel(SERHyperModel):
    """Search space of Wang et al.'s multilingual multi-gating model (paper 003).

    Hyperparameters (defaults = the paper's; widths in the paper's units,
    scaled to `preset`):

    - `alpha_<language>`: weight of the contrastive auxiliary loss of the
      language's head (eq. 6), 0.001 to 1.0 (log); default the paper's value
      for the language (en 0.1, de 0.01, fr 0.015; 0.01, German's, for other
      languages). The paper sets a value per language and compares alpha 0
      with 0.1 (Table 4, Figure 3); the range, a decade beyond its smallest
      and largest values, is ours. The `"base"` variant has one head and one
      `alpha` (default the mean of the languages' values).
    - `dropout_rate`: after every expert vector and tower layer, 0.0 to 0.5
      in steps of 0.05; default 0.1 (the paper's).
    - `logmel_lstm_units`: units per direction of the log-mel encoder's
      BiLSTM, 64, 128 or 256; default 128 (the paper's LSTM hidden size). The
      encoder's attention size follows in the paper's ratio (256 at 128).
      Only with the `"logmel"` expert.
    - `mfcc_lstm_units`: units per direction of the MFCC encoder's BiLSTM, 32,
      64 or 128; default 64 (the paper's), its attention size following.
      Only with the `"mfcc"` expert.
    - `expert_units`: the common size of the experts' outputs (the NAS
      module's `u_i`), 128, 256 or 512; default 256 (not in the paper; the
      `wang` preset's value). Not for the `"single"` variant.
    - `learning_rate`: AdamW, 1e-4 to 1e-2 (log); default 0.001 (the paper's;
      its betas, epsilon and weight decay 1e-5 are kept).

    The heads are per language (`emotion_<language>`, or `emotion` for
    `"base"`), with no auxiliary classification task: validation keeps every
    head's labels, and `val_emotion_ua` is the mean of the validation UAs of
    the heads with validation labels (every language in the validation data
    counts the same, as the `val_mean_ua` that `apps.train_multilingual_gating`
    selects epochs by). `fit` adapts the functionals' normalisation to the
    inputs it trains on.

    Args:
        class_names: Dict language code -> class names of that language's
            head, in label-index order (the labels of `fit` index them).
        variant: One of `ser_keras.models.multigate.VARIANTS`; default
            `"multigate"`, the paper's model.
        preset: `"wang"` (the paper's sizes), `"wang_cpu"` or a dict of
            architecture arguments.
        seed: Seed of the NAS gates' noise.
        name: HyperModel name.
        tunable: Whether the hyperparameters are tunable.
        **fixed: Other constructor arguments of `MultiGatingSER`, not tuned
            (e.g. `num_frames`, `experts`, `tower_units`, `embedding_dims`).

    Reference:
        Wang et al. (paper 003), Sections 4.1-4.3 (eq. 6) and 5.1; Table 4.
    """

    tuned_arguments = (
        "contrastive_weights",
        "shared_contrastive_weight",
        "dropout_rate",
        "logmel_lstm_units",
        "logmel_attention_units",
        "mfcc_lstm_units",
        "mfcc_attention_units",
        "expert_units",
    )
    data_arguments = ("class_names", "variant", "seed")
    model_class = multigate.MultiGatingSER
    other_arguments = (
        "embedding_dims",
        "normalize_statistics",
        "tower_units",
        "tower_activations",
        "shared_tower_units",
        "shared_tower_activations",
    )

    def __init__(
        self,
        class_names,
        variant="multigate",
        preset="wang",
        seed=None,
        name="multigate",
        tunable=True,
        **fixed,
    ):
        super().__init__(preset, multigate.PRESETS, "wang", fixed, name=name, tunable=tunable)
        if not isinstance(class_names, dict) or not class_names:
            raise ValueError(
                "`class_names` must be a non-empty dict language -> class names; received "
                f"{class_names!r}."
            )
        if variant not in multigate.VARIANTS:
            raise ValueError(
                f"`variant` must be one of {multigate.VARIANTS}; received {variant!r}."
            )
        self.class_names = {str(lang): list(names) for lang, names in class_names.items()}
        self.variant = variant
        self.seed = seed

    @property
    def tasks(self):
        """The model's heads: `emotion_<language>` per language (`emotion` for `"base"`)."""
        if self.variant == "base":
            return (multigate.SHARED_TASK,)
        return tuple(multigate.task_name(language) for language in self.class_names)

    def _scale_following(self, key, reference, value):
        """`key` scaled like `reference` set to `value` (the paper's ratio kept)."""
        return _positive_int(self.preset[key] * value / self.paper[reference])

    def model_arguments(self, hp):
        paper = self.paper
        arguments = dict(self.preset)
        arguments.update(self.fixed)
        arguments["class_names"] = {lang: list(names) for lang, names in self.class_names.items()}
        arguments["variant"] = self.variant
        arguments["seed"] = self.seed
        languages = list(self.class_names)
        paper_alpha = {
            language: multigate.language_settings(language)["contrastive_weight"]
            for language in languages
        }
        if self.variant == "base":
            arguments["shared_contrastive_weight"] = hp.Float(
                "alpha", 1e-3, 1.0, sampling="log",
                default=float(np.mean(list(paper_alpha.values()))),
            )
        else:
            arguments["contrastive_weights"] = {
                language: hp.Float(
                    f"alpha_{language}", 1e-3, 1.0, sampling="log", default=paper_alpha[language]
                )
                for language in languages
            }
        arguments["dropout_rate"] = hp.Float(
            "dropout_rate", 0.0, 0.5, step=0.05, default=paper["dropout_rate"]
        )
        experts = tuple(arguments["experts"])
        for expert, choices in (("logmel", [64, 128, 256]), ("mfcc", [32, 64, 128])):
            if expert not in experts:
                continue
            key = f"{expert}_lstm_units"
            units = hp.Choice(key, choices, default=paper[key])
            arguments[key] = self.scale_width(key, units)
            arguments[f"{expert}_attention_units"] = self._scale_following(
                f"{expert}_attention_units", key, units
            )
        if self.variant != "single":
            arguments["expert_units"] = self.scale_width(
                "expert_units",
                hp.Choice("expert_units", [128, 256, 512], default=paper["expert_units"]),
            )
        return arguments

    def optimizer(self, hp):
        settings = dict(WANG_OPTIMIZER)
        settings["learning_rate"] = hp.Float(
            "learning_rate", 1e-4, 1e-2, sampling="log", default=settings["learning_rate"]
        )
        return keras.optimizers.AdamW(**settings)

    def prepare(self, model, x):
        """Fits the functionals' normalisation to the training inputs."""
        model.adapt_normalization(x)

    def mask_validation_labels(self, labels):
        """Every head's labels, as int32: each head is an emotion head of its language."""
        if not isinstance(labels, dict) or not set(self.tasks) & set(labels):
            raise ValueError(
                f"`labels` must be a dict head -> int labels with some of {list(self.tasks)}; "
                f"received {type(labels).__name__}"
                + (f" with keys {sorted(labels)}" if isinstance(labels, dict) else "")
                + "."
            )
        return {task: np.asarray(values).astype(np.int32) for task, values in labels.items()}

    def objective_callbacks(self, validation_y):
        """`val_emotion_ua` = the mean validation UA of the heads with validation labels."""
        tasks = self.tasks
        if isinstance(validation_y, dict):
            labelled = [
                task for task in tasks
                if task in validation_y and np.any(np.asarray(validation_y[task]) >= 0)
            ]
            tasks = labelled or tasks
        return [_MeanHeadUA(tasks)]


# The model families of `apps.tune --model`.
HYPERMODELS = {
    "attention_cnn_blstm": AttentionCNNBLSTMHyperModel,
    "resnet_lstm_mtl": ResNetLSTMHyperModel,
    "aae_mtl": AAEMultiTaskHyperModel,
    "kim_mtl": KimMTLHyperModel,
    "multigate": MultiGatingHyperModel,
}


def build_hypermodel(
    family,
    *,
    preset,
    input_shape,
    num_emotions=None,
    classes=None,
    language_classes=None,
    seed=None,
):
    """The HyperModel of a model family for the data of a search (`apps.tune`).

    Args:
        family: A key of `HYPERMODELS`.
        preset: The architecture preset (a name of the family's presets, or
            a dict of architecture arguments).
        input_shape: `(frames, features)` of one input sample (segments for
            the AAE, whose preset fixes its input).
        num_emotions: Emotion classes (not for `"multigate"`).
        classes: Dict auxiliary task -> class names of the training data
            (`speaker`, `language`, `domain`, `gender`, `naturalness`); the
            heads built are the tasks present.
        language_classes: `"multigate"`: dict language -> class names.
        seed: Seed of the AAE's prior samples and the NAS gates' noise.

    Returns:
        An `SERHyperModel`.

    Raises:
        ValueError: An unknown family, naming it.
    """
    if family not in HYPERMODELS:
        raise ValueError(f"`family` must be one of {sorted(HYPERMODELS)}. Received: {family!r}")
    classes = dict(classes or {})
    num_frames, num_features = input_shape
    if family == "kim_mtl":
        return KimMTLHyperModel(
            num_emotions=num_emotions,
            auxiliary_tasks=tuple(classes),
            preset=preset,
            num_features=num_features,
        )
    if family == "multigate":
        return MultiGatingHyperModel(
            language_classes, preset=preset, seed=seed, num_frames=num_frames,
            num_mels=num_features,
        )
    if family == "attention_cnn_blstm":
        return AttentionCNNBLSTMHyperModel(
            num_emotions=num_emotions,
            num_speakers=len(classes.get("speaker", ())),
            preset=preset,
            num_frames=num_frames,
            num_mels=num_features,
        )
    if family == "resnet_lstm_mtl":
        return ResNetLSTMHyperModel(
            num_emotions=num_emotions,
            num_languages=len(classes.get("language", ())),
            use_domain_head="domain" in classes,
            preset=preset,
            num_frames=num_frames,
            num_mels=num_features,
        )
    num_classes = {"emotion": num_emotions}
    num_classes.update({task: len(names) for task, names in classes.items()})
    return AAEMultiTaskHyperModel(
        num_classes,
        variant="aae_mtl" if len(num_classes) > 1 else "aae_stl",
        preset=preset,
        seed=seed,
    )
