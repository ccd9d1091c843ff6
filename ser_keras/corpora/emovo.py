"""EMOVO: Italian emotional speech, 6 actors (3 female, 3 male), 588 utterances.

Layout: `{f1,f2,f3,m1,m2,m3}/dis-f1-b1.wav` = emotion code, speaker,
sentence. Codes: dis disgusto (disgust), gio gioia (joy -> happiness), neu
neutral, pau paura (fear), rab rabbia (anger), sor sorpresa (surprise), tri
tristezza (sadness). The speaker comes from the file name; a speaker folder
that disagrees is reported in the warnings.

Reference:
    Costantini et al., "EMOVO corpus: an Italian emotional speech database",
    LREC 2014.
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

CORPUS = "emovo"
LANGUAGE = "it"
EMOTION_CODES = {
    "dis": "disgust",
    "gio": "happiness",
    "neu": "neutral",
    "pau": "fear",
    "rab": "anger",
    "sor": "surprise",
    "tri": "sadness",
}
SPEAKERS = ("f1", "f2", "f3", "m1", "m2", "m3")
GENDER_CODES = {"f": "female", "m": "male"}

_NAME = re.compile(r"^([a-z]+)-([fm]\d+)-([a-z]+\d+)$")
_SPEAKER_FOLDER = re.compile(r"^[fm]\d+$")


def load_emovo(directory) -> CorpusListing:
    """Lists the EMOVO utterances under `directory` (the folder holding `f1/` ... `m3/`).

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
    """
    root = check_directory(directory, CORPUS)

    def describe(path: pathlib.Path, warn) -> dict:
        code, speaker, _ = match_file_name(
            _NAME,
            path,
            "EMOVO's <emotion>-<speaker>-<sentence>.wav (e.g. dis-f1-b1.wav)",
            text=path.stem.lower(),
        )
        if code not in EMOTION_CODES:
            raise SkipFile(
                f"unknown emotion code {code!r} (EMOVO codes: {', '.join(EMOTION_CODES)})"
            )
        folder = path.parent.name.lower()
        if _SPEAKER_FOLDER.match(folder) and folder != speaker:
            warn(
                f"file name names speaker {speaker!r} but the file is in folder "
                f"{path.parent.name!r}; speaker taken from the file name"
            )
        if speaker not in SPEAKERS:
            warn(f"speaker {speaker!r} is not one of EMOVO's {', '.join(SPEAKERS)}")
        return {
            "language": LANGUAGE,
            "speaker": speaker,
            "gender": GENDER_CODES[speaker[0]],
            "naturalness": "acted",
            "label": EMOTION_CODES[code],
        }

    return collect(CORPUS, root, find_audio_files(root), describe)
