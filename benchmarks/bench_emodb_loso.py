"""EMO-DB, 7 emotions, leave-one-speaker-out: attention CNN-BLSTM single-task vs multitask.

The speaker-independent accuracy benchmark of issue "Attention CNN-BLSTM":
every one of EMO-DB's 10 speakers is a test fold once; validation for the
checkpoint is a stratified fraction of the other speakers' utterances. It uses
the package's own path end to end (loader, waveform cache, fu2021 LogMel,
AttentionCNNBLSTM, resumable fold runner), so its figures are the library's.

    python -m benchmarks.bench_emodb_loso --emodb ../shared/data/emodb \
        --model-preset fu2021_cpu --epochs 40 --out runs/bench_emodb_loso

Changes beyond the paper's configuration are options, each named in the
output and in results.json: `--num-frames` crops the fu2021 front-end (every
EMO-DB file in ../shared/data is 2.0 s, about 80 frames, so the paper's 256
frames are mostly padding), and the training recipe (`--recipe cpu` or its
single options, `ser_keras.training.recipe`): `--normalization speaker`
z-normalises every mel band per speaker over that speaker's own valid frames
(no labels used, so it is applicable to an unseen test speaker; the older
`--speaker-standardize` means the same), `--spec-augment` masks random mel
bands and frame spans of the training batches (SpecAugment),
`--recalibrate-batch-norm`, `--label-smoothing`, `--adamw`, `--lr-schedule`.

Interrupted runs continue with --resume. Reference figures on the same folds:
`FEATS=compare python ../shared/tools/reference_baseline.py ../shared/data emodb`
(openSMILE ComParE + SVM) gave 83.1 UA; eGeMAPS gave 71.8.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETTINGS = {"stl": False, "mtl": True}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--emodb", default="../shared/data/emodb", help="EMO-DB folder.")
    parser.add_argument("--model-preset", default="fu2021_cpu", help="AttentionCNNBLSTM preset.")
    parser.add_argument("--settings", default="stl,mtl", help="stl and/or mtl.")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--folds", type=int, default=None, help="Only the first N folds.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="rmsprop learning rate.")
    parser.add_argument("--validation", choices=("fraction", "speaker"), default="fraction",
                        help="Checkpoint selection data, from the training speakers only: a "
                        "stratified fraction of their utterances, or whole held-out speakers.")
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--validation-speakers", type=int, default=2,
                        help="Training speakers held out per fold with --validation speaker.")
    parser.add_argument("--num-frames", type=int, default=256,
                        help="Front-end frames (paper: 256); fewer crops the input.")
    parser.add_argument("--speaker-standardize", action="store_true",
                        help="The same as --normalization speaker (kept for older commands).")
    from ser_keras import cli

    cli.add_recipe_arguments(parser, default="paper")
    parser.add_argument("--out", default="runs/bench_emodb_loso")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument(
        "--ensemble", nargs="+", metavar="RUN_DIR",
        help="Train nothing: average the test posteriors of the finished runs' fold models "
        "(the same folds and recipe, other seeds; each model selected on its own validation "
        "data) and score the average per fold. The other options must match those runs'.")
    args = parser.parse_args(argv)
    if args.speaker_standardize:
        args.normalization = args.normalization or "speaker"
    try:
        recipe = cli.recipe_from_args(args)
    except ValueError as error:
        parser.error(str(error))

    import keras
    import numpy as np

    from ser_keras.corpora import load_corpus
    from ser_keras.corpora.labels import get_label_map
    from ser_keras.data.cache import WaveformCache, default_cache_dir
    from ser_keras.data.pipeline import compute_features, num_batches
    from ser_keras.data.splits import leave_one_speaker_out
    from ser_keras.evaluation import reports
    from ser_keras.features.logmel import LogMel
    from ser_keras.models.attention_cnn_blstm import AttentionCNNBLSTM
    from ser_keras.training.runner import RunState, Split, fit_and_evaluate

    if not pathlib.Path(args.emodb).is_dir():
        print(f"error: EMO-DB folder not found: {args.emodb}", file=sys.stderr)
        return 2
    settings = [name for name in args.settings.split(",") if name]
    started = time.time()
    listing = load_corpus("emodb", args.emodb)
    cached = WaveformCache(pathlib.Path(default_cache_dir()) / "waveforms").load(listing.utterances)
    label_map = get_label_map("emodb7")
    labels = label_map.encode(cached.utterances)
    frontend = LogMel.from_preset("fu2021", num_frames=args.num_frames)
    features = compute_features(frontend, cached.waveforms)
    print(f"Recipe: {recipe.describe()}")
    features = recipe.normalize(features, cached.utterances, frontend.pad_value)
    augment = recipe.augmentation(features, frontend.pad_value)
    if augment is not None:
        print(augment.describe())
    folds = leave_one_speaker_out(
        cached.utterances, validation=args.validation,
        num_validation_speakers=args.validation_speakers,
        validation_fraction=args.validation_fraction, seed=args.seed,
    )[: args.folds]
    state = RunState(
        args.out,
        {"model_preset": args.model_preset, "epochs": args.epochs, "patience": args.patience,
         "batch_size": args.batch_size, "seed": args.seed, "learning_rate": args.learning_rate,
         "validation": args.validation, "validation_speakers": args.validation_speakers,
         "validation_fraction": args.validation_fraction, "num_utterances": len(labels),
         "num_frames": args.num_frames, "recipe": recipe.to_dict()},
        resume=args.resume,
    )
    summary = {"settings": {}, "units": "percent", "class_names": list(label_map.classes),
               "configuration": {k: v for k, v in vars(args).items() if k not in ("out", "resume")},
               "recipe": recipe.to_dict()}
    if args.ensemble:
        return ensemble(args, settings, folds, features, labels, label_map, started)
    for setting in settings:
        with_speaker = SETTINGS[setting]
        fold_results = []
        for fold in folds:
            speakers = sorted({cached.utterances[i].speaker_id for i in fold.train})
            index = {speaker: n for n, speaker in enumerate(speakers)}

            def split(indices, is_test=False, with_speaker=with_speaker, index=index):
                indices = np.asarray(indices)
                split_labels = {"emotion": labels[indices]}
                if with_speaker:
                    split_labels["speaker"] = np.array(
                        [-1 if is_test else index.get(cached.utterances[i].speaker_id, -1)
                         for i in indices], dtype=np.int32)
                return Split(features[indices], split_labels)

            num_speakers = len(speakers) if with_speaker else 0

            num_train = len(fold.train)

            def build(num_speakers=num_speakers, num_train=num_train):
                model = AttentionCNNBLSTM.from_preset(
                    args.model_preset, num_emotions=label_map.num_classes,
                    num_speakers=num_speakers, num_frames=args.num_frames,
                )
                return recipe.compile(
                    model, keras.optimizers.RMSprop(args.learning_rate),
                    steps_per_epoch=num_batches(num_train, args.batch_size), epochs=args.epochs,
                )

            result = fit_and_evaluate(
                build, split(fold.train), split(fold.validation), split(fold.test, True),
                fold_dir=state.fold_dir(setting, fold.name), class_names=label_map.classes,
                epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                patience=args.patience, verbose=0, augment=augment,
                recalibrate_batch_norm=recipe.recalibrate_batch_norm,
            )
            fold_results.append(result)
            recalibration = result.get("batch_norm_recalibration")
            print(f"[{setting}] {fold.name}: WA {100 * result['wa']:.1f} "
                  f"UA {100 * result['ua']:.1f} (best epoch {result['best_epoch']}, "
                  f"validation UA {100 * result['best_validation']:.1f}"
                  + (f" -> {recalibration['validation_ua_after']:.1f} after batch-norm "
                     f"recalibration ({'kept' if recalibration['kept'] else 'undone'})"
                     if recalibration and recalibration["layers"] else "")
                  + f", {time.time() - started:.0f} s elapsed)", flush=True)
        entry = setting_summary(fold_results)
        for fold, result in zip(entry["folds"], fold_results, strict=True):
            fold.update(best_validation_ua=100 * result["best_validation"],
                        batch_norm_recalibration=result.get("batch_norm_recalibration"))
        summary["settings"][setting] = entry
        print(f"[{setting}] mean over {len(fold_results)} folds: WA {entry['wa']:.1f} ± "
              f"{entry['wa_std']:.1f}, UA {entry['ua']:.1f} ± {entry['ua_std']:.1f}; pooled WA "
              f"{entry['pooled_wa']:.1f}, UA {entry['pooled_ua']:.1f}", flush=True)
    summary["elapsed_seconds"] = round(time.time() - started, 1)
    reports.write_json_atomic(state.out_dir / "results.json", summary)
    print(f"Wrote {state.out_dir / 'results.json'} in {summary['elapsed_seconds']:.0f} s")
    return 0


def setting_summary(fold_results) -> dict:
    """Mean ± sd over folds and the pooled scores (percent) of a setting's fold results."""
    import numpy as np

    from ser_keras.evaluation.metrics import mean_and_spread

    wa = mean_and_spread([100 * r["wa"] for r in fold_results])
    ua = mean_and_spread([100 * r["ua"] for r in fold_results])
    pooled = np.sum([np.asarray(r["confusion"]) for r in fold_results], axis=0)
    # Pooled over the folds' test utterances, as the openSMILE + SVM
    # reference (cross_val_predict over LeaveOneGroupOut) reports them.
    return {
        "wa": wa[0], "wa_std": wa[1], "ua": ua[0], "ua_std": ua[1],
        "pooled_wa": float(100 * np.trace(pooled) / max(pooled.sum(), 1)),
        "pooled_ua": float(100 * np.mean(np.diag(pooled) / np.maximum(pooled.sum(axis=1), 1))),
        "folds": [{"wa": 100 * r["wa"], "ua": 100 * r["ua"]} for r in fold_results],
        "confusion": pooled.tolist(),
    }


def ensemble(args, settings, folds, features, labels, label_map, started) -> int:
    """Scores the average of several finished runs' test posteriors, fold by fold."""
    import json

    import keras
    import numpy as np

    from ser_keras.evaluation import reports
    from ser_keras.evaluation.metrics import summarize

    runs = [pathlib.Path(run) for run in args.ensemble]
    configs = []
    for run in runs:
        path = run / "run_config.json"
        if not path.exists():
            print(f"error: --ensemble {run}: no run_config.json (not a finished run)",
                  file=sys.stderr)
            return 2
        configs.append(json.loads(path.read_text()))
    differing = sorted(
        key for key in set().union(*configs)
        if key != "seed" and len({json.dumps(c.get(key), sort_keys=True) for c in configs}) > 1
    )
    if differing:
        print(f"error: --ensemble: the runs differ in {', '.join(differing)}", file=sys.stderr)
        return 2
    summary = {"settings": {}, "units": "percent", "ensemble_of": [str(run) for run in runs],
               "class_names": list(label_map.classes)}
    for setting in settings:
        fold_results = []
        for fold in folds:
            test = np.asarray(fold.test)
            probabilities = []
            for run in runs:
                model_path = run / setting / f"fold_{fold.name}" / "best.keras"
                if not model_path.exists():
                    print(f"error: --ensemble: {model_path} is missing", file=sys.stderr)
                    return 2
                model = keras.models.load_model(str(model_path))
                outputs = model.predict(features[test], batch_size=args.batch_size, verbose=0)
                probabilities.append(outputs["emotion"] if isinstance(outputs, dict) else outputs)
            result = summarize(labels[test], np.mean(probabilities, axis=0),
                               list(label_map.classes))
            fold_results.append(result)
            print(f"[{setting}] {fold.name}: ensemble of {len(runs)}: WA "
                  f"{100 * result['wa']:.1f} UA {100 * result['ua']:.1f}", flush=True)
        entry = setting_summary(fold_results)
        summary["settings"][setting] = entry
        print(f"[{setting}] ensemble mean over {len(fold_results)} folds: UA {entry['ua']:.1f} ± "
              f"{entry['ua_std']:.1f}, WA {entry['wa']:.1f} ± {entry['wa_std']:.1f}", flush=True)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary["elapsed_seconds"] = round(time.time() - started, 1)
    reports.write_json_atomic(out / "results.json", summary)
    print(f"Wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
