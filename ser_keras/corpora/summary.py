"""Counts describing a corpus listing (what `python -m ser_keras.corpora describe` prints)."""

from __future__ import annotations

from collections import Counter

from ser_keras.corpora.records import CorpusListing

UNKNOWN_GENDER = "unknown"


def describe_listing(listing: CorpusListing) -> dict:
    """Counts of a listing, JSON-serialisable.

    Returns:
        A dict with `corpus`, `root`, `utterances` (count), `speakers` (count
        of distinct `speaker_id`s), `labels` (label -> count, labelled
        utterances only), `unlabelled` (count), `languages`, `genders`
        (None counted as "unknown") and `naturalness` (value -> count),
        `duration_seconds` (sum of the header durations), `skipped` and
        `warnings` (lists of `{path, reason}`). (`python -m ser_keras.corpora
        describe` adds `audio_checked`: whether the waveform cache's checks
        were applied.)
    """
    utterances = listing.utterances

    def counts(values):
        return dict(sorted(Counter(values).items()))

    return {
        "corpus": listing.corpus,
        "root": listing.root,
        "utterances": len(utterances),
        "speakers": len({item.speaker_id for item in utterances}),
        "labels": counts(item.label for item in utterances if item.label is not None),
        "unlabelled": sum(item.label is None for item in utterances),
        "languages": counts(item.language for item in utterances),
        "genders": counts(item.gender or UNKNOWN_GENDER for item in utterances),
        "naturalness": counts(item.naturalness or "unknown" for item in utterances),
        "duration_seconds": round(sum(item.duration or 0.0 for item in utterances), 3),
        "skipped": [item.to_dict() for item in listing.skipped],
        "warnings": [item.to_dict() for item in listing.warnings],
    }


def format_summary(summary: dict, max_listed: int = 20) -> str:
    """A readable multi-line text of `describe_listing`'s dict.

    Args:
        summary: The dict from `describe_listing`.
        max_listed: How many skipped files and warnings to print in full.
    """

    def joined(values: dict) -> str:
        return ", ".join(f"{name} {count}" for name, count in values.items()) or "-"

    hours = summary["duration_seconds"] / 3600
    lines = [
        f"corpus      {summary['corpus']}  ({summary['root']})",
        f"utterances  {summary['utterances']}  ({hours:.2f} h)",
        f"speakers    {summary['speakers']}",
        f"labels      {joined(summary['labels'])}"
        + (f"; unlabelled {summary['unlabelled']}" if summary["unlabelled"] else ""),
        f"languages   {joined(summary['languages'])}",
        f"genders     {joined(summary['genders'])}",
        f"naturalness {joined(summary['naturalness'])}",
    ]
    for title, items in (("skipped", summary["skipped"]), ("warnings", summary["warnings"])):
        lines.append(f"{title:<11} {len(items)}")
        lines.extend(f"  {item['path']}: {item['reason']}" for item in items[:max_listed])
        if len(items) > max_listed:
            lines.append(f"  ... and {len(items) - max_listed} more (--json lists all)")
    if summary.get("audio_checked") is False:
        lines.append(
            "note        headers only: files that training skips after decoding them "
            "(silent, NaN, 8-bit, too short) are counted as usable"
        )
    return "\n".join(lines)
