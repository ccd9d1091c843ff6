"""Decoding audio files into mono float32 waveforms at one sample rate.

Every waveform the package trains on, evaluates on or serves goes through
`load_audio`: decode any format soundfile (libsndfile) reads, mix to mono,
resample with soxr, and trim leading and trailing non-speech. Files that
cannot be used raise `AudioError`, whose `reason` is what a corpus listing
shows for a skipped file.

Silence removal follows the papers: Latif et al. (paper 002) "removed silence
pauses from the utterances"; Fu et al. (paper 004) compute spectrograms at
16 kHz. The papers do not say how silence was detected; here it is an energy
criterion in the manner of `librosa.effects.trim`: a frame is non-speech when
its mean-square energy is more than `trim_db` dB below the loudest frame.

Reference:
    Latif et al., "Multi-task semi-supervised adversarial autoencoding for
    speech emotion recognition", IEEE Trans. Affective Computing (2020),
    Section 4.2.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat

import numpy as np

from ser_keras.utils.validation import positive_number

# Extensions of the formats libsndfile reads, mapped to soundfile's format
# name; an extension counts as audio only where this soundfile build has the
# format (MP3 needs libsndfile >= 1.1). The format itself is sniffed from the
# file's header, so a FLAC stream named `.wav` still decodes.
_EXTENSION_FORMATS = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".opus": "OGG",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".aifc": "AIFF",
    ".au": "AU",
    ".snd": "AU",
    ".caf": "CAF",
    ".w64": "W64",
    ".rf64": "RF64",
    ".sph": "NIST",
}

# 8-bit PCM (about 48 dB of dynamic range) is skipped and listed rather than
# decoded, as the product brief lists "8-bit" among the files a job reports.
# mu-law and A-law are 8 bits per sample too, but companded to a 14/13-bit
# range (telephone speech), and are accepted.
UNSUPPORTED_SUBTYPES = {
    "PCM_U8": "8-bit unsigned PCM",
    "PCM_S8": "8-bit signed PCM",
    "DPCM_8": "8-bit differential PCM",
}

RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")

# Stable codes of `AudioError.kind`.
AUDIO_ERROR_KINDS = (
    "missing",  # no such file
    "unsupported_format",  # extension of no audio format soundfile reads
    "unreadable",  # libsndfile cannot decode it (corrupt, cut short inside a header, not audio)
    "unsupported_encoding",  # 8-bit PCM
    "truncated",  # the header announces more audio than the file holds
    "empty",  # zero bytes or zero samples
    "non_finite",  # NaN or infinite samples
    "silent",  # peak below the silence floor
    "too_short",  # shorter than min_duration after trimming
)

# Bump when the decoding below changes its output, so that caches keyed on
# the decoding options (ser_keras.data.cache) rebuild. (Not bumped for the
# truncation and empty-file checks: the corpus listings apply them before a
# file reaches the cache, so no cached entry is read for such a file.)
DECODER_VERSION = 1

# Bytes per sample of the encodings whose size is fixed, to turn the bytes a
# truncated file lacks into frames.
_SUBTYPE_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "ULAW": 1,
    "ALAW": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
}
# libsndfile's header log line of a data chunk larger than the rest of the
# file: "data : 32000 (should be 15978)" (WAV), "SSND : ..." (AIFF).
_SHORT_DATA_CHUNK = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)
# A data size at least this large is a stream written without knowing its
# length (0xFFFFFFFF, sox's 0x7FFFF000...), not a truncated file.
_UNKNOWN_DATA_SIZE = 0x7FFF0000


def _audio_extensions() -> tuple[str, ...]:
    import soundfile

    available = soundfile.available_formats()
    return tuple(ext for ext, name in _EXTENSION_FORMATS.items() if name in available)


AUDIO_EXTENSIONS = _audio_extensions()
"""Lower-case file extensions `load_audio` accepts (compared case-insensitively)."""

KNOWN_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au")
"""Extensions recognised as audio when scanning corpus folders: a file with one of
these that `load_audio` cannot decode is listed as skipped with the reason,
rather than silently ignored."""


class AudioError(ValueError):
    """An audio file that cannot be used.

    Attributes:
        path: The file, as given.
        reason: Why, in words (what a listing of skipped files shows).
        kind: A stable code, one of `AUDIO_ERROR_KINDS`.
    """

    def __init__(self, path, reason: str, kind: str):
        if kind not in AUDIO_ERROR_KINDS:
            raise ValueError(f"kind must be one of {AUDIO_ERROR_KINDS}, received {kind!r}")
        self.path = os.fspath(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across processes
        return (type(self), (self.path, self.reason, self.kind))


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says.

    Attributes:
        path: The file.
        sample_rate: Samples per second per channel.
        channels: Number of channels.
        frames: Samples per channel.
        duration: `frames / sample_rate`, in seconds.
        format: soundfile's container name (`"WAV"`, `"FLAC"`, `"OGG"`...).
        subtype: soundfile's encoding name (`"PCM_16"`, `"VORBIS"`...).
    """

    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


@dataclasses.dataclass(frozen=True)
class AudioOptions:
    """How `load_audio` turns a file into a waveform (one place for the defaults).

    The defaults are this package's choices (the papers name none but the
    16 kHz rate of paper 004): a 40 dB trim keeps weak onsets and word-final
    fricatives while removing the ~1 s pauses around RAVDESS sentences;
    100 ms is shorter than any utterance found in the shared corpora.

    Args:
        sample_rate: Output rate in Hz, or `None` to keep the file's rate.
        trim: Whether to trim leading and trailing non-speech.
        trim_db: A frame is non-speech when its energy is more than this many
            dB below the loudest frame's.
        trim_frame_length: Energy frame length, in seconds.
        trim_hop_length: Energy frame step, in seconds (the trim resolution).
        remove_pauses: Also cut out non-speech inside the utterance (every
            stretch that `trim` would remove at the ends), as paper 002 removes
            "silence pauses". Implies trimming.
        min_duration: Shortest usable waveform after trimming, in seconds.
        silence_floor_db: A file whose peak (after mixing to mono) is below
            this level in dBFS is silent.
        resample_quality: soxr quality recipe, one of `RESAMPLE_QUALITIES`.
    """

    sample_rate: int | None = 16000
    trim: bool = True
    trim_db: float = 40.0
    trim_frame_length: float = 0.064
    trim_hop_length: float = 0.016
    remove_pauses: bool = False
    min_duration: float = 0.1
    silence_floor_db: float = -60.0
    resample_quality: str = "HQ"

    def __post_init__(self):
        rate = self.sample_rate
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0
        ):
            raise ValueError(f"sample_rate must be a positive integer or None, received {rate!r}")
        if rate is not None:
            object.__setattr__(self, "sample_rate", int(rate))
        for name in ("trim_db", "trim_frame_length", "trim_hop_length"):
            positive_number(name, getattr(self, name))
        if self.trim_hop_length > self.trim_frame_length:
            raise ValueError(
                f"trim_hop_length ({self.trim_hop_length!r}) must not exceed "
                f"trim_frame_length ({self.trim_frame_length!r})"
            )
        if not _is_number(self.min_duration) or self.min_duration < 0:
            raise ValueError(
                f"min_duration must be a number >= 0 (seconds), received {self.min_duration!r}"
            )
        if not _is_number(self.silence_floor_db) or self.silence_floor_db > 0:
            raise ValueError(
                f"silence_floor_db must be a level <= 0 dBFS, received {self.silence_floor_db!r}"
            )
        if self.resample_quality not in RESAMPLE_QUALITIES:
            raise ValueError(
                f"resample_quality must be one of {RESAMPLE_QUALITIES}, "
                f"received {self.resample_quality!r}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_number(value) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _check_path(path) -> str:
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in AUDIO_EXTENSIONS:
        shown = extension or "(none)"
        raise AudioError(
            path,
            f"unsupported file extension {shown}; audio files are {', '.join(AUDIO_EXTENSIONS)}",
            "unsupported_format",
        )
    check_file(path)
    return path


def check_file(path) -> None:
    """Checks that `path` is a file holding some bytes, before it is decoded.

    One home for these reasons: `load_audio` (and so the waveform cache
    training reads) and the corpus listings (`ser_keras.corpora.scan`) give
    the same words.

    Args:
        path: The file.

    Raises:
        AudioError: a missing file or a broken symbolic link (kind
            `"missing"`), a folder or a file that cannot be read
            (`"unreadable"`), a file of 0 bytes (`"empty"`).
    """
    path = os.fspath(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise AudioError(
                path,
                f"broken symbolic link: its target {os.readlink(path)!r} does not exist",
                "missing",
            ) from None
        raise AudioError(path, "file not found", "missing") from None
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise AudioError(path, f"cannot read the file: {reason}", "unreadable") from None
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(path, "is a folder, not an audio file", "unreadable")
    if status.st_size == 0:
        raise AudioError(path, "empty file (0 bytes)", "empty")


def check_not_truncated(path, info) -> None:
    """Checks that a file holds all the audio its header announces.

    libsndfile opens a WAV or AIFF file cut short (an interrupted copy or
    download) without an error and reads the frames that are there; only
    its header log tells. Such a file is refused rather than used in part.

    Args:
        path: The file, for the error.
        info: The open `soundfile.SoundFile` or `soundfile.info(path)`
            (anything with `frames`, `channels`, `subtype`, `extra_info`).

    Raises:
        AudioError: kind `"truncated"`, with the reason
            `"truncated: header says N frames, file holds M"`.
    """
    match = _SHORT_DATA_CHUNK.search(getattr(info, "extra_info", "") or "")
    if match is None:
        return
    chunk, declared, held = match.group(1), int(match.group(2)), int(match.group(3))
    if declared >= _UNKNOWN_DATA_SIZE or declared <= held:
        return
    sample_bytes = _SUBTYPE_BYTES.get(info.subtype)
    if sample_bytes is None:
        raise AudioError(
            os.fspath(path),
            f"truncated: header says {declared} bytes of audio, file holds {held}",
            "truncated",
        )
    if chunk == "SSND":  # AIFF's sound data chunk starts with 8 bytes of offset and block size
        declared -= 8
    header_frames = declared // (sample_bytes * max(1, int(info.channels)))
    if header_frames > info.frames:  # a missing pad byte is no missing audio
        raise AudioError(
            os.fspath(path),
            f"truncated: header says {header_frames} frames, file holds {int(info.frames)}",
            "truncated",
        )


def audio_info(path) -> AudioInfo:
    """Reads an audio file's header.

    Args:
        path: The file.

    Returns:
        An `AudioInfo`.

    Raises:
        AudioError: the file is missing, has no audio extension, or its
            header cannot be read.
    """
    import soundfile

    path = _check_path(path)
    try:
        info = soundfile.info(path)
    except Exception as error:  # libsndfile reports anything it cannot parse
        raise AudioError(path, f"cannot decode: {_describe(error)}", "unreadable") from error
    return AudioInfo(
        path=path,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        duration=float(info.frames) / info.samplerate if info.samplerate else 0.0,
        format=info.format,
        subtype=info.subtype,
    )


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _decode(path: str) -> tuple[np.ndarray, int]:
    """Decodes all channels as float32 [frames, channels]; checks the encoding."""
    import soundfile

    try:
        with soundfile.SoundFile(path) as sound:
            if sound.subtype in UNSUPPORTED_SUBTYPES:
                raise AudioError(
                    path,
                    f"{UNSUPPORTED_SUBTYPES[sound.subtype]} audio ({sound.format} "
                    f"{sound.subtype}) is not supported; convert it to 16-bit PCM",
                    "unsupported_encoding",
                )
            check_not_truncated(path, sound)
            sample_rate = int(sound.samplerate)
            samples = sound.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as error:  # corrupt, truncated or not audio at all
        raise AudioError(path, f"cannot decode: {_describe(error)}", "unreadable") from error
    if sample_rate <= 0:
        raise AudioError(path, f"header gives sample rate {sample_rate}", "unreadable")
    return samples, sample_rate


def load_audio(
    path,
    sample_rate: int | None = 16000,
    trim: bool = True,
    *,
    trim_db: float = AudioOptions.trim_db,
    trim_frame_length: float = AudioOptions.trim_frame_length,
    trim_hop_length: float = AudioOptions.trim_hop_length,
    remove_pauses: bool = AudioOptions.remove_pauses,
    min_duration: float = AudioOptions.min_duration,
    silence_floor_db: float = AudioOptions.silence_floor_db,
    resample_quality: str = AudioOptions.resample_quality,
) -> np.ndarray:
    """Decodes an audio file into a mono float32 waveform.

    Steps: decode (any format soundfile reads: WAV, FLAC, OGG Vorbis/Opus,
    AIFF, MP3...) to float32 in [-1, 1]; reject 8-bit PCM, empty files,
    files cut short (`check_not_truncated`) and NaN/inf samples; mix all
    channels to mono by averaging them (stereo is fine; channels in opposite
    phase cancel); reject a file whose peak is below `silence_floor_db`;
    resample to `sample_rate` with soxr; trim leading and trailing non-speech
    (see `trim_silence`); reject a result shorter than `min_duration`. The
    level is left as recorded (no normalisation).

    Args:
        path: The audio file.
        sample_rate: Output rate in Hz, or `None` to keep the file's rate.
        trim: Whether to trim leading and trailing non-speech.
        trim_db: Frames more than this many dB below the loudest frame are
            non-speech.
        trim_frame_length: Energy frame length, in seconds.
        trim_hop_length: Energy frame step, in seconds.
        remove_pauses: Also cut out non-speech inside the utterance (paper
            002 removes silence pauses). Applies even when `trim` is False.
        min_duration: Shortest usable result, in seconds.
        silence_floor_db: Peak level (dBFS) below which a file is silent.
        resample_quality: soxr quality: `"QQ"`, `"LQ"`, `"MQ"`, `"HQ"` or
            `"VHQ"`.

    Returns:
        np.ndarray float32 of shape [samples], C-contiguous, owning its data.

    Raises:
        AudioError: the file cannot be used; `.kind` is one of
            `AUDIO_ERROR_KINDS` and `.reason` says why in words.
        ValueError: an argument is out of range (naming the value).
    """
    options = AudioOptions(
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
    return _load(_check_path(path), options)


def _load(path: str, options: AudioOptions) -> np.ndarray:
    samples, file_rate = _decode(path)
    if samples.shape[0] == 0:
        raise AudioError(path, "empty: the file holds no audio samples", "empty")
    finite = np.isfinite(samples)
    if not finite.all():
        count = int(samples.size - np.count_nonzero(finite))
        raise AudioError(
            path, f"{count} of {samples.size} samples are NaN or infinite", "non_finite"
        )
    waveform = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)

    peak = float(np.max(np.abs(waveform)))
    if peak < 10.0 ** (options.silence_floor_db / 20.0):
        level = "-inf" if peak == 0.0 else f"{20.0 * math.log10(peak):.1f}"
        mono = " after mixing to mono" if samples.shape[1] > 1 else ""
        raise AudioError(
            path,
            f"silent: peak level {level} dBFS{mono} is below the "
            f"{options.silence_floor_db:g} dBFS floor",
            "silent",
        )

    output_rate = file_rate if options.sample_rate is None else options.sample_rate
    if output_rate != file_rate:
        import soxr

        waveform = soxr.resample(waveform, file_rate, output_rate, quality=options.resample_quality)

    if options.trim or options.remove_pauses:
        intervals = nonsilent_intervals(
            waveform,
            output_rate,
            top_db=options.trim_db,
            frame_length=options.trim_frame_length,
            hop_length=options.trim_hop_length,
        )
        if intervals.shape[0] == 0:
            waveform = waveform[:0]
        elif options.remove_pauses:
            waveform = np.concatenate([waveform[start:end] for start, end in intervals])
        else:
            waveform = waveform[intervals[0, 0] : intervals[-1, 1]]

    duration = waveform.shape[0] / output_rate
    if duration < options.min_duration:
        raise AudioError(
            path,
            f"too short: {duration:.3f} s"
            + (" after trimming silence" if options.trim or options.remove_pauses else "")
            + f", minimum {options.min_duration:g} s",
            "too_short",
        )
    # A copy, so that a trimmed view does not keep the untrimmed buffer alive.
    return np.array(waveform, dtype=np.float32, order="C", copy=True)


def _frame_samples(seconds: float, sample_rate: int) -> int:
    return max(1, int(round(seconds * sample_rate)))


def frame_energy_db(waveform: np.ndarray, frame_length: int, hop_length: int) -> np.ndarray:
    """Mean-square energy per frame in dB relative to the loudest frame.

    Frames are centred (the waveform is padded with `frame_length // 2`
    zeros at each end), as `librosa.feature.rms(center=True,
    pad_mode="constant")` frames them; values are floored at -100 dB as
    `librosa.power_to_db(amin=1e-10)` floors them.

    Args:
        waveform: Mono float samples [n].
        frame_length: Frame length in samples.
        hop_length: Frame step in samples.

    Returns:
        np.ndarray float64 [frames], <= 0, with 0 at the loudest frame.
    """
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be 1-D, received shape {waveform.shape}")
    if frame_length < 1 or hop_length < 1:
        raise ValueError(
            f"frame_length and hop_length must be >= 1, received {frame_length}, {hop_length}"
        )
    pad = frame_length // 2
    squares = np.zeros(waveform.shape[0] + 2 * pad + 1, dtype=np.float64)
    np.square(waveform, out=squares[1 + pad : 1 + pad + waveform.shape[0]], dtype=np.float64)
    cumulative = np.cumsum(squares)  # cumulative[i] = sum of the first i padded squares
    padded_length = waveform.shape[0] + 2 * pad
    num_frames = 1 + max(0, padded_length - frame_length) // hop_length
    starts = np.arange(num_frames) * hop_length
    ends = np.minimum(starts + frame_length, padded_length)
    power = np.maximum(cumulative[ends] - cumulative[starts], 0.0) / frame_length
    power_db = 10.0 * np.log10(np.maximum(power, 1e-10))
    return power_db - max(float(power_db.max()), -100.0)


def nonsilent_intervals(
    waveform: np.ndarray,
    sample_rate: int,
    top_db: float = AudioOptions.trim_db,
    frame_length: float = AudioOptions.trim_frame_length,
    hop_length: float = AudioOptions.trim_hop_length,
) -> np.ndarray:
    """Sample intervals whose energy is within `top_db` of the loudest frame.

    The same criterion and boundaries as `librosa.effects.split` (and, for
    the first and last interval, `librosa.effects.trim`), with frame sizes in
    seconds: a frame is speech when its energy is above `-top_db` dB
    relative to the loudest frame; frame `k` maps to sample `k * hop`.

    Args:
        waveform: Mono float samples [n].
        sample_rate: Rate of `waveform` in Hz.
        top_db: Threshold below the loudest frame, in dB.
        frame_length: Frame length in seconds.
        hop_length: Frame step in seconds.

    Returns:
        np.ndarray int64 [intervals, 2] of non-empty `[start, end)` sample
        indices, in order; [0, 2] when no frame qualifies. (As in librosa,
        an all-zero waveform is one loud-as-its-peak interval: the silence
        floor in `load_audio` catches it first.)
    """
    frame = _frame_samples(frame_length, sample_rate)
    hop = _frame_samples(hop_length, sample_rate)
    speech = frame_energy_db(waveform, frame, hop) > -top_db
    if not speech.any():
        return np.zeros((0, 2), dtype=np.int64)
    edges = np.flatnonzero(np.diff(speech.astype(np.int8))) + 1
    if speech[0]:
        edges = np.concatenate([[0], edges])
    if speech[-1]:
        edges = np.concatenate([edges, [speech.shape[0]]])
    edges = np.minimum(edges * hop, waveform.shape[0]).astype(np.int64)
    intervals = edges.reshape(-1, 2)
    return intervals[intervals[:, 1] > intervals[:, 0]]


def trim_silence(
    waveform: np.ndarray,
    sample_rate: int,
    top_db: float = AudioOptions.trim_db,
    frame_length: float = AudioOptions.trim_frame_length,
    hop_length: float = AudioOptions.trim_hop_length,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Trims leading and trailing non-speech, as `librosa.effects.trim` does.

    Args:
        waveform: Mono float samples [n].
        sample_rate: Rate of `waveform` in Hz.
        top_db: Threshold below the loudest frame, in dB.
        frame_length: Frame length in seconds.
        hop_length: Frame step in seconds.

    Returns:
        `(trimmed, (start, end))`: the view `waveform[start:end]` and its
        bounds; empty when the whole waveform is below the threshold.
    """
    intervals = nonsilent_intervals(waveform, sample_rate, top_db, frame_length, hop_length)
    if intervals.shape[0] == 0:
        return waveform[:0], (0, 0)
    start, end = int(intervals[0, 0]), int(intervals[-1, 1])
    return waveform[start:end], (start, end)


def is_audio_path(path) -> bool:
    """Whether `path` has the extension of an audio format `load_audio` reads."""
    return os.path.splitext(os.fspath(path))[1].lower() in AUDIO_EXTENSIONS


__all__ = [
    "AUDIO_ERROR_KINDS",
    "AUDIO_EXTENSIONS",
    "AudioError",
    "AudioInfo",
    "AudioOptions",
    "audio_info",
    "check_file",
    "check_not_truncated",
    "frame_energy_db",
    "is_audio_path",
    "load_audio",
    "nonsilent_intervals",
    "trim_silence",
]
