"""KerasTuner search over the hyperparameters of a model family.

Searches the space of `ser_keras.tuning.hypermodels` (loss weights from the
papers' ranges, dropout, widths, learning rate; defaults = the papers'
values) for one of

- `attention_cnn_blstm`: Fu et al.'s attention CNN-BLSTM with its speaker head
  (paper 004; `--single-task` drops the head);
- `resnet_lstm_mtl`: Latif et al.'s ResNet-LSTM with language and domain
  heads (paper 000; binary valence by default);
- `aae_mtl`: Latif et al.'s multi-task semi-supervised adversarial
  autoencoder (paper 002; emotion, speaker and gender heads);
- `kim_mtl`: Kim et al.'s frame-level LSTM-MTL on the 32 frame features, with
  gender and naturalness heads (paper 001; the four classes neutral,
  happiness, sadness, anger by default; trained on 2 s chunks, validated on
  frame-level UA as apps.train_gender_naturalness);
- `multigate`: Wang et al.'s multilingual multi-gating model with its NAS
  module and contrastive loss (paper 003; a head per language, each with its
  corpora's own label set),

maximising the validation emotion UA (`val_emotion_ua`; for `multigate` the
mean over the languages' heads). The first corpus's first speaker (or
`--test-speaker`) is held out as the test speaker and never reaches the
tuner. Validation (`--objective`):

- `validation_speakers` (default): `--validation-speakers` speakers of the
  first corpus (for `multigate`, of every language), held out of training,
  score every trial;
- `speaker_folds`: the training speakers (of the first corpus; for
  `multigate`, of every corpus) are dealt into `--cv-folds` groups and each
  trial scores the mean over folds of the best validation UA, one model per
  fold (slower, less noisy).

The search state lives in `<directory>/<project-name>/` (KerasTuner's
trials, oracle and checkpoints, plus `run_config.json`); an interrupted
search continues with `--resume` (finished trials are kept, the interrupted
one runs again). At the end the best hyperparameters are printed and written
to `best_hyperparameters.json` (with the model arguments they build at the
chosen preset), and every trial to `trials.md` and `trials.json`. A trial
that fails makes the program exit with status 1 and name it (KerasTuner
alone would still report a "best" set).

With no `--data` it generates (once, cached) small synthetic corpora with
eSpeak NG: SAVEE-shaped English for the attention CNN-BLSTM, the same plus
unlabelled French speech for the ResNet-LSTM, EMO-DB-shaped German for the
AAE, EMO-DB-shaped German plus SAVEE-shaped English for Kim et al.'s model
(all acted speech: no naturalness head) and SAVEE-shaped English plus
EMO-DB-shaped German for the multi-gating model. `--preset quick` (default)
tunes the CPU presets of the models (widths scaled down; the hyperparameters
keep the papers' units; Kim et al.'s LSTM with 64 units, as
apps.train_gender_naturalness --preset quick) for a few epochs.

    python -m apps.tune --model attention_cnn_blstm --tuner random --max-trials 3
    python -m apps.tune --model resnet_lstm_mtl --tuner bayesian --max-trials 30 \\
        --data iemocap:~/IEMOCAP folder:de:~/voxforge/de --preset paper
    python -m apps.tune --model aae_mtl --tuner hyperband --max-trials 40 \\
        --data emodb:~/emodb --objective speaker_folds --resume
    python -m apps.tune --model kim_mtl --max-trials 20 --preset paper \\
        --data iemocap:~/IEMOCAP emodb:~/emodb ravdess:~/RAVDESS
    python -m apps.tune --model multigate --tuner bayesian --max-trials 20 \\
        --data iemocap:~/IEMOCAP emodb:~/emodb --preset paper

Reference:
    Fu et al., EUSIPCO 2020 (paper 004); Latif et al., cross-language SER
    with unlabelled data (paper 000), Section 3.2; Latif et al., IEEE Trans.
    Affective Computing 2020 (paper 002), Section 5.1; Kim et al., Interspeech
    2017 (paper 001), Sections 4.2 and 5.1; Wang et al., multilingual SER with
    multi-gating and NAS (paper 003), Section 5.1.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = ("attention_cnn_blstm", "resnet_lstm_mtl", "aae_mtl", "kim_mtl", "multigate")
OBJECTIVES = ("validation_speakers", "speaker_folds")

# Per model family: front-end preset, paper batch size, architecture preset,
# epochs and early-stopping patience of each run preset. "paper" holds the
# papers' numbers (004: batch 64, 300 epochs; 002: batch 32, restore-best-and-
# halve after 5 epochs, SGD; 000 gives no schedule: the 100 epochs and
# patience 20 of apps.train_crosslang_valence, our choice; 001: batch 128 and
# early stopping, whose 100 epochs and patience 10 are kim_mtl.TRAINING_PRESETS'
# (ours); 003: 20 epochs, the best kept, its batch size 64 ours). "quick" is a
# REDUCED configuration for a CPU: the models' CPU presets (Kim et al.'s
# model has none: its LSTM with 64 units, as apps.train_gender_naturalness
# --preset quick) and a few epochs. Kim et al.'s model trains on chunks of
# `chunk_frames` frames (2 s, apps.train_gender_naturalness --chunk-frames).
FAMILIES = {
    "attention_cnn_blstm": {
        "frontend": "fu2021",
        "batch_size": 64,
        "quick": {"model_preset": "fu2021_cpu", "epochs": 10, "patience": None},
        "paper": {"model_preset": "fu2021", "epochs": 300, "patience": 30},
    },
    "resnet_lstm_mtl": {
        "frontend": "latif_6s",
        "batch_size": 32,
        "quick": {"model_preset": "latif_crosslang_cpu", "epochs": 6, "patience": None},
        "paper": {"model_preset": "latif_crosslang", "epochs": 100, "patience": 20},
    },
    "aae_mtl": {
        "frontend": "latif",
        "batch_size": 32,
        "quick": {"model_preset": "cpu_small", "epochs": 6, "patience": None},
        "paper": {"model_preset": "latif2020", "epochs": 300, "patience": 5},
    },
    "kim_mtl": {
        "frontend": "kim2017",
        "batch_size": 128,
        "chunk_frames": 200,
        "quick": {"model_preset": {"units": 64}, "epochs": 8, "patience": None},
        "paper": {"model_preset": "kim2017_lstm", "epochs": 100, "patience": 10},
    },
    "multigate": {
        "frontend": "fu2021",
        "batch_size": 64,
        "quick": {"model_preset": "wang_cpu", "epochs": 12, "patience": None},
        "paper": {"model_preset": "wang", "epochs": 20, "patience": None},
    },
}

# Utterances per speaker and emotion of the synthetic corpora.
SYNTHETIC_PER_EMOTION = {"quick": 3, "paper": 15}

# Emotion label map of each corpus kind (the first --data corpus decides; for
# multigate each corpus its own), unless --label-map is given; the ResNet-LSTM
# uses binary valence (paper 000), Kim et al.'s model the four classes
# (paper 001).
DEFAULT_LABEL_MAPS = {
    "savee": "savee7",
    "emodb": "emodb7",
    "emovo": "savee7",
    "iemocap": "four_class",
    "urdu": "four_class",
    "ravdess": "ravdess8",
    "turev": "turev4",
}
GENDERS = ("female", "male")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "tune",
        "KerasTuner search over a model family's hyperparameters, maximising the "
        "validation emotion UA on speakers held out of training. Without --data, "
        "synthetic eSpeak NG corpora are generated and cached.",
    )
    parser.add_argument("--model", choices=MODELS, required=True, help="Model family to tune.")
    parser.add_argument(
        "--tuner", choices=("random", "bayesian", "hyperband"), default="random",
        help="Search algorithm (KerasTuner RandomSearch, BayesianOptimization, Hyperband).",
    )
    parser.add_argument(
        "--max-trials", type=int, default=3,
        help="Number of trials. Hyperband's schedule follows --epochs and "
        "--hyperband-factor; --max-trials caps it.",
    )
    parser.add_argument(
        "--data", nargs="+", action="extend", metavar="KIND:DIR",
        help="Corpora, e.g. savee:~/SAVEE emodb:~/emodb folder:fr:~/voxforge/fr. The first "
        "one's speakers are tested and validated; the others (and utterances without an "
        "emotion label) only train. Default: synthetic corpora.",
    )
    parser.add_argument(
        "--label-map",
        help="Emotion label map (ser_keras.corpora.labels). Default: binary_valence for "
        "resnet_lstm_mtl, four_class for kim_mtl, each corpus's own labels for multigate "
        "(a label set per language), else the first corpus's own labels (savee7, emodb7, ...).",
    )
    parser.add_argument(
        "--objective", choices=OBJECTIVES, default="validation_speakers",
        help="validation_speakers: UA on held-out training speakers; speaker_folds: mean UA "
        "over --cv-folds folds of the training speakers.",
    )
    parser.add_argument(
        "--cv-folds", type=int, default=3, help="Folds of the speaker_folds objective."
    )
    parser.add_argument(
        "--validation-speakers", type=int, default=1,
        help="Speakers held out for the validation_speakers objective.",
    )
    parser.add_argument(
        "--test-speaker",
        help="Speaker (of the first corpus) kept out of the search, as named by the corpus "
        "(e.g. DC). Default: the first speaker.",
    )
    parser.add_argument(
        "--preset", choices=("quick", "paper"), default="quick",
        help="quick: the models' CPU presets and a few epochs (REDUCED); paper: the papers' "
        "sizes and schedules.",
    )
    parser.add_argument("--epochs", type=int, help="Epochs per trial (default: the preset's).")
    parser.add_argument(
        "--batch-size", type=int,
        help="Batch size (default: the paper's); the global batch under --strategy.",
    )
    parser.add_argument(
        "--patience", type=int,
        help="Early stopping on val_emotion_ua after this many epochs without improvement "
        "(aae_mtl: restore the best weights and halve the learning rate, as paper 002). "
        "Default: the preset's.",
    )
    parser.add_argument(
        "--single-task", action="store_true",
        help="attention_cnn_blstm without its speaker head.",
    )
    parser.add_argument(
        "--hyperband-factor", type=int, default=3, help="Hyperband's reduction factor."
    )
    parser.add_argument(
        "--directory", default="runs/tune", help="Folder of the search projects."
    )
    parser.add_argument(
        "--project-name", help="Project folder inside --directory (default: the model name)."
    )
    # --seed, --resume, --cache-dir, --synthetic-per-emotion, --quiet, --strategy.
    cli.add_common_arguments(
        parser,
        default_out=None,
        resume_help="Continue the search in the project folder (KerasTuner overwrite=False).",
        synthetic_help="Synthetic corpora: utterances per speaker and emotion (default: the "
        "preset's).",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


# ---------------------------------------------------------------------------
# Arguments and data


def _check_arguments(args):
    cli.check_at_least([
        ("--max-trials", args.max_trials, 1),
        ("--cv-folds", args.cv_folds, 2),
        ("--validation-speakers", args.validation_speakers, 1),
        ("--epochs", args.epochs, 1),
        ("--batch-size", args.batch_size, 1),
        ("--patience", args.patience, 1),
        ("--hyperband-factor", args.hyperband_factor, 2),
        ("--seed", args.seed, 0),
        ("--synthetic-per-emotion", args.synthetic_per_emotion, 1),
    ])
    if args.single_task and args.model != "attention_cnn_blstm":
        raise ValueError(
            f"--single-task applies to attention_cnn_blstm only. Received: --model {args.model}"
        )


def _corpus_specs(args, cache_dir):
    """(specs, description): the --data corpora, or the synthetic defaults."""
    if args.data:
        specs = cli.corpus_specs(args.data, "--data")
        return specs, cli.describe_specs(specs)

    per_emotion = args.synthetic_per_emotion or SYNTHETIC_PER_EMOTION[args.preset]
    root = cli.synthetic_root(cache_dir)
    emodb = cli.synthetic_corpus_spec(root, "emodb", seed=args.seed, per_emotion=per_emotion)
    if args.model == "aae_mtl":
        # EMO-DB's layout has ten speakers of both genders (speaker and gender heads).
        return [emodb], "synthetic (eSpeak NG) EMO-DB-shaped corpus"
    savee = cli.synthetic_corpus_spec(root, "savee", seed=args.seed, per_emotion=per_emotion)
    if args.model == "kim_mtl":
        # Aggregated corpora (paper 001), speakers of both genders tested and validated.
        return [emodb, savee], "synthetic (eSpeak NG) EMO-DB- and SAVEE-shaped corpora"
    if args.model == "multigate":
        # Two languages, each with its own label set (paper 003).
        return [savee, emodb], (
            "synthetic (eSpeak NG) SAVEE-shaped English + EMO-DB-shaped German corpora"
        )
    specs = [savee]
    description = "synthetic (eSpeak NG) SAVEE-shaped corpus"
    if args.model == "resnet_lstm_mtl":
        # Unlabelled speech in a second language: the language and domain heads.
        specs.append(
            cli.synthetic_corpus_spec(
                root, "folder", seed=args.seed, language="fr", per_speaker=2 * per_emotion
            )
        )
        description += " + unlabelled French speech"
    return specs, description


def _load(specs, cache_dir, quiet):
    """Loads every corpus through the waveform cache.

    Returns:
        `(utterances, waveforms, skipped, kinds)`: `kinds` holds the corpus
        kind of every utterance (its label map for multigate).
    """
    from ser_keras.data.cache import WaveformCache

    cache = WaveformCache(pathlib.Path(cache_dir) / "waveforms")
    utterances, waveforms, skipped, kinds = [], [], {}, []
    for spec in specs:
        listing = spec.load()
        cached = cache.load(listing.utterances, progress=not quiet)
        name = cli.describe_specs([spec])
        skipped[name] = cli.report_skipped(
            name, list(listing.skipped) + list(cached.skipped), listing.warnings
        )
        if not cached.utterances:
            raise ValueError(f"No usable audio in {spec.directory} ({spec.kind}).")
        print(
            f"  {name}: {len(cached.utterances)} utterances of "
            f"{len({u.speaker_id for u in cached.utterances})} speakers"
        )
        utterances += cached.utterances
        waveforms += cached.waveforms
        kinds += [spec.kind] * len(cached.utterances)
    return utterances, waveforms, skipped, kinds


def _class_index(values, rows):
    """Int labels of `values` (one per utterance) over the classes seen in `rows`; -1 elsewhere."""
    import numpy as np

    classes = sorted({values[i] for i in rows if values[i] is not None})
    lookup = {value: number for number, value in enumerate(classes)}
    return np.array([lookup.get(value, -1) for value in values], dtype=np.int32), classes


def _language_labels(args, utterances, kinds):
    """multigate: each utterance's label index in its language's label set, and the sets.

    A language's label set is the union of the label maps of its corpora (each
    corpus kind's `DEFAULT_LABEL_MAPS` entry, or `--label-map` for all), in
    order of appearance, as in apps.train_multilingual_gating.

    Returns:
        `(emotion, class_names)`: int32 `[N]` (-1 = no label) and dict
        language -> class names, languages in order of appearance.
    """
    import numpy as np

    from ser_keras.corpora.labels import get_label_map

    maps = {kind: get_label_map(_label_map_name(args, kind)) for kind in dict.fromkeys(kinds)}
    class_names = {}
    for utterance, kind in zip(utterances, kinds, strict=True):
        if not utterance.language:
            raise ValueError(
                f"The {kind} loader gives no language for {utterance.path}; multigate needs "
                "one per utterance (a corpus kind that sets it, or a manifest language column)."
            )
        names = class_names.setdefault(utterance.language, [])
        names += [name for name in maps[kind].classes if name not in names]
    emotion = np.full(len(utterances), -1, dtype=np.int32)
    for row, (utterance, kind) in enumerate(zip(utterances, kinds, strict=True)):
        index = maps[kind].index(utterance.label)
        if index >= 0:
            emotion[row] = class_names[utterance.language].index(maps[kind].classes[index])
    return emotion, class_names


def _label_map_name(args, kind):
    """The label map of a corpus kind: --label-map, the model's own, or the kind's default."""
    if args.label_map:
        return args.label_map
    if args.model == "resnet_lstm_mtl":
        return "binary_valence"
    if args.model == "kim_mtl":
        return "four_class"
    if kind not in DEFAULT_LABEL_MAPS:
        raise ValueError(f"No default label map for a {kind!r} corpus; pass --label-map.")
    return DEFAULT_LABEL_MAPS[kind]


def _validate_every_language(utterances, fold, emotion, count, seed):
    """multigate: the fold with `count` validation speakers of each language that has none.

    The validation speakers of a fold come from the first corpus; every other
    language's head would go unscored. Its speakers are moved out of the
    training side (never the test speakers, who are not in it).
    """
    import dataclasses

    import numpy as np

    rng = np.random.default_rng(seed)
    train = np.asarray(fold.train, dtype=np.int64)
    validated = {utterances[i].language for i in fold.validation}
    moved = np.zeros(len(utterances), dtype=bool)
    speakers = list(fold.validation_speakers)
    for language in dict.fromkeys(u.language for u in utterances):
        if language in validated:
            continue
        candidates = sorted(
            {utterances[i].speaker_id for i in train
             if utterances[i].language == language and emotion[i] >= 0}
        )
        if len(candidates) <= count:
            print(f"  language {language}: {len(candidates)} labelled training speaker(s), "
                  "none held out for validation (its head is not scored)")
            continue
        chosen = {str(s) for s in rng.permutation(candidates)[:count]}
        moved[[i for i in train if utterances[i].speaker_id in chosen]] = True
        speakers += sorted(chosen)
    return dataclasses.replace(
        fold,
        train=train[~moved[train]],
        validation=np.sort(np.concatenate([fold.validation, train[moved[train]]])).astype(
            np.int64
        ),
        validation_speakers=tuple(speakers),
    )


def _task_labels(args, utterances, emotion, training_rows, language_classes=None):
    """Labels per utterance of every task of the model, and the classes of each task."""
    import numpy as np

    if args.model == "multigate":
        from ser_keras.models.multigate import task_name

        languages = np.array([u.language for u in utterances])
        labels = {
            task_name(language): np.where(languages == language, emotion, -1).astype(np.int32)
            for language in language_classes
        }
        classes = {task_name(language): names for language, names in language_classes.items()}
        return labels, classes
    labels = {"emotion": emotion}
    classes = {}
    if args.model == "attention_cnn_blstm" and not args.single_task:
        labels["speaker"], classes["speaker"] = _class_index(
            [u.speaker_id for u in utterances], training_rows
        )
    elif args.model == "resnet_lstm_mtl":
        languages, names = _class_index([u.language for u in utterances], training_rows)
        if len(names) >= 2:
            labels["language"], classes["language"] = languages, names
        else:
            print(f"  one language in training ({names}): no language head")
        labelled = emotion[training_rows] >= 0
        if labelled.any() and not labelled.all():
            labels["domain"] = np.where(emotion >= 0, 0, 1).astype(np.int32)
            classes["domain"] = ["labelled", "unlabelled"]
        else:
            print("  no unlabelled speech in training: no domain head")
    elif args.model == "aae_mtl":
        speakers, names = _class_index([u.speaker_id for u in utterances], training_rows)
        if len(names) >= 2:
            labels["speaker"], classes["speaker"] = speakers, names
        genders = [u.gender if u.gender in GENDERS else None for u in utterances]
        gender_labels, names = _class_index(genders, training_rows)
        if len(names) >= 2:
            labels["gender"], classes["gender"] = gender_labels, names
        else:
            print(f"  genders in training: {names}: no gender head")
    elif args.model == "kim_mtl":
        from ser_keras.models.kim_mtl import AUXILIARY_CLASSES

        for task, names in AUXILIARY_CLASSES.items():
            values = [getattr(u, task) for u in utterances]
            encoded = np.array(
                [names.index(v) if v in names else -1 for v in values], dtype=np.int32
            )
            present = sorted({names[i] for i in encoded[training_rows] if i >= 0})
            if len(present) >= 2:
                labels[task], classes[task] = encoded, list(names)
            else:
                print(f"  {task} classes in training: {present}: no {task} head")
    return labels, classes


def _hypermodel(args, model_preset, num_emotions, classes, input_shape, language_classes=None):
    from ser_keras.tuning import hypermodels

    num_frames, num_mels = input_shape
    if args.model == "kim_mtl":
        return hypermodels.KimMTLHyperModel(
            num_emotions=num_emotions,
            auxiliary_tasks=tuple(classes),
            preset=model_preset,
            num_features=num_mels,
        )
    if args.model == "multigate":
        return hypermodels.MultiGatingHyperModel(
            language_classes,
            preset=model_preset,
            seed=args.seed,
            num_frames=num_frames,
            num_mels=num_mels,
        )
    if args.model == "attention_cnn_blstm":
        return hypermodels.AttentionCNNBLSTMHyperModel(
            num_emotions=num_emotions,
            num_speakers=len(classes.get("speaker", ())),
            preset=model_preset,
            num_frames=num_frames,
            num_mels=num_mels,
        )
    if args.model == "resnet_lstm_mtl":
        return hypermodels.ResNetLSTMHyperModel(
            num_emotions=num_emotions,
            num_languages=len(classes.get("language", ())),
            use_domain_head="domain" in classes,
            preset=model_preset,
            num_frames=num_frames,
            num_mels=num_mels,
        )
    num_classes = {"emotion": num_emotions}
    num_classes.update({task: len(names) for task, names in classes.items()})
    return hypermodels.AAEMultiTaskHyperModel(
        num_classes,
        variant="aae_mtl" if len(num_classes) > 1 else "aae_stl",
        preset=model_preset,
        seed=args.seed,
    )


# ---------------------------------------------------------------------------
# Run


def run(args) -> int:
    import keras
    import numpy as np

    from ser_keras.corpora.labels import get_label_map
    from ser_keras.data.pipeline import compute_features
    from ser_keras.data.splits import leave_one_speaker_out
    from ser_keras.evaluation import reports
    from ser_keras.features.logmel import LogMel
    from ser_keras.training.runner import RunState
    from ser_keras.tuning import search

    # MultiWorkerMirroredStrategy must exist before other TensorFlow operations
    # run; the tuner's `distribution_strategy` is None for "none".
    strategy = cli.strategy_from_args(args)
    _check_arguments(args)
    family = FAMILIES[args.model]
    settings = dict(family[args.preset])
    epochs = args.epochs or settings["epochs"]
    batch_size = args.batch_size or family["batch_size"]
    patience = args.patience if args.patience is not None else settings["patience"]
    cli.check_global_batch(batch_size, strategy)
    cache_dir = cli.cache_dir_of(args)
    # On a multi-worker cluster every worker runs the same trials; only the
    # chief's project folder holds the results, the others get their own.
    outputs = cli.worker_outputs(args.directory, strategy)
    directory, chief = outputs.out_dir, outputs.is_chief
    project_name = args.project_name or args.model
    project_dir = directory / project_name
    if project_dir.exists() and not args.resume:
        raise ValueError(
            f"{project_dir} already holds a search. Pass --resume to continue it, or choose "
            "another --directory or --project-name."
        )
    started = time.time()

    specs, data_description = _corpus_specs(args, cache_dir)
    if args.model == "multigate":
        # A label set per language: every corpus's label map (checked here, before loading).
        label_map = None
        label_map_name = args.label_map or "per corpus"
        for spec in specs:
            _label_map_name(args, spec.kind)
        print(f"Data: {data_description}; emotion classes per language ({label_map_name} "
              "label maps)")
    else:
        label_map = get_label_map(_label_map_name(args, specs[0].kind))
        label_map_name = label_map.name
        print(
            f"Data: {data_description}; emotion classes ({label_map.name}): "
            f"{list(label_map.classes)}"
        )
    print(
        f"Search: {args.tuner}, at most {args.max_trials} trials of {args.model} "
        f"(architecture preset {settings['model_preset']!r}), {epochs} epochs, batch "
        f"{batch_size}, objective {args.objective}"
        + (f", patience {patience}" if patience else "")
        + cli.reduced_note(args.preset == "quick"),
        flush=True,
    )

    utterances, waveforms, skipped, kinds = _load(specs, cache_dir, args.quiet)
    language_classes = None
    if label_map is None:
        emotion, language_classes = _language_labels(args, utterances, kinds)
        for language, names in language_classes.items():
            print(f"  language {language}: classes {names}")
    else:
        emotion = label_map.encode(utterances).astype(np.int32)
        unmapped = label_map.unmapped_counts(utterances)
        if unmapped:
            use = ("left out, as paper 001" if args.model == "kim_mtl"
                   else "no emotion label, auxiliary tasks only")
            print(f"  labels outside {label_map.name} ({use}): {unmapped}")
    primary_corpus = utterances[0].corpus

    # === The held-out test speaker and the tuning pool ===
    folds = leave_one_speaker_out(
        utterances,
        test_corpus=primary_corpus,
        validation="speaker" if args.objective == "validation_speakers" else "none",
        num_validation_speakers=args.validation_speakers,
        seed=args.seed,
        labels=emotion,
    )
    fold = folds[0]
    if args.test_speaker is not None:
        wanted = [f for f in folds if args.test_speaker in
                  {s.split(":", 1)[-1] for s in f.test_speakers} | set(f.test_speakers)]
        if not wanted:
            available = sorted(s for f in folds for s in f.test_speakers)
            raise ValueError(
                f"--test-speaker {args.test_speaker!r} is not a labelled speaker of "
                f"{primary_corpus}; available: {available}"
            )
        fold = wanted[0]
    if args.model == "multigate" and args.objective == "validation_speakers":
        fold = _validate_every_language(
            utterances, fold, emotion, args.validation_speakers, args.seed
        )
    pool = np.sort(np.concatenate([fold.train, fold.validation]))
    if args.objective == "validation_speakers":
        parts = [(fold.train, fold.validation)]
        print(f"Test speaker(s), never searched on: {list(fold.test_speakers)}; validation "
              f"speaker(s): {list(fold.validation_speakers)}")
    else:
        # multigate: every corpus's speakers validate (a head per language).
        cv = search.speaker_validation_folds(
            utterances, pool, args.cv_folds,
            test_corpus=None if args.model == "multigate" else primary_corpus, labels=emotion,
            seed=args.seed,
        )
        parts = [(f.train, f.validation) for f in cv]
        print(f"Test speaker(s), never searched on: {list(fold.test_speakers)}; validation "
              f"folds: {[list(f.validation_speakers) for f in cv]}")
    training_rows = np.unique(np.concatenate([train for train, _ in parts]))
    labels, classes = _task_labels(args, utterances, emotion, training_rows, language_classes)

    # Utterances that carry no label of any task teach nothing.
    useful = np.zeros(len(utterances), dtype=bool)
    for values in labels.values():
        useful |= values >= 0
    if args.model == "kim_mtl":
        # Only utterances of the emotion classes, as apps.train_gender_naturalness (paper 001).
        useful &= emotion >= 0
    parts = [(train[useful[train]], validation[emotion[validation] >= 0])
             for train, validation in parts]
    for number, (train, validation) in enumerate(parts):
        if train.size == 0 or validation.size == 0:
            raise ValueError(
                f"Validation part {number} has {train.size} training and {validation.size} "
                "validation utterances with labels; give more data or speakers."
            )

    # === Features ===
    model_preset = settings["model_preset"]
    if args.model == "aae_mtl":
        from ser_keras.features.framing import segment_features
        from ser_keras.models.aae_mtl import get_preset

        architecture = get_preset(model_preset)
        frontend = LogMel.from_preset("latif", num_mels=architecture["num_mels"])
        segment_length = int(architecture["num_frames"])
        description = f"{family['frontend']} log-mel features"
    elif args.model == "kim_mtl":
        from ser_keras.features.frame_features import FrameFeatures
        from ser_keras.features.framing import segment_features

        frontend = FrameFeatures.from_preset(family["frontend"])
        segment_length = int(family["chunk_frames"])
        description = f"{frontend.num_features} frame features"
    elif args.model == "multigate":
        from ser_keras.models.multigate import PRESETS as MULTIGATE_PRESETS

        architecture = dict(MULTIGATE_PRESETS["wang"])
        architecture.update(
            MULTIGATE_PRESETS[model_preset] if isinstance(model_preset, str) else model_preset
        )
        frontend = LogMel.from_preset(
            family["frontend"], num_frames=architecture["num_frames"],
            num_mels=architecture["num_mels"],
        )
        description = f"{family['frontend']} log-mel features"
    else:
        frontend = LogMel.from_preset(family["frontend"])
        description = f"{family['frontend']} log-mel features"
    needed = np.unique(np.concatenate([np.concatenate(part) for part in parts]))
    print(f"Computing {description} for {needed.size} utterances ...", flush=True)
    features = compute_features(frontend, [waveforms[i] for i in needed],
                                batch_size=16 if args.model == "kim_mtl" else 32,
                                progress=not args.quiet)
    waveforms = None
    if args.model in ("aae_mtl", "kim_mtl"):
        segments, owner = segment_features(
            features, segment_length=segment_length, pad_value=frontend.pad_value,
        )
        row_utterance = needed[owner]
        inputs = segments
        print(f"  {len(segments)} segments of {segment_length} frames")
    else:
        row_utterance = needed
        inputs = features
    row_of = {}
    for row, utterance in enumerate(row_utterance):
        row_of.setdefault(int(utterance), []).append(row)

    def rows(utterance_indices):
        return np.array(
            sorted(r for i in utterance_indices for r in row_of[int(i)]), dtype=np.int64
        )

    row_labels = {task: values[row_utterance] for task, values in labels.items()}
    hypermodel = _hypermodel(
        args, model_preset, None if label_map is None else label_map.num_classes, classes,
        inputs.shape[1:], language_classes,
    )

    # === Search ===
    state = RunState(
        project_dir,
        {
            "app": "tune",
            "model": args.model,
            "tuner": args.tuner,
            "objective": args.objective,
            "cv_folds": args.cv_folds if args.objective == "speaker_folds" else None,
            "validation_speakers": (
                args.validation_speakers if args.objective == "validation_speakers" else None
            ),
            "data": data_description,
            "label_map": label_map_name,
            "preset": args.preset,
            "model_preset": model_preset,
            "epochs": epochs,
            "batch_size": batch_size,
            "patience": patience,
            "single_task": args.single_task,
            "hyperband_factor": args.hyperband_factor if args.tuner == "hyperband" else None,
            "seed": args.seed,
            "test_speakers": list(fold.test_speakers),
            "num_utterances": len(utterances),
        },
        resume=args.resume,
    )
    reports.write_json_atomic(state.out_dir / "skipped.json", skipped)
    keras.utils.set_random_seed(args.seed)
    tuner = search.make_tuner(
        args.tuner,
        hypermodel,
        max_trials=args.max_trials,
        directory=directory,
        project_name=project_name,
        max_epochs=epochs,
        hyperband_factor=args.hyperband_factor,
        seed=args.seed,
        overwrite=False,
        distribution_strategy=strategy,
    )
    callbacks = []
    if patience:
        if args.model == "aae_mtl":
            from ser_keras.training.callbacks import RestoreBestAndHalveLearningRate

            callbacks.append(RestoreBestAndHalveLearningRate(patience=patience))
        else:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_emotion_ua", mode="max", patience=patience
                )
            )
    fit_arguments = dict(
        epochs=epochs, batch_size=batch_size, callbacks=callbacks,
        verbose=0 if args.quiet else 2,
    )
    if args.objective == "validation_speakers":
        (train, validation), = parts
        train_rows, validation_rows = rows(train), rows(validation)
        fit_arguments["validation_data"] = (
            inputs[validation_rows],
            hypermodel.mask_validation_labels(
                {t: v[validation_rows] for t, v in row_labels.items()}
            ),
        )
        x = inputs[train_rows]
        y = {task: values[train_rows] for task, values in row_labels.items()}
    else:
        pool_rows = rows(np.unique(np.concatenate([np.concatenate(part) for part in parts])))
        position = {row: number for number, row in enumerate(pool_rows)}
        fit_arguments["validation_folds"] = [
            (
                np.array([position[r] for r in rows(train)], dtype=np.int64),
                np.array([position[r] for r in rows(validation)], dtype=np.int64),
            )
            for train, validation in parts
        ]
        x = inputs[pool_rows]
        y = {task: values[pool_rows] for task, values in row_labels.items()}
    print(f"Tasks: {', '.join(row_labels)}; {len(x)} training samples"
          + (f" in {len(parts)} folds" if args.objective == "speaker_folds" else ""), flush=True)

    search_error = None
    try:
        tuner.search(x, y, **fit_arguments)
    except RuntimeError as error:  # KerasTuner gives up after consecutive failed trials
        search_error = error
    rows_table = search.trial_table(tuner)
    if chief:
        _write_trials(state.out_dir, rows_table)
    try:
        if search_error is not None:
            raise search.TrialFailureError(str(search_error))
        search.raise_for_failed_trials(tuner)
    except search.TrialFailureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    best = search.best_trial(tuner)
    best_values = {k: v for k, v in best.hyperparameters.values.items()
                   if not k.startswith("tuner/")}
    result = {
        "model": args.model,
        "objective": "val_emotion_ua" + (
            f" (mean over {len(parts)} speaker folds)" if args.objective == "speaker_folds" else ""
        ),
        "score": best.score,
        "trial_id": best.trial_id,
        "hyperparameters": best_values,
        "model_arguments": hypermodel.model_arguments(best.hyperparameters.copy()),
        "model_preset": model_preset,
        "test_speakers": list(fold.test_speakers),
        "num_trials": len(rows_table),
        "elapsed_seconds": round(time.time() - started, 1),
    }
    if chief:
        reports.write_json_atomic(state.out_dir / "best_hyperparameters.json", result)
    print(f"\nBest trial {best.trial_id}: val_emotion_ua {100 * best.score:.2f} %")
    for name, value in best_values.items():
        print(f"  {name} = {value}")
    print(f"\nResults in {state.out_dir} ({time.time() - started:.0f} s).")
    return 0


def _write_trials(out_dir, rows):
    """Prints and writes the trial table (Markdown and JSON)."""
    from ser_keras.evaluation import reports

    names = []
    for row in rows:
        for name in row["hyperparameters"]:
            if name not in names and name not in ("tuner/trial_id", "tuner/bracket", "tuner/round"):
                names.append(name)
    headers = ["trial", "status", "val_emotion_ua (%)", "best epoch"] + names
    table_rows = []
    for row in rows:
        score = None if row["score"] is None else 100 * row["score"]
        table_rows.append(
            [row["trial_id"], row["status"], score, row["best_step"]]
            + [_format(row["hyperparameters"].get(name)) for name in names]
        )
    table = reports.markdown_table(headers, table_rows)
    reports.write_text_atomic(out_dir / "trials.md", "# Trials\n\n" + table + "\n")
    reports.write_json_atomic(out_dir / "trials.json", rows)
    print("\n" + table)


def _format(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


if __name__ == "__main__":
    sys.exit(main())
