"""Multi-task semi-supervised adversarial autoencoder (AAE) for SER (paper 002).

Parses the arguments into an `AAEMultiTaskConfig` and runs
`ser_keras.experiments.AAEMultiTask`: the model of Latif et al. (2020) and its
baselines (settings stl, mtl, ae, cnn, gender, speaker) on a labelled
emotional corpus, with optional additional speech without emotion labels for
the auxiliary speaker and gender tasks and the unsupervised phases. The
protocol, the CNN's training budget (`--cnn-epoch`) and the speaker
verification are described in `ser_keras/experiments/aae_mtl.py`.

With no arguments it generates (once, cached) a synthetic EMO-DB-shaped
corpus and synthetic unlabelled English speech with eSpeak NG, and runs the
four default settings in a reduced configuration.

    python -m apps.train_aae_mtl
    python -m apps.train_aae_mtl --labelled emodb:~/emodb \\
        --additional ravdess:~/ravdess turev:~/turev urdu:~/urdu folder:bn:~/bangla \\
        --speaker-pattern '^[A-Za-z]+' --preset paper

Outputs under `--out`: `results.json` ({"settings": {name: {"wa", "ua",
"folds", ...}}, "eer": ...}, percent; each fold with its split manifest),
`results.md` (Tables 3 and 5 of the paper in layout, per-fold scores, EER,
confusion matrices), per setting `phase_losses_<setting>.png` (each training
phase's losses per epoch) and `confusion_<setting>.png`, and one folder per
setting and fold (checkpoints, history). The emotion path (waveform ->
utterance probabilities, with the gender head when trained) of the model with
the best validation UA over every setting and fold is exported to
`<export-dir>/aae_mtl/<version>/`.

Reference:
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020
    (arXiv:1907.06078).
"""

from __future__ import annotations

import argparse
import os
import sys

from ser_keras import cli
from ser_keras.corpora.labels import DEFAULT_LABEL_MAPS
from ser_keras.experiments import aae_mtl as experiment

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser() -> argparse.ArgumentParser:
    presets = experiment.PRESETS
    defaults = experiment.AAEMultiTaskConfig
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
        "the held-out verification speakers keep all theirs. Default: all.",
    )
    parser.add_argument(
        "--protocol",
        choices=experiment.PROTOCOLS,
        help="loso: leave-one-speaker-out (validation: a share of the training speakers' "
        "utterances); kfold10: the paper's 10 folds each holding every speaker, one fold "
        f"for validation, eight for training (speaker-dependent). Default: {defaults.protocol}.",
    )
    parser.add_argument(
        "--settings",
        help=f"Comma-separated settings to run, from {', '.join(experiment.SETTINGS)}. "
        f"Default: {','.join(defaults.settings)}.",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(presets),
        default="quick",
        help="quick: reduced model and epochs, a demo in minutes; cpu: the CPU-sized model "
        f"with the cpu training recipe, at most {presets['cpu']['epochs']} epochs, all folds "
        "(for real results on a 2-core CPU in hours; README: run times); paper: the paper's "
        "sizes and schedule; tiny: smoke-test size.",
    )
    parser.add_argument(
        "--generator-loss",
        choices=experiment.GENERATOR_LOSSES,
        help="Generator loss of the regularisation phase: minimax minimises log(1 - D(E(x))) "
        "as the paper's Eq. 5; non_saturating minimises -log D(E(x)). "
        f"Default: {defaults.generator_loss}.",
    )
    parser.add_argument(
        "--cnn-epoch",
        choices=experiment.CNN_EPOCHS,
        help="Training budget of the cnn setting, which trains on the labelled segments only: "
        "matched cycles them (whole copies, then a random subset fixed per fold) up to the "
        "number of training segments (labelled + additional) of the settings with additional "
        "speech in the same fold, so each epoch has as many optimizer updates as theirs and "
        "--epochs and the halving patience mean the same number of updates for every "
        "setting; labelled makes one pass over the labelled segments per epoch (fewer "
        f"updates). Without --additional both are the same. Default: {defaults.cnn_epoch}.",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"Override the preset's maximum epochs (quick: {presets['quick']['epochs']}; "
        f"cpu: {presets['cpu']['epochs']}; paper: {presets['paper']['epochs']}).",
    )
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        help="Epochs of speaker + gender pre-training on the additional speech before "
        "emotional training (settings with auxiliary heads; 0 = none). Default: the preset's "
        f"(quick: {presets['quick']['pretrain_epochs']}; "
        f"paper: {presets['paper']['pretrain_epochs']}).",
    )
    parser.add_argument(
        "--folds",
        type=int,
        help=f"Run only the first N folds (quick: {presets['quick']['folds']}; paper: all).",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"Override the preset's batch size ({presets['quick']['batch_size']}).",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        help="loso: share of the training speakers' utterances (stratified by emotion) held "
        "out for model selection. The test speaker is never used. "
        f"Default: {defaults.validation_fraction}.",
    )
    parser.add_argument(
        "--enrolment",
        type=int,
        help="Enrolment utterances per speaker for verification (paper: "
        f"{presets['paper']['enrolment']}; quick: {presets['quick']['enrolment']}).",
    )
    parser.add_argument(
        "--verification-speakers",
        type=int,
        help="Speakers of the additional corpora held out of all training, for speaker "
        f"verification (paper: {presets['paper']['verification_speakers']}; quick: "
        f"{presets['quick']['verification_speakers']}).",
    )
    cli.add_recipe_arguments(parser)
    cli.add_common_arguments(
        parser,
        default_out=defaults.DEFAULT_OUT,
        export_help="Where the emotion path of the model with the best validation UA over "
        "every setting and fold is exported (TF Serving layout).",
        synthetic_help="Utterances per emotion and speaker of the synthetic EMO-DB-shaped "
        f"corpus (default: the preset's; quick: {presets['quick']['synthetic_per_emotion']}).",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    config = cli.config_from_args(experiment.AAEMultiTaskConfig, args)
    experiment.AAEMultiTask(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
