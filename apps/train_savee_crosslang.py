"""SAVEE + EMO-DB cross-language training of the attention CNN-BLSTM.

Reproduces the four settings of Table 2 in Fu et al. (2021): single task
(`stl`), multitask with a speaker head (`mtl`), cross-language training with
EMO-DB's six emotions shared with SAVEE (`xl`), and both (`mtl_xl`), each
evaluated leave-one-speaker-out over SAVEE's four speakers.

With no arguments it generates (once, cached) synthetic SAVEE- and EMO-DB-shaped
corpora with eSpeak NG and runs all four settings in a reduced configuration.

    python -m apps.train_savee_crosslang
    python -m apps.train_savee_crosslang --savee ~/SAVEE --emodb ~/emodb --preset paper

Reference:
    Fu, C., Liu, C., Ishi, C. T., Ishiguro, H. "An end-to-end multitask
    learning model to improve speech emotion recognition", EUSIPCO 2020.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETTINGS = {
    # name: (speaker head, EMO-DB added to training, Table 2 row)
    "stl": (False, False, "single task"),
    "mtl": (True, False, "multitask"),
    "xl": (False, True, "cross-language training"),
    "mtl_xl": (True, True, "multitask cross-language training"),
}

# The reduced configuration of `--preset quick`: what makes the default run
# finish in minutes on a 2-core CPU. Printed at start so nobody mistakes it
# for the paper's set-up.
PRESETS = {
    "quick": {
        "model_preset": "fu2021_cpu",
        "epochs": 10,
        "folds": 2,
        "patience": None,
        "batch_size": 64,
        "synthetic_per_emotion": 8,
        "synthetic_emodb_per_emotion": 4,
    },
    "paper": {
        "model_preset": "fu2021",
        "epochs": 300,
        "folds": None,
        "patience": 30,
        "batch_size": 64,
        "synthetic_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "train_savee_crosslang",
        "Train and evaluate the attention CNN-BLSTM (Fu et al. 2021) on SAVEE, "
        "leave-one-speaker-out, in the four settings of the paper's Table 2. "
        "Without --savee/--emodb, synthetic eSpeak NG corpora are generated and cached.",
    )
    parser.add_argument(
        "--savee",
        metavar="[KIND:]DIR",
        help="English corpus evaluated leave-one-speaker-out: a SAVEE folder "
        "(AudioData/{DC,JE,JK,KL}/... or flat DC_a01.wav files), or KIND:DIR for a "
        "stand-in such as ravdess:DIR. Default: a synthetic SAVEE-shaped corpus.",
    )
    parser.add_argument(
        "--emodb",
        metavar="DIR",
        help="EMO-DB folder (wav/03a01Fa.wav) added to training in the xl settings. "
        "Default: a synthetic EMO-DB-shaped corpus (only when --savee is not given).",
    )
    parser.add_argument(
        "--settings",
        default="stl,mtl,xl,mtl_xl",
        help=f"Comma-separated settings to run, from {', '.join(SETTINGS)}.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="quick: reduced model and epochs for a CPU; paper: the paper's sizes, "
        "300 epochs (early stopping on validation UA).",
    )
    parser.add_argument("--epochs", type=int, help="Override the preset's number of epochs.")
    parser.add_argument(
        "--folds",
        type=int,
        help="Run only the first N leave-one-speaker-out folds (quick preset: 2; paper: all).",
    )
    parser.add_argument("--batch-size", type=int, help="Override the preset's batch size (64).")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.15,
        help="Fraction of the training speakers' utterances (stratified by emotion) held out "
        "for checkpoint selection. The test speaker is never used.",
    )
    parser.add_argument(
        "--num-frames",
        type=int,
        default=256,
        help="Frames of the fu2021 log-mel input (the paper: 256 = 10.2 s). Fewer crops the "
        "input (and the exported model's): lossless when no utterance is longer, e.g. 176 "
        "for RAVDESS + EMO-DB after trimming (at most 170 frames), and cheaper to train.",
    )
    parser.add_argument(
        "--spec-augment",
        action="store_true",
        help="SpecAugment frequency and time masking of the training batches (not in the "
        "paper; ser_keras.data.augmentation). Training only: evaluation and the exported "
        "model are unchanged.",
    )
    cli.add_common_arguments(
        parser,
        default_out="runs/train_savee_crosslang",
        export_help="Where the best model of the last setting is exported (TF Serving layout).",
        synthetic_help="Utterances per emotion and speaker in the generated synthetic corpora "
        "(default: the preset's).",
    )
    return parser


def _resolve_corpora(args, settings, cache_dir, preset):
    """Returns (primary spec, EMO-DB spec or None, description of the data)."""
    needs_emodb = any(SETTINGS[name][1] for name in settings)
    if args.savee is None:
        if args.emodb is not None:
            raise ValueError("--emodb was given without --savee; give both, or neither.")
        root = cli.synthetic_root(cache_dir)
        primary = cli.synthetic_corpus_spec(
            root, "savee", seed=args.seed, per_emotion=preset["synthetic_per_emotion"]
        )
        emodb = None
        if needs_emodb:
            emodb = cli.synthetic_corpus_spec(
                root, "emodb", seed=args.seed, per_emotion=preset["synthetic_emodb_per_emotion"]
            )
        return primary, emodb, "synthetic (eSpeak NG) SAVEE- and EMO-DB-shaped corpora"
    (primary,) = cli.corpus_specs([args.savee], "--savee", default_kind="savee")
    emodb = None
    if needs_emodb:
        if args.emodb is None:
            raise ValueError(
                "Settings xl and mtl_xl add EMO-DB to training: pass --emodb DIR, "
                "or run --settings stl,mtl."
            )
        (emodb,) = cli.corpus_specs([args.emodb], "--emodb", default_kind="emodb")
    return (
        primary,
        emodb,
        f"{primary.kind} at {primary.directory}"
        + (f" + EMO-DB at {emodb.directory}" if emodb else ""),
    )


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    import numpy as np

    # Created first: MultiWorkerMirroredStrategy must exist before other TF ops.
    strategy = cli.strategy_from_args(args)

    from ser_keras.corpora.labels import get_label_map
    from ser_keras.data.augmentation import SpecAugment
    from ser_keras.data.cache import WaveformCache
    from ser_keras.data.pipeline import compute_features
    from ser_keras.data.splits import leave_one_speaker_out
    from ser_keras.evaluation import reports
    from ser_keras.evaluation.metrics import mean_and_spread
    from ser_keras.export.serving import write_export_sidecar
    from ser_keras.features.logmel import LogMel
    from ser_keras.models.attention_cnn_blstm import AttentionCNNBLSTM
    from ser_keras.training.runner import RunState, Split, fit_and_evaluate

    settings = cli.parse_name_list(args.settings, tuple(SETTINGS), "--settings")
    preset = dict(PRESETS[args.preset])
    cli.check_at_least(
        [
            ("--synthetic-per-emotion", args.synthetic_per_emotion, 2),
            ("--folds", args.folds, 1),
            ("--num-frames", args.num_frames, 8),
        ]
    )
    if args.synthetic_per_emotion is not None:
        preset["synthetic_per_emotion"] = args.synthetic_per_emotion
        preset["synthetic_emodb_per_emotion"] = max(1, args.synthetic_per_emotion // 2)
    epochs = args.epochs or preset["epochs"]
    batch_size = args.batch_size or preset["batch_size"]
    cli.check_global_batch(batch_size, strategy)
    num_folds = args.folds if args.folds is not None else preset["folds"]
    cli.check_fraction("--validation-fraction", args.validation_fraction, 0.0, 0.5)
    cache_dir = cli.cache_dir_of(args)
    started = time.time()

    primary_spec, emodb_spec, data_description = _resolve_corpora(args, settings, cache_dir, preset)
    print(f"Data: {data_description}")
    print(
        f"Configuration: preset {args.preset!r} (model preset {preset['model_preset']!r}, "
        f"{epochs} epochs, batch {batch_size}, "
        + (f"first {num_folds} folds" if num_folds else "all folds")
        + (f", early stopping after {preset['patience']} epochs" if preset["patience"] else "")
        + ")"
        + cli.reduced_note(args.preset == "quick"),
        flush=True,
    )

    emotion_map = get_label_map("savee7")
    common_map = get_label_map("common6")
    class_names = list(emotion_map.classes)
    waveform_cache = WaveformCache(cache_dir / "waveforms")
    frontend = LogMel.from_preset("fu2021", num_frames=args.num_frames)
    augment = None
    if args.spec_augment:
        # Masked bins get 0.5, the middle of the front-end's [0, 1] min-max range.
        augment = SpecAugment(mask_value=0.5, pad_value=frontend.pad_value)
        print(f"Augmentation: {augment.describe()}")

    def load(spec, name):
        listing = spec.load()
        cached = waveform_cache.load(listing.utterances, progress=not args.quiet)
        skipped = cli.report_skipped(
            name, list(listing.skipped) + list(cached.skipped), listing.warnings
        )
        return cached, skipped

    primary, primary_skipped = load(primary_spec, primary_spec.kind)
    primary_labels = emotion_map.encode(primary.utterances)
    keep = primary_labels >= 0
    unmapped = emotion_map.unmapped_counts(primary.utterances)
    if unmapped:
        print(f"  {primary_spec.kind}: labels outside SAVEE's seven, left out: {unmapped}")
    primary_utterances = [u for u, k in zip(primary.utterances, keep, strict=True) if k]
    primary_waveforms = [w for w, k in zip(primary.waveforms, keep, strict=True) if k]
    primary_labels = primary_labels[keep]

    extra_utterances, extra_waveforms, extra_labels, extra_skipped = [], [], np.zeros(0, int), []
    if emodb_spec is not None:
        emodb, extra_skipped = load(emodb_spec, "emodb")
        # Only EMO-DB's emotions shared with SAVEE (the paper drops boredom).
        shared = np.array(
            [
                emotion_map.index(u.label) if common_map.index(u.label) >= 0 else -1
                for u in emodb.utterances
            ],
            dtype=np.int32,
        )
        extra_keep = shared >= 0
        extra_utterances = [u for u, k in zip(emodb.utterances, extra_keep, strict=True) if k]
        extra_waveforms = [w for w, k in zip(emodb.waveforms, extra_keep, strict=True) if k]
        extra_labels = shared[extra_keep]
        print(
            f"  emodb: {len(extra_utterances)} utterances with SAVEE's shared six emotions "
            f"({int((~extra_keep).sum())} left out: other emotions)"
        )
    if len(primary_utterances) == 0:
        raise ValueError(f"No usable utterances in {primary_spec.directory}.")

    print(
        f"Computing fu2021 log-mel features for {len(primary_waveforms) + len(extra_waveforms)} "
        "utterances ...",
        flush=True,
    )
    features = compute_features(frontend, primary_waveforms + list(extra_waveforms))
    cropped = sum(
        frontend.num_frames_for_samples(len(w)) > args.num_frames
        for w in primary_waveforms + list(extra_waveforms)
    )
    print(
        f"  input: {args.num_frames} frames of 128 mels"
        + ("" if args.num_frames == 256 else " (the paper: 256)")
        + f"; {cropped} utterance(s) longer than that are cut",
        flush=True,
    )
    num_primary = len(primary_utterances)
    all_utterances = primary_utterances + extra_utterances
    all_labels = np.concatenate([primary_labels, extra_labels]).astype(np.int32)

    folds = leave_one_speaker_out(
        primary_utterances,
        validation="fraction",
        validation_fraction=args.validation_fraction,
        seed=args.seed,
    )
    if num_folds is not None:
        folds = folds[:num_folds]

    # On a multi-worker cluster only the chief writes to --out and exports.
    outputs = cli.worker_outputs(
        args.out, strategy, export_dir=None if args.no_export else args.export_dir
    )
    state = RunState(
        outputs.out_dir,
        {
            "app": "train_savee_crosslang",
            "data": data_description,
            "preset": args.preset,
            "model_preset": preset["model_preset"],
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": args.seed,
            "validation_fraction": args.validation_fraction,
            "num_frames": args.num_frames,
            "spec_augment": args.spec_augment,
            "num_primary": num_primary,
            "num_extra": len(extra_utterances),
        },
        resume=args.resume,
    )
    reports.write_json_atomic(
        state.out_dir / "skipped.json",
        {"primary": primary_skipped, "emodb": extra_skipped},
    )

    results = {"settings": {}}
    pooled_confusions = {}
    best_for_export = None
    for setting in settings:
        with_speaker, crosslang, title = SETTINGS[setting]
        print(f"\n=== {setting}: {title} ===", flush=True)
        fold_results = []
        for fold_number, fold in enumerate(folds, start=1):
            train_index = np.asarray(fold.train)
            if crosslang:
                train_index = np.concatenate(
                    [train_index, num_primary + np.arange(len(extra_utterances))]
                )
            speakers = sorted({all_utterances[i].speaker_id for i in train_index})
            speaker_index = {speaker: number for number, speaker in enumerate(speakers)}

            def split(
                indices, is_test=False, with_speaker=with_speaker, speaker_index=speaker_index
            ):
                indices = np.asarray(indices)
                labels = {"emotion": all_labels[indices]}
                if with_speaker:
                    labels["speaker"] = np.array(
                        [
                            -1 if is_test else speaker_index.get(all_utterances[i].speaker_id, -1)
                            for i in indices
                        ],
                        dtype=np.int32,
                    )
                return Split(features[indices], labels)

            num_speakers = len(speakers) if with_speaker else 0

            def build_model(num_speakers=num_speakers):
                model = AttentionCNNBLSTM.from_preset(
                    preset["model_preset"],
                    num_frames=features.shape[1],
                    num_mels=features.shape[2],
                    num_emotions=len(class_names),
                    num_speakers=num_speakers,
                )
                model.compile(optimizer="rmsprop")
                return model

            fold_dir = state.fold_dir(setting, fold.name)
            done = (fold_dir / "result.json").exists()
            print(
                f"[{setting}] fold {fold_number}/{len(folds)} (test speaker "
                f"{', '.join(fold.test_speakers)}): "
                + (
                    "already finished, reusing its result"
                    if done
                    else f"training on {len(train_index)} utterances"
                ),
                flush=True,
            )
            result = fit_and_evaluate(
                build_model,
                split(train_index),
                split(fold.validation),
                split(fold.test, is_test=True),
                fold_dir=fold_dir,
                class_names=class_names,
                epochs=epochs,
                batch_size=batch_size,
                seed=args.seed,
                patience=preset["patience"],
                verbose=0 if args.quiet else 2,
                strategy=strategy,
                augment=augment,
            )
            if not done:
                write_export_sidecar(
                    fold_dir / "best.keras",
                    frontend=frontend,
                    label_names={"emotion": class_names},
                    name="attention_cnn_blstm",
                    metadata={"app": "train_savee_crosslang", "setting": setting},
                )
            result["fold"] = fold.name
            result["test_speakers"] = list(fold.test_speakers)
            fold_results.append(result)
            print(
                f"[{setting}] fold {fold.name}: WA {100 * result['wa']:.2f}  "
                f"UA {100 * result['ua']:.2f}  (best validation UA "
                f"{100 * (result['best_validation'] or 0):.2f} at epoch {result['best_epoch']})",
                flush=True,
            )
            if (
                best_for_export is None
                or best_for_export[0] != setting
                or ((result["best_validation"] or 0) > best_for_export[1])
            ):
                best_for_export = (setting, result["best_validation"] or 0, fold_dir)

        wa_mean, wa_std = mean_and_spread([100 * r["wa"] for r in fold_results])
        ua_mean, ua_std = mean_and_spread([100 * r["ua"] for r in fold_results])
        confusion = np.sum([np.asarray(r["confusion"]) for r in fold_results], axis=0)
        pooled_confusions[setting] = confusion
        results["settings"][setting] = {
            "title": title,
            "wa": wa_mean,
            "ua": ua_mean,
            "wa_std": wa_std,
            "ua_std": ua_std,
            "folds": [
                {
                    "fold": r["fold"],
                    "test_speakers": r["test_speakers"],
                    "wa": 100 * r["wa"],
                    "ua": 100 * r["ua"],
                    "macro_f1": 100 * r["macro_f1"],
                    "best_validation_ua": (
                        100 * r["best_validation"] if r["best_validation"] is not None else None
                    ),
                    "best_epoch": r["best_epoch"],
                    "epochs_run": r["epochs_run"],
                }
                for r in fold_results
            ],
            "confusion": confusion.tolist(),
        }
        reports.plot_confusion_matrix(
            confusion,
            class_names,
            state.out_dir / f"confusion_{setting}.png",
            title=f"{title} (pooled over {len(fold_results)} folds)",
        )

    results.update(
        units="percent",
        class_names=class_names,
        configuration=state.config,
        elapsed_seconds=round(time.time() - started, 1),
    )
    _write_tables(state.out_dir, results, pooled_confusions, class_names)
    reports.plot_settings_comparison(
        {name: results["settings"][name] for name in results["settings"]},
        state.out_dir / "settings_comparison.png",
        units="percent",
    )

    if outputs.export_dir is not None and best_for_export is not None:
        import keras

        setting, _, fold_dir = best_for_export
        model = keras.models.load_model(str(fold_dir / "best.keras"))
        path = cli.export_for_serving(
            model,
            outputs.export_dir,
            "attention_cnn_blstm",
            frontend=frontend,
            label_names={"emotion": class_names},
            metadata={
                "app": "train_savee_crosslang",
                "setting": setting,
                "fold": fold_dir.name,
                "preset": args.preset,
                "data": data_description,
            },
        )
        results["export"] = str(path)
        print(f"\nExported the best {setting} model ({fold_dir.name}) to {path}")

    reports.write_json_atomic(state.out_dir / "results.json", results)
    print(f"\nResults written to {state.out_dir} in {time.time() - started:.0f} s.")
    return 0


def _write_tables(out_dir, results, pooled_confusions, class_names):
    """Prints and writes the Table 2 layout and Tables 3-4-style confusion matrices."""
    from ser_keras.evaluation import reports

    rows = []
    for entry in results["settings"].values():
        rows.append(
            [
                entry["title"],
                f"{entry['wa']:.2f} ± {entry['wa_std']:.2f}",
                f"{entry['ua']:.2f} ± {entry['ua_std']:.2f}",
            ]
        )
    table = reports.markdown_table(["setting", "WA", "UA"], rows)
    fold_rows = []
    for name, entry in results["settings"].items():
        for fold in entry["folds"]:
            fold_rows.append([name, fold["fold"], f"{fold['wa']:.2f}", f"{fold['ua']:.2f}"])
    fold_table = reports.markdown_table(["setting", "fold", "WA", "UA"], fold_rows)
    sections = [
        "# Attention CNN-BLSTM, leave-one-speaker-out (layout of Table 2, Fu et al. 2021)",
        "",
        f"Data: {results['configuration']['data']}; preset {results['configuration']['preset']}.",
        "Mean ± standard deviation over folds, percent.",
        "",
        table,
        "",
        "## Per fold",
        "",
        fold_table,
    ]
    for name, confusion in pooled_confusions.items():
        sections += [
            "",
            f"## Confusion matrix, {results['settings'][name]['title']} "
            "(rows: true, columns: predicted, % of row; layout of Tables 3-4)",
            "",
            reports.confusion_markdown(confusion, class_names),
        ]
    text = "\n".join(sections) + "\n"
    reports.write_text_atomic(out_dir / "results.md", text)
    print("\n" + table)


if __name__ == "__main__":
    sys.exit(main())
