"""Training throughput of the attention CNN-BLSTM on CPU, with and without XLA.

Builds the multi-task model (emotion + speaker heads, Fu et al. 2020) twice
from the same preset and seed, one compiled with `jit_compile=False` (the
traced TensorFlow graph) and one with `jit_compile=True` (XLA), and times
`train_on_batch` on the same fixed batches of random log-mel features, in
one process, interleaved in rounds so that load on the machine hits both
alike. Prints samples per second (median and best round) and the ratio
XLA / graph (> 1: XLA is faster), plus the CPU time per sample.

The first `--warmup` steps of each model (tracing, XLA compilation) are
timed separately and reported as the compile cost.

Usage (from the project root):
    python -m benchmarks.bench_train_throughput [--preset fu2021] [--batch-size 64]
        [--steps 5] [--rounds 3]

Reference:
    Fu et al., "An attention-based CNN-BLSTM for speaker-independent speech
    emotion recognition" (paper 004), Table 1 sizes (`--preset fu2021`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _time_steps(model, batches, steps):
    wall, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        features, labels = batches[step % len(batches)]
        model.train_on_batch(features, labels)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--preset", default="fu2021", help="AttentionCNNBLSTM preset.")
    parser.add_argument("--batch-size", type=int, default=64, help="Paper: 64.")
    parser.add_argument("--num-speakers", type=int, default=3, help="Speaker-head classes.")
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per round and mode.")
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved rounds.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed first steps per mode.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("batch_size", "steps", "rounds", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; received {getattr(args, name)}")

    import keras
    import numpy as np
    import tensorflow as tf

    from ser_keras.models.attention_cnn_blstm import AttentionCNNBLSTM

    rng = np.random.default_rng(args.seed)
    probe = AttentionCNNBLSTM.from_preset(args.preset, num_speakers=args.num_speakers)
    frames, mels = probe.num_frames, probe.num_mels
    num_emotions = probe.num_emotions
    parameters = probe.count_params()
    del probe
    batches = []
    for _ in range(2):
        features = rng.uniform(0.0, 1.0, (args.batch_size, frames, mels)).astype("float32")
        labels = {
            "emotion": rng.integers(0, num_emotions, args.batch_size).astype("int32"),
            "speaker": rng.integers(0, args.num_speakers, args.batch_size).astype("int32"),
        }
        batches.append((features, labels))

    models, compile_seconds = {}, {}
    for mode, jit in (("graph", False), ("xla", True)):
        keras.utils.set_random_seed(args.seed)
        model = AttentionCNNBLSTM.from_preset(args.preset, num_speakers=args.num_speakers)
        model.compile(optimizer="rmsprop", jit_compile=jit)
        start = time.perf_counter()
        _time_steps(model, batches, args.warmup)
        compile_seconds[mode] = time.perf_counter() - start
        models[mode] = model
        print(f"{mode}: first {args.warmup} steps (tracing/compiling) "
              f"{compile_seconds[mode]:.1f} s", flush=True)

    rates = {mode: [] for mode in models}
    cpu_per_sample = {mode: [] for mode in models}
    for round_index in range(args.rounds):
        for mode, model in models.items():
            wall, cpu = _time_steps(model, batches, args.steps)
            samples = args.steps * args.batch_size
            rates[mode].append(samples / wall)
            cpu_per_sample[mode].append(1000 * cpu / samples)
            print(f"round {round_index + 1}/{args.rounds} {mode}: {samples / wall:.2f} samples/s",
                  flush=True)

    print()
    print(f"Attention CNN-BLSTM preset {args.preset!r}: {parameters:,} parameters, input "
          f"{frames} x {mels}, batch {args.batch_size}; TF {tf.__version__}, Keras "
          f"{keras.__version__}, {os.cpu_count()} CPUs ({platform.processor() or 'cpu'})")
    print("| mode | samples/s (median) | samples/s (best) | CPU ms/sample | first steps (s) |")
    print("|---|---|---|---|---|")
    for mode in models:
        print(f"| {mode} | {statistics.median(rates[mode]):.2f} | {max(rates[mode]):.2f} | "
              f"{statistics.median(cpu_per_sample[mode]):.1f} | {compile_seconds[mode]:.1f} |")
    ratio = statistics.median(rates["xla"]) / statistics.median(rates["graph"])
    print(f"XLA / graph throughput ratio (median rounds): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
