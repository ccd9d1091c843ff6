"""The speaker-dependent k-fold and the sampling helpers of `ser_keras.data.splits`."""

import numpy as np
import pytest

from ser_keras.corpora.records import Utterance
from ser_keras.data.splits import (
    cap_per_speaker,
    choose_held_out_speakers,
    cycle_to_size,
    speaker_dependent_kfold,
)


def _utterances(per_speaker, speakers=3, corpus="c"):
    return [
        Utterance(f"/x/{s}_{i}.wav", corpus, "en", str(s), label="anger")
        for s in range(speakers)
        for i in range(per_speaker)
    ]


def test_speaker_dependent_kfold_folds_hold_every_speaker():
    utterances = _utterances(12)
    folds = speaker_dependent_kfold(utterances, np.zeros(len(utterances), int), seed=0)
    assert len(folds) == 10 and folds[0].name == "fold01"
    tested = np.concatenate([fold.test for fold in folds])
    assert sorted(tested.tolist()) == list(range(len(utterances)))
    for number, fold in enumerate(folds):
        parts = [set(fold.train.tolist()), set(fold.validation.tolist()), set(fold.test.tolist())]
        assert sum(map(len, parts)) == len(set().union(*parts)) == len(utterances)
        assert {utterances[i].speaker for i in fold.test} == {"0", "1", "2"}
        # Fold i validates on the part that fold i + 1 tests.
        np.testing.assert_array_equal(fold.validation, folds[(number + 1) % 10].test)
    again = speaker_dependent_kfold(utterances, np.zeros(len(utterances), int), seed=0)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again, strict=True))


def test_speaker_dependent_kfold_leaves_out_unlabelled_and_needs_k_per_speaker():
    utterances = _utterances(12)
    labels = np.zeros(len(utterances), int)
    labels[:2] = -1
    folds = speaker_dependent_kfold(utterances, labels, seed=1)
    covered = set(np.concatenate([folds[0].train, folds[0].validation, folds[0].test]).tolist())
    assert covered == set(range(2, len(utterances)))
    with pytest.raises(ValueError, match="10 labelled utterances per speaker"):
        speaker_dependent_kfold(utterances[:20], np.zeros(20, int), seed=0)
    with pytest.raises(ValueError, match="`k`"):
        speaker_dependent_kfold(utterances, labels, k=1)


def test_cycle_to_size_is_whole_copies_then_a_subset():
    rows = np.array([10, 11, 12, 13])
    cycled = cycle_to_size(rows, 10, seed=0)
    assert len(cycled) == 10
    np.testing.assert_array_equal(cycled[:8], np.tile(rows, 2))
    assert len(set(cycled[8:].tolist())) == 2 and set(cycled[8:].tolist()) <= set(rows.tolist())
    np.testing.assert_array_equal(cycled, cycle_to_size(rows, 10, seed=0))
    np.testing.assert_array_equal(cycle_to_size(rows, 4, seed=0), rows)
    np.testing.assert_array_equal(cycle_to_size(rows, 3, seed=0), rows)


def test_cap_per_speaker_keeps_at_most_the_limit_per_speaker():
    utterances = _utterances(5, speakers=2) + _utterances(2, speakers=1, corpus="d")
    kept = cap_per_speaker(utterances, 3, seed=0)
    counts = {}
    for index in kept:
        counts[utterances[index].speaker_id] = counts.get(utterances[index].speaker_id, 0) + 1
    assert counts == {"c:0": 3, "c:1": 3, "d:0": 2}
    assert list(kept) == sorted(kept)
    np.testing.assert_array_equal(kept, cap_per_speaker(utterances, 3, seed=0))
    np.testing.assert_array_equal(cap_per_speaker(utterances, None, seed=0), np.arange(12))


def test_choose_held_out_speakers_needs_more_than_the_minimum():
    utterances = _utterances(6, speakers=3) + _utterances(2, speakers=1, corpus="d")
    chosen = choose_held_out_speakers(utterances, 2, more_than=5, seed=[0, 7])
    assert len(chosen) == 2 and set(chosen) <= {"c:0", "c:1", "c:2"}
    assert chosen == sorted(chosen)
    assert chosen == choose_held_out_speakers(utterances, 2, more_than=5, seed=[0, 7])
    # Only three speakers qualify; none with count 0.
    assert len(choose_held_out_speakers(utterances, 10, more_than=5, seed=0)) == 3
    assert choose_held_out_speakers(utterances, 0, more_than=5, seed=0) == []
    assert choose_held_out_speakers(utterances, 2, more_than=6, seed=0) == []
