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
