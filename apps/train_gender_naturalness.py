"""Emotion recognition with gender and naturalness as auxiliary tasks (Kim et al. 2017).

Parses the arguments into a `GenderNaturalnessConfig` and runs
`ser_keras.experiments.GenderNaturalness` (paper 001): DNN/LSTM frame-level
models (STL, Gender-MTL, Naturalness-MTL, ALL-MTL), high-level features and an
ELM, evaluated within-corpus leave-one-speaker-out (Table 2) and
leave-one-corpus-out (Table 3). Written to `--out`: `results.json`,
`results.md` (Tables 2-4 layout, Wilcoxon signed-rank tests), `tsne.png`
(Figure 2), per-fold checkpoints, ELMs and histories; the model with the best
validation score is exported as a SavedModel.

With no `--corpus` it generates (once, cached) synthetic SAVEE- and
EMO-DB-shaped corpora with eSpeak NG and runs a reduced configuration.

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
import os
import sys

from ser_keras import cli
from ser_keras.experiments import gender_naturalness as experiment

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    presets = experiment.PRESETS
    defaults = experiment.GenderNaturalnessConfig
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
        choices=experiment.PROTOCOLS,
        help="loso: within-corpus leave-one-speaker-out (Table 2); loco: "
        "leave-one-corpus-out (Table 3); both. Default: both with 2+ corpora, loso with one.",
    )
    parser.add_argument(
        "--networks",
        help="Comma-separated networks from "
        f"{', '.join(experiment.NETWORKS)} (default: {','.join(defaults.networks)}).",
    )
    parser.add_argument(
        "--aux",
        help="Auxiliary tasks to study: 'gender,naturalness' (the default) runs STL, "
        "Gender-MTL, Naturalness-MTL and ALL-MTL; 'gender' runs STL and Gender-MTL; "
        "'none' runs STL.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(presets),
        default="quick",
        help="quick: reduced network and epochs, a demo in minutes; cpu: "
        f"{presets['cpu']['units']} units with the cpu training recipe, early stopping "
        f"(patience {presets['cpu']['patience']}, at most {presets['cpu']['epochs']} "
        f"epochs), {presets['cpu']['folds']} LOSO folds per corpus and every LOCO fold (for "
        "real results on a 2-core CPU in hours; README: run times); paper: "
        f"{presets['paper']['units']} units, early stopping (patience "
        f"{presets['paper']['patience']}, at most {presets['paper']['epochs']} epochs).",
    )
    parser.add_argument(
        "--epochs", type=int,
        help="Override the preset's maximum epochs "
        f"(quick: {presets['quick']['epochs']}; cpu: {presets['cpu']['epochs']}; "
        f"paper: {presets['paper']['epochs']}).",
    )
    parser.add_argument(
        "--patience", type=int,
        help="Early-stopping patience in epochs "
        f"(quick: none; cpu: {presets['cpu']['patience']}; "
        f"paper: {presets['paper']['patience']}).",
    )
    parser.add_argument(
        "--units", type=int,
        help="Override the preset's units per layer "
        f"(quick: {presets['quick']['units']}; cpu: {presets['cpu']['units']}; "
        f"paper: {presets['paper']['units']}).",
    )
    parser.add_argument(
        "--batch-size", type=int,
        help=f"Override the batch size ({presets['paper']['batch_size']}).",
    )
    parser.add_argument(
        "--folds",
        type=int,
        help="Run at most N leave-one-speaker-out folds per corpus (and N "
        "leave-one-corpus-out folds). Default: the preset's (quick: "
        f"{presets['quick']['folds']} LOSO fold per corpus; paper: all).",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        help="Share of the training utterances held out for early stopping "
        f"(default and the paper: {100 * defaults.validation_fraction:g}%%).",
    )
    parser.add_argument(
        "--chunk-frames",
        type=int,
        help="Training sequences are cut into chunks of this many frames "
        f"(default: {defaults.chunk_frames}, 2 s); prediction runs over whole utterances.",
    )
    parser.add_argument(
        "--elm-hidden", type=int,
        help=f"Hidden units of the ELM (default: {defaults.elm_hidden}).",
    )
    parser.add_argument(
        "--no-split-naturalness",
        action="store_true",
        help="In leave-one-corpus-out, keep a corpus with acted and natural speech whole "
        "instead of testing its acted and natural parts separately.",
    )
    cli.add_recipe_arguments(parser)
    cli.add_common_arguments(
        parser,
        default_out=defaults.DEFAULT_OUT,
        export_help="Where the model with the best validation score over every protocol, "
        "network, variant and fold is exported (TF Serving layout).",
        synthetic_help="Utterances per speaker and emotion of the synthetic corpora (default: "
        f"the preset's; quick: {presets['quick']['synthetic_per_emotion']} for SAVEE, "
        f"{presets['quick']['synthetic_emodb_per_emotion']} for EMO-DB).",
        cache_help="Waveform, feature and synthetic-corpus cache (default: $SER_KERAS_CACHE or "
        "~/.cache/ser_keras).",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    fields = {"corpora": args.corpus}
    if args.folds is not None:
        fields["loco_folds"] = args.folds
    if args.synthetic_per_emotion is not None:
        fields["synthetic_emodb_per_emotion"] = args.synthetic_per_emotion
    if args.no_split_naturalness:
        fields["split_naturalness"] = False
    config = cli.config_from_args(experiment.GenderNaturalnessConfig, args, **fields)
    experiment.GenderNaturalness(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
