"""RAVDESS (Ryerson Audio-Visual Database of Emotional Speech and Song).

Layout: `Actor_NN/03-01-05-01-02-01-05.wav` = modality (01 audio-video,
02 video-only, 03 audio-only) - vocal channel (01 speech, 02 song) -
emotion - intensity (01 normal, 02 strong) - statement - repetition - actor.
Odd-numbered actors are male, even-numbered female. North American English.

The speaker is taken from the `Actor_NN` folder when there is one; a file
whose name names another actor is kept and reported in the listing's
warnings (the shared copy holds one: `Actor_05/03-01-05-01-01-01-02.wav`).

Reference:
    Livingstone and Russo, "The Ryerson Audio-Visual Database of Emotional
    Speech and Song (RAVDESS)", PLoS ONE 13(5), 2018.
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

CORPUS = "ravdess"
LANGUAGE = "en"
EMOTION_CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happiness",
    "04": "sadness",
    "05": "anger",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
# Modalities with a sound track; 02 (video-only) has none.
_AUDIO_MODALITIES = {"01": "audio-video", "03": "audio-only"}

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_FOLDER = re.compile(r"^Actor_(\d+)$", re.IGNORECASE)


def actor_gender(actor: int) -> str:
    """RAVDESS's rule: odd-numbered actors are male, even-numbered female."""
    return "male" if actor % 2 else "female"


def load_ravdess(directory, include_song: bool = False) -> CorpusListing:
    """Lists the RAVDESS utterances under `directory`.

    Args:
        directory: A folder holding `Actor_NN/` folders (or the files themselves).
        include_song: Whether to read song files (vocal channel 02) too; by
            default they are skipped with the reason.

    Returns:
        A `CorpusListing`. Speaker ids are two-digit actor numbers (`"05"`).

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
    """
    root = check_directory(directory, CORPUS)

    def describe(path: pathlib.Path, warn) -> dict:
        modality, channel, emotion, _, _, _, name_actor = match_file_name(
            _NAME,
            path,
            "RAVDESS's seven two-digit fields (e.g. 03-01-05-01-02-01-05.wav)",
        )
        if modality not in _AUDIO_MODALITIES:
            raise SkipFile(f"modality {modality!r} has no audio track (expected 01 or 03)")
        if channel not in VOCAL_CHANNELS:
            raise SkipFile(f"unknown vocal channel {channel!r} (01 speech, 02 song)")
        if channel == "02" and not include_song:
            raise SkipFile("song (vocal channel 02); pass include_song=True to read songs")
        if emotion not in EMOTION_CODES:
            raise SkipFile(
                f"unknown emotion code {emotion!r} (RAVDESS codes: {', '.join(EMOTION_CODES)})"
            )
        actor = int(name_actor)
        folder = _ACTOR_FOLDER.match(path.parent.name)
        if folder:
            folder_actor = int(folder.group(1))
            if folder_actor != actor:
                warn(
                    f"file name names actor {actor:02d} but the file is in folder "
                    f"{path.parent.name}; speaker taken from the folder"
                )
            actor = folder_actor
        if actor < 1:
            raise SkipFile(f"actor number {actor} is not a RAVDESS actor (01-24)")
        return {
            "language": LANGUAGE,
            "speaker": f"{actor:02d}",
            "gender": actor_gender(actor),
            "naturalness": "acted",
            "label": EMOTION_CODES[emotion],
        }

    return collect(CORPUS, root, find_audio_files(root), describe)
