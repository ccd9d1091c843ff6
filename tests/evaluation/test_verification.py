"""Tests of d-vector speaker verification: EER, cosine scoring, trials, extraction."""

import numpy as np
import pytest
from scipy.stats import norm

from ser_keras.evaluation import verification
from ser_keras.models import aae_mtl


def test_eer_of_perfectly_separable_scores_is_zero():
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    same = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    assert verification.equal_error_rate(scores, same) == 0.0
    # Fully reversed scores: every decision is wrong at every threshold.
    assert verification.equal_error_rate(-scores, same) == pytest.approx(1.0)


def test_eer_of_a_hand_computed_case():
    # Targets 0.9, 0.8, 0.3; non-targets 0.7, 0.2, 0.1. At a threshold in
    # (0.3, 0.7] one of three targets is rejected and one of three
    # non-targets accepted: EER = 1/3.
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    same = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    eer, threshold = verification.equal_error_rate(scores, same, return_threshold=True)
    assert eer == pytest.approx(1 / 3)
    assert 0.3 < threshold <= 0.7


def test_eer_of_random_and_gaussian_scores():
    rng = np.random.default_rng(0)
    same = rng.random(20000) < 0.5
    assert verification.equal_error_rate(rng.random(20000), same) == pytest.approx(0.5, abs=0.02)
    # Targets N(2, 1), non-targets N(0, 1): EER = Phi(-1) = 0.1587.
    scores = rng.normal(size=20000) + 2.0 * same
    assert verification.equal_error_rate(scores, same) == pytest.approx(norm.cdf(-1.0), abs=0.01)


def test_eer_rejects_bad_input():
    with pytest.raises(ValueError, match="target and non-target"):
        verification.equal_error_rate([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="differ in length"):
        verification.equal_error_rate([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="non-finite"):
        verification.equal_error_rate([0.1, np.nan], [True, False])


def test_cosine_scores():
    models = np.array([[1.0, 0.0], [0.0, 2.0]])
    tests = np.array([[3.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    expected = np.array([[1.0, 0.0], [2**-0.5, 2**-0.5], [0.0, 0.0]])
    np.testing.assert_allclose(verification.cosine_scores(models, tests), expected)
    with pytest.raises(ValueError, match=r"\[M, D\]"):
        verification.cosine_scores(models, np.ones((2, 3)))


def test_build_trials_enrols_and_pairs():
    speakers = np.array(["a"] * 25 + ["b"] * 25 + ["c"] * 22 + ["d"] * 10)
    trials = verification.build_trials(speakers, num_enrolment=20, seed=1)
    assert trials.speakers == ["a", "b", "c"]
    assert [s for s, _ in trials.skipped] == ["d"]
    enrolment = np.concatenate(trials.enrolment)
    assert len(enrolment) == 60
    for speaker, indices in zip(trials.speakers, trials.enrolment, strict=True):
        assert np.all(speakers[indices] == speaker)
    assert not set(enrolment) & set(trials.test_indices)
    num_tests = 5 + 5 + 2 + 10
    assert len(trials.test_indices) == num_tests * 3
    assert trials.same_speaker.sum() == 5 + 5 + 2
    claimed = np.array(trials.speakers)[trials.model_indices]
    np.testing.assert_array_equal(trials.same_speaker, speakers[trials.test_indices] == claimed)
    with pytest.raises(ValueError, match="nothing can be enrolled"):
        verification.build_trials(speakers[-10:], num_enrolment=20)


def test_verification_eer_on_synthetic_d_vectors():
    rng = np.random.default_rng(0)
    speakers = np.repeat(np.arange(6), 30)
    centroids = rng.normal(size=(6, 16))
    separable = centroids[speakers] + 0.1 * rng.normal(size=(len(speakers), 16))
    result = verification.verification_eer(separable, speakers, num_enrolment=20)
    assert result["eer"] == 0.0
    assert result["num_enrolled_speakers"] == 6
    assert result["num_target_trials"] == 60 and result["num_nontarget_trials"] == 300
    noise = rng.normal(size=(len(speakers), 16))
    assert verification.verification_eer(noise, speakers)["eer"] == pytest.approx(0.5, abs=0.12)


def test_d_vector_extractor_is_the_last_hidden_layer():
    config = aae_mtl.get_preset("cpu_small")
    code_shape = aae_mtl.latent_shape(
        config["num_frames"], config["num_mels"], config["encoder_filters"], config["pool_sizes"]
    )
    encoder = aae_mtl.build_encoder(
        config["num_frames"],
        config["num_mels"],
        config["encoder_filters"],
        config["kernel_size"],
        config["pool_sizes"],
    )
    speaker = aae_mtl.build_classifier(
        code_shape, num_classes=5, head_units=config["head_units"], name="speaker_classifier"
    )
    extractor = verification.build_d_vector_extractor(encoder, speaker)
    segments = np.random.default_rng(0).normal(size=(6, 32, 16)).astype("float32")
    vectors = np.asarray(extractor(segments, training=False))
    assert vectors.shape == (6, config["head_units"])
    # The softmax layer applied to the d-vector gives the classifier's output.
    probabilities = np.asarray(speaker(encoder(segments, training=False), training=False))
    np.testing.assert_allclose(
        np.asarray(speaker.layers[-1](vectors)), probabilities, rtol=1e-5, atol=1e-6
    )
    ids, per_utterance = verification.extract_d_vectors(
        extractor, segments, utterance_ids=[0, 0, 1, 1, 1, 2], batch_size=4
    )
    np.testing.assert_array_equal(ids, [0, 1, 2])
    np.testing.assert_allclose(per_utterance[1], vectors[2:5].mean(axis=0), rtol=1e-4, atol=1e-6)
