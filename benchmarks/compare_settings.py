"""Two settings of `bench_vs_reference` runs against each other, paired over folds and seeds.

The papers' orderings (multi-task against single-task, cross-language
against one corpus, the AAE against its CNN) are claims about two settings
on the same folds. `bench_vs_reference` writes every (seed, setting, fold)
deep score in its `results.json` (`runs`); this tool pairs two settings'
scores on the same (seed, fold), from one run or from two runs of the same
experiment and folds, and tests the difference:

```
python -m benchmarks.compare_settings runs/s3/main_cpu_mtl:mtl runs/s3/main_cpu_stl:stl
python -m benchmarks.compare_settings runs/s3/aae_cpu:mtl runs/s3/aae_cpu:cnn --plot aae.png
```

The first setting is compared with the second (the baseline): the mean
difference in UA, the number of pairs it wins, and two Wilcoxon signed-rank
tests (two-sided): over every (fold, seed) pair, and over the folds with
each fold's UA averaged over the seeds both settings ran (the folds are the
independent units; seeds of one fold share its test speaker).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np


def parse_side(text: str) -> tuple[pathlib.Path, str]:
    """`"RUN_DIR_OR_RESULTS_JSON:SETTING"` -> `(results.json path, setting)`.

    Raises:
        ValueError: No `:SETTING`, or no results.json there.
    """
    path, separator, setting = text.rpartition(":")
    if not separator or not path or not setting:
        raise ValueError(f"expected RUN_DIR:SETTING (e.g. runs/x:stl). Received: {text!r}")
    results = pathlib.Path(path)
    if results.is_dir():
        results = results / "results.json"
    if not results.is_file():
        raise ValueError(f"no results.json of bench_vs_reference at {path!r}. Received: {text!r}")
    return results, setting


def setting_runs(results: dict, setting: str) -> dict[tuple[int, str], dict]:
    """`(seed, fold) -> run entry` of one setting in a `bench_vs_reference` results dict.

    Raises:
        ValueError: The results hold no run of `setting`.
    """
    runs = {
        (int(run["seed"]), str(run["fold"])): run
        for run in results.get("runs", [])
        if run.get("setting") == setting
    }
    if not runs:
        found = sorted({run.get("setting") for run in results.get("runs", [])})
        raise ValueError(f"no runs of setting {setting!r} (the results hold {found}).")
    return runs


def compare(scores: dict, baseline_scores: dict) -> dict:
    """The paired comparison of two `(seed, fold) -> score` dicts on their shared pairs.

    Raises:
        ValueError: No shared pair.
    """
    from ser_keras.evaluation.statistics import wilcoxon_signed_rank

    pairs = sorted(set(scores) & set(baseline_scores))
    if not pairs:
        raise ValueError(
            "the two settings share no (seed, fold) pair. Received seeds/folds "
            f"{sorted(scores)} and {sorted(baseline_scores)}"
        )
    a = np.array([scores[p] for p in pairs])
    b = np.array([baseline_scores[p] for p in pairs])
    folds = sorted({fold for _, fold in pairs})
    seeds = sorted({seed for seed, _ in pairs})
    fold_a = np.array([np.mean([scores[p] for p in pairs if p[1] == f]) for f in folds])
    fold_b = np.array([np.mean([baseline_scores[p] for p in pairs if p[1] == f]) for f in folds])
    return {
        "pairs": len(pairs),
        "seeds": seeds,
        "folds": folds,
        "mean": float(a.mean()),
        "baseline_mean": float(b.mean()),
        "mean_difference": float((a - b).mean()),
        "wins": int((a > b).sum()),
        "ties": int((a == b).sum()),
        "per_fold_difference": {
            f: float(x - y) for f, x, y in zip(folds, fold_a, fold_b, strict=True)
        },
        "pair_differences": [
            {"seed": seed, "fold": fold, "difference": float(x - y)}
            for (seed, fold), x, y in zip(pairs, a, b, strict=True)
        ],
        "wilcoxon_pairs": wilcoxon_signed_rank(a, b),
        "wilcoxon_folds": wilcoxon_signed_rank(fold_a, fold_b),
    }


def markdown(name: str, baseline_name: str, result: dict, metric: str) -> str:
    """The comparison as a short markdown table and a per-fold line."""
    from ser_keras.evaluation.statistics import format_p_value

    pairs, folds = result["wilcoxon_pairs"], result["wilcoxon_folds"]
    metric_name = metric.upper()
    lines = [
        f"| {name} − {baseline_name} | {metric_name} {name} | {metric_name} {baseline_name} "
        "| mean difference | wins | Wilcoxon p, (fold, seed) pairs | Wilcoxon p, folds |",
        "|---|---:|---:|---:|---:|---|---|",
        f"| {len(result['seeds'])} seed(s) x {len(result['folds'])} folds "
        f"| {result['mean']:.1f} | {result['baseline_mean']:.1f} "
        f"| {result['mean_difference']:+.1f} | {result['wins']} of {result['pairs']} "
        f"| {format_p_value(pairs, missing='–')} (n={pairs['n']}) "
        f"| {format_p_value(folds, missing='–')} (n={folds['n']}) |",
        "",
        "Per fold (seed mean), difference: "
        + ", ".join(f"{f} {d:+.1f}" for f, d in result["per_fold_difference"].items()),
    ]
    return "\n".join(lines)


def plot(name: str, baseline_name: str, result: dict, metric: str, path) -> pathlib.Path:
    """Per fold, the seed-mean difference (bar) and each seed's difference (dots), PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ser_keras.evaluation.statistics import format_p_value
    from ser_keras.utils.atomic import atomic_path

    folds = result["folds"]
    positions = {fold: number for number, fold in enumerate(folds)}
    figure, axis = plt.subplots(figsize=(max(5.0, 0.8 * len(folds) + 2), 4.0))
    means = [result["per_fold_difference"][fold] for fold in folds]
    axis.bar(range(len(folds)), means, 0.6, color=["tab:green" if m > 0 else "tab:red"
                                                   for m in means], alpha=0.5,
             label="mean over seeds")
    for seed in result["seeds"]:
        points = [e for e in result["pair_differences"] if e["seed"] == seed]
        axis.scatter([positions[e["fold"]] for e in points],
                     [e["difference"] for e in points], s=18, zorder=3, label=f"seed {seed}")
    axis.axhline(0.0, color="black", linewidth=1)
    axis.set_xticks(range(len(folds)), folds, rotation=30, ha="right")
    axis.set_ylabel(f"{metric.upper()} {name} − {baseline_name} (points)")
    axis.set_title(
        f"{name} − {baseline_name}: {result['mean_difference']:+.1f} {metric.upper()}, "
        f"{result['wins']} of {result['pairs']} pairs won, Wilcoxon p "
        f"{format_p_value(result['wilcoxon_folds'], missing='n/a')} over folds",
        fontsize=9,
    )
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=120, format="png")
    finally:
        plt.close(figure)
    return pathlib.Path(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_settings",
        description=__doc__.split("\n\n")[0]
        + ". Pairs the two settings' deep scores on the same (seed, fold) and tests them.",
    )
    parser.add_argument("setting", help="RUN_DIR:SETTING, the setting tested.")
    parser.add_argument("baseline", help="RUN_DIR:SETTING, the setting it is compared with.")
    parser.add_argument("--metric", choices=("ua", "wa"), default="ua")
    parser.add_argument("--json", type=pathlib.Path, help="Also write the comparison here.")
    parser.add_argument(
        "--plot", type=pathlib.Path,
        help="Also draw the per-fold differences (PNG): the seed mean as a bar, each seed a dot.",
    )
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sides = [parse_side(args.setting), parse_side(args.baseline)]
    except ValueError as error:
        parser.error(str(error))
    (path_a, setting_a), (path_b, setting_b) = sides
    results_a = json.loads(path_a.read_text())
    results_b = json.loads(path_b.read_text())
    try:
        runs_a = setting_runs(results_a, setting_a)
        runs_b = setting_runs(results_b, setting_b)
        mismatched = [
            pair for pair in sorted(set(runs_a) & set(runs_b))
            if runs_a[pair].get("test_speakers") != runs_b[pair].get("test_speakers")
        ]
        if mismatched:
            raise ValueError(
                f"the runs are not on the same folds: test speakers differ for {mismatched}"
            )
        result = compare(
            {pair: float(run["deep"][args.metric]) for pair, run in runs_a.items()},
            {pair: float(run["deep"][args.metric]) for pair, run in runs_b.items()},
        )
    except ValueError as error:
        print(f"compare_settings: error: {error}", file=sys.stderr)
        return 2
    print(markdown(setting_a, setting_b, result, args.metric))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(setting_a, setting_b, result, args.metric, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
