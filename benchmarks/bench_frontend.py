"""Front-end speed and accuracy: librosa per file vs the batched LogMel path.

Decodes the EMO-DB files once (16 kHz, in memory, with the package's
`load_audio`), then times, in one process and interleaved round by round:

* librosa as it is normally called per file:
  `librosa.feature.melspectrogram` + `librosa.power_to_db` (the mel filterbank
  is rebuilt on every call, as librosa does), numpy's BLAS on one thread;
* librosa per file with the filterbank built once (`librosa.stft`, one matrix
  product, `power_to_db`): a stronger baseline;
* the package's path, `ser_keras.data.pipeline.compute_features` with a
  `LogMel` front-end (length-sorted batches, each padded to its own longest
  waveform, a traced tf.function), computing the same dB log-mel;
* the same path with the full preset (normalisation, fixed frame count).

It prints utterances per second (best and median round), the speed-up over
librosa, and the largest |difference| in dB between librosa and LogMel over
the bins within 80 dB of each utterance's peak.

Usage (from the project root):
    python -m benchmarks.bench_frontend [--data ../shared/data] [--presets fu2021 latif]
"""

import argparse
import os
import pathlib
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = pathlib.Path(
    os.environ.get("SER_KERAS_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=pathlib.Path,
        default=DEFAULT_DATA,
        help="folder holding emodb/wav/*.wav (default: %(default)s)",
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["fu2021", "latif"],
        help="front-end presets to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="compute_features batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="timed rounds per method, interleaved (default: %(default)s)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N files (default: all)"
    )
    parser.add_argument(
        "--no-trim",
        action="store_true",
        help="keep leading/trailing silence (default: trimmed, as the apps load)",
    )
    return parser.parse_args(argv)


def load_waveforms(data_dir, limit=None, trim=True):
    from ser_keras.audio.io import AudioError, load_audio

    wav_dir = pathlib.Path(data_dir) / "emodb" / "wav"
    if not wav_dir.is_dir():
        raise SystemExit(
            f"EMO-DB not found: {wav_dir} is not a folder. Pass --data <folder holding emodb/wav> "
            "or set SER_KERAS_SHARED_DATA."
        )
    paths = sorted(wav_dir.glob("*.wav"))[:limit]
    if not paths:
        raise SystemExit(f"No .wav files in {wav_dir}")
    waveforms, skipped = [], []
    for path in paths:
        try:
            waveforms.append(load_audio(path, sample_rate=16000, trim=trim))
        except AudioError as error:
            skipped.append((path.name, error.reason))
    for name, reason in skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    if not waveforms:
        raise SystemExit(f"None of the {len(paths)} files in {wav_dir} could be decoded.")
    return waveforms


def librosa_methods(frontend):
    """librosa per file, with numpy's BLAS on one thread.

    librosa's mel projection is a BLAS matrix product; with OpenBLAS's default
    threads it ran about 3x slower on the shared 2-core machine (threads
    fighting the other processes), so the baseline is given one thread.
    """
    import librosa
    from threadpoolctl import threadpool_limits

    stft_args = {
        "n_fft": frontend.fft_length,
        "hop_length": frontend.frame_step,
        "win_length": frontend.frame_length,
        "window": frontend.window,
        "center": frontend.center,
    }
    mel_args = {
        "sr": frontend.sample_rate,
        "n_mels": frontend.num_mels,
        "fmin": frontend.min_frequency,
        "fmax": frontend.max_frequency,
    }

    def plain(waveforms):
        with threadpool_limits(limits=1, user_api="blas"):
            return [
                librosa.power_to_db(
                    librosa.feature.melspectrogram(y=w, **stft_args, **mel_args),
                    top_db=frontend.top_db,
                ).T
                for w in waveforms
            ]

    filterbank = librosa.filters.mel(n_fft=frontend.fft_length, **mel_args)

    def cached_filterbank(waveforms):
        with threadpool_limits(limits=1, user_api="blas"):
            return [
                librosa.power_to_db(
                    filterbank @ (np.abs(librosa.stft(w, **stft_args)) ** 2),
                    top_db=frontend.top_db,
                ).T
                for w in waveforms
            ]

    return plain, cached_filterbank


def max_difference_db(reference, actual):
    worst = 0.0
    for expected, got in zip(reference, actual, strict=True):
        if expected.shape != got.shape:
            raise RuntimeError(f"shape mismatch: librosa {expected.shape} vs LogMel {got.shape}")
        keep = expected > expected.max() - 80.0
        worst = max(worst, float(np.abs(expected - got)[keep].max()))
    return worst


def bench_preset(preset, waveforms, batch_size, rounds):
    from ser_keras.data.pipeline import compute_features
    from ser_keras.features.logmel import LogMel

    frontend_db = LogMel.from_preset(preset, normalization=None, num_frames=None)
    frontend_full = LogMel.from_preset(preset)
    plain, cached_filterbank = librosa_methods(frontend_db)
    methods = {
        "librosa melspectrogram + power_to_db, per file": plain,
        "librosa, filterbank built once, per file": cached_filterbank,
        f"compute_features + LogMel, dB (batch {batch_size})": lambda w: compute_features(
            frontend_db, w, batch_size=batch_size
        ),
        f"compute_features + LogMel, full preset (batch {batch_size})": lambda w: compute_features(
            frontend_full, w, batch_size=batch_size
        ),
    }
    outputs = {name: method(waveforms) for name, method in methods.items()}  # warm-up
    names = list(methods)
    difference = max_difference_db(outputs[names[0]], outputs[names[2]])
    difference_cached = max_difference_db(outputs[names[1]], outputs[names[2]])
    times = {name: [] for name in methods}
    cpu_times = {name: [] for name in methods}
    for _ in range(rounds):
        for name, method in methods.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            method(waveforms)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    return times, cpu_times, difference, difference_cached


def _table_row(name, baseline, times, cpu_times, count):
    """Markdown row: throughput of `name` and its speed-up over `baseline`."""
    best, median, cpu = min(times[name]), float(np.median(times[name])), min(cpu_times[name])
    speed_best = min(times[baseline]) / best
    speed_median = float(np.median(times[baseline])) / median
    speed_cpu = min(cpu_times[baseline]) / cpu
    return (
        f"| {name} | {count / best:.0f} | {count / median:.0f} | {count / cpu:.0f} "
        f"| {speed_best:.1f}x | {speed_median:.1f}x | {speed_cpu:.1f}x |"
    )


def main(argv=None):
    args = parse_args(argv)
    if args.rounds < 1 or args.batch_size < 1:
        raise SystemExit(
            f"--rounds and --batch-size must be >= 1 (got {args.rounds}, {args.batch_size})"
        )
    load_before = os.getloadavg()
    waveforms = load_waveforms(args.data, args.limit, trim=not args.no_trim)

    import librosa
    import tensorflow as tf

    seconds = np.array([len(w) for w in waveforms]) / 16000.0
    print(
        f"EMO-DB: {len(waveforms)} utterances, {seconds.sum():.1f} s of audio "
        f"(min {seconds.min():.2f} s, mean {seconds.mean():.2f} s, max {seconds.max():.2f} s), "
        f"{'trimmed' if not args.no_trim else 'untrimmed'}"
    )
    print(
        f"CPU cores visible: {os.cpu_count()}; TF {tf.__version__}, librosa {librosa.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}; "
        f"load average at start {load_before[0]:.2f}"
    )
    count = len(waveforms)
    for preset in args.presets:
        times, cpu_times, difference, difference_cached = bench_preset(
            preset, waveforms, args.batch_size, args.rounds
        )
        names = list(times)
        print(f"\n## {preset} ({args.rounds} interleaved rounds)")
        print(
            "| method | utt/s best | utt/s median | utt per CPU-second (best) "
            "| speed-up, wall best | speed-up, wall median | speed-up, CPU time |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        plain, cached = names[0], names[1]
        for name in names:
            print(_table_row(name, plain, times, cpu_times, count))
        print(f"| *relative to: {cached}* | | | | | | |")
        for name in names[2:]:
            print(_table_row(name, cached, times, cpu_times, count))
        print(
            f"largest |librosa - LogMel| on bins within 80 dB of the peak: {difference:.5f} dB "
            f"(filterbank-once librosa: {difference_cached:.5f} dB)"
        )
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
