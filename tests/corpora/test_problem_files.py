"""Problem files in a corpus: listed with a reason, and `describe` says what training uses.

A corpus folder with one file of each kind of fault (a broken symbolic link,
a WAV cut to half its bytes, a zero-byte file, silent, NaN, 8-bit and too
short files): the listing names each with its reason, and `python -m
ser_keras.corpora describe` counts exactly the utterances the waveform cache
(what training reads) keeps, with the cache's reasons.
"""

import json
import os
import pathlib

import numpy as np
import pytest

from ser_keras.corpora import load_corpus
from ser_keras.corpora.__main__ import main
from ser_keras.data.cache import WaveformCache
from tests.corpora.util import skipped_by_name
from tests.helpers import speech_like, write_wav

RATE = 16000


def _write_faulty_corpus(root: pathlib.Path, num_good: int = 3) -> dict[str, str]:
    """Writes `spk/*.wav`: good files and one of each fault; returns name -> expected reason."""
    speaker = root / "spk"
    for index in range(num_good):
        write_wav(speaker / f"good{index}.wav", speech_like(0.5, RATE, seed=index), RATE)
    full = write_wav(speaker / "cut.wav", speech_like(1.0, RATE), RATE)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])
    (speaker / "zero.wav").write_bytes(b"")
    os.symlink(speaker / "gone.wav", speaker / "link.wav")
    write_wav(speaker / "silent.wav", np.zeros(RATE // 2, np.float32), RATE, "FLOAT")
    nan = speech_like(0.5, RATE)
    nan[10] = np.nan
    write_wav(speaker / "nan.wav", nan, RATE, "FLOAT")
    write_wav(speaker / "eight.wav", speech_like(0.5, RATE), RATE, "PCM_U8")
    burst = np.zeros(RATE, np.float32)
    burst[RATE // 2 : RATE // 2 + 320] = 0.5  # 20 ms of sound in 1 s of silence
    write_wav(speaker / "short.wav", burst, RATE, "FLOAT")
    return {
        "cut.wav": "truncated: header says 16000 frames, file holds 7989",
        "zero.wav": "empty file (0 bytes)",
        "link.wav": "broken symbolic link",
        "silent.wav": "silent",
        "nan.wav": "NaN or infinite",
        "eight.wav": "8-bit",
        "short.wav": "too short",
    }


@pytest.fixture
def faulty(tmp_path):
    expected = _write_faulty_corpus(tmp_path / "corpus")
    return tmp_path / "corpus", expected


def test_listing_names_broken_links_empty_and_truncated_files(faulty):
    root, expected = faulty
    listing = load_corpus("folder", root, language="en")
    skipped = skipped_by_name(listing)
    assert skipped["link.wav"].startswith("broken symbolic link")
    assert "gone.wav" in skipped["link.wav"]
    assert skipped["zero.wav"] == "empty file (0 bytes)"
    assert skipped["cut.wav"] == expected["cut.wav"]
    # Header-level checks only: the files training rejects after decoding pass here.
    assert len(listing.utterances) == 7


def test_describe_counts_what_training_uses_with_the_same_reasons(faulty, tmp_path, capsys):
    root, expected = faulty
    cache_dir = tmp_path / "cache"
    assert main(["describe", "folder", str(root), "--language", "en", "--json",
                 "--cache-dir", str(cache_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)

    # What training reads: the listing, then the waveform cache the apps use.
    listing = load_corpus("folder", root, language="en")
    fresh = WaveformCache(tmp_path / "other_cache" / "waveforms", num_workers=1)
    training = fresh.load(listing.utterances, progress=False)
    training_skipped = {item.path: item.reason for item in [*listing.skipped, *training.skipped]}

    assert summary["audio_checked"] is True
    assert summary["utterances"] == len(training) == 3
    assert {item["path"]: item["reason"] for item in summary["skipped"]} == training_skipped
    reasons = {pathlib.Path(item["path"]).name: item["reason"] for item in summary["skipped"]}
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name], (name, reasons[name])
    assert summary["duration_seconds"] == pytest.approx(1.5, abs=0.01)

    # describe filled the cache that training then reads back without decoding.
    again = WaveformCache(cache_dir / "waveforms").load(listing.utterances, progress=False)
    assert again.num_decoded == 0 and len(again) == 3

    # A second describe reads no audio (cached entries are not even opened) and agrees.
    assert main(["describe", "folder", str(root), "--language", "en", "--json",
                 "--cache-dir", str(cache_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["utterances"] == 3


def test_describe_headers_only_says_what_it_did_not_check(faulty, tmp_path, capsys):
    root, _ = faulty
    assert main(["describe", "folder", str(root), "--language", "en", "--headers-only",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    text = capsys.readouterr().out
    assert "utterances  7" in text and "headers only" in text
    assert not (tmp_path / "cache").exists()  # nothing decoded, nothing written


def test_cache_check_keeps_no_waveforms_and_matches_load(faulty, tmp_path):
    root, _ = faulty
    listing = load_corpus("folder", root, language="en")
    cache = WaveformCache(tmp_path / "waveforms", num_workers=2)
    usable, skipped = cache.check(listing.utterances, progress=False)
    loaded = cache.load(listing.utterances, progress=False)
    assert usable == loaded.utterances
    assert skipped == loaded.skipped
    assert loaded.num_decoded == 0  # check() wrote every entry
