"""SAVEE + EMO-DB cross-language training of the attention CNN-BLSTM (paper 004).

Parses the arguments into a `FuSaveeCrossLanguageConfig` and runs
`ser_keras.experiments.FuSaveeCrossLanguage`: the four settings of Table 2 in
Fu et al. (2020), each evaluated leave-one-speaker-out over SAVEE's four
speakers. With no arguments it generates (once, cached) synthetic SAVEE- and
EMO-DB-shaped corpora with eSpeak NG and runs a reduced configuration.

    python -m apps.train_savee_crosslang
    python -m apps.train_savee_crosslang --savee ~/SAVEE --emodb ~/emodb --preset paper
"""

from __future__ import annotations

import argparse
import os
import sys

from ser_keras import cli
from ser_keras.experiments import fu_savee_crosslang as experiment

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    presets = experiment.PRESETS
    parser = cli.app_parser(
        "train_savee_crosslang",
        "Train and evaluate the attention CNN-BLSTM (Fu et al. 2020) on SAVEE, "
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
        default=",".join(experiment.SETTINGS),
        help=f"Comma-separated settings to run, from {', '.join(experiment.SETTINGS)}.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(presets),
        default="quick",
        help="quick: reduced model and epochs, a demo in minutes; cpu: the CPU-sized model "
        f"with the cpu training recipe, {presets['cpu']['epochs']} epochs, all folds (for "
        "real results on a 2-core CPU in hours; README: run times); paper: the paper's sizes, "
        f"{presets['paper']['epochs']} epochs (early stopping on validation UA).",
    )
    parser.add_argument(
        "--epochs", type=int,
        help=f"Override the preset's number of epochs (quick: {presets['quick']['epochs']}; "
        f"paper: {presets['paper']['epochs']}).",
    )
    parser.add_argument(
        "--folds", type=int,
        help="Run only the first N leave-one-speaker-out folds "
        f"(quick preset: {presets['quick']['folds']}; paper: all).",
    )
    parser.add_argument(
        "--batch-size", type=int,
        help=f"Override the preset's batch size ({presets['quick']['batch_size']}).",
    )
    defaults = experiment.FuSaveeCrossLanguageConfig
    parser.add_argument(
        "--validation-fraction", type=float,
        help="Fraction of the training speakers' utterances (stratified by emotion) held out "
        "for checkpoint selection; the test speaker is never used "
        f"(default: {defaults.validation_fraction}).",
    )
    parser.add_argument(
        "--num-frames", type=int,
        help="Frames of the fu2021 log-mel input, 25 ms apart (the paper and the default: "
        f"{defaults.num_frames} = {defaults.num_frames * 0.025:g} s of speech). Fewer crops "
        "the input (and the exported model's): lossless when no utterance is longer, e.g. "
        "176 for RAVDESS + EMO-DB after trimming (at most 170 frames), and cheaper to train.",
    )
    cli.add_recipe_arguments(parser)
    cli.add_common_arguments(
        parser,
        default_out=experiment.FuSaveeCrossLanguageConfig.DEFAULT_OUT,
        export_help="Where the model with the best validation UA over every setting and fold "
        "is exported (TF Serving layout).",
        synthetic_help="Utterances per emotion and speaker in the generated synthetic SAVEE "
        "corpus (the EMO-DB one gets half; default: the preset's).",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    fields = {}
    if args.synthetic_per_emotion is not None:
        fields["synthetic_emodb_per_emotion"] = max(1, args.synthetic_per_emotion // 2)
    config = cli.config_from_args(experiment.FuSaveeCrossLanguageConfig, args, **fields)
    experiment.FuSaveeCrossLanguage(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
