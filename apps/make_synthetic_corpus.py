"""Generate a synthetic speech corpus with eSpeak NG.

Emotional corpora in SAVEE's or EMO-DB's layout (emotions rendered as
prosody: rate, pitch, pitch range, loudness, pauses), or unlabelled speech in
one language in a folder per speaker. The same seed writes identical files;
a folder that already holds a complete corpus made with the same parameters
is left as it is.

    python -m apps.make_synthetic_corpus --layout savee --out data/savee_synthetic
    python -m apps.make_synthetic_corpus --layout emodb --out data/emodb_synthetic --per-emotion 4
    python -m apps.make_synthetic_corpus --layout folder --language ur --out data/ur_speech
    python -m apps.make_synthetic_corpus --list-languages
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys

from ser_keras import cli
from ser_keras.cli import non_negative_int, positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "make_synthetic_corpus",
        "Generate a synthetic speech corpus with eSpeak NG: emotional speech in "
        "SAVEE's layout (AudioData/{DC,JE,JK,KL}/a01.wav; 4 male English voices, "
        "7 emotions) or EMO-DB's (wav/03a01Fa.wav; 10 German voices, 7 emotions), or "
        "unlabelled speech in one language (<speaker>/<speaker>_001.wav). A manifest.csv "
        "and a parameter stamp are written beside the audio.",
        show_defaults=False,
    )
    parser.add_argument(
        "--layout", choices=("savee", "emodb", "folder"), help="Corpus layout to write."
    )
    parser.add_argument("--out", metavar="DIR", help="Corpus folder (created).")
    parser.add_argument(
        "--language",
        help="ISO 639-1 code of the speech (folder layout only; see --list-languages).",
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=0,
        help="Random seed; the same seed writes identical files (default: 0).",
    )
    parser.add_argument(
        "--per-emotion",
        type=positive_int,
        help="Utterances per speaker and emotion (savee, emodb). "
        "Default: SAVEE's 15, or 8 for emodb (560 files, close to EMO-DB's 535).",
    )
    parser.add_argument(
        "--neutral",
        type=positive_int,
        help="Neutral utterances per speaker (savee). Default: twice --per-emotion, as in SAVEE.",
    )
    parser.add_argument(
        "--num-speakers",
        type=positive_int,
        default=6,
        help="Speakers, alternating male and female voices (folder; default: 6, at most 12).",
    )
    parser.add_argument(
        "--per-speaker",
        type=positive_int,
        default=12,
        help="Utterances per speaker (folder; default: 12).",
    )
    parser.add_argument(
        "--sample-rate",
        type=positive_int,
        help="Sample rate of the files in Hz. Default: eSpeak NG's own 22050.",
    )
    parser.add_argument(
        "--force", action="store_true", help="Regenerate even if a complete corpus is there."
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.add_argument(
        "--list-languages",
        action="store_true",
        help="Print the languages available for the folder layout and exit.",
    )
    return parser


def _check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Reports arguments that do not fit the layout through `parser.error` (exit 2)."""
    if args.layout is None:
        parser.error("the following argument is required: --layout (savee, emodb or folder)")
    if args.out is None:
        parser.error("the following argument is required: --out DIR")
    if args.layout == "folder":
        if args.language is None:
            parser.error("--layout folder needs --language (see --list-languages)")
        for name, value in (("--per-emotion", args.per_emotion), ("--neutral", args.neutral)):
            if value is not None:
                parser.error(f"{name} applies to the savee and emodb layouts, not folder")
    else:
        if args.language is not None:
            language = {"savee": "English", "emodb": "German"}[args.layout]
            parser.error(
                f"--language applies to the folder layout only; the {args.layout} layout is "
                f"{language}. Received: --language {args.language}"
            )
        if args.layout == "emodb" and args.neutral is not None:
            parser.error("--neutral applies to the savee layout only")


def main(argv=None) -> int:
    from ser_keras.audio.synthetic import EspeakError

    parser = build_parser()
    return cli.run_main(parser, functools.partial(run, parser), argv, errors=(EspeakError,))


def run(parser: argparse.ArgumentParser, args) -> int:
    """Generates the corpus that `args` describe and prints what it holds."""
    from ser_keras.audio import synthetic

    if args.list_languages:
        for code in synthetic.available_languages():
            print(code)
        return 0
    _check_arguments(parser, args)
    if args.layout == "folder" and args.language not in synthetic.SENTENCES:
        parser.error(
            f"unknown language {args.language!r}. "
            f"Available: {', '.join(synthetic.available_languages())}"
        )
    options = {"seed": args.seed, "sample_rate": args.sample_rate}
    if args.layout == "savee":
        options.update(per_emotion=args.per_emotion or 15, neutral=args.neutral)
    elif args.layout == "emodb":
        options.update(per_emotion=args.per_emotion or 8)
    else:
        options.update(
            language=args.language,
            num_speakers=args.num_speakers,
            per_speaker=args.per_speaker,
        )
    corpus = synthetic.make_corpus(
        args.layout, args.out, progress=not args.quiet, force=args.force, **options
    )

    utterances = corpus.utterances
    if not corpus.generated:
        print(
            f"{corpus.root}: complete corpus with the same parameters found; nothing generated "
            f"({len(utterances)} files). Use --force to regenerate."
        )
    else:
        per_utterance = corpus.seconds / max(1, len(utterances))
        print(
            f"Wrote {len(utterances)} files to {corpus.root} in {corpus.seconds:.1f} s "
            f"({per_utterance * 1000:.0f} ms per utterance)."
        )
    hours = sum(utterance.duration or 0.0 for utterance in utterances) / 3600.0
    speakers = collections.Counter(utterance.speaker for utterance in utterances)
    labels = collections.Counter(utterance.label or "(unlabelled)" for utterance in utterances)
    print(f"  audio: {hours * 60:.1f} min")
    print(f"  speakers ({len(speakers)}): " + ", ".join(f"{k} {v}" for k, v in speakers.items()))
    print("  labels: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())))
    print(f"  manifest: {corpus.manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
