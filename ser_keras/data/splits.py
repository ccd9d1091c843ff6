"""Speaker-independent evaluation splits: LOSO, leave-one-corpus-out, speaker k-fold.

Every function returns a list of `Fold`s holding index arrays into the list of
utterances it was given. Test speakers never appear in a fold's training or
validation part. The validation part (for checkpoint selection, early stopping
and tuning) is always carved from the training side, never from the test fold:

* `validation="speaker"`: whole training speakers are held out, of the same
  corpus as the test speaker(s) where that corpus has enough of them
  (speaker-independent validation, as the test);
* `validation="fraction"`: a share of the training utterances, stratified by
  corpus and label (what Kim et al. do: "10% of training data for optimising
  parameters"), drawn from the test speakers' corpus where it has training
  utterances;
* `validation="none"`: no validation part.

Only labelled utterances are scored, so only speakers with at least one
labelled utterance become test folds and only labelled utterances or speakers
are moved to validation; unlabelled utterances of other speakers (e.g. a
LibriSpeech or Bangla corpus used for semi-supervised or language-ID training)
always stay in training. "Labelled" follows `Utterance.label`, or the
`labels` argument (e.g. `LabelMap.encode(utterances)`, where -1 = unlabelled).

Every split is deterministic for a given `seed` and utterance order.

Reference:
    Latif et al., multi-task learning for cross-language SER with unlabelled
    data, Section 5 (leave-one-speaker-out; URDU: 25 training speakers, the
    rest for testing, five folds); Kim et al., "Towards speech emotion
    recognition in the wild using aggregated corpora and deep multi-task
    learning" (Interspeech 2017), Section 4 (leave-one-speaker-out and
    leave-one-corpus-out; 10% of the training data for validation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ser_keras.corpora.records import Utterance

VALIDATION_MODES = ("speaker", "fraction", "none")


@dataclasses.dataclass(frozen=True, eq=False)
class Fold:
    """One train/validation/test partition of a list of utterances.

    Attributes:
        name: Fold name, safe as a file or folder name (e.g. `"emodb_03"`,
            `"fold2"`).
        train: int64 indices of the training utterances, ascending.
        validation: int64 indices of the validation utterances (may be empty).
        test: int64 indices of the test utterances.
        test_speakers: Speaker ids (`Utterance.speaker_id`) of the test part.
        validation_speakers: Speaker ids held out for validation (empty for
            `validation="fraction"` or `"none"`).
    """

    name: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    test_speakers: tuple[str, ...] = ()
    validation_speakers: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Sizes and speakers of the fold, for reports."""
        return {
            "name": self.name,
            "num_train": int(self.train.size),
            "num_validation": int(self.validation.size),
            "num_test": int(self.test.size),
            "test_speakers": list(self.test_speakers),
            "validation_speakers": list(self.validation_speakers),
        }


@dataclasses.dataclass(frozen=True)
class _Context:
    """Per-utterance arrays every split needs."""

    speakers: np.ndarray  # speaker_id per utterance
    corpora: np.ndarray  # corpus per utterance
    labelled: np.ndarray  # bool per utterance
    strata: np.ndarray  # "corpus/label" per utterance (for stratified validation)


def _context(utterances: Sequence[Utterance], labels) -> _Context:
    if len(utterances) == 0:
        raise ValueError("`utterances` is empty; a split needs utterances of at least 2 speakers.")
    for position, utterance in enumerate(utterances):
        if not isinstance(utterance, Utterance):
            raise ValueError(
                f"`utterances[{position}]` is a {type(utterance).__name__}, not an Utterance: "
                f"{utterance!r}."
            )
    speakers = np.asarray([u.speaker_id for u in utterances], dtype=object)
    corpora = np.asarray([u.corpus for u in utterances], dtype=object)
    if labels is None:
        keys = [u.label for u in utterances]
        labelled = np.asarray([key is not None for key in keys], dtype=bool)
    else:
        array = np.asarray(labels)
        if array.ndim != 1 or array.shape[0] != len(utterances):
            raise ValueError(
                f"`labels` must hold one label per utterance ({len(utterances)}); "
                f"received shape {array.shape}."
            )
        if np.issubdtype(array.dtype, np.number):
            labelled = array >= 0
        else:
            labelled = np.asarray([v is not None and v != "" for v in array], dtype=bool)
        keys = array.tolist()
    strata = np.asarray(
        [f"{corpus}/{key}" for corpus, key in zip(corpora, keys, strict=True)], dtype=object
    )
    return _Context(speakers=speakers, corpora=corpora, labelled=labelled, strata=strata)


def _check_options(validation, num_validation_speakers, validation_fraction, seed):
    if validation is None:
        validation = "none"
    if validation not in VALIDATION_MODES:
        raise ValueError(
            f"`validation` must be one of {VALIDATION_MODES}; received {validation!r}."
        )
    if isinstance(num_validation_speakers, bool) or not isinstance(
        num_validation_speakers, (int, np.integer)
    ) or num_validation_speakers < 1:
        raise ValueError(
            f"`num_validation_speakers` must be a positive integer; "
            f"received {num_validation_speakers!r}."
        )
    if not 0.0 < float(validation_fraction) < 1.0:
        raise ValueError(
            f"`validation_fraction` must be in (0, 1); received {validation_fraction!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; received {seed!r}.")
    return validation


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _labelled_speakers(context: _Context, mask: np.ndarray) -> list[str]:
    """Sorted speaker ids with at least one labelled utterance inside `mask`."""
    return sorted(set(context.speakers[mask & context.labelled].tolist()))


def _corpus_mask(context: _Context, corpus: str | None) -> np.ndarray:
    if corpus is None:
        return np.ones(context.speakers.shape, dtype=bool)
    present = sorted(set(context.corpora.tolist()))
    if corpus not in present:
        raise ValueError(f"`test_corpus` {corpus!r} is not among the corpora given: {present}.")
    return context.corpora == corpus


def _stratified_sample(context, pool, fraction, rng) -> np.ndarray:
    """About `fraction` of `pool` (indices), the same share of every corpus/label stratum.

    Largest-remainder allocation: each stratum gives floor or ceil of its
    share, the total is round(fraction * len(pool)), and a stratum is never
    emptied by the rounding.
    """
    strata = context.strata[pool]
    names = sorted(set(strata.tolist()))
    sizes = np.asarray([np.sum(strata == name) for name in names])
    ideal = fraction * sizes
    take = np.floor(ideal).astype(int)
    target = int(np.floor(fraction * pool.size + 0.5))
    remainders = ideal - take
    for position in np.argsort(-remainders, kind="stable"):
        if take.sum() >= target:
            break
        if take[position] + 1 < sizes[position]:
            take[position] += 1
    chosen = []
    for name, count in zip(names, take, strict=True):
        members = pool[strata == name]
        chosen.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _make_fold(
    name: str,
    context: _Context,
    test_mask: np.ndarray,
    *,
    validation: str,
    num_validation_speakers: int,
    validation_fraction: float,
    rng: np.random.Generator,
    preferred_corpora: Sequence[str] = (),
) -> Fold:
    """Builds a fold: `test_mask` is the test part; validation is carved from the rest.

    Validation speakers come from `preferred_corpora` first, then from any
    other training corpus; a validation fraction is drawn from the
    `preferred_corpora` training utterances when they hold at least 2
    labelled ones, else from all labelled training utterances.
    """
    train_mask = ~test_mask
    test_speakers = tuple(sorted(set(context.speakers[test_mask].tolist())))
    validation_mask = np.zeros_like(test_mask)
    validation_speakers: tuple[str, ...] = ()
    if validation == "speaker":
        candidates = _labelled_speakers(context, train_mask)
        if len(candidates) <= num_validation_speakers:
            raise ValueError(
                f"Fold {name!r} (test speakers {list(test_speakers)}): {len(candidates)} "
                f"labelled training speaker(s) remain {candidates}; holding out "
                f"{num_validation_speakers} for validation would leave none to train on. "
                "Use validation='fraction' (a stratified share of the training "
                "utterances), validation='none', or fewer `num_validation_speakers`."
            )
        corpus_of = {
            speaker: corpus
            for speaker, corpus in zip(
                context.speakers.tolist(), context.corpora.tolist(), strict=True
            )
        }
        preferred = [s for s in candidates if corpus_of[s] in set(preferred_corpora)]
        others = [s for s in candidates if corpus_of[s] not in set(preferred_corpora)]
        ordered = list(rng.permutation(preferred)) + list(rng.permutation(others))
        validation_speakers = tuple(sorted(str(s) for s in ordered[:num_validation_speakers]))
        validation_mask = train_mask & np.isin(context.speakers, validation_speakers)
    elif validation == "fraction":
        pool = np.flatnonzero(train_mask & context.labelled)
        preferred_pool = pool[np.isin(context.corpora[pool], list(preferred_corpora))]
        if preferred_pool.size >= 2:
            # Validate on the test speakers' corpus: other corpora (e.g. the
            # cross-language augmentation data) stay whole in training.
            pool = preferred_pool
        if pool.size < 2:
            raise ValueError(
                f"Fold {name!r} (test speakers {list(test_speakers)}): {pool.size} labelled "
                "training utterance(s); a validation fraction needs at least 2. "
                "Use validation='none'."
            )
        chosen = _stratified_sample(context, pool, float(validation_fraction), rng)
        validation_mask[chosen] = True
    train_mask = train_mask & ~validation_mask
    if not np.any(train_mask & context.labelled):
        raise ValueError(
            f"Fold {name!r} (test speakers {list(test_speakers)}) has no labelled training "
            "utterance left; a split needs labelled speakers besides the test ones."
        )
    return Fold(
        name=name,
        train=np.flatnonzero(train_mask).astype(np.int64),
        validation=np.flatnonzero(validation_mask).astype(np.int64),
        test=np.flatnonzero(test_mask).astype(np.int64),
        test_speakers=test_speakers,
        validation_speakers=validation_speakers,
    )


def _test_speakers(context: _Context, test_corpus: str | None, minimum: int) -> list[str]:
    scope = _corpus_mask(context, test_corpus)
    speakers = _labelled_speakers(context, scope)
    where = f"Corpus {test_corpus!r} has" if test_corpus else "The utterances given have"
    if len(speakers) < minimum:
        hint = (
            " To test a single-speaker corpus, train on other corpora with "
            "leave_one_corpus_out." if len(speakers) == 1 else ""
        )
        raise ValueError(
            f"{where} {len(speakers)} speaker(s) with labelled utterances {speakers}; "
            f"this split needs at least {minimum}.{hint}"
        )
    return speakers


def leave_one_speaker_out(
    utterances: Sequence[Utterance],
    *,
    test_corpus: str | None = None,
    validation: str = "speaker",
    num_validation_speakers: int = 1,
    validation_fraction: float = 0.15,
    seed: int = 0,
    labels=None,
) -> list[Fold]:
    """Leave-one-speaker-out (LOSO): one fold per speaker, who is the test set.

    With `test_corpus`, only that corpus's speakers become test folds and the
    utterances of every other corpus are always on the training side: the
    cross-language setting (e.g. test on SAVEE speakers, train on the other
    SAVEE speakers plus all of EMO-DB). Validation comes from the test
    speaker's corpus; other corpora give validation speakers only when that
    corpus has too few training speakers left.

    Args:
        utterances: The utterances to split (`Utterance.speaker_id` identifies
            speakers across corpora).
        test_corpus: Corpus whose speakers are tested; `None` = every speaker.
        validation: `"speaker"` (hold out `num_validation_speakers` training
            speakers, of the test speaker's corpus where it has enough),
            `"fraction"` (stratified `validation_fraction` of the labelled
            training utterances) or `"none"`.
        num_validation_speakers: Speakers held out per fold for `"speaker"`.
        validation_fraction: Share of the labelled training utterances for
            `"fraction"`.
        seed: Seed of the validation draw.
        labels: Optional label per utterance (`LabelMap.encode` output, -1 =
            unlabelled, or strings) deciding which utterances are labelled and
            stratifying the validation fraction; default `Utterance.label`.

    Returns:
        One `Fold` per labelled speaker, ordered by speaker id, named
        `<corpus>_<speaker>`.

    Raises:
        ValueError: fewer than 2 labelled speakers, an unknown `test_corpus`,
            or a validation that would leave no training speaker.

    Reference:
        Latif et al., Section 5; Kim et al., Interspeech 2017, Section 4.
    """
    validation = _check_options(validation, num_validation_speakers, validation_fraction, seed)
    context = _context(utterances, labels)
    speakers = _test_speakers(context, test_corpus, minimum=2)
    folds = []
    for number, speaker in enumerate(speakers):
        test_mask = context.speakers == speaker
        corpus = context.corpora[np.flatnonzero(test_mask)[0]]
        folds.append(
            _make_fold(
                _safe_name(speaker.replace(":", "_")),
                context,
                test_mask,
                validation=validation,
                num_validation_speakers=num_validation_speakers,
                validation_fraction=validation_fraction,
                rng=np.random.default_rng([seed, number]),
                preferred_corpora=(corpus,),
            )
        )
    return folds


def leave_one_corpus_out(
    utterances: Sequence[Utterance],
    *,
    test_corpora: Sequence[str] | None = None,
    validation: str = "fraction",
    num_validation_speakers: int = 1,
    validation_fraction: float = 0.1,
    seed: int = 0,
    labels=None,
) -> list[Fold]:
    """Leave-one-corpus-out: one fold per corpus, trained on all the other corpora.

    Args:
        utterances: The utterances to split.
        test_corpora: Corpora that become test folds; default every corpus
            with labelled utterances. Corpora not listed stay in training.
        validation: `"fraction"` (default; Kim et al. keep 10% of the training
            data for validation), `"speaker"` (hold out
            `num_validation_speakers` training speakers drawn from all training
            corpora) or `"none"`.
        num_validation_speakers: Speakers held out per fold for `"speaker"`.
        validation_fraction: Share of the labelled training utterances for
            `"fraction"`, stratified by corpus and label.
        seed: Seed of the validation draw.
        labels: Optional label per utterance (see `leave_one_speaker_out`).

    Returns:
        One `Fold` per test corpus, in sorted order, named by the corpus.

    Raises:
        ValueError: fewer than 2 corpora, an unknown or unlabelled test corpus.

    Reference:
        Kim et al., Interspeech 2017, Section 4 (CROSS-CORPUS setting).
    """
    validation = _check_options(validation, num_validation_speakers, validation_fraction, seed)
    context = _context(utterances, labels)
    present = sorted(set(context.corpora.tolist()))
    if len(present) < 2:
        raise ValueError(
            f"Leave-one-corpus-out needs at least 2 corpora; received {present}. "
            "Within one corpus use leave_one_speaker_out or speaker_kfold."
        )
    labelled_corpora = sorted(set(context.corpora[context.labelled].tolist()))
    if test_corpora is None:
        test_corpora = labelled_corpora
    else:
        if isinstance(test_corpora, str):
            test_corpora = [test_corpora]
        test_corpora = sorted(set(test_corpora))
        for corpus in test_corpora:
            if corpus not in present:
                raise ValueError(
                    f"Test corpus {corpus!r} is not among the corpora given: {present}."
                )
            if corpus not in labelled_corpora:
                raise ValueError(f"Test corpus {corpus!r} has no labelled utterance to score.")
    if not test_corpora:
        raise ValueError(f"None of the corpora {present} has a labelled utterance to test on.")
    folds = []
    for number, corpus in enumerate(test_corpora):
        folds.append(
            _make_fold(
                _safe_name(corpus),
                context,
                context.corpora == corpus,
                validation=validation,
                num_validation_speakers=num_validation_speakers,
                validation_fraction=validation_fraction,
                rng=np.random.default_rng([seed, number]),
            )
        )
    return folds


def speaker_kfold(
    utterances: Sequence[Utterance],
    k: int,
    *,
    test_corpus: str | None = None,
    validation: str = "speaker",
    num_validation_speakers: int = 1,
    validation_fraction: float = 0.15,
    seed: int = 0,
    labels=None,
) -> list[Fold]:
    """Speaker-grouped k-fold: the speakers are shuffled and dealt into `k` test groups.

    Every labelled speaker (of `test_corpus`, when given) is tested in exactly
    one fold; group sizes differ by at most one speaker. Other corpora stay in
    training, as in `leave_one_speaker_out`.

    Args:
        utterances: The utterances to split.
        k: Number of folds, from 2 to the number of speakers.
        test_corpus: Corpus whose speakers are tested; `None` = every speaker.
        validation: `"speaker"`, `"fraction"` or `"none"` (see
            `leave_one_speaker_out`).
        num_validation_speakers: Speakers held out per fold for `"speaker"`.
        validation_fraction: Share of the labelled training utterances for
            `"fraction"`.
        seed: Seed of the speaker shuffle and of the validation draw.
        labels: Optional label per utterance (see `leave_one_speaker_out`).

    Returns:
        `k` `Fold`s named `fold1` ... `fold<k>`.
    """
    validation = _check_options(validation, num_validation_speakers, validation_fraction, seed)
    context = _context(utterances, labels)
    speakers = _test_speakers(context, test_corpus, minimum=2)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(speakers):
        raise ValueError(
            f"`k` must be an integer from 2 to the number of speakers ({len(speakers)}); "
            f"received {k!r}."
        )
    shuffled = np.random.default_rng([seed]).permutation(np.asarray(speakers, dtype=object))
    folds = []
    for number, group in enumerate(np.array_split(shuffled, k)):
        test_mask = np.isin(context.speakers, group)
        folds.append(
            _make_fold(
                f"fold{number + 1}",
                context,
                test_mask,
                validation=validation,
                num_validation_speakers=num_validation_speakers,
                validation_fraction=validation_fraction,
                rng=np.random.default_rng([seed, number]),
                preferred_corpora=sorted(set(context.corpora[test_mask].tolist())),
            )
        )
    return folds


def speaker_holdout_folds(
    utterances: Sequence[Utterance],
    num_train_speakers: int,
    num_folds: int,
    *,
    test_corpus: str | None = None,
    validation: str = "speaker",
    num_validation_speakers: int = 1,
    validation_fraction: float = 0.15,
    seed: int = 0,
    labels=None,
) -> list[Fold]:
    """Repeated speaker hold-out: `num_train_speakers` random speakers train, the rest test.

    Latif et al. evaluate URDU by training on 25 speakers and testing on the
    remaining ones "with five-fold cross-validation". With 38 URDU speakers the
    13 test speakers of five folds cannot be disjoint, so each fold draws its
    own random split of the speakers (repeated random sub-sampling, a test
    speaker may recur across folds); this is our reading of the paper. The
    validation speakers (or fraction) come out of the training speakers.
    Other corpora stay in training.

    Args:
        utterances: The utterances to split.
        num_train_speakers: Speakers of the test corpus on the training side
            of every fold (validation included); the others are tested.
        num_folds: Number of random splits.
        test_corpus: Corpus whose speakers are split; `None` = every speaker.
        validation: `"speaker"`, `"fraction"` or `"none"`.
        num_validation_speakers: Speakers held out per fold for `"speaker"`.
        validation_fraction: Share of the labelled training utterances for
            `"fraction"`.
        seed: Seed of the speaker draws and of the validation draw.
        labels: Optional label per utterance (see `leave_one_speaker_out`).

    Returns:
        `num_folds` `Fold`s named `holdout1` ... `holdout<num_folds>`.

    Reference:
        Latif et al., Section 5 (URDU protocol).
    """
    validation = _check_options(validation, num_validation_speakers, validation_fraction, seed)
    context = _context(utterances, labels)
    speakers = _test_speakers(context, test_corpus, minimum=2)
    if isinstance(num_train_speakers, bool) or not isinstance(
        num_train_speakers, (int, np.integer)
    ) or not 1 <= num_train_speakers < len(speakers):
        raise ValueError(
            f"`num_train_speakers` must be from 1 to {len(speakers) - 1} (the test corpus has "
            f"{len(speakers)} labelled speakers); received {num_train_speakers!r}."
        )
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 1:
        raise ValueError(f"`num_folds` must be a positive integer; received {num_folds!r}.")
    folds = []
    for number in range(num_folds):
        rng = np.random.default_rng([seed, number])
        shuffled = rng.permutation(np.asarray(speakers, dtype=object))
        test_group = shuffled[num_train_speakers:]
        test_mask = np.isin(context.speakers, test_group)
        # Unlabelled speakers of the test corpus are neither drawn nor tested:
        # they stay on the training side, like other corpora.
        folds.append(
            _make_fold(
                f"holdout{number + 1}",
                context,
                test_mask,
                validation=validation,
                num_validation_speakers=num_validation_speakers,
                validation_fraction=validation_fraction,
                rng=rng,
                preferred_corpora=sorted(set(context.corpora[test_mask].tolist())),
            )
        )
    return folds


def within_corpus_leave_one_speaker_out(
    utterances: Sequence[Utterance],
    *,
    validation: str = "fraction",
    num_validation_speakers: int = 1,
    validation_fraction: float = 0.1,
    seed: int = 0,
    labels=None,
    max_folds_per_corpus: int | None = None,
) -> list[Fold]:
    """Leave-one-speaker-out inside each corpus: no fold trains on another corpus.

    Kim et al.'s WITHIN-CORPUS setting: for every corpus, one fold per
    speaker, trained and validated on that corpus's other speakers only.
    `leave_one_speaker_out` runs on each corpus's utterances; the folds'
    indices point into the whole `utterances` list. Corpora with fewer than 2
    speakers cannot be split this way and give no fold.

    Args:
        utterances: The utterances of every corpus.
        validation: `"fraction"` (default: Kim et al. keep 10% of the training
            data for validation), `"speaker"` or `"none"` (see
            `leave_one_speaker_out`).
        num_validation_speakers: Speakers held out per fold for `"speaker"`.
        validation_fraction: Share of the labelled training utterances for
            `"fraction"`, stratified by label.
        seed: Seed of the validation draw (the same draws as
            `leave_one_speaker_out` on the corpus alone).
        labels: Optional label per utterance of `utterances` (see
            `leave_one_speaker_out`).
        max_folds_per_corpus: Keep only the first N folds of each corpus
            (None: all).

    Returns:
        The folds of every corpus with at least 2 speakers, corpora in sorted
        order, each corpus's folds ordered by speaker and named
        `<corpus>_<speaker>`.

    Raises:
        ValueError: No corpus has 2 speakers, or a bad option.

    Reference:
        Kim et al., Interspeech 2017, Section 4 (WITHIN-CORPUS setting).
    """
    if max_folds_per_corpus is not None and (
        isinstance(max_folds_per_corpus, bool)
        or not isinstance(max_folds_per_corpus, (int, np.integer))
        or max_folds_per_corpus < 1
    ):
        raise ValueError(
            f"`max_folds_per_corpus` must be a positive integer or None; "
            f"received {max_folds_per_corpus!r}."
        )
    label_array = None if labels is None else np.asarray(labels)
    folds = []
    for corpus in sorted({u.corpus for u in utterances}):
        members = np.array([i for i, u in enumerate(utterances) if u.corpus == corpus])
        subset = [utterances[i] for i in members]
        if len({u.speaker_id for u in subset}) < 2:
            continue
        corpus_folds = leave_one_speaker_out(
            subset,
            validation=validation,
            num_validation_speakers=num_validation_speakers,
            validation_fraction=validation_fraction,
            seed=seed,
            labels=None if label_array is None else label_array[members],
        )
        for fold in corpus_folds[:max_folds_per_corpus]:
            folds.append(
                dataclasses.replace(
                    fold,
                    train=members[fold.train],
                    validation=members[fold.validation],
                    test=members[fold.test],
                )
            )
    if not folds:
        raise ValueError(
            "No corpus has at least 2 speakers for leave-one-speaker-out; received corpora "
            f"{sorted({u.corpus for u in utterances})}."
        )
    return folds


def split_by_naturalness(utterances: Sequence[Utterance]) -> list[Utterance]:
    """Renames corpora holding both acted and natural speech to `<corpus>_acted`/`_natural`.

    For leave-one-corpus-out, Kim et al. test IEMOCAP's acted (scripted) and
    natural (improvised) parts separately; with the parts renamed as two
    corpora, `leave_one_corpus_out` makes one fold of each (each trained on
    the other corpora and the other part). Corpora of one kind keep their
    name; an utterance without a naturalness in a mixed corpus goes to
    `<corpus>_unknown`.

    Args:
        utterances: The utterances (`Utterance.naturalness` is `"acted"`,
            `"natural"` or None).

    Returns:
        A new list, in the same order, with the mixed corpora renamed.

    Reference:
        Kim et al., Interspeech 2017, Section 4 and Table 3.
    """
    kinds: dict[str, set] = {}
    for utterance in utterances:
        kinds.setdefault(utterance.corpus, set()).add(utterance.naturalness)
    mixed = {corpus for corpus, values in kinds.items() if {"acted", "natural"} <= values}
    return [
        dataclasses.replace(u, corpus=f"{u.corpus}_{u.naturalness or 'unknown'}")
        if u.corpus in mixed
        else u
        for u in utterances
    ]


def corpus_naturalness(utterances: Sequence[Utterance]) -> dict[str, str]:
    """Corpus -> `"acted"`, `"natural"` or `"unknown"`: the kind of most of its utterances.

    Ties go to the kind met first in `utterances`.
    """
    from collections import Counter

    counts: dict[str, Counter] = {}
    for utterance in utterances:
        counts.setdefault(utterance.corpus, Counter())[utterance.naturalness or "unknown"] += 1
    return {corpus: counter.most_common(1)[0][0] for corpus, counter in counts.items()}


def hold_out_speakers(
    utterances: Sequence[Utterance], fraction: float, *, seed: int = 0, labels=None
) -> tuple[np.ndarray, np.ndarray]:
    """Holds out a seeded group of about `fraction` of the labelled speakers.

    The labelled speakers are shuffled and dealt into
    `k = min(num_speakers, max(2, round(1 / fraction)))` groups, as in
    `speaker_kfold`; the first group is held out. It is the one split of a
    protocol whose test data lies elsewhere: validation speakers carved from
    the training corpora (Latif et al.'s cross-language runs), or two halves
    of a corpus's speakers with `fraction=0.5`.

    Args:
        utterances: The utterances to split.
        fraction: Share of the speakers to hold out, in (0, 1); the group is
            1/k of them, rounded up (at least 1 speaker).
        seed: Seed of the speaker shuffle.
        labels: Optional label per utterance (see `leave_one_speaker_out`):
            only labelled speakers are held out.

    Returns:
        `(kept, held_out)`: ascending int64 positions into `utterances`,
        speaker-disjoint; the unlabelled utterances of other speakers are kept.

    Raises:
        ValueError: Fewer than 2 labelled speakers, or `fraction` outside (0, 1).

    Reference:
        Latif et al., Section 5 (validation on held-out speakers; Figure 3's
        target samples).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
        0.0 < fraction < 1.0
    ):
        raise ValueError(f"`fraction` must be in (0, 1). Received: {fraction!r}")
    context = _context(utterances, labels)
    speakers = _labelled_speakers(context, np.ones(len(utterances), dtype=bool))
    if len(speakers) < 2:
        raise ValueError(
            f"Holding out speakers needs at least 2 labelled speakers. Received: {speakers}"
        )
    k = int(min(len(speakers), max(2, round(1.0 / fraction))))
    fold = speaker_kfold(utterances, k, validation="none", seed=seed, labels=labels)[0]
    return fold.train, fold.test


def stratified_subset(labels, count: int, rng: np.random.Generator, *, min_left: int = 0):
    """`count` positions drawn from every class in proportion to its size.

    Each class gets `floor(share * count)` positions, and the positions left
    go to the classes with the largest remainders; so every class with a
    large enough share gets at least one.

    Args:
        labels: Class per position, `[N]`.
        count: Positions to draw.
        rng: The random generator (the draw's order follows the sorted classes).
        min_left: Positions that must remain undrawn (e.g. 1 when the rest is
            tested).

    Returns:
        Ascending int64 positions, without repeats.

    Raises:
        ValueError: `count` is more than `len(labels) - min_left`, or negative.
    """
    labels = np.asarray(labels)
    if isinstance(count, bool) or not 0 <= count <= len(labels) - min_left:
        raise ValueError(
            f"`count` must be from 0 to {len(labels) - min_left} ({len(labels)} labels, "
            f"{min_left} to leave). Received: {count!r}"
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


# ----------------------------------------------------------------------------
# Speaker-dependent folds and sampling helpers (Latif et al. 2020, paper 002)


def speaker_dependent_kfold(
    utterances: Sequence[Utterance], labels=None, *, k: int = 10, seed: int = 0
) -> list[Fold]:
    """Folds that each hold every speaker: the speaker-DEPENDENT k-fold of Latif et al.

    Unlike every other function of this module, the test speakers are also
    trained on (other utterances of theirs). Section 5 of Latif et al. (2020):
    "We created the ten folds based on speaker ID so that each fold has all
    speakers ... one fold was used as validation set for parameter selection,
    eight folds were used for training, and the remaining fold was used for
    testing." The labelled utterances are dealt into `k` parts stratified by
    speaker (`sklearn.model_selection.StratifiedKFold`, shuffled by `seed`);
    fold i tests part i, validates on part i + 1 (cyclically) and trains on
    the rest. Unlabelled utterances are in no fold.

    Args:
        utterances: The utterances to split.
        labels: Optional label per utterance (-1 = unlabelled, see
            `leave_one_speaker_out`); None reads `Utterance.label`.
        k: Number of folds (the paper: 10).
        seed: Seed of the shuffle.

    Returns:
        `k` `Fold`s named `fold01` ... ; each fold's `test_speakers` is every
        labelled speaker.

    Raises:
        ValueError: Fewer than `k` labelled utterances for some speaker (the
            counts are named), or `k` below 2.

    Reference:
        Latif et al., "Multi-Task Semi-Supervised Adversarial Autoencoding for
        Speech Emotion Recognition", IEEE Trans. Affective Computing, 2020,
        Section 5.
    """
    from sklearn.model_selection import StratifiedKFold

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"`k` must be an integer of at least 2; received {k!r}.")
    context = _context(utterances, labels)
    labelled = np.flatnonzero(context.labelled)
    speakers = np.array([context.speakers[i] for i in labelled])
    values, counts = np.unique(speakers, return_counts=True)
    if len(labelled) < k or counts.min() < k:
        found = dict(zip(values.tolist(), counts.tolist(), strict=True))
        raise ValueError(
            f"A speaker-dependent {k}-fold split deals every speaker's utterances into {k} "
            f"folds and needs at least {k} labelled utterances per speaker; labelled "
            f"utterances per speaker: {found}."
        )
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    parts = [labelled[test] for _, test in splitter.split(np.zeros(len(labelled)), speakers)]
    folds = []
    for number in range(k):
        following = (number + 1) % k
        train = np.concatenate([parts[i] for i in range(k) if i not in (number, following)])
        folds.append(
            Fold(
                name=f"fold{number + 1:02d}",
                train=np.sort(train).astype(np.int64),
                validation=np.sort(parts[following]).astype(np.int64),
                test=np.sort(parts[number]).astype(np.int64),
                test_speakers=tuple(sorted(set(speakers.tolist()))),
            )
        )
    return folds


def cycle_to_size(rows, size: int, seed) -> np.ndarray:
    """`rows` cycled to `size` entries: whole copies, then a random subset of the rest.

    Used to give a setting trained on fewer samples (e.g. labelled data only)
    as many samples per epoch, hence optimizer updates, as one trained on
    more. The subset is drawn without replacement by `seed`.

    Args:
        rows: Row indices.
        size: Wanted length; a `size` not above `len(rows)` returns `rows`
            unchanged.
        seed: Seed (int or sequence of ints) of the subset.

    Returns:
        int array of length `max(size, len(rows))` (`rows` itself when empty).
    """
    rows = np.asarray(rows)
    if size <= len(rows) or len(rows) == 0:
        return rows
    copies, rest = divmod(int(size), len(rows))
    extra = np.sort(np.random.default_rng(seed).choice(rows, rest, replace=False))
    return np.concatenate([np.tile(rows, copies), extra])


def cap_per_speaker(utterances: Sequence[Utterance], limit: int | None, seed) -> np.ndarray:
    """Indices of at most `limit` utterances per speaker (random, reproducible).

    Args:
        utterances: The utterances.
        limit: Utterances kept per speaker (None: all).
        seed: Seed (int or sequence of ints) of the draw.

    Returns:
        Ascending int64 indices of the kept utterances.
    """
    if limit is None:
        return np.arange(len(utterances), dtype=np.int64)
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[int]] = {}
    for index, utterance in enumerate(utterances):
        by_speaker.setdefault(utterance.speaker_id, []).append(index)
    keep = sorted(
        int(index)
        for indices in by_speaker.values()
        for index in (
            indices if len(indices) <= limit else rng.choice(indices, limit, replace=False)
        )
    )
    return np.asarray(keep, dtype=np.int64)


def choose_held_out_speakers(
    utterances: Sequence[Utterance], count: int, *, more_than: int, seed
) -> list[str]:
    """Draws up to `count` speakers with more than `more_than` utterances each.

    E.g. the speakers held out of all training for speaker verification, who
    need enrolment utterances plus at least one test utterance.

    Args:
        utterances: The utterances to draw from.
        count: Speakers wanted; fewer are returned when fewer qualify.
        more_than: Minimum utterance count (exclusive) of a speaker drawn.
        seed: Seed (int or sequence of ints) of the draw.

    Returns:
        The drawn `speaker_id`s, sorted.
    """
    counts: dict[str, int] = {}
    for utterance in utterances:
        counts[utterance.speaker_id] = counts.get(utterance.speaker_id, 0) + 1
    eligible = sorted(speaker for speaker, n in counts.items() if n > more_than)
    if count == 0 or not utterances or not eligible:
        return []
    chosen = np.random.default_rng(seed).choice(eligible, min(count, len(eligible)), replace=False)
    return sorted(str(speaker) for speaker in chosen)


# ------------------------------------------------------- per-language splits

LANGUAGE_SPLIT_MODES = ("random", "speaker")


def stratified_fraction(indices, labels, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """About `fraction` of `indices`, drawn as the same share of every label.

    Each label's members (of `indices`) are shuffled and the first
    `round(fraction * count)` taken; a label with 3 or more members gives at
    least one.

    Args:
        indices: int row indices to draw from.
        labels: Label per row of the whole table (`labels[indices]` are the
            rows' labels).
        fraction: The share drawn, in (0, 1).
        rng: The generator of the draw.

    Returns:
        The drawn indices, sorted (int64; empty when `indices` is).

    Raises:
        ValueError: A `fraction` outside (0, 1).
    """
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"`fraction` must be in (0, 1). Received: {fraction!r}")
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels)
    chosen = []
    for label in np.unique(labels[indices]):
        members = rng.permutation(indices[labels[indices] == label])
        count = int(round(fraction * members.size))
        if count == 0 and members.size >= 3:
            count = 1
        chosen.append(members[:count])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def language_split(
    indices,
    labels,
    utterances: Sequence[Utterance],
    mode: str = "random",
    *,
    seed: int = 0,
    repeat: int = 0,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.2,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(train, validation, test)` row indices of one language's utterances (Wang et al.).

    * `"random"` (the paper's, Section 3): `test_fraction` of the utterances
      tested, then `validation_fraction` of the rest for validation, both
      stratified by label (`stratified_fraction`). Not speaker-independent:
      a speaker's other utterances may be trained on.
    * `"speaker"`: about `test_fraction` of the speakers (at least one)
      tested, `validation_fraction` of the other speakers' utterances
      (stratified) for validation (`speaker_holdout_folds`).

    Args:
        indices: Row indices of the language's utterances in the whole table.
        labels: Label per row of the whole table (-1: none).
        utterances: The whole table's `Utterance`s (read for `"speaker"`;
            may be None for `"random"`).
        mode: `"random"` or `"speaker"` (`LANGUAGE_SPLIT_MODES`).
        seed: The run's seed.
        repeat: The repeat (from 0); each repeat draws another split.
        test_fraction: Share of the utterances (`"random"`) or speakers
            (`"speaker"`) tested; the paper's 0.2.
        validation_fraction: Share of the rest that validates; the paper's 0.2.

    Returns:
        Three sorted int64 arrays of rows from `indices`, disjoint.

    Raises:
        ValueError: An unknown `mode`, or `"speaker"` with fewer than 2
            speakers.
    """
    if mode not in LANGUAGE_SPLIT_MODES:
        raise ValueError(f"`mode` must be one of {LANGUAGE_SPLIT_MODES}. Received: {mode!r}")
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, repeat])
    if mode == "random":
        test = stratified_fraction(indices, labels, test_fraction, rng)
        rest = np.setdiff1d(indices, test)
        validation = stratified_fraction(rest, labels, validation_fraction, rng)
        train = np.setdiff1d(rest, validation)
        return train, validation, test
    subset = [utterances[i] for i in indices]
    speakers = sorted({u.speaker_id for u in subset})
    if len(speakers) < 2:
        raise ValueError(
            f"A speaker split needs at least 2 speakers per language; {subset[0].language!r} "
            f"has {len(speakers)} ({speakers}). Use the random split."
        )
    num_test = max(1, int(round(test_fraction * len(speakers))))
    fold = speaker_holdout_folds(
        subset,
        num_train_speakers=len(speakers) - num_test,
        num_folds=repeat + 1,
        validation="fraction",
        validation_fraction=validation_fraction,
        seed=seed,
        labels=labels[indices],
    )[repeat]
    return indices[fold.train], indices[fold.validation], indices[fold.test]


def without_test_speakers(fold: Fold, utterances: Sequence[Utterance]) -> Fold:
    """The fold with its test speakers' utterances removed from training and validation.

    A split whose test part is not defined by speakers (e.g. one part of a
    corpus split by `split_by_naturalness`, whose speakers also speak in the
    other part) can train on the test speakers. This keeps it
    speaker-independent: every training or validation utterance of a
    speaker (`Utterance.speaker_id` of `utterances`) who is tested is left
    out.

    Args:
        fold: A fold of `utterances` (its indices point into them).
        utterances: The utterances, with the speaker identities to compare
            (e.g. the corpus names before `split_by_naturalness`).

    Returns:
        The same fold when no test speaker is trained or validated on,
        otherwise a copy with shorter `train` and `validation`.
    """
    speakers = np.asarray([u.speaker_id for u in utterances], dtype=object)
    tested = set(speakers[fold.test].tolist())
    train = fold.train[~np.isin(speakers[fold.train], list(tested))]
    validation = fold.validation[~np.isin(speakers[fold.validation], list(tested))]
    if train.size == fold.train.size and validation.size == fold.validation.size:
        return fold
    return dataclasses.replace(fold, train=train, validation=validation)
