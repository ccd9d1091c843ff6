"""Multilingual SER with multi-gating and NAS (Wang et al.): Tables 3-4 and Figure 4.

Parses the arguments into a `MultilingualGatingConfig` and runs
`ser_keras.experiments.MultilingualGating`: all languages trained at once in
the five multi-domain variants of Table 3 (Base, Shared-Bottom, OMoE, MMoE
and the paper's multi-gating model with its hard-concrete NAS module), each
on the same per-language splits; the auxiliary-loss ablation of Table 4; the
average gate weights per language and expert (Figure 4(b)); the export of
the model with the best validation score as a SavedModel (its serving
signature returns one probability vector per language).

With no corpus it generates (once, cached) synthetic eSpeak NG corpora: a
SAVEE-shaped English one and an EMO-DB-shaped German one.

    python -m apps.train_multilingual_gating
    python -m apps.train_multilingual_gating --corpus emodb:../shared/data/emodb \\
        --corpus ravdess:../shared/data/ravdess --corpus urdu:../shared/data/urdu \\
        --corpus turev:../shared/data/turev --out runs/multigate

Each corpus's language comes from its loader (EMO-DB de, RAVDESS en, URDU ur,
TurEV-DB tr, ...); corpora of the same language form one domain whose label
set is the union of their label maps. Protocol: see
`ser_keras.experiments.multilingual_gating`.
"""

from __future__ import annotations

import argparse
import os
import sys

from ser_keras import cli
from ser_keras.experiments import multilingual_gating as experiment

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    presets = experiment.PRESETS
    defaults = experiment.MultilingualGatingConfig
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
        help="Comma-separated Table 3 variants to train, from "
        f"{', '.join(experiment.TABLE3_VARIANTS)} (default: all).",
    )
    parser.add_argument(
        "--ablation",
        choices=experiment.ABLATIONS,
        help="Table 4 auxiliary-loss ablation: 'single' trains single-language models with "
        "and without the contrastive loss (the paper's protocol); 'multigate' retrains the "
        "multi-gating model without it; 'none' skips it. Default: the preset's (quick: "
        f"{presets['quick']['ablation']}; paper: {presets['paper']['ablation']}).",
    )
    parser.add_argument(
        "--experts",
        help="Comma-separated feature experts, from "
        f"{', '.join(experiment.MODEL_EXPERTS + experiment.EMBEDDING_EXPERTS)} (default: "
        f"{','.join(defaults.experts)}). 'egemaps' (eGeMAPS functionals) needs the opensmile "
        "package and is skipped, with a message, where it is not installed.",
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
        choices=sorted(presets),
        default="quick",
        help="quick: reduced model, epochs and repeats for a CPU; cpu: the CPU-sized model "
        f"with the cpu training recipe, {presets['cpu']['epochs']} epochs, "
        f"{presets['cpu']['repeats']} repeats (for real results on a 2-core CPU in hours; "
        "README: run times); paper: the paper's sizes, "
        f"{presets['paper']['epochs']} epochs, {presets['paper']['repeats']} repeats, "
        f"{presets['paper']['ablation']}-language ablation.",
    )
    parser.add_argument(
        "--epochs", type=int,
        help=f"Override the preset's number of epochs (quick: {presets['quick']['epochs']}; "
        f"paper: {presets['paper']['epochs']}).",
    )
    parser.add_argument(
        "--batch-size", type=int,
        help=f"Override the preset's batch size (quick: {presets['quick']['batch_size']}; "
        f"paper: {presets['paper']['batch_size']}).",
    )
    parser.add_argument(
        "--repeats", type=int,
        help=f"Override the preset's number of repeats (quick: {presets['quick']['repeats']}; "
        f"paper: {presets['paper']['repeats']}).",
    )
    parser.add_argument(
        "--split",
        choices=experiment.LANGUAGE_SPLIT_MODES,
        help="random: the paper's random 20%% test split per language (stratified by "
        "emotion); speaker: about 20%% of each language's speakers held out for testing "
        f"(default: {defaults.split}).",
    )
    cli.add_recipe_arguments(parser)
    cli.add_common_arguments(
        parser,
        default_out=defaults.DEFAULT_OUT,
        export_help="Where the model with the best validation score over every setting "
        "trained on all languages and every repeat is exported (TF Serving layout).",
        synthetic_help="Utterances per emotion and speaker of the synthetic English corpus (the "
        "German one gets half; default: the preset's).",
        seed_help="Random seed (repeat r uses seed + r).",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    fields = {}
    if args.synthetic_per_emotion is not None:
        fields["synthetic_emodb_per_emotion"] = max(1, args.synthetic_per_emotion // 2)
    config = cli.config_from_args(experiment.MultilingualGatingConfig, args, **fields)
    experiment.MultilingualGating(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
