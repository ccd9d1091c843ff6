"""File checks before decoding: broken links, zero-byte files, files cut short."""

import os
import struct

import numpy as np
import pytest

from ser_keras.audio.io import AudioError, check_file, load_audio
from tests.helpers import speech_like, write_wav

RATE = 16000


def _error(path):
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    return caught.value


def test_zero_byte_file_is_empty_not_an_unknown_format(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    error = _error(path)
    assert (error.kind, error.reason) == ("empty", "empty file (0 bytes)")


def test_broken_symbolic_link_names_its_target(tmp_path):
    link = tmp_path / "link.wav"
    os.symlink(tmp_path / "gone.wav", link)
    error = _error(link)
    assert error.kind == "missing"
    assert error.reason.startswith("broken symbolic link") and "gone.wav" in error.reason
    # A plain missing file keeps its reason.
    assert _error(tmp_path / "absent.wav").reason == "file not found"


@pytest.mark.parametrize(
    "subtype, channels, expected",
    [
        ("PCM_16", 1, "truncated: header says 16000 frames, file holds 7989"),
        ("PCM_24", 2, "truncated: header says 16000 frames, file holds 7996"),
        ("FLOAT", 1, "truncated: header says 16000 frames, file holds 7990"),
    ],
)
def test_wav_cut_to_half_its_bytes_is_refused(tmp_path, subtype, channels, expected):
    signal = speech_like(1.0, RATE)
    path = write_wav(tmp_path / "cut.wav", np.stack([signal] * channels, axis=1), RATE, subtype)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    error = _error(path)
    assert (error.kind, error.reason) == ("truncated", expected)


def test_aiff_cut_short_is_refused(tmp_path):
    path = write_wav(tmp_path / "cut.aiff", speech_like(1.0, RATE), RATE)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _error(path).reason == "truncated: header says 16000 frames, file holds 7986"


@pytest.mark.parametrize("declared", [0xFFFFFFFF, 32001], ids=["streamed", "odd_pad_byte"])
def test_streamed_wav_and_a_missing_pad_byte_are_not_truncation(tmp_path, declared):
    """A data size written before the length was known, or one byte over, loses no audio."""
    path = write_wav(tmp_path / "a.wav", speech_like(1.0, RATE), RATE)
    data = bytearray(path.read_bytes())
    start = data.find(b"data")
    data[start + 4 : start + 8] = struct.pack("<I", declared)
    path.write_bytes(bytes(data))
    assert load_audio(path, trim=False).shape[0] == RATE


def test_check_file_accepts_a_good_file_and_refuses_a_folder(tmp_path):
    check_file(write_wav(tmp_path / "a.wav", speech_like(0.2, RATE), RATE))
    with pytest.raises(AudioError, match="folder"):
        check_file(tmp_path)
