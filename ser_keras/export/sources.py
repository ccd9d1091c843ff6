"""Finding a trained model on disk: exports, `.keras` checkpoints and their sidecars.

What `python -m apps.export` and `ser_keras.predict` both need, once:

- `locate_model`: a path a user gives -> the model it names. An exported
  SavedModel version folder (`saved_models/<name>/<version>/`), a model
  folder (`saved_models/<name>/`: its highest version), a `.keras` file, a
  training fold folder holding `best.keras`, or a whole training run folder
  (the fold whose checkpoint scored best on validation).
- `find_model_file`: the same, restricted to `.keras` files (the export app).
- `resolve_model_inputs`: the front-end and label names of a `.keras` model,
  from its sidecar (`best.export.json`, `ser_keras.export.serving.
  write_export_sidecar`) and what the caller gives instead.
- `load_keras_model`: `keras.saving.load_model` with every ser_keras class
  registered.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

MODEL_SUFFIX = ".keras"
# Interrupted saves (`ser_keras.utils.atomic`) that are never models.
PARTIAL_SUFFIX = ".partial.keras"
# The checkpoint a training fold keeps (`ser_keras.training.runner.fit_and_evaluate`)
# and the result beside it, whose `best_validation` is the score it was selected by.
CHECKPOINT_NAME = "best.keras"
RESULT_NAME = "result.json"
SAVED_MODEL_FILE = "saved_model.pb"
# Subpackages whose modules register Keras classes a saved model may use.
KERAS_OBJECT_PACKAGES = ("features", "layers", "models", "training", "export")


@dataclasses.dataclass(frozen=True)
class ModelLocation:
    """A model found on disk.

    Attributes:
        kind: `"saved_model"` (an exported version folder) or `"keras"` (a
            `.keras` file).
        path: The version folder or the `.keras` file.
        note: How it was chosen, in words, when the path given was a folder
            holding several (e.g. `"latest of versions [1, 2]"`); else "".
    """

    kind: str
    path: pathlib.Path
    note: str = ""


def _prefix(option):
    return f"{option}: " if option else ""


def _is_version_folder(path):
    return path.is_dir() and (path / SAVED_MODEL_FILE).is_file()


def _versions(folder):
    return sorted(
        int(child.name)
        for child in folder.iterdir()
        if child.name.isdigit() and _is_version_folder(child)
    )


def _keras_files(folder):
    return sorted(
        path
        for path in folder.glob(f"*{MODEL_SUFFIX}")
        if path.is_file() and not path.name.endswith(PARTIAL_SUFFIX)
    )


def _validation_score(checkpoint):
    """The `best_validation` in the `result.json` beside a checkpoint, or None."""
    try:
        stored = json.loads((checkpoint.parent / RESULT_NAME).read_text())
        value = stored.get("best_validation")
        # Newer result.json files hold accuracies in percent (older ones, fractions).
        if stored.get("units") == "percent" and "best_validation" in stored.get("percent_keys", []):
            value = value / 100 if isinstance(value, (int, float)) else value
    except (OSError, ValueError, AttributeError, TypeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _best_checkpoint(folder, option):
    """The run's fold checkpoint with the highest validation score (or the only one)."""
    checkpoints = sorted(
        path for path in folder.rglob(CHECKPOINT_NAME) if path.is_file() and not path.is_symlink()
    )
    if not checkpoints:
        return None
    if len(checkpoints) == 1:
        return ModelLocation("keras", checkpoints[0])
    scores = {path: _validation_score(path) for path in checkpoints}
    unscored = [str(path.relative_to(folder)) for path, score in scores.items() if score is None]
    if unscored:
        raise ValueError(
            f"{_prefix(option)}{str(folder)!r} holds {len(checkpoints)} {CHECKPOINT_NAME} "
            f"checkpoints, and {len(unscored)} of them have no validation score in a "
            f"{RESULT_NAME} beside them (e.g. {unscored[:3]}) to choose by: pass the fold folder "
            "or the file."
        )
    best = checkpoints[0]
    for path in checkpoints[1:]:  # the first in path order on a tie
        if scores[path] > scores[best]:
            best = path
    note = (
        f"the best validation score ({scores[best]:.4f}) of the {len(checkpoints)} "
        f"{CHECKPOINT_NAME} checkpoints under {folder}"
    )
    return ModelLocation("keras", best, note)


def locate_model(path, *, option=None, saved_models=True, keras_files=True):
    """The model a path names.

    In order: a `saved_model.pb` or the folder holding it (an exported
    version); a model folder whose integer-named subfolders hold exports (the
    highest version); a `.keras` file; a folder holding `best.keras` (a
    training fold) or exactly one `.keras` file (`*.partial.keras` ignored);
    a folder with `best.keras` files below it (a training run: the one whose
    `result.json` has the highest `best_validation`, the validation score the
    runner selected the checkpoint by; every one must have it).

    Args:
        path: What the user gave.
        option: Named at the start of the error messages (e.g.
            `"--model"`); None names nothing.
        saved_models: Accept exported SavedModels.
        keras_files: Accept `.keras` files.

    Returns:
        A `ModelLocation`.

    Raises:
        ValueError: The path does not exist or names no model (or several
            that cannot be told apart), naming it.
    """
    path = pathlib.Path(path)
    kinds = (["an exported SavedModel"] if saved_models else []) + (
        [f"a {MODEL_SUFFIX} model"] if keras_files else []
    )
    wanted = " or ".join(kinds)
    if not path.exists():
        raise ValueError(f"{_prefix(option)}{str(path)!r} does not exist.")
    if path.is_file():
        if saved_models and path.name == SAVED_MODEL_FILE:
            return ModelLocation("saved_model", path.parent)
        if keras_files and path.suffix == MODEL_SUFFIX:
            return ModelLocation("keras", path)
        raise ValueError(f"{_prefix(option)}{str(path)!r} is not {wanted}.")
    if saved_models:
        if _is_version_folder(path):
            return ModelLocation("saved_model", path)
        versions = _versions(path)
        if versions:
            note = f"the latest of versions {versions}" if len(versions) > 1 else ""
            return ModelLocation("saved_model", path / str(versions[-1]), note)
    if keras_files:
        if (path / CHECKPOINT_NAME).is_file():
            return ModelLocation("keras", path / CHECKPOINT_NAME)
        candidates = _keras_files(path)
        if len(candidates) == 1:
            return ModelLocation("keras", candidates[0])
        if candidates:
            raise ValueError(
                f"{_prefix(option)}{str(path)!r} holds several models "
                f"({[p.name for p in candidates]}); pass the file."
            )
        found = _best_checkpoint(path, option)
        if found is not None:
            return found
    raise ValueError(f"{_prefix(option)}found no model ({wanted}) in {str(path)!r}.")


def find_model_file(path, *, option=None):
    """The `.keras` file a path names (`locate_model` without SavedModels)."""
    return locate_model(path, option=option, saved_models=False).path


@dataclasses.dataclass
class ModelInputs:
    """What serving a `.keras` model needs besides its weights.

    Attributes:
        frontend: The `LogMel` front-end the model was trained behind.
        label_names: Dict task -> class names in class-index order.
        sidecar: The sidecar document (`read_export_sidecar`), or None.
        sidecar_path: Where the sidecar is (or would be).
    """

    frontend: object
    label_names: dict
    sidecar: dict | None
    sidecar_path: pathlib.Path


def resolve_model_inputs(
    model_path,
    *,
    frontend=None,
    frontend_overrides=None,
    label_names=None,
    frontend_hint="pass `frontend` (a preset such as fu2021)",
    labels_hint="pass `label_names`, a dict task -> class names in class-index order",
):
    """The front-end and label names of a `.keras` model: its sidecar, or what is given.

    Args:
        model_path: The `.keras` file.
        frontend: Replaces the sidecar's front-end: a preset name (e.g.
            `"fu2021"`), a description (`describe_frontend`) or a `LogMel`
            layer.
        frontend_overrides: Front-end arguments replacing the preset's (of
            `frontend`'s preset, else the sidecar's).
        label_names: Dict task -> names, replacing the sidecar's per task.
        frontend_hint: How to give a front-end, in the message when there is
            none (e.g. `"pass --frontend PRESET (e.g. fu2021)"`).
        labels_hint: How to give label names, in the message when there are
            none.

    Returns:
        A `ModelInputs`.

    Raises:
        ValueError: No front-end or no label names (neither in a sidecar nor
            given), a bad sidecar or description, overrides without a preset.
    """
    import keras

    from ser_keras.export.saved_model import frontend_from_description
    from ser_keras.export.serving import read_export_sidecar, sidecar_path

    model_path = pathlib.Path(model_path)
    overrides = dict(frontend_overrides or {})
    sidecar = read_export_sidecar(model_path)
    where = f"the sidecar {sidecar_path(model_path)}" if sidecar else "no sidecar"

    if isinstance(frontend, keras.layers.Layer):
        if overrides:
            raise ValueError("Front-end overrides need a preset, not a front-end layer.")
        layer = frontend
    else:
        if isinstance(frontend, str):
            description = {"preset": frontend, "overrides": overrides}
        elif isinstance(frontend, dict):
            description = dict(frontend)
        elif frontend is None and sidecar and sidecar.get("frontend"):
            description = dict(sidecar["frontend"])
        elif frontend is None:
            raise ValueError(
                f"No front-end for {model_path} ({where}): {frontend_hint}, or write a sidecar "
                "with ser_keras.export.serving.write_export_sidecar."
            )
        else:
            raise ValueError(
                "`frontend` must be a preset name, a description dict or a LogMel layer; "
                f"received {frontend!r}."
            )
        if overrides and not isinstance(frontend, str):
            if not description.get("preset"):
                raise ValueError(
                    f"Front-end overrides need a preset: {where} has a front-end config only; "
                    f"{frontend_hint}."
                )
            description["overrides"] = {**(description.get("overrides") or {}), **overrides}
        layer = frontend_from_description(description)

    names = dict((sidecar or {}).get("label_names") or {})
    names.update(label_names or {})
    if not names:
        raise ValueError(f"No label names for {model_path} ({where}): {labels_hint}.")
    return ModelInputs(layer, names, sidecar, sidecar_path(model_path))


def register_keras_objects():
    """Imports every ser_keras module that registers Keras classes (for `load_model`).

    Returns:
        The modules that failed to import, with the error (for the message of
        a load that then fails).
    """
    import importlib
    import pkgutil

    failures = []
    for package_name in KERAS_OBJECT_PACKAGES:
        package = importlib.import_module(f"ser_keras.{package_name}")
        for module in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
            try:
                importlib.import_module(module.name)
            except Exception as error:  # noqa: BLE001 - reported if the load then fails
                failures.append(f"{module.name}: {type(error).__name__}: {error}")
    return failures


def load_keras_model(model_path):
    """Loads a `.keras` model (uncompiled) with every ser_keras class registered.

    Raises:
        ValueError: The file cannot be loaded (the reason, and the ser_keras
            modules that failed to import, if any).
    """
    import keras

    failures = register_keras_objects()
    try:
        return keras.models.load_model(str(model_path), compile=False)
    except Exception as error:
        hint = f" Modules that failed to import: {failures}." if failures else ""
        raise ValueError(
            f"Cannot load {model_path}: {type(error).__name__}: {error}.{hint}"
        ) from error


__all__ = [
    "ModelInputs",
    "ModelLocation",
    "find_model_file",
    "load_keras_model",
    "locate_model",
    "register_keras_objects",
    "resolve_model_inputs",
]
