"""Parsing of `KIND:DIR` corpus arguments shared by the apps."""

from __future__ import annotations

import dataclasses
import difflib
import pathlib
import re

# What reads as a corpus kind before the first colon of `KIND:DIR`: a name of
# two or more characters (so that a Windows drive letter `C:` is not one).
_KIND_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]+$")


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
            `foo:DIR` with an unknown `foo` says that the kind is unknown
            (listing the known ones) rather than looking for a folder
            `foo:DIR`, unless a folder of that name exists.
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
    bare = pathlib.Path(text).expanduser()
    if default_kind is not None and bare.exists():  # a folder whose name holds a colon
        return CorpusSpec(default_kind, bare)
    if rest and _KIND_LIKE.match(kind):
        close = difflib.get_close_matches(kind.lower(), CORPUS_KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"Unknown corpus kind {kind!r}{hint}; known kinds: {', '.join(CORPUS_KINDS)}. "
            f"Received: {text!r}"
        )
    if default_kind is None:
        raise ValueError(
            f"Expected KIND:DIR with KIND one of {', '.join(CORPUS_KINDS)}. Received: {text!r}"
        )
    return CorpusSpec(default_kind, bare)
