import argparse
import json
import pathlib
import types

import pytest

from ser_keras import cli
from ser_keras.corpora.records import SkippedFile

TWO_WORKERS = {"worker": ["host1:12345", "host2:12345"]}


def _parser(**options):
    parser = argparse.ArgumentParser(prog="app")
    cli.add_common_arguments(parser, **options)
    return parser


def _cluster_strategy(monkeypatch, task_type, index, cluster=None):
    """A stand-in strategy whose cluster resolver reads TF_CONFIG, as on a real cluster."""
    import tensorflow as tf

    config = {"cluster": cluster or TWO_WORKERS, "task": {"type": task_type, "index": index}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return types.SimpleNamespace(cluster_resolver=resolver, num_replicas_in_sync=2)


def test_common_arguments_defaults():
    args = _parser(default_out="runs/app", export_help="Exported here.").parse_args([])
    assert (args.seed, args.out, args.export_dir) == (0, "runs/app", "saved_models")
    assert not (args.no_export or args.resume or args.quiet)
    assert args.cache_dir is None and args.strategy == "none"
    assert not hasattr(args, "synthetic_per_emotion")


def test_common_arguments_leave_out_what_an_app_lacks():
    args = _parser(default_out=None, synthetic_help="Size.", strategy=False).parse_args(
        ["--synthetic-per-emotion", "3", "--resume"]
    )
    assert args.synthetic_per_emotion == 3 and args.resume
    for missing in ("out", "export_dir", "no_export", "strategy"):
        assert not hasattr(args, missing)


def test_common_arguments_help_texts(capsys):
    parser = _parser(default_out="runs/x", export_help="The best model goes here.",
                     seed_help="Seed of the first run.", resume_help="Continue the search.")
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("The best model goes here.", "Seed of the first run.",
                     "Continue the search.", "mirrored", "multiworker"):
        assert expected in text


def test_wrong_strategy_exits_with_status_2_and_names_it(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser(default_out="runs/x").parse_args(["--strategy", "horovod"])
    assert exit_info.value.code == 2
    assert "'horovod'" in capsys.readouterr().err


def test_run_main_reports_errors_with_status_2(capsys):
    parser = _parser(default_out="runs/x")

    def failing(args):
        raise ValueError(f"--out {args.out!r} is not usable")

    assert cli.run_main(parser, failing, ["--out", "/bad"]) == 2
    assert capsys.readouterr().err == "error: --out '/bad' is not usable\n"
    assert cli.run_main(parser, lambda args: 0, []) == 0

    def missing(args):
        raise FileNotFoundError("no such file: /x.wav")

    assert cli.run_main(parser, missing, []) == 2
    assert "error: no such file: /x.wav" in capsys.readouterr().err


def test_run_main_extra_errors_and_bugs():
    parser = argparse.ArgumentParser()

    def tool_failed(args):
        raise RuntimeError("espeak-ng did not start")

    assert cli.run_main(parser, tool_failed, [], errors=(RuntimeError,)) == 2
    with pytest.raises(RuntimeError):  # a bug is not hidden as a usage error
        cli.run_main(parser, tool_failed, [])


@pytest.mark.parametrize(
    "convert, text, expected",
    [
        (cli.positive_int, "0", "expected a positive integer, received '0'"),
        (cli.positive_int, "two", "received 'two'"),
        (cli.non_negative_int, "-1", "expected a non-negative integer, received '-1'"),
    ],
)
def test_integer_types_name_the_value(convert, text, expected):
    with pytest.raises(argparse.ArgumentTypeError, match=expected):
        convert(text)


def test_integer_types_accept():
    assert cli.positive_int("3") == 3 and cli.non_negative_int("0") == 0


def test_check_at_least_names_option_and_value():
    cli.check_at_least([("--epochs", None, 1), ("--seed", 0, 0)])
    with pytest.raises(ValueError, match=r"--folds must be at least 1\. Received: 0"):
        cli.check_at_least([("--epochs", 3, 1), ("--folds", 0, 1)])


def test_check_fraction():
    cli.check_fraction("--validation-fraction", None, 0.0, 0.5)
    cli.check_fraction("--validation-fraction", 0.2, 0.0, 0.5)
    with pytest.raises(ValueError, match=r"must be in \(0, 0.5\)\. Received: 0.5"):
        cli.check_fraction("--validation-fraction", 0.5, 0.0, 0.5)


def test_parse_name_list():
    assert cli.parse_name_list(" mtl, stl,mtl ", ("stl", "mtl", "xl"), "--settings") == [
        "mtl",
        "stl",
    ]
    with pytest.raises(ValueError, match=r"--settings .*stl, mtl.*Received: 'stl,bogus'"):
        cli.parse_name_list("stl,bogus", ("stl", "mtl"), "--settings")
    with pytest.raises(ValueError, match="Received: ','"):
        cli.parse_name_list(",", ("stl",), "--settings")


def test_corpus_specs(tmp_path):
    (tmp_path / "emodb").mkdir()
    specs = cli.corpus_specs([f"emodb:{tmp_path}/emodb", str(tmp_path)], "--corpus",
                             default_kind="savee")
    assert [(s.kind, s.directory) for s in specs] == [
        ("emodb", tmp_path / "emodb"),
        ("savee", tmp_path),
    ]
    (folder,) = cli.corpus_specs([f"folder:bn:{tmp_path}"], "--additional")
    assert (folder.kind, folder.language) == ("folder", "bn")
    assert cli.describe_specs(specs + [folder], " + ") == (
        f"emodb:{tmp_path}/emodb + savee:{tmp_path} + folder:bn:{tmp_path}"
    )
    assert cli.corpus_specs(None, "--corpus") == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("emodb:/no/such/emodb", r"--corpus emodb:/no/such/emodb: corpus folder not found"),
        ("/no/kind", r"--corpus: Expected KIND:DIR .*Received: '/no/kind'"),
        ("opera:/tmp", r"--corpus: .*Received: 'opera:/tmp'"),
    ],
)
def test_corpus_specs_errors_name_the_value(text, expected):
    with pytest.raises(ValueError, match=expected):
        cli.corpus_specs([text], "--corpus")


def test_synthetic_corpus_spec_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="'opera'"):
        cli.synthetic_corpus_spec(tmp_path, "opera", seed=0, per_emotion=1)
    with pytest.raises(ValueError, match="per_speaker=None"):
        cli.synthetic_corpus_spec(tmp_path, "folder", seed=0, language="fr")
    assert not any(tmp_path.iterdir())


def test_report_skipped_prints_a_limited_list(capsys):
    skipped = [SkippedFile(f"/data/{number}.wav", "unreadable") for number in range(3)]
    warnings = [SkippedFile("/data/odd.wav", "no speaker in the name")]
    entries = cli.report_skipped("emodb", skipped, warnings, limit=2)
    assert entries == [entry.to_dict() for entry in skipped]
    printed = capsys.readouterr().out
    assert "emodb: warning: /data/odd.wav: no speaker in the name" in printed
    assert "skipped 3 file(s)" in printed and "/data/1.wav: unreadable" in printed
    assert "/data/2.wav" not in printed and "... and 1 more" in printed
    assert cli.report_skipped("emodb", []) == []
    assert capsys.readouterr().out == ""


def test_strategy_from_args(monkeypatch):
    assert cli.strategy_from_args(types.SimpleNamespace(strategy="none")) is None
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        cli.strategy_from_args(types.SimpleNamespace(strategy="multiworker"))


def test_global_batch_must_split_evenly_over_the_replicas():
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    cli.check_global_batch(64, two_replicas)
    cli.check_global_batch(63, None)  # one device
    with pytest.raises(ValueError, match=r"--batch-size 63: .*2 replicas.*received 63"):
        cli.check_global_batch(63, two_replicas)


def test_single_process_writes_and_exports(tmp_path):
    outputs = cli.worker_outputs(tmp_path / "run", None, export_dir=tmp_path / "models")
    assert outputs == cli.WorkerOutputs(tmp_path / "run", tmp_path / "models", True)
    assert cli.worker_outputs(tmp_path / "run", None).export_dir is None  # --no-export


def test_chief_worker_writes_to_out_and_exports(tmp_path, monkeypatch):
    strategy = _cluster_strategy(monkeypatch, "worker", 0)
    outputs = cli.worker_outputs(tmp_path / "run", strategy, export_dir=tmp_path / "models")
    assert outputs == cli.WorkerOutputs(tmp_path / "run", tmp_path / "models", True)


def test_non_chief_worker_gets_a_private_folder_and_exports_nothing(
    tmp_path, monkeypatch, capsys
):
    strategy = _cluster_strategy(monkeypatch, "worker", 1)
    outputs = cli.worker_outputs(tmp_path / "run", strategy, export_dir=tmp_path / "models")
    assert outputs.out_dir == tmp_path / "run" / "workers" / "worker_1"
    assert outputs.export_dir is None and not outputs.is_chief
    assert "Not the chief worker" in capsys.readouterr().out
    # With a "chief" job, worker 0 is not the chief either.
    cluster = {"chief": ["host0:12345"], **TWO_WORKERS}
    strategy = _cluster_strategy(monkeypatch, "worker", 0, cluster)
    outputs = cli.worker_outputs(tmp_path / "run", strategy, export_dir=tmp_path / "models")
    assert outputs.out_dir == tmp_path / "run" / "workers" / "worker_0"
    assert outputs.export_dir is None
    assert not pathlib.Path(tmp_path / "run").exists()  # nothing is created here
