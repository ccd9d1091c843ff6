"""Paper 003's per-language splits (`language_split`, `stratified_fraction`)."""

import numpy as np
import pytest

from ser_keras.corpora.records import Utterance
from ser_keras.data.splits import language_split, stratified_fraction


def _utterances(labels_per_speaker, language="de"):
    utterances = []
    for speaker, labels in labels_per_speaker.items():
        for number, label in enumerate(labels):
            utterances.append(
                Utterance(f"/x/{speaker}_{number}.wav", "emodb", language, speaker, label=label)
            )
    return utterances


def test_random_split_is_stratified_disjoint_and_drawn_per_repeat():
    utterances = _utterances({"a": ["anger"] * 10 + ["neutral"] * 10, "b": ["anger"] * 5})
    labels = np.array([0 if u.label == "anger" else 1 for u in utterances])
    indices = np.arange(len(utterances)) + 100  # global indices of this language
    padded = np.concatenate([np.full(100, -1), labels])
    train, validation, test = language_split(indices, padded, None, "random", seed=0, repeat=0)
    assert sorted(np.concatenate([train, validation, test]).tolist()) == indices.tolist()
    assert not set(train) & set(test) and not set(validation) & set(test)
    assert not set(train) & set(validation)
    assert np.sum(padded[test] == 0) == 3 and np.sum(padded[test] == 1) == 2  # 20 %
    # 20 % of the remaining 20 (12 anger, 8 neutral) validate.
    assert np.sum(padded[validation] == 0) == 2 and np.sum(padded[validation] == 1) == 2
    again = language_split(indices, padded, None, "random", seed=0, repeat=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, validation, test), strict=True))
    other = language_split(indices, padded, None, "random", seed=0, repeat=1)
    assert not np.array_equal(other[2], test)


def test_speaker_split_holds_out_whole_speakers():
    utterances = _utterances({s: ["anger", "neutral"] * 3 for s in "abcde"})
    labels = np.array([0 if u.label == "anger" else 1 for u in utterances])
    indices = np.arange(len(utterances))
    train, validation, test = language_split(
        indices, labels, utterances, "speaker", seed=0, repeat=0
    )
    speakers = lambda part: {utterances[i].speaker for i in part}  # noqa: E731
    assert len(speakers(test)) == 1  # 20 % of 5 speakers
    assert not speakers(test) & (speakers(train) | speakers(validation))
    assert validation.size > 0
    with pytest.raises(ValueError, match="at least 2 speakers"):
        language_split(indices[:6], labels[:6], utterances, "speaker", seed=0, repeat=0)
    with pytest.raises(ValueError, match="'bogus'"):
        language_split(indices, labels, utterances, "bogus")


def test_stratified_fraction_keeps_one_of_a_class_of_three():
    labels = np.array([0] * 3 + [1] * 2 + [2] * 10)
    chosen = stratified_fraction(np.arange(15), labels, 0.1, np.random.default_rng(0))
    assert np.sum(labels[chosen] == 0) == 1  # round(0.3) = 0, but a class of 3 gives one
    assert np.sum(labels[chosen] == 1) == 0
    assert np.sum(labels[chosen] == 2) == 1
    assert stratified_fraction(np.zeros(0, int), labels, 0.5, np.random.default_rng(0)).size == 0
    with pytest.raises(ValueError, match="1.5"):
        stratified_fraction(np.arange(15), labels, 1.5, np.random.default_rng(0))
