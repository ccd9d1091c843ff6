"""A corpus described by a CSV manifest: any layout, any language.

The CSV has a header row. Required columns: `path` (absolute, or relative to
the CSV's folder) and `speaker`. Optional columns: `emotion` (published
label; spelled in the canonical vocabulary, empty = unlabelled), `gender`
(female/male/f/m), `language` (ISO 639-1), `corpus` (defaults to the
`corpus` option) and `naturalness` (acted/natural). Other columns are
ignored. Column names are matched case-insensitively.

Example:
    path,speaker,emotion,gender,language
    clips/a.wav,spk1,angry,f,fr
"""

from __future__ import annotations

import csv
import pathlib

from ser_keras.corpora.labels import canonical_label
from ser_keras.corpora.records import NATURALNESS, CorpusError, CorpusListing, SkippedFile
from ser_keras.corpora.scan import SkipFile, absolute_path, check_language, collect

CORPUS = "manifest"
DEFAULT_MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("path", "speaker")
OPTIONAL_COLUMNS = ("emotion", "gender", "language", "corpus", "naturalness")
GENDER_VALUES = {"f": "female", "female": "female", "m": "male", "male": "male"}


def _manifest_file(path) -> pathlib.Path:
    path = absolute_path(path)
    if path.is_dir():
        path = path / DEFAULT_MANIFEST_NAME
    if not path.is_file():
        raise CorpusError(f"{CORPUS}: manifest file not found: {str(path)!r}")
    return path


def _describe_row(row: dict, language, corpus: str) -> dict:
    speaker = row.get("speaker", "")
    if not speaker:
        raise SkipFile("empty speaker")
    gender = row.get("gender", "").lower() or None
    if gender is not None:
        if gender not in GENDER_VALUES:
            raise SkipFile(f"gender {row['gender']!r} is none of {', '.join(GENDER_VALUES)}")
        gender = GENDER_VALUES[gender]
    naturalness = row.get("naturalness", "").lower() or None
    if naturalness is not None and naturalness not in NATURALNESS:
        raise SkipFile(f"naturalness {row['naturalness']!r} is none of {', '.join(NATURALNESS)}")
    row_language = row.get("language", "").lower() or language
    if row_language is None:
        raise SkipFile("no language (add a language column or pass language=...)")
    try:
        check_language(row_language, CORPUS)
    except ValueError:
        raise SkipFile(f"language {row_language!r} is not an ISO 639-1 code") from None
    return {
        "corpus": row.get("corpus", "") or corpus,
        "language": row_language,
        "speaker": speaker,
        "gender": gender,
        "naturalness": naturalness,
        "label": canonical_label(row.get("emotion")),
    }


def load_manifest(path, language: str | None = None, corpus: str = CORPUS) -> CorpusListing:
    """Lists the utterances of a CSV manifest.

    Args:
        path: The CSV file, or a folder holding `manifest.csv`.
        language: Language of rows without a `language` value (ISO 639-1).
        corpus: Corpus name of rows without a `corpus` value, and of the listing.

    Returns:
        A `CorpusListing`. Rows with an empty path or speaker, a missing or
        unreadable file, an invalid gender, naturalness or language, or a path
        listed before are skipped with the reason (the path, or the row number
        when the path is empty).

    Raises:
        CorpusError: When the manifest is missing, lacks a required column or
            lists no usable audio.
        ValueError: When `language` or `corpus` is invalid.
    """
    if language is not None:
        check_language(language, CORPUS)
    if not isinstance(corpus, str) or not corpus.strip():
        raise ValueError(f"`corpus` must be a non-empty name. Received: corpus={corpus!r}")
    manifest = _manifest_file(path)
    with open(manifest, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise CorpusError(
                f"{CORPUS}: {str(manifest)!r} lacks the column(s) {', '.join(missing)} "
                f"(header: {', '.join(header) or 'empty'})"
            )
        rows = []
        for line_number, values in enumerate(reader, start=2):
            if not any(value.strip() for value in values):
                continue
            row = {name: value.strip() for name, value in zip(header, values, strict=False)}
            rows.append((line_number, row))
    if not rows:
        raise CorpusError(f"{CORPUS}: {str(manifest)!r} lists no files")

    pre_skipped, by_path = [], {}
    for line_number, row in rows:
        if not row.get("path"):
            pre_skipped.append(SkippedFile(f"{manifest}:{line_number}", "empty path"))
            continue
        file_path = absolute_path(manifest.parent / pathlib.Path(row["path"]).expanduser())
        if file_path in by_path:
            pre_skipped.append(
                SkippedFile(str(file_path), f"listed again on line {line_number}; first kept")
            )
        elif not file_path.is_file():
            pre_skipped.append(SkippedFile(str(file_path), "file not found"))
        else:
            by_path[file_path] = row

    def describe(file_path: pathlib.Path, warn) -> dict:
        return _describe_row(by_path[file_path], language, corpus)

    if not by_path:
        examples = "; ".join(f"{item.path}: {item.reason}" for item in pre_skipped[:3])
        raise CorpusError(
            f"{CORPUS}: none of the {len(rows)} rows of {str(manifest)!r} names an existing "
            f"file. First reasons: {examples}"
        )
    listing = collect(corpus, manifest, by_path, describe)
    listing.skipped = sorted(listing.skipped + pre_skipped, key=lambda item: item.path)
    return listing
