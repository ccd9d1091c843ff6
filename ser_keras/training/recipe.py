"""The training recipe: what the package adds to the papers' training, in one place.

None of the five papers normalises per speaker, augments its inputs, smooths
its labels or recalibrates batch normalisation; on real speech these choices
decide whether a deep model gets near a classical openSMILE + SVM baseline
(benchmarks/RESULTS.md, "The training recipe"). `TrainingRecipe` holds them,
every experiment of `ser_keras.experiments` applies the same recipe through
`Experiment.train_fold`, and `results.json`, `run_config.json` and the export
record it:

* **normalisation** of the input features, per utterance, per corpus or per
  speaker (each mel band z-normalised over the group's own valid frames; no
  labels are used, so it applies to an unseen test speaker given some of that
  speaker's audio, and the SavedModel serves it through an enrolment
  signature, `ser_keras.export.SpeakerNormalization`);
* **augmentation** of the training batches (SpecAugment masking);
* **optimisation**: the paper's optimizer or AdamW with decoupled weight
  decay, a constant or cosine learning rate with linear warm-up, label
  smoothing of the emotion targets;
* **batch-norm recalibration** after training: the selected checkpoint's
  moving statistics are replaced by the exact statistics of the training
  data (with few updates per epoch the moving averages lag the weights).

`RECIPES["paper"]` changes nothing (the papers' training); `RECIPES["cpu"]`
is the recipe the `cpu` presets use, chosen on validation speakers only
(benchmarks/RESULTS.md names the runs that chose it).

This module imports neither TensorFlow nor Keras at import time.
"""

from __future__ import annotations

import dataclasses
import math

NORMALIZATIONS = ("none", "utterance", "corpus", "speaker")
SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainingRecipe:
    """Training choices beyond the papers', applied the same way by every experiment.

    Args:
        normalization: `"none"`, `"utterance"`, `"corpus"` or `"speaker"`:
            z-normalise every feature band over the valid frames of each
            utterance, corpus or speaker (a speaker is `corpus:speaker`).
        spec_augment: SpecAugment frequency and time masking of the training
            batches (`ser_keras.data.augmentation.SpecAugment` defaults).
        adamw: Train with AdamW instead of the experiment's own optimizer
            (the one its paper states).
        peak_learning_rate: Learning rate of AdamW, or the peak of the
            cosine schedule (None: the paper optimizer's own rate).
        lr_schedule: `"constant"` or `"cosine"` (decay to 0 over the
            training steps after a linear warm-up).
        warmup_epochs: Epochs of linear warm-up of the cosine schedule.
        weight_decay: AdamW's decoupled weight decay (with `adamw` only).
        label_smoothing: Share of each classification target spread evenly
            over the classes (0: one-hot targets); every task of a
            `MultiTaskModel` (emotion and its auxiliary heads) is smoothed.
        recalibrate_batch_norm: After training, re-estimate every batch
            normalisation layer's moving mean and variance from the training
            data (un-augmented), then save and evaluate that model.

    Example:
    ```python
    recipe = RECIPES["cpu"]
    features = recipe.normalize(features, utterances, pad_value=frontend.pad_value)
    ```
    """

    normalization: str = "none"
    spec_augment: bool = False
    adamw: bool = False
    peak_learning_rate: float | None = None
    lr_schedule: str = "constant"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    recalibrate_batch_norm: bool = False

    def __post_init__(self):
        def choice(name, choices):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(
                    f"`{name}` must be one of {', '.join(choices)}. Received: {name}={value!r}"
                )

        choice("normalization", NORMALIZATIONS)
        choice("lr_schedule", SCHEDULES)
        for name in ("spec_augment", "adamw", "recalibrate_batch_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"`{name}` must be True or False. Received: {name}={getattr(self, name)!r}"
                )
        rate = self.peak_learning_rate
        if rate is not None and not (
            isinstance(rate, int | float)
            and not isinstance(rate, bool)
            and math.isfinite(rate)
            and rate > 0
        ):
            raise ValueError(
                "`peak_learning_rate` must be a positive number or None. Received: "
                f"peak_learning_rate={rate!r}"
            )
        if (
            isinstance(self.warmup_epochs, bool)
            or not isinstance(self.warmup_epochs, int)
            or self.warmup_epochs < 0
        ):
            raise ValueError(
                f"`warmup_epochs` must be an integer >= 0. Received: "
                f"warmup_epochs={self.warmup_epochs!r}"
            )
        for name, high in (("weight_decay", 1.0), ("label_smoothing", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0.0 <= value < high
            ):
                raise ValueError(f"`{name}` must be in [0, {high:g}). Received: {name}={value!r}")
        if self.weight_decay and not self.adamw:
            raise ValueError(
                "`weight_decay` needs adamw=True (the papers' optimizers have no decoupled "
                f"weight decay). Received: weight_decay={self.weight_decay!r}, adamw=False"
            )
        if self.warmup_epochs and self.lr_schedule != "cosine":
            raise ValueError(
                "`warmup_epochs` belongs to lr_schedule='cosine'. Received: "
                f"warmup_epochs={self.warmup_epochs!r}, lr_schedule={self.lr_schedule!r}"
            )

    # ----------------------------------------------------------- records

    def to_dict(self) -> dict:
        """Every field, JSON-ready (as recorded in `results.json` and the export)."""
        return dataclasses.asdict(self)

    @property
    def changes_optimization(self) -> bool:
        """True when the model is compiled with something other than the paper's optimizer."""
        return (
            self.adamw
            or self.peak_learning_rate is not None
            or self.lr_schedule != "constant"
            or self.label_smoothing > 0
        )

    @property
    def is_paper(self) -> bool:
        """True when the recipe changes nothing in the papers' training."""
        return self == TrainingRecipe()

    def describe(self) -> str:
        """One line naming every change from the papers' training (for run logs)."""
        if self.is_paper:
            return "the papers' training (no normalisation, augmentation or recipe change)"
        changes = []
        if self.normalization != "none":
            changes.append(f"{self.normalization} normalisation of every band")
        if self.spec_augment:
            changes.append("SpecAugment masking")
        if self.adamw:
            changes.append(
                "AdamW"
                + (f", weight decay {self.weight_decay:g}" if self.weight_decay else "")
            )
        if self.peak_learning_rate:
            changes.append(f"learning rate {self.peak_learning_rate:g}")
        if self.lr_schedule == "cosine":
            changes.append(
                "cosine learning-rate decay"
                + (f" after {self.warmup_epochs} warm-up epoch(s)" if self.warmup_epochs else "")
            )
        if self.label_smoothing:
            changes.append(f"label smoothing {self.label_smoothing:g}")
        if self.recalibrate_batch_norm:
            changes.append("batch-norm recalibration on the training data")
        return "; ".join(changes) + " (not in the papers)"

    # -------------------------------------------------------- application

    def normalization_groups(self, utterances) -> list | None:
        """One normalisation group per utterance (None for `"none"`).

        `"speaker"` groups by `corpus:speaker`, `"corpus"` by corpus and
        `"utterance"` gives every utterance its own group.
        """
        if self.normalization == "none":
            return None
        if self.normalization == "utterance":
            return list(range(len(utterances)))
        if self.normalization == "corpus":
            return [utterance.corpus for utterance in utterances]
        return [f"{utterance.corpus}:{utterance.speaker_id}" for utterance in utterances]

    def normalize(self, features, utterances, pad_value):
        """Normalises `[utterances, frames, bands]` features as the recipe says.

        Args:
            features: Padded frame features, one row per utterance.
            utterances: The utterance records (`corpus`, `speaker_id`), as many.
            pad_value: The front-end's padding value (padding frames are kept
                and left out of the statistics).

        Returns:
            The features (the same array for `"none"`, else a new one).
        """
        groups = self.normalization_groups(utterances)
        if groups is None:
            return features
        from ser_keras.features.normalization import standardize_per_speaker

        return standardize_per_speaker(features, groups, pad_value)

    def augmentation(self, train_features, pad_value):
        """The training-batch augmentation, or None.

        Masked bins take the mean of the training features' valid bins: 0
        after any normalisation, else the features' own mean (e.g. near the
        middle of a min-max scaled front-end's range).
        """
        if not self.spec_augment:
            return None
        import numpy as np

        from ser_keras.data.augmentation import SpecAugment

        if self.normalization != "none":
            mask_value = 0.0
        else:
            features = np.asarray(train_features)
            valid = ~np.all(features == pad_value, axis=-1) if pad_value is not None else None
            mask_value = float(features[valid].mean() if valid is not None else features.mean())
        return SpecAugment(mask_value=mask_value, pad_value=pad_value)

    def make_optimizer(self, paper_optimizer, *, steps_per_epoch: int, epochs: int):
        """The optimizer to compile with.

        Args:
            paper_optimizer: The experiment's own optimizer (an instance, a
                name or a config dict); returned as is when the recipe keeps
                the paper's optimization.
            steps_per_epoch: Training steps per epoch (for the schedule).
            epochs: Training epochs (for the schedule).

        Returns:
            An optimizer instance or `paper_optimizer`.
        """
        if not self.adamw and self.lr_schedule == "constant" and self.peak_learning_rate is None:
            return paper_optimizer
        import copy

        import keras

        if isinstance(paper_optimizer, keras.optimizers.Optimizer):
            # A fresh copy from its configuration (a built optimizer's
            # variables are not copied).
            base = type(paper_optimizer).from_config(paper_optimizer.get_config())
        else:
            base = keras.optimizers.get(copy.deepcopy(paper_optimizer))
        peak = self.peak_learning_rate or float(keras.ops.convert_to_numpy(base.learning_rate))
        learning_rate = peak
        if self.lr_schedule == "cosine":
            total = max(1, int(steps_per_epoch) * int(epochs))
            warmup = min(total - 1, int(steps_per_epoch) * self.warmup_epochs)
            learning_rate = keras.optimizers.schedules.CosineDecay(
                initial_learning_rate=0.0 if warmup else peak,
                decay_steps=max(1, total - warmup),
                warmup_target=peak if warmup else None,
                warmup_steps=warmup,
            )
        if self.adamw:
            return keras.optimizers.AdamW(
                learning_rate=learning_rate, weight_decay=self.weight_decay
            )
        config = base.get_config()
        config["learning_rate"] = learning_rate
        return type(base).from_config(config)

    def compile(self, model, paper_optimizer, *, steps_per_epoch: int, epochs: int):
        """Compiles `model` with the recipe's optimizer and label smoothing.

        Raises:
            ValueError: Label smoothing for a model whose `compile` has no
                `label_smoothing` (only `MultiTaskModel`s have it).
        """
        optimizer = self.make_optimizer(
            paper_optimizer, steps_per_epoch=steps_per_epoch, epochs=epochs
        )
        if self.label_smoothing:
            from ser_keras.training.multitask import MultiTaskModel

            if not isinstance(model, MultiTaskModel):
                raise ValueError(
                    f"label_smoothing={self.label_smoothing} needs a MultiTaskModel; "
                    f"received a {type(model).__name__}."
                )
            model.compile(optimizer=optimizer, label_smoothing=self.label_smoothing)
        else:
            model.compile(optimizer=optimizer)
        return model

    def replace(self, **changes) -> TrainingRecipe:
        """A copy with `changes` (None values ignored), validated again."""
        return dataclasses.replace(
            self, **{name: value for name, value in changes.items() if value is not None}
        )


RECIPES = {
    "paper": TrainingRecipe(),
    # Chosen on validation data only (benchmarks/RESULTS.md, "The training
    # recipe"): per-speaker normalisation and SpecAugment (+18 UA on EMO-DB
    # in the previous measurements), then AdamW, the cosine schedule and label
    # smoothing, which raised the mean validation UA on both corpora tried
    # (EMO-DB 67.0 -> 70.7 over 3 folds, RAVDESS 57.1 -> 58.3 over 2).
    # Batch-norm recalibration is kept per fold only where it does not lower
    # the validation UA (`fit_and_evaluate`). Every field is a change from the
    # papers.
    "cpu": TrainingRecipe(
        normalization="speaker",
        spec_augment=True,
        adamw=True,
        weight_decay=1e-4,
        lr_schedule="cosine",
        warmup_epochs=3,
        label_smoothing=0.1,
        recalibrate_batch_norm=True,
    ),
}


# The recipe's fields, as `ExperimentConfig` fields and command-line options.
RECIPE_FIELDS = tuple(field.name for field in dataclasses.fields(TrainingRecipe))


def field_of_error(error: ValueError) -> str | None:
    """The recipe field a `TrainingRecipe` ValueError is about (its first `name`), or None."""
    import re

    match = re.search(r"`(\w+)`", str(error))
    return match.group(1) if match and match.group(1) in RECIPE_FIELDS else None


def get_recipe(name: str) -> TrainingRecipe:
    """The recipe `RECIPES[name]`.

    Raises:
        ValueError: An unknown name.
    """
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe {name!r}; known: {', '.join(RECIPES)}.")
    return RECIPES[name]


def batch_norm_layers(model) -> list:
    """Every `keras.layers.BatchNormalization` layer of `model`, nested ones included."""
    import keras

    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def recalibrate_batch_norm(model, inputs, *, batch_size: int, seed: int = 0) -> int:
    """Replaces every batch-norm layer's moving statistics by those of `inputs`.

    Each layer's moving mean and variance are reset and then set to the exact
    average of the batch statistics over one pass of `inputs` in training
    mode (the cumulative average, as `torch.optim.swa_utils.update_bn`
    does); no weight changes. Dropout is active during that pass, as in
    training, and seeded by `seed`.

    Args:
        model: A built Keras model.
        inputs: Its inputs (an array or a dict of arrays), e.g. the
            un-augmented training features.
        batch_size: Batch size of the pass.
        seed: Seed of the pass's dropout.

    Returns:
        The number of batch-normalisation layers recalibrated (0: nothing
        changed). Layers the forward pass does not reach (e.g. a decoder
        that `model(inputs)` does not run) keep their statistics.
    """
    import keras
    import numpy as np

    layers = batch_norm_layers(model)
    if not layers:
        return 0
    if isinstance(inputs, dict):
        count = len(next(iter(inputs.values())))
    else:
        count = len(inputs)
    if count == 0:
        raise ValueError("recalibrate_batch_norm needs at least one input; received none.")
    momenta = [layer.momentum for layer in layers]
    previous = [
        (np.array(layer.moving_mean), np.array(layer.moving_variance)) for layer in layers
    ]
    for layer in layers:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    keras.utils.set_random_seed(seed)
    try:
        for step, start in enumerate(range(0, count, batch_size), start=1):
            # moving <- moving * (k - 1) / k + batch / k: the mean of the k batches.
            for layer in layers:
                layer.momentum = (step - 1) / step
            if isinstance(inputs, dict):
                batch = {name: value[start : start + batch_size] for name, value in inputs.items()}
            else:
                batch = inputs[start : start + batch_size]
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    recalibrated = 0
    for layer, (mean, variance) in zip(layers, previous, strict=True):
        untouched = not np.any(np.array(layer.moving_mean)) and np.all(
            np.array(layer.moving_variance) == 1.0
        )
        if untouched:
            # Not on the path from `inputs` to the outputs (e.g. an
            # autoencoder's decoder): its statistics are put back.
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)
        else:
            recalibrated += 1
    return recalibrated
