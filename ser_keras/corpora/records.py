"""The utterance record every corpus loader produces, and the listing of a corpus."""

from __future__ import annotations

import dataclasses

GENDERS = ("female", "male")
NATURALNESS = ("acted", "natural")


class CorpusError(ValueError):
    """A corpus folder is missing, empty or not in the expected layout."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One audio file of a corpus with everything its corpus tells about it.

    Attributes:
        path: Absolute path of the audio file.
        corpus: Corpus name, e.g. `"emodb"`, `"savee"`, `"folder"`.
        language: ISO 639-1 code of the spoken language (`"en"`, `"de"`, `"ur"`...).
        speaker: Speaker id as the corpus publishes it (e.g. `"03"`, `"DC"`).
        gender: `"female"`, `"male"` or `None` when unknown.
        naturalness: `"acted"`, `"natural"` or `None` when unknown.
        label: Emotion label as published, spelled out in lower case
            (`"anger"`, `"happiness"`, ...), or `None` for unlabelled speech.
        duration: Duration in seconds read from the file header, or `None`.
    """

    path: str
    corpus: str
    language: str
    speaker: str
    gender: str | None = None
    naturalness: str | None = None
    label: str | None = None
    duration: float | None = None

    @property
    def speaker_id(self) -> str:
        """Speaker id unique across corpora: `"<corpus>:<speaker>"`."""
        return f"{self.corpus}:{self.speaker}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file left out, with the reason in words."""

    path: str
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CorpusListing:
    """What a loader found in a corpus folder.

    Attributes:
        corpus: Corpus name.
        root: The folder that was read.
        utterances: The usable utterances, sorted by path.
        skipped: Files that were left out and why.
        warnings: Files that were kept but look suspicious (e.g. a file name
            that disagrees with its folder), and why.
    """

    corpus: str
    root: str
    utterances: list[Utterance]
    skipped: list[SkippedFile] = dataclasses.field(default_factory=list)
    warnings: list[SkippedFile] = dataclasses.field(default_factory=list)
