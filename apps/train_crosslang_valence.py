"""Cross-language binary valence with the multi-task ResNet-LSTM and unlabelled speech.

Reproduces Latif et al. (paper 000): train on labelled emotional speech in one
language (the paper: English IEMOCAP) and measure binary valence UAR on
corpora in other languages (the paper: EMO-DB, EMOVO, URDU), in the settings
of Table 3:

- `stl`: the single-task ResNet-LSTM baseline;
- `mtl_no_extra`: multi-task with a language-identification head, without
  additional (non-emotional) data;
- `mtl_extra`: multi-task with language and domain heads, trained also on
  unlabelled speech in several languages;
- `mtl_extra_language`, `mtl_extra_domain`: the ablation of Figure 2 (one
  auxiliary head only, with the additional data).

The unlabelled data of the multi-task settings includes the target corpora's
audio without its labels (as in the paper, where the target languages are
among the language-identification classes). Language identification needs
at least two languages, so `mtl_no_extra` uses it too: with one labelled
language it would be a one-class task. `--no-target-audio` keeps every target
utterance out of training. Model selection uses validation speakers of the
labelled corpora, never the targets. `--target-samples 25,50,100,200` adds
that many labelled target utterances to training (Figure 3). By default
(`--target-sampling speakers`) they come from half of the target's speakers
and the other half is tested, so the curve stays speaker-independent. The
paper (Section 5.3) does not say where its samples came from;
`--target-sampling any` draws them from every speaker and tests the rest.
`--protocol within` runs Table 2's within-corpus baseline instead.
The `stl` baseline makes as many optimizer updates per epoch as `mtl_extra`
(`--stl-epoch matched`, the default: its labelled utterances are cycled up to
the size of the multi-task epoch); `--stl-epoch labelled` gives it one pass
over them per epoch, half the updates at `--labelled-fraction 0.5`.
`--normalize corpus` z-normalises every mel band per corpus after the
front-end (not in the paper; on RAVDESS -> EMO-DB / URDU it is what lets
valence transfer at all, see benchmarks/RESULTS.md).

With no corpus arguments it generates (once, cached) synthetic corpora with
eSpeak NG: English labelled speech (SAVEE-shaped), German (EMO-DB-shaped) and
Urdu (URDU-shaped) targets, and unlabelled French and Spanish speech.

    python -m apps.train_crosslang_valence
    python -m apps.train_crosslang_valence --labelled iemocap:~/IEMOCAP \\
        --target emodb:~/emodb emovo:~/EMOVO urdu:~/URDU \\
        --unlabelled librispeech:~/LibriSpeech de:~/voxforge/de --preset paper

Reference:
    S. Latif et al., multi-task learning with language and domain
    identification on unlabelled speech for cross-language speech emotion
    recognition (paper 000 of this project): Tables 1-3, Figures 2-3.
"""

from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

from ser_keras import cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SETTINGS = {
    # name: (language head, domain head, additional unlabelled corpora, title)
    "stl": (False, False, False, "ResNet-LSTM (STL) baseline"),
    "mtl_no_extra": (True, False, False, "Proposed (without additional data)"),
    "mtl_extra": (True, True, True, "Proposed (with additional data)"),
    "mtl_extra_language": (True, False, True, "With additional data, language identification only"),
    "mtl_extra_domain": (False, True, True, "With additional data, domain identification only"),
}
DEFAULT_SETTINGS = "stl,mtl_no_extra,mtl_extra"
# --normalize: the groups over which every mel band is z-normalised after the
# front-end (which standardises each utterance over all its bands together).
NORMALIZATIONS = ("utterance", "corpus", "speaker")

# Published UAR (%), Table 3 (cross-language, trained on IEMOCAP) and Table 2
# (within corpus), keyed by corpus kind.
PAPER_TABLE3 = {
    "stl": {"emodb": 52.4, "emovo": 54.7, "urdu": 49.6},
    "mtl_no_extra": {"emodb": 57.5, "emovo": 58.3, "urdu": 56.4},
    "mtl_extra": {"emodb": 63.7, "emovo": 62.1, "urdu": 60.9},
}
PAPER_TABLE2 = {"emodb": 81.3, "iemocap": 62.1, "emovo": 74.2, "urdu": 83.4}

# The paper gives no optimizer, learning rate, batch size or number of
# epochs; these are our choices (Adam, 1e-3, 32). `quick` is a REDUCED
# configuration for a CPU, printed as such.
PRESETS = {
    "quick": {
        "model_preset": "latif_crosslang_cpu",
        "epochs": 6,
        "patience": None,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "synthetic_per_emotion": 3,
        "synthetic_unlabelled_per_speaker": 8,
    },
    "paper": {
        "model_preset": "latif_crosslang",
        "epochs": 100,
        "patience": 20,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "synthetic_per_emotion": 15,
        "synthetic_unlabelled_per_speaker": 40,
    },
}

# Synthetic default data: languages of the unlabelled folders (two of the
# paper's Voxforge languages) and URDU's layout.
SYNTHETIC_UNLABELLED_LANGUAGES = ("fr", "es")
URDU_FOLDERS = {"anger": "Angry", "happiness": "Happy", "neutral": "Neutral", "sadness": "Sad"}
URDU_LETTERS = {"anger": "A", "happiness": "H", "neutral": "N", "sadness": "S"}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.app_parser(
        "train_crosslang_valence",
        "Cross-language binary valence recognition with the multi-task ResNet-LSTM of "
        "Latif et al.: train on labelled corpora, test on corpora in other languages, "
        "with language and domain identification on unlabelled speech. Without corpus "
        "arguments, synthetic eSpeak NG corpora are generated and cached.",
    )
    parser.add_argument(
        "--labelled", nargs="+", action="extend", metavar="KIND:DIR",
        help="Labelled training corpora, e.g. iemocap:~/IEMOCAP ravdess:~/RAVDESS.",
    )
    parser.add_argument(
        "--target", nargs="+", action="extend", metavar="KIND:DIR",
        help="Target corpora in other languages, scored for valence UAR, e.g. emodb:DIR urdu:DIR.",
    )
    parser.add_argument(
        "--unlabelled", nargs="+", action="extend", metavar="LANG:DIR",
        help="Additional unlabelled speech: LANG:DIR (a folder of audio in language LANG, "
        "ISO 639-1), folder:LANG:DIR, or KIND:DIR of a corpus loader (librispeech:DIR; an "
        "emotional corpus given here is used without its labels).",
    )
    parser.add_argument(
        "--settings", default=DEFAULT_SETTINGS,
        help=f"Comma-separated settings, from {', '.join(SETTINGS)}. The Figure 2 ablation: "
        "mtl_extra_language,mtl_extra_domain,mtl_extra.",
    )
    parser.add_argument(
        "--protocol", choices=("crosslang", "within"), default="crosslang",
        help="crosslang: Table 3 (train on --labelled, test on --target). within: Table 2's "
        "single-task within-corpus baseline on every corpus (leave-one-speaker-out; URDU: 25 "
        "training speakers, the rest tested, five folds).",
    )
    parser.add_argument(
        "--target-samples", default="0", metavar="N[,N...]",
        help="Labelled target utterances added to training (Figure 3; the paper: 25 to 200), "
        "one model per target and N; 0 = none. Where they come from and what is tested: "
        "--target-sampling.",
    )
    parser.add_argument(
        "--target-sampling", choices=("speakers", "any"), default="speakers",
        help="With --target-samples N > 0: speakers (default, speaker-independent) splits each "
        "target's speakers into two halves (seeded), draws the N utterances from the first "
        "half and tests on the second half only, so no test speaker is trained on; any draws "
        "them from all target utterances and tests on the rest, so test speakers also give "
        "training utterances (the paper, Section 5.3, does not say which it did).",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="quick",
        help="quick: reduced model (latif_crosslang_cpu) and epochs for a CPU; paper: the paper's "
        "model sizes, up to 100 epochs with early stopping on validation UA.",
    )
    parser.add_argument("--epochs", type=int, help="Override the preset's number of epochs.")
    parser.add_argument("--batch-size", type=int, help="Override the preset's batch size.")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate (default 1e-3).")
    parser.add_argument(
        "--alpha", type=float, default=0.3,
        help="Weight of the auxiliary losses: L = L_e + alpha (L_l + L_d).",
    )
    parser.add_argument(
        "--labelled-fraction", type=float,
        help="Share of emotion-labelled samples in the training batches of the multi-task "
        "settings, in (0, 1): an epoch is every labelled sample once plus unlabelled "
        "samples (a random subset, or repeats) making up the rest. Default: every sample "
        "once per epoch, in natural proportion.",
    )
    parser.add_argument(
        "--label-map", default="binary_valence",
        help="Emotion label map (ser_keras.corpora.labels), e.g. binary_valence (Table 1), "
        "binary_valence_iemocap, four_class.",
    )
    parser.add_argument(
        "--no-target-audio", action="store_true",
        help="Never train on target audio (by default the multi-task settings use it, "
        "without labels, for language and domain identification).",
    )
    parser.add_argument(
        "--folds", type=int,
        help="--protocol within: run only the first N folds of each corpus.",
    )
    parser.add_argument(
        "--runs", type=int, default=1,
        help="Repeat every experiment with seeds seed, seed+1, ...; tables give mean ± std.",
    )
    parser.add_argument(
        "--stl-epoch", choices=("matched", "labelled"), default="matched",
        help="Training budget of the stl baseline (--protocol crosslang): matched (default) "
        "cycles its labelled utterances up to the size of mtl_extra's epoch (labelled + "
        "unlabelled at --labelled-fraction), so that it makes as many optimizer updates as "
        "the multi-task settings; labelled is one pass over them per epoch (fewer updates). "
        "The paper does not state the baseline's budget.",
    )
    parser.add_argument(
        "--normalize", choices=NORMALIZATIONS, default="utterance",
        help="Feature normalisation on top of the latif_6s front-end's per-utterance one: "
        "utterance (the paper's front-end only), corpus (every mel band z-normalised over "
        "each corpus's frames) or speaker (over each speaker's frames, per corpus). corpus "
        "and speaker use no labels but do use the target's audio (all of it, for the "
        "statistics only, even with --no-target-audio); neither is in the paper. The "
        "export of a corpus-normalised model normalises with one corpus's statistics "
        "(--export-domain); speaker normalisation cannot be served and needs --no-export.",
    )
    parser.add_argument(
        "--export-domain", metavar="CORPUS",
        help="With --normalize corpus: the corpus (a name printed when the data loads, e.g. "
        "emodb) whose band statistics the exported model applies to its inputs, i.e. the "
        "domain it will serve. Default: the first --target.",
    )
    parser.add_argument(
        "--validation-fraction", type=float, default=0.15,
        help="Share of the labelled corpora's speakers held out for model selection.",
    )
    cli.add_common_arguments(
        parser,
        default_out="runs/train_crosslang_valence",
        export_help="The best multi-task model (validation UA) is exported to "
        "<export-dir>/resnet_lstm_mtl/<version>/.",
        synthetic_help="Synthetic corpora: utterances per speaker and emotion (default: the "
        "preset's).",
        seed_help="Random seed of the first run.",
    )
    return parser


def main(argv=None) -> int:
    return cli.run_main(build_parser(), run, argv)


# ---------------------------------------------------------------------------
# Arguments


def _parse_target_samples(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(value < 0 for value in values):
        raise ValueError(
            "--target-samples takes non-negative integers separated by commas, e.g. "
            f"25,50,100,200. Received: {text!r}"
        )
    return sorted(set(values))


def _parse_unlabelled_spec(text: str):
    """`LANG:DIR`, `folder:LANG:DIR` or `KIND:DIR` -> CorpusSpec."""
    from ser_keras.corpora import CORPUS_KINDS
    from ser_keras.corpora.spec import CorpusSpec, parse_corpus_spec

    prefix, _, rest = text.partition(":")
    if rest and prefix in CORPUS_KINDS:
        return parse_corpus_spec(text)
    if rest and prefix.isalpha() and 2 <= len(prefix) <= 3 and prefix.islower():
        return CorpusSpec("folder", pathlib.Path(rest).expanduser(), prefix)
    raise ValueError(
        "--unlabelled takes LANG:DIR (ISO 639-1 language code), folder:LANG:DIR or KIND:DIR "
        f"with KIND one of {', '.join(CORPUS_KINDS)}. Received: {text!r}"
    )


def _check_arguments(args, preset):
    cli.check_at_least([
        ("--runs", args.runs, 1),
        ("--folds", args.folds, 1),
        ("--seed", args.seed, 0),
        ("--epochs", args.epochs, 1),
        ("--batch-size", args.batch_size, 2),
        ("--synthetic-per-emotion", args.synthetic_per_emotion, 1),
    ])
    if not math.isfinite(args.alpha) or args.alpha < 0:
        raise ValueError(f"--alpha must be a non-negative number. Received: {args.alpha}")
    cli.check_fraction("--labelled-fraction", args.labelled_fraction, 0.0, 1.0)
    cli.check_fraction("--validation-fraction", args.validation_fraction, 0.0, 0.5)
    if args.synthetic_per_emotion is not None:
        preset["synthetic_per_emotion"] = args.synthetic_per_emotion
        preset["synthetic_unlabelled_per_speaker"] = 2 * args.synthetic_per_emotion
    if (args.labelled is None) != (args.target is None):
        raise ValueError(
            "Give both --labelled and --target (real corpora), or neither (synthetic corpora). "
            f"Received: --labelled {args.labelled}, --target {args.target}"
        )
    if args.labelled is None and args.unlabelled is not None:
        raise ValueError(
            "--unlabelled was given without --labelled/--target; give the corpora too, or none."
        )
    if args.normalize == "speaker" and not args.no_export:
        raise ValueError(
            "--normalize speaker needs each speaker's statistics, which an exported model "
            "cannot compute from the one waveform it serves: add --no-export (or use "
            "--normalize corpus). Received: --normalize speaker without --no-export."
        )
    if args.export_domain is not None and args.normalize != "corpus":
        raise ValueError(
            "--export-domain chooses the corpus statistics of a --normalize corpus export. "
            f"Received: --export-domain {args.export_domain} with --normalize {args.normalize}."
        )


# ---------------------------------------------------------------------------
# Synthetic corpora


def _make_synthetic_urdu(out_dir, seed: int, per_emotion: int, num_speakers: int = 6):
    """Writes a URDU-shaped Urdu corpus: `{Angry,Happy,Neutral,Sad}/SM1_F01_A001.wav`.

    Uses the eSpeak NG renderer of `ser_keras.audio.synthetic` (its generic
    `_generate`; a public `make_urdu_corpus` belongs in that module).
    """
    from ser_keras.audio import synthetic

    variants = [("m1", "male"), ("f1", "female"), ("m3", "male"), ("f2", "female"),
                ("m4", "male"), ("f3", "female")]
    sentences = synthetic.SENTENCES["ur"]
    plans = []
    for number, (variant, gender) in enumerate(variants[:num_speakers], start=1):
        speaker = synthetic.SyntheticSpeaker(
            f"S{'M' if gender == 'male' else 'F'}{number}", gender, "ur", variant
        )
        file_number = 0
        for label, folder in URDU_FOLDERS.items():
            for index in range(per_emotion):
                file_number += 1
                plans.append(
                    synthetic._Plan(
                        f"{folder}/{speaker.speaker}_F{file_number:02d}_"
                        f"{URDU_LETTERS[label]}{index + 1:03d}.wav",
                        speaker,
                        label,
                        sentences[(number + index) % len(sentences)],
                    )
                )
    parameters = {"per_emotion": per_emotion, "num_speakers": num_speakers}
    return synthetic._generate(
        "urdu", out_dir, plans, parameters, seed, None, "urdu", "natural", None, False, False
    )


def _synthetic_specs(args, cache_dir, preset):
    """Generates (or reuses) the default synthetic corpora; returns their specs."""
    from ser_keras.corpora.spec import CorpusSpec

    root = cli.synthetic_root(cache_dir)
    per_emotion = preset["synthetic_per_emotion"]
    savee = cli.synthetic_corpus_spec(root, "savee", seed=args.seed, per_emotion=per_emotion)
    emodb = cli.synthetic_corpus_spec(
        root, "emodb", seed=args.seed, per_emotion=max(1, per_emotion // 2)
    )
    urdu_dir = root / f"urdu_seed{args.seed}_n{per_emotion}"
    _make_synthetic_urdu(urdu_dir, seed=args.seed, per_emotion=per_emotion)
    unlabelled = [
        cli.synthetic_corpus_spec(
            root, "folder", seed=args.seed, language=language,
            per_speaker=preset["synthetic_unlabelled_per_speaker"],
        )
        for language in SYNTHETIC_UNLABELLED_LANGUAGES
    ]
    return (
        [savee],
        [emodb, CorpusSpec("urdu", urdu_dir)],
        unlabelled,
        "synthetic (eSpeak NG): English SAVEE-shaped labelled corpus; German EMO-DB- and "
        "Urdu URDU-shaped targets; unlabelled French and Spanish speech",
    )


# ---------------------------------------------------------------------------
# Data


class _Pool:
    """Every utterance of the run, with its features and roles.

    Attributes:
        utterances: All usable utterances (labelled corpora, targets,
            unlabelled corpora, in that order).
        features: `[N, frames, mels]` float32.
        emotion: Class index per utterance; -1 = none (unlabelled corpora
            always -1).
        corpus: Display name of each utterance's corpus.
        labelled: Indices of labelled-corpus utterances with an emotion label.
        labelled_corpora: Labelled corpus name -> indices of its utterances.
        targets: Target name -> indices of all its utterances (any label).
        extra_corpora: Unlabelled corpus name -> indices of its utterances.
        kinds: Corpus name -> corpus kind (loader).
        skipped: Corpus name -> files left out, with reasons.
    """

    def __init__(self):
        self.utterances = []
        self.waveforms = []
        self.corpus = []
        self.emotion = []
        self.labelled_corpora = {}
        self.targets = {}
        self.extra_corpora = {}
        self.kinds = {}
        self.skipped = {}


def _display_name(spec, listing, taken):
    base = listing.corpus if spec.kind != "folder" else f"{spec.directory.name}"
    name, number = base, 2
    while name in taken:
        name, number = f"{base}_{number}", number + 1
    return name


def _load_pool(labelled_specs, target_specs, unlabelled_specs, label_map, cache_dir, quiet):
    import numpy as np

    from ser_keras.data.cache import WaveformCache

    cache = WaveformCache(pathlib.Path(cache_dir) / "waveforms")
    pool = _Pool()
    taken = set()
    seen_paths = set()

    def add(spec, role):
        listing = spec.load()
        name = _display_name(spec, listing, taken)
        taken.add(name)
        pool.kinds[name] = spec.kind
        fresh = [u for u in listing.utterances if u.path not in seen_paths]
        duplicates = len(listing.utterances) - len(fresh)
        cached = cache.load(fresh, progress=not quiet)
        skipped = [entry.to_dict() for entry in list(listing.skipped) + list(cached.skipped)]
        pool.skipped[name] = skipped
        for warning in listing.warnings:
            print(f"  {name}: warning: {warning.path}: {warning.reason}")
        if skipped:
            print(f"  {name}: skipped {len(skipped)} file(s), e.g. {skipped[0]['path']}: "
                  f"{skipped[0]['reason']} (all in skipped.json)")
        if duplicates:
            print(f"  {name}: {duplicates} file(s) already loaded for another role, used once")
        labels = (
            label_map.encode(cached.utterances)
            if role != "unlabelled"
            else np.full(len(cached.utterances), -1, np.int32)
        )
        start = len(pool.utterances)
        rows = zip(cached.utterances, cached.waveforms, labels, strict=True)
        for utterance, waveform, label in rows:
            seen_paths.add(utterance.path)
            pool.utterances.append(utterance)
            pool.waveforms.append(waveform)
            pool.corpus.append(name)
            pool.emotion.append(int(label))
        indices = np.arange(start, len(pool.utterances))
        if role != "unlabelled":
            unmapped = label_map.unmapped_counts(cached.utterances)
            if unmapped:
                what = "left out" if role == "labelled" else "not scored (audio still used)"
                print(f"  {name}: labels outside {label_map.name}, {what}: {unmapped}")
        if len(indices) == 0:
            raise ValueError(f"No usable audio in {spec.kind} corpus at {spec.directory}.")
        if role != "unlabelled" and not (labels >= 0).any():
            raise ValueError(
                f"No utterance of {spec.kind} corpus at {spec.directory} has a label in "
                f"{label_map.name} ({', '.join(label_map.classes)})."
            )
        languages = sorted({u.language for u in cached.utterances})
        print(f"  {name} ({role}, {'/'.join(languages)}): {len(indices)} utterances"
              + ("" if role == "unlabelled" else f", {int((labels >= 0).sum())} labelled"),
              flush=True)
        return name, indices

    for spec in labelled_specs:
        name, indices = add(spec, "labelled")
        pool.labelled_corpora[name] = indices
    for spec in target_specs:
        name, indices = add(spec, "target")
        pool.targets[name] = indices
    for spec in unlabelled_specs:
        name, indices = add(spec, "unlabelled")
        pool.extra_corpora[name] = indices
    pool.emotion = np.asarray(pool.emotion, dtype=np.int32)
    pool.corpus = np.asarray(pool.corpus, dtype=object)
    pool.language = np.asarray([u.language for u in pool.utterances], dtype=object)
    return pool


def _normalization_groups(pool, mode):
    """The group of every utterance for `--normalize corpus|speaker`, as strings.

    A speaker's group is (corpus display name, speaker id): the display name
    tells apart two corpora of one kind given in one run.
    """
    if mode == "corpus":
        return [str(name) for name in pool.corpus]
    return [f"{name}/{u.speaker_id}" for name, u in zip(pool.corpus, pool.utterances, strict=True)]


def _normalize_groups(pool, mode, pad_value):
    """Z-normalises every mel band per corpus or per speaker (`--normalize`).

    No labels are read. Not in the paper: a change we make to reduce the
    recording-channel and speaker mismatch between corpora.
    """
    from ser_keras.features.normalization import standardize_per_speaker

    groups = _normalization_groups(pool, mode)
    print(f"Standardising every mel band per {mode} ({len(set(groups))} groups).", flush=True)
    return standardize_per_speaker(pool.features, groups, pad_value=pad_value)


def _served_statistics(pool, domain, pad_value):
    """The `--export-domain` corpus's name and band statistics, before normalisation."""
    import numpy as np

    from ser_keras.features.normalization import band_statistics

    names = sorted(set(pool.corpus))
    domain = domain if domain is not None else next(iter(pool.targets))
    if domain not in names:
        raise ValueError(f"--export-domain must name a corpus of this run ({', '.join(names)}). "
                         f"Received: {domain}")
    mean, std = band_statistics(pool.features[np.flatnonzero(pool.corpus == domain)], pad_value)
    return {"corpus": domain, "mean": mean, "std": std}


def _validation_split(pool, seed, fraction):
    """Splits the labelled corpora's labelled utterances by speaker: (train, validation)."""
    import numpy as np

    from ser_keras.data.splits import speaker_kfold

    indices = np.concatenate(list(pool.labelled_corpora.values()))
    indices = indices[pool.emotion[indices] >= 0]
    utterances = [pool.utterances[i] for i in indices]
    speakers = sorted({u.speaker_id for u in utterances})
    if len(speakers) < 2:
        raise ValueError(
            "Validation speakers come from the labelled corpora, which need at least 2 "
            f"speakers. Received: {speakers}"
        )
    k = int(min(len(speakers), max(2, round(1.0 / fraction))))
    fold = speaker_kfold(utterances, k, validation="none", seed=seed,
                         labels=pool.emotion[indices])[0]
    return indices[fold.train], indices[fold.test], list(fold.test_speakers)


def _split_target_speakers(pool, scored, seed):
    """A target's labelled utterances split by speaker: (sample donors, tested).

    Two speaker-disjoint halves (seeded, classes balanced across them where
    the speakers allow): `--target-samples` draws from the first, the second
    is tested, so the curve stays speaker-independent.
    """
    import numpy as np

    from ser_keras.data.splits import speaker_kfold

    utterances = [pool.utterances[i] for i in scored]
    speakers = {u.speaker_id for u in utterances}
    if len(speakers) < 2:
        raise ValueError(
            "--target-sampling speakers needs at least 2 speakers per target corpus; "
            f"{pool.corpus[scored[0]]} has {sorted(speakers)}. Use --target-sampling any."
        )
    fold = speaker_kfold(
        utterances, 2, validation="none", seed=seed, labels=pool.emotion[scored]
    )[0]
    return scored[np.sort(fold.train)], scored[np.sort(fold.test)]


def _stratified_sample(labels, count, rng, test_elsewhere=False):
    """`count` positions drawn per class in proportion (at least one per class when possible).

    Unless `test_elsewhere` (the test utterances are other speakers'), at
    least one utterance must remain to be tested.
    """
    import numpy as np

    labels = np.asarray(labels)
    if count > len(labels) or (count == len(labels) and not test_elsewhere):
        raise ValueError(
            f"--target-samples {count} is more than the target can give: "
            f"{len(labels)} labelled utterances"
            + (" in the half of its speakers that gives training samples." if test_elsewhere
               else ", and at least one must be left to test.")
        )
    chosen = []
    classes, counts = np.unique(labels, return_counts=True)
    quotas = np.floor(counts / counts.sum() * count).astype(int)
    for extra in np.argsort(-(counts / counts.sum() * count - quotas))[: count - quotas.sum()]:
        quotas[extra] += 1
    for label, quota in zip(classes, quotas, strict=True):
        positions = np.flatnonzero(labels == label)
        chosen.extend(rng.choice(positions, size=min(quota, len(positions)), replace=False))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _mix(labelled, unlabelled, fraction, rng):
    """Training indices with emotion-labelled samples at `fraction` (None: natural).

    Every labelled sample is used once per epoch; the unlabelled samples fill
    the epoch to the requested share: a random subset of them when there are
    more, whole copies plus a random remainder when there are fewer. Shuffled
    batches then hold labelled samples at `fraction` on average. With `None`
    every sample is used once, in natural proportion.

    The subset is drawn once per model: the runner trains on a fixed set per
    fit. (`ser_keras.data.pipeline.make_mixed_dataset` mixes exactly per
    batch and cycles through all unlabelled data across epochs; using it
    needs a training-dataset argument in `fit_and_evaluate`.)
    """
    import numpy as np

    labelled = np.asarray(labelled, dtype=np.int64)
    unlabelled = np.asarray(unlabelled, dtype=np.int64)
    if fraction is None or len(unlabelled) == 0:
        return np.concatenate([labelled, unlabelled])
    total = _unlabelled_per_epoch(len(labelled), len(unlabelled), fraction)
    return np.concatenate([labelled, _fill(unlabelled, total, rng)])


def _unlabelled_per_epoch(num_labelled, num_unlabelled, fraction):
    """Unlabelled samples in an epoch of `_mix` (every one once with `fraction` None)."""
    if fraction is None or num_unlabelled == 0:
        return num_unlabelled
    return max(1, int(round(num_labelled * (1.0 - fraction) / fraction)))


def _unlabelled_candidates(pool, extra, use_target_audio, added):
    """Unlabelled training candidates: `extra` (indices, or None) and the targets' audio.

    The labelled target utterances `added` to training are left out.
    """
    import numpy as np

    parts = [extra] if extra is not None else []
    if use_target_audio:
        parts += list(pool.targets.values())
    if not parts:
        return np.zeros(0, np.int64)
    return np.setdiff1d(np.concatenate(parts), added)


def _fill(indices, total, rng):
    """`total` samples of `indices`: whole copies, then a random remainder without repeats."""
    import numpy as np

    indices = np.asarray(indices, dtype=np.int64)
    copies = [indices] * (total // len(indices))
    remainder = total % len(indices)
    if remainder:
        copies.append(rng.choice(indices, size=remainder, replace=False))
    return np.concatenate(copies) if copies else np.zeros(0, np.int64)


# ---------------------------------------------------------------------------
# Experiments


def run(args) -> int:
    # Created first: MultiWorkerMirroredStrategy must exist before other TF ops.
    strategy = cli.strategy_from_args(args)

    from ser_keras.corpora.labels import get_label_map
    from ser_keras.data.pipeline import compute_features
    from ser_keras.evaluation import reports
    from ser_keras.features.logmel import LogMel
    from ser_keras.training.runner import RunState

    settings = cli.parse_name_list(args.settings, tuple(SETTINGS), "--settings")
    target_samples = _parse_target_samples(args.target_samples)
    preset = dict(PRESETS[args.preset])
    _check_arguments(args, preset)
    label_map = get_label_map(args.label_map)
    epochs = args.epochs or preset["epochs"]
    batch_size = args.batch_size or preset["batch_size"]
    cli.check_global_batch(batch_size, strategy)
    learning_rate = args.learning_rate or preset["learning_rate"]
    cache_dir = cli.cache_dir_of(args)
    started = time.time()

    if args.labelled is None:
        labelled_specs, target_specs, unlabelled_specs, data = _synthetic_specs(
            args, cache_dir, preset
        )
    else:
        labelled_specs = cli.corpus_specs(args.labelled, "--labelled")
        target_specs = cli.corpus_specs(args.target, "--target")
        unlabelled_specs = [_parse_unlabelled_spec(text) for text in args.unlabelled or ()]
        data = f"labelled: {cli.describe_specs(labelled_specs)}"
        data += f"; targets: {cli.describe_specs(target_specs)}"
        if unlabelled_specs:
            data += f"; unlabelled: {cli.describe_specs(unlabelled_specs)}"
    extra_settings = [name for name in settings if SETTINGS[name][2]]
    if args.protocol == "crosslang" and extra_settings and not unlabelled_specs:
        raise ValueError(
            f"Settings {extra_settings} train on additional unlabelled speech: pass "
            "--unlabelled LANG:DIR (or run --settings stl,mtl_no_extra)."
        )
    print(f"Data: {data}")
    print(
        f"Configuration: preset {args.preset!r} (model preset {preset['model_preset']!r}, "
        f"{epochs} epochs, batch {batch_size}, Adam {learning_rate:g}, alpha {args.alpha:g}"
        + (f", early stopping after {preset['patience']} epochs" if preset["patience"] else "")
        + ")"
        + cli.reduced_note(args.preset == "quick"),
        flush=True,
    )

    # The unlabelled corpora are loaded where a setting trains on them, or where
    # the stl baseline's matched epoch counts them.
    matched_stl = "stl" in settings and args.stl_epoch == "matched"
    if args.protocol == "within" or not (extra_settings or matched_stl):
        unlabelled_specs = []
    pool = _load_pool(
        labelled_specs, target_specs, unlabelled_specs, label_map, cache_dir, args.quiet
    )
    frontend = LogMel.from_preset("latif_6s")
    print(f"Computing latif_6s log-mel features (6 s) for {len(pool.waveforms)} utterances ...",
          flush=True)
    pool.features = compute_features(frontend, pool.waveforms, progress=not args.quiet)
    pool.waveforms = None  # the features are all that training needs
    served_statistics = None
    if args.normalize == "corpus" and not args.no_export:
        served_statistics = _served_statistics(pool, args.export_domain, frontend.pad_value)
    if args.normalize != "utterance":
        pool.features = _normalize_groups(pool, args.normalize, frontend.pad_value)

    # On a multi-worker cluster only the chief writes to --out and exports.
    outputs = cli.worker_outputs(
        args.out, strategy, export_dir=None if args.no_export else args.export_dir
    )
    state = RunState(
        outputs.out_dir,
        {
            "app": "train_crosslang_valence",
            "protocol": args.protocol,
            "data": data,
            "label_map": label_map.name,
            "preset": args.preset,
            "model_preset": preset["model_preset"],
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "alpha": args.alpha,
            "labelled_fraction": args.labelled_fraction,
            "target_audio": not args.no_target_audio,
            "target_sampling": args.target_sampling,
            # Recorded only when set, so that runs made before the option resume.
            **({"normalize": args.normalize} if args.normalize != "utterance" else {}),
            # Runs made before --stl-epoch trained stl one pass per epoch ("labelled").
            **({"stl_epoch": "matched"} if args.stl_epoch == "matched" else {}),
            "validation_fraction": args.validation_fraction,
            "folds": args.folds,
            "seed": args.seed,
            "num_utterances": len(pool.utterances),
        },
        resume=args.resume,
    )
    reports.write_json_atomic(state.out_dir / "skipped.json", pool.skipped)
    context = dict(
        args=args, pool=pool, state=state, label_map=label_map, preset=preset, epochs=epochs,
        batch_size=batch_size, learning_rate=learning_rate, strategy=strategy,
    )
    if args.protocol == "within":
        results = _run_within(context)
    else:
        results = _run_crosslang(context, settings, target_samples)
    results.update(
        units="percent",
        class_names=list(label_map.classes),
        configuration=state.config,
        seeds=list(range(args.seed, args.seed + args.runs)),
        elapsed_seconds=round(time.time() - started, 1),
    )

    if args.protocol == "crosslang" and outputs.export_dir is not None:
        best = results.pop("_best_multitask", None)
        if best is None:
            print("\nNo multi-task setting ran: nothing to export (the export is the best "
                  "multi-task model).")
        else:
            results["export"] = str(
                _export(best, frontend, label_map, args, data, outputs.export_dir,
                        served_statistics)
            )
    results.pop("_best_multitask", None)
    reports.write_json_atomic(state.out_dir / "results.json", results)
    print(f"\nResults written to {state.out_dir} in {time.time() - started:.0f} s.")
    return 0


def _build_model_fn(context, num_languages, use_domain_head):
    import keras

    from ser_keras.models.resnet_lstm import ResNetLSTM

    features = context["pool"].features

    def build():
        model = ResNetLSTM.from_preset(
            context["preset"]["model_preset"],
            num_frames=int(features.shape[1]),
            num_mels=int(features.shape[2]),
            num_emotions=context["label_map"].num_classes,
            num_languages=num_languages,
            use_domain_head=use_domain_head,
            alpha=context["args"].alpha,
        )
        model.compile(optimizer=keras.optimizers.Adam(context["learning_rate"]))
        return model

    return build


def _train_once(context, fold_dir, train_index, train_labels, validation_index, test_index,
                num_languages, use_domain_head, seed):
    """Trains one model with the runner; returns (runner result, test probabilities)."""
    import numpy as np

    from ser_keras.training.runner import Split, fit_and_evaluate

    pool = context["pool"]
    probabilities_path = fold_dir / "test_probabilities.npy"

    def predict(model, inputs):
        probabilities = model.predict(inputs, batch_size=context["batch_size"], verbose=0)
        probabilities = np.asarray(probabilities["emotion"])
        fold_dir.mkdir(parents=True, exist_ok=True)
        np.save(probabilities_path, probabilities)
        return probabilities

    result = fit_and_evaluate(
        _build_model_fn(context, num_languages, use_domain_head),
        Split(pool.features[train_index], train_labels),
        Split(pool.features[validation_index], {"emotion": pool.emotion[validation_index]}),
        Split(pool.features[test_index], {"emotion": pool.emotion[test_index]}),
        fold_dir=fold_dir,
        class_names=list(context["label_map"].classes),
        epochs=context["epochs"],
        batch_size=context["batch_size"],
        seed=seed,
        patience=context["preset"]["patience"],
        verbose=0 if context["args"].quiet else 2,
        predict_fn=predict,
        strategy=context["strategy"],
    )
    return result, np.load(probabilities_path)


def _run_crosslang(context, settings, target_samples):
    import numpy as np

    from ser_keras.evaluation.metrics import mean_and_spread, summarize

    args, pool, state, label_map = (
        context["args"], context["pool"], context["state"], context["label_map"]
    )
    class_names = list(label_map.classes)
    target_names = list(pool.targets)
    # scores[N][setting][target] -> list of per-run summaries
    scores = {n: {s: {t: [] for t in target_names} for s in settings} for n in target_samples}
    best_multitask = None
    extra_all = (
        np.concatenate(list(pool.extra_corpora.values()))
        if pool.extra_corpora else np.zeros(0, np.int64)
    )
    for seed in range(args.seed, args.seed + args.runs):
        train_labelled, validation, validation_speakers = _validation_split(
            pool, seed, args.validation_fraction
        )
        print(f"\n--- run with seed {seed}: {len(train_labelled)} labelled training "
              f"utterances, validation speakers {', '.join(validation_speakers)} "
              f"({len(validation)} utterances) ---", flush=True)
        rng = np.random.default_rng(seed)
        # Per target and N: the labelled target utterances moved into training,
        # and the target utterances then tested.
        # (N outer, target inner: the order of the draws from `rng`.)
        scored, donors, held_out = {}, {}, {}
        for name in target_names:
            scored[name] = pool.targets[name][pool.emotion[pool.targets[name]] >= 0]
            donors[name], held_out[name] = scored[name], None
            if args.target_sampling == "speakers" and any(n > 0 for n in target_samples):
                donors[name], held_out[name] = _split_target_speakers(pool, scored[name], seed)
                print(f"  {name}: target samples drawn from "
                      f"{len({pool.utterances[i].speaker_id for i in donors[name]})} speakers "
                      f"({len(donors[name])} utterances), tested on the other "
                      f"{len({pool.utterances[i].speaker_id for i in held_out[name]})} "
                      f"({len(held_out[name])} utterances)", flush=True)
        chosen, tested = {}, {}  # (N > 0, target) -> indices; N = 0 adds none
        for count in (n for n in target_samples if n > 0):
            for name in target_names:
                chosen[count, name] = donors[name][
                    _stratified_sample(pool.emotion[donors[name]], count, rng,
                                       test_elsewhere=held_out[name] is not None)
                ]
                tested[count, name] = (
                    held_out[name] if held_out[name] is not None
                    else np.setdiff1d(scored[name], chosen[count, name])
                )
        for count in target_samples:
            scopes = [("targets", None)] if count == 0 else [(n, n) for n in target_names]
            for setting in settings:
                language_head, domain_head, use_extra, title = SETTINGS[setting]
                for scope, only_target in scopes:
                    added = chosen[count, only_target] if only_target else np.zeros(0, np.int64)
                    labelled = np.concatenate([train_labelled, added])
                    unlabelled = np.zeros(0, np.int64)
                    if language_head or domain_head:
                        unlabelled = _unlabelled_candidates(
                            pool, extra_all if use_extra else None, not args.no_target_audio,
                            added,
                        )
                    train_index = _mix(
                        labelled, unlabelled, args.labelled_fraction,
                        np.random.default_rng(seed + 1),
                    )
                    if setting == "stl" and args.stl_epoch == "matched":
                        # As many samples per epoch (so updates) as mtl_extra's epoch.
                        candidates = _unlabelled_candidates(
                            pool, extra_all, not args.no_target_audio, added
                        )
                        epoch_size = len(labelled) + _unlabelled_per_epoch(
                            len(labelled), len(candidates), args.labelled_fraction
                        )
                        train_index = _fill(labelled, epoch_size, np.random.default_rng(seed + 1))
                    is_labelled = np.isin(train_index, labelled)
                    labels = {"emotion": np.where(is_labelled, pool.emotion[train_index], -1)}
                    languages = sorted(set(pool.language[train_index]))
                    num_languages = 0
                    if language_head:
                        if len(languages) < 2:
                            raise ValueError(
                                f"Setting {setting} identifies languages, but its training data "
                                f"has one language only ({languages}). Add --unlabelled "
                                "speech in other languages, or allow the targets' audio."
                            )
                        num_languages = len(languages)
                        lookup = {language: i for i, language in enumerate(languages)}
                        labels["language"] = np.array(
                            [lookup[x] for x in pool.language[train_index]], np.int32
                        )
                    if domain_head:
                        labels["domain"] = np.where(is_labelled, 0, 1).astype(np.int32)
                    labels["emotion"] = labels["emotion"].astype(np.int32)
                    if only_target:
                        test = tested[count, only_target]
                    else:
                        test = np.concatenate([pool.targets[n] for n in target_names])
                    test = test[pool.emotion[test] >= 0]

                    fold_name = f"seed{seed}_{scope}" + (f"_n{count}" if count else "")
                    fold_dir = state.fold_dir(setting, fold_name)
                    done = (fold_dir / "result.json").exists()
                    print(
                        f"[{setting}] {fold_name}: "
                        + ("already finished, reusing its result" if done else
                           f"training on {len(train_index)} samples "
                           f"({int(is_labelled.sum())} with emotion labels"
                           + (f", {len(labelled)} distinct"
                              if setting == "stl" and len(train_index) > len(labelled) else "")
                           + (f", languages {'/'.join(languages)}" if language_head else "")
                           + ")"),
                        flush=True,
                    )
                    result, probabilities = _train_once(
                        context, fold_dir, train_index, labels, validation, test,
                        num_languages, domain_head, seed,
                    )
                    predictions = probabilities.argmax(axis=-1)
                    line = []
                    for name in target_names:
                        if only_target and name != only_target:
                            continue
                        mask = pool.corpus[test] == name
                        summary = summarize(pool.emotion[test][mask], predictions[mask],
                                            class_names)
                        scores[count][setting][name].append(dict(summary, seed=seed))
                        line.append(f"{name} UA {100 * summary['ua']:.1f}")
                    print(f"[{setting}] {fold_name}: " + ", ".join(line)
                          + f" (best validation UA {100 * (result['best_validation'] or 0):.1f}"
                          f" at epoch {result['best_epoch']})", flush=True)
                    if (language_head or domain_head) and count == 0:
                        validation_ua = result["best_validation"] or 0.0
                        if best_multitask is None or validation_ua > best_multitask["validation"]:
                            best_multitask = {
                                "validation": validation_ua, "fold_dir": fold_dir,
                                "setting": setting, "seed": seed, "languages": languages,
                            }

    def aggregate(runs):
        entry = {}
        for score in ("ua", "wa", "macro_f1"):
            mean, std = mean_and_spread([100 * r[score] for r in runs])
            entry[score], entry[f"{score}_std"] = mean, std
        entry["runs"] = [
            {"seed": r["seed"], "ua": 100 * r["ua"], "wa": 100 * r["wa"]} for r in runs
        ]
        entry["confusion"] = np.sum([np.asarray(r["confusion"]) for r in runs], axis=0).tolist()
        return entry

    results = {"targets": {n: pool.kinds[n] for n in target_names}}
    if 0 in target_samples:
        results["settings"] = {
            setting: {name: aggregate(scores[0][setting][name]) for name in target_names}
            for setting in settings
        }
    curve = [n for n in target_samples if n > 0]
    if curve:
        results["target_samples"] = {
            str(n): {
                setting: {name: aggregate(scores[n][setting][name]) for name in target_names}
                for setting in settings
            }
            for n in curve
        }
    _write_crosslang_reports(state.out_dir, results, settings, target_names, pool)
    results["_best_multitask"] = best_multitask
    return results


def _run_within(context):
    """Table 2: single-task within-corpus baseline on every labelled and target corpus."""
    from ser_keras.data.splits import leave_one_speaker_out, speaker_holdout_folds
    from ser_keras.evaluation import reports
    from ser_keras.evaluation.metrics import mean_and_spread

    args, pool, state = context["args"], context["pool"], context["state"]
    corpora = dict(pool.labelled_corpora)
    corpora.update(pool.targets)
    results = {"within": {}}
    for name, indices in corpora.items():
        indices = indices[pool.emotion[indices] >= 0]
        utterances = [pool.utterances[i] for i in indices]
        num_speakers = len({u.speaker_id for u in utterances})
        fold_results = []
        for seed in range(args.seed, args.seed + args.runs):
            if pool.kinds[name] == "urdu":
                # URDU: 25 training speakers (validation included), the rest
                # tested, five random splits (fewer training speakers when the
                # corpus is smaller).
                folds = speaker_holdout_folds(
                    utterances, min(25, num_speakers - 1), 5, validation="speaker", seed=seed,
                    labels=pool.emotion[indices],
                )
                protocol = f"{min(25, num_speakers - 1)} training speakers, 5 folds"
            else:
                folds = leave_one_speaker_out(
                    utterances, validation="speaker", seed=seed, labels=pool.emotion[indices]
                )
                protocol = "leave one speaker out"
            folds = folds[: args.folds] if args.folds else folds
            print(f"\n=== within {name}: {protocol}, seed {seed} ({len(folds)} folds) ===",
                  flush=True)
            for fold in folds:
                fold_dir = state.fold_dir(f"within_{name}", f"seed{seed}_{fold.name}")
                train = indices[fold.train]
                result, _ = _train_once(
                    context, fold_dir, train, {"emotion": pool.emotion[train]},
                    indices[fold.validation], indices[fold.test], 0, False, seed,
                )
                result["fold"] = fold.name
                result["seed"] = seed
                fold_results.append(result)
                print(f"[within {name}] {fold.name}: UA {100 * result['ua']:.1f}", flush=True)
        ua, ua_std = mean_and_spread([100 * r["ua"] for r in fold_results])
        wa, wa_std = mean_and_spread([100 * r["wa"] for r in fold_results])
        results["within"][name] = {
            "protocol": protocol, "ua": ua, "ua_std": ua_std, "wa": wa, "wa_std": wa_std,
            "folds": [
                {"fold": r["fold"], "seed": r["seed"], "ua": 100 * r["ua"], "wa": 100 * r["wa"]}
                for r in fold_results
            ],
        }
    names = list(results["within"])
    rows = [["UAR (%), this run"] + [
        f"{results['within'][n]['ua']:.1f} ± {results['within'][n]['ua_std']:.1f}" for n in names
    ]]
    paper = [PAPER_TABLE2.get(pool.kinds[n]) for n in names]
    if any(value is not None for value in paper):
        rows.append(["UAR (%), paper (Table 2)"] + paper)
    table = reports.markdown_table(["", *names], rows, float_format="{:.1f}")
    text = (
        "# Within-corpus binary valence (layout of Table 2, Latif et al.)\n\n"
        "Single-task ResNet-LSTM; mean ± std over folds and runs.\n\n" + table + "\n"
    )
    reports.write_text_atomic(state.out_dir / "results.md", text)
    print("\n" + table)
    return results


# ---------------------------------------------------------------------------
# Reports


def _cell(entry):
    if entry["ua_std"] and len(entry["runs"]) > 1:
        return f"{entry['ua']:.1f} ± {entry['ua_std']:.1f}"
    return f"{entry['ua']:.1f}"


def _write_crosslang_reports(out_dir, results, settings, target_names, pool):
    from ser_keras.evaluation import reports

    kinds = results["targets"]
    sections = ["# Cross-language binary valence (layout of Table 3, Latif et al.)", ""]
    if "settings" in results:
        rows = [
            [SETTINGS[s][3]] + [_cell(results["settings"][s][t]) for t in target_names]
            for s in settings
        ]
        paper_rows = [
            [f"{SETTINGS[s][3]} (paper)"] + [PAPER_TABLE3[s].get(kinds[t]) for t in target_names]
            for s in settings
            if s in PAPER_TABLE3 and any(kinds[t] in PAPER_TABLE3[s] for t in target_names)
        ]
        table = reports.markdown_table(["Model", *target_names], rows + paper_rows,
                                       float_format="{:.1f}")
        wa_rows = [
            [SETTINGS[s][3]] + [
                f"{results['settings'][s][t]['wa']:.1f}" for t in target_names
            ]
            for s in settings
        ]
        sections += [
            "UAR (%) on each target corpus; mean ± std over runs (seeds) where there are "
            "several. Paper rows: trained on IEMOCAP (Table 3).",
            "",
            table,
            "",
            "## WA (%)",
            "",
            reports.markdown_table(["Model", *target_names], wa_rows),
            "",
        ]
        print("\n" + table)
        for target in target_names:
            per_setting = {
                s: {
                    "ua": results["settings"][s][target]["ua"] / 100,
                    "wa": results["settings"][s][target]["wa"] / 100,
                    "ua_std": results["settings"][s][target]["ua_std"] / 100,
                    "wa_std": results["settings"][s][target]["wa_std"] / 100,
                }
                for s in settings
            }
            reference = {
                s: {"ua": PAPER_TABLE3[s][kinds[target]] / 100}
                for s in settings
                if kinds[target] in PAPER_TABLE3.get(s, {})
            }
            reports.plot_settings_comparison(
                per_setting, out_dir / f"table3_{target}.png",
                title=f"Cross-language valence, target {target}", reference=reference or None,
            )
    if "target_samples" in results:
        counts = sorted(int(n) for n in results["target_samples"])
        header = ["Setting", "Target"] + (["0"] if "settings" in results else []) + [
            str(n) for n in counts
        ]
        rows = []
        for setting in settings:
            for target in target_names:
                row = [setting, target]
                if "settings" in results:
                    row.append(_cell(results["settings"][setting][target]))
                row += [_cell(results["target_samples"][str(n)][setting][target]) for n in counts]
                rows.append(row)
        curve_table = reports.markdown_table(header, rows)
        sections += [
            "## UAR (%) with N labelled target utterances added to training "
            "(layout of Figure 3)",
            "",
            curve_table,
            "",
        ]
        print("\n" + curve_table)
        _plot_target_samples(out_dir / "figure3_target_samples.png", results, settings,
                             target_names, counts)
    reports.write_text_atomic(out_dir / "results.md", "\n".join(sections))


def _plot_target_samples(path, results, settings, target_names, counts):
    """UAR against the number of target samples, one line per setting and target (Figure 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ser_keras.evaluation.reports import atomic_path

    figure = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for setting in settings:
        for target in target_names:
            xs, ys, spreads = [], [], []
            if "settings" in results:
                entry = results["settings"][setting][target]
                xs.append(0), ys.append(entry["ua"]), spreads.append(entry["ua_std"])
            for n in counts:
                entry = results["target_samples"][str(n)][setting][target]
                xs.append(n), ys.append(entry["ua"]), spreads.append(entry["ua_std"])
            axes.errorbar(xs, ys, yerr=spreads, marker="o", capsize=3,
                          label=f"{target}, {setting}")
    axes.set_xlabel("labelled target utterances in training")
    axes.set_ylabel("UAR (%)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("Adding target samples (layout of Figure 3)")
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    figure.clear()


def _export(best, frontend, label_map, args, data, export_dir, served_statistics=None):
    """Exports the best multi-task model behind the front-end.

    With `served_statistics` (`--normalize corpus`), a `BandStandardization`
    holding that corpus's statistics goes in front of the model.
    """
    import keras

    from ser_keras.features.normalization import BandStandardization
    from ser_keras.models.resnet_lstm import DOMAIN_CLASSES

    model = keras.models.load_model(str(best["fold_dir"] / "best.keras"))
    label_names = {"emotion": list(label_map.classes)}
    if "language" in model.output:
        label_names["language"] = list(best["languages"])
    if "domain" in model.output:
        label_names["domain"] = list(DOMAIN_CLASSES)
    normalization = "per utterance (the front-end)"
    if served_statistics is not None:
        inputs = keras.Input(model.input_shape[1:], name="features")
        standardize = BandStandardization(
            served_statistics["mean"], served_statistics["std"], pad_value=frontend.pad_value,
            name="corpus_standardization",
        )
        model = keras.Model(inputs, model(standardize(inputs)), name=model.name)
        normalization = f"per utterance, then per band with {served_statistics['corpus']}'s " \
            "statistics (--normalize corpus)"
    path = cli.export_for_serving(
        model,
        export_dir,
        "resnet_lstm_mtl",
        frontend=frontend,
        label_names=label_names,
        metadata={
            "app": "train_crosslang_valence",
            "setting": best["setting"],
            "seed": best["seed"],
            "validation_ua": 100 * best["validation"],
            "preset": args.preset,
            "data": data,
            "feature_normalization": normalization,
        },
    )
    print(f"\nExported the best multi-task model ({best['setting']}, seed {best['seed']}, "
          f"validation UA {100 * best['validation']:.1f}; features normalised {normalization}) "
          f"to {path}")
    return path


if __name__ == "__main__":
    sys.exit(main())
