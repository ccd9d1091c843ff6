"""ser_keras.cli: unknown corpus kinds, OS errors without tracebacks, output folder
checks, help texts that show a default only where it says something."""

import argparse
import errno
import os
import pathlib

import pytest

from ser_keras import cli
from ser_keras.utils.atomic import write_file_atomic

# -------------------------------------------------------- unknown corpus kind


def test_unknown_kind_is_named_not_reported_as_a_missing_folder(tmp_path):
    with pytest.raises(ValueError) as caught:
        cli.corpus_specs([f"foo:{tmp_path}"], "--savee", default_kind="savee")
    message = str(caught.value)
    assert message.startswith("--savee: Unknown corpus kind 'foo'")
    assert "savee, emodb, ravdess" in message and "folder" in message
    assert "not found" not in message


def test_misspelt_kind_gets_a_suggestion_and_is_checked_before_the_folder():
    with pytest.raises(ValueError, match=r"Unknown corpus kind 'svaee' \(did you mean 'savee'\?\)"):
        cli.corpus_specs(["svaee:/no/such/folder"], "--corpus")


def test_a_known_kind_with_a_missing_folder_still_says_so(tmp_path):
    with pytest.raises(ValueError, match="corpus folder not found"):
        cli.corpus_specs([f"emodb:{tmp_path / 'absent'}"], "--corpus", default_kind="savee")


def test_an_existing_folder_with_a_colon_in_its_name_is_a_folder(tmp_path):
    folder = tmp_path / "take:2"
    folder.mkdir()
    (spec,) = cli.corpus_specs([str(folder)], "--savee", default_kind="savee")
    assert (spec.kind, spec.directory) == ("savee", folder)


# ----------------------------------------------------- OS errors in run_main


def _parser():
    parser = argparse.ArgumentParser(prog="app")
    parser.add_argument("--out", default="runs/app")
    return parser


def _make_out(args):
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    return 0


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    return err


def test_out_that_is_a_file_is_one_error_line_with_the_path(tmp_path, capsys):
    taken = tmp_path / "results.txt"
    taken.write_text("not a folder")
    assert cli.run_main(_parser(), _make_out, ["--out", str(taken)]) == 2
    _one_error_line(capsys, str(taken), "a file is where a folder is needed")
    assert taken.read_text() == "not a folder"


def test_full_disk_is_one_error_line_with_the_path(tmp_path, capsys):
    target = tmp_path / "run" / "history.csv"

    def write_history(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    assert cli.run_main(_parser(), write_history, []) == 2
    _one_error_line(capsys, str(target), "No space left on device", "disk is full")


def test_a_failed_write_names_the_file_it_did_not_write(tmp_path, capsys):
    """write() on a full disk raises an OSError without a filename; the atomic writer adds it."""
    target = tmp_path / "run" / "results.json"

    def full_disk(file):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def run(args):
        write_file_atomic(target, full_disk)
        return 0

    assert cli.run_main(_parser(), run, []) == 2
    _one_error_line(capsys, str(target), "No space left on device")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_read_only_target_is_one_error_line(tmp_path, capsys):
    def read_only(args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "ro"))

    assert cli.run_main(_parser(), read_only, []) == 2
    _one_error_line(capsys, str(tmp_path / "ro"), "Permission denied")


def test_os_error_message_without_a_path_keeps_its_own_words():
    assert cli.os_error_message(FileNotFoundError("no such file: /x.wav")) == (
        "no such file: /x.wav"
    )
    assert cli.os_error_message(OSError(errno.ENOSPC, "No space left on device")).startswith(
        "No space left on device"
    )
    renamed = OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")
    assert cli.os_error_message(renamed).startswith("/a -> /b: Invalid cross-device link")


# ------------------------------------------------------- check_output_folder


def test_check_output_folder_accepts_new_and_existing_folders(tmp_path):
    assert cli.check_output_folder("--out", tmp_path) == tmp_path
    assert cli.check_output_folder("--out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()  # checks, creates nothing


def test_check_output_folder_refuses_a_file_and_a_path_under_a_file(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(ValueError) as caught:
        cli.check_output_folder("--out", taken)
    assert str(caught.value) == f"--out must be a folder, but '{taken}' is a file."
    with pytest.raises(ValueError) as caught:
        cli.check_output_folder("--export-dir", taken / "models")
    assert str(caught.value) == (
        f"--export-dir '{taken / 'models'}' cannot be created: '{taken}' is a file."
    )


def test_check_output_folder_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access

    def access(path, mode):
        return False if str(path) == str(locked) else real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    with pytest.raises(ValueError, match=rf"--out '{locked}' cannot be written: the folder is not"):
        cli.check_output_folder("--out", locked)
    with pytest.raises(ValueError, match=rf"nearest existing parent '{locked}' is not writable"):
        cli.check_output_folder("--out", locked / "run" / "x")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_check_output_folder_with_a_real_read_only_parent(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(ValueError, match="not writable"):
            cli.check_output_folder("--out", locked / "run")
    finally:
        locked.chmod(0o755)


# -------------------------------------------------------------- help texts


def _help(parser):
    return " ".join(parser.format_help().split())


def test_help_shows_a_default_only_where_it_says_something():
    parser = cli.app_parser("demo", "A demo.")
    parser.add_argument("--epochs", type=int, help="Override the preset's epochs.")
    parser.add_argument("--quiet", action="store_true", help="No progress lines.")
    parser.add_argument("--export-dir", default="saved_models", help="Export folder.")
    parser.add_argument("--cache-dir", default="~/.cache", help="Cache (default: ~/.cache).")
    parser.add_argument("--preset", default="quick", help="Preset. Default: quick, for a CPU.")
    parser.add_argument("--names", default=[], nargs="*", help="Names.")
    text = _help(parser)
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: [])" not in text
    assert "Override the preset's epochs. --quiet" in text
    assert "Export folder. (default: saved_models)" in text
    assert text.count("~/.cache") == 1  # not appended a second time
    assert text.count("quick") == 1


def test_help_of_common_arguments_has_no_default_none():
    parser = cli.app_parser("demo", "A demo.")
    cli.add_common_arguments(parser, default_out="runs/demo", export_help="Exported here.")
    text = _help(parser)
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: runs/demo)" in text and "(default: none)" in text  # --out, --strategy
    # --seed, --out, --export-dir, --strategy appended; --cache-dir's help states its own.
    assert text.count("(default:") == 5
    assert "~/.cache/ser_keras). --quiet" in text
    assert "Random seed. (default: 0)" in text
