"""Multilingual SER with multi-gating and NAS (Wang et al.): Tables 3-4 and Figure 4.

Trains all languages at once in the five multi-domain variants of Table 3
(Base, Shared-Bottom, OMoE, MMoE and the paper's multi-gating model with its
hard-concrete NAS module), each on the same per-language splits; runs the
auxiliary-loss ablation of Table 4 (single-language models with and without
the contrastive loss); plots the average gate weights per language and
expert (Figure 4(b)); exports the multi-gating model as a SavedModel (its
serving signature returns one probability vector per language).

With no corpus it generates (once, cached) synthetic eSpeak NG corpora: a
SAVEE-shaped English one and an EMO-DB-shaped German one.

    python -m apps.train_multilingual_gating
    python -m apps.train_multilingual_gating --corpus emodb:../shared/data/emodb \\
        --corpus ravdess:../shared/data/ravdess --corpus urdu:../shared/data/urdu \\
        --corpus turev:../shared/data/turev --out runs/multigate

Each corpus's language comes from its loader (EMO-DB de, RAVDESS en, URDU ur,
TurEV-DB tr, ...); corpora of the same language form one domain whose label
set is the union of their label maps.

Protocol (Section 3): per language, a random 20 % test split and 20 % of the
rest for validation (stratified by emotion; `--split speaker` holds out whole
speakers instead); the best epoch by the mean validation UA over languages
is kept; every configuration is repeated (`--repeats`, the paper's 5) with
other seeds and the mean is reported. Table cells are UA/WA as in the paper.

Reference:
    Z. Wang, Q. Meng, H. Lan, X. Zhang, K. Guo, A. Gupta, "Multilingual
    Speech Emotion Recognition With Multi-Gating Mechanism and Neural
    Architecture Search".
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Label map of each corpus kind (the loaders' canonical labels -> classes).
KIND_LABEL_MAPS = {
    "savee": "savee7",
    "emodb": "emodb7",
    "ravdess": "ravdess8",
    "urdu": "four_class",
    "turev": "turev4",
    "iemocap": "four_class",  # Section 3: excited merged into happy.
    "emovo": "savee7",
}
ABLATIONS = ("single", "multigate", "none")
EMBEDDING_EXPERTS = ("egemaps",)

# Published figures (Table 3 and Table 4, UA/WA) on IEMOCAP (en), EMO-DB (de)
# and CaFE (fr), shown next to ours for orientation only.
PAPER_TABLE3 = {
    "base": {"en": (0.3333, 0.6459), "de": (0.6403, 0.8586), "fr": (0.6860, 0.7646)},
    "shared_bottom": {"en": (0.6507, 0.6570), "de": (0.8628, 0.8702), "fr": (0.8538, 0.8410)},
    "omoe": {"en": (0.6723, 0.6722), "de": (0.9398, 0.9443), "fr": (0.8580, 0.8417)},
    "mmoe": {"en": (0.6883, 0.6815), "de": (0.9419, 0.9443), "fr": (0.8638, 0.8415)},
    "multigate": {"en": (0.7045, 0.7126), "de": (0.9578, 0.9536), "fr": (0.8713, 0.8514)},
}
PAPER_TABLE4 = {
    "with_aux": {"en": (0.7434, 0.7331), "de": (0.9556, 0.9536), "fr": (0.9070, 0.8910)},
    "without_aux": {"en": (0.7213, 0.7219), "de": (0.9493, 0.9536), "fr": (0.8935, 0.8712)},
}

# `--preset quick` is what makes the default run finish in minutes on a
# 2-core CPU; printed at start so nobody mistakes it for the paper's set-up.
PRESETS = {
    "quick": {
        "model_preset": "wang_cpu",
        "epochs": 12,
        "batch_size": 32,
        "repeats": 1,
        "ablation": "multigate",
        "synthetic_per_emotion": 5,
        "synthetic_emodb_per_emotion": 2,
    },
    "paper": {
        "model_preset": "wang",
        "epochs": 20,
        "batch_size": 64,
        "repeats": 5,
        "ablation": "single",
        "synthetic_per_emotion": 15,
        "synthetic_emodb_per_emotion": 8,
    },
}


def build_parser() -> argparse.ArgumentParser:
    from ser_keras.models.multigate import EXPERT_KINDS, TABLE3_VARIANTS

    parser = cli.app_parser(
        "train_multilingual_gating",
        "Train the multilingual multi-gating SER model of Wang et al. and its baselines "
        "(Base, Shared-Bottom, OMoE, MMoE) on several languages at once; write UA/WA per "
        "language (Table 3), the auxiliary-loss ablation (Table 4) and the gate weights "
        "(Figure 4). Without --corpus, synthetic English (SAVEE layout) and German "
        "(EMO-DB layout) corpora are generated and cached.",
    )
    parser.add_argument(
        "--corpus",
        action="append",
        metavar="KIND:DIR",
        help="A labelled corpus, e.g. emodb:~/emodb (repeat for more; the loader gives the "
        "language). Default: synthetic SAVEE-layout English + EMO-DB-layout German.",
    )
    parser.add_argument(
        "--variants",
        default=",".join(TABLE3_VARIANTS),
        help=f"Comma-separated Table 3 variants to train, from {', '.join(TABLE3_VARIANTS)}.",
    )
    parser.add_argument(
        "--ablation",
        choices=ABLATIONS,
        help="Table 4 auxiliary-loss ablation: 'single' trains single-language models with "
        "and without the contrastive loss (the paper's protocol); 'multigate' retrains the "
        "multi-gating model without it; 'none' skips it. Default: the preset's.",
    )
    parser.add_argument(
        "--experts",
        default=",".join(EXPERT_KINDS),
        help=f"Comma-separated feature experts, from {', '.join(EXPERT_KINDS + EMBEDDING_EXPERTS)}"
        ". 'egemaps' (eGeMAPS functionals) needs the opensmile package and is skipped, with "
        "a message, where it is not installed.",
    )
    parser.add_argument(
        "--gate-selector",
        help="The expert whose vector feeds the softmax gates (the paper uses its GE2E "
        "embedding), or 'concat' for all experts' vectors. Default: 'statistics' when that "
        "expert is used, else 'concat'.",
    )
    parser.add_argument(
        "--embedding",
        action="append",
        metavar="NAME=FILE.npz",
        help="An utterance-level embedding computed elsewhere (e.g. a pretrained model's "
        "pooled output) as an extra expert: an .npz with 'paths' (audio file paths) and "
        "'embeddings' [N, dim]. Utterances without one are skipped and listed.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="quick: reduced model, epochs and repeats for a CPU; paper: the paper's sizes, "
        "20 epochs, 5 repeats, single-language ablation.",
    )
    parser.add_argument("--epochs", type=int, help="Override the preset's number of epochs.")
    parser.add_argument("--batch-size", type=int, help="Override the preset's batch size (64).")
    parser.add_argument("--repeats", type=int, help="Override the preset's number of repeats.")
    parser.add_argument(
        "--split",
        choices=("random", "speaker"),
        default="random",
        help="random: the paper's random 20%% test split per language (stratified by "
        "emotion); speaker: about 20%% of each language's speakers held out for testing.",
    )
    cli.add_common_arguments(
        parser,
        default_out="runs/train_multilingual_gating",
        export_help="Where the multi-gating model is exported (TF Serving layout).",
        synthetic_help="Utterances per emotion and speaker of the synthetic English corpus (the "
        "German one gets half; default: the preset's).",
        seed_help="Random seed (repeat r uses seed + r).",
    )
    return parser


def _parse_embedding_files(values):
    files = {}
    for text in values or ():
        name, separator, path = text.partition("=")
        name = name.strip()
        if not separator or not name or not path:
            raise ValueError(f"--embedding takes NAME=FILE.npz. Received: {text!r}")
        path = pathlib.Path(path).expanduser()
        if not path.is_file():
            raise ValueError(f"--embedding {name}: file not found: {path}")
        if name in files or name in ("features", "logmel", "mfcc", "statistics", "egemaps"):
            raise ValueError(f"--embedding: the name {name!r} is taken or repeated.")
        files[name] = path
    return files


def _resolve_corpora(args, cache_dir, preset):
    """The corpus specs and a description of the data."""
    if not args.corpus:
        root = cli.synthetic_root(cache_dir)
        specs = [
            cli.synthetic_corpus_spec(
                root, "savee", seed=args.seed, per_emotion=preset["synthetic_per_emotion"]
            ),
            cli.synthetic_corpus_spec(
                root, "emodb", seed=args.seed, per_emotion=preset["synthetic_emodb_per_emotion"]
            ),
        ]
        return specs, "synthetic (eSpeak NG) SAVEE-layout English + EMO-DB-layout German"
    specs = cli.corpus_specs(args.corpus, "--corpus")
    return specs, " + ".join(f"{s.kind} at {s.directory}" for s in specs)


def _label_map_for(spec, utterances):
    """The label map of a corpus: its kind's map, or the labels it carries (manifest)."""
    from ser_keras.corpora.labels import LabelMap, get_label_map

    if spec.kind in KIND_LABEL_MAPS:
        return get_label_map(KIND_LABEL_MAPS[spec.kind])
    labels = sorted({u.label for u in utterances if u.label is not None})
    if not labels:
        raise ValueError(
            f"{spec.kind} corpus at {spec.directory} has no emotion labels; this app needs "
            "labelled corpora."
        )
    return LabelMap(f"{spec.kind}_labels", tuple(labels))


def _stratified_part(indices, labels, fraction, rng):
    """About `fraction` of `indices`, the same share of every label (>= 1 of a class of 3+)."""
    import numpy as np

    chosen = []
    for label in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == label])
        count = int(round(fraction * members.size))
        if count == 0 and members.size >= 3:
            count = 1
        chosen.append(members[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _language_split(indices, labels, utterances, mode, seed, repeat):
    """`(train, validation, test)` global indices of one language's utterances.

    random: 20 % test, then 20 % of the rest for validation (Section 3),
    stratified by emotion. speaker: about 20 % of the speakers (at least one)
    tested, 20 % of the other speakers' utterances for validation.
    """
    import numpy as np

    from ser_keras.data.splits import speaker_holdout_folds

    rng = np.random.default_rng([seed, repeat])
    if mode == "random":
        test = _stratified_part(indices, labels, 0.2, rng)
        rest = np.setdiff1d(indices, test)
        validation = _stratified_part(rest, labels, 0.2, rng)
        train = np.setdiff1d(rest, validation)
        return train, validation, test
    subset = [utterances[i] for i in indices]
    speakers = sorted({u.speaker_id for u in subset})
    if len(speakers) < 2:
        raise ValueError(
            f"--split speaker needs at least 2 speakers per language; {subset[0].language!r} has "
            f"{len(speakers)} ({speakers}). Use --split random."
        )
    num_test = max(1, int(round(0.2 * len(speakers))))
    fold = speaker_holdout_folds(
        subset,
        num_train_speakers=len(speakers) - num_test,
        num_folds=repeat + 1,
        validation="fraction",
        validation_fraction=0.2,
        seed=seed,
        labels=labels[indices],
    )[repeat]
    return indices[fold.train], indices[fold.validation], indices[fold.test]


def _egemaps_functionals(waveforms, sample_rate):
    """eGeMAPSv02 functionals (88 per utterance) with openSMILE; ImportError when absent."""
    import numpy as np
    import opensmile

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    rows = [
        np.asarray(smile.process_signal(waveform, sample_rate), dtype=np.float32).reshape(-1)
        for waveform in waveforms
    ]
    return np.stack(rows).astype(np.float32)


def _load_embedding_file(name, path, utterances):
    """`(array [N, dim] float32, keep mask [N], skipped list)` from a `paths`/`embeddings` npz."""
    import numpy as np

    from ser_keras.corpora.records import SkippedFile

    with np.load(path, allow_pickle=False) as data:
        if "paths" not in data or "embeddings" not in data:
            raise ValueError(
                f"--embedding {name}: {path} must hold arrays 'paths' and 'embeddings'; "
                f"it holds {sorted(data.files)}."
            )
        paths = [str(pathlib.Path(p).expanduser().resolve()) for p in data["paths"].tolist()]
        vectors = np.asarray(data["embeddings"], dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(paths):
        raise ValueError(
            f"--embedding {name}: 'embeddings' must be [len(paths), dim]; received "
            f"{vectors.shape} for {len(paths)} paths."
        )
    lookup = {p: i for i, p in enumerate(paths)}
    array = np.zeros((len(utterances), vectors.shape[1]), dtype=np.float32)
    keep = np.zeros(len(utterances), dtype=bool)
    skipped = []
    for position, utterance in enumerate(utterances):
        row = lookup.get(str(pathlib.Path(utterance.path).resolve()))
        if row is None or not np.all(np.isfinite(vectors[row])):
            reason = "no" if row is None else "a non-finite"
            skipped.append(SkippedFile(str(utterance.path), f"{reason} {name} embedding in {path}"))
        else:
            array[position] = vectors[row]
            keep[position] = True
    return array, keep, skipped


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:  # noqa: C901 - one linear protocol, kept in one place.
    # Created first: MultiWorkerMirroredStrategy must exist before other TF ops.
    strategy = cli.strategy_from_args(args)

    import numpy as np

    from ser_keras.data.cache import WaveformCache
    from ser_keras.data.pipeline import compute_features
    from ser_keras.evaluation import reports
    from ser_keras.features.logmel import LogMel
    from ser_keras.models import multigate
    from ser_keras.training.runner import RunState

    variants = cli.parse_name_list(args.variants, multigate.TABLE3_VARIANTS, "--variants")
    experts = cli.parse_name_list(
        args.experts, multigate.EXPERT_KINDS + EMBEDDING_EXPERTS, "--experts"
    )
    embedding_files = _parse_embedding_files(args.embedding)
    preset = dict(PRESETS[args.preset])
    cli.check_at_least(
        [
            ("--synthetic-per-emotion", args.synthetic_per_emotion, 2),
            ("--epochs", args.epochs, 1),
            ("--batch-size", args.batch_size, 1),
            ("--repeats", args.repeats, 1),
        ]
    )
    if args.synthetic_per_emotion is not None:
        preset["synthetic_per_emotion"] = args.synthetic_per_emotion
        preset["synthetic_emodb_per_emotion"] = max(1, args.synthetic_per_emotion // 2)
    for option in ("epochs", "batch_size", "repeats"):
        if getattr(args, option) is not None:
            preset[option] = getattr(args, option)
    cli.check_global_batch(preset["batch_size"], strategy)
    ablation = args.ablation or preset["ablation"]
    model_preset = dict(multigate.PRESETS[preset["model_preset"]])
    cache_dir = cli.cache_dir_of(args)
    started = time.time()

    # --- Experts available here.
    internal_experts = tuple(e for e in experts if e in multigate.EXPERT_KINDS)
    use_egemaps = "egemaps" in experts
    if use_egemaps:
        try:
            import opensmile  # noqa: F401
        except ImportError:
            print(
                "Skipping the 'egemaps' expert: the opensmile package is not installed "
                "(pip install opensmile to use it)."
            )
            use_egemaps = False
    if not internal_experts and not use_egemaps and not embedding_files:
        raise ValueError(f"No feature expert is left to train with (--experts {args.experts}).")
    gate_selector = args.gate_selector or model_preset["gate_selector"]
    available = (
        set(internal_experts) | set(embedding_files) | ({"egemaps"} if use_egemaps else set())
    )
    if args.gate_selector is None and gate_selector not in available:
        gate_selector = "concat"
    elif gate_selector != "concat" and gate_selector not in available:
        raise ValueError(
            f"--gate-selector must be 'concat' or one of the experts in use "
            f"{sorted(available)}. Received: {gate_selector!r}"
        )

    specs, data_description = _resolve_corpora(args, cache_dir, preset)
    print(f"Data: {data_description}")
    print(
        f"Configuration: preset {args.preset!r} (model preset {preset['model_preset']!r}, "
        f"{preset['epochs']} epochs, batch {preset['batch_size']}, {preset['repeats']} "
        f"repeat(s), ablation {ablation!r}, split {args.split!r})"
        + cli.reduced_note(args.preset == "quick"),
        flush=True,
    )

    # --- Corpora, labels, languages.
    waveform_cache = WaveformCache(cache_dir / "waveforms")
    utterances, waveforms, label_texts, corpus_names = [], [], [], []
    skipped_report = {}
    language_maps = {}
    for spec in specs:
        listing = spec.load()
        cached = waveform_cache.load(listing.utterances, progress=not args.quiet)
        label_map = _label_map_for(spec, cached.utterances)
        encoded = label_map.encode(cached.utterances)
        unmapped = label_map.unmapped_counts(cached.utterances)
        name = f"{spec.kind}:{spec.directory}"
        if unmapped:
            print(f"  {name}: labels outside {label_map.name}, left out: {unmapped}")
        skipped_report[name] = cli.report_skipped(
            name, list(listing.skipped) + list(cached.skipped), listing.warnings, limit=10
        )
        kept = 0
        rows = zip(cached.utterances, cached.waveforms, encoded, strict=True)
        for utterance, waveform, index in rows:
            if index < 0:
                continue
            if not utterance.language:
                raise ValueError(
                    f"{name}: the loader gives no language for {utterance.path}; use a corpus "
                    "kind that sets one (or a manifest with a language column)."
                )
            utterances.append(utterance)
            waveforms.append(waveform)
            label_texts.append(label_map.classes[index])
            corpus_names.append(name)
            kept += 1
            classes = language_maps.setdefault(utterance.language, [])
            for class_name in label_map.classes:
                if class_name not in classes:
                    classes.append(class_name)
        if kept == 0:
            raise ValueError(f"No usable labelled utterance in {name}.")
        print(f"  {name}: {kept} labelled utterances")
    languages = list(language_maps)
    class_names = {language: list(language_maps[language]) for language in languages}

    # --- Optional embedding experts (utterances without one are skipped).
    embeddings = {}
    keep = np.ones(len(utterances), dtype=bool)
    embedding_skipped = []
    for name, path in embedding_files.items():
        array, has, skipped = _load_embedding_file(name, path, utterances)
        embeddings[name] = array
        keep &= has
        embedding_skipped += skipped
    if embedding_skipped:
        print(
            f"  skipped {len(embedding_skipped)} utterance(s) without an embedding (skipped.json)"
        )
        skipped_report["embeddings"] = [entry.to_dict() for entry in embedding_skipped]
    if not keep.all():
        utterances = [u for u, k in zip(utterances, keep, strict=True) if k]
        waveforms = [w for w, k in zip(waveforms, keep, strict=True) if k]
        label_texts = [t for t, k in zip(label_texts, keep, strict=True) if k]
        corpus_names = [c for c, k in zip(corpus_names, keep, strict=True) if k]
        embeddings = {name: array[keep] for name, array in embeddings.items()}
    if not utterances:
        raise ValueError("No utterance is left after matching the embeddings.")
    if use_egemaps:
        print(f"Computing eGeMAPS functionals for {len(waveforms)} utterances ...", flush=True)
        embeddings["egemaps"] = _egemaps_functionals(waveforms, waveform_cache.options.sample_rate)

    frontend = LogMel.from_preset("fu2021", num_frames=model_preset["num_frames"])
    print(
        f"Computing fu2021 log-mel features ({model_preset['num_frames']} frames) for "
        f"{len(waveforms)} utterances ...",
        flush=True,
    )
    features = compute_features(frontend, waveforms)

    language_of = np.array([u.language for u in utterances], dtype=object)
    union = multigate.union_of_classes(class_names)
    union_labels = np.array([union.index(t) for t in label_texts], dtype=np.int32)
    language_labels = {
        language: np.array(
            [
                class_names[language].index(text) if lang == language else -1
                for text, lang in zip(label_texts, language_of, strict=True)
            ],
            dtype=np.int32,
        )
        for language in languages
    }
    for language in languages:
        count = int(np.sum(language_of == language))
        print(f"  language {language}: {count} utterances, classes {class_names[language]}")

    # On a multi-worker cluster only the chief writes to --out and exports.
    outputs = cli.worker_outputs(
        args.out, strategy, export_dir=None if args.no_export else args.export_dir
    )
    state = RunState(
        outputs.out_dir,
        {
            "app": "train_multilingual_gating",
            "data": data_description,
            "preset": args.preset,
            "model_preset": preset["model_preset"],
            "epochs": preset["epochs"],
            "batch_size": preset["batch_size"],
            "repeats": preset["repeats"],
            "ablation": ablation,
            "split": args.split,
            "seed": args.seed,
            "experts": list(internal_experts),
            "embeddings": sorted(embeddings),
            "gate_selector": gate_selector,
            "class_names": class_names,
            "num_utterances": len(utterances),
        },
        resume=args.resume,
    )
    reports.write_json_atomic(state.out_dir / "skipped.json", skipped_report)

    # --- Splits per repeat (the same for every variant).
    splits = []
    for repeat in range(preset["repeats"]):
        parts = [[], [], []]
        for language in languages:
            indices = np.flatnonzero(language_of == language)
            for store, part in zip(
                parts,
                _language_split(
                    indices, language_labels[language], utterances, args.split, args.seed, repeat
                ),
                strict=True,
            ):
                store.append(part)
        train, validation, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
        for name, part in (("training", train), ("validation", validation), ("test", test)):
            for language in languages:
                if not np.any(language_of[part] == language):
                    raise ValueError(
                        f"Repeat {repeat + 1}: language {language!r} has no {name} utterance "
                        "(too few utterances); add data or use --split random."
                    )
        splits.append((train, validation, test))

    def inputs_of(indices, statistics_from):
        if not embeddings:
            return features[indices]
        result = {"features": features[indices]}
        for name, array in embeddings.items():
            mean = array[statistics_from].mean(axis=0)
            scale = array[statistics_from].std(axis=0)
            scale[scale < 1e-8] = 1.0
            result[name] = ((array[indices] - mean) / scale).astype(np.float32)
        return result

    model_arguments = dict(model_preset)
    model_arguments.update(
        experts=internal_experts,
        embedding_dims={name: int(array.shape[1]) for name, array in embeddings.items()},
        gate_selector=gate_selector,
        num_frames=features.shape[1],
        num_mels=features.shape[2],
    )

    def train_setting(setting, variant, setting_languages, repeat, **overrides):
        """Trains one (variant, repeat) and scores every language; returns its record."""
        from ser_keras.training.runner import Split, fit_and_evaluate

        train, validation, test = splits[repeat]
        if setting_languages != languages:
            mask = np.isin(language_of, setting_languages)
            train, validation, test = (
                train[mask[train]],
                validation[mask[validation]],
                test[mask[test]],
            )
        names = {language: class_names[language] for language in setting_languages}
        train_split = None

        def build_model():
            model = multigate.MultiGatingSER(
                class_names=names,
                variant=variant,
                seed=args.seed + repeat,
                **{**model_arguments, **overrides},
            )
            model.adapt_normalization(train_split.inputs)  # training data only
            model.compile(optimizer=multigate.make_optimizer())
            return model

        def labels_of(indices):
            if variant == "base":
                return {multigate.SHARED_TASK: union_labels[indices]}
            return {
                multigate.task_name(language): language_labels[language][indices]
                for language in setting_languages
            }

        fold_dir = state.fold_dir(setting, f"r{repeat + 1}")
        scores_path = fold_dir / "languages.json"
        task = next(iter(labels_of(test[:0])))
        captured = {}

        def predict_fn(model, inputs):
            captured["details"] = model.predict_details(inputs, batch_size=preset["batch_size"])
            captured["connections"] = {k: v.tolist() for k, v in model.connection_gates().items()}
            captured["label_names"] = model.label_names
            captured["expert_names"] = list(model.expert_names)
            return captured["details"]["probabilities"][task]

        done = scores_path.exists()
        print(
            f"[{setting}] repeat {repeat + 1}/{preset['repeats']}: "
            + (
                "already finished, reusing its result"
                if done
                else f"training on {len(train)} utterances ({', '.join(setting_languages)})"
            ),
            flush=True,
        )
        if done:
            import json

            return json.loads(scores_path.read_text())
        train_split = Split(inputs_of(train, train), labels_of(train))
        result = fit_and_evaluate(
            build_model,
            train_split,
            Split(inputs_of(validation, train), labels_of(validation)),
            Split(inputs_of(test, train), labels_of(test)),
            fold_dir=fold_dir,
            class_names=build_model_label_names(variant, names)[task],
            epochs=preset["epochs"],
            batch_size=preset["batch_size"],
            seed=args.seed + repeat,
            monitor="val_mean_ua",
            task=task,
            predict_fn=predict_fn,
            verbose=0 if args.quiet else 2,
            strategy=strategy,
        )
        if "details" not in captured:
            # The fold finished in an earlier run but its scores were not written.
            import keras

            model = keras.saving.load_model(str(fold_dir / "best.keras"))
            predict_fn(model, inputs_of(test, train))
        record = _score_languages(
            captured,
            variant,
            setting_languages,
            test,
            language_of,
            language_labels,
            union_labels,
            class_names,
            union,
        )
        record.update(
            best_validation_mean_ua=result["best_validation"],
            best_epoch=result["best_epoch"],
            epochs_run=result["epochs_run"],
            num_train=int(len(train)),
            num_validation=int(len(validation)),
            num_test=int(len(test)),
            fold_dir=str(fold_dir),
        )
        reports.write_json_atomic(scores_path, record)
        return record

    def build_model_label_names(variant, names):
        if variant == "base":
            return {multigate.SHARED_TASK: list(multigate.union_of_classes(names))}
        return {multigate.task_name(language): list(names[language]) for language in names}

    results = {"languages": {}, "table3": {}, "table4": {}, "gate_weights": {}, "connections": {}}
    for language in languages:
        results["languages"][language] = {
            "class_names": class_names[language],
            "num_utterances": int(np.sum(language_of == language)),
            "corpora": sorted(
                {c for c, lang in zip(corpus_names, language_of, strict=True) if lang == language}
            ),
        }
    records = {}
    for variant in variants:
        print(f"\n=== Table 3: {multigate.VARIANT_TITLES[variant]} ({variant}) ===", flush=True)
        records[variant] = [
            train_setting(variant, variant, languages, repeat)
            for repeat in range(preset["repeats"])
        ]
        results["table3"][variant] = _aggregate(records[variant], languages)
        results["gate_weights"][variant] = _mean_gates(records[variant], languages)
        if variant == "multigate":
            results["connections"] = _mean_connections(records[variant], languages)
        _print_row(multigate.VARIANT_TITLES[variant], results["table3"][variant], languages)

    if ablation != "none":
        print(f"\n=== Table 4: auxiliary-loss ablation ({ablation}) ===", flush=True)
        with_aux, without_aux = {}, {}
        if ablation == "single":
            for language in languages:
                aux = [
                    train_setting(f"single_{language}_aux", "single", [language], r)
                    for r in range(preset["repeats"])
                ]
                plain = [
                    train_setting(
                        f"single_{language}_noaux",
                        "single",
                        [language],
                        r,
                        contrastive_weights={language: 0.0},
                    )
                    for r in range(preset["repeats"])
                ]
                with_aux[language] = _aggregate(aux, [language])[language]
                without_aux[language] = _aggregate(plain, [language])[language]
        else:
            aux = records.get("multigate") or [
                train_setting("multigate", "multigate", languages, r)
                for r in range(preset["repeats"])
            ]
            plain = [
                train_setting(
                    "multigate_noaux",
                    "multigate",
                    languages,
                    r,
                    contrastive_weights={language: 0.0 for language in languages},
                )
                for r in range(preset["repeats"])
            ]
            with_aux = _aggregate(aux, languages)
            without_aux = _aggregate(plain, languages)
        results["table4"] = {"protocol": ablation, "with_aux": with_aux, "without_aux": without_aux}
        _print_row("with aux loss", with_aux, languages)
        _print_row("w/o aux loss", without_aux, languages)

    results.update(
        units="fraction",
        expert_names=next(
            (r[0]["expert_names"] for r in records.values() if r), list(internal_experts)
        ),
        configuration=state.config,
        elapsed_seconds=round(time.time() - started, 1),
    )
    _write_reports(state.out_dir, results, languages)

    export_variant = "multigate" if "multigate" in records else (variants[0] if variants else None)
    if outputs.export_dir is not None and export_variant is not None:
        if embeddings:
            print(
                "\nNot exported: the model takes utterance-level embeddings besides the log-mel "
                "features, which a waveform-in SavedModel cannot compute."
            )
        else:
            import keras

            best = max(records[export_variant], key=lambda r: r["best_validation_mean_ua"] or 0)
            model = keras.saving.load_model(str(pathlib.Path(best["fold_dir"]) / "best.keras"))
            path = cli.export_for_serving(
                model,
                outputs.export_dir,
                f"multilingual_{export_variant}",
                frontend=frontend,
                label_names=model.label_names,
                metadata={
                    "app": "train_multilingual_gating",
                    "variant": export_variant,
                    "languages": languages,
                    "fold": pathlib.Path(best["fold_dir"]).name,
                    "preset": args.preset,
                    "data": data_description,
                },
            )
            results["export"] = str(path)
            print(f"\nExported the {export_variant} model ({best['fold_dir']}) to {path}")

    reports.write_json_atomic(state.out_dir / "results.json", results)
    print(f"\nResults written to {state.out_dir} in {time.time() - started:.0f} s.")
    return 0


def _score_languages(
    captured,
    variant,
    setting_languages,
    test,
    language_of,
    language_labels,
    union_labels,
    class_names,
    union,
):
    """UA/WA per language on the test part, mean gate weights per language."""
    import numpy as np

    from ser_keras.evaluation.metrics import summarize
    from ser_keras.models import multigate

    details = captured["details"]
    record = {
        "languages": {},
        "gates": {},
        "connections": captured["connections"],
        "expert_names": captured["expert_names"],
    }
    test_languages = language_of[test]
    for language in setting_languages:
        rows = test_languages == language
        if variant == "base":
            task = multigate.SHARED_TASK
            y_true, names = union_labels[test][rows], list(union)
        else:
            task = multigate.task_name(language)
            y_true, names = language_labels[language][test][rows], class_names[language]
        probabilities = np.asarray(details["probabilities"][task])[rows]
        summary = summarize(y_true, probabilities, names)
        record["languages"][language] = {
            "ua": summary["ua"],
            "wa": summary["wa"],
            "macro_f1": summary["macro_f1"],
            "num_test": summary["num_samples"],
            "confusion": summary["confusion"],
            "class_names": names,
        }
        gates = details.get("gates") or {}
        if task in gates:
            record["gates"][language] = np.asarray(gates[task])[rows].mean(axis=0).tolist()
    return record


def _aggregate(records, languages):
    """Mean and spread over repeats of UA and WA per language."""
    from ser_keras.evaluation.metrics import mean_and_spread

    table = {}
    for language in languages:
        uas = [r["languages"][language]["ua"] for r in records]
        was = [r["languages"][language]["wa"] for r in records]
        ua, ua_std = mean_and_spread(uas)
        wa, wa_std = mean_and_spread(was)
        table[language] = {
            "ua": ua,
            "wa": wa,
            "ua_std": ua_std,
            "wa_std": wa_std,
            "repeats": [{"ua": u, "wa": w} for u, w in zip(uas, was, strict=True)],
        }
    return table


def _mean_gates(records, languages):
    import numpy as np

    gates = {}
    for language in languages:
        values = [r["gates"][language] for r in records if language in r.get("gates", {})]
        if values:
            names = records[0]["expert_names"]
            gates[language] = dict(zip(names, np.mean(values, axis=0).tolist(), strict=True))
    return gates


def _mean_connections(records, languages):
    import numpy as np

    return {
        language: np.mean([r["connections"][language] for r in records], axis=0).tolist()
        for language in languages
        if all(language in r.get("connections", {}) for r in records)
    }


def _cell(entry):
    if entry is None:
        return "n/a"
    return f"{entry['ua']:.4f}/{entry['wa']:.4f}"


def _print_row(title, row, languages):
    print(
        f"  {title}: " + "  ".join(f"{lang} {_cell(row.get(lang))}" for lang in languages),
        flush=True,
    )


def _write_reports(out_dir, results, languages):
    """results.md (Tables 3-4, gate weights, NAS connections) and the Figure 4 plot."""
    from ser_keras.evaluation import reports
    from ser_keras.models.multigate import VARIANT_TITLES

    config = results["configuration"]
    sections = [
        "# Multilingual SER with multi-gating and NAS (layout of Wang et al., Tables 3-4)",
        "",
        f"Data: {config['data']}; preset {config['preset']}, {config['repeats']} repeat(s), "
        f"split {config['split']}. Cells: UA/WA on the test part, mean over repeats.",
        "",
        "| language | corpora | utterances | classes |",
        "|---|---|---|---|",
    ]
    for language, entry in results["languages"].items():
        sections.append(
            f"| {language} | {', '.join(entry['corpora'])} | {entry['num_utterances']} | "
            f"{', '.join(entry['class_names'])} |"
        )
    if results["table3"]:
        rows = [
            [VARIANT_TITLES[variant]] + [_cell(table.get(lang)) for lang in languages]
            for variant, table in results["table3"].items()
        ]
        sections += [
            "",
            "## Table 3: multi-domain training methods (UA/WA)",
            "",
            reports.markdown_table(["Method"] + languages, rows),
        ]
    if results["table4"]:
        table4 = results["table4"]
        rows = [
            ["with aux loss"] + [_cell(table4["with_aux"].get(lang)) for lang in languages],
            ["w/o aux loss"] + [_cell(table4["without_aux"].get(lang)) for lang in languages],
        ]
        protocol = (
            "single-language models"
            if table4["protocol"] == "single"
            else "the multi-gating model trained on all languages"
        )
        sections += [
            "",
            f"## Table 4: auxiliary-loss ablation ({protocol}; UA/WA)",
            "",
            reports.markdown_table([""] + languages, rows),
        ]
    experts = results["expert_names"]
    gate_rows = []
    for variant, table in results["gate_weights"].items():
        for language, weights in table.items():
            gate_rows.append(
                [VARIANT_TITLES[variant], language]
                + [f"{weights.get(e, float('nan')):.3f}" for e in experts]
            )
    if gate_rows:
        sections += [
            "",
            "## Figure 4(b): mean softmax gate weight per expert (test utterances)",
            "",
            reports.markdown_table(["Method", "language"] + list(experts), gate_rows),
        ]
        multigate_gates = results["gate_weights"].get("multigate") or next(
            iter(v for v in results["gate_weights"].values() if v), {}
        )
        if multigate_gates:
            reports.plot_settings_comparison(
                {lang: dict(weights) for lang, weights in multigate_gates.items()},
                out_dir / "gate_weights.png",
                metrics=list(experts),
                title="Figure 4(b): mean gate weight per language and expert (%)",
            )
    for language, matrix in results["connections"].items():
        rows = [
            [f"u_{i + 1} ({experts[i]})"] + [f"{v:.3f}" for v in row]
            for i, row in enumerate(matrix)
        ]
        sections += [
            "",
            f"## NAS connections of {language} (deterministic hard-concrete gates "
            "xi_ij; rows u_i, columns v_j)",
            "",
            reports.markdown_table(
                [""] + [f"v_{j + 1} ({e})" for j, e in enumerate(experts)], rows
            ),
        ]
    reference_languages = [lang for lang in ("en", "de", "fr")]
    sections += [
        "",
        "## Published figures, for orientation (IEMOCAP en, EMO-DB de, CaFE fr; "
        "other corpora and experts than ours)",
        "",
    ]
    rows = [
        [VARIANT_TITLES[v]]
        + [f"{a:.4f}/{b:.4f}" for a, b in (PAPER_TABLE3[v][lang] for lang in reference_languages)]
        for v in PAPER_TABLE3
    ]
    rows += [
        [name]
        + [f"{a:.4f}/{b:.4f}" for a, b in (PAPER_TABLE4[key][lang] for lang in reference_languages)]
        for key, name in (
            ("with_aux", "Table 4 with aux loss"),
            ("without_aux", "Table 4 w/o aux loss"),
        )
    ]
    sections.append(reports.markdown_table(["Method"] + reference_languages, rows))
    text = "\n".join(sections) + "\n"
    reports.write_text_atomic(out_dir / "results.md", text)


if __name__ == "__main__":
    sys.exit(main())
