import numpy as np
import pytest

from ser_keras.corpora.records import Utterance
from ser_keras.data import splits

EMOTIONS = ("anger", "happiness", "neutral", "sadness")


def make_corpus(corpus, speakers, per_label=3, labels=EMOTIONS, language="en", unlabelled=0):
    utterances = []
    for speaker in speakers:
        for label in labels:
            for n in range(per_label):
                utterances.append(
                    Utterance(f"/data/{corpus}/{speaker}_{label}_{n}.wav", corpus, language,
                              speaker, label=label)
                )
        for n in range(unlabelled):
            utterances.append(
                Utterance(f"/data/{corpus}/{speaker}_x_{n}.wav", corpus, language, speaker)
            )
    return utterances


def speakers_of(utterances, indices):
    return {utterances[i].speaker_id for i in indices}


def check_partition(utterances, fold):
    """Train, validation and test are disjoint, cover everything, and share no speaker."""
    parts = [fold.train, fold.validation, fold.test]
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)  # ascending, no duplicates
    joined = np.concatenate(parts)
    assert sorted(joined.tolist()) == list(range(len(utterances)))
    test_speakers = speakers_of(utterances, fold.test)
    assert test_speakers == set(fold.test_speakers)
    assert not test_speakers & speakers_of(utterances, fold.train)
    assert not test_speakers & speakers_of(utterances, fold.validation)
    assert fold.train.size > 0 and fold.test.size > 0


def test_loso_single_corpus_speaker_validation():
    utterances = make_corpus("emodb", ["03", "08", "09", "10", "11"], language="de")
    folds = splits.leave_one_speaker_out(utterances)
    assert [f.name for f in folds] == ["emodb_03", "emodb_08", "emodb_09", "emodb_10", "emodb_11"]
    tested = [s for f in folds for s in f.test_speakers]
    assert sorted(tested) == sorted({u.speaker_id for u in utterances})
    for fold in folds:
        check_partition(utterances, fold)
        assert len(fold.test_speakers) == 1
        assert len(fold.validation_speakers) == 1
        assert speakers_of(utterances, fold.validation) == set(fold.validation_speakers)
        assert not set(fold.validation_speakers) & speakers_of(utterances, fold.train)
        assert fold.validation.size == 12 and fold.test.size == 12 and fold.train.size == 36


def test_loso_cross_language_keeps_other_corpora_in_training():
    savee = make_corpus("savee", ["DC", "JE", "JK", "KL"], labels=EMOTIONS + ("surprise",))
    emodb = make_corpus("emodb", ["03", "08", "09"], language="de")
    utterances = emodb + savee  # order must not matter
    emodb_indices = set(range(len(emodb)))
    for validation in ("speaker", "fraction", "none"):
        folds = splits.leave_one_speaker_out(utterances, test_corpus="savee", validation=validation)
        assert sorted(s for f in folds for s in f.test_speakers) == [
            "savee:DC", "savee:JE", "savee:JK", "savee:KL"
        ]
        for fold in folds:
            check_partition(utterances, fold)
            assert emodb_indices <= set(fold.train.tolist()), validation
            assert all(utterances[i].corpus == "savee" for i in fold.validation)
            if validation == "none":
                assert fold.validation.size == 0


def test_loso_validation_speakers_fall_back_to_other_corpora():
    # Test corpus with 2 speakers: after the test speaker only one is left; a
    # second validation speaker comes from the other corpus.
    utterances = make_corpus("urdu", ["SM1", "SF2"]) + make_corpus("emodb", ["03", "08", "09"])
    folds = splits.leave_one_speaker_out(
        utterances, test_corpus="urdu", num_validation_speakers=2
    )
    for fold in folds:
        check_partition(utterances, fold)
        corpora = sorted(s.split(":")[0] for s in fold.validation_speakers)
        assert corpora == ["emodb", "urdu"]


def test_loso_too_few_training_speakers_for_speaker_validation():
    utterances = make_corpus("savee", ["DC", "JE"])
    with pytest.raises(ValueError, match="validation='fraction'"):
        splits.leave_one_speaker_out(utterances)
    folds = splits.leave_one_speaker_out(utterances, validation="fraction")
    assert len(folds) == 2
    for fold in folds:
        check_partition(utterances, fold)
    with pytest.raises(ValueError, match="at least 2"):
        splits.leave_one_speaker_out(make_corpus("savee", ["DC"]))


def test_argument_errors_name_the_value():
    utterances = make_corpus("savee", ["DC", "JE", "JK"])
    with pytest.raises(ValueError, match="'crossval'"):
        splits.leave_one_speaker_out(utterances, validation="crossval")
    with pytest.raises(ValueError, match="'iemocap'.*savee"):
        splits.leave_one_speaker_out(utterances, test_corpus="iemocap")
    with pytest.raises(ValueError, match="1.5"):
        splits.leave_one_speaker_out(utterances, validation="fraction", validation_fraction=1.5)
    with pytest.raises(ValueError, match="-3"):
        splits.leave_one_speaker_out(utterances, seed=-3)
    with pytest.raises(ValueError, match="empty"):
        splits.leave_one_speaker_out([])
    with pytest.raises(ValueError, match="received 4"):
        splits.speaker_kfold(utterances, 4)
    with pytest.raises(ValueError, match="at least 2 corpora"):
        splits.leave_one_corpus_out(utterances)


def test_determinism_and_seed_dependence():
    utterances = make_corpus("emodb", [f"{n:02d}" for n in range(10)])
    first = splits.leave_one_speaker_out(utterances, seed=7)
    again = splits.leave_one_speaker_out(utterances, seed=7)
    for a, b in zip(first, again, strict=True):
        assert a.name == b.name and a.validation_speakers == b.validation_speakers
        np.testing.assert_array_equal(a.train, b.train)
        np.testing.assert_array_equal(a.validation, b.validation)
        np.testing.assert_array_equal(a.test, b.test)
    other = splits.leave_one_speaker_out(utterances, seed=8)
    assert [f.validation_speakers for f in first] != [f.validation_speakers for f in other]
    fraction_a = splits.speaker_kfold(utterances, 5, validation="fraction", seed=1)
    fraction_b = splits.speaker_kfold(utterances, 5, validation="fraction", seed=1)
    for a, b in zip(fraction_a, fraction_b, strict=True):
        np.testing.assert_array_equal(a.validation, b.validation)


def test_fraction_validation_is_stratified_by_label():
    labels = ("anger", "happiness", "neutral", "sadness")
    utterances = []
    # Unbalanced classes: 40, 20, 10, 7 utterances per speaker.
    for speaker in ["a", "b", "c", "d"]:
        for label, count in zip(labels, (40, 20, 10, 7), strict=True):
            utterances += [
                Utterance(f"/x/{speaker}{label}{n}.wav", "c1", "en", speaker, label=label)
                for n in range(count)
            ]
    folds = splits.leave_one_speaker_out(
        utterances, validation="fraction", validation_fraction=0.2, seed=3
    )
    for fold in folds:
        check_partition(utterances, fold)
        side = np.concatenate([fold.train, fold.validation])
        assert fold.validation.size == int(np.floor(0.2 * side.size + 0.5))
        for label in labels:
            on_side = sum(1 for i in side if utterances[i].label == label)
            in_validation = sum(1 for i in fold.validation if utterances[i].label == label)
            assert abs(in_validation - 0.2 * on_side) < 1.0, (label, in_validation, on_side)
        # Validation utterances come from every training speaker, not one.
        assert len(speakers_of(utterances, fold.validation)) == 3


def test_unlabelled_utterances_stay_in_training():
    labelled = make_corpus("emodb", ["03", "08", "09", "10"])
    unlabelled = make_corpus("bangla", ["MI", "FA"], labels=(), unlabelled=5, language="bn")
    partly = make_corpus("urdu", ["SM1"], unlabelled=4)
    utterances = labelled + unlabelled + partly
    unlabelled_indices = {i for i, u in enumerate(utterances) if u.label is None and
                          u.corpus == "bangla"}
    for validation in ("speaker", "fraction"):
        folds = splits.leave_one_speaker_out(utterances, validation=validation)
        # bangla speakers have no label: never a test fold, never validation.
        assert len(folds) == 5
        for fold in folds:
            check_partition(utterances, fold)
            assert unlabelled_indices <= set(fold.train.tolist())
            assert all(utterances[i].label is not None for i in fold.validation)
    # labels from a label map: -1 marks unmapped labels.
    encoded = np.asarray([0 if u.label == "anger" else -1 for u in utterances])
    folds = splits.leave_one_speaker_out(utterances, validation="fraction", labels=encoded)
    for fold in folds:
        assert all(encoded[i] == 0 for i in fold.validation)
    with pytest.raises(ValueError, match="no labelled"):
        splits.leave_one_corpus_out(utterances, test_corpora=["bangla"])


def test_leave_one_corpus_out():
    utterances = (
        make_corpus("emodb", ["03", "08", "09"])
        + make_corpus("savee", ["DC", "JE"])
        + make_corpus("ravdess", ["01", "02", "03"])
        + make_corpus("bangla", ["MI"], labels=(), unlabelled=3)
    )
    folds = splits.leave_one_corpus_out(utterances)
    assert [f.name for f in folds] == ["emodb", "ravdess", "savee"]
    for fold in folds:
        check_partition(utterances, fold)
        assert {utterances[i].corpus for i in fold.test} == {fold.name}
        assert fold.name not in {utterances[i].corpus for i in fold.train}
        train_side = np.concatenate([fold.train, fold.validation])
        labelled_side = [i for i in train_side if utterances[i].label is not None]
        assert fold.validation.size == int(np.floor(0.1 * len(labelled_side) + 0.5))
    speaker_folds = splits.leave_one_corpus_out(
        utterances, test_corpora=["savee"], validation="speaker", num_validation_speakers=2
    )
    assert len(speaker_folds) == 1
    check_partition(utterances, speaker_folds[0])
    assert len(speaker_folds[0].validation_speakers) == 2


def test_speaker_kfold_tests_every_speaker_once():
    utterances = make_corpus("iemocap", [f"Ses0{n}{g}" for n in range(1, 6) for g in "FM"])
    utterances += make_corpus("emodb", ["03", "08"])
    folds = splits.speaker_kfold(utterances, 4, test_corpus="iemocap", seed=2)
    assert [f.name for f in folds] == ["fold1", "fold2", "fold3", "fold4"]
    tested = [s for f in folds for s in f.test_speakers]
    assert sorted(tested) == sorted({u.speaker_id for u in utterances if u.corpus == "iemocap"})
    assert sorted(len(f.test_speakers) for f in folds) == [2, 2, 3, 3]
    emodb = {i for i, u in enumerate(utterances) if u.corpus == "emodb"}
    for fold in folds:
        check_partition(utterances, fold)
        assert emodb <= set(fold.train.tolist())
        assert all(s.startswith("iemocap:") for s in fold.validation_speakers)


def test_speaker_holdout_folds_urdu_protocol():
    # URDU: 38 speakers; train on 25 (validation included), test on the other 13, 5 folds.
    speakers = [f"S{'M' if n < 27 else 'F'}{n}" for n in range(38)]
    utterances = make_corpus("urdu", speakers, per_label=1, language="ur")
    folds = splits.speaker_holdout_folds(utterances, 25, 5, seed=0)
    assert len(folds) == 5
    test_sets = set()
    for fold in folds:
        check_partition(utterances, fold)
        assert len(fold.test_speakers) == 13
        assert len(speakers_of(utterances, fold.train) | set(fold.validation_speakers)) == 25
        test_sets.add(fold.test_speakers)
    assert len(test_sets) == 5  # each fold draws its own split
    with pytest.raises(ValueError, match="received 38"):
        splits.speaker_holdout_folds(utterances, 38, 5)


def test_fold_to_dict():
    utterances = make_corpus("savee", ["DC", "JE", "JK"])
    fold = splits.leave_one_speaker_out(utterances)[0]
    summary = fold.to_dict()
    assert summary["name"] == "savee_DC"
    assert summary["test_speakers"] == ["savee:DC"]
    assert summary["num_train"] + summary["num_validation"] + summary["num_test"] == len(utterances)


def test_hold_out_speakers_holds_out_a_seeded_speaker_group():
    utterances = make_corpus("savee", ["DC", "JE", "JK", "KL", "A", "B", "C"], unlabelled=1)
    utterances += make_corpus("other", ["X"], unlabelled=2, labels=())
    kept, held_out = splits.hold_out_speakers(utterances, 0.15, seed=0)
    for part in (kept, held_out):
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    assert sorted(np.concatenate([kept, held_out]).tolist()) == list(range(len(utterances)))
    # round(1 / 0.15) = 7 groups of the 7 labelled speakers: one held out; the
    # unlabelled speaker is always kept.
    assert len(speakers_of(utterances, held_out)) == 1
    assert not speakers_of(utterances, held_out) & speakers_of(utterances, kept)
    assert "other:X" in speakers_of(utterances, kept)
    # Halves (7 speakers: 4 held out); another seed deals them differently,
    # the same seed the same way.
    first, second = splits.hold_out_speakers(utterances, 0.5, seed=0)
    assert len(speakers_of(utterances, second)) == 4
    assert any(
        speakers_of(utterances, splits.hold_out_speakers(utterances, 0.5, seed=s)[1])
        != speakers_of(utterances, second) for s in range(1, 6)
    )
    np.testing.assert_array_equal(splits.hold_out_speakers(utterances, 0.5, seed=0)[1], second)
    with pytest.raises(ValueError, match="at least 2 labelled speakers"):
        splits.hold_out_speakers(make_corpus("savee", ["DC"]), 0.5)
    with pytest.raises(ValueError, match="Received: 1.5"):
        splits.hold_out_speakers(utterances, 1.5)


def test_stratified_subset_keeps_class_proportions():
    labels = np.array([0] * 30 + [1] * 10)
    chosen = splits.stratified_subset(labels, 8, np.random.default_rng(0))
    assert chosen.dtype == np.int64 and len(chosen) == len(set(chosen)) == 8
    assert (labels[chosen] == 0).sum() == 6 and (labels[chosen] == 1).sum() == 2
    # The largest remainder gets the extra position: 3 of 40 -> 2 + 1.
    assert (labels[splits.stratified_subset(labels, 3, np.random.default_rng(0))] == 1).sum() == 1
    assert len(splits.stratified_subset(labels, 40, np.random.default_rng(0))) == 40
    with pytest.raises(ValueError, match="from 0 to 39.*Received: 40"):
        splits.stratified_subset(labels, 40, np.random.default_rng(0), min_left=1)
