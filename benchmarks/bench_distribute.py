"""Training throughput: one device vs MirroredStrategy over 2 logical CPU devices.

Splits the CPU into 2 logical devices before TensorFlow starts, builds the
same `AttentionCNNBLSTM` (preset `fu2021_cpu`, the paper's graph scaled down
for a CPU, multi-task with a speaker head) twice from the same seed, once
under the default strategy and once under
`ser_keras.training.distribute.get_strategy("mirrored")` over the 2 logical
devices, and trains each for one epoch per round on the same in-memory
features (random log-mel-shaped arrays: throughput only, no accuracy), with
the same global batch, rounds interleaved. The first epoch of each (tracing)
is not timed.

It prints samples per second (best and median round), samples per
CPU-second, and the mirrored / single-device ratios. The 2 logical devices
share the same CPU cores, so no speed-up is expected here: the ratio shows
what replication, the per-step all-reduce of the gradients and the global
batch's loss scaling cost on one machine, not what several GPUs would give.

Usage (from the project root):
    python -m benchmarks.bench_distribute [--num-samples 256] [--batch-size 64] [--rounds 3]
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fu2021_cpu", help="AttentionCNNBLSTM preset.")
    parser.add_argument("--num-samples", type=int, default=256, help="Samples per epoch.")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="Global batch (paper: 64); split over replicas."
    )
    parser.add_argument("--num-speakers", type=int, default=4, help="Speaker classes (0: no head).")
    parser.add_argument("--rounds", type=int, default=3, help="Timed epochs per configuration.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and data.")
    args = parser.parse_args(argv)
    for name in ("num_samples", "batch_size", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; received {getattr(args, name)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    import keras
    import numpy as np

    from ser_keras.data.pipeline import make_dataset
    from ser_keras.models.attention_cnn_blstm import PRESETS, AttentionCNNBLSTM
    from ser_keras.training import distribute

    devices = [device.name for device in tf.config.list_logical_devices("CPU")][:2]
    strategies = {
        "single device": distribute.get_strategy("none"),
        "mirrored, 2 logical CPUs": distribute.get_strategy("mirrored", devices=devices),
    }
    mirrored = strategies["mirrored, 2 logical CPUs"]
    # Equal halves per replica (and a first batch that splits evenly, which
    # Keras' fit needs under MirroredStrategy).
    per_replica = distribute.per_replica_batch_size(args.batch_size, mirrored)

    preset = PRESETS[args.preset]
    rng = np.random.default_rng(args.seed)
    features = rng.normal(size=(args.num_samples, preset["num_frames"], preset["num_mels"]))
    features = features.astype("float32")
    labels = {"emotion": rng.integers(0, preset["num_emotions"], args.num_samples).astype("int32")}
    if args.num_speakers:
        labels["speaker"] = rng.integers(0, args.num_speakers, args.num_samples).astype("int32")
    dataset = make_dataset(features, labels, batch_size=args.batch_size)

    models = {}
    for name, strategy in strategies.items():
        keras.utils.set_random_seed(args.seed)
        with strategy.scope():
            model = AttentionCNNBLSTM.from_preset(args.preset, num_speakers=args.num_speakers)
            model.compile(optimizer="rmsprop")
        model.fit(dataset, epochs=1, shuffle=False, verbose=0)  # tracing, not timed
        models[name] = model

    load_start = os.getloadavg()[0]
    wall = {name: [] for name in models}
    cpu_time = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(dataset, epochs=1, shuffle=False, verbose=0)
            wall[name].append(time.perf_counter() - start)
            cpu_time[name].append(time.process_time() - start_cpu)
    load_end = os.getloadavg()[0]

    print(
        f"AttentionCNNBLSTM {args.preset} ({models['single device'].count_params()} parameters, "
        f"tasks {list(labels)}), {args.num_samples} samples per epoch, global batch "
        f"{args.batch_size} ({per_replica} per replica when mirrored), {args.rounds} timed "
        f"epochs each, interleaved."
    )
    print(
        f"TF {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU cores; load average {load_start:.1f} at the start, "
        f"{load_end:.1f} at the end."
    )
    print()
    print("| configuration | samples/s best | samples/s median | samples per CPU-second (best) |")
    print("|---|---:|---:|---:|")
    rates = {}
    for name in models:
        best = args.num_samples / min(wall[name])
        median = args.num_samples / statistics.median(wall[name])
        per_cpu = args.num_samples / min(cpu_time[name])
        rates[name] = (best, median, per_cpu)
        print(f"| {name} | {best:.1f} | {median:.1f} | {per_cpu:.1f} |")
    single, replicated = rates["single device"], rates["mirrored, 2 logical CPUs"]
    print()
    print(
        "mirrored / single device: "
        f"{replicated[0] / single[0]:.2f}x (wall, best), "
        f"{replicated[1] / single[1]:.2f}x (wall, median), "
        f"{replicated[2] / single[2]:.2f}x (per CPU-second)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
