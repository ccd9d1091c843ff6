"""Typed experiment configurations: an experiment preset merged with overrides.

Every experiment of `ser_keras.experiments` is configured by a dataclass
derived from `ExperimentConfig`. Its fields marked `preset_field()` take their
value from the experiment's preset (`quick`, `paper`, `cpu`, ...), so every
number is stated once, in the preset table; anything given to the constructor
overrides it:

    config = FuSaveeCrossLanguageConfig(preset="quick", epochs=3)
    config.batch_size            # 64, from the "quick" preset

The configuration is validated when it is built: a wrong value raises a
`ConfigError` (a `ValueError`) naming the field and the value received, before
any data is read. The apps turn the field's name into the option's
(`epochs` -> `--epochs`).

This module imports neither TensorFlow nor Keras: building a configuration
(and an app's `--help`) stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A configuration value that cannot be used.

    Args:
        field: The configuration field, e.g. `"epochs"`.
        problem: What is wrong, completing a sentence that starts with the
            field's name, e.g. `"must be at least 1. Received: 0"`.

    Attributes:
        field: The field's name.
        problem: The text after the field's name.
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field} {problem}")

    def as_option(self, option: str | None = None) -> str:
        """The message with the field spelt as a command-line option (`--num-frames`)."""
        return f"{option or option_name(self.field)} {self.problem}"


def option_name(field: str) -> str:
    """The command-line option of a configuration field: `num_frames` -> `--num-frames`."""
    return "--" + field.replace("_", "-")


class _FromPreset:
    """Marks a field whose value comes from the experiment's preset."""

    def __repr__(self) -> str:
        return "<from preset>"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


FROM_PRESET: Any = _FromPreset()


def preset_field() -> Any:
    """A dataclass field whose default is the value in the experiment's preset."""
    return dataclasses.field(default=FROM_PRESET)


# --------------------------------------------------------------- checks


def check_at_least(field: str, value, minimum, *, allow_none: bool = False) -> None:
    """Raises `ConfigError` unless `value` is a number >= `minimum` (or None when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(field, f"must be at least {minimum}. Received: {value!r}")


def check_integer_at_least(field: str, value, minimum: int, *, allow_none: bool = False) -> None:
    """Like `check_at_least`, and the value must be an integer."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(field, f"must be an integer of at least {minimum}. Received: {value!r}")


def check_fraction(field: str, value, low: float = 0.0, high: float = 1.0) -> None:
    """Raises `ConfigError` unless `low < value < high`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value < high:
        raise ConfigError(field, f"must be in ({low:g}, {high:g}). Received: {value!r}")


def check_choice(field: str, value, choices: Sequence) -> None:
    """Raises `ConfigError` unless `value` is one of `choices`."""
    if value not in choices:
        raise ConfigError(
            field, f"must be one of {', '.join(map(str, choices))}. Received: {value!r}"
        )


def check_names(field: str, names: Iterable[str], allowed: Sequence[str]) -> tuple[str, ...]:
    """Checks a non-empty list of names (each from `allowed`); returns it as a tuple, once each."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    names = tuple(dict.fromkeys(names))
    unknown = [name for name in names if name not in allowed]
    if not names or unknown:
        raise ConfigError(
            field,
            f"takes names from {', '.join(allowed)}. Received: {', '.join(names) or 'none'}"
            + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
        )
    return names


def check_output_path(field: str, path) -> None:
    """Checks that an output folder can be written (`ser_keras.cli.check_output_folder`).

    Not an existing file, nor under one, nor a broken link; the folder or its
    nearest existing parent writable. None (no output) passes.
    """
    if path is None:
        return
    from ser_keras.cli import check_output_folder

    option = option_name(field)
    try:
        check_output_folder(option, path)
    except ValueError as error:
        raise ConfigError(field, str(error).removeprefix(option).lstrip()) from None


# --------------------------------------------------------------- the base


@dataclasses.dataclass
class ExperimentConfig:
    """The options every experiment shares.

    Subclasses add the experiment's own fields; those marked `preset_field()`
    come from `PRESETS[preset]` unless given.

    Args:
        preset: Name of the experiment preset (`PRESETS`).
        seed: Seed of the splits, the weights, shuffling and dropout.
        out: The run's output folder (`None`: the experiment's `DEFAULT_OUT`).
        export_dir: Where the best model is exported in TF Serving's layout;
            `None` exports nothing.
        resume: Continue an interrupted run in `out` (finished folds are
            reused; a fold in progress continues from its last epoch).
        cache_dir: Waveform and synthetic-corpus cache (`None`:
            `$SER_KERAS_CACHE` or `~/.cache/ser_keras`).
        quiet: No per-epoch progress lines.
        strategy: `"none"`, `"mirrored"` or `"multiworker"`
            (`ser_keras.training.distribute`).
        recipe: Name of the training recipe (`ser_keras.training.recipe.RECIPES`;
            None: the preset's `"recipe"`, else `"paper"`).
        normalization, spec_augment, adamw, peak_learning_rate, lr_schedule,
            warmup_epochs, weight_decay, label_smoothing,
            recalibrate_batch_norm: Override the recipe's field of the same
            name (None: the preset's value of that name if it has one, else
            the recipe's); `training_recipe()` gives the result.
    """

    PRESETS: ClassVar[dict[str, dict]] = {}
    DEFAULT_OUT: ClassVar[str] = "runs/experiment"

    preset: str = "quick"
    seed: int = 0
    out: str | None = None
    export_dir: str | None = "saved_models"
    resume: bool = False
    cache_dir: str | None = None
    quiet: bool = False
    strategy: str = "none"
    recipe: str | None = None
    normalization: str | None = None
    spec_augment: bool | None = None
    adamw: bool | None = None
    peak_learning_rate: float | None = None
    lr_schedule: str | None = None
    warmup_epochs: int | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    recalibrate_batch_norm: bool | None = None

    def __post_init__(self):
        check_choice("preset", self.preset, tuple(self.PRESETS))
        values = self.PRESETS[self.preset]
        for field in dataclasses.fields(self):
            if getattr(self, field.name) is FROM_PRESET:
                if field.name not in values:
                    raise ConfigError(
                        field.name, f"is not set by the preset {self.preset!r} nor given."
                    )
                setattr(self, field.name, values[field.name])
        if self.out is None:
            self.out = self.DEFAULT_OUT
        if self.recipe is None:
            self.recipe = values.get("recipe", "paper")
        from ser_keras.training.recipe import RECIPE_FIELDS

        # A preset may set single recipe fields too (e.g. another normalisation).
        for name in RECIPE_FIELDS:
            if getattr(self, name) is None and values.get(name) is not None:
                setattr(self, name, values[name])
        self.validate()

    @classmethod
    def from_preset(cls, preset: str = "quick", **overrides):
        """The preset's configuration with `overrides` applied (a `None` override is ignored).

        Raises:
            ConfigError: An unknown preset or field, or a value out of range.
        """
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(unknown[0], f"is not an option of {cls.__name__}.")
        given = {name: value for name, value in overrides.items() if value is not None}
        return cls(preset=preset, **given)

    def validate(self) -> None:
        """Checks every field; subclasses extend it (calling `super().validate()`).

        Raises:
            ConfigError: The first field whose value cannot be used.
        """
        check_integer_at_least("seed", self.seed, 0)
        from ser_keras.cli import STRATEGIES

        check_choice("strategy", self.strategy, STRATEGIES)
        check_output_path("out", self.out)
        check_output_path("export_dir", self.export_dir)
        self._training_recipe = self._build_recipe()

    def _build_recipe(self):
        from ser_keras.training.recipe import RECIPE_FIELDS, RECIPES, field_of_error

        check_choice("recipe", self.recipe, tuple(RECIPES))
        overrides = {name: getattr(self, name) for name in RECIPE_FIELDS}
        try:
            return RECIPES[self.recipe].replace(**overrides)
        except ValueError as error:
            field = field_of_error(error) or "recipe"
            raise ConfigError(field, str(error).removeprefix(f"`{field}` ")) from None

    def training_recipe(self):
        """The `TrainingRecipe`: the named `recipe` with this configuration's overrides."""
        return self._training_recipe

    def to_dict(self) -> dict:
        """Every field, JSON-ready (tuples become lists)."""
        return {
            field.name: list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }

    # Fields that say how to run, not what is computed: left out of the
    # configuration a resumed run must match. `folds` (in the experiments
    # that have it) keeps the first N folds of a fixed list whose every fold
    # is seeded on its own, so a resumed run may run more (or fewer) of them
    # and reuse the finished ones.
    RUN_CONTROL: ClassVar[tuple[str, ...]] = (
        "out", "export_dir", "resume", "cache_dir", "quiet", "strategy", "folds",
    )

    def run_config(self) -> dict:
        """The fields that decide the results (`to_dict` less `RUN_CONTROL`)."""
        return {
            name: value for name, value in self.to_dict().items() if name not in self.RUN_CONTROL
        }

    def replace(self, **changes):
        """A copy with `changes` applied (validated again)."""
        return dataclasses.replace(self, **changes)
