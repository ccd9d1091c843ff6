"""An experiment's deep model against openSMILE functionals + SVM on the very same folds.

For every seed, the experiment object itself gives the data rows, its
speaker-independent folds and each setting's training rows; the deep model
is trained by the experiment's own `run()` on exactly those rows, and the
reference a practitioner reaches for first (`../shared/tools/reference_baseline.py`,
the nkululeko / audEERING recipe) is fitted on the same folds:

- features: openSMILE eGeMAPSv02 (88) and ComParE 2016 (6373) functionals of
  the waveforms the deep model sees (the package's loaders and waveform
  cache: trimmed, 16 kHz), of the rows with an emotion label only (speech
  without one, e.g. aae_mtl's additional corpora, is never given to the
  SVM), cached per corpus under `<cache>/functionals/` keyed by the file
  list, so reruns are fast;
- normalisation: every functional z-normalised per speaker, each speaker
  with its own statistics. That includes the TEST speaker: its statistics
  come from its own (unlabelled) test utterances, which the standard recipe
  assumes available at test time (no label is read);
- classifier: `StandardScaler` + `SVC(class_weight="balanced")`, RBF C=10
  for eGeMAPS, linear C=0.001 for ComParE (the recipe's fixed values; no C is
  chosen on anything). The SVM is fitted on the fold's training + validation
  rows of the setting that carry an emotion label (all of them from training
  speakers: the validation rows are the deep model's checkpoint-selection
  share, which the SVM does not need; unlabelled rows a setting adds for its
  unsupervised or auxiliary losses are left out) and scored once on the
  fold's test rows, the deep model's. A setting scored on part of the test
  rows (multilingual_gating: one language) gives the SVM that part of both.
  Before that, the speakers (with utterance counts) the deep run's manifests
  say it trained, validated and tested on are checked against the
  protocol's rows, and so is the number of rows it scored where the run
  records it.

Reported per setting: UA/WA per fold and pooled over folds, mean ± sd over
seeds, the differences and ratios deep / reference, and a paired two-sided
Wilcoxon signed-rank test of the deep model's UA against each reference's
over the (fold, seed) pairs (`ser_keras.evaluation.statistics`, scipy's
test). Written to `--out`: `results.json`, `results.md` and `per_fold.png`.

    python -m benchmarks.bench_vs_reference --experiment fu_savee_crosslang \\
        --corpus ravdess:../shared/data/ravdess --corpus emodb:../shared/data/emodb \\
        --preset quick --seeds 3 --settings stl,mtl,xl,mtl_xl --epochs 5
    python -m benchmarks.bench_vs_reference --experiment aae_mtl \\
        --corpus emodb:../shared/data/emodb --corpus folder:en:DIR \\
        --preset cpu --seeds 3 --settings cnn,stl,mtl
    python -m benchmarks.bench_vs_reference --experiment gender_naturalness \\
        --corpus emodb:../shared/data/emodb --corpus ravdess:../shared/data/ravdess \\
        --preset cpu --set protocol=loso --set networks=dnn --set aux=gender
    python -m benchmarks.bench_vs_reference --experiment multilingual_gating \\
        --corpus emodb:../shared/data/emodb --corpus ravdess:../shared/data/ravdess \\
        --preset cpu --set split=speaker --settings base,multigate --set ablation=none

`--corpus` fills the experiment's corpus fields in order:

- fu_savee_crosslang: `savee` (the corpus evaluated leave-one-speaker-out),
  then `emodb` (the cross-language corpus the `xl` settings add);
- aae_mtl: `labelled` (the emotional corpus evaluated leave-one-speaker-out),
  then `additional` (every further `--corpus`: speech without emotion labels
  for the unsupervised phases and the speaker and gender tasks; the SVM
  never sees it). Only `protocol=loso` (the default) is speaker-independent,
  so only it is accepted;
- gender_naturalness: `corpora` (every corpus). One protocol per run:
  `--set protocol=loso` (within-corpus leave-one-speaker-out; `--folds N`:
  the first N speakers of each corpus) or `--set protocol=loco`
  (leave-one-corpus-out; `--set loco_folds=N`), to be given with 2+
  corpora or the synthetic ones. The settings are the experiment's
  `<network>_<variant>` models (DNN/LSTM with the ELM back-end; STL,
  Gender-, Naturalness-, ALL-MTL), chosen with `--set networks=...` and
  `--set aux=...`, not `--settings`;
- multilingual_gating: `corpus` (every corpus; the loader gives each its
  language). Only `split=speaker` is speaker-independent, so only it is
  accepted (`--set split=speaker`). `--folds N`: N repeats. `--settings`
  picks the Table 3 variants; each is compared per language, as the
  setting `<variant>/<language>`, the SVM trained on that language's rows
  only (the deep model trains on every language's). The labels are in the
  union of the languages' classes (the class count and chance UA reported
  are the union's), of which a language's SVM learns its own.

Without `--corpus` the experiment's synthetic corpora are used. Needs
openSMILE: `pip install -e ".[reference]"`.

Adding an experiment: a `BenchExperiment` entry in `EXPERIMENTS` naming its
class, the configuration fields `--corpus` fills in order (a tuple-valued
last field takes every remaining corpus), and a `protocol`
function that returns a `Protocol` (data rows, folds, training rows per
setting and fold, optionally the rows each setting scores) from the
experiment object, plus `deep_scores` reading the per-fold UA/WA and the
pooled confusion matrix of a setting from its `results.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
import pathlib
import shlex
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

FEATURE_SETS = ("egemaps", "compare")
FEATURE_TITLES = {"egemaps": "eGeMAPS", "compare": "ComParE"}
# The SVMs of ../shared/tools/reference_baseline.py: (kernel, C).
CLASSIFIERS = {"egemaps": ("rbf", 10.0), "compare": ("linear", 0.001)}
# Utterances per openSMILE progress line.
PROGRESS_EVERY = 100


# ------------------------------------------------------------ the registry


@dataclasses.dataclass
class Protocol:
    """What the benchmark needs from an experiment, taken from the experiment object.

    Attributes:
        data: The experiment's data dict: at least `utterances` (the rows,
            `Utterance`s, one per utterance), `labels` (int class per row,
            -1: no emotion label, never given to the SVM) and
            `class_names`. `Experiment.run()` is given exactly this dict.
        folds: The experiment's folds (`ser_keras.data.splits.Fold`: train,
            validation and test row indices into `data["utterances"]`).
        train_rows: Setting -> one array of training rows per fold (the
            fold's `train` plus whatever the setting adds, e.g. another
            corpus), exactly as the experiment trains on them. Its keys are
            the settings compared, in order.
        scored_rows: Setting -> the rows it is scored on, for a setting that
            scores part of the fold's test rows (multilingual_gating: one
            language's); the SVM then learns from the deep model's labelled
            rows among them and is tested on the fold's test rows among
            them. None (or a setting not named): every row.
        run_data: What the experiment's `load_data` returns inside `run()`
            when that is not `data` itself (e.g. gender_naturalness's
            `FrameData`, of which `data` holds the rows and labels).
    """

    data: dict
    folds: list
    train_rows: dict[str, list[np.ndarray]]
    scored_rows: dict[str, np.ndarray] | None = None
    run_data: object = None


@dataclasses.dataclass(frozen=True)
class BenchExperiment:
    """An experiment the benchmark can run.

    Attributes:
        target: `"module:Class"` of the `Experiment` subclass.
        corpus_fields: Configuration fields filled from `--corpus`, in order
            (the first is the corpus evaluated). The last may be a
            tuple-valued field (`tuple[...]`, default `()` or None): it takes
            every remaining corpus.
        settings_field: The configuration field `--settings` fills; None:
            the settings follow from other fields, and `--settings` is
            refused with `settings_note`.
        protocol: `experiment -> Protocol`.
        deep_scores: `(results, setting, fold_dir) -> (folds, confusion)`:
            the `results.json` fold entries (each with `fold`, `ua`, `wa` in
            percent, the manifest's `train_speakers`, `validation_speakers`
            and `test_speakers`, and, where known, `num_test`: the rows
            scored) and the pooled confusion matrix; `fold_dir(setting,
            fold)` is a fold's folder of the deep run.
        folds_field: The configuration field `--folds` fills.
        settings_note: How the settings are chosen when `settings_field` is
            None (the refusal of `--settings` says it).
    """

    target: str
    corpus_fields: tuple[str, ...]
    settings_field: str | None
    protocol: Callable[[object], Protocol]
    deep_scores: Callable[[dict, str, Callable], tuple[list[dict], np.ndarray]]
    folds_field: str = "folds"
    settings_note: str = ""

    def experiment_class(self):
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


def fu_savee_crosslang_protocol(experiment) -> Protocol:
    """Paper 004: LOSO folds of the primary corpus; `xl` settings add every EMO-DB row."""
    from ser_keras.experiments.fu_savee_crosslang import SETTINGS

    data = experiment.load_data()
    folds = experiment.folds(data)
    extra = np.arange(data["num_primary"], len(data["utterances"]), dtype=np.int64)
    train_rows = {}
    for setting in experiment.config.settings:
        crosslang = SETTINGS[setting][1]
        train_rows[setting] = [
            np.concatenate([np.asarray(fold.train, np.int64), extra])
            if crosslang
            else np.asarray(fold.train, np.int64)
            for fold in folds
        ]
    return Protocol(data=data, folds=list(folds), train_rows=train_rows)


def aae_mtl_protocol(experiment) -> Protocol:
    """Paper 002: LOSO folds of the labelled corpus; most settings add unlabelled speech.

    `AAEMultiTask.load_data` returns one row per utterance (the labelled
    corpus first, then the additional speech); its segments are the deep
    model's input only, so the reference reads the same rows whole, with
    `emotion` (-1 for the additional speech) as `labels`.

    Raises:
        ValueError: The configuration's protocol is not `"loso"` (the
            paper's 10 folds are speaker-dependent).
    """
    from ser_keras.experiments.aae_mtl import SETTINGS

    if experiment.config.protocol != "loso":
        raise ValueError(
            "--set protocol: the benchmark compares speaker-independent folds and needs "
            f"protocol=loso. Received: {experiment.config.protocol!r}"
        )
    data = experiment.load_data()
    data = dict(data, labels=data["emotion"])
    folds = experiment.folds(data)
    # The settings that use additional speech (all but `cnn`) train on the
    # fold's labelled rows plus every additional row outside the held-out
    # verification speakers (`train_setting_fold`), so those are their
    # training rows here: the deep run's manifests are checked against them.
    # Those rows have no emotion label (-1): the emotion loss sees the fold's
    # labelled rows only, and so does the SVM, which `run` fits on the rows
    # with a label. Every setting's SVM is therefore the same fit.
    extra = np.asarray(data["additional_train_index"], np.int64)
    train_rows = {}
    for setting in experiment.config.settings:
        uses_additional = SETTINGS[setting][2]
        train_rows[setting] = [
            np.concatenate([np.asarray(fold.train, np.int64), extra])
            if uses_additional
            else np.asarray(fold.train, np.int64)
            for fold in folds
        ]
    return Protocol(data=data, folds=list(folds), train_rows=train_rows)


def gender_naturalness_protocol(experiment) -> Protocol:
    """Paper 001: one protocol's folds (within-corpus LOSO or LOCO), every network and variant.

    The settings are the experiment's models `<network>_<variant>` (e.g.
    `dnn_stl`, `lstm_all`), each scored as the experiment scores it: the
    network trained on the fold's training rows (checkpoint chosen on its
    validation rows), the ELM back-end fitted on the training rows. All of
    them train on the fold's rows, and every row has an emotion label (the
    four classes), so every setting's SVM is one fit on the fold's training +
    validation rows. LOCO folds are the experiment's: a corpus split into its
    acted and natural parts leaves the tested speakers' other part out of
    training, for the SVM too. `GenderNaturalness.load_data` gives a
    `FrameData`; `run()` is given that very object (`run_data`).

    Raises:
        ValueError: The configuration runs both protocols (`protocol`
            "both", or None with 2+ corpora or the synthetic ones): the
            benchmark compares one protocol's folds per run.
    """
    config = experiment.config
    if len(config.protocols) != 1:
        raise ValueError(
            "--set protocol: the benchmark compares one protocol's folds per run; give "
            "protocol=loso or protocol=loco (None runs both with 2+ corpora or the synthetic "
            f"ones). Received: {config.protocol!r}"
        )
    (name,) = config.protocols
    frame_data = experiment.load_data(*experiment.corpus_specs())
    folds, _ = experiment.folds(name, frame_data)
    data = {
        "utterances": frame_data.utterances,
        "labels": frame_data.labels["emotion"],
        "class_names": frame_data.class_names,
    }
    train_rows = {
        f"{network}_{variant}": [np.asarray(fold.train, np.int64) for fold in folds]
        for network in config.networks
        for variant in config.variants
    }
    return Protocol(data=data, folds=list(folds), train_rows=train_rows, run_data=frame_data)


def multilingual_gating_protocol(experiment) -> Protocol:
    """Paper 003: the speaker split's repeats as folds; one setting per variant and language.

    Every Table 3 variant is trained once per repeat on all languages'
    training rows and scored per language (its head for that language; the
    `base` variant's shared head). The setting `<variant>/<language>`
    (e.g. `multigate/de`) is that score; its SVM learns from the language's
    training + validation rows only and is tested on the language's test
    rows (`scored_rows`), the deep model's. Labels: the union of the
    languages' classes (`MultilingualData.union_labels`), so an SVM of one
    language only ever predicts that language's classes. Table 4's ablation
    models are not compared (`--set ablation=none` skips them).

    Raises:
        ValueError: The configuration's split is not `"speaker"` (the
            paper's random split tests utterances of speakers it trains on).
    """
    from ser_keras.data.splits import Fold

    config = experiment.config
    if config.split != "speaker":
        raise ValueError(
            "--set split: the benchmark compares speaker-independent folds and needs "
            f"split=speaker. Received: {config.split!r}"
        )
    model_preset = experiment.model_preset()
    _, use_egemaps, _ = experiment.resolve_experts(model_preset)
    multilingual = experiment.load_data(*experiment.corpus_specs(), model_preset, use_egemaps)
    # Named as `MultilingualGating.train_setting` names its repeats (the run's
    # fold names are checked against these).
    folds = [
        Fold(name=f"r{repeat + 1}", train=train, validation=validation, test=test)
        for repeat, (train, validation, test) in enumerate(experiment.splits(multilingual))
    ]
    data = {
        "utterances": multilingual.utterances,
        "labels": multilingual.union_labels,
        "class_names": list(multilingual.union),
    }
    train_rows, scored_rows = {}, {}
    for variant in config.variants:
        for language in multilingual.languages:
            setting = f"{variant}/{language}"
            train_rows[setting] = [np.asarray(fold.train, np.int64) for fold in folds]
            scored_rows[setting] = multilingual.rows_of(language)
    return Protocol(
        data=data, folds=folds, train_rows=train_rows, scored_rows=scored_rows,
        run_data=multilingual,
    )


def settings_deep_scores(results: dict, setting: str, fold_dir=None):
    """`results["settings"][setting]`'s fold entries and pooled confusion."""
    entry = results["settings"][setting]
    return entry["folds"], np.asarray(entry["confusion"])


def gender_naturalness_deep_scores(results: dict, setting: str, fold_dir=None):
    """The fold entries and pooled confusion of `<network>_<variant>` in the one protocol run."""
    (summary,) = results["protocols"].values()
    network, variant = setting.split("_", 1)
    entry = summary[network][variant]
    return entry["folds"], np.asarray(entry["confusion"])


def multilingual_gating_deep_scores(results: dict, setting: str, fold_dir):
    """`<variant>/<language>`: the language's UA/WA per repeat, its confusion pooled over them.

    The scores are `results.json`'s; each repeat's confusion matrix of the
    language is its `languages.json` (in the fold's folder), in the classes
    of the language's head (the union's for `base`), the same in every
    repeat: only its pooled UA and WA are reported.
    """
    variant, language = setting.rsplit("/", 1)
    folds, pooled = [], 0
    for entry in results["folds"][variant]:
        record = json.loads((fold_dir(variant, entry["fold"]) / "languages.json").read_text())
        pooled = pooled + np.asarray(record["languages"][language]["confusion"], np.int64)
        folds.append(
            {
                "fold": entry["fold"],
                **{key: entry["languages"][language][key] for key in ("ua", "wa", "num_test")},
                **{
                    part: entry[part]
                    for part in ("train_speakers", "validation_speakers", "test_speakers")
                },
            }
        )
    return folds, pooled


EXPERIMENTS = {
    "fu_savee_crosslang": BenchExperiment(
        target="ser_keras.experiments.fu_savee_crosslang:FuSaveeCrossLanguage",
        corpus_fields=("savee", "emodb"),
        settings_field="settings",
        protocol=fu_savee_crosslang_protocol,
        deep_scores=settings_deep_scores,
    ),
    "aae_mtl": BenchExperiment(
        target="ser_keras.experiments.aae_mtl:AAEMultiTask",
        corpus_fields=("labelled", "additional"),
        settings_field="settings",
        protocol=aae_mtl_protocol,
        deep_scores=settings_deep_scores,
    ),
    "gender_naturalness": BenchExperiment(
        target="ser_keras.experiments.gender_naturalness:GenderNaturalness",
        corpus_fields=("corpora",),
        settings_field=None,
        settings_note="its settings are every network and variant of --set networks=dnn,lstm "
        "and --set aux=gender,naturalness (aux=none: STL only)",
        protocol=gender_naturalness_protocol,
        deep_scores=gender_naturalness_deep_scores,
    ),
    "multilingual_gating": BenchExperiment(
        target="ser_keras.experiments.multilingual_gating:MultilingualGating",
        corpus_fields=("corpus",),
        settings_field="variants",
        folds_field="repeats",
        protocol=multilingual_gating_protocol,
        deep_scores=multilingual_gating_deep_scores,
    ),
}


# ------------------------------------------------------------ functionals


def functionals_cache_path(cache_dir, corpus: str, feature_set: str, paths, digest: str):
    """`<cache>/functionals/<corpus>_<set>_<key>.npz`, the key a hash of the file list."""
    key = hashlib.sha256(
        json.dumps([feature_set, digest, [str(path) for path in paths]]).encode("utf-8")
    ).hexdigest()[:16]
    return pathlib.Path(cache_dir) / "functionals" / f"{corpus}_{feature_set}_{key}.npz"


def extract_functionals(waveforms, sample_rate: int, feature_set: str, name: str) -> np.ndarray:
    """openSMILE functionals in this process (NaN set to 0), with progress lines.

    openSMILE must be loaded before TensorFlow in a process: its native
    library crashes (segmentation fault) in `process_signal` when TensorFlow
    was imported first, so `corpus_functionals` calls this in a fresh
    process that imports `opensmile` first.
    """
    import opensmile  # noqa: F401  (first: before ser_keras.features imports TensorFlow)

    from ser_keras.features.opensmile_functionals import opensmile_functionals

    started = time.time()
    parts = []
    for start in range(0, len(waveforms), PROGRESS_EVERY):
        parts.append(
            opensmile_functionals(
                waveforms[start : start + PROGRESS_EVERY], sample_rate, feature_set
            )
        )
        print(
            f"  {FEATURE_TITLES[feature_set]} functionals, {name}: "
            f"{min(start + PROGRESS_EVERY, len(waveforms))}/{len(waveforms)} "
            f"({time.time() - started:.0f} s)",
            flush=True,
        )
    return np.nan_to_num(np.concatenate(parts).astype(np.float32))


def corpus_functionals(utterances: Sequence, feature_sets: Sequence[str], cache_dir) -> dict:
    """openSMILE functionals of every row, computed once per corpus and feature set.

    The waveforms are read through the experiments' waveform cache
    (`<cache>/waveforms`, default decoding options), as the deep model
    reads them. What is not cached yet is computed in one fresh process
    (`extract_functionals`).

    Returns:
        Feature set -> float32 `[len(utterances), num_functionals]`.

    Raises:
        ValueError: A row's file can no longer be decoded.
    """
    import concurrent.futures
    import multiprocessing

    from ser_keras.data.cache import WaveformCache

    waveform_cache = WaveformCache(pathlib.Path(cache_dir) / "waveforms")
    corpora = np.asarray([utterance.corpus for utterance in utterances])
    blocks, missing = {}, []
    for corpus in dict.fromkeys(corpora.tolist()):
        rows = np.flatnonzero(corpora == corpus)
        paths = [str(utterances[i].path) for i in rows]
        for feature_set in feature_sets:
            cache_path = functionals_cache_path(
                cache_dir, corpus, feature_set, paths, waveform_cache.options_digest
            )
            if cache_path.exists():
                stored = np.load(cache_path, allow_pickle=False)
                if stored["paths"].tolist() == paths:
                    blocks[(corpus, feature_set)] = (rows, stored["features"])
                    continue
            missing.append((corpus, feature_set, rows, paths, cache_path))
    if missing:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            waveforms = {}
            for corpus, feature_set, rows, paths, cache_path in missing:
                if corpus not in waveforms:
                    loaded = waveform_cache.load([utterances[i] for i in rows], progress=False)
                    if [str(u.path) for u in loaded.utterances] != paths:
                        raise ValueError(
                            f"{corpus}: {len(paths) - len(loaded.utterances)} file(s) of the "
                            "experiment's rows could not be decoded again; clear the waveform "
                            "cache and rerun."
                        )
                    waveforms[corpus] = (loaded.waveforms, loaded.sample_rate)
                block = pool.submit(
                    extract_functionals, *waveforms[corpus], feature_set, corpus
                ).result()
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                temporary = cache_path.with_name(cache_path.stem + ".partial.npz")
                np.savez(temporary, paths=np.asarray(paths), features=block)
                os.replace(temporary, cache_path)
                blocks[(corpus, feature_set)] = (rows, block)
    features = {}
    for feature_set in feature_sets:
        parts = [value for key, value in blocks.items() if key[1] == feature_set]
        array = np.zeros((len(utterances), parts[0][1].shape[1]), np.float32)
        for rows, block in parts:
            array[rows] = block
        features[feature_set] = array
    return features


def normalize_per_speaker(features: np.ndarray, speakers: Sequence[str]) -> np.ndarray:
    """Z-normalises every functional per speaker, with that speaker's own rows (no labels)."""
    from ser_keras.features.normalization import standardize_per_speaker

    return standardize_per_speaker(
        features[:, None, :], np.asarray(speakers), pad_value=np.nan
    )[:, 0]


# ------------------------------------------------------------ the reference


def fit_reference(features, labels, train_rows, test_rows, feature_set: str) -> np.ndarray:
    """Fits the reference SVM on `train_rows`; returns its predictions for `test_rows`."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    kernel, penalty = CLASSIFIERS[feature_set]
    classifier = make_pipeline(
        StandardScaler(), SVC(kernel=kernel, C=penalty, class_weight="balanced")
    )
    classifier.fit(features[train_rows], labels[train_rows])
    return classifier.predict(features[test_rows])


def scores_of(truth, predicted) -> dict:
    from ser_keras.evaluation.metrics import unweighted_accuracy, weighted_accuracy

    return {
        "ua": 100 * unweighted_accuracy(truth, predicted),
        "wa": 100 * weighted_accuracy(truth, predicted),
    }


def scores_of_confusion(confusion) -> dict:
    """UA (mean recall over the classes present) and WA of a confusion matrix, percent."""
    confusion = np.asarray(confusion, dtype=np.float64)
    support = confusion.sum(axis=1)
    present = support > 0
    recall = np.diag(confusion)[present] / support[present]
    total = confusion.sum()
    return {
        "ua": 100 * float(recall.mean()) if recall.size else float("nan"),
        "wa": 100 * float(np.trace(confusion) / total) if total else float("nan"),
    }


# ------------------------------------------------------------------ run


def parse_value(text: str):
    """A `--set` value: JSON (numbers, true/false/null, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def build_config(entry: BenchExperiment, args, seed: int, out_dir: pathlib.Path):
    """The experiment's configuration for one seed (a `ConfigError` names the option)."""
    from ser_keras.experiments.config import ConfigError

    config_class = entry.experiment_class().config_class
    if args.preset not in config_class.PRESETS:
        raise ValueError(
            f"--preset {args.preset}: {args.experiment} has no such preset; available presets: "
            f"{', '.join(config_class.PRESETS)}."
        )
    corpora, fields = list(args.corpus or ()), entry.corpus_fields
    last = next(field for field in dataclasses.fields(config_class) if field.name == fields[-1])
    # A tuple-valued last field (aae_mtl's `additional`, gender_naturalness's
    # `corpora`) takes every remaining corpus.
    many = isinstance(last.default, tuple) or str(last.type).startswith("tuple")
    if len(corpora) > len(fields) and not many:
        raise ValueError(
            f"--corpus: {args.experiment} takes at most {len(fields)} corpora "
            f"({', '.join(fields)}). Received: {len(corpora)}"
        )
    overrides = dict(zip(fields, corpora, strict=False))
    if many and len(corpora) >= len(fields):
        overrides[fields[-1]] = tuple(corpora[len(fields) - 1 :])
    for item in args.set or ():
        name, separator, value = item.partition("=")
        if not separator:
            raise ValueError(f"--set takes KEY=VALUE. Received: {item!r}")
        overrides[name.strip().replace("-", "_")] = parse_value(value)
    if args.settings:
        if entry.settings_field is None:
            raise ValueError(
                f"--settings: {args.experiment} takes no list of settings: {entry.settings_note}. "
                f"Received: {args.settings!r}"
            )
        overrides[entry.settings_field] = tuple(
            name.strip() for name in args.settings.split(",") if name.strip()
        )
    if args.folds is not None:
        overrides[entry.folds_field] = args.folds
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    overrides.update(
        seed=seed,
        out=str(out_dir),
        resume=args.resume,
        quiet=not args.verbose,
        cache_dir=args.cache_dir,
    )
    try:
        # `from_preset` ignores None values: the export is switched off after.
        return config_class.from_preset(args.preset, **overrides).replace(export_dir=None)
    except ConfigError as error:
        if error.field in entry.corpus_fields:
            raise ValueError(
                f"--corpus ({', '.join(entry.corpus_fields)} in that order): {error}"
            ) from None
        raise ValueError(error.as_option()) from None


def run(args) -> dict:
    """Runs the benchmark; returns the content of `results.json`."""
    from ser_keras.evaluation.metrics import confusion_matrix
    from ser_keras.experiments.base import split_manifest
    from ser_keras.features import opensmile_functionals as functionals_lib

    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1. Received: {args.seeds}")
    entry = EXPERIMENTS[args.experiment]
    out = pathlib.Path(args.out)
    # Every configuration is built (and checked) before anything is read or trained.
    configs = [build_config(entry, args, seed, out / "deep" / f"seed_{seed}")
               for seed in range(args.seeds)]
    if not functionals_lib.opensmile_available():
        raise ValueError(
            'the reference needs openSMILE, which is not installed: pip install -e ".[reference]"'
        )
    experiment_class = entry.experiment_class()
    settings = None  # the first seed's protocol names them
    started = time.time()
    runs = []  # one entry per (seed, setting, fold)
    fitted = {}  # (seed, feature set, training rows, test rows) -> predictions
    class_names = None
    pooled = {}  # (seed, system, setting) -> confusion
    for seed, config in zip(range(args.seeds), configs, strict=True):
        print(f"\n##### seed {seed}", flush=True)
        experiment = experiment_class(config)
        protocol = entry.protocol(experiment)
        if settings is None:
            settings = list(protocol.train_rows)
        elif list(protocol.train_rows) != settings:
            raise RuntimeError(
                f"seed {seed}: the settings {list(protocol.train_rows)} differ from {settings}."
            )
        data = protocol.data
        utterances, labels = data["utterances"], np.asarray(data["labels"])
        class_names = list(data["class_names"])
        # Functionals of the rows with an emotion label only (NaN elsewhere: an
        # SVM given an unlabelled row fails rather than learning class -1).
        scored = np.flatnonzero(labels >= 0)
        speakers = [utterances[i].speaker_id for i in scored]
        features = {}
        for feature_set, raw in corpus_functionals(
            [utterances[i] for i in scored], FEATURE_SETS, experiment.cache_dir
        ).items():
            features[feature_set] = np.full((len(utterances), raw.shape[1]), np.nan, np.float32)
            features[feature_set][scored] = normalize_per_speaker(raw, speakers)
        # The deep model: the experiment's own run, on the very data (so folds) above.
        run_data = data if protocol.run_data is None else protocol.run_data
        experiment.load_data = lambda *_, run_data=run_data: run_data
        results = experiment.run().results
        for setting in settings:
            deep_folds, deep_confusion = entry.deep_scores(
                results, setting, experiment.state.fold_dir
            )
            scored = (protocol.scored_rows or {}).get(setting)
            if [f["fold"] for f in deep_folds] != [fold.name for fold in protocol.folds]:
                raise RuntimeError(
                    f"{setting}: the experiment ran the folds "
                    f"{[f['fold'] for f in deep_folds]}, not {[f.name for f in protocol.folds]}."
                )
            pooled[(seed, "deep", setting)] = deep_confusion
            for fold, deep, train in zip(
                protocol.folds, deep_folds, protocol.train_rows[setting], strict=True
            ):
                test = np.asarray(fold.test, np.int64)
                # What the deep model trains and validates on; the SVM: those
                # rows with an emotion label.
                deep_rows = np.union1d(train, np.asarray(fold.validation, np.int64))
                reference_train = deep_rows[labels[deep_rows] >= 0]
                test_manifest = split_manifest(utterances, [], [], test)["test_speakers"]
                if deep["test_speakers"] != test_manifest:
                    raise RuntimeError(
                        f"{setting}, fold {fold.name}: the deep model was tested on "
                        f"{deep['test_speakers']}, the reference on {test_manifest}."
                    )
                if scored is not None:
                    # The setting scores part of the test rows (one language):
                    # the SVM learns from and is tested on that part only.
                    reference_train = reference_train[np.isin(reference_train, scored)]
                    test = test[np.isin(test, scored)]
                    test_manifest = split_manifest(utterances, [], [], test)["test_speakers"]
                if deep.get("num_test") is not None and deep["num_test"] != test.size:
                    raise RuntimeError(
                        f"{setting}, fold {fold.name}: the deep model scored "
                        f"{deep['num_test']} test rows, the reference {test.size}."
                    )
                deep_train = merged_counts(deep["train_speakers"] + deep["validation_speakers"])
                protocol_train = split_manifest(utterances, deep_rows, [], [])["train_speakers"]
                if deep_train != protocol_train:
                    raise RuntimeError(
                        f"{setting}, fold {fold.name}: the deep model trained and validated on "
                        f"{deep_train}, the protocol's rows are {protocol_train}."
                    )
                manifest = split_manifest(utterances, reference_train, [], test)
                record = {
                    "seed": seed,
                    "setting": setting,
                    "fold": fold.name,
                    "deep": {"ua": deep["ua"], "wa": deep["wa"]},
                    "test_speakers": test_manifest,
                    "test_rows": test.tolist(),
                    "reference_train_speakers": manifest["train_speakers"],
                    "num_reference_train_rows": int(reference_train.size),
                }
                leaked = {e["speaker"] for e in test_manifest} & {
                    e["speaker"] for e in protocol_train + manifest["train_speakers"]
                }
                if leaked:
                    raise RuntimeError(f"{fold.name}: test speakers {leaked} in the SVM's rows.")
                for feature_set in FEATURE_SETS:
                    # Settings with the same rows share one fit (per seed: the data may differ).
                    key = (seed, feature_set, reference_train.tobytes(), test.tobytes())
                    if key not in fitted:
                        fitted[key] = fit_reference(
                            features[feature_set], labels, reference_train, test, feature_set
                        )
                    predicted = fitted[key]
                    record[feature_set] = scores_of(labels[test], predicted)
                    confusion = confusion_matrix(labels[test], predicted, len(class_names))
                    pooled_key = (seed, feature_set, setting)
                    pooled[pooled_key] = pooled.get(pooled_key, 0) + confusion
                runs.append(record)
        # Written after every seed: a long run leaves the seeds finished so far.
        summary = write_outputs(
            out, args, configs, runs, pooled, settings, seed + 1, class_names, started
        )
    return summary


def write_outputs(out, args, configs, runs, pooled, settings, num_seeds, class_names, started):
    """Summarises the first `num_seeds` seeds into `results.json`, `results.md`, `per_fold.png`."""
    from ser_keras.evaluation import reports

    summary = summarize(runs, pooled, settings, num_seeds, class_names)
    summary.update(
        experiment=args.experiment,
        command="python -m benchmarks.bench_vs_reference " + shlex.join(getattr(args, "argv", [])),
        preset=args.preset,
        configuration=configs[0].run_config() | {"seed": list(range(num_seeds))},
        units="percent",
        class_names=class_names,
        chance_ua=100 / len(class_names),
        reference={
            name: {
                "features": f"openSMILE {FEATURE_TITLES[name]} functionals",
                "normalisation": "z-normalised per speaker with that speaker's own rows; the "
                "test speaker's statistics come from its own unlabelled test utterances",
                "classifier": f"StandardScaler + SVC(kernel={CLASSIFIERS[name][0]!r}, "
                f"C={CLASSIFIERS[name][1]:g}, class_weight='balanced')",
                "trained_on": "the fold's training + validation rows of the setting that carry "
                "an emotion label (training speakers only); C fixed, not selected",
            }
            for name in FEATURE_SETS
        },
        elapsed_seconds=round(time.time() - started, 1),
        runs=runs,
    )
    out.mkdir(parents=True, exist_ok=True)
    reports.write_json_atomic(out / "results.json", summary)
    (out / "results.md").write_text(markdown(summary) + "\n")
    plot_per_fold(summary, out / "per_fold.png")
    print_summary(summary)
    print(f"\nWritten to {out} (seeds 0-{num_seeds - 1}): results.json, results.md, per_fold.png")
    return summary


def merged_counts(entries) -> list[dict]:
    """`speaker_counts` entries with the counts of a speaker listed twice added up."""
    counts: dict[str, int] = {}
    for item in entries:
        counts[item["speaker"]] = counts.get(item["speaker"], 0) + item["utterances"]
    return [{"speaker": speaker, "utterances": counts[speaker]} for speaker in sorted(counts)]


def summarize(runs, pooled, settings, num_seeds, class_names) -> dict:
    """Per setting: per-fold and pooled scores, mean ± sd over seeds, Wilcoxon tests."""
    from ser_keras.evaluation.metrics import mean_and_spread
    from ser_keras.evaluation.statistics import wilcoxon_signed_rank

    systems = ("deep", *FEATURE_SETS)
    result = {"settings": {}}
    for setting in settings:
        records = [r for r in runs if r["setting"] == setting]
        fold_names = list(dict.fromkeys(r["fold"] for r in records))
        entry = {"systems": {}, "per_fold": {}, "wilcoxon": {}, "difference": {}, "ratio": {}}
        for system in systems:
            by_seed = {"ua": [], "wa": [], "pooled_ua": [], "pooled_wa": []}
            for seed in range(num_seeds):
                seed_records = [r for r in records if r["seed"] == seed]
                by_seed["ua"].append(float(np.mean([r[system]["ua"] for r in seed_records])))
                by_seed["wa"].append(float(np.mean([r[system]["wa"] for r in seed_records])))
                scores = scores_of_confusion(pooled[(seed, system, setting)])
                by_seed["pooled_ua"].append(scores["ua"])
                by_seed["pooled_wa"].append(scores["wa"])
            system_entry = {"per_seed": by_seed}
            for name, values in by_seed.items():
                system_entry[name], system_entry[name + "_sd"] = mean_and_spread(values)
            entry["systems"][system] = system_entry
        for fold in fold_names:
            entry["per_fold"][fold] = {
                system: [r[system]["ua"] for r in records if r["fold"] == fold]
                for system in systems
            }
        deep = [r["deep"]["ua"] for r in records]
        for feature_set in FEATURE_SETS:
            reference = [r[feature_set]["ua"] for r in records]
            test = wilcoxon_signed_rank(deep, reference)
            test["pairs"] = "(fold, seed)"
            entry["wilcoxon"][feature_set] = test
            deep_ua = entry["systems"]["deep"]["ua"]
            reference_ua = entry["systems"][feature_set]["ua"]
            entry["difference"][feature_set] = deep_ua - reference_ua
            entry["ratio"][feature_set] = deep_ua / reference_ua if reference_ua else None
        result["settings"][setting] = entry
    return result


# -------------------------------------------------------------- reports


def markdown(summary: dict) -> str:
    """`results.md`: the summary table, per-fold table, and how the reference was made."""
    from ser_keras.evaluation import reports
    from ser_keras.evaluation.statistics import format_p_value

    config = summary["configuration"]
    rows, fold_rows = [], []
    for setting, entry in summary["settings"].items():
        systems = entry["systems"]
        rows.append(
            [setting]
            + [f"{systems[s]['ua']:.1f} ± {systems[s]['ua_sd']:.1f}" for s in ("deep",)]
            + [f"{systems[s]['pooled_ua']:.1f}" for s in ("deep",)]
            + [f"{systems[s]['ua']:.1f} ± {systems[s]['ua_sd']:.1f}" for s in FEATURE_SETS]
            + [f"{entry['difference'][s]:+.1f}" for s in FEATURE_SETS]
            + [format_p_value(entry["wilcoxon"][s]) for s in FEATURE_SETS]
        )
        for fold, scores in entry["per_fold"].items():
            fold_rows.append(
                [setting, fold]
                + [f"{np.mean(scores['deep']):.1f} ± {np.std(scores['deep'], ddof=1):.1f}"
                   if len(scores["deep"]) > 1 else f"{scores['deep'][0]:.1f}"]
                + [f"{np.mean(scores[s]):.1f}" for s in FEATURE_SETS]
            )
    titles = [FEATURE_TITLES[s] for s in FEATURE_SETS]
    table = reports.markdown_table(
        ["setting", "deep UA", "deep pooled UA"]
        + [f"{t} UA" for t in titles]
        + [f"deep − {t}" for t in titles]
        + [f"Wilcoxon p vs {t}" for t in titles],
        rows,
    )
    fold_table = reports.markdown_table(
        ["setting", "fold", "deep UA (over seeds)"] + [f"{t} UA" for t in titles], fold_rows
    )
    num_seeds = len(config["seed"])
    first = next(iter(summary["settings"].values()))
    num_folds = len(first["per_fold"])
    reference = summary["reference"]["egemaps"]
    return "\n".join(
        [
            f"# {summary['experiment']}: deep model vs openSMILE + SVM on the same folds",
            "",
            f"Command: `{summary['command']}`",
            "",
            f"Preset {summary['preset']}, at most {config.get('epochs')} epoch(s), {num_folds} "
            f"speaker-independent fold(s), {num_seeds} seed(s); {len(summary['class_names'])} "
            f"classes, chance {summary['chance_ua']:.1f} % UA. Percent. Deep UA: mean over "
            "folds, then mean ± sd over seeds; pooled: UA of the confusion matrix summed over "
            "folds (mean over seeds). Reference UA: mean over folds, ± sd over seeds (0 where "
            "the seeds give the same rows). Reference: openSMILE functionals, "
            f"{reference['normalisation']}; {reference['trained_on']}. Wilcoxon: paired "
            f"two-sided signed-rank test over the {num_folds * num_seeds} (fold, seed) pairs "
            "of the deep model's UA and the reference's.",
            "",
            table,
            "",
            "## Per fold (UA)",
            "",
            fold_table,
        ]
    )


def print_summary(summary: dict) -> None:
    from ser_keras.evaluation.statistics import format_p_value

    print("\n=== deep model vs openSMILE + SVM, UA % (same folds) ===")
    for setting, entry in summary["settings"].items():
        deep = entry["systems"]["deep"]
        parts = [f"{setting:8s} deep {deep['ua']:5.1f} ± {deep['ua_sd']:4.1f}"]
        for feature_set in FEATURE_SETS:
            ratio = entry["ratio"][feature_set]
            parts.append(
                f"{FEATURE_TITLES[feature_set]} {entry['systems'][feature_set]['ua']:5.1f} "
                f"(deep − ref {entry['difference'][feature_set]:+5.1f}, deep/ref "
                + ("n/a" if ratio is None else f"{ratio:.2f}")
                + f", p {format_p_value(entry['wilcoxon'][feature_set])})"
            )
        print("  ".join(parts))


def plot_per_fold(summary: dict, path) -> None:
    """Bars per fold: every deep setting (mean ± sd over seeds) and each reference, chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ser_keras.utils.atomic import atomic_path

    settings = summary["settings"]
    folds = list(next(iter(settings.values()))["per_fold"])
    bars = [(f"deep {s}", s, "deep") for s in settings]
    # A reference appears once per distinct training-row set (settings with the same rows).
    groups = {}
    for setting in settings:
        key = json.dumps(
            [
                [r["seed"], r["fold"], r["num_reference_train_rows"], r["reference_train_speakers"]]
                for r in summary["runs"]
                if r["setting"] == setting
            ]
        )
        groups.setdefault(key, []).append(setting)
    for members in groups.values():
        for feature_set in FEATURE_SETS:
            label = FEATURE_TITLES[feature_set] + " SVM"
            if len(groups) > 1:
                label += f" ({'/'.join(members)} rows)"
            bars.append((label, members[0], feature_set))
    width = 0.8 / len(bars)
    figure, axis = plt.subplots(figsize=(max(6, 1.4 * len(folds) + 1) + 3, 4.5))
    positions = np.arange(len(folds))
    for number, (label, setting, system) in enumerate(bars):
        values = [settings[setting]["per_fold"][f][system] for f in folds]
        means = [float(np.mean(v)) for v in values]
        spreads = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in values]
        axis.bar(
            positions + (number - (len(bars) - 1) / 2) * width, means, width,
            yerr=spreads if system == "deep" else None, label=label, capsize=2,
            hatch="" if system == "deep" else ("//" if system == "egemaps" else ".."),
        )
    axis.axhline(summary["chance_ua"], color="black", linestyle="--", linewidth=1,
                 label=f"chance {summary['chance_ua']:.1f}")
    axis.set_xticks(positions, folds, rotation=30, ha="right")
    axis.set_ylabel("UA (%)")
    axis.set_ylim(0, 100)
    axis.set_title(f"{summary['experiment']}: UA per test fold")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=120, format="png")
    finally:
        plt.close(figure)


# ------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_vs_reference",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--experiment", required=True, choices=sorted(EXPERIMENTS),
        help="The experiment whose deep model is compared (its corpus fields: see --corpus).",
    )
    parser.add_argument(
        "--corpus", action="append", metavar="KIND:DIR",
        help="A corpus (a folder or a manifest, as the loaders read it), repeated: they fill "
        "the experiment's corpus fields in order (fu_savee_crosslang: savee, the corpus "
        "evaluated leave-one-speaker-out, then emodb, the cross-language corpus; aae_mtl: "
        "labelled, the emotional corpus evaluated leave-one-speaker-out, then additional, "
        "every further corpus, speech without emotion labels, e.g. folder:en:DIR; "
        "gender_naturalness: corpora, every corpus, evaluated with --set protocol=loso or "
        "loco; multilingual_gating: corpus, every corpus, the loader giving its language, "
        "with --set split=speaker). None: synthetic corpora.",
    )
    parser.add_argument("--preset", default="quick", help="The experiment's preset.")
    parser.add_argument("--seeds", type=int, default=3, help="Seeds 0..N-1.")
    parser.add_argument(
        "--settings", default=None,
        help="Comma-separated settings to run (multilingual_gating: variants, each compared "
        "per language; gender_naturalness: none, see --set networks / aux).",
    )
    parser.add_argument(
        "--folds", type=int, default=None,
        help="Only the first N folds (gender_naturalness: per corpus; multilingual_gating: "
        "N repeats).",
    )
    parser.add_argument("--epochs", type=int, default=None, help="Maximum epochs per fold.")
    parser.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="Any other configuration field of the experiment (e.g. num_frames=176).",
    )
    parser.add_argument("--cache-dir", default=None, help="Waveform and functionals cache.")
    parser.add_argument("--resume", action="store_true",
                        help="Reuse the deep folds an earlier run in --out finished.")
    parser.add_argument("--verbose", action="store_true", help="Per-epoch lines.")
    parser.add_argument("--out", default="runs/bench_vs_reference")
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        run(args)
    except ValueError as error:
        print(f"bench_vs_reference: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
