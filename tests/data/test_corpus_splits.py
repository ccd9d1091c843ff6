"""The split builders of Kim et al.'s protocols in ser_keras.data.splits."""

import numpy as np
import pytest

from ser_keras.corpora.records import Utterance
from ser_keras.data.splits import (
    Fold,
    corpus_naturalness,
    leave_one_corpus_out,
    split_by_naturalness,
    within_corpus_leave_one_speaker_out,
    without_test_speakers,
)


def _utterances():
    """alpha: 3 acted speakers; beta: 2 speakers, each acted and natural; gamma: 1 speaker."""
    records = []
    for corpus, speakers, naturalness in (
        ("alpha", ["a1", "a2", "a3"], ["acted"]),
        ("beta", ["b1", "b2"], ["acted", "natural"]),
        ("gamma", ["g1"], ["acted"]),
    ):
        for speaker in speakers:
            for number in range(8):
                records.append(
                    Utterance(
                        path=f"/{corpus}/{speaker}_{number}.wav",
                        corpus=corpus,
                        language="en",
                        speaker=speaker,
                        gender="female",
                        label=["neutral", "anger"][number % 2],
                        naturalness=naturalness[number // 4 % len(naturalness)],
                    )
                )
    return records


def test_within_corpus_folds_never_mix_corpora():
    utterances = _utterances()
    emotion = np.array([0 if u.label == "neutral" else 3 for u in utterances], dtype=np.int32)
    folds = within_corpus_leave_one_speaker_out(
        utterances, validation_fraction=0.1, seed=0, labels=emotion
    )
    # gamma has one speaker: no fold.
    assert [fold.name for fold in folds] == [
        "alpha_a1", "alpha_a2", "alpha_a3", "beta_b1", "beta_b2",
    ]
    for fold in folds:
        corpus = fold.name.split("_")[0]
        for part in (fold.train, fold.validation, fold.test):
            assert {utterances[i].corpus for i in part} == {corpus}
        assert {utterances[i].speaker_id for i in fold.test} == set(fold.test_speakers)
        assert not set(fold.test) & (set(fold.train) | set(fold.validation))
        assert not set(fold.train) & set(fold.validation)
        assert len(fold.validation) >= 1
    limited = within_corpus_leave_one_speaker_out(utterances, max_folds_per_corpus=1)
    assert [fold.name for fold in limited] == ["alpha_a1", "beta_b1"]


def test_within_corpus_needs_a_corpus_with_two_speakers():
    only_gamma = [u for u in _utterances() if u.corpus == "gamma"]
    with pytest.raises(ValueError, match="at least 2 speakers"):
        within_corpus_leave_one_speaker_out(only_gamma)
    with pytest.raises(ValueError, match="max_folds_per_corpus"):
        within_corpus_leave_one_speaker_out(_utterances(), max_folds_per_corpus=0)


def test_corpora_with_acted_and_natural_speech_are_split_for_cross_corpus_tests():
    renamed = split_by_naturalness(_utterances())
    assert sorted({u.corpus for u in renamed}) == ["alpha", "beta_acted", "beta_natural", "gamma"]
    assert corpus_naturalness(renamed) == {
        "alpha": "acted",
        "beta_acted": "acted",
        "beta_natural": "natural",
        "gamma": "acted",
    }
    assert corpus_naturalness(_utterances())["beta"] in ("acted", "natural")


def test_without_test_speakers_removes_the_other_part_of_a_split_corpus():
    utterances = _utterances()
    folds = leave_one_corpus_out(split_by_naturalness(utterances), validation_fraction=0.2)
    fold = next(f for f in folds if f.name == "beta_acted")
    speakers = np.array([u.speaker_id for u in utterances], dtype=object)
    # The renamed corpora hide it: beta's speakers are trained on in beta_natural.
    assert {"beta:b1", "beta:b2"} & set(speakers[np.concatenate([fold.train, fold.validation])])
    independent = without_test_speakers(fold, utterances)
    kept = set(speakers[np.concatenate([independent.train, independent.validation])])
    assert kept == {"alpha:a1", "alpha:a2", "alpha:a3", "gamma:g1"}
    np.testing.assert_array_equal(independent.test, fold.test)
    alpha = next(f for f in folds if f.name == "alpha")
    assert without_test_speakers(alpha, utterances) is alpha


def test_without_test_speakers_on_a_hand_made_fold():
    utterances = _utterances()[:16]  # alpha a1, a2
    fold = Fold("f", train=np.arange(0, 10), validation=np.arange(10, 12), test=np.arange(8, 16))
    independent = without_test_speakers(fold, utterances)
    np.testing.assert_array_equal(independent.train, np.arange(0, 8))
    assert independent.validation.size == 0
