"""Small helpers of the corpus loader tests."""

import pathlib


def by_name(listing):
    """Utterances of a listing keyed by file name."""
    return {pathlib.Path(item.path).name: item for item in listing.utterances}


def skipped_by_name(listing):
    """Skip reasons of a listing keyed by file name."""
    return {pathlib.Path(item.path).name: item.reason for item in listing.skipped}
