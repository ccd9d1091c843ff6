"""Shared machinery of the corpus loaders: folder checks, audio discovery,
header reading and the assembly of a `CorpusListing`.

Every loader describes one file at a time (`describe(path, warn)` returns the
utterance's fields or raises `SkipFile` with the reason); `collect()` turns
that into a listing where unusable files are skipped with a reason instead of
raising, and the usable ones are sorted by path.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Callable, Iterable

from ser_keras.audio.io import (
    KNOWN_AUDIO_EXTENSIONS,
    AudioError,
    check_file,
    check_not_truncated,
)
from ser_keras.corpora.records import CorpusError, CorpusListing, SkippedFile, Utterance

# File name endings read as audio (formats libsndfile decodes). Other files
# (transcripts, READMEs, label files) are not audio and are ignored silently.

# ISO 639-1 codes are two lower-case letters.
_LANGUAGE_PATTERN = re.compile(r"^[a-z]{2}$")

# How many skip reasons a "no usable utterances" error quotes.
_QUOTED_REASONS = 3


class SkipFile(Exception):
    """Raised by a loader's `describe` function to skip one file with a reason."""


def check_directory(directory, corpus: str) -> pathlib.Path:
    """Returns `directory` as an absolute path after checking that it is a folder.

    Args:
        directory: The corpus folder as given by the user.
        corpus: Corpus name, used in the error message.

    Raises:
        CorpusError: When the folder does not exist or is not a folder.
    """
    path = pathlib.Path(directory).expanduser()
    if not path.exists():
        raise CorpusError(f"{corpus}: corpus folder not found: {str(path)!r}")
    if not path.is_dir():
        raise CorpusError(f"{corpus}: expected a folder, received a file: {str(path)!r}")
    return path.resolve()


def check_language(language, corpus: str) -> str:
    """Checks an ISO 639-1 language code and returns it.

    Raises:
        ValueError: When `language` is not two lower-case letters.
    """
    if not isinstance(language, str) or not _LANGUAGE_PATTERN.match(language):
        raise ValueError(
            f"{corpus}: `language` must be an ISO 639-1 code of two lower-case letters "
            f"(e.g. 'en', 'bn'). Received: language={language!r}"
        )
    return language


def absolute_path(path) -> pathlib.Path:
    """`path` made absolute and normalised (`..` folded; symbolic links kept)."""
    return pathlib.Path(os.path.abspath(os.path.expanduser(path)))


def is_audio_file(path: pathlib.Path) -> bool:
    """Whether `path` is a file whose name ends like an audio file.

    A broken symbolic link with such a name counts too, so that a listing
    reports it as skipped (with the reason) instead of losing it silently.
    """
    if path.suffix.lower() not in KNOWN_AUDIO_EXTENSIONS:
        return False
    return path.is_file() or (path.is_symlink() and not path.exists())


def find_audio_files(root: pathlib.Path, recursive: bool = True) -> list[pathlib.Path]:
    """Lists the audio files under `root` (by name ending), sorted."""
    pattern = root.rglob("*") if recursive else root.glob("*")
    return sorted(path for path in pattern if is_audio_file(path))


def match_file_name(pattern, path: pathlib.Path, layout: str, text: str | None = None) -> tuple:
    """The groups of `pattern` matched at the start of a file's name stem.

    Args:
        pattern: Compiled regular expression of the corpus's naming scheme.
        path: The audio file.
        layout: The naming scheme in words, with an example, for the skip
            reason (e.g. `"EMOVO's <emotion>-<speaker>-<sentence>.wav (e.g.
            dis-f1-b1.wav)"`).
        text: What to match instead of `path.stem` (e.g. the stem in lower case).

    Raises:
        SkipFile: When the name does not match, naming `layout`.
    """
    match = pattern.match(path.stem if text is None else text)
    if not match:
        raise SkipFile(f"name {path.name!r} does not follow {layout}")
    return match.groups()


def read_duration(path: pathlib.Path) -> float:
    """Reads the duration in seconds from the file header.

    The file checks are `load_audio`'s (`ser_keras.audio.io.check_file`,
    `check_not_truncated`), so a listing and the waveform cache give the same
    reasons.

    Raises:
        SkipFile: When the file is missing (a broken symbolic link
            included), empty (0 bytes), its header cannot be read, it holds no
            samples, or it holds fewer frames than its header announces.
    """
    import soundfile

    try:
        check_file(path)
    except AudioError as error:
        raise SkipFile(error.reason) from None
    try:
        info = soundfile.info(str(path))
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        raise SkipFile(f"unreadable audio header: {message}") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise SkipFile(f"audio file holds no samples (frames={info.frames})")
    try:
        check_not_truncated(path, info)
    except AudioError as error:
        raise SkipFile(error.reason) from None
    return info.frames / info.samplerate


def collect(
    corpus: str,
    root: pathlib.Path,
    paths: Iterable[pathlib.Path],
    describe: Callable[[pathlib.Path, Callable[[str], None]], dict],
) -> CorpusListing:
    """Builds a `CorpusListing` from the audio files of a corpus.

    Args:
        corpus: Corpus name written into every utterance (unless `describe`
            returns its own `corpus`).
        root: The folder that was read (recorded in the listing).
        paths: The audio files to describe.
        describe: `describe(path, warn)` returns a dict of `Utterance` fields
            (`language`, `speaker` and any of `gender`, `naturalness`,
            `label`, `corpus`), or raises `SkipFile` with the reason. It may
            call `warn(reason)` to keep the file but record a warning.

    Returns:
        The listing, utterances sorted by path, skipped files and warnings in
        path order.

    Raises:
        CorpusError: When there is no audio file at all, or no file is usable
            (quoting the first reasons).
    """
    paths = sorted({absolute_path(path) for path in paths})
    if not paths:
        raise CorpusError(
            f"{corpus}: no audio files ({', '.join(KNOWN_AUDIO_EXTENSIONS)}) in {str(root)!r}"
        )
    utterances, skipped, warnings = [], [], []
    for path in paths:
        file_warnings = []
        try:
            fields = describe(path, file_warnings.append)
            duration = read_duration(path)
        except SkipFile as reason:
            skipped.append(SkippedFile(str(path), str(reason)))
            continue
        fields.setdefault("corpus", corpus)
        utterances.append(Utterance(path=str(path), duration=duration, **fields))
        warnings.extend(SkippedFile(str(path), reason) for reason in file_warnings)
    if not utterances:
        examples = "; ".join(f"{item.path}: {item.reason}" for item in skipped[:_QUOTED_REASONS])
        raise CorpusError(
            f"{corpus}: none of the {len(skipped)} audio files in {str(root)!r} is usable "
            f"(is this the right corpus kind?). First reasons: {examples}"
        )
    return CorpusListing(
        corpus=corpus, root=str(root), utterances=utterances, skipped=skipped, warnings=warnings
    )


def emotion_folder_label(
    path: pathlib.Path, folder_labels: dict[str, str], name_label: str | None, warn
) -> str:
    """The label of a corpus whose emotion folder is authoritative.

    URDU and TurEV-DB keep each emotion in its own folder and repeat it as a
    code in the file name. The folder wins; a disagreeing name is kept with a
    warning; a file outside the emotion folders takes the name's label.

    Args:
        path: The audio file.
        folder_labels: Folder name (lower case) -> label.
        name_label: The label the file name's code gives (`None` when the
            name carries no code).
        warn: Callback recording a warning for this file.

    Raises:
        SkipFile: When neither folder nor name gives a label.
    """
    folder_label = folder_labels.get(path.parent.name.lower())
    if folder_label is None:
        if name_label is None:
            raise SkipFile(
                f"not in an emotion folder ({', '.join(sorted(folder_labels))}) and no "
                "emotion code in the file name"
            )
        return name_label
    if name_label is not None and name_label != folder_label:
        warn(
            f"folder {path.parent.name!r} says {folder_label!r} but the file name's "
            f"emotion code says {name_label!r}; kept the folder's label"
        )
    return folder_label
