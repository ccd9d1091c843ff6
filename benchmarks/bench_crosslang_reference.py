"""Cross-language binary valence with openSMILE functionals and an SVM: the reference.

The yardstick for `apps.train_crosslang_valence` (paper 000, Table 3): the
same labelled corpora, targets, label map and, per seed, the same held-out
validation speaker as the app (the SVM trains on the app's training
speakers only; `ser_keras.experiments.crosslang_valence` makes both
splits), with the features a practitioner reaches for first
(openSMILE eGeMAPSv02 or ComParE 2016 functionals, as in
`../shared/tools/reference_baseline.py`) and an SVM with balanced class
weights. It reports UAR and WA on every target for three normalisations of
the functionals, none of which reads a label:

- `none`: one StandardScaler fitted on the labelled training data;
- `corpus`: every functional z-normalised per corpus (the targets with their
  own statistics), against the recording-channel mismatch;
- `speaker`: z-normalised per speaker (the reference tool's default).

    python -m benchmarks.bench_crosslang_reference \
        --labelled ravdess:../shared/data/ravdess \
        --target emodb:../shared/data/emodb urdu:../shared/data/urdu --seeds 3

It reads the waveforms through the package's loaders and cache, trimmed and
at 16 kHz as the deep models see them. Needs `pip install opensmile`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

from ser_keras import cli
from ser_keras.experiments import crosslang_valence as valence

NORMALIZATIONS = ("none", "corpus", "speaker")
FEATURE_SETS = ("egemaps", "compare")
# The SVMs of ../shared/tools/reference_baseline.py.
CLASSIFIERS = {"egemaps": ("rbf", 10.0), "compare": ("linear", 0.001)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--labelled", nargs="+", metavar="KIND:DIR",
                        default=["ravdess:../shared/data/ravdess"],
                        help="Labelled corpora (training).")
    parser.add_argument("--target", nargs="+", metavar="KIND:DIR",
                        default=["emodb:../shared/data/emodb", "urdu:../shared/data/urdu"],
                        help="Target corpora (tested, never trained on).")
    parser.add_argument("--features", default="egemaps,compare",
                        help="Comma-separated openSMILE functionals: egemaps, compare.")
    parser.add_argument("--label-map", default="binary_valence")
    parser.add_argument("--seeds", type=int, default=3,
                        help="Seeds 0..N-1: each holds out the app's validation speakers.")
    parser.add_argument("--validation-fraction", type=float,
                        default=valence.CrossLanguageValenceConfig.validation_fraction,
                        help="As the app's: share of labelled speakers held out (not trained on).")
    parser.add_argument("--cache-dir", default=None, help="Waveform cache (the apps').")
    parser.add_argument("--out", default="runs/bench_crosslang_reference",
                        help="Folder for results.json and the feature cache.")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ValueError as error:
        parser.error(str(error))
    return 2


def _functionals(pool, feature_set, cache_path):
    """openSMILE functionals per utterance, cached in `cache_path` (keyed by file paths)."""
    paths = [u.path for u in pool.utterances]
    if cache_path.exists():
        stored = np.load(cache_path, allow_pickle=False)
        if stored["paths"].tolist() == paths:
            return stored["features"]
    try:
        import opensmile
    except ImportError:
        raise ValueError("The reference needs openSMILE: pip install opensmile.") from None
    smile = opensmile.Smile(
        feature_set={"egemaps": opensmile.FeatureSet.eGeMAPSv02,
                     "compare": opensmile.FeatureSet.ComParE_2016}[feature_set],
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    started = time.time()
    rows = []
    for number, waveform in enumerate(pool.waveforms, start=1):
        rows.append(smile.process_signal(np.asarray(waveform, np.float32), 16000).values[0])
        if number % 200 == 0 or number == len(pool.waveforms):
            print(f"  {feature_set}: {number}/{len(pool.waveforms)} utterances "
                  f"({time.time() - started:.0f} s)", flush=True)
    features = np.nan_to_num(np.stack(rows).astype(np.float32))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache_path, paths=np.asarray(paths), features=features)
    return features


def _normalize(features, groups):
    """Z-normalises every functional per group (one "frame" per utterance, no padding)."""
    from ser_keras.features.normalization import standardize_per_speaker

    return standardize_per_speaker(features[:, None, :], groups, pad_value=np.nan)[:, 0]


def run(args) -> int:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from ser_keras.corpora.labels import get_label_map
    from ser_keras.evaluation.metrics import (
        mean_and_spread,
        unweighted_accuracy,
        weighted_accuracy,
    )
    from ser_keras.training.recipe import TrainingRecipe

    feature_sets = cli.parse_name_list(args.features, FEATURE_SETS, "--features")
    cli.check_at_least([("--seeds", args.seeds, 1)])
    label_map = get_label_map(args.label_map)
    labelled_specs = cli.corpus_specs(args.labelled, "--labelled")
    target_specs = cli.corpus_specs(args.target, "--target")
    pool = valence.load_pool(labelled_specs, target_specs, [], label_map,
                             cli.cache_dir_of(args), quiet=True)
    # The app's --normalization groups: corpus, or (corpus, speaker).
    records = valence.normalization_records(pool)
    groups = {mode: np.asarray(TrainingRecipe(normalization=mode).normalization_groups(records))
              for mode in ("corpus", "speaker")}
    out = pathlib.Path(args.out)
    results = {"labelled": args.labelled, "target": args.target, "label_map": label_map.name,
               "units": "percent", "results": {}}
    for feature_set in feature_sets:
        raw = _functionals(pool, feature_set, out / f"functionals_{feature_set}.npz")
        kernel, penalty = CLASSIFIERS[feature_set]
        for mode in NORMALIZATIONS:
            features = raw if mode == "none" else _normalize(raw, groups[mode])
            scores = {name: {"ua": [], "wa": []} for name in pool.targets}
            for seed in range(args.seeds):
                train, _, held_out = valence.validation_split(
                    pool, seed, args.validation_fraction
                )
                classifier = make_pipeline(
                    StandardScaler(), SVC(kernel=kernel, C=penalty, class_weight="balanced")
                )
                classifier.fit(features[train], pool.emotion[train])
                for name, indices in pool.targets.items():
                    scored = indices[pool.emotion[indices] >= 0]
                    predicted = classifier.predict(features[scored])
                    truth = pool.emotion[scored]
                    scores[name]["ua"].append(100 * unweighted_accuracy(truth, predicted))
                    scores[name]["wa"].append(100 * weighted_accuracy(truth, predicted))
            results["results"][f"{feature_set}/{mode}"] = scores
            line = ", ".join(
                "{} UAR {:.1f} ± {:.1f}".format(name, *mean_and_spread(entry["ua"]))
                for name, entry in scores.items()
            )
            print(f"{feature_set:8s} {mode:8s} SVM ({kernel}, C={penalty:g}): {line}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"Results written to {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
