"""IEMOCAP (Interactive Emotional Dyadic Motion Capture): 5 sessions, 10 actors.

Layout:
- audio: `Session{1-5}/sentences/wav/<dialog>/<utterance>.wav`;
- labels: `Session{n}/dialog/EmoEvaluation/<dialog>.txt`, one line per
  utterance `[start - end]<TAB><utterance><TAB><code><TAB>[V, A, D]`.

The utterance id's last group gives the speaker's gender
(`Ses01F_impro01_F000` -> female): each session has one female and one male
actor, so the speaker id is session + gender (`"Ses01F"`). Improvised dialogs
(`impro`) are recorded as naturalness "natural", scripted ones (`script`) as
"acted" (both are performed by actors; the split follows the corpus's two
elicitation modes). Label codes are spelled out; `xxx` (no majority among
the evaluators) gives label None (unlabelled).

The folder given may be the release root (holding `Session1/` ...) or one
`Session<n>/` folder.

Reference:
    Busso et al., "IEMOCAP: Interactive emotional dyadic motion capture
    database", Language Resources and Evaluation 42(4), 2008.
"""

from __future__ import annotations

import pathlib
import re

from ser_keras.corpora.records import CorpusError, CorpusListing
from ser_keras.corpora.scan import (
    SkipFile,
    absolute_path,
    check_directory,
    collect,
    find_audio_files,
)

CORPUS = "iemocap"
LANGUAGE = "en"
# Category codes of the EmoEvaluation files; "xxx" = no agreement (None).
LABEL_CODES = {
    "ang": "anger",
    "hap": "happiness",
    "exc": "excited",
    "sad": "sadness",
    "neu": "neutral",
    "fru": "frustration",
    "sur": "surprise",
    "fea": "fear",
    "dis": "disgust",
    "oth": "other",
    "xxx": None,
}
GENDER_CODES = {"F": "female", "M": "male"}

_UTTERANCE = re.compile(r"^(Ses\d+)([FM])_(.+)_([FM])\d+$")
_EVALUATION_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")
_SESSION_FOLDER = re.compile(r"^Session\d+$", re.IGNORECASE)


def read_evaluation(path: pathlib.Path) -> dict[str, str]:
    """Reads an EmoEvaluation file: utterance id -> category code (lower case)."""
    codes = {}
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            match = _EVALUATION_LINE.match(line.strip())
            if match:
                codes[match.group(1)] = match.group(2).lower()
    return codes


def load_iemocap(directory) -> CorpusListing:
    """Lists the IEMOCAP utterances under `directory`.

    Args:
        directory: The release root (holding `Session1/` ...) or one session folder.

    Returns:
        A `CorpusListing`. Utterances whose dialog has no EmoEvaluation file,
        that have no evaluation line, or whose code is unknown are skipped with
        the reason; `xxx` utterances are kept unlabelled.

    Raises:
        CorpusError: When the folder is missing, holds no `Session<n>/`
            folders, or no usable audio.
    """
    root = check_directory(directory, CORPUS)
    if (root / "sentences").is_dir():
        sessions = [root]
    else:
        sessions = sorted(
            path for path in root.iterdir() if path.is_dir() and _SESSION_FOLDER.match(path.name)
        )
    if not sessions:
        raise CorpusError(
            f"{CORPUS}: no Session<n>/ folders (nor a sentences/ folder) in {str(root)!r}"
        )
    session_of = {}
    for session in sessions:
        for path in find_audio_files(session / "sentences" / "wav"):
            session_of[absolute_path(path)] = session
    evaluations = {}

    def evaluation(session: pathlib.Path, dialog: str):
        path = session / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        if path not in evaluations:
            evaluations[path] = read_evaluation(path) if path.is_file() else None
        return path, evaluations[path]

    def describe(path: pathlib.Path, warn) -> dict:
        utterance = path.stem
        match = _UTTERANCE.match(utterance)
        if not match:
            raise SkipFile(
                f"name {path.name!r} is not an IEMOCAP utterance id (e.g. Ses01F_impro01_F000.wav)"
            )
        session_id, _, _, gender = match.groups()
        dialog = utterance.rsplit("_", 1)[0]
        evaluation_path, codes = evaluation(session_of[path], dialog)
        if codes is None:
            raise SkipFile(f"label file not found: {evaluation_path}")
        if utterance not in codes:
            raise SkipFile(f"no evaluation line for {utterance} in {evaluation_path}")
        code = codes[utterance]
        if code not in LABEL_CODES:
            raise SkipFile(f"unknown IEMOCAP label code {code!r} (codes: {', '.join(LABEL_CODES)})")
        if "impro" in dialog:
            naturalness = "natural"
        elif "script" in dialog:
            naturalness = "acted"
        else:
            naturalness = None
            warn(f"dialog {dialog!r} is neither impro nor script; naturalness unknown")
        return {
            "language": LANGUAGE,
            "speaker": session_id + gender,
            "gender": GENDER_CODES[gender],
            "naturalness": naturalness,
            "label": LABEL_CODES[code],
        }

    return collect(CORPUS, root, session_of, describe)
