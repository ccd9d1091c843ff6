"""EMO-DB (Berlin Database of Emotional Speech): 10 German actors, 535 utterances.

Layout: `wav/03a01Fa.wav` = speaker `03`, text `a01`, emotion letter `F`,
version `a`. The folder given may be the corpus root (holding `wav/`) or the
`wav/` folder itself.

Reference:
    Burkhardt et al., "A database of German emotional speech",
    Interspeech 2005.
"""

from __future__ import annotations

import pathlib
import re

from ser_keras.corpora.records import CorpusListing
from ser_keras.corpora.scan import (
    SkipFile,
    check_directory,
    collect,
    find_audio_files,
    match_file_name,
)

CORPUS = "emodb"
LANGUAGE = "de"
# German emotion names' initials: Wut, Langeweile, Ekel, Angst, Freude, Trauer, Neutral.
EMOTION_CODES = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
# From the corpus documentation (and shared/data/README.md).
SPEAKER_GENDERS = {
    **{speaker: "male" for speaker in ("03", "10", "11", "12", "15")},
    **{speaker: "female" for speaker in ("08", "09", "13", "14", "16")},
}

_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Za-z])([a-z])$")


def load_emodb(directory) -> CorpusListing:
    """Lists the EMO-DB utterances under `directory`.

    Args:
        directory: The EMO-DB root (holding `wav/`) or the `wav/` folder.

    Returns:
        A `CorpusListing` (files off the naming scheme, with an unknown
        emotion letter or an unreadable header are skipped with the reason;
        a speaker outside the ten is kept, gender unknown, with a warning).

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
    """
    root = check_directory(directory, CORPUS)
    scan_root = root / "wav" if (root / "wav").is_dir() else root

    def describe(path: pathlib.Path, warn) -> dict:
        speaker, _, code, _ = match_file_name(
            _NAME,
            path,
            "EMO-DB's <speaker NN><text a01><emotion><version>.wav (e.g. 03a01Fa.wav)",
        )
        if code not in EMOTION_CODES:
            raise SkipFile(
                f"unknown emotion letter {code!r} (EMO-DB letters: {', '.join(EMOTION_CODES)})"
            )
        if speaker not in SPEAKER_GENDERS:
            warn(f"speaker {speaker!r} is not one of EMO-DB's ten; gender unknown")
        return {
            "language": LANGUAGE,
            "speaker": speaker,
            "gender": SPEAKER_GENDERS.get(speaker),
            "naturalness": "acted",
            "label": EMOTION_CODES[code],
        }

    return collect(CORPUS, root, find_audio_files(scan_root), describe)
