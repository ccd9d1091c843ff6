"""Command line of the corpus loaders.

    python -m ser_keras.corpora describe emodb ../shared/data/emodb
    python -m ser_keras.corpora describe folder ../shared/data/bangla --language bn \
        --speaker-pattern '^[A-Za-z]+' --json

`describe` reports what training uses: the loader's listing, then the
waveform cache's decision on every file (`WaveformCache.check`: the same
decoding and checks as training, so silent, NaN, 8-bit, too-short and
undecodable files are skipped with training's reasons). Each file is decoded
once and cached, so the training run that follows reads it back;
`--headers-only` reads the file headers alone (fast, but those files count as
usable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

from ser_keras.corpora import CORPUS_KINDS, load_corpus, loader_options
from ser_keras.corpora.summary import describe_listing, format_summary

# Exit status for a wrong argument or an unusable corpus folder (argparse's own).
USAGE_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ser_keras.corpora", description="Inspect speech emotion corpora."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser(
        "describe",
        help="count the utterances, speakers, labels, languages and genders of a corpus",
        description="Lists a corpus with its loader and prints what it found, including "
        "the files it skipped and why.",
    )
    describe.add_argument("kind", choices=CORPUS_KINDS, help="corpus kind (loader)")
    describe.add_argument("directory", help="corpus folder (manifest: the CSV file)")
    describe.add_argument("--json", action="store_true", help="print one JSON object")
    describe.add_argument(
        "--language", help="ISO 639-1 language code (needed by 'folder'; default of 'manifest')"
    )
    describe.add_argument(
        "--speaker-pattern",
        help="'folder': regular expression giving the speaker from the file name",
    )
    describe.add_argument("--corpus", help="'folder'/'manifest': corpus name to record")
    describe.add_argument(
        "--include-song", action="store_true", help="'ravdess': read song files too"
    )
    describe.add_argument(
        "--cache-dir",
        help="the training apps' cache, whose waveform cache decides which files are "
        "usable (default: $SER_KERAS_CACHE or ~/.cache/ser_keras)",
    )
    describe.add_argument(
        "--headers-only",
        action="store_true",
        help="read only the file headers (fast): silent, NaN, 8-bit, too short and "
        "undecodable files, which training skips, then count as usable",
    )
    return parser


def check_audio(listing, cache_dir=None, progress: bool = False):
    """The listing with only the utterances training uses (the waveform cache's checks).

    Args:
        listing: A `CorpusListing`.
        cache_dir: The apps' `--cache-dir` (None: `default_cache_dir()`); the
            waveform cache is its `waveforms` folder, as in the apps.
        progress: Show a progress bar on stderr.

    Returns:
        A `CorpusListing` whose `skipped` holds the listing's and the
        cache's skipped files, in path order.
    """
    from ser_keras.data.cache import WaveformCache, default_cache_dir

    root = pathlib.Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    usable, skipped = WaveformCache(root / "waveforms").check(listing.utterances, progress)
    return dataclasses.replace(
        listing,
        utterances=usable,
        skipped=sorted([*listing.skipped, *skipped], key=lambda item: item.path),
    )


def _options(arguments) -> dict:
    given = {
        "language": arguments.language,
        "speaker_pattern": arguments.speaker_pattern,
        "corpus": arguments.corpus,
        "include_song": arguments.include_song or None,
    }
    given = {name: value for name, value in given.items() if value is not None}
    accepted = loader_options(arguments.kind)
    refused = [name for name in given if name not in accepted]
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        raise ValueError(f"{flags} does not apply to corpus kind {arguments.kind!r}")
    return given


def main(argv=None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        listing = load_corpus(arguments.kind, arguments.directory, **_options(arguments))
    except ValueError as error:  # CorpusError is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    if not arguments.headers_only:
        listing = check_audio(listing, arguments.cache_dir, progress=sys.stderr.isatty())
    summary = describe_listing(listing)
    summary["audio_checked"] = not arguments.headers_only
    if arguments.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
