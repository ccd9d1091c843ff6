"""A folder of unlabelled speech in one language (any layout, read recursively).

Used for the unlabelled data of the multi-task recipes (language and domain
identification, paper 000), e.g. the shared Bangla read speech or a
Voxforge download. Every audio file under the folder is one utterance with
label None. The speaker comes from `speaker_pattern` (a regular expression
searched in the file name without its extension) or, without one, from the
name of the file's folder.
"""

from __future__ import annotations

import pathlib
import re

from ser_keras.corpora.records import NATURALNESS, CorpusListing
from ser_keras.corpora.scan import (
    SkipFile,
    check_directory,
    check_language,
    collect,
    find_audio_files,
)

CORPUS = "folder"


def _compile_speaker_pattern(speaker_pattern):
    if speaker_pattern is None or isinstance(speaker_pattern, re.Pattern):
        return speaker_pattern
    try:
        return re.compile(speaker_pattern)
    except (re.error, TypeError) as error:
        raise ValueError(
            f"`speaker_pattern` must be a regular expression ({error}). "
            f"Received: speaker_pattern={speaker_pattern!r}"
        ) from None


def load_folder(
    directory,
    language: str | None = None,
    speaker_pattern=None,
    corpus: str = CORPUS,
    naturalness: str | None = None,
) -> CorpusListing:
    """Lists every audio file under `directory` as unlabelled speech.

    Args:
        directory: The folder (searched recursively).
        language: ISO 639-1 code of the speech (required), e.g. `"bn"`.
        speaker_pattern: Optional regular expression searched in each file
            name (without extension); the speaker is its group `speaker`, else
            its first group, else the whole match. A file it does not match
            is skipped with the reason. Without it, the speaker is the name
            of the file's folder. Bangla (`MI004.wav`): `r"^[A-Za-z]+"`.
        corpus: Corpus name recorded in the records (e.g. `"bangla"`).
        naturalness: "acted", "natural" or None, recorded in every record.

    Returns:
        A `CorpusListing` of unlabelled utterances.

    Raises:
        CorpusError: When the folder is missing or holds no usable audio.
        ValueError: When `language`, `speaker_pattern`, `corpus` or
            `naturalness` is invalid, naming the value.
    """
    if language is None:
        raise ValueError(
            "folder: a folder of unlabelled speech needs its language, e.g. language='bn'. "
            "Received: language=None"
        )
    check_language(language, CORPUS)
    pattern = _compile_speaker_pattern(speaker_pattern)
    if not isinstance(corpus, str) or not corpus.strip():
        raise ValueError(f"`corpus` must be a non-empty name. Received: corpus={corpus!r}")
    if naturalness is not None and naturalness not in NATURALNESS:
        raise ValueError(
            f"`naturalness` must be one of {NATURALNESS} or None. Received: {naturalness!r}"
        )
    root = check_directory(directory, corpus)

    def describe(path: pathlib.Path, warn) -> dict:
        if pattern is None:
            speaker = path.parent.name
        else:
            match = pattern.search(path.stem)
            if not match:
                raise SkipFile(f"speaker_pattern {pattern.pattern!r} does not match {path.stem!r}")
            if "speaker" in pattern.groupindex:
                speaker = match.group("speaker")
            else:
                speaker = match.group(1) if pattern.groups else match.group(0)
            if not speaker:
                raise SkipFile(f"speaker_pattern {pattern.pattern!r} gives an empty speaker")
        return {"language": language, "speaker": speaker, "naturalness": naturalness}

    return collect(corpus, root, find_audio_files(root), describe)
