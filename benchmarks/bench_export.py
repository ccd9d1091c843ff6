"""Exported SavedModel vs the Keras model: single-utterance latency, batch-64 throughput.

For each model preset (attention CNN-BLSTM, Fu et al. 2020; default
`fu2021_cpu`, and `fu2021`, the paper's sizes) this builds the multi-task model
(7 emotions, 3 speakers; untrained weights: the cost does not depend on their
values), exports it behind the `fu2021` LogMel front-end with
`ser_keras.export.saved_model.export_saved_model`, reloads it with
`tf.saved_model.load`, and times in one process, interleaved:

* `SavedModel`: the `serving_default` signature (waveform + lengths in), the
  function TF Serving runs, outputs fetched as numpy;
* `Keras predict_on_batch`: a Functional model `(waveform, lengths) ->
  LogMel -> model` (the same front-end layer and weights) through
  `predict_on_batch`, Keras' low-overhead compiled inference call;
* `Keras __call__` (only `--eager-calls` calls, default 1, and one batch):
  the same model called eagerly, `model(inputs, training=False)`. Eager
  execution runs the BLSTMs' 252 time steps op by op: seconds per call, so it
  is timed a few times only, to show what the traced paths save.

Latency: one utterance (`--seconds` of noise at 16 kHz) per call, `--calls`
timed calls per method after `--warmup` calls, interleaved in blocks of 10;
p50 and p99 of the wall time, and the median CPU time (process time, all
threads) per call. Throughput: a batch of `--batch-size` utterances of 2-5 s
(padded, with their lengths), `--rounds` interleaved rounds; utterances per
second (best and median round) and per CPU-second. Ratios are Keras time /
SavedModel time (> 1: the SavedModel is faster). The largest |difference|
between the SavedModel's and Keras' emotion probabilities is printed as a
check that both compute the same thing.

Usage (from the project root):
    python -m benchmarks.bench_export [--presets fu2021_cpu fu2021] [--calls 200] [--eager-calls 1]
"""

import argparse
import os
import pathlib
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

SAMPLE_RATE = 16000
BLOCK = 10  # latency calls per method before switching to the next one
METHODS = ("SavedModel", "Keras predict_on_batch")
EAGER = "Keras __call__"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["fu2021_cpu", "fu2021"],
        help="AttentionCNNBLSTM presets to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=200,
        help="timed latency calls per method (default: %(default)s)",
    )
    parser.add_argument(
        "--paper-calls",
        type=int,
        default=50,
        help="timed latency calls per method for the paper preset fu2021 (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed calls first (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=3.0,
        help="utterance length for latency (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="throughput batch (default: %(default)s)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="throughput rounds per method (default: %(default)s)"
    )
    parser.add_argument(
        "--paper-rounds",
        type=int,
        default=2,
        help="throughput rounds per method for fu2021 (default: %(default)s)",
    )
    parser.add_argument(
        "--eager-calls",
        type=int,
        default=1,
        help="single-utterance calls of the eager Keras __call__, 0 skips it "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("calls", "paper_calls", "batch_size", "rounds", "paper_rounds"):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')} must be at least 1; received {getattr(args, name)}"
            )
    if args.eager_calls < 0:
        parser.error(f"--eager-calls must be >= 0; received {args.eager_calls}")
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive; received {args.seconds}")
    return args


def build(preset, export_root):
    """The model, the end-to-end Keras model, the loaded SavedModel, export seconds."""
    import keras
    import tensorflow as tf

    from ser_keras.export.saved_model import export_saved_model
    from ser_keras.features.logmel import LogMel
    from ser_keras.models.attention_cnn_blstm import AttentionCNNBLSTM

    keras.utils.set_random_seed(0)
    model = AttentionCNNBLSTM.from_preset(preset, num_speakers=3)
    frontend = LogMel.from_preset("fu2021")
    waveform = keras.Input((None,), name="waveform")
    lengths = keras.Input((), dtype="int32", name="lengths")
    end_to_end = keras.Model(
        {"waveform": waveform, "lengths": lengths}, model(frontend((waveform, lengths)))
    )
    started = time.perf_counter()
    path = export_saved_model(
        model,
        export_root,
        preset,
        frontend=frontend,
        label_names={
            "emotion": ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
        },
        verify=False,
    )
    export_seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    loaded = tf.saved_model.load(str(path))
    return model, end_to_end, loaded, export_seconds, size


def methods(end_to_end, loaded):
    import tensorflow as tf

    signature = loaded.signatures["serving_default"]

    def saved_model(inputs):
        outputs = signature(
            waveform=tf.constant(inputs["waveform"]), lengths=tf.constant(inputs["lengths"])
        )
        return {k: v.numpy() for k, v in outputs.items()}["emotion_probabilities"]

    def keras_predict(inputs):
        return end_to_end.predict_on_batch(inputs)["emotion"]

    def keras_call(inputs):
        return end_to_end(inputs, training=False)["emotion"].numpy()

    return dict(zip(METHODS, (saved_model, keras_predict), strict=True)), keras_call


def batch_of(waveforms):
    from ser_keras.export.serving import waveform_batch

    return waveform_batch(waveforms, sample_rate=SAMPLE_RATE)


def timed(function, inputs):
    """(wall seconds, CPU seconds, result) of one call."""
    start, cpu_start = time.perf_counter(), time.process_time()
    result = function(inputs)
    return time.perf_counter() - start, time.process_time() - cpu_start, result


def bench_preset(preset, args, rng, export_root):
    calls = args.paper_calls if preset == "fu2021" else args.calls
    rounds = args.paper_rounds if preset == "fu2021" else args.rounds
    started = time.perf_counter()
    _, end_to_end, loaded, export_seconds, size = build(preset, export_root)
    functions, eager = methods(end_to_end, loaded)

    single = batch_of([0.1 * rng.standard_normal(int(args.seconds * SAMPLE_RATE))])
    batch = batch_of(
        [
            0.1 * rng.standard_normal(int(rng.uniform(2.0, 5.0) * SAMPLE_RATE))
            for _ in range(args.batch_size)
        ]
    )
    outputs = {name: function(batch) for name, function in functions.items()}  # also warms up
    eager_batch = None
    if args.eager_calls:
        eager_batch, _, outputs[EAGER] = timed(eager, batch)
    difference = max(
        float(np.max(np.abs(outputs[name] - outputs["SavedModel"])))
        for name in outputs
        if name != "SavedModel"
    )
    for function in functions.values():
        for _ in range(args.warmup):
            function(single)

    latency = {name: [] for name in METHODS}
    latency_cpu = {name: [] for name in METHODS}
    done = 0
    while done < calls:
        block = min(BLOCK, calls - done)
        for name, function in functions.items():
            for _ in range(block):
                wall, cpu, _ = timed(function, single)
                latency[name].append(wall)
                latency_cpu[name].append(cpu)
        done += block

    eager_latency = [timed(eager, single)[0] for _ in range(args.eager_calls)]

    throughput = {name: [] for name in METHODS}
    throughput_cpu = {name: [] for name in METHODS}
    for _ in range(rounds):
        for name, function in functions.items():
            wall, cpu, _ = timed(function, batch)
            throughput[name].append(wall)
            throughput_cpu[name].append(cpu)

    print(
        f"\n## {preset}: {calls} latency calls per method ({args.seconds:g} s utterance), "
        f"{rounds} throughput rounds (batch {args.batch_size}, "
        f"{batch['lengths'].sum() / SAMPLE_RATE:.0f} s of audio)"
    )
    print(
        f"export {export_seconds:.1f} s, SavedModel {size / 1e6:.1f} MB; largest |Keras - "
        f"SavedModel| emotion probability: {difference:.2g}"
    )
    print(
        "\n| method | latency p50 (ms) | latency p99 (ms) | CPU ms per call (median) | "
        "batch utt/s best | batch utt/s median | utt per CPU-second (best) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    stats = {}
    for name in METHODS:
        p50, p99 = np.percentile(latency[name], [50, 99]) * 1000
        cpu = np.median(latency_cpu[name]) * 1000
        best = args.batch_size / min(throughput[name])
        median = args.batch_size / np.median(throughput[name])
        per_cpu = args.batch_size / min(throughput_cpu[name])
        stats[name] = (p50, p99, cpu, best, median, per_cpu)
        print(
            f"| {name} | {p50:.1f} | {p99:.1f} | {cpu:.1f} | {best:.1f} | {median:.1f} | "
            f"{per_cpu:.1f} |"
        )
    print(
        "\n| ratio (Keras / SavedModel time; > 1: SavedModel faster) | latency p50 | "
        "latency p99 | CPU per call | throughput best | throughput median | throughput per "
        "CPU-second |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    reference = stats["SavedModel"]
    for name in METHODS[1:]:
        p50, p99, cpu, best, median, per_cpu = stats[name]
        print(
            f"| {name} | {p50 / reference[0]:.2f}x | {p99 / reference[1]:.2f}x | "
            f"{cpu / reference[2]:.2f}x | {reference[3] / best:.2f}x | "
            f"{reference[4] / median:.2f}x | {reference[5] / per_cpu:.2f}x |"
        )
    if eager_latency:
        median = np.median(eager_latency) * 1000
        print(
            f"| {EAGER} ({len(eager_latency)} calls, 1 batch) | "
            f"{median / reference[0]:.0f}x (median {median:.0f} ms) | | | "
            f"{eager_batch / (args.batch_size / reference[3]):.1f}x "
            f"({args.batch_size / eager_batch:.1f} utt/s) | | |"
        )
    print(f"({preset} took {time.perf_counter() - started:.0f} s)", flush=True)


def main(argv=None):
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    from ser_keras.models.attention_cnn_blstm import PRESETS

    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown:
        print(f"error: unknown presets {unknown}; available: {sorted(PRESETS)}", file=sys.stderr)
        return 2
    devices = [d.device_type for d in tf.config.list_physical_devices()]
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores, devices {devices}, load average "
        f"{os.getloadavg()[0]:.2f} at start"
    )
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench_export_") as export_root:
        for preset in args.presets:
            bench_preset(preset, args, rng, pathlib.Path(export_root))
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
