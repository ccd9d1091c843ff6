"""KerasTuner search over the hyperparameters of a model family.

Parses the arguments into a `ser_keras.tuning.experiment.TuneConfig` and runs
`TuneSearch` (the module's docstring describes the search). It searches the
space of `ser_keras.tuning.hypermodels` (loss weights from the papers'
ranges, dropout, widths, learning rate; defaults = the papers' values) for
one of

- `attention_cnn_blstm`: Fu et al.'s attention CNN-BLSTM with its speaker head
  (paper 004; `--single-task` drops the head);
- `resnet_lstm_mtl`: Latif et al.'s ResNet-LSTM with language and domain
  heads (paper 000; binary valence by default);
- `aae_mtl`: Latif et al.'s multi-task semi-supervised adversarial
  autoencoder (paper 002; emotion, speaker and gender heads);
- `kim_mtl`: Kim et al.'s frame-level LSTM-MTL on the 32 frame features, with
  gender and naturalness heads (paper 001; the four classes neutral,
  happiness, sadness, anger by default; trained on 2 s chunks);
- `multigate`: Wang et al.'s multilingual multi-gating model with its NAS
  module and contrastive loss (paper 003; a head per language),

maximising the validation emotion UA on speakers held out of training. The
first corpus's first speaker (or `--test-speaker`) is held out as the test
speaker and never reaches the tuner. The search state lives in
`<directory>/<project-name>/`; an interrupted search continues with
`--resume`. The best hyperparameters are printed and written to
`best_hyperparameters.json`, every trial to `trials.md` and `trials.json`. A
trial that fails makes the program exit with status 1 and name it.

With no `--data` it generates (once, cached) small synthetic corpora with
eSpeak NG. `--preset quick` (default) tunes the CPU presets of the models
(widths scaled down; the hyperparameters keep the papers' units) for a few
epochs.

    python -m apps.tune --model attention_cnn_blstm --tuner random --max-trials 3
    python -m apps.tune --model resnet_lstm_mtl --tuner bayesian --max-trials 30 \\
        --data iemocap:~/IEMOCAP folder:de:~/voxforge/de --preset paper
    python -m apps.tune --model aae_mtl --tuner hyperband --max-trials 40 \\
        --data emodb:~/emodb --objective speaker_folds --resume
    python -m apps.tune --model kim_mtl --max-trials 20 --preset paper \\
        --data iemocap:~/IEMOCAP emodb:~/emodb ravdess:~/RAVDESS
    python -m apps.tune --model multigate --tuner bayesian --max-trials 20 \\
        --data iemocap:~/IEMOCAP emodb:~/emodb --preset paper
"""

from __future__ import annotations

import argparse
import os
import sys

from ser_keras import cli
from ser_keras.tuning import experiment

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _preset_values(field):
    """`"<model> <quick> / <paper>; ..."` of a field for every model family (help texts)."""
    entries = []
    for model in experiment.MODELS:
        values = [
            "none" if value is None else str(value)
            for value in (experiment.family_preset(model, p)[field] for p in ("quick", "paper"))
        ]
        entries.append(f"{model} {' / '.join(dict.fromkeys(values))}")
    return "; ".join(entries)


def build_parser() -> argparse.ArgumentParser:
    defaults = experiment.TuneConfig
    parser = cli.app_parser(
        "tune",
        "KerasTuner search over a model family's hyperparameters, maximising the "
        "validation emotion UA on speakers held out of training. Without --data, "
        "synthetic eSpeak NG corpora are generated and cached.",
        show_defaults=False,
    )
    parser.add_argument(
        "--model", choices=experiment.MODELS, required=True, help="Model family to tune."
    )
    parser.add_argument(
        "--tuner", choices=experiment.TUNERS,
        help="Search algorithm (KerasTuner RandomSearch, BayesianOptimization, Hyperband; "
        f"default: {defaults.tuner}).",
    )
    parser.add_argument(
        "--max-trials", type=int,
        help="Number of trials. Hyperband's schedule follows --epochs and "
        f"--hyperband-factor; --max-trials caps it (default: {defaults.max_trials}).",
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
        "--objective", choices=experiment.OBJECTIVES,
        help="validation_speakers: UA on held-out training speakers; speaker_folds: mean UA "
        f"over --cv-folds folds of the training speakers (default: {defaults.objective}).",
    )
    parser.add_argument(
        "--cv-folds", type=int,
        help=f"Folds of the speaker_folds objective (default: {defaults.cv_folds}).",
    )
    parser.add_argument(
        "--validation-speakers", type=int,
        help="Speakers held out for the validation_speakers objective "
        f"(default: {defaults.validation_speakers}).",
    )
    parser.add_argument(
        "--test-speaker",
        help="Speaker (of the first corpus) kept out of the search, as named by the corpus "
        "(e.g. DC). Default: the first speaker.",
    )
    parser.add_argument(
        "--preset", choices=sorted(experiment.PRESETS), default="quick",
        help="quick: the models' CPU presets and a few epochs (REDUCED); paper: the papers' "
        "sizes and schedules (default: quick).",
    )
    parser.add_argument(
        "--epochs", type=int,
        help=f"Epochs per trial (default, quick / paper: {_preset_values('epochs')}).",
    )
    parser.add_argument(
        "--batch-size", type=int,
        help="Batch size, the global batch under --strategy (default: the paper's: "
        f"{_preset_values('batch_size')}).",
    )
    parser.add_argument(
        "--patience", type=int,
        help="Early stopping on val_emotion_ua after this many epochs without improvement "
        "(aae_mtl: restore the best weights and halve the learning rate, as paper 002). "
        f"Default, quick / paper: {_preset_values('patience')}.",
    )
    parser.add_argument(
        "--single-task", action="store_true",
        help="attention_cnn_blstm without its speaker head.",
    )
    parser.add_argument(
        "--hyperband-factor", type=int,
        help=f"Hyperband's reduction factor (default: {defaults.hyperband_factor}).",
    )
    parser.add_argument(
        "--directory", help=f"Folder of the search projects (default: {defaults.directory})."
    )
    parser.add_argument(
        "--project-name", help="Project folder inside --directory (default: the model name)."
    )
    # --seed, --resume, --cache-dir, --synthetic-per-emotion, --quiet, --strategy.
    cli.add_common_arguments(
        parser,
        default_out=None,
        seed_help="Random seed (default: 0).",
        resume_help="Continue the search in the project folder (KerasTuner overwrite=False).",
        synthetic_help="Synthetic corpora: utterances per speaker and emotion (default: "
        + ", ".join(
            f"{name} {values['synthetic_per_emotion']}"
            for name, values in experiment.PRESETS.items()
        )
        + ").",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


def run(args) -> int:
    config = cli.config_from_args(experiment.TuneConfig, args)
    from ser_keras.tuning.search import TrialFailureError

    try:
        experiment.TuneSearch(config).run()
    except TrialFailureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
