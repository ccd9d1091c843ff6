import csv
import json

import pytest

from ser_keras.utils.atomic import atomic_path, write_file_atomic, write_text_atomic


def test_write_file_atomic_binary_and_text(tmp_path):
    binary = write_file_atomic(tmp_path / "a" / "entry.bin", lambda file: file.write(b"\x00\x01"))
    assert binary.read_bytes() == b"\x00\x01"

    def write_rows(file):
        csv.writer(file).writerows([["path", "label"], ["x.wav", "anger"]])

    table = write_file_atomic(tmp_path / "table.csv", write_rows, binary=False)
    # newline="" lets csv write its own "\r\n" row endings, unchanged.
    assert table.read_bytes() == b"path,label\r\nx.wav,anger\r\n"
    assert oct(table.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "table.csv"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "state.json", json.dumps({"epoch": 3}))

    def fail(file):
        file.write(b"{half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_file_atomic(path, fail)
    assert json.loads(path.read_text()) == {"epoch": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_temporary_name_ending(tmp_path):
    with atomic_path(tmp_path / "best.keras") as temporary:
        assert temporary.name.startswith(".best.keras.") and temporary.name.endswith(".tmp.keras")
        temporary.write_text("model")
    with atomic_path(tmp_path / "a.wav", suffix=".tmp") as temporary:
        assert temporary.suffix == ".tmp"
        temporary.write_bytes(b"RIFF")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "best.keras"]
