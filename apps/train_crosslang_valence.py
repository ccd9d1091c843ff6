"""Cross-language binary valence with the multi-task ResNet-LSTM and unlabelled speech.

Parses the arguments into a `CrossLanguageValenceConfig` and runs
`ser_keras.experiments.CrossLanguageValence`: Latif et al. (paper 000),
Table 3's settings (train on labelled corpora, score valence UAR on corpora
in other languages), Figure 2's ablation, Figure 3's target samples, or
Table 2's within-corpus baseline (`--protocol within`). The targets' audio
joins the unlabelled training data only with `--unlabelled-target-audio`
(not in the paper). With no corpus arguments it generates (once, cached)
synthetic eSpeak NG corpora and runs a reduced configuration.

    python -m apps.train_crosslang_valence
    python -m apps.train_crosslang_valence --labelled iemocap:~/IEMOCAP \\
        --target emodb:~/emodb emovo:~/EMOVO urdu:~/URDU \\
        --unlabelled librispeech:~/LibriSpeech de:~/voxforge/de --preset paper
"""

from __future__ import annotations

import argparse
import os
import sys

from ser_keras import cli
from ser_keras.experiments import crosslang_valence as experiment

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The deprecated --normalize's values, as the recipe's --normalization: its
# "utterance" meant the front-end's own per-utterance scaling only.
DEPRECATED_NORMALIZE = {"utterance": "none", "corpus": "corpus", "speaker": "speaker"}


def build_parser() -> argparse.ArgumentParser:
    presets = experiment.PRESETS
    defaults = experiment.CrossLanguageValenceConfig
    parser = cli.app_parser(
        "train_crosslang_valence",
        "Cross-language binary valence recognition with the multi-task ResNet-LSTM of "
        "Latif et al.: train on labelled corpora, test on corpora in other languages, "
        "with language and domain identification on unlabelled speech. Without corpus "
        "arguments, synthetic eSpeak NG corpora are generated and cached.",
    )
    parser.add_argument(
        "--labelled", nargs="+", action="extend", metavar="KIND:DIR",
        help="Labelled training corpora, e.g. iemocap:~/IEMOCAP ravdess:~/RAVDESS.",
    )
    parser.add_argument(
        "--target", nargs="+", action="extend", metavar="KIND:DIR",
        help="Target corpora in other languages, scored for valence UAR, e.g. emodb:DIR urdu:DIR.",
    )
    parser.add_argument(
        "--unlabelled", nargs="+", action="extend", metavar="LANG:DIR",
        help="Additional unlabelled speech: LANG:DIR (a folder of audio in language LANG, "
        "ISO 639-1), folder:LANG:DIR, or KIND:DIR of a corpus loader (librispeech:DIR; an "
        "emotional corpus given here is used without its labels).",
    )
    parser.add_argument(
        "--settings",
        help=f"Comma-separated settings, from {', '.join(experiment.SETTINGS)} (default: "
        f"{','.join(experiment.DEFAULT_SETTINGS)}). The Figure 2 ablation: "
        "mtl_extra_language,mtl_extra_domain,mtl_extra.",
    )
    parser.add_argument(
        "--protocol", choices=experiment.PROTOCOLS,
        help="crosslang (default): Table 3 (train on --labelled, test on --target). within: "
        "Table 2's single-task within-corpus baseline on every corpus (leave-one-speaker-out; "
        f"URDU: {experiment.URDU_TRAIN_SPEAKERS} training speakers, the rest tested, "
        f"{experiment.URDU_FOLDS} folds).",
    )
    parser.add_argument(
        "--target-samples", metavar="N[,N...]",
        help="Labelled target utterances added to training (Figure 3; the paper: 25 to 200), "
        "one model per target and N; 0 = none (the default). Where they come from and what "
        "is tested: --target-sampling.",
    )
    parser.add_argument(
        "--target-sampling", choices=experiment.TARGET_SAMPLINGS,
        help="With --target-samples N > 0: speakers (default, speaker-independent) splits each "
        "target's speakers into two halves (seeded), draws the N utterances from the first "
        "half and tests on the second half only, so no test speaker is trained on; any draws "
        "them from all target utterances and tests on the rest, so test speakers also give "
        "training utterances (the paper, Section 5.3, does not say which it did).",
    )
    parser.add_argument(
        "--preset", choices=sorted(presets), default="quick",
        help=f"quick: reduced model ({presets['quick']['model_preset']}) and epochs for a CPU; "
        f"cpu: the same model with the cpu training recipe but {presets['cpu']['normalization']} "
        f"normalisation, {presets['cpu']['epochs']} epochs (for real results on a 2-core "
        "CPU in hours; README: run times); "
        f"paper: the paper's model sizes, up to {presets['paper']['epochs']} epochs with early "
        "stopping on validation UA.",
    )
    parser.add_argument(
        "--epochs", type=int,
        help=f"Override the preset's number of epochs (quick: {presets['quick']['epochs']}; "
        f"paper: {presets['paper']['epochs']}).",
    )
    parser.add_argument(
        "--batch-size", type=int,
        help=f"Override the preset's batch size ({presets['quick']['batch_size']}).",
    )
    parser.add_argument(
        "--learning-rate", type=float,
        help=f"Adam learning rate (default {presets['quick']['learning_rate']:g}).",
    )
    parser.add_argument(
        "--alpha", type=float,
        help="Weight of the auxiliary losses: L = L_e + alpha (L_l + L_d) "
        f"(default {defaults.alpha}).",
    )
    parser.add_argument(
        "--labelled-fraction", type=float,
        help="Share of emotion-labelled samples in the training batches of the multi-task "
        "settings, in (0, 1): an epoch is every labelled sample once plus unlabelled "
        "samples (a random subset, or repeats) making up the rest. Default: every sample "
        "once per epoch, in natural proportion.",
    )
    parser.add_argument(
        "--label-map",
        help="Emotion label map (ser_keras.corpora.labels), e.g. binary_valence (Table 1, the "
        "default), binary_valence_iemocap, four_class.",
    )
    target_audio = parser.add_mutually_exclusive_group()
    target_audio.add_argument(
        "--unlabelled-target-audio", action="store_true", default=None,
        help="Add the target corpora's audio, without labels, to the unlabelled training data "
        "of the multi-task settings (language and domain identification; it also counts in "
        "the stl matched epoch). NOT in the paper, whose Table 1 lists no target audio among "
        "the unlabelled data: training on the test distribution's audio. Off by default.",
    )
    target_audio.add_argument(
        "--no-target-audio", action="store_false", dest="unlabelled_target_audio",
        default=None,
        help="Never train on target audio: the default (kept for earlier command lines).",
    )
    parser.add_argument(
        "--folds", type=int,
        help="--protocol within: run only the first N folds of each corpus.",
    )
    parser.add_argument(
        "--runs", type=int,
        help="Repeat every experiment with seeds seed, seed+1, ...; tables give mean ± std "
        f"(default {defaults.runs}).",
    )
    parser.add_argument(
        "--stl-epoch", choices=experiment.STL_EPOCHS,
        help="Training budget of the stl baseline (--protocol crosslang): matched (default) "
        "cycles its labelled utterances up to the size of mtl_extra's epoch (labelled + "
        "unlabelled at --labelled-fraction), so that it makes as many optimizer updates as "
        "the multi-task settings; labelled is one pass over them per epoch (fewer updates). "
        "The paper does not state the baseline's budget.",
    )
    parser.add_argument(
        "--normalize", choices=tuple(DEPRECATED_NORMALIZE),
        help="Deprecated alias of --normalization: utterance is --normalization none (the "
        "latif_6s front-end's own per-utterance scaling only), corpus and speaker are "
        "the same. With --normalization corpus or speaker, the statistics use no labels but "
        "do use the targets' audio (all of it, even without --unlabelled-target-audio).",
    )
    parser.add_argument(
        "--export-domain", metavar="CORPUS",
        help="With --normalization corpus: the corpus (a name printed when the data loads, "
        "e.g. emodb) whose band statistics the exported model's serving_default applies to "
        "its inputs, i.e. the domain it will serve (its enrol signature takes another "
        "corpus's audio). Default: the first --target.",
    )
    parser.add_argument(
        "--validation-fraction", type=float,
        help="Share of the labelled corpora's speakers held out for model selection "
        f"(default {defaults.validation_fraction}).",
    )
    cli.add_recipe_arguments(parser)
    cli.add_common_arguments(
        parser,
        default_out=defaults.DEFAULT_OUT,
        export_help="The best multi-task model (validation UA) is exported to "
        f"<export-dir>/{experiment.CrossLanguageValence.export_name}/<version>/.",
        synthetic_help="Synthetic corpora: utterances per speaker and emotion (unlabelled "
        "corpora: twice as many per speaker; default: the preset's, "
        f"{presets['quick']['synthetic_per_emotion']} for quick).",
        seed_help="Random seed of the first run.",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    fields = {}
    if args.synthetic_per_emotion is not None:
        fields["synthetic_unlabelled_per_speaker"] = 2 * args.synthetic_per_emotion
    if args.normalize is not None:
        normalization = DEPRECATED_NORMALIZE[args.normalize]
        if args.normalization not in (None, normalization):
            raise ValueError(
                "--normalize is a deprecated alias of --normalization; give one of them. "
                f"Received: --normalize {args.normalize}, --normalization {args.normalization}"
            )
        fields["normalization"] = normalization
    config = cli.config_from_args(experiment.CrossLanguageValenceConfig, args, **fields)
    experiment.CrossLanguageValence(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
