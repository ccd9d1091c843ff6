"""Fixtures of the corpus loader tests: tiny corpora written in each layout."""

import pathlib

import pytest

from tests.helpers import speech_like, write_wav

# 0.2 s of speech-like audio at 16 kHz: long enough for a real header, quick to write.
SAMPLE_RATE = 16000
SECONDS = 0.2


@pytest.fixture(scope="session")
def short_audio():
    return speech_like(SECONDS, SAMPLE_RATE)


@pytest.fixture
def make_corpus(short_audio):
    """`make_corpus(root, paths, corrupt=())` writes audio files under `root`.

    `corrupt` paths get bytes that are not audio (an unreadable header);
    other files of `paths` get 0.2 s of speech-like audio; returns `root`.
    """

    def make(root, paths, corrupt=()):
        root = pathlib.Path(root)
        for relative in paths:
            write_wav(root / relative, short_audio, SAMPLE_RATE)
        for relative in corrupt:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"this is not audio, only text pretending to be a wav file")
        return root

    return make
