"""URDU: spontaneous Urdu speech from TV talk shows, 400 utterances, 4 emotions.

Layout: `{Angry,Happy,Neutral,Sad}/SM1_F10_A010.wav` = `S` + gender (`M`/`F`)
+ speaker number, `F10` file number of that speaker, emotion letter
(A angry, H happy, N neutral, S sad) + running number. The folder is the
label; a file name whose letter disagrees with its folder is kept with a
warning. Speaker ids are the first field as written (`"SM1"`).

Reference:
    Latif et al., "Cross lingual speech emotion recognition: Urdu vs. Western
    languages", FIT 2018.
"""

from __future__ import annotations

import pathlib
import re

from ser_keras.corpora.records import CorpusListing
from ser_keras.corpora.scan import (
    SkipFile,
    check_directory,
    collect,
    emotion_folder_label,
    find_audio_files,
    match_file_name,
)

CORPUS = "urdu"
LANGUAGE = "ur"
EMOTION_CODES = {"A": "anger", "H": "happiness", "N": "neutral", "S": "sadness"}
EMOTION_FOLDERS = {"angry": "anger", "happy": "happiness", "neutral": "neutral", "sad": "sadness"}
GENDER_CODES = {"M": "male", "F": "female"}

_NAME = re.compile(r"^(S([MF])\d+)_F\d+_([A-Za-z])\d+$")


def load_urdu(directory) -> CorpusListing:
    """Lists the URDU utterances under `directory` (the folder holding `Angry/` ...).

    Returns:
        A `CorpusListing`; naturalness is "natural" (talk-show speech).

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
    """
    root = check_directory(directory, CORPUS)

    def describe(path: pathlib.Path, warn) -> dict:
        speaker, gender, code = match_file_name(
            _NAME,
            path,
            "URDU's S<gender><speaker>_F<file>_<emotion><number>.wav (e.g. SM1_F10_A010.wav)",
        )
        if code.upper() not in EMOTION_CODES:
            raise SkipFile(
                f"unknown emotion letter {code!r} (URDU letters: {', '.join(EMOTION_CODES)})"
            )
        label = emotion_folder_label(path, EMOTION_FOLDERS, EMOTION_CODES[code.upper()], warn)
        return {
            "language": LANGUAGE,
            "speaker": speaker,
            "gender": GENDER_CODES[gender],
            "naturalness": "natural",
            "label": label,
        }

    return collect(CORPUS, root, find_audio_files(root), describe)
