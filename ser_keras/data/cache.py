"""A waveform cache: decode each audio file once, read it back afterwards.

`WaveformCache.load(utterances)` returns the decoded waveforms of a corpus
listing (`ser_keras.audio.io.load_audio`: mono, resampled, trimmed). Each file
is decoded once per set of decoding options and stored as one `.npy` entry;
later loads read the entries back (about 0.1 ms per file). An entry is keyed
on the file's absolute path, size and modification time, so a file that
changes is decoded again; a change of any decoding option selects another
folder of entries. Files that cannot be used are remembered too (with the
reason), so that a bad file is not decoded again on every run until it
changes. `WaveformCache.check(utterances)` makes the same decision without
holding the waveforms: what `python -m ser_keras.corpora describe` reports.

Layout under `directory` (default `default_cache_dir() / "waveforms"`):

```
<directory>/<options>/options.json     the decoding options, for people
<directory>/<options>/<aa>/<path>-<size>-<mtime_ns>.npy        float32 [n]
<directory>/<options>/<aa>/<path>-<size>-<mtime_ns>.skip.json  {"path", "reason", "kind"}
```
where `<options>` is a digest of the decoding options and `<path>` one of the
file's absolute path (`<aa>` its first two characters).

Every entry is written to a temporary file in the same folder and moved into
place with `os.replace`, so an interrupted build never leaves half an entry,
and entries already written stay valid. An entry that cannot be read back
(e.g. truncated by a power cut) is decoded again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import threading
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from ser_keras.audio.io import (
    DECODER_VERSION,
    AudioError,
    AudioOptions,
    check_file,
    load_audio,
)
from ser_keras.corpora.records import SkippedFile, Utterance
from ser_keras.utils.atomic import write_file_atomic

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
"""Version of the entry layout; part of each options folder's digest."""

_ENTRY_SUFFIX = ".npy"
_SKIP_SUFFIX = ".skip.json"


def default_cache_dir() -> pathlib.Path:
    """The package's cache root.

    Returns:
        `$SER_KERAS_CACHE` when set, else `$XDG_CACHE_HOME/ser_keras` when
        `XDG_CACHE_HOME` is set, else `~/.cache/ser_keras`.
    """
    configured = os.environ.get("SER_KERAS_CACHE")
    if configured:
        return pathlib.Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return pathlib.Path(xdg).expanduser() / "ser_keras"
    return pathlib.Path.home() / ".cache" / "ser_keras"


@dataclasses.dataclass
class CachedCorpus:
    """The decoded waveforms of a corpus listing.

    Attributes:
        utterances: The usable utterances, in the order given.
        waveforms: One mono float32 waveform [samples] per utterance.
        skipped: Files that could not be used, with the reason, in the order
            given.
        sample_rate: Rate of every waveform, in Hz.
        num_from_cache: Files read back from the cache (usable or skipped).
        num_decoded: Files decoded in this call (usable or skipped).
    """

    utterances: list[Utterance]
    waveforms: list[np.ndarray]
    skipped: list[SkippedFile]
    sample_rate: int = 16000
    num_from_cache: int = 0
    num_decoded: int = 0

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> np.ndarray:
        """Duration of each waveform in seconds, float64 [utterances]."""
        return np.array([w.shape[0] for w in self.waveforms], dtype=np.float64) / self.sample_rate


@dataclasses.dataclass
class _Slot:
    """The state of one distinct file during a load."""

    path: str
    stem: str | None = None  # entry name without suffix; None when not cacheable
    waveform: np.ndarray | None = None
    reason: str | None = None
    usable: bool = False  # decodes (or decoded) to a waveform


class WaveformCache:
    """Decodes audio files once per decoding options and reads them back after.

    Args:
        directory: Folder of the cache; `None` for
            `default_cache_dir() / "waveforms"`. Created when first written.
        sample_rate: Output rate in Hz (an integer: one rate per corpus).
        trim: Whether to trim leading and trailing non-speech.
        trim_db, trim_frame_length, trim_hop_length, remove_pauses,
            min_duration, silence_floor_db, resample_quality: Decoding
            options, as in `ser_keras.audio.io.load_audio` (defaults there).
        num_workers: Threads decoding files not yet cached (libsndfile and
            soxr release the GIL); `None` for `min(4, os.cpu_count())`.

    Example:

    ```python
    listing = load_corpus("emodb", "data/emodb")
    corpus = WaveformCache().load(listing.utterances)
    corpus.waveforms[0]  # float32 [samples] at 16 kHz
    ```
    """

    def __init__(
        self,
        directory=None,
        sample_rate: int = 16000,
        trim: bool = True,
        *,
        trim_db: float = AudioOptions.trim_db,
        trim_frame_length: float = AudioOptions.trim_frame_length,
        trim_hop_length: float = AudioOptions.trim_hop_length,
        remove_pauses: bool = AudioOptions.remove_pauses,
        min_duration: float = AudioOptions.min_duration,
        silence_floor_db: float = AudioOptions.silence_floor_db,
        resample_quality: str = AudioOptions.resample_quality,
        num_workers: int | None = None,
    ):
        if sample_rate is None:
            raise ValueError(
                "sample_rate must be a positive integer for a cache (one rate per corpus), "
                "received None"
            )
        self.options = AudioOptions(
            sample_rate=sample_rate,
            trim=trim,
            trim_db=trim_db,
            trim_frame_length=trim_frame_length,
            trim_hop_length=trim_hop_length,
            remove_pauses=remove_pauses,
            min_duration=min_duration,
            silence_floor_db=silence_floor_db,
            resample_quality=resample_quality,
        )
        if num_workers is None:
            num_workers = min(4, os.cpu_count() or 1)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive integer, received {num_workers!r}")
        self.num_workers = num_workers
        self.directory = pathlib.Path(
            default_cache_dir() / "waveforms" if directory is None else directory
        ).expanduser()
        self._options_digest = hashlib.sha256(
            json.dumps(self._options_record(), sort_keys=True).encode("utf-8")
        ).hexdigest()[:16]
        self._write_lock = threading.Lock()
        self._write_failed = False

    @property
    def sample_rate(self) -> int:
        return self.options.sample_rate

    @property
    def options_digest(self) -> str:
        """Digest of the decoding options (and entry and decoder versions)."""
        return self._options_digest

    @property
    def entries_directory(self) -> pathlib.Path:
        """The folder holding this option set's entries."""
        return self.directory / self.options_digest

    def _options_record(self) -> dict:
        return {
            "cache_format_version": CACHE_FORMAT_VERSION,
            "decoder_version": DECODER_VERSION,
            **self.options.to_dict(),
        }

    def __repr__(self) -> str:
        return (
            f"WaveformCache(directory={str(self.directory)!r}, "
            f"options={self.options!r}, num_workers={self.num_workers})"
        )

    # Loading ---------------------------------------------------------------

    def load(self, utterances: Iterable[Utterance], progress: bool = True) -> CachedCorpus:
        """Returns the waveforms of `utterances`, decoding only what is not cached.

        Args:
            utterances: Corpus records (anything with a `.path`).
            progress: Show a progress bar on stderr.

        Returns:
            A `CachedCorpus`: usable utterances and their waveforms in the
            order given, and the files skipped with their reasons (a missing
            file, a file `load_audio` rejects).

        Raises:
            Whatever unexpected error (not `AudioError`) decoding raises, after
            every entry already decoded has been written.
        """
        utterances = list(utterances)
        slots, num_from_cache, num_decoded = self._resolve(utterances, progress, keep=True)
        kept, waveforms, skipped = [], [], []
        for utterance, slot, first in _by_utterance(utterances, slots):
            if slot.usable:
                kept.append(utterance)
                waveforms.append(slot.waveform)
            elif first:
                skipped.append(SkippedFile(path=os.fspath(utterance.path), reason=slot.reason))
        logger.info(
            "waveform cache %s: %d files read back, %d decoded, %d skipped",
            self.entries_directory,
            num_from_cache,
            num_decoded,
            len(skipped),
        )
        return CachedCorpus(
            utterances=kept,
            waveforms=waveforms,
            skipped=skipped,
            sample_rate=self.sample_rate,
            num_from_cache=num_from_cache,
            num_decoded=num_decoded,
        )

    def check(
        self, utterances: Iterable[Utterance], progress: bool = True
    ) -> tuple[list[Utterance], list[SkippedFile]]:
        """Which utterances `load` returns and which files it skips, with the reasons.

        The same decision as `load` (the same decoding and checks, the same
        cached entries), without holding the waveforms: a file with a cached
        entry is not read at all, and a file decoded here is written to the
        cache and dropped, so a later `load` reads it back. This is what
        `python -m ser_keras.corpora describe` reports.

        Args:
            utterances: Corpus records (anything with a `.path`).
            progress: Show a progress bar on stderr.

        Returns:
            `(usable, skipped)`: the utterances `load` keeps, in the order
            given, and the files it skips as `SkippedFile`s.
        """
        utterances = list(utterances)
        slots, _, _ = self._resolve(utterances, progress, keep=False)
        usable, skipped = [], []
        for utterance, slot, first in _by_utterance(utterances, slots):
            if slot.usable:
                usable.append(utterance)
            elif first:
                skipped.append(SkippedFile(path=os.fspath(utterance.path), reason=slot.reason))
        return usable, skipped

    def _resolve(self, utterances, progress: bool, keep: bool):
        """Looks every distinct file up in the cache and decodes the misses.

        Returns `(slots by absolute path, files found in the cache, files
        decoded)`; with `keep` False no waveform is kept in the slots.
        """
        slots: dict[str, _Slot] = {}
        for utterance in utterances:
            path = os.path.abspath(os.fspath(utterance.path))
            if path not in slots:
                slots[path] = _Slot(path)

        entries = str(self.entries_directory)
        num_from_cache = 0
        misses: list[_Slot] = []
        with _progress_bar(len(slots), progress, "waveform cache") as bar:
            for slot in slots.values():
                if self._lookup(slot, entries, read=keep):
                    num_from_cache += 1
                    bar.update(1)
                elif slot.reason is not None:  # not cacheable (missing file)
                    bar.update(1)
                else:
                    misses.append(slot)
            if misses:
                bar.set_description("decoding audio")
                self._decode_all(misses, bar, keep)
        return slots, num_from_cache, len(misses)

    def _lookup(self, slot: _Slot, entries: str, read: bool = True) -> bool:
        """Fills `slot` from the cache; False on a miss (slot.stem then set).

        With `read` False a waveform entry is only checked to exist (the
        slot is marked usable without reading it).
        """
        try:
            stat = os.stat(slot.path)
        except OSError:
            try:
                check_file(slot.path)  # the reason in load_audio's words
            except AudioError as error:
                slot.reason = error.reason
            else:  # gone and back between the two calls
                slot.reason = "file not found"
            return False
        digest = hashlib.sha256(os.fsencode(slot.path)).hexdigest()[:32]
        slot.stem = f"{digest[:2]}/{digest}-{stat.st_size}-{stat.st_mtime_ns}"
        entry = os.path.join(entries, slot.stem + _ENTRY_SUFFIX)
        if not read and os.path.isfile(entry):
            slot.usable = True
            return True
        try:
            waveform = _read_waveform(entry)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, EOFError) as error:
            logger.warning("unreadable cache entry %s (%s); decoding again", entry, error)
            return False
        else:
            if waveform.dtype == np.float32 and waveform.ndim == 1 and waveform.size > 0:
                slot.waveform = waveform
                slot.usable = True
                return True
            logger.warning("malformed cache entry %s; decoding again", entry)
            return False
        skip = os.path.join(entries, slot.stem + _SKIP_SUFFIX)
        try:
            with open(skip, encoding="utf-8") as file:
                record = json.load(file)
            slot.reason = str(record["reason"])
            return True
        except FileNotFoundError:
            return False
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("unreadable cache entry %s (%s); decoding again", skip, error)
            return False

    def _decode_all(self, misses: Sequence[_Slot], bar, keep: bool = True) -> None:
        self._write_options_file()
        if self.num_workers == 1 or len(misses) == 1:
            for slot in misses:
                self._decode_one(slot, keep)
                bar.update(1)
            return
        executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.num_workers, len(misses)), thread_name_prefix="ser_keras-decode"
        )
        try:
            futures = [executor.submit(self._decode_one, slot, keep) for slot in misses]
            for future in concurrent.futures.as_completed(futures):
                future.result()  # re-raises an unexpected decoding error
                bar.update(1)
        finally:
            # On an error or Ctrl-C: drop files not started, let the running
            # ones finish writing their entries, then re-raise.
            executor.shutdown(wait=True, cancel_futures=True)

    def _decode_one(self, slot: _Slot, keep: bool = True) -> None:
        try:
            waveform = load_audio(slot.path, **self.options.to_dict())
        except AudioError as error:
            slot.reason = error.reason
            record = {"path": slot.path, "reason": error.reason, "kind": error.kind}
            self._write(slot.stem + _SKIP_SUFFIX, _json_writer(record))
        else:
            slot.usable = True
            self._write(slot.stem + _ENTRY_SUFFIX, _npy_writer(waveform))
            if keep:
                slot.waveform = waveform
        self._remove_stale(slot.stem)

    # Writing ---------------------------------------------------------------

    def _write(self, relative: str, writer) -> None:
        """Writes an entry atomically; a failure to write only warns (once)."""
        target = self.entries_directory / relative
        try:
            # ".tmp" ending: a leftover temporary file never looks like an entry.
            write_file_atomic(target, writer, suffix=".tmp")
        except OSError as error:
            with self._write_lock:
                if not self._write_failed:
                    self._write_failed = True
                    warnings.warn(
                        f"cannot write the waveform cache entry {target} ({error}); "
                        "continuing without caching",
                        RuntimeWarning,
                        stacklevel=2,
                    )

    def _write_options_file(self) -> None:
        path = self.entries_directory / "options.json"
        if not path.exists():
            self._write("options.json", _json_writer(self._options_record()))

    def _remove_stale(self, stem: str) -> None:
        """Removes the entries of earlier versions of the same file."""
        folder, name = stem.split("/")
        prefix = name.rsplit("-", 2)[0] + "-"
        keep = (name + _ENTRY_SUFFIX, name + _SKIP_SUFFIX)
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.entries_directory / folder):
                if entry.name.startswith(prefix) and entry.name not in keep:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def clear(self) -> None:
        """Deletes every entry of every option set under `directory`."""
        if self.directory.is_dir():
            shutil.rmtree(self.directory)


# The header np.save writes for a little-endian float32 vector (format 1.0).
_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_HEADER = re.compile(rb"\{'descr': '<f4', 'fortran_order': False, 'shape': \((\d+),\), \} *\n")


def _read_waveform(path: str) -> np.ndarray:
    """Reads a float32 vector written by `np.save`.

    Parses the header with a pattern rather than `np.load`'s `literal_eval`
    (a third of the read time of a short entry); any other header goes
    through `np.load`. A truncated entry raises ValueError.
    """
    with open(path, "rb") as file:
        prefix = file.read(10)
        match = None
        if prefix[:8] == _NPY_MAGIC and len(prefix) == 10:
            match = _NPY_HEADER.fullmatch(file.read(int.from_bytes(prefix[8:10], "little")))
        if match is None:
            file.seek(0)
            return np.load(file, allow_pickle=False)
        count = int(match.group(1))
        waveform = np.fromfile(file, dtype=np.float32, count=count)
        if waveform.shape[0] != count or file.read(1):
            raise ValueError(f"expected {count} samples, the entry holds another size")
        return waveform


def _npy_writer(array: np.ndarray):
    def write(file):
        np.save(file, array, allow_pickle=False)

    return write


def _json_writer(record: dict):
    def write(file):
        file.write(json.dumps(record, indent=1, sort_keys=True).encode("utf-8"))

    return write


def _by_utterance(utterances, slots):
    """Yields `(utterance, its slot, whether it is the slot's first utterance)`."""
    seen = set()
    for utterance in utterances:
        slot = slots[os.path.abspath(os.fspath(utterance.path))]
        yield utterance, slot, slot.path not in seen
        seen.add(slot.path)


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool, description: str):
    from tqdm import tqdm

    bar = tqdm(
        total=total,
        desc=description,
        disable=not enabled,
        unit="file",
        file=sys.stderr,
        leave=False,
    )
    try:
        yield bar
    finally:
        bar.close()


__all__ = ["CACHE_FORMAT_VERSION", "CachedCorpus", "WaveformCache", "default_cache_dir"]
