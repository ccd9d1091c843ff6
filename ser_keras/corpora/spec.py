"""Parsing of `KIND:DIR` corpus arguments shared by the apps."""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class CorpusSpec:
    """A corpus named on the command line.

    Attributes:
        kind: Loader name (one of `ser_keras.corpora.CORPUS_KINDS`).
        directory: The corpus folder (or manifest file).
        language: Language code for loaders that need one (`folder`).
    """

    kind: str
    directory: pathlib.Path
    language: str | None = None

    def load(self):
        """Loads the corpus listing with `ser_keras.corpora.load_corpus`."""
        from ser_keras.corpora import load_corpus

        options = {"language": self.language} if self.language else {}
        return load_corpus(self.kind, self.directory, **options)


def parse_corpus_spec(text: str, default_kind: str | None = None) -> CorpusSpec:
    """Parses `KIND:DIR`, `DIR` (with `default_kind`) or `folder:LANG:DIR`.

    Args:
        text: The argument as typed.
        default_kind: Kind assumed when `text` names only a folder.

    Returns:
        A `CorpusSpec`.

    Raises:
        ValueError: When the kind is unknown or missing, naming the value.
    """
    from ser_keras.corpora import CORPUS_KINDS

    kind, _, rest = text.partition(":")
    if rest and kind in CORPUS_KINDS:
        language = None
        if kind == "folder":
            language, _, rest = rest.partition(":")
            if not rest:
                raise ValueError(
                    f"A folder of unlabelled speech is given as folder:LANG:DIR. Received: {text!r}"
                )
        return CorpusSpec(kind, pathlib.Path(rest).expanduser(), language)
    if default_kind is None:
        raise ValueError(
            f"Expected KIND:DIR with KIND one of {', '.join(CORPUS_KINDS)}. Received: {text!r}"
        )
    return CorpusSpec(default_kind, pathlib.Path(text).expanduser())
