"""Multi-task semi-supervised adversarial autoencoder (AAE) for SER.

Trains and evaluates the model of Latif et al. (2020) and its baselines on a
labelled emotional corpus, with optional additional speech (no emotion
labels) for the auxiliary speaker and gender tasks and the unsupervised
phases:

* `stl`: the AAE, single task (emotion); additional speech feeds the
  reconstruction and regularisation phases ("Proposed (Single Task)");
* `mtl`: the AAE, multi-task (emotion + speaker + gender), the paper's model;
* `ae`: the semi-supervised autoencoder without discriminator, multi-task;
* `cnn`: the supervised CNN (encoder + emotion classifier, labelled data only;
  see "Training budget of the CNN" below);
* `gender`, `speaker`: the AAE with one auxiliary task (Table 5's rows).

Segments of the log-mel spectrogram are trained on; utterances are scored by
averaging their segments' posteriors. Model selection (best epoch, learning
rate halving) looks at validation data from the training speakers only. The
speaker task is evaluated as verification: d-vectors of the speaker head's
last hidden layer, enrolment with `--enrolment` utterances per speaker, EER
over the test fold's utterances plus held-out speakers of the additional
corpora (never trained on), as the paper does with LibriSpeech's test set.

Training budget of the CNN: the settings with additional speech train on the
fold's labelled plus additional segments, the CNN on the labelled ones only.
With one pass over its data per epoch the CNN would make far fewer optimizer
updates per epoch (on EMO-DB with the additional corpora at batch 32: 26
against 117), and the shared schedule (`--epochs`, the halving patience,
counted in epochs) would stop it after a fraction of the others' updates. By
default (`--cnn-epoch matched`) an epoch of the CNN therefore cycles the
fold's labelled training segments up to the number of training segments of
the settings with additional speech in the same fold (whole copies, then a
random subset, fixed per fold, for the rest; reshuffled every epoch), so that
every setting makes the same number of updates per epoch and in all.
`--cnn-epoch labelled` keeps one pass over the labelled segments per epoch.
Each fold's `updates_per_epoch` and `train_segments_per_epoch` are printed and
written to results.json; the rule is `configuration.cnn_epoch`.

With no arguments it generates (once, cached) a synthetic EMO-DB-shaped
corpus and synthetic unlabelled English speech with eSpeak NG, and runs the
four default settings in a reduced configuration.

    python -m apps.train_aae_mtl
    python -m apps.train_aae_mtl --labelled emodb:~/emodb \\
        --additional ravdess:~/ravdess turev:~/turev urdu:~/urdu folder:bn:~/bangla \\
        --speaker-pattern '^[A-Za-z]+' --preset paper

Outputs under `--out`: `results.json` ({"settings": {name: {"wa", "ua",
"folds", ...}}, "eer": ...}, percent), `results.md` (Tables 3 and 5 of the
paper in layout, per-fold scores, EER, confusion matrices), per setting
`phase_losses_<setting>.png` (each training phase's losses per epoch) and
`confusion_<setting>.png`, and one folder per setting and fold (checkpoints,
history). The emotion path (waveform -> utterance probabilities, with the
gender head when trained) is exported to `<export-dir>/aae_mtl/<version>/`.

Reference:
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020
    (arXiv:1907.06078).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import pathlib
import sys
import time

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# name: (AAEMultiTaskModel variant, tasks, trains on the additional speech,
#        row title in the layout of Table 3, row of Table 5 or None)
SETTINGS = {
    "stl": ("aae_stl", ("emotion",), True, "Proposed (single task)", None),
    "mtl": (
        "aae_mtl",
        ("emotion", "speaker", "gender"),
        True,
        "Semi-supervised AAE (proposed, multi-task)",
        "Both",
    ),
    "ae": (
        "ae_mtl",
        ("emotion", "speaker", "gender"),
        True,
        "Semi-supervised AE (multi-task)",
        None,
    ),
    # The supervised CNN has no unsupervised phase and no auxiliary head:
    # speech without emotion labels would contribute nothing to it.
    "cnn": ("cnn_stl", ("emotion",), False, "CNN (single task)", None),
    "gender": ("aae_mtl", ("emotion", "gender"), True, "AAE, gender auxiliary task", "Gender"),
    "speaker": (
        "aae_mtl",
        ("emotion", "speaker"),
        True,
        "AAE, speaker auxiliary task",
        "Speaker",
    ),
}
DEFAULT_SETTINGS = "stl,mtl,ae,cnn"
PROTOCOLS = ("loso", "kfold10")
GENDERS = ("female", "male")
EXPORT_NAME = "aae_mtl"

# Label map of each labelled corpus kind unless --label-map is given.
DEFAULT_LABEL_MAPS = {
    "emodb": "emodb7",
    "savee": "savee7",
    "emovo": "savee7",
    "iemocap": "four_class",
    "urdu": "four_class",
    "ravdess": "ravdess8",
    "turev": "turev4",
}

# Run configurations. "paper" holds the paper's numbers (Section 4.3):
# 256-frame x 128-band segments, the latif2020 architecture, batch 32,
# SGD(1e-4) for every phase, restore-best-and-halve after 5 epochs without
# validation improvement until the learning rate falls below 1e-5, 20
# enrolment utterances per speaker, 40 held-out verification speakers
# (LibriSpeech's test set). Not in the paper, ours: the cap of 300 epochs and
# 10 pre-training epochs. "quick" is a REDUCED configuration that makes the
# default run finish in minutes on a 2-core CPU: 128-frame x 32-band segments,
# a narrower network, Adam(1e-3) (SGD at 1e-4 learns next to nothing in a
# few epochs), the first 2 folds. "tiny" is smoke-test size (the cpu_small
# architecture) for tests.
PRESETS = {
    "quick": {
        "model_preset": "latif2020",
        "architecture": {
            "num_frames": 128,
            "num_mels": 32,
            "encoder_filters": (8, 16, 8),
            "pool_sizes": ((2, 2), (2, 2), (2, 1)),
            "head_filters": 8,
            "head_units": 32,
        },
        "frontend": {"num_mels": 32},
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-3}},
        "epochs": 8,
        "pretrain_epochs": 2,
        "batch_size": 32,
        "halving_patience": 3,
        "min_learning_rate": 1e-5,
        "folds": 2,
        "num_enrolment": 10,
        "verification_speakers": 2,
        "synthetic_per_emotion": 3,
        "synthetic_additional_speakers": 6,
        "synthetic_additional_per_speaker": 24,
    },
    "paper": {
        "model_preset": "latif2020",
        "architecture": {},
        "frontend": {},
        "optimizer": {"class_name": "SGD", "config": {"learning_rate": 1e-4}},
        "epochs": 300,
        "pretrain_epochs": 10,
        "batch_size": 32,
        "halving_patience": 5,
        "min_learning_rate": 1e-5,
        "folds": None,
        "num_enrolment": 20,
        "verification_speakers": 40,
        "synthetic_per_emotion": 8,
        "synthetic_additional_speakers": 12,
        "synthetic_additional_per_speaker": 40,
    },
    "tiny": {
        "model_preset": "cpu_small",
        "architecture": {},
        "frontend": {"num_mels": 16},
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": 1e-3}},
        "epochs": 2,
        "pretrain_epochs": 1,
        "batch_size": 32,
        "halving_patience": 3,
        "min_learning_rate": 1e-5,
        "folds": 1,
        "num_enrolment": 5,
        "verification_speakers": 2,
        "synthetic_per_emotion": 2,
        "synthetic_additional_speakers": 4,
        "synthetic_additional_per_speaker": 8,
    },
}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "train_aae_mtl",
        "Train and evaluate the multi-task semi-supervised adversarial autoencoder "
        "(Latif et al. 2020) and its baselines on segments of log-mel spectrograms, "
        "scoring utterances by averaged segment posteriors. Without --labelled, "
        "synthetic eSpeak NG corpora are generated and cached.",
    )
    parser.add_argument(
        "--labelled",
        metavar="KIND:DIR",
        help="Emotional corpus that is trained on and evaluated, e.g. emodb:~/emodb. "
        "Default: a synthetic EMO-DB-shaped corpus.",
    )
    parser.add_argument(
        "--label-map",
        help="Emotion classes of the labelled corpus (a ser_keras label map); default "
        f"by corpus kind: {', '.join(f'{k}={v}' for k, v in DEFAULT_LABEL_MAPS.items())}.",
    )
    parser.add_argument(
        "--additional",
        metavar="KIND:DIR",
        nargs="+",
        action="extend",
        default=[],
        help="Additional speech without emotion labels (any emotion labels are ignored) for "
        "the speaker and gender tasks, pre-training and the unsupervised phases; "
        "folder:LANG:DIR for a folder of unlabelled speech. Default with no --labelled: "
        "synthetic English speech.",
    )
    parser.add_argument(
        "--speaker-pattern",
        help="Regular expression giving the speaker from the file name in folder:LANG:DIR "
        "corpora (e.g. '^[A-Za-z]+' for the Bangla files MI004.wav); default: the folder name.",
    )
    parser.add_argument(
        "--additional-per-speaker",
        type=int,
        help="Train on at most N utterances of each additional speaker (random, by --seed); "
        "the held-out verification speakers keep all theirs.",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="loso",
        help="loso: leave-one-speaker-out (validation: a share of the training speakers' "
        "utterances); kfold10: the paper's 10 folds each holding every speaker, one fold "
        "for validation, eight for training (speaker-dependent).",
    )
    parser.add_argument(
        "--settings",
        default=DEFAULT_SETTINGS,
        help=f"Comma-separated settings to run, from {', '.join(SETTINGS)}.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="quick: reduced model and epochs for a CPU; paper: the paper's sizes and "
        "schedule; tiny: smoke-test size.",
    )
    parser.add_argument(
        "--generator-loss",
        choices=("minimax", "non_saturating"),
        default="minimax",
        help="Generator loss of the regularisation phase: minimax minimises log(1 - D(E(x))) "
        "as the paper's Eq. 5; non_saturating minimises -log D(E(x)).",
    )
    parser.add_argument(
        "--cnn-epoch",
        choices=("matched", "labelled"),
        default="matched",
        help="Training budget of the cnn setting, which trains on the labelled segments only: "
        "matched cycles them (whole copies, then a random subset fixed per fold) up to the "
        "number of training segments (labelled + additional) of the settings with additional "
        "speech in the same fold, so each epoch has as many optimizer updates as theirs and "
        "--epochs and the halving patience mean the same number of updates for every "
        "setting; labelled makes one pass over the labelled segments per epoch (fewer "
        "updates). Without --additional both are the same.",
    )
    parser.add_argument("--epochs", type=int, help="Override the preset's maximum epochs.")
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        help="Epochs of speaker + gender pre-training on the additional speech before "
        "emotional training (settings with auxiliary heads; 0 = none). Default: the preset's.",
    )
    parser.add_argument("--folds", type=int, help="Run only the first N folds.")
    parser.add_argument("--batch-size", type=int, help="Override the preset's batch size.")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.15,
        help="loso: share of the training speakers' utterances (stratified by emotion) held "
        "out for model selection. The test speaker is never used.",
    )
    parser.add_argument(
        "--enrolment",
        type=int,
        help="Enrolment utterances per speaker for verification (paper: 20; default: the "
        "preset's).",
    )
    parser.add_argument(
        "--verification-speakers",
        type=int,
        help="Speakers of the additional corpora held out of all training, for speaker "
        "verification (default: the preset's).",
    )
    cli.add_common_arguments(
        parser,
        default_out="runs/train_aae_mtl",
        export_help="Where the emotion path of the best model is exported (TF Serving layout).",
        synthetic_help="Utterances per emotion and speaker of the synthetic EMO-DB-shaped "
        "corpus (default: the preset's).",
    )
    return parser


# ----------------------------------------------------------------------------- data


def _resolve_corpora(args, cache_dir, preset):
    """Returns (labelled spec, additional specs, description of the data)."""
    if args.labelled is None:
        if args.additional:
            raise ValueError("--additional was given without --labelled; give both, or neither.")
        root = cli.synthetic_root(cache_dir)
        emodb = cli.synthetic_corpus_spec(
            root, "emodb", seed=args.seed, per_emotion=preset["synthetic_per_emotion"]
        )
        # Through its manifest, which records the voices' genders.
        extra = cli.synthetic_corpus_spec(
            root,
            "folder",
            seed=args.seed,
            language="en",
            num_speakers=preset["synthetic_additional_speakers"],
            per_speaker=preset["synthetic_additional_per_speaker"],
            via_manifest=True,
        )
        return (
            emodb,
            [extra],
            "synthetic (eSpeak NG) EMO-DB-shaped corpus + synthetic unlabelled English speech",
        )
    (labelled,) = cli.corpus_specs([args.labelled], "--labelled")
    if labelled.kind == "folder":
        raise ValueError(
            f"--labelled needs a corpus with emotion labels; {args.labelled!r} is a folder of "
            "unlabelled speech (give it with --additional)."
        )
    additional = cli.corpus_specs(args.additional, "--additional")
    description = f"{labelled.kind} at {labelled.directory}"
    if additional:
        description += " + additional " + ", ".join(
            f"{spec.kind} at {spec.directory}" for spec in additional
        )
    return labelled, additional, description


def _load_listing(spec, speaker_pattern):
    from ser_keras.corpora import load_corpus

    if spec.kind == "folder":
        options = {"language": spec.language, "corpus": spec.directory.name or "folder"}
        if speaker_pattern:
            options["speaker_pattern"] = speaker_pattern
        return load_corpus("folder", spec.directory, **options)
    return spec.load()


def _report_skipped(name, listing, cached):
    return cli.report_skipped(name, list(listing.skipped) + list(cached.skipped), listing.warnings)


def _cap_per_speaker(utterances, waveforms, limit, seed):
    """Keeps at most `limit` utterances per speaker (random, reproducible)."""
    import numpy as np

    if limit is None:
        return utterances, waveforms
    rng = np.random.default_rng(seed)
    by_speaker = {}
    for index, utterance in enumerate(utterances):
        by_speaker.setdefault(utterance.speaker_id, []).append(index)
    keep = sorted(
        index
        for indices in by_speaker.values()
        for index in (
            indices if len(indices) <= limit else rng.choice(indices, limit, replace=False)
        )
    )
    return [utterances[i] for i in keep], [waveforms[i] for i in keep]


def _cycled_rows(rows, size, seed):
    """`rows` cycled to `size` entries: whole copies, then a random subset of the rest.

    The rows of a setting trained on the labelled segments only (cnn), so
    that one epoch has as many samples, hence optimizer updates, as the
    settings trained on labelled + additional segments (`--cnn-epoch
    matched`). The subset is drawn without replacement by `seed`; a `size`
    not above `len(rows)` returns `rows` unchanged.
    """
    import numpy as np

    rows = np.asarray(rows)
    if size <= len(rows) or len(rows) == 0:
        return rows
    copies, rest = divmod(int(size), len(rows))
    extra = np.sort(np.random.default_rng(seed).choice(rows, rest, replace=False))
    return np.concatenate([np.tile(rows, copies), extra])


def _choose_verification_speakers(utterances, count, num_enrolment, seed):
    """Speakers of the additional corpora held out for verification, and a note."""
    import numpy as np

    counts = {}
    for utterance in utterances:
        counts[utterance.speaker_id] = counts.get(utterance.speaker_id, 0) + 1
    eligible = sorted(s for s, n in counts.items() if n > num_enrolment)
    if count == 0 or not utterances:
        return [], None
    chosen = (
        sorted(
            np.random.default_rng([seed, 7]).choice(
                eligible, min(count, len(eligible)), replace=False
            )
        )
        if eligible
        else []
    )
    note = None
    if len(chosen) < count:
        note = (
            f"{len(chosen)} of the {count} verification speakers asked for: only "
            f"{len(eligible)} additional speaker(s) have more than {num_enrolment} utterances "
            "(enrolment plus at least one test utterance)"
        )
    return [str(s) for s in chosen], note


def _kfold10(utterances, labels, seed):
    """The paper's 10-fold scheme: folds each holding every speaker (speaker-dependent).

    Section 5: "We created the ten folds based on speaker ID so that each fold
    has all speakers ... one fold was used as validation set for parameter
    selection, eight folds were used for training, and the remaining fold was
    used for testing." Utterances are dealt into 10 folds stratified by
    speaker; fold i is tested, fold i + 1 (cyclically) validates.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from ser_keras.data.splits import Fold

    labelled = np.flatnonzero(np.asarray(labels) >= 0)
    speakers = np.array([utterances[i].speaker_id for i in labelled])
    values, counts = np.unique(speakers, return_counts=True)
    if len(labelled) < 10 or counts.min() < 10:
        found = dict(zip(values.tolist(), counts.tolist(), strict=True))
        raise ValueError(
            "--protocol kfold10 deals every speaker's utterances into 10 folds and needs at "
            f"least 10 labelled utterances per speaker; labelled utterances per speaker: {found}."
        )
    splitter = StratifiedKFold(n_splits=10, shuffle=True, random_state=seed)
    parts = [labelled[test] for _, test in splitter.split(np.zeros(len(labelled)), speakers)]
    folds = []
    for number in range(10):
        test = np.sort(parts[number])
        validation = np.sort(parts[(number + 1) % 10])
        train = np.sort(
            np.concatenate([parts[i] for i in range(10) if i not in (number, (number + 1) % 10)])
        )
        folds.append(
            Fold(
                name=f"fold{number + 1:02d}",
                train=train.astype(np.int64),
                validation=validation.astype(np.int64),
                test=test.astype(np.int64),
                test_speakers=tuple(sorted(set(speakers.tolist()))),
            )
        )
    return folds


# ----------------------------------------------------------------------------- model


def _build_model(setting, num_classes, preset, seed, generator_loss="minimax"):
    """A compiled AAEMultiTaskModel for `setting` (tasks subset of its variant's)."""
    import keras

    from ser_keras.models import aae_mtl
    from ser_keras.training.aae import VARIANTS, AAEMultiTaskModel

    variant, tasks, _, _, _ = SETTINGS[setting]
    spec = VARIANTS[variant]
    networks = aae_mtl.build_aae_networks(
        {task: num_classes[task] for task in tasks},
        reconstruction=spec["reconstruction"],
        adversarial=spec["adversarial"],
        **aae_mtl.get_preset(preset["model_preset"], **preset["architecture"]),
    )
    model = AAEMultiTaskModel(
        encoder=networks["encoder"],
        classifiers=networks["classifiers"],
        decoder=networks["decoder"],
        discriminator=networks["discriminator"],
        alpha=spec["alpha"],
        beta=spec["beta"],
        generator_loss=generator_loss,
        seed=seed,
        name=setting,
    )
    # A copy: `keras.optimizers.get` rewrites the dict it is given.
    model.compile(optimizer=keras.optimizers.get(copy.deepcopy(preset["optimizer"])))
    return model


def _read_history(path):
    history = {}
    if not pathlib.Path(path).exists():
        return history
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                try:
                    history.setdefault(key, []).append(float(value))
                except (TypeError, ValueError):
                    continue
    history.pop("epoch", None)
    return history


PHASE_PANELS = (
    ("reconstruction", ("reconstruction_loss",)),
    ("regularisation", ("discriminator_loss", "generator_loss")),
    ("classification", ("emotion_loss", "speaker_loss", "gender_loss")),
)


def _plot_phase_losses(histories, pretrain_histories, path, title):
    """One panel per training phase (and pre-training): its losses per epoch, every fold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from ser_keras.evaluation import reports

    panels = []
    if any(pretrain_histories.values()):
        panels.append(("pre-training (additional speech)", ("speaker_loss", "gender_loss"), True))
    for name, keys in PHASE_PANELS:
        if any(key in history for history in histories.values() for key in keys):
            panels.append((name, keys, False))
    if not panels:
        return None
    figure = Figure(figsize=(4.5 * len(panels), 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for number, (name, keys, is_pretraining) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), number + 1)
        source = pretrain_histories if is_pretraining else histories
        for colour, key in enumerate(keys):
            for validation in (False, True):
                column = f"val_{key}" if validation else key
                labelled = False
                for history in source.values():
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
    figure.suptitle(title)
    try:
        with reports.atomic_path(path) as temporary:
            figure.savefig(temporary, format="png")
    finally:
        figure.clear()
    return path


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    # Created first: MultiWorkerMirroredStrategy must exist before other TF ops.
    strategy = cli.strategy_from_args(args)

    import numpy as np

    from ser_keras.corpora.labels import get_label_map
    from ser_keras.data.cache import WaveformCache
    from ser_keras.data.pipeline import compute_features
    from ser_keras.data.splits import leave_one_speaker_out
    from ser_keras.evaluation import reports
    from ser_keras.evaluation.metrics import mean_and_spread
    from ser_keras.features.framing import segment_features
    from ser_keras.features.logmel import LogMel
    from ser_keras.training.callbacks import RestoreBestAndHalveLearningRate
    from ser_keras.training.runner import RunState, Split, fit_and_evaluate

    settings = cli.parse_name_list(args.settings, tuple(SETTINGS), "--settings")
    preset = dict(PRESETS[args.preset])
    cli.check_at_least(
        [
            ("--epochs", args.epochs, 1),
            ("--pretrain-epochs", args.pretrain_epochs, 0),
            ("--folds", args.folds, 1),
            ("--batch-size", args.batch_size, 1),
            ("--enrolment", args.enrolment, 1),
            ("--verification-speakers", args.verification_speakers, 0),
            ("--additional-per-speaker", args.additional_per_speaker, 1),
            ("--synthetic-per-emotion", args.synthetic_per_emotion, 1),
            ("--seed", args.seed, 0),
        ]
    )
    cli.check_fraction("--validation-fraction", args.validation_fraction, 0.0, 0.5)
    if args.synthetic_per_emotion is not None:
        preset["synthetic_per_emotion"] = args.synthetic_per_emotion
    epochs = args.epochs or preset["epochs"]
    pretrain_epochs = (
        preset["pretrain_epochs"] if args.pretrain_epochs is None else args.pretrain_epochs
    )
    batch_size = args.batch_size or preset["batch_size"]
    cli.check_global_batch(batch_size, strategy)
    num_enrolment = args.enrolment or preset["num_enrolment"]
    num_verification = (
        preset["verification_speakers"]
        if args.verification_speakers is None
        else args.verification_speakers
    )
    max_folds = args.folds or preset["folds"]
    cache_dir = cli.cache_dir_of(args)
    started = time.time()

    labelled_spec, additional_specs, data_description = _resolve_corpora(args, cache_dir, preset)
    label_map_name = args.label_map or DEFAULT_LABEL_MAPS.get(labelled_spec.kind)
    if label_map_name is None:
        raise ValueError(
            f"No default label map for a {labelled_spec.kind!r} corpus; pass --label-map."
        )
    emotion_map = get_label_map(label_map_name)
    class_names = list(emotion_map.classes)
    architecture = dict(preset["architecture"])
    from ser_keras.models.aae_mtl import get_preset

    model_config = get_preset(preset["model_preset"], **architecture)
    segment_length = int(model_config["num_frames"])
    frontend = LogMel.from_preset("latif", **preset["frontend"])
    if frontend.num_mels != model_config["num_mels"]:
        raise ValueError(
            f"Preset {args.preset!r}: the front-end gives {frontend.num_mels} mel bands but "
            f"the model takes {model_config['num_mels']}."
        )
    print(f"Data: {data_description}; emotion classes ({label_map_name}): {class_names}")
    print(
        f"Configuration: preset {args.preset!r} (model {preset['model_preset']!r}"
        + (f" with {architecture}" if architecture else "")
        + f", {segment_length}-frame x {frontend.num_mels}-band segments, "
        f"{preset['optimizer']['class_name']}({preset['optimizer']['config']['learning_rate']}), "
        f"at most {epochs} epochs, {pretrain_epochs} pre-training epochs, batch {batch_size}, "
        f"protocol {args.protocol})" + cli.reduced_note(args.preset != "paper"),
        flush=True,
    )
    if "cnn" in settings:
        print(
            f"CNN budget (--cnn-epoch {args.cnn_epoch}): "
            + (
                "each epoch cycles the labelled training segments up to the training segments "
                "of the settings with additional speech in the same fold (as many optimizer "
                "updates per epoch)"
                if args.cnn_epoch == "matched"
                else "one pass over the labelled training segments per epoch"
            ),
            flush=True,
        )

    # === Waveforms ===
    waveform_cache = WaveformCache(cache_dir / "waveforms")
    skipped_report = {}
    listing = labelled_spec.load()
    cached = waveform_cache.load(listing.utterances, progress=not args.quiet)
    skipped_report[labelled_spec.kind] = _report_skipped(labelled_spec.kind, listing, cached)
    emotion = emotion_map.encode(cached.utterances)
    unmapped = emotion_map.unmapped_counts(cached.utterances)
    if unmapped:
        print(f"  {labelled_spec.kind}: labels outside {label_map_name}, left out: {unmapped}")
    keep = emotion >= 0
    labelled_utterances = [u for u, k in zip(cached.utterances, keep, strict=True) if k]
    labelled_waveforms = [w for w, k in zip(cached.waveforms, keep, strict=True) if k]
    labelled_emotion = emotion[keep].astype(np.int32)
    if not labelled_utterances:
        raise ValueError(
            f"No utterance of {labelled_spec.directory} has one of the {label_map_name} "
            f"emotions {class_names}."
        )

    additional_utterances, additional_waveforms = [], []
    for spec in additional_specs:
        extra_listing = _load_listing(spec, args.speaker_pattern)
        extra = waveform_cache.load(extra_listing.utterances, progress=not args.quiet)
        name = f"{spec.kind}:{spec.directory}"
        skipped_report[name] = _report_skipped(name, extra_listing, extra)
        additional_utterances += extra.utterances
        additional_waveforms += extra.waveforms
        print(
            f"  additional {name}: {len(extra.utterances)} utterances of "
            f"{len({u.speaker_id for u in extra.utterances})} speakers"
        )
    # Verification speakers keep all their utterances (enrolment needs many);
    # --additional-per-speaker caps the training speakers only.
    verification_speakers, verification_note = _choose_verification_speakers(
        additional_utterances, num_verification, num_enrolment, args.seed
    )
    if verification_note:
        print(f"  note: {verification_note}")
    if verification_speakers:
        print(f"  held out for speaker verification only: {verification_speakers}")
    if args.additional_per_speaker is not None:
        held_out = [u.speaker_id in verification_speakers for u in additional_utterances]
        capped = _cap_per_speaker(
            [u for u, h in zip(additional_utterances, held_out, strict=True) if not h],
            [w for w, h in zip(additional_waveforms, held_out, strict=True) if not h],
            args.additional_per_speaker,
            args.seed,
        )
        additional_utterances = capped[0] + [
            u for u, h in zip(additional_utterances, held_out, strict=True) if h
        ]
        additional_waveforms = capped[1] + [
            w for w, h in zip(additional_waveforms, held_out, strict=True) if h
        ]
        print(
            f"  additional training speech capped at {args.additional_per_speaker} utterances "
            f"per speaker: {len(capped[0])} utterances"
        )

    # === Features and segments ===
    num_labelled = len(labelled_utterances)
    all_utterances = labelled_utterances + additional_utterances
    print(f"Computing log-mel features for {len(all_utterances)} utterances ...", flush=True)
    features = compute_features(frontend, labelled_waveforms + additional_waveforms)
    segments, segment_utterance = segment_features(
        features, segment_length=segment_length, pad_value=frontend.pad_value
    )
    del features
    print(
        f"  {len(segments)} segments of {segment_length} frames "
        f"({len(segments) / len(all_utterances):.2f} per utterance)"
    )
    num_all = len(all_utterances)
    emotion_all = np.full(num_all, -1, dtype=np.int32)
    emotion_all[:num_labelled] = labelled_emotion
    gender_all = np.array(
        [GENDERS.index(u.gender) if u.gender in GENDERS else -1 for u in all_utterances],
        dtype=np.int32,
    )
    speaker_ids = np.array([u.speaker_id for u in all_utterances])
    verification_index = np.flatnonzero(np.isin(speaker_ids, verification_speakers))
    additional_train_index = np.setdiff1d(np.arange(num_labelled, num_all), verification_index)

    # === Folds ===
    if args.protocol == "loso":
        folds = leave_one_speaker_out(
            labelled_utterances,
            validation="fraction",
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            labels=labelled_emotion,
        )
    else:
        folds = _kfold10(labelled_utterances, labelled_emotion, args.seed)
    if max_folds is not None:
        folds = folds[:max_folds]

    # On a multi-worker cluster only the chief writes to --out and exports.
    outputs = cli.worker_outputs(
        args.out, strategy, export_dir=None if args.no_export else args.export_dir
    )
    state = RunState(
        outputs.out_dir,
        {
            "app": "train_aae_mtl",
            "data": data_description,
            "label_map": label_map_name,
            "preset": args.preset,
            "model_preset": preset["model_preset"],
            "architecture": architecture,
            "optimizer": preset["optimizer"],
            "generator_loss": args.generator_loss,
            "cnn_epoch": args.cnn_epoch,
            "protocol": args.protocol,
            "epochs": epochs,
            "pretrain_epochs": pretrain_epochs,
            "batch_size": batch_size,
            "seed": args.seed,
            "validation_fraction": args.validation_fraction,
            "num_labelled": num_labelled,
            "num_additional": len(additional_utterances),
            "additional_per_speaker": args.additional_per_speaker,
            "verification_speakers": verification_speakers,
            "num_enrolment": num_enrolment,
        },
        resume=args.resume,
    )
    reports.write_json_atomic(state.out_dir / "skipped.json", skipped_report)

    def segment_rows(utterance_indices):
        return np.flatnonzero(np.isin(segment_utterance, utterance_indices))

    results = {"settings": {}}
    pooled_confusions = {}
    best_for_export = {}
    for setting in settings:
        variant, tasks, uses_additional, title, _ = SETTINGS[setting]
        print(f"\n=== {setting}: {title} (variant {variant}, tasks {list(tasks)}) ===", flush=True)
        fold_results = []
        histories, pretrain_histories = {}, {}
        for fold_number, fold in enumerate(folds, start=1):
            labelled_train = np.concatenate([fold.train, fold.validation])
            train_index = np.asarray(fold.train)
            if uses_additional:
                train_index = np.concatenate([train_index, additional_train_index])
            speakers = sorted(
                set(speaker_ids[labelled_train].tolist())
                | (set(speaker_ids[additional_train_index].tolist()) if uses_additional else set())
            )
            speaker_index = {speaker: number for number, speaker in enumerate(speakers)}
            speaker_all = np.array(
                [speaker_index.get(s, -1) for s in speaker_ids.tolist()], dtype=np.int32
            )
            task_labels = {"emotion": emotion_all, "speaker": speaker_all, "gender": gender_all}
            num_classes = {
                "emotion": len(class_names),
                "speaker": max(2, len(speakers)),
                "gender": len(GENDERS),
            }

            def split(
                utterance_indices,
                tasks=tasks,
                task_labels=task_labels,
                size=None,
                seed=(args.seed, fold_number),
            ):
                rows = segment_rows(utterance_indices)
                if size is not None:
                    rows = _cycled_rows(rows, size, list(seed))
                owners = segment_utterance[rows]
                return Split(segments[rows], {task: task_labels[task][owners] for task in tasks})

            # Training segments per epoch. A setting without the additional
            # speech (cnn) is matched by default to those with it: as many
            # segments per epoch, hence as many optimizer updates.
            labelled_segments = len(segment_rows(fold.train))
            train_segments = len(segment_rows(train_index))
            epoch_size = train_segments
            matched_size = None
            if not uses_additional and args.cnn_epoch == "matched":
                matched_size = len(
                    segment_rows(np.concatenate([fold.train, additional_train_index]))
                )
                epoch_size = max(epoch_size, matched_size)
            updates_per_epoch = -(-epoch_size // batch_size)

            test_rows = segment_rows(fold.test)
            test = Split(
                {"segments": segments[test_rows], "utterance_ids": segment_utterance[test_rows]},
                {"emotion": emotion_all[np.sort(fold.test)]},
            )
            fold_dir = state.fold_dir(setting, fold.name)
            auxiliary = [task for task in tasks if task != "emotion"]
            pretrain = (
                auxiliary
                if pretrain_epochs > 0 and uses_additional and len(additional_train_index)
                else []
            )

            def build_model(
                setting=setting,
                num_classes=num_classes,
                fold_dir=fold_dir,
                pretrain=pretrain,
                speaker_all=speaker_all,
            ):
                model = _build_model(setting, num_classes, preset, args.seed, args.generator_loss)
                if not pretrain:
                    return model
                weights = fold_dir / "pretrained.weights.h5"
                if weights.exists():
                    model.load_weights(str(weights))
                    return model
                from ser_keras.data.pipeline import make_dataset

                # Section 4.3: speaker and gender classification on the
                # additional speech first; those weights start the emotional
                # training.
                rows = segment_rows(additional_train_index)
                owners = segment_utterance[rows]
                labels = {"speaker": speaker_all[owners], "gender": gender_all[owners]}
                data = make_dataset(
                    segments[rows],
                    {task: labels[task] for task in pretrain},
                    batch_size=batch_size,
                    shuffle=True,
                    seed=args.seed,
                )
                history = model.pretrain_auxiliary(
                    data, tasks=tuple(pretrain), epochs=pretrain_epochs, shuffle=False, verbose=0
                )
                reports.write_json_atomic(fold_dir / "pretrain_history.json", history.history)
                model.save_weights(str(weights))
                return model

            def predict_fn(model, inputs):
                _, posteriors = model.predict_utterances(
                    inputs["segments"], inputs["utterance_ids"], batch_size=batch_size
                )
                return posteriors["emotion"]

            done = (fold_dir / "result.json").exists()
            print(
                f"[{setting}] fold {fold_number}/{len(folds)} ({fold.name}): "
                + (
                    "already finished, reusing its result"
                    if done
                    else f"training on {train_segments} segments of "
                    f"{len(train_index)} utterances"
                    + (
                        f", cycled to {epoch_size} segments per epoch "
                        f"({epoch_size / labelled_segments:.2f} passes, as many as the "
                        "settings with additional speech: --cnn-epoch matched)"
                        if epoch_size > labelled_segments and not uses_additional
                        else ""
                    )
                    + f", {updates_per_epoch} updates per epoch"
                    + (f" after {pretrain_epochs} pre-training epochs" if pretrain else "")
                ),
                flush=True,
            )
            result = fit_and_evaluate(
                build_model,
                split(train_index, size=matched_size),
                split(fold.validation),
                test,
                fold_dir=fold_dir,
                class_names=class_names,
                epochs=epochs,
                batch_size=batch_size,
                seed=args.seed,
                monitor="val_emotion_ua",
                verbose=0 if args.quiet else 2,
                predict_fn=predict_fn,
                extra_callbacks=[
                    RestoreBestAndHalveLearningRate(
                        monitor="val_emotion_ua",
                        patience=preset["halving_patience"],
                        min_learning_rate=preset["min_learning_rate"],
                    )
                ],
                strategy=strategy,
            )
            verification = None
            if "speaker" in tasks:
                verification = _fold_verification(
                    fold_dir,
                    segments,
                    segment_utterance,
                    np.concatenate([fold.test, verification_index]),
                    speaker_ids,
                    num_enrolment,
                    args.seed,
                    batch_size,
                )
            histories[fold.name] = _read_history(fold_dir / "history.csv")
            pretrain_path = fold_dir / "pretrain_history.json"
            if pretrain_path.exists():
                pretrain_histories[fold.name] = json.loads(pretrain_path.read_text())
            entry = {
                "fold": fold.name,
                "test_speakers": list(fold.test_speakers),
                "wa": 100 * result["wa"],
                "ua": 100 * result["ua"],
                "macro_f1": 100 * result["macro_f1"],
                "best_validation_ua": (
                    100 * result["best_validation"]
                    if result["best_validation"] is not None
                    else None
                ),
                "best_epoch": result["best_epoch"],
                "epochs_run": result["epochs_run"],
                "labelled_train_segments": int(labelled_segments),
                "train_segments_per_epoch": int(epoch_size),
                "updates_per_epoch": int(updates_per_epoch),
                "num_test_utterances": int(len(fold.test)),
                "num_test_segments": int(len(test_rows)),
                "confusion": result["confusion"],
            }
            if verification is not None:
                entry["eer"] = (
                    100 * verification["eer"] if verification.get("eer") is not None else None
                )
                entry["verification"] = verification
            fold_results.append(entry)
            print(
                f"[{setting}] fold {fold.name}: WA {entry['wa']:.2f}  UA {entry['ua']:.2f}"
                + (
                    f"  EER {entry['eer']:.2f}"
                    if entry.get("eer") is not None
                    else (f"  EER n/a ({verification.get('reason')})" if verification else "")
                )
                + f"  (best validation UA {entry['best_validation_ua'] or 0:.2f} at epoch "
                f"{entry['best_epoch']})",
                flush=True,
            )
            validation_ua = entry["best_validation_ua"] or 0.0
            if setting not in best_for_export or validation_ua > best_for_export[setting][0]:
                best_for_export[setting] = (validation_ua, fold_dir)

        wa_mean, wa_std = mean_and_spread(r["wa"] for r in fold_results)
        ua_mean, ua_std = mean_and_spread(r["ua"] for r in fold_results)
        confusion = np.sum([np.asarray(r["confusion"]) for r in fold_results], axis=0)
        pooled_confusions[setting] = confusion
        summary = {
            "title": title,
            "variant": variant,
            "tasks": list(tasks),
            "wa": wa_mean,
            "ua": ua_mean,
            "wa_std": wa_std,
            "ua_std": ua_std,
            "folds": fold_results,
            "confusion": confusion.tolist(),
        }
        if "speaker" in tasks:
            eers = [r["eer"] for r in fold_results if r.get("eer") is not None]
            summary["eer"], summary["eer_std"] = mean_and_spread(eers) if eers else (None, None)
            summary["eer_folds"] = len(eers)
        results["settings"][setting] = summary
        reports.plot_confusion_matrix(
            confusion,
            class_names,
            state.out_dir / f"confusion_{setting}.png",
            title=f"{title} (pooled over {len(fold_results)} folds)",
        )
        _plot_phase_losses(
            histories,
            pretrain_histories,
            state.out_dir / f"phase_losses_{setting}.png",
            f"{title}: losses per phase ({len(fold_results)} folds; dashed = validation)",
        )

    eer_setting = next(
        (
            name
            for name in ("mtl", "ae", "speaker")
            if results["settings"].get(name, {}).get("eer") is not None
        ),
        None,
    )
    results.update(
        eer=results["settings"][eer_setting]["eer"] if eer_setting else None,
        eer_setting=eer_setting,
        units="percent",
        class_names=class_names,
        protocol=args.protocol,
        configuration=state.config,
        verification_note=verification_note,
        elapsed_seconds=round(time.time() - started, 1),
    )
    _write_tables(state.out_dir, results, pooled_confusions, class_names, labelled_spec.kind)
    reports.plot_settings_comparison(
        {name: results["settings"][name] for name in results["settings"]},
        state.out_dir / "settings_comparison.png",
        units="percent",
    )

    if outputs.export_dir is not None and best_for_export:
        export_setting = "mtl" if "mtl" in best_for_export else settings[0]
        _, fold_dir = best_for_export[export_setting]
        path = _export(
            fold_dir,
            outputs.export_dir,
            frontend,
            class_names,
            {
                "app": "train_aae_mtl",
                "setting": export_setting,
                "fold": fold_dir.name,
                "preset": args.preset,
                "protocol": args.protocol,
                "data": data_description,
                "segment_length": segment_length,
            },
        )
        results["export"] = str(path)
        print(
            f"\nExported the emotion path of the best {export_setting} model "
            f"({fold_dir.name}) to {path}"
        )

    reports.write_json_atomic(state.out_dir / "results.json", results)
    print(f"\nResults written to {state.out_dir} in {time.time() - started:.0f} s.")
    return 0


def _fold_verification(
    fold_dir,
    segments,
    segment_utterance,
    utterance_indices,
    speaker_ids,
    num_enrolment,
    seed,
    batch_size,
):
    """EER of one fold's best model; cached in `fold_dir/verification.json`.

    The trial list holds the fold's test utterances and those of the held-out
    verification speakers, none of them trained on (under LOSO). A trial list
    that cannot be built (e.g. a single enrolled speaker) gives `eer: None`
    with the reason instead of stopping the run.
    """
    import keras
    import numpy as np

    from ser_keras.evaluation import reports
    from ser_keras.evaluation.verification import (
        build_d_vector_extractor,
        extract_d_vectors,
        verification_eer,
    )

    path = fold_dir / "verification.json"
    if path.exists():
        return json.loads(path.read_text())
    model = keras.models.load_model(str(fold_dir / "best.keras"))
    extractor = build_d_vector_extractor(model.encoder, model.classifiers["speaker"])
    rows = np.flatnonzero(np.isin(segment_utterance, utterance_indices))
    ids, vectors = extract_d_vectors(
        extractor, segments[rows], segment_utterance[rows], batch_size=batch_size
    )
    speakers = speaker_ids[ids]
    try:
        result = verification_eer(vectors, speakers, num_enrolment=num_enrolment, seed=seed)
    except ValueError as error:
        result = {"eer": None, "reason": str(error)}
    result["num_utterances"] = int(len(ids))
    result["num_speakers"] = int(len(set(speakers.tolist())))
    reports.write_json_atomic(path, result)
    return json.loads(path.read_text())


def _export(fold_dir, export_dir, frontend, class_names, metadata):
    """Exports waveform -> utterance probabilities (emotion, and gender when trained)."""
    import keras

    from ser_keras.export.segment_model import SegmentAveragingModel, segment_classifier

    model = keras.models.load_model(str(fold_dir / "best.keras"))
    # The speaker head classifies the training speakers only: not served.
    tasks = tuple(task for task in ("emotion", "gender") if task in model.classifiers)
    served = SegmentAveragingModel(
        segment_classifier(model, tasks), pad_value=frontend.pad_value, name=EXPORT_NAME
    )
    label_names = {"emotion": class_names}
    if "gender" in tasks:
        label_names["gender"] = list(GENDERS)
    return cli.export_for_serving(
        served,
        export_dir,
        EXPORT_NAME,
        frontend=frontend,
        label_names=label_names,
        metadata=metadata,
    )


def _score(entry, key):
    value, spread = entry.get(key), entry.get(f"{key}_std")
    if value is None:
        return "n/a"
    return f"{value:.2f} ± {spread:.2f}"


def _write_tables(out_dir, results, pooled_confusions, class_names, corpus):
    """Writes results.md: Tables 3 and 5 of the paper in layout, EER, folds, confusions."""
    from ser_keras.evaluation import reports

    settings = results["settings"]
    protocol_title = {
        "loso": "leave-one-speaker-out",
        "kfold10": "10-fold cross validation",
    }[results["protocol"]]
    table3_order = ["cnn", "ae", "mtl", "stl", "gender", "speaker"]
    table3 = reports.markdown_table(
        ["Model", f"{corpus} UA (%)", f"{corpus} WA (%)"],
        [
            [settings[name]["title"], _score(settings[name], "ua"), _score(settings[name], "wa")]
            for name in table3_order
            if name in settings
        ],
    )
    table5_rows = [
        [SETTINGS[name][4], _score(settings[name], "wa"), _score(settings[name], "ua")]
        for name in ("gender", "speaker", "mtl")
        if name in settings
    ]
    eer_rows = [
        [
            name,
            _score(entry, "eer"),
            f"{entry.get('eer_folds', 0)} of {len(entry['folds'])}",
        ]
        for name, entry in settings.items()
        if "speaker" in entry["tasks"]
    ]
    fold_rows = [
        [
            name,
            fold["fold"],
            f"{fold['wa']:.2f}",
            f"{fold['ua']:.2f}",
            "n/a" if fold.get("eer") is None else f"{fold['eer']:.2f}",
            fold["best_epoch"],
            fold["epochs_run"],
        ]
        for name, entry in settings.items()
        for fold in entry["folds"]
    ]
    config = results["configuration"]
    sections = [
        "# Semi-supervised multi-task AAE (Latif et al. 2020)",
        "",
        f"Data: {config['data']}; classes: {', '.join(class_names)}; preset {config['preset']}; "
        f"protocol {protocol_title}. Mean ± standard deviation over folds, percent.",
        "",
        f"## UA by model (layout of Table 3, {protocol_title})",
        "",
        table3,
        "",
        "## Impact of auxiliary tasks (layout of Table 5, primary task: categorical emotion)",
        "",
        reports.markdown_table(["Secondary tasks", "WA", "UA"], table5_rows)
        if table5_rows
        else "No setting with auxiliary tasks was run (settings gender, speaker, mtl).",
        "",
        "## Speaker verification EER (%) from d-vectors",
        "",
        (
            reports.markdown_table(["setting", "EER", "folds with an EER"], eer_rows)
            + f"\n\nEnrolment: {config['num_enrolment']} utterances per speaker; held-out "
            f"verification speakers: {len(config['verification_speakers'])}."
        )
        if eer_rows
        else "No setting with a speaker head was run.",
        "",
        "## Per fold",
        "",
        reports.markdown_table(
            ["setting", "fold", "WA", "UA", "EER", "best epoch", "epochs"], fold_rows
        ),
    ]
    for name, confusion in pooled_confusions.items():
        sections += [
            "",
            f"## Confusion matrix, {settings[name]['title']} (rows: true, columns: predicted, "
            "% of row)",
            "",
            reports.confusion_markdown(confusion, class_names),
        ]
    reports.write_text_atomic(out_dir / "results.md", "\n".join(sections) + "\n")
    print("\n" + table3)
    if table5_rows:
        print("\n" + reports.markdown_table(["Secondary tasks", "WA", "UA"], table5_rows))


if __name__ == "__main__":
    sys.exit(main())
