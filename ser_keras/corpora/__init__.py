"""Corpus loaders: each reads one corpus as its users have it laid out and
returns a `CorpusListing` of `Utterance` records; `labels` maps the
published labels to task classes.

    from ser_keras.corpora import load_corpus
    listing = load_corpus("emodb", "../shared/data/emodb")
    listing = load_corpus("folder", "../shared/data/bangla", language="bn",
                          speaker_pattern=r"^[A-Za-z]+", corpus="bangla")

Command line: `python -m ser_keras.corpora describe KIND DIR [--json]`.
"""

from __future__ import annotations

import inspect

from ser_keras.corpora.emodb import load_emodb
from ser_keras.corpora.emovo import load_emovo
from ser_keras.corpora.folder import load_folder
from ser_keras.corpora.iemocap import load_iemocap
from ser_keras.corpora.librispeech import load_librispeech
from ser_keras.corpora.manifest import load_manifest
from ser_keras.corpora.ravdess import load_ravdess
from ser_keras.corpora.records import CorpusError, CorpusListing, SkippedFile, Utterance
from ser_keras.corpora.savee import load_savee
from ser_keras.corpora.turev import load_turev
from ser_keras.corpora.urdu import load_urdu

# Loader of each corpus kind.
CORPUS_LOADERS = {
    "savee": load_savee,
    "emodb": load_emodb,
    "ravdess": load_ravdess,
    "urdu": load_urdu,
    "emovo": load_emovo,
    "iemocap": load_iemocap,
    "turev": load_turev,
    "librispeech": load_librispeech,
    "manifest": load_manifest,
    "folder": load_folder,
}
CORPUS_KINDS = tuple(CORPUS_LOADERS)


def loader_options(kind: str) -> tuple[str, ...]:
    """The keyword options the loader of `kind` accepts (besides the folder)."""
    parameters = list(inspect.signature(_loader(kind)).parameters)
    return tuple(parameters[1:])


def _loader(kind):
    try:
        return CORPUS_LOADERS[kind]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown corpus kind. Expected one of {', '.join(CORPUS_KINDS)}. Received: {kind!r}"
        ) from None


def load_corpus(kind: str, directory, **options) -> CorpusListing:
    """Lists the utterances of a corpus.

    Args:
        kind: One of `CORPUS_KINDS`.
        directory: The corpus folder (for `"manifest"`: the CSV file, or a
            folder holding `manifest.csv`).
        **options: Loader options, e.g. `language` and `speaker_pattern` for
            `"folder"`, `include_song` for `"ravdess"` (see
            `loader_options(kind)`).

    Returns:
        A `CorpusListing`: utterances sorted by path (absolute paths), files
        left out with their reasons, and warnings.

    Raises:
        ValueError: When `kind` or an option is unknown, naming it.
        CorpusError: When the folder is missing, empty or in another layout.
    """
    loader = _loader(kind)
    accepted = loader_options(kind)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Corpus kind {kind!r} takes the options {', '.join(accepted) or '(none)'}. "
            f"Received: {', '.join(f'{name}={options[name]!r}' for name in unknown)}"
        )
    return loader(directory, **options)


__all__ = [
    "CORPUS_KINDS",
    "CORPUS_LOADERS",
    "CorpusError",
    "CorpusListing",
    "SkippedFile",
    "Utterance",
    "load_corpus",
    "loader_options",
]
