"""Emotion recognition with gender and naturalness as auxiliary tasks (Kim et al. 2017).

Reproduces the experiments of Kim et al. (paper 001): a shared DNN (3 x 256,
250 ms context) or LSTM (2 x 256) maps the 32 frame features to frame
posteriors of emotion (neutral, happiness, sadness, anger) and, in the
multi-task settings, of gender and naturalness (acted / natural), with
`L = L_emotion + 0.1 * L_aux` per auxiliary task. Four functionals of the
emotion posteriors per utterance (16 values) are classified by an Extreme
Learning Machine. Variants: single-task (STL), Gender-MTL, Naturalness-MTL and
ALL-MTL (both auxiliary tasks).

Protocols:
- `loso`: within-corpus leave-one-speaker-out for every corpus (Table 2);
- `loco`: leave-one-corpus-out over the corpora given (Table 3); a corpus with
  both acted and natural speech (IEMOCAP) is split into its acted and natural
  parts, tested separately, as in the paper.

In every fold 10% of the training utterances (stratified by corpus and
emotion) are held out for early stopping; the test speakers or corpus are
never looked at. Written to `--out`: `results.json`, `results.md` (Tables 2-3
layout, Wilcoxon signed-rank tests of each MTL variant against STL, pooled
confusion matrices as Table 4), `tsne.png` (Figure 2: t-SNE of the high-level
features of the test utterances), per-fold checkpoints, ELMs and histories.
The best ALL-MTL model is exported as a SavedModel (waveform -> frame features
-> network -> utterance posteriors, the mean of the frame posteriors); the
ELM is a NumPy back-end outside the SavedModel, named in its metadata.

With no `--corpus` it generates (once, cached) synthetic SAVEE- and
EMO-DB-shaped corpora with eSpeak NG and runs a reduced configuration.
Those corpora are all acted: the naturalness head then has one class only and
cannot learn anything (printed as a warning).

    python -m apps.train_gender_naturalness
    python -m apps.train_gender_naturalness --corpus emodb:~/emodb \\
        --corpus ravdess:~/RAVDESS --corpus urdu:~/URDU --protocol both --preset paper

Reference:
    J. Kim, G. Englebienne, K. P. Truong, V. Evers, "Towards speech emotion
    recognition 'in the wild' using aggregated corpora and deep multi-task
    learning", Interspeech 2017 (Sections 4-5, Tables 2-4, Figure 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import sys
import time

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NETWORKS = ("dnn", "lstm")
PROTOCOLS = ("loso", "loco", "both")
# Variant name -> (auxiliary tasks, title as in the paper's tables).
VARIANT_TITLES = {
    "stl": "STL",
    "gender": "Gender-MTL",
    "naturalness": "Naturalness-MTL",
    "all": "ALL-MTL",
}

PRESETS = {
    # A reduced configuration for a 2-core CPU (NOT the paper's): 64 units per
    # layer instead of 256, 8 epochs without early stopping, LOSO limited to
    # one test speaker per corpus, small synthetic corpora.
    "quick": {
        "units": 64,
        "epochs": 8,
        "patience": None,
        "batch_size": 128,
        "loso_folds": 1,
        "synthetic_savee_per_emotion": 3,
        "synthetic_emodb_per_emotion": 2,
    },
    # The paper's networks and training (Section 5.1); epochs and patience
    # are ours (the paper uses early stopping without giving them).
    "paper": {
        "units": 256,
        "epochs": 100,
        "patience": 10,
        "batch_size": 128,
        "loso_folds": None,
        "synthetic_savee_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
}

GENDER_CLASSES = ("female", "male")
NATURALNESS_CLASSES = ("acted", "natural")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "train_gender_naturalness",
        "Kim et al. (2017): DNN/LSTM emotion models with gender and naturalness as "
        "auxiliary tasks, high-level features and an ELM; within-corpus "
        "leave-one-speaker-out and leave-one-corpus-out. Without --corpus, synthetic "
        "eSpeak NG corpora are generated and cached.",
    )
    parser.add_argument(
        "--corpus",
        action="append",
        metavar="KIND:DIR",
        help="A corpus (repeat for several), e.g. emodb:~/emodb, ravdess:~/RAVDESS, "
        "urdu:~/URDU, iemocap:~/IEMOCAP, manifest:corpus.csv. Emotions are mapped to "
        "neutral, happiness, sadness, anger (IEMOCAP excited -> happiness); others are "
        "left out. Default: synthetic SAVEE- and EMO-DB-shaped corpora.",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="loso: within-corpus leave-one-speaker-out (Table 2); loco: "
        "leave-one-corpus-out (Table 3); both. Default: both with 2+ corpora, loso with one.",
    )
    parser.add_argument(
        "--networks", default="dnn,lstm", help="Comma-separated networks: dnn, lstm."
    )
    parser.add_argument(
        "--aux",
        default="gender,naturalness",
        help="Auxiliary tasks to study: 'gender,naturalness' runs STL, Gender-MTL, "
        "Naturalness-MTL and ALL-MTL; 'gender' runs STL and Gender-MTL; 'none' runs STL.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="quick: reduced network and epochs for a CPU; paper: 256 units, early "
        "stopping (patience 10, at most 100 epochs).",
    )
    parser.add_argument("--epochs", type=int, help="Override the preset's maximum epochs.")
    parser.add_argument("--patience", type=int, help="Early-stopping patience (epochs).")
    parser.add_argument("--units", type=int, help="Override the preset's units per layer.")
    parser.add_argument("--batch-size", type=int, help="Override the batch size (128).")
    parser.add_argument(
        "--folds",
        type=int,
        help="Run at most N leave-one-speaker-out folds per corpus (and N "
        "leave-one-corpus-out folds). Default: the preset's (quick: 1 LOSO fold per corpus).",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="Share of the training utterances held out for early stopping (the paper: 10%%).",
    )
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=200,
        help="Training sequences are cut into chunks of this many frames (2 s); "
        "prediction runs over whole utterances.",
    )
    parser.add_argument("--elm-hidden", type=int, default=100, help="Hidden units of the ELM.")
    parser.add_argument(
        "--no-split-naturalness",
        action="store_true",
        help="In leave-one-corpus-out, keep a corpus with acted and natural speech whole "
        "instead of testing its acted and natural parts separately.",
    )
    cli.add_common_arguments(
        parser,
        default_out="runs/train_gender_naturalness",
        export_help="Where the best ALL-MTL model is exported (TF Serving layout).",
        synthetic_help="Utterances per speaker and emotion of the synthetic corpora (default: "
        "the preset's).",
        cache_help="Waveform, feature and synthetic-corpus cache (default: $SER_KERAS_CACHE or "
        "~/.cache/ser_keras).",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


# ------------------------------------------------------------------ arguments
def _variants(aux_text):
    """Variant name -> auxiliary tasks, from the --aux argument."""
    if aux_text.strip() == "none":
        return {"stl": ()}
    tasks = cli.parse_name_list(aux_text, ("gender", "naturalness"), "--aux")
    variants = {"stl": ()}
    for task in tasks:
        variants[task] = (task,)
    if len(tasks) > 1:
        variants["all"] = tuple(tasks)
    return variants


# -------------------------------------------------------------------- corpora
def _resolve_corpora(args, cache_dir, preset):
    """Returns (list of CorpusSpec, description)."""
    if not args.corpus:
        root = cli.synthetic_root(cache_dir)
        specs = [
            cli.synthetic_corpus_spec(
                root,
                layout,
                seed=args.seed,
                per_emotion=args.synthetic_per_emotion or preset[f"synthetic_{layout}_per_emotion"],
            )
            for layout in ("savee", "emodb")
        ]
        return specs, "synthetic (eSpeak NG) SAVEE- and EMO-DB-shaped corpora"
    specs = cli.corpus_specs(args.corpus, "--corpus")
    return specs, ", ".join(f"{spec.kind} at {spec.directory}" for spec in specs)


def _feature_cache_path(cache_dir, frontend, utterances):
    """A cache file named by the frontend's config and the audio files' identity."""
    digest = hashlib.sha1()
    digest.update(json.dumps(frontend.get_config(), sort_keys=True).encode())
    for utterance in utterances:
        path = pathlib.Path(utterance.path)
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return pathlib.Path(cache_dir) / "kim2017_features" / f"{digest.hexdigest()[:20]}.npz"


def _frame_features(frontend, utterances, waveforms, cache_dir, quiet):
    import numpy as np

    from ser_keras.data.pipeline import compute_features

    path = _feature_cache_path(cache_dir, frontend, utterances)
    if path.exists():
        with np.load(path) as data:
            lengths = data["lengths"]
            flat = data["features"]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        print(f"  frame features: reusing {path}", flush=True)
        return [flat[offsets[i] : offsets[i + 1]] for i in range(len(lengths))]
    sequences = compute_features(frontend, waveforms, batch_size=16, progress=not quiet)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".partial.npz")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    flat = np.concatenate(sequences) if sequences else np.zeros((0, frontend.num_features))
    np.savez(temporary, lengths=lengths, features=flat.astype(np.float32))
    os.replace(temporary, path)
    return sequences


def _encode(values, classes):
    import numpy as np

    index = {name: number for number, name in enumerate(classes)}
    return np.array([index.get(value, -1) for value in values], dtype=np.int32)


# ---------------------------------------------------------------------- run
def run(args) -> int:
    # Created first: MultiWorkerMirroredStrategy must exist before other TF ops.
    strategy = cli.strategy_from_args(args)

    from ser_keras.corpora.labels import get_label_map
    from ser_keras.data.cache import WaveformCache
    from ser_keras.evaluation import reports
    from ser_keras.features.frame_features import FrameFeatures
    from ser_keras.training.runner import RunState

    networks = cli.parse_name_list(args.networks, NETWORKS, "--networks")
    variants = _variants(args.aux)
    preset = dict(PRESETS[args.preset])
    cli.check_at_least(
        [
            ("--epochs", args.epochs, 1),
            ("--units", args.units, 1),
            ("--batch-size", args.batch_size, 1),
            ("--folds", args.folds, 1),
            ("--patience", args.patience, 1),
            ("--elm-hidden", args.elm_hidden, 1),
            ("--chunk-frames", args.chunk_frames, 2),
            ("--synthetic-per-emotion", args.synthetic_per_emotion, 1),
        ]
    )
    cli.check_fraction("--validation-fraction", args.validation_fraction, 0.0, 0.5)
    epochs = args.epochs or preset["epochs"]
    patience = args.patience if args.patience is not None else preset["patience"]
    units = args.units or preset["units"]
    batch_size = args.batch_size or preset["batch_size"]
    cli.check_global_batch(batch_size, strategy)
    loso_folds = args.folds or preset["loso_folds"]
    loco_folds = args.folds
    cache_dir = cli.cache_dir_of(args)
    started = time.time()

    specs, data_description = _resolve_corpora(args, cache_dir, preset)
    protocol = args.protocol or ("both" if len(specs) > 1 else "loso")
    protocols = ["loso", "loco"] if protocol == "both" else [protocol]
    if "loco" in protocols and len({spec.kind + str(spec.directory) for spec in specs}) < 2:
        raise ValueError(
            "--protocol loco needs at least 2 corpora (give --corpus twice or more); "
            f"received {len(specs)}."
        )
    print(f"Data: {data_description}")
    print(
        f"Configuration: preset {args.preset!r} ({units} units, at most {epochs} epochs, "
        f"batch {batch_size}"
        + (f", early stopping after {patience} epochs" if patience else "")
        + f"), networks {networks}, variants {[VARIANT_TITLES[v] for v in variants]}, "
        f"protocols {protocols}" + cli.reduced_note(args.preset == "quick"),
        flush=True,
    )

    emotion_map = get_label_map("four_class")
    class_names = list(emotion_map.classes)
    waveform_cache = WaveformCache(cache_dir / "waveforms")
    frontend = FrameFeatures.from_preset("kim2017")

    utterances, waveforms, skipped, left_out = [], [], {}, {}
    for spec in specs:
        listing = spec.load()
        cached = waveform_cache.load(listing.utterances, progress=not args.quiet)
        name = listing.corpus
        entries = list(listing.skipped) + list(cached.skipped)
        unmapped = emotion_map.unmapped_counts(cached.utterances)
        if unmapped:
            print(f"  {name}: emotions outside the four classes, left out: {unmapped}")
            left_out[name] = unmapped
        for utterance, waveform in zip(cached.utterances, cached.waveforms, strict=True):
            if emotion_map.index(utterance.label) < 0:
                continue
            if frontend.num_frames_for_samples(len(waveform)) < 1:
                entries.append(
                    _skipped(utterance.path, "shorter than one 25 ms frame after trimming")
                )
                continue
            utterances.append(utterance)
            waveforms.append(waveform)
        skipped[name] = cli.report_skipped(name, entries, listing.warnings)
    if not utterances:
        raise ValueError(f"No usable four-class utterances in {data_description}.")

    emotion = emotion_map.encode(utterances)
    gender = _encode([u.gender for u in utterances], GENDER_CLASSES)
    naturalness = _encode([u.naturalness for u in utterances], NATURALNESS_CLASSES)
    corpora = sorted({u.corpus for u in utterances})
    print(
        "Utterances: "
        + ", ".join(f"{c} {sum(u.corpus == c for u in utterances)}" for c in corpora),
        flush=True,
    )
    print(f"Computing the 32 frame features of {len(utterances)} utterances ...", flush=True)
    sequences = _frame_features(frontend, utterances, waveforms, cache_dir, args.quiet)
    del waveforms

    # On a multi-worker cluster only the chief writes to --out and exports.
    outputs = cli.worker_outputs(
        args.out, strategy, export_dir=None if args.no_export else args.export_dir
    )
    state = RunState(
        outputs.out_dir,
        {
            "app": "train_gender_naturalness",
            "data": data_description,
            "preset": args.preset,
            "units": units,
            "epochs": epochs,
            "patience": patience,
            "batch_size": batch_size,
            "seed": args.seed,
            "validation_fraction": args.validation_fraction,
            "chunk_frames": args.chunk_frames,
            "elm_hidden": args.elm_hidden,
            "split_naturalness": not args.no_split_naturalness,
            "num_utterances": len(utterances),
        },
        resume=args.resume,
    )
    reports.write_json_atomic(
        state.out_dir / "skipped.json", {"skipped": skipped, "left_out_emotions": left_out}
    )

    labels = {"emotion": emotion, "gender": gender, "naturalness": naturalness}
    experiment = _Experiment(
        args=args,
        state=state,
        sequences=sequences,
        labels=labels,
        class_names=class_names,
        networks=networks,
        variants=variants,
        units=units,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        strategy=strategy,
    )
    results = {
        "units": "fraction",
        "class_names": class_names,
        "configuration": state.config,
        "protocols": {},
        "warnings": [],
    }
    for name in protocols:
        if name == "loso":
            folds = _loso_folds(utterances, emotion, args, loso_folds)
            test_corpus_of = {fold.name: corpus for corpus, fold in folds}
            folds = [fold for _, fold in folds]
        else:
            renamed = _loco_utterances(utterances, split=not args.no_split_naturalness)
            from ser_keras.data.splits import leave_one_corpus_out

            folds = leave_one_corpus_out(
                renamed,
                validation="fraction",
                validation_fraction=args.validation_fraction,
                seed=args.seed,
                labels=emotion,
            )
            if loco_folds:
                folds = folds[:loco_folds]
            test_corpus_of = {fold.name: fold.name for fold in folds}
        results["protocols"][name] = experiment.run_protocol(name, folds, test_corpus_of)
        results["warnings"] = sorted(set(results["warnings"]) | set(experiment.warnings))

    results["elapsed_seconds"] = round(time.time() - started, 1)
    results["corpus_naturalness"] = _corpus_naturalness(
        _loco_utterances(utterances, split=not args.no_split_naturalness)
    )
    results["wilcoxon"] = _wilcoxon_tests(results, variants, networks)
    _write_tables(state.out_dir, results, class_names, variants, networks)
    tsne_path = _plot_tsne(state.out_dir, results, class_names, networks, variants, args.seed)
    if tsne_path is not None:
        results["tsne_plot"] = str(tsne_path)

    if outputs.export_dir is not None:
        results["export"] = _export(
            outputs.export_dir, results, frontend, class_names, variants, networks
        )
    reports.write_json_atomic(state.out_dir / "results.json", results)
    print(f"\nResults written to {state.out_dir} in {time.time() - started:.0f} s.")
    return 0


def _skipped(path, reason):
    from ser_keras.corpora.records import SkippedFile

    return SkippedFile(path=path, reason=reason)


def _loso_folds(utterances, emotion, args, max_folds):
    """[(corpus, Fold)] of within-corpus LOSO, indices into the full utterance list."""
    import dataclasses

    import numpy as np

    from ser_keras.data.splits import leave_one_speaker_out

    folds = []
    for corpus in sorted({u.corpus for u in utterances}):
        members = np.array([i for i, u in enumerate(utterances) if u.corpus == corpus])
        subset = [utterances[i] for i in members]
        speakers = {u.speaker_id for u in subset}
        if len(speakers) < 2:
            print(
                f"  loso: {corpus} has {len(speakers)} speaker(s); leave-one-speaker-out "
                "needs at least 2, skipped."
            )
            continue
        corpus_folds = leave_one_speaker_out(
            subset,
            validation="fraction",
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            labels=emotion[members],
        )
        if max_folds:
            corpus_folds = corpus_folds[:max_folds]
        for fold in corpus_folds:
            folds.append(
                (
                    corpus,
                    dataclasses.replace(
                        fold,
                        train=members[fold.train],
                        validation=members[fold.validation],
                        test=members[fold.test],
                    ),
                )
            )
    if not folds:
        raise ValueError("No corpus has enough speakers for leave-one-speaker-out.")
    return folds


def _loco_utterances(utterances, split):
    """Utterances with corpora holding acted and natural speech renamed `<corpus>_<kind>`."""
    import dataclasses

    if not split:
        return list(utterances)
    kinds = {}
    for utterance in utterances:
        kinds.setdefault(utterance.corpus, set()).add(utterance.naturalness)
    mixed = {corpus for corpus, values in kinds.items() if {"acted", "natural"} <= values}
    return [
        dataclasses.replace(u, corpus=f"{u.corpus}_{u.naturalness or 'unknown'}")
        if u.corpus in mixed
        else u
        for u in utterances
    ]


def _corpus_naturalness(utterances):
    """Corpus -> "natural", "acted" or "unknown" (the majority of its utterances)."""
    from collections import Counter

    counts = {}
    for utterance in utterances:
        counts.setdefault(utterance.corpus, Counter())[utterance.naturalness or "unknown"] += 1
    return {corpus: counter.most_common(1)[0][0] for corpus, counter in counts.items()}


# ----------------------------------------------------------------- training
class _Experiment:
    """Trains and evaluates every network x variant on every fold of a protocol."""

    def __init__(
        self,
        args,
        state,
        sequences,
        labels,
        class_names,
        networks,
        variants,
        units,
        epochs,
        patience,
        batch_size,
        strategy=None,
    ):
        self.args = args
        self.state = state
        self.sequences = sequences
        self.labels = labels
        self.class_names = class_names
        self.networks = networks
        self.variants = variants
        self.units = units
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.strategy = strategy
        self.warnings = []

    def _chunks(self, indices, tasks):
        import numpy as np

        from ser_keras.features.framing import expand_labels, segment_features

        segments, owners = segment_features(
            [self.sequences[i] for i in indices],
            segment_length=self.args.chunk_frames,
            pad_value=0.0,
        )
        labels = {task: self.labels[task][np.asarray(indices)] for task in tasks}
        return segments, expand_labels(labels, owners)

    def run_protocol(self, protocol, folds, test_corpus_of):
        import numpy as np

        from ser_keras.evaluation.metrics import mean_and_spread

        entries = {network: {variant: [] for variant in self.variants} for network in self.networks}
        for number, fold in enumerate(folds, start=1):
            train, validation, test = (
                np.asarray(part) for part in (fold.train, fold.validation, fold.test)
            )
            print(
                f"\n=== {protocol} fold {number}/{len(folds)}: {fold.name} "
                f"(train {len(train)}, validation {len(validation)}, test {len(test)}) ===",
                flush=True,
            )
            for task in ("gender", "naturalness"):
                present = sorted(set(self.labels[task][train].tolist()) - {-1})
                if len(present) < 2 and any(task in aux for aux in self.variants.values()):
                    message = (
                        f"{protocol} fold {fold.name}: the training data has "
                        f"{len(present)} {task} class(es) {present}; the {task} head cannot "
                        "learn anything there"
                    )
                    self.warnings.append(message)
                    print(f"  warning: {message}")
            all_tasks = ("emotion", "gender", "naturalness")
            train_chunks = self._chunks(train, all_tasks)
            validation_chunks = self._chunks(validation, all_tasks)
            for network in self.networks:
                for variant, aux in self.variants.items():
                    result = self._fit_fold(
                        protocol,
                        fold,
                        network,
                        variant,
                        aux,
                        train,
                        test,
                        train_chunks,
                        validation_chunks,
                    )
                    result.update(
                        fold=fold.name,
                        test_corpus=test_corpus_of[fold.name],
                        test_speakers=list(fold.test_speakers),
                    )
                    entries[network][variant].append(result)
                    print(
                        f"[{protocol}] {network.upper()}-{VARIANT_TITLES[variant]} "
                        f"{fold.name}: UA {result['ua']:.3f}  WA {result['wa']:.3f}  "
                        f"(best validation frame UA {result['best_validation'] or 0:.3f}, "
                        f"epoch {result['best_epoch']})",
                        flush=True,
                    )
        summary = {}
        for network, by_variant in entries.items():
            summary[network] = {}
            for variant, fold_results in by_variant.items():
                ua_mean, ua_std = mean_and_spread([r["ua"] for r in fold_results])
                wa_mean, wa_std = mean_and_spread([r["wa"] for r in fold_results])
                summary[network][variant] = {
                    "title": f"{network.upper()}-{VARIANT_TITLES[variant]}",
                    "ua": ua_mean,
                    "ua_std": ua_std,
                    "wa": wa_mean,
                    "wa_std": wa_std,
                    "confusion": np.sum(
                        [np.asarray(r["confusion"]) for r in fold_results], axis=0
                    ).tolist(),
                    "folds": [
                        {
                            key: r.get(key)
                            for key in (
                                "fold",
                                "test_corpus",
                                "test_speakers",
                                "ua",
                                "wa",
                                "macro_f1",
                                "best_validation",
                                "best_epoch",
                                "epochs_run",
                                "num_train",
                                "num_validation",
                                "num_test",
                            )
                        }
                        | {"fold_dir": r["fold_dir"]}
                        for r in fold_results
                    ],
                }
        return summary

    def _fit_fold(
        self, protocol, fold, network, variant, aux, train, test, train_chunks, validation_chunks
    ):
        import keras
        import numpy as np

        from ser_keras.models.elm import ExtremeLearningMachine
        from ser_keras.models.kim_mtl import KimMTL, utterance_functionals
        from ser_keras.training.runner import Split, fit_and_evaluate

        tasks = ("emotion",) + tuple(aux)
        train_inputs, train_labels = train_chunks
        validation_inputs, validation_labels = validation_chunks
        fold_dir = self.state.fold_dir(f"{protocol}/{network}_{variant}", fold.name)
        train_sequences = [self.sequences[i] for i in train]

        def build_model():
            model = KimMTL.from_preset(f"kim2017_{network}", units=self.units, auxiliary_tasks=aux)
            model.adapt_feature_normalization(train_sequences)
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3))
            return model

        def elm_predict(model, test_sequences):
            """High-level features -> ELM trained on the training utterances."""
            train_features = utterance_functionals(model.predict_frame_posteriors(train_sequences))
            test_features = utterance_functionals(model.predict_frame_posteriors(test_sequences))
            elm = ExtremeLearningMachine(num_hidden=self.args.elm_hidden, seed=self.args.seed)
            elm.fit(
                train_features,
                self.labels["emotion"][train],
                num_classes=len(self.class_names),
            )
            elm.save(fold_dir / "elm.npz")
            probabilities = elm.predict_proba(test_features)
            np.savez(
                fold_dir / "high_level_features.npz",
                test_features=test_features,
                test_labels=self.labels["emotion"][test],
                test_predictions=np.argmax(probabilities, axis=1),
                test_indices=test,
            )
            return probabilities

        done = (fold_dir / "result.json").exists()
        if done:
            print(f"  {network.upper()}-{VARIANT_TITLES[variant]}: already finished, reusing it")
        result = fit_and_evaluate(
            build_model,
            Split(train_inputs, {t: train_labels[t] for t in tasks}),
            Split(validation_inputs, {t: validation_labels[t] for t in tasks}),
            Split([self.sequences[i] for i in test], {"emotion": self.labels["emotion"][test]}),
            fold_dir=fold_dir,
            class_names=self.class_names,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.args.seed,
            monitor="val_emotion_ua",
            patience=self.patience,
            verbose=0 if self.args.quiet else 2,
            predict_fn=elm_predict,
            strategy=self.strategy,
        )
        result = dict(result)
        result["fold_dir"] = str(fold_dir)
        return result


# ------------------------------------------------------------ statistics
def _wilcoxon(mtl, stl):
    """Wilcoxon signed-rank test of paired UAs (two-sided), or the reason it cannot run."""
    import numpy as np
    from scipy import stats

    mtl, stl = np.asarray(mtl, dtype=float), np.asarray(stl, dtype=float)
    entry = {
        "n": int(mtl.size),
        "mean_gain": float(np.mean(mtl - stl)) if mtl.size else None,
        "statistic": None,
        "p_value": None,
    }
    if mtl.size == 0:
        entry["note"] = "no paired folds"
    elif np.all(mtl == stl):
        entry["note"] = "all differences are zero"
    else:
        result = stats.wilcoxon(mtl, stl)
        entry["statistic"] = float(result.statistic)
        entry["p_value"] = float(result.pvalue)
        if mtl.size < 6:
            entry["note"] = (
                f"only {mtl.size} pairs: the smallest two-sided p-value possible is "
                f"{2 / 2**mtl.size:.3g}, so p < 0.05 cannot be reached"
            )
    return entry


def _wilcoxon_tests(results, variants, networks):
    """MTL vs STL per protocol and network (all folds), and per corpus for LOSO."""
    tests = []
    for protocol, summary in results["protocols"].items():
        for network in networks:
            stl_folds = summary[network]["stl"]["folds"]
            for variant in variants:
                if variant == "stl":
                    continue
                mtl_folds = summary[network][variant]["folds"]
                groups = {"all": list(range(len(stl_folds)))}
                if protocol == "loso":
                    for index, fold in enumerate(stl_folds):
                        groups.setdefault(fold["test_corpus"], []).append(index)
                for group, indices in groups.items():
                    entry = _wilcoxon(
                        [mtl_folds[i]["ua"] for i in indices], [stl_folds[i]["ua"] for i in indices]
                    )
                    entry.update(
                        protocol=protocol,
                        network=network,
                        variant=variant,
                        comparison=f"{network.upper()}-{VARIANT_TITLES[variant]} vs "
                        f"{network.upper()}-STL",
                        group=group,
                    )
                    tests.append(entry)
    return tests


# ------------------------------------------------------------------ reports
def _columns(variants, networks):
    order = ["stl", "all", "gender", "naturalness"]
    return [(v, n) for v in order if v in variants for n in networks]


def _significant(results, protocol, network, variant, group):
    for entry in results["wilcoxon"]:
        if (entry["protocol"], entry["network"], entry["variant"], entry["group"]) == (
            protocol,
            network,
            variant,
            group,
        ):
            return entry["p_value"] is not None and entry["p_value"] < 0.05
    return False


def _write_tables(out_dir, results, class_names, variants, networks):
    import numpy as np

    from ser_keras.evaluation import reports

    columns = _columns(variants, networks)
    headers = [f"{n.upper()}-{VARIANT_TITLES[v]}" for v, n in columns]
    config = results["configuration"]
    sections = [
        "# Kim et al. (2017): gender and naturalness as auxiliary tasks",
        "",
        f"Data: {config['data']}; preset {config['preset']} ({config['units']} units, at most "
        f"{config['epochs']} epochs). Unweighted accuracy (UA, mean per-class recall) of the "
        "ELM on the high-level features, as fractions.",
    ]
    if results["warnings"]:
        sections += ["", "Warnings:", ""] + [f"- {w}" for w in results["warnings"]]

    if "loso" in results["protocols"]:
        summary = results["protocols"]["loso"]
        corpora = sorted({f["test_corpus"] for f in summary[networks[0]]["stl"]["folds"]})
        rows, means = [], {column: [] for column in columns}
        for corpus in corpora:
            row = [corpus]
            for variant, network in columns:
                values = [
                    f["ua"]
                    for f in summary[network][variant]["folds"]
                    if f["test_corpus"] == corpus
                ]
                mean = float(np.mean(values))
                means[(variant, network)].append(mean)
                std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                mark = (
                    " *"
                    if variant != "stl" and _significant(results, "loso", network, variant, corpus)
                    else ""
                )
                row.append(f"{mean:.3f} ± {std:.2f}{mark}")
            rows.append(row)
        rows.append(["M"] + [f"{np.mean(means[c]):.3f}" for c in columns])
        sections += [
            "",
            "## Within corpus, leave-one-speaker-out (layout of Table 2)",
            "",
            "Mean ± standard deviation over the test speakers; M = mean over corpora; "
            "* = Wilcoxon signed-rank p < 0.05 against the same network's STL over that "
            "corpus's speakers.",
            "",
            reports.markdown_table(["ID"] + headers, rows),
        ]

    if "loco" in results["protocols"]:
        summary = results["protocols"]["loco"]
        naturalness = results["corpus_naturalness"]
        folds = summary[networks[0]]["stl"]["folds"]
        all_corpora = sorted(naturalness)
        rows = []
        by_kind = {"natural": [], "acted": []}
        for index, fold in enumerate(folds):
            corpus = fold["test_corpus"]
            train = "{" + ", ".join(c for c in all_corpora if c != corpus) + "}"
            row = [train, corpus]
            for variant, network in columns:
                row.append(f"{summary[network][variant]['folds'][index]['ua']:.3f}")
            rows.append(row)
            by_kind.setdefault(naturalness.get(corpus, "unknown"), []).append(index)
        for kind, indices in by_kind.items():
            if not indices:
                continue
            names = ",".join(folds[i]["test_corpus"] for i in indices)
            row = [f"Mean of {kind}", names]
            for variant, network in columns:
                values = [summary[network][variant]["folds"][i]["ua"] for i in indices]
                row.append(f"{np.mean(values):.3f}")
            rows.append(row)
        rows.append(["Overall mean", ""] + [f"{summary[n][v]['ua']:.3f}" for v, n in columns])
        sections += [
            "",
            "## Cross corpus, leave-one-corpus-out (layout of Table 3)",
            "",
            reports.markdown_table(["Train", "Test"] + headers, rows),
        ]

    if results["wilcoxon"]:
        rows = [
            [
                e["protocol"],
                e["comparison"],
                e["group"],
                e["n"],
                e["mean_gain"],
                e["statistic"],
                e["p_value"],
                e.get("note", ""),
            ]
            for e in results["wilcoxon"]
        ]
        sections += [
            "",
            "## Wilcoxon signed-rank tests, MTL vs STL (paired fold UAs, two-sided)",
            "",
            reports.markdown_table(
                ["protocol", "comparison", "folds", "n", "mean UA gain", "W", "p", "note"],
                rows,
                float_format="{:.3f}",
            ),
        ]

    for protocol, summary in results["protocols"].items():
        for variant, network in columns:
            if variant not in ("stl", "all") and "all" in variants:
                continue
            entry = summary[network][variant]
            sections += [
                "",
                f"## Confusion matrix, {entry['title']}, {protocol} (pooled over folds; "
                "rows: true, columns: predicted, % of row; layout of Table 4)",
                "",
                reports.confusion_markdown(np.asarray(entry["confusion"]), class_names),
                "",
                f"UA {entry['ua']:.3f}",
            ]
    text = "\n".join(sections) + "\n"
    reports.write_text_atomic(out_dir / "results.md", text)
    print("\n" + text)


def _plot_tsne(out_dir, results, class_names, networks, variants, seed):
    """Figure 2: t-SNE of the test utterances' high-level features, coloured by emotion."""
    import numpy as np

    from ser_keras.evaluation import reports

    protocol = "loco" if "loco" in results["protocols"] else "loso"
    summary = results["protocols"][protocol]
    mtl = "all" if "all" in variants else next((v for v in variants if v != "stl"), None)
    panels = [(n, v) for n in networks for v in ("stl", mtl) if v is not None]
    data = []
    for network, variant in panels:
        features, labels = [], []
        for fold in summary[network][variant]["folds"]:
            path = pathlib.Path(fold["fold_dir"]) / "high_level_features.npz"
            if not path.exists():
                continue
            with np.load(path) as stored:
                features.append(stored["test_features"])
                labels.append(stored["test_labels"])
        if features:
            data.append((network, variant, np.concatenate(features), np.concatenate(labels)))
    if not data or min(len(item[2]) for item in data) < 5:
        print("Too few test utterances for a t-SNE plot; skipped.")
        return None

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.manifold import TSNE

    colours = ["tab:green", "tab:orange", "tab:blue", "tab:red"]  # Figure 2's colours
    columns = len(data) if len(data) < 3 else 2
    rows = (len(data) + columns - 1) // columns
    figure = Figure(figsize=(5.0 * columns, 4.5 * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    letters = "abcdefgh"
    for position, (network, variant, features, labels) in enumerate(data):
        perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3.0)))
        embedding = TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=seed
        ).fit_transform(features)
        axes = figure.add_subplot(rows, columns, position + 1)
        for number, name in enumerate(class_names):
            chosen = labels == number
            axes.scatter(
                embedding[chosen, 0], embedding[chosen, 1], s=8, c=colours[number % 4], label=name
            )
        axes.set_title(f"({letters[position]}) {network.upper()}-{VARIANT_TITLES[variant]}")
        axes.set_xticks([])
        axes.set_yticks([])
        if position == 0:
            axes.legend(fontsize=7, markerscale=2)
    figure.suptitle(f"t-SNE of the high-level features of the test utterances ({protocol})")
    path = out_dir / "tsne.png"
    with reports.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    print(f"t-SNE plot (Figure 2 layout): {path}")
    return path


# ------------------------------------------------------------------- export
def _export(export_dir, results, frontend, class_names, variants, networks):
    import keras

    from ser_keras.models.kim_mtl import AUXILIARY_CLASSES

    network = "lstm" if "lstm" in networks else networks[0]
    variant = "all" if "all" in variants else list(variants)[-1]
    best = None
    for protocol, summary in results["protocols"].items():
        for fold in summary[network][variant]["folds"]:
            score = fold["best_validation"] or 0.0
            if best is None or score > best[0]:
                best = (score, protocol, fold)
    if best is None:
        return None
    _, protocol, fold = best
    fold_dir = pathlib.Path(fold["fold_dir"])
    model = keras.saving.load_model(str(fold_dir / "best.keras"))
    label_names = {"emotion": class_names}
    for task in model.auxiliary_tasks:
        label_names[task] = list(AUXILIARY_CLASSES[task])
    path = cli.export_for_serving(
        model.utterance_model(),
        export_dir,
        "kim_mtl",
        frontend=frontend,
        label_names=label_names,
        metadata={
            "app": "train_gender_naturalness",
            "network": network,
            "variant": VARIANT_TITLES[variant],
            "protocol": protocol,
            "fold": fold["fold"],
            "data": results["configuration"]["data"],
            "preset": results["configuration"]["preset"],
            "emotion_probabilities": (
                "mean of the frame-level emotion softmax over the utterance's frames (the "
                "'mean' functional); the paper's utterance classifier is the ELM below"
            ),
            "elm": {
                "backend": "numpy: ser_keras.models.elm.ExtremeLearningMachine, NOT part of "
                "this SavedModel",
                "inputs": "16 high-level features: max, min, mean and share of frames above "
                "0.2 of each emotion's frame posterior (ser_keras.models.kim_mtl."
                "utterance_functionals of the frame posteriors)",
                "weights": str((fold_dir / "elm.npz").resolve()),
            },
        },
    )
    print(
        f"\nExported {network.upper()}-{VARIANT_TITLES[variant]} ({protocol}, fold "
        f"{fold['fold']}) to {path}"
    )
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
