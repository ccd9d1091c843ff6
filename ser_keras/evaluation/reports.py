"""Evaluation reports: atomic JSON/text files, Markdown tables and PNG figures.

Every file is written atomically (a temporary file in the destination folder,
then `os.replace`), so an interrupted job never leaves a half-written report
that a later run would read. Figures are drawn on `matplotlib.figure.Figure`
objects with the Agg canvas directly: no pyplot state, no GUI backend, nothing
kept alive after saving (no memory growth over hundreds of folds).

Reference:
    Fu et al., "An end-to-end multitask learning model to improve speech
    emotion recognition" (EUSIPCO 2020): Table 2 (WA/UA of four settings) and
    Tables 3-4 (confusion matrices in percent, rows = true class, columns =
    prediction) are the layouts `plot_settings_comparison` and
    `confusion_markdown` reproduce.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import warnings
from collections.abc import Mapping, Sequence

import numpy as np

# atomic_path and write_text_atomic live in ser_keras.utils.atomic; imported here for
# the callers that know them as reports.atomic_path / reports.write_text_atomic.
from ser_keras.utils.atomic import atomic_path, write_text_atomic

MISSING_CELL = "n/a"


# ---------------------------------------------------------------------------
# JSON


def to_jsonable(obj):
    """Converts NumPy scalars/arrays, paths, dataclasses, tuples and sets to JSON types.

    Non-finite floats (`nan`, `inf`) become `None` so that the output is strict JSON.
    """
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return to_jsonable(obj.to_dict())
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, (set, frozenset)):
        return [to_jsonable(value) for value in sorted(obj, key=str)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"Cannot write an object of type {type(obj).__name__} as JSON: {obj!r}.")


def write_json_atomic(path, obj, indent: int = 2) -> pathlib.Path:
    """Writes `obj` as strict JSON (NumPy types converted, `nan` -> null), atomically.

    Args:
        path: Destination file; parent folders are created.
        obj: Dicts, lists, numbers, strings, NumPy scalars/arrays, paths,
            dataclasses (through their `to_dict()` where they have one).
        indent: JSON indentation.

    Returns:
        The destination path.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")


# ---------------------------------------------------------------------------
# Markdown


def _cell(value, float_format: str) -> str:
    if value is None:
        return MISSING_CELL
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(float(value)):
            return MISSING_CELL
        return float_format.format(float(value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence], float_format: str = "{:.2f}"
) -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        headers: Column titles.
        rows: One sequence per row, as long as `headers`. Floats are formatted
            with `float_format`; `None` and `nan` print as `n/a`; `|` is escaped.
        float_format: `str.format` pattern for floats.

    Returns:
        The table, lines joined with newlines (no trailing newline).
    """
    headers = [_cell(h, float_format) for h in headers]
    if not headers:
        raise ValueError("`headers` is empty; a Markdown table needs at least one column.")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for number, row in enumerate(rows):
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(
                f"Row {number} has {len(row)} cells but there are {len(headers)} headers: {row!r}."
            )
        lines.append("| " + " | ".join(_cell(value, float_format) for value in row) + " |")
    return "\n".join(lines)


def normalize_rows(matrix) -> np.ndarray:
    """Row-normalised confusion matrix in percent; rows without samples are `nan`."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(
            f"A confusion matrix must be square [classes, classes]; received shape {matrix.shape}."
        )
    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        percent = 100.0 * matrix / totals
    percent[np.broadcast_to(totals == 0, percent.shape)] = np.nan
    return percent


def _check_names(matrix, class_names):
    class_names = [str(name) for name in class_names]
    if len(class_names) != np.asarray(matrix).shape[0]:
        raise ValueError(
            f"{len(class_names)} class names for a {np.asarray(matrix).shape[0]}-class "
            f"confusion matrix: {class_names}."
        )
    return class_names


def confusion_markdown(matrix, class_names: Sequence[str], float_format: str = "{:.2f}") -> str:
    """A confusion matrix as a Markdown table of row-normalised percentages.

    Rows are true classes, columns predicted classes, each row sums to 100
    (its diagonal cell is the class recall), as in Tables 3-4 of Fu et al.
    A class without test samples prints `n/a` in its row.

    Args:
        matrix: Counts `[classes, classes]`, rows = true class.
        class_names: Class names in id order.
        float_format: `str.format` pattern for the percentages.

    Returns:
        The Markdown table.

    Reference:
        Fu et al., EUSIPCO 2020, Tables 3-4.
    """
    percent = normalize_rows(matrix)
    class_names = _check_names(percent, class_names)
    headers = ["true \\ predicted (%)"] + class_names
    rows = [[name] + list(percent[i]) for i, name in enumerate(class_names)]
    return markdown_table(headers, rows, float_format=float_format)


# ---------------------------------------------------------------------------
# Figures


def _new_figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure, path) -> pathlib.Path:
    path = pathlib.Path(path)
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png")
    finally:
        figure.clear()
    return path


def plot_confusion_matrix(
    matrix, class_names: Sequence[str], path, title: str | None = None, normalize: bool = True
) -> pathlib.Path:
    """Saves a confusion matrix as an annotated heat map (PNG).

    Args:
        matrix: Counts `[classes, classes]`, rows = true class.
        class_names: Class names in id order.
        path: Destination PNG file (written atomically).
        title: Figure title.
        normalize: Show row-normalised percentages (recall on the diagonal)
            instead of counts.

    Returns:
        The destination path.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    values = normalize_rows(counts) if normalize else counts
    class_names = _check_names(values, class_names)
    size = max(4.0, 0.7 * len(class_names) + 2.0)
    figure = _new_figure(size + 1.0, size)
    axes = figure.add_subplot(1, 1, 1)
    shown = np.nan_to_num(values, nan=0.0)
    top = 100.0 if normalize else max(float(shown.max()), 1.0)
    image = axes.imshow(shown, cmap="Blues", vmin=0.0, vmax=top)
    figure.colorbar(image, ax=axes, label="% of true class" if normalize else "utterances")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            value = values[i, j]
            if not math.isfinite(value):
                text = MISSING_CELL
            elif normalize:
                text = f"{value:.1f}"
            else:
                text = f"{int(value)}"
            axes.text(
                j, i, text, ha="center", va="center", fontsize=8,
                color="white" if shown[i, j] > 0.5 * top else "black",
            )
    if title:
        axes.set_title(title)
    return _save_figure(figure, path)


_PERCENT_FAMILIES = ("accuracy", "ua")


def _metric_family(key: str) -> tuple[str, bool]:
    """`("loss", True)` for `val_emotion_loss`: the panel a history key belongs to, and whether
    it is a validation curve."""
    validation = key.startswith("val_")
    base = key[len("val_"):] if validation else key
    for family in ("loss", "accuracy", "ua"):
        if base == family or base.endswith("_" + family):
            return family, validation
    return base, validation


def plot_training_curves(
    history: Mapping[str, Sequence[float]],
    path,
    title: str | None = None,
    selected_epoch: int | None = None,
) -> pathlib.Path:
    """Saves training curves, one panel per metric family, training vs validation (PNG).

    Keys are grouped by their suffix: every `*loss` in one panel, every
    `*accuracy` in another, every `*ua` in a third; any other metric gets its
    own panel. A validation curve (`val_` prefix) is dashed, in the colour of
    its training curve. Accuracies and UA (fractions in Keras' history) are
    drawn in percent, the unit of the result tables.

    Args:
        history: `keras.callbacks.History.history`: metric name -> value per epoch.
        path: Destination PNG file (written atomically).
        title: Figure title (name the setting and fold).
        selected_epoch: The epoch (from 1) whose weights were kept, marked
            with a vertical line in every panel.

    Returns:
        The destination path.
    """
    curves: dict[str, list[tuple[str, bool, np.ndarray]]] = {}
    for key, values in history.items():
        try:
            array = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            continue  # not a per-epoch number series
        if array.size == 0:
            continue
        family, validation = _metric_family(str(key))
        curves.setdefault(family, []).append((str(key), validation, array))
    if not curves:
        raise ValueError(
            f"`history` holds no per-epoch numeric series; received keys {list(history)}."
        )
    order = [f for f in ("loss", "accuracy", "ua") if f in curves]
    order += sorted(f for f in curves if f not in order)
    from matplotlib.ticker import MaxNLocator

    figure = _new_figure(4.5 * len(order), 3.6)
    for number, family in enumerate(order):
        axes = figure.add_subplot(1, len(order), number + 1)
        colours = {}
        for key, validation, array in sorted(curves[family], key=lambda c: (c[1], c[0])):
            base = key[len("val_"):] if validation else key
            if base not in colours:
                colours[base] = f"C{len(colours) % 10}"
            epochs = np.arange(1, array.size + 1)
            in_percent = family in _PERCENT_FAMILIES and np.nanmax(np.abs(array)) <= 1.0
            axes.plot(
                epochs, 100 * array if in_percent else array,
                linestyle="--" if validation else "-", color=colours[base],
                marker="o" if array.size == 1 else None, label=key,
            )
        if selected_epoch is not None and selected_epoch >= 1:
            axes.axvline(
                selected_epoch, color="grey", linestyle=":", linewidth=1.2,
                label=f"selected epoch {selected_epoch}",
            )
        axes.set_title(family)
        axes.set_ylabel("%" if family in _PERCENT_FAMILIES else family)
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    return _save_figure(figure, path)


def plot_settings_comparison(
    results: Mapping[str, Mapping[str, float]],
    path,
    metrics: Sequence[str] = ("wa", "ua"),
    title: str | None = None,
    reference: Mapping[str, Mapping[str, float]] | None = None,
    units: str = "fraction",
    chance: float | None = None,
    error_bars: str = "± 1 standard deviation over folds",
) -> pathlib.Path:
    """Saves a grouped bar chart comparing settings, with spread and paper numbers (PNG).

    Each setting is labelled with its `title` when its entry has one (the
    setting's full name), else with its key.

    Args:
        results: Setting name -> scores (fractions in [0, 1] by default), e.g.
            `{"multitask": {"wa": 0.70, "ua": 0.69, "wa_std": 0.03, "ua_std": 0.04}}`;
            an optional `<metric>_std` gives the error bar (spread over folds
            and seeds).
        path: Destination PNG file (written atomically).
        metrics: The scores to draw, one bar per setting and score.
        title: Figure title.
        reference: Optional published scores per setting (same units as
            `results`), drawn as black diamonds over the bars, e.g. Table 2
            of Fu et al.
        units: `"fraction"` (scores in [0, 1], the default) or `"percent"`.
            With `"fraction"`, a score above 1 cannot be a fraction: all
            scores are then read as percent, with a warning, rather than
            failing at the end of a long job.
        chance: The chance level (UA of a constant guess: 1 / number of
            classes), in the units of `results`; drawn as a dashed line.
        error_bars: What the error bars are, written under the plot.

    Returns:
        The destination path.
    """
    if not results:
        raise ValueError("`results` is empty; pass at least one setting.")
    metrics = list(metrics)
    if not metrics:
        raise ValueError("`metrics` is empty; name at least one score, e.g. ('wa', 'ua').")
    settings = list(results)
    for setting in settings:
        missing = [m for m in metrics if m not in results[setting]]
        if missing:
            raise ValueError(
                f"Setting {setting!r} has no score {missing}; it has {sorted(results[setting])}."
            )
    if units not in ("fraction", "percent"):
        raise ValueError(f"`units` must be 'fraction' or 'percent'; received {units!r}.")
    largest = max(
        abs(float(entry.get(key) or 0.0))
        for entry in list(results.values()) + list((reference or {}).values())
        for key in list(metrics) + [f"{m}_std" for m in metrics]
    )
    if units == "fraction" and largest > 1.0:
        warnings.warn(
            f"plot_settings_comparison: a score of {largest} cannot be a fraction; reading all "
            "scores as percent (pass units='percent').",
            stacklevel=2,
        )
        units = "percent"
    scale = 100.0 if units == "fraction" else 1.0
    positions = np.arange(len(settings))
    width = 0.8 / len(metrics)
    figure = _new_figure(max(5.0, 1.3 * len(settings) * len(metrics) / 2 + 2.0), 4.0)
    axes = figure.add_subplot(1, 1, 1)
    has_reference = False
    for number, metric in enumerate(metrics):
        offset = positions - 0.4 + width * (number + 0.5)
        heights = [scale * float(results[s][metric]) for s in settings]
        spreads = [scale * float(results[s].get(f"{metric}_std") or 0.0) for s in settings]
        bars = axes.bar(
            offset, heights, width, yerr=spreads if any(spreads) else None, capsize=3,
            label=metric.upper(), color=f"C{number}",
        )
        axes.bar_label(bars, fmt="%.1f", fontsize=7, label_type="center", color="white")
        if reference:
            points = [
                (x, scale * float(reference[s][metric]))
                for x, s in zip(offset, settings, strict=True)
                if s in reference and reference[s].get(metric) is not None
            ]
            if points:
                axes.scatter(
                    [p[0] for p in points], [p[1] for p in points], marker="D", s=22,
                    color="black", zorder=3, label="published" if not has_reference else None,
                )
                has_reference = True
    if chance is not None:
        axes.axhline(
            scale * float(chance), color="grey", linestyle="--", linewidth=1,
            label=f"chance ({scale * float(chance):.1f} %)",
        )
    names = [str(results[s].get("title") or s) for s in settings]
    axes.set_xticks(positions, labels=names, rotation=20, ha="right")
    axes.set_ylabel("%")
    axes.set_ylim(0, 105)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(title or "Settings compared")
    if any(
        results[s].get(f"{m}_std") for s in settings for m in metrics
    ):
        figure.text(0.01, 0.01, f"Error bars: {error_bars}.", fontsize=7, color="dimgrey")
    return _save_figure(figure, path)


# Kim et al.'s Figure 2 colours of neutral, happiness, sadness and anger.
TSNE_COLOURS = ("tab:green", "tab:orange", "tab:blue", "tab:red")


def plot_tsne(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path,
    title: str | None = None,
    seed: int = 0,
    colours: Sequence[str] = TSNE_COLOURS,
) -> pathlib.Path:
    """Saves a 2-D t-SNE embedding of feature vectors, one panel per system, coloured by class.

    The layout of Kim et al.'s Figure 2 (the high-level features of the test
    utterances of an STL and an MTL model): panels side by side (two per row
    from three panels), lettered (a), (b), ... The perplexity is
    `min(30, max(2, (n - 1) / 3))` for `n` points, so small sets still embed.

    Args:
        panels: `(panel title, features [N, D], class ids [N])` per panel.
        class_names: Class names in id order (the legend).
        path: Destination PNG file (written atomically).
        title: Figure title.
        seed: Seed of the t-SNE initialisation.
        colours: Colour per class id (cycled).

    Returns:
        The destination path.

    Raises:
        ValueError: No panel, or a panel with fewer than 5 points.
    """
    if not panels:
        raise ValueError("`panels` is empty; give at least one (title, features, labels).")
    for panel_title, features, _ in panels:
        if len(features) < 5:
            raise ValueError(
                f"t-SNE needs at least 5 points per panel. Received: {len(features)} "
                f"for {panel_title!r}"
            )
    from sklearn.manifold import TSNE

    columns = len(panels) if len(panels) < 3 else 2
    rows = (len(panels) + columns - 1) // columns
    figure = _new_figure(5.0 * columns, 4.5 * rows)
    letters = "abcdefghijklmnopqrstuvwxyz"
    for position, (panel_title, features, labels) in enumerate(panels):
        labels = np.asarray(labels)
        perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3.0)))
        embedding = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(np.asarray(features))
        axes = figure.add_subplot(rows, columns, position + 1)
        for number, name in enumerate(class_names):
            chosen = labels == number
            axes.scatter(
                embedding[chosen, 0], embedding[chosen, 1], s=8,
                c=colours[number % len(colours)], label=name,
            )
        axes.set_title(f"({letters[position % len(letters)]}) {panel_title}")
        axes.set_xticks([])
        axes.set_yticks([])
        if position == 0:
            axes.legend(fontsize=7, markerscale=2)
    if title:
        figure.suptitle(title)
    return _save_figure(figure, path)


def read_history_csv(path) -> dict[str, list[float]]:
    """Reads a `keras.callbacks.CSVLogger` file: metric -> value per epoch.

    Args:
        path: The CSV file (e.g. a fold's `history.csv`).

    Returns:
        Every numeric column but `epoch`; `{}` when the file does not exist.
    """
    import csv

    history: dict[str, list[float]] = {}
    path = pathlib.Path(path)
    if not path.exists():
        return history
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key == "epoch":
                    continue
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    continue
                history.setdefault(key, []).append(number)
    return history


def plot_loss_panels(
    panels: Sequence[tuple[str, Sequence[str], Mapping[str, Mapping[str, Sequence[float]]]]],
    path,
    title: str | None = None,
) -> pathlib.Path | None:
    """Saves one panel of losses per epoch for each training phase, every run overlaid (PNG).

    E.g. the adversarial autoencoder's reconstruction, regularisation and
    classification phases (and a pre-training stage), over the folds of a
    setting. In each panel a key's training curve is solid and its `val_`
    curve dashed, in the key's colour; every run (fold) is drawn.

    Args:
        panels: `(panel title, loss keys, histories)` triples; `histories`
            maps a run name to its history (metric -> value per epoch).
            Panels whose histories hold none of their keys are left out.
        path: Destination PNG file (written atomically).
        title: Figure title.

    Returns:
        The destination path, or None when no panel has data (nothing written).
    """
    from matplotlib.ticker import MaxNLocator

    panels = [
        (name, tuple(keys), histories)
        for name, keys, histories in panels
        if any(key in (history or {}) for history in histories.values() for key in keys)
    ]
    if not panels:
        return None
    figure = _new_figure(4.5 * len(panels), 3.6)
    for number, (name, keys, histories) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), number + 1)
        for colour, key in enumerate(keys):
            for validation in (False, True):
                column = f"val_{key}" if validation else key
                labelled = False
                for history in histories.values():
                    values = (history or {}).get(column)
                    if not values:
                        continue
                    axes.plot(
                        range(1, len(values) + 1),
                        values,
                        color=f"C{colour}",
                        linestyle="--" if validation else "-",
                        alpha=0.7,
                        marker="o" if len(values) == 1 else None,
                        label=None if labelled else column,
                    )
                    labelled = True
        axes.set_title(name)
        axes.set_xlabel("epoch")
        axes.set_ylabel("loss")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    return _save_figure(figure, path)
