"""Atomic file writing: one implementation for reports, caches, models and corpora.

A file is written to a temporary file in the destination folder (same file
system) and moved onto the destination with `os.replace`, so an interrupted
job never leaves a half-written file that a later run would read.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yields a temporary path next to `path`; moves it onto `path` if the block succeeds.

    The temporary file lives in the destination folder (same file system), so
    the final `os.replace` is atomic. On an exception (a `KeyboardInterrupt`
    included) the temporary file is removed and `path` is left untouched. The
    file written is readable by everyone (mode 0644).

    Args:
        path: Destination file; missing parent folders are created.
        suffix: Ending of the temporary file's name; `None` for `".tmp"` plus
            the destination's suffix (e.g. `.tmp.keras`), for writers that
            take the format from the name. Give `".tmp"` where a leftover
            temporary file must not look like a file of the destination's
            type.

    Yields:
        `pathlib.Path` of the temporary file to write.

    Raises:
        OSError: Writing failed; an error that names no file (a full disk
            seen by `write()`) is raised again with `path` as its
            `filename`, so that the message says which file was not written.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"Cannot write a file at {str(path)!r}: it is a folder.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = ".tmp" + path.suffix
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    temporary = pathlib.Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(temporary, path)
    except OSError as error:
        if error.filename is None and error.errno is not None:
            # A failed write() (a full disk) names no file: name the destination.
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    finally:
        if temporary.exists():
            temporary.unlink()


def write_file_atomic(path, write, *, binary=True, suffix=None) -> pathlib.Path:
    """Calls `write(file)` on an open temporary file, then moves it onto `path`.

    Args:
        path: Destination file; missing parent folders are created.
        write: Callable taking the open file object.
        binary: Open the file in binary mode (`"wb"`); otherwise text mode,
            UTF-8, with `newline=""` (as the `csv` module wants).
        suffix: Ending of the temporary file's name (see `atomic_path`).

    Returns:
        The destination path.
    """
    path = pathlib.Path(path)
    with atomic_path(path, suffix=suffix) as temporary:
        if binary:
            with open(temporary, "wb") as file:
                write(file)
        else:
            with open(temporary, "w", encoding="utf-8", newline="") as file:
                write(file)
    return path


def write_text_atomic(path, text: str) -> pathlib.Path:
    """Writes `text` (UTF-8) to `path` atomically; returns the path."""
    path = pathlib.Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
