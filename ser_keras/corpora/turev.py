"""TurEV-DB (Turkish Emotion-Voice Database): single Turkish words in 4 emotions.

Layout: `{Angry,Calm,Happy,Sad}/1157_kz_acik.wav` = speaker id, emotion
code, word. The folder is the label. The code is the Turkish emotion
word's abbreviation (kz kizgin angry, sk sakin calm, mt mutlu happy,
hl huzunlu sad); this reading is ours, checked against every file of the
shared copy, and a code that disagrees with its folder is reported in the
warnings. Speaker genders are not in the names (gender None). Naturalness is
"acted": the speakers portrayed each emotion on request.

Reference:
    Canpolat, Ormanoglu and Zeyrek, "Turkish Emotion Voice Database
    (TurEV-DB)", SLTU-CCURL 2020.
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

CORPUS = "turev"
LANGUAGE = "tr"
EMOTION_FOLDERS = {"angry": "anger", "calm": "calm", "happy": "happiness", "sad": "sadness"}
EMOTION_CODES = {"kz": "anger", "sk": "calm", "mt": "happiness", "hl": "sadness"}

_NAME = re.compile(r"^(\d+)_([A-Za-z]+)_(.+)$")


def load_turev(directory) -> CorpusListing:
    """Lists the TurEV-DB utterances under `directory` (the folder holding `Angry/` ...).

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
    """
    root = check_directory(directory, CORPUS)

    def describe(path: pathlib.Path, warn) -> dict:
        speaker, code, _ = match_file_name(
            _NAME,
            path,
            "TurEV-DB's <speaker>_<emotion>_<word>.wav (e.g. 1157_kz_acik.wav)",
        )
        name_label = EMOTION_CODES.get(code.lower())
        if name_label is None:
            if path.parent.name.lower() not in EMOTION_FOLDERS:
                raise SkipFile(
                    f"unknown emotion code {code!r} (TurEV-DB codes: "
                    f"{', '.join(EMOTION_CODES)}) and not in an emotion folder"
                )
            warn(f"unknown emotion code {code!r}; label taken from the folder")
        label = emotion_folder_label(path, EMOTION_FOLDERS, name_label, warn)
        return {
            "language": LANGUAGE,
            "speaker": speaker,
            "naturalness": "acted",
            "label": label,
        }

    return collect(CORPUS, root, find_audio_files(root), describe)
