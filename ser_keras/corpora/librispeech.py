"""LibriSpeech: read English audiobook speech, unlabelled for emotion.

Layout: `<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac`, speaker
genders in `SPEAKERS.TXT` (`;` comment lines, then
`ID | SEX | SUBSET | MINUTES | NAME`). The folder given may be the release
root (holding `SPEAKERS.TXT` and the subsets) or one subset folder (with
`SPEAKERS.TXT` beside it). Used as unlabelled English speech (paper 000's
language-identification data).

Reference:
    Panayotov et al., "Librispeech: an ASR corpus based on public domain
    audio books", ICASSP 2015.
"""

from __future__ import annotations

import pathlib
import re

from ser_keras.corpora.records import CorpusListing, SkippedFile
from ser_keras.corpora.scan import check_directory, collect, find_audio_files, match_file_name

CORPUS = "librispeech"
LANGUAGE = "en"
SPEAKERS_FILE = "SPEAKERS.TXT"
GENDER_CODES = {"F": "female", "M": "male"}

_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def read_speaker_genders(path) -> dict[str, str]:
    """Reads `SPEAKERS.TXT`: speaker id -> "female"/"male" (other sexes left out)."""
    genders = {}
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            if not line.strip() or line.lstrip().startswith(";"):
                continue
            # The NAME field may itself hold "|" (speaker 60 is "|CBW|Simon").
            fields = [field.strip() for field in line.split("|", 4)]
            if len(fields) >= 2 and fields[0].isdigit() and fields[1].upper() in GENDER_CODES:
                genders[fields[0]] = GENDER_CODES[fields[1].upper()]
    return genders


def load_librispeech(directory) -> CorpusListing:
    """Lists the LibriSpeech utterances under `directory` (unlabelled, language "en").

    Returns:
        A `CorpusListing`; when no `SPEAKERS.TXT` is found, genders are None
        and the listing's warnings say so.

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
    """
    root = check_directory(directory, CORPUS)
    speakers_file = next(
        (
            folder / SPEAKERS_FILE
            for folder in (root, root.parent)
            if (folder / SPEAKERS_FILE).is_file()
        ),
        None,
    )
    genders = read_speaker_genders(speakers_file) if speakers_file else {}

    def describe(path: pathlib.Path, warn) -> dict:
        layout = "LibriSpeech's <speaker>-<chapter>-<n>.flac"
        speaker, chapter, _ = match_file_name(_NAME, path, layout)
        if (path.parent.name, path.parent.parent.name) != (chapter, speaker):
            warn(
                f"file is in {path.parent.parent.name}/{path.parent.name}/ but its name gives "
                f"speaker {speaker}, chapter {chapter}; speaker taken from the name"
            )
        if speakers_file and speaker not in genders:
            warn(f"speaker {speaker} is not in {speakers_file}; gender unknown")
        return {"language": LANGUAGE, "speaker": speaker, "gender": genders.get(speaker)}

    listing = collect(CORPUS, root, find_audio_files(root), describe)
    if speakers_file is None:
        listing.warnings.insert(
            0, SkippedFile(str(root / SPEAKERS_FILE), "SPEAKERS.TXT not found; genders unknown")
        )
    return listing
