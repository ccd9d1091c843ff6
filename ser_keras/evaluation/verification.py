"""Speaker verification with d-vectors: extraction, trials, cosine scoring, EER.

In the speaker-independent protocols of Latif et al. the speaker task cannot
be tested as identification (test speakers are unseen), so it is evaluated as
verification with the d-vector framework: the activations of the speaker
classifier's last hidden layer are the speaker representation; an utterance's
d-vector is the mean over its segments, a speaker model the mean d-vector of
their enrolment utterances (20 per speaker in the paper, Section 6.2); each
trial scores a test utterance against a claimed speaker by cosine similarity,
and the equal error rate (EER) summarises the trials.

References:
    S. Latif et al., "Multi-Task Semi-Supervised Adversarial Autoencoding for
    Speech Emotion Recognition", IEEE Trans. Affective Computing, 2020,
    Sections 5 and 6.2.
    E. Variani, X. Lei, E. McDermott, I. Lopez Moreno, J. Gonzalez-Dominguez,
    "Deep neural networks for small footprint text-dependent speaker
    verification", ICASSP 2014 (d-vectors).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from ser_keras.features.framing import average_by_utterance


def build_d_vector_extractor(encoder, speaker_classifier, name="d_vector_extractor"):
    """Model from segments to the speaker classifier's last hidden activations.

    Args:
        encoder: model from segments to the latent code (or any features the
            classifier takes).
        speaker_classifier: Functional classifier whose last layer is the
            softmax output layer; its input is the last hidden layer's output
            (true of `ser_keras.models.aae_mtl.build_classifier`).
        name: model name.

    Returns:
        keras.Model `[batch, ...segment shape]` -> `[batch, d_vector_size]`.
    """
    output_layer = speaker_classifier.layers[-1]
    hidden = keras.Model(
        speaker_classifier.input, output_layer.input, name=f"{speaker_classifier.name}_hidden"
    )
    inputs = keras.Input(shape=tuple(encoder.input.shape[1:]), name="segments")
    return keras.Model(inputs, hidden(encoder(inputs)), name=name)


def extract_d_vectors(extractor, segments, utterance_ids=None, batch_size=32):
    """d-vectors of segments, averaged per utterance when ids are given.

    Args:
        extractor: model from `build_d_vector_extractor`.
        segments: `[num_segments, num_frames, num_mels]` features.
        utterance_ids: optional `[num_segments]` utterance id per segment.
        batch_size: prediction batch size.

    Returns:
        `[num_segments, size]` d-vectors, or with `utterance_ids` a pair
        (ids, `[num_utterances, size]` d-vectors) with ids sorted (the mean
        over an utterance's segments, as for posteriors, Section 4.2).
    """
    vectors = np.asarray(extractor.predict(segments, batch_size=batch_size, verbose=0))
    if utterance_ids is None:
        return vectors
    return average_by_utterance(vectors, utterance_ids)


def cosine_scores(models, tests):
    """Cosine similarity of every test vector with every model vector.

    Args:
        models: `[M, D]` speaker models (or enrolment d-vectors).
        tests: `[T, D]` test d-vectors.

    Returns:
        `[T, M]` cosine similarities (0 where a vector is all zeros).
    """
    models = np.asarray(models, dtype=np.float64)
    tests = np.asarray(tests, dtype=np.float64)
    if models.ndim != 2 or tests.ndim != 2 or models.shape[1] != tests.shape[1]:
        raise ValueError(
            f"models and tests must be [M, D] and [T, D]; got {models.shape} and {tests.shape}."
        )

    def normalise(matrix):
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)

    return normalise(tests) @ normalise(models).T


@dataclasses.dataclass
class Trials:
    """A verification trial list over a set of utterances.

    Attributes:
        speakers: the enrolled speakers (claimed identities), `[M]`.
        enrolment: per enrolled speaker, the indices of their enrolment
            utterances.
        test_indices: utterance index of each trial's test utterance `[K]`.
        model_indices: index into `speakers` of each trial's claim `[K]`.
        same_speaker: bool `[K]`, True for target trials.
        skipped: (speaker, reason) of speakers not enrolled.
    """

    speakers: list
    enrolment: list
    test_indices: np.ndarray
    model_indices: np.ndarray
    same_speaker: np.ndarray
    skipped: list


def build_trials(speakers, num_enrolment: int = 20, seed: int = 0) -> Trials:
    """Enrols each speaker with `num_enrolment` utterances and pairs the rest.

    Section 6.2: 20 utterances of each speaker for enrolment, the remaining
    ones for evaluation. Every non-enrolment utterance is tested against every
    enrolled speaker (one target trial when its speaker is enrolled, the rest
    non-target). A speaker with no more than `num_enrolment` utterances is not
    enrolled (listed in `skipped`) but their utterances still serve as
    impostor trials.

    Args:
        speakers: `[N]` speaker id of each utterance.
        num_enrolment: enrolment utterances per speaker (paper: 20).
        seed: seed of the random choice of enrolment utterances.

    Returns:
        `Trials`.
    """
    speakers = np.asarray(speakers)
    if num_enrolment < 1:
        raise ValueError(f"num_enrolment must be >= 1; got {num_enrolment}.")
    rng = np.random.default_rng(seed)
    enrolled, enrolment, skipped = [], [], []
    is_enrolment = np.zeros(len(speakers), dtype=bool)
    for speaker in np.unique(speakers):
        indices = np.flatnonzero(speakers == speaker)
        if len(indices) <= num_enrolment:
            skipped.append(
                (
                    speaker.item() if hasattr(speaker, "item") else speaker,
                    f"{len(indices)} utterances; enrolment needs {num_enrolment} plus at least "
                    "one test utterance",
                )
            )
            continue
        chosen = np.sort(rng.choice(indices, size=num_enrolment, replace=False))
        is_enrolment[chosen] = True
        enrolled.append(speaker.item() if hasattr(speaker, "item") else speaker)
        enrolment.append(chosen)
    if not enrolled:
        raise ValueError(
            f"No speaker has more than num_enrolment={num_enrolment} utterances; "
            "nothing can be enrolled."
        )
    tests = np.flatnonzero(~is_enrolment)
    test_indices = np.repeat(tests, len(enrolled))
    model_indices = np.tile(np.arange(len(enrolled)), len(tests))
    claimed = np.asarray(enrolled, dtype=speakers.dtype)[model_indices]
    same_speaker = speakers[test_indices] == claimed
    return Trials(enrolled, enrolment, test_indices, model_indices, same_speaker, skipped)


def score_trials(d_vectors, trials: Trials) -> np.ndarray:
    """Cosine score of each trial: test d-vector vs mean enrolment d-vector.

    Args:
        d_vectors: `[N, D]` utterance d-vectors, indexed like the `speakers`
            given to `build_trials`.
        trials: from `build_trials`.

    Returns:
        `[K]` scores.
    """
    d_vectors = np.asarray(d_vectors, dtype=np.float64)
    models = np.stack([d_vectors[indices].mean(axis=0) for indices in trials.enrolment])
    scores = cosine_scores(models, d_vectors)
    return scores[trials.test_indices, trials.model_indices]


def equal_error_rate(scores, same_speaker, return_threshold: bool = False):
    """Equal error rate of verification scores, from the ROC curve.

    The EER is where the false-acceptance rate (non-target trials scored at
    or above the threshold) equals the false-rejection rate (target trials
    below it); it is interpolated linearly between the two ROC points around
    the crossing.

    Args:
        scores: `[K]` scores, higher = more likely the same speaker.
        same_speaker: `[K]` bool, True for target trials.
        return_threshold: also return the score threshold at the EER.

    Returns:
        EER as a fraction in [0, 1] (and the threshold when asked).
    """
    from sklearn.metrics import roc_curve

    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(same_speaker).astype(bool).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(
            f"scores and same_speaker differ in length: {scores.shape[0]} vs {labels.shape[0]}."
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores hold {int(np.sum(~np.isfinite(scores)))} non-finite values.")
    if labels.all() or not labels.any():
        raise ValueError(
            "The EER needs target and non-target trials; got "
            f"{int(labels.sum())} target and {int((~labels).sum())} non-target trials."
        )
    false_accept, true_accept, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    false_reject = 1.0 - true_accept
    difference = false_reject - false_accept  # decreasing from 1 to -1
    crossing = int(np.argmax(difference <= 0))
    if crossing == 0:
        eer, threshold = float(false_accept[0]), float(thresholds[0])
    else:
        before, after = difference[crossing - 1], difference[crossing]
        weight = before / (before - after)
        eer = float(
            false_accept[crossing - 1]
            + weight * (false_accept[crossing] - false_accept[crossing - 1])
        )
        low, high = thresholds[crossing - 1], thresholds[crossing]
        threshold = float(high if not np.isfinite(low) else low + weight * (high - low))
    return (eer, threshold) if return_threshold else eer


def verification_eer(d_vectors, speakers, num_enrolment: int = 20, seed: int = 0) -> dict:
    """Builds trials, scores them and reports the EER.

    Args:
        d_vectors: `[N, D]` utterance d-vectors.
        speakers: `[N]` speaker id of each utterance.
        num_enrolment: enrolment utterances per speaker (paper: 20).
        seed: seed of the enrolment choice.

    Returns:
        dict with "eer", "threshold", "num_target_trials",
        "num_nontarget_trials", "num_enrolled_speakers" and "skipped"
        (speaker, reason) pairs.
    """
    d_vectors = np.asarray(d_vectors)
    if len(d_vectors) != len(speakers):
        raise ValueError(
            f"d_vectors has {len(d_vectors)} rows but speakers has {len(speakers)} entries."
        )
    trials = build_trials(speakers, num_enrolment=num_enrolment, seed=seed)
    scores = score_trials(d_vectors, trials)
    eer, threshold = equal_error_rate(scores, trials.same_speaker, return_threshold=True)
    return {
        "eer": eer,
        "threshold": threshold,
        "num_target_trials": int(trials.same_speaker.sum()),
        "num_nontarget_trials": int((~trials.same_speaker).sum()),
        "num_enrolled_speakers": len(trials.speakers),
        "skipped": trials.skipped,
    }


def speaker_head_eer(
    model,
    segments,
    utterance_ids,
    speakers,
    *,
    num_enrolment: int = 20,
    seed: int = 0,
    batch_size: int = 32,
    task: str = "speaker",
) -> dict:
    """Speaker verification EER of a multi-task model's speaker head on the given segments.

    The d-vectors come from the last hidden layer of `model.classifiers[task]`
    on `model.encoder`'s codes, averaged per utterance (Latif et al., Section
    6.2). The trial list should hold utterances of speakers the model was not
    trained on (a fold's test speakers, held-out speakers of other corpora).
    A trial list that cannot be built (e.g. a single enrolled speaker) gives
    `eer: None` and the reason instead of raising, so that a long run goes on.

    Args:
        model: A model with `encoder` and `classifiers[task]` (e.g.
            `AAEMultiTaskModel`).
        segments: `[num_segments, num_frames, num_mels]` features.
        utterance_ids: `[num_segments]` integer utterance id of each segment.
        speakers: Speaker of every utterance, indexed by utterance id
            (`speakers[utterance_ids[i]]` is segment i's speaker).
        num_enrolment: Enrolment utterances per speaker (paper: 20).
        seed: Seed of the enrolment choice.
        batch_size: Prediction batch size.
        task: The speaker head's name.

    Returns:
        `verification_eer`'s dict (or `{"eer": None, "reason": ...}`) plus
        `num_utterances` and `num_speakers`.
    """
    extractor = build_d_vector_extractor(model.encoder, model.classifiers[task])
    ids, vectors = extract_d_vectors(extractor, segments, utterance_ids, batch_size=batch_size)
    utterance_speakers = np.asarray(speakers)[np.asarray(ids)]
    try:
        result = verification_eer(
            vectors, utterance_speakers, num_enrolment=num_enrolment, seed=seed
        )
    except ValueError as error:
        result = {"eer": None, "reason": str(error)}
    result["num_utterances"] = int(len(ids))
    result["num_speakers"] = int(len(set(utterance_speakers.tolist())))
    return result
