"""SAVEE (Surrey Audio-Visual Expressed Emotion): 4 male British English speakers.

Layouts read:
- `AudioData/{DC,JE,JK,KL}/{a,d,f,h,n,sa,su}NN.wav` (the corpus as published);
- flat copies `DC_a01.wav` (e.g. the `ALL/` folder of redistributed copies).

The folder given may be the corpus root (holding `AudioData/`), the
`AudioData/` folder itself, or a folder of flat copies. 480 utterances: per
speaker 15 of each emotion and 30 neutral.

Reference:
    Haq and Jackson, "Speaker-dependent audio-visual emotion recognition",
    AVSP 2009.
"""

from __future__ import annotations

import pathlib
import re

from ser_keras.corpora.records import CorpusListing
from ser_keras.corpora.scan import SkipFile, check_directory, collect, find_audio_files

CORPUS = "savee"
LANGUAGE = "en"
SPEAKERS = ("DC", "JE", "JK", "KL")
SPEAKER_GENDERS = {speaker: "male" for speaker in SPEAKERS}
EMOTION_CODES = {
    "a": "anger",
    "d": "disgust",
    "f": "fear",
    "h": "happiness",
    "n": "neutral",
    "sa": "sadness",
    "su": "surprise",
}

_IN_SPEAKER_FOLDER = re.compile(r"^([a-z]+)(\d+)$")
_FLAT = re.compile(r"^([A-Za-z]{2})_([a-z]+)(\d+)$")
_SPEAKER_FOLDER = re.compile(r"^[A-Z]{2}$")


def load_savee(directory) -> CorpusListing:
    """Lists the SAVEE utterances under `directory`.

    Args:
        directory: The SAVEE root (holding `AudioData/`), the `AudioData/`
            folder, or a folder of flat `DC_a01.wav` copies.

    Returns:
        A `CorpusListing`; files off the naming scheme, with an unknown
        emotion code, an unreadable header, or repeating an utterance already
        listed (both layouts in one folder) are skipped with the reason.

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
    """
    root = check_directory(directory, CORPUS)
    scan_root = root / "AudioData" if (root / "AudioData").is_dir() else root
    seen = {}

    def describe(path: pathlib.Path, warn) -> dict:
        stem = path.stem
        flat = _FLAT.match(stem)
        nested = _IN_SPEAKER_FOLDER.match(stem)
        if flat:
            speaker, code, number = flat.group(1).upper(), flat.group(2), flat.group(3)
        elif nested and _SPEAKER_FOLDER.match(path.parent.name):
            speaker, code, number = path.parent.name, nested.group(1), nested.group(2)
        else:
            raise SkipFile(
                f"name {path.name!r} follows neither SAVEE layout: <code><NN>.wav in a "
                f"speaker folder ({', '.join(SPEAKERS)}) or <speaker>_<code><NN>.wav"
            )
        if code not in EMOTION_CODES:
            raise SkipFile(
                f"unknown emotion code {code!r} (SAVEE codes: {', '.join(EMOTION_CODES)})"
            )
        key = (speaker, code, int(number))
        if key in seen:
            raise SkipFile(f"the same utterance as {seen[key]} (both layouts present)")
        seen[key] = str(path)
        if speaker not in SPEAKERS:
            warn(f"speaker {speaker!r} is not one of SAVEE's {', '.join(SPEAKERS)}")
        return {
            "language": LANGUAGE,
            "speaker": speaker,
            "gender": SPEAKER_GENDERS.get(speaker),
            "naturalness": "acted",
            "label": EMOTION_CODES[code],
        }

    return collect(CORPUS, root, find_audio_files(scan_root), describe)
