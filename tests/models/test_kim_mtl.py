"""Tests of ser_keras.models.kim_mtl: DNN-MTL / LSTM-MTL, frame-level training, functionals."""

import keras
import numpy as np
import pytest

from ser_keras.features.frame_features import FrameFeatures
from ser_keras.models.kim_mtl import (
    LEARNING_RATE,
    PRESETS,
    KimMTL,
    functional_names,
    utterance_functionals,
)
from tests.model_checks import check_model

TINY = dict(num_layers=2, units=6, context_frames=5)


def _features(batch=2, frames=10, seed=0, valid=None):
    """Random frame features; frames at and beyond `valid[i]` are padding (all 0.0)."""
    values = np.random.default_rng(seed).standard_normal((batch, frames, 32)).astype("float32")
    for row, count in enumerate(valid or []):
        values[row, count:] = 0.0
    return values


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_presets_have_the_papers_networks_and_loss_weights():
    dnn = KimMTL.from_preset("kim2017_dnn")
    hidden_1 = dnn.get_layer("hidden_1")
    assert (hidden_1.filters, hidden_1.kernel_size) == (256, (25,))  # 250 ms context window
    assert [dnn.get_layer(f"hidden_{i}").units for i in (2, 3)] == [256, 256]
    assert all(dnn.get_layer(f"dropout_{i}").rate == 0.5 for i in (1, 2, 3))
    assert dnn.task_weights == {"emotion": 1.0, "gender": 0.1, "naturalness": 0.1}
    heads = 256 * 4 + 4 + 2 * (256 * 2 + 2)
    assert _trainable_count(dnn) == (25 * 32 * 256 + 256) + 2 * (256 * 256 + 256) + heads

    lstm = KimMTL.from_preset("kim2017_lstm")
    assert [lstm.get_layer(f"lstm_{i}").units for i in (1, 2)] == [256, 256]
    lstm_weights = 4 * (256 * (32 + 256) + 256) + 4 * (256 * (256 + 256) + 256)
    assert _trainable_count(lstm) == lstm_weights + heads
    assert {k: tuple(v.shape) for k, v in lstm.output.items()} == {
        "emotion": (None, 4),
        "gender": (None, 2),
        "naturalness": (None, 2),
    }
    assert PRESETS["kim2017_lstm"]["auxiliary_loss_weight"] == 0.1
    assert LEARNING_RATE == 3e-3  # Adam, Section 5.1


def test_single_task_and_single_auxiliary_variants():
    stl = KimMTL(network="dnn", auxiliary_tasks=(), **TINY)
    assert stl.task_names == ("emotion",)
    gender = KimMTL(network="lstm", auxiliary_tasks=("gender",), **TINY)
    assert gender.task_weights == {"emotion": 1.0, "gender": 0.1}
    naturalness = KimMTL(
        network="lstm", auxiliary_tasks="naturalness", auxiliary_loss_weight=0.3, **TINY
    )
    assert naturalness.task_weights == {"emotion": 1.0, "naturalness": 0.3}


@pytest.mark.parametrize("network", ["dnn", "lstm"])
def test_losses_average_over_the_valid_frames_of_labelled_utterances(network):
    keras.utils.set_random_seed(0)
    model = KimMTL(network=network, **TINY)
    model.compile(optimizer="adam")
    x = _features(batch=3, frames=8, valid=[8, 5, 3])
    labels = {
        "emotion": np.array([2, 0, 3]),
        "gender": np.array([1, -1, 0]),
        "naturalness": np.array([-1, -1, -1]),
    }
    # test_step called directly runs eagerly (no tracing): the same code as evaluate().
    scores = {k: float(v) for k, v in model.test_step((x, labels)).items()}
    frames = {k: keras.ops.convert_to_numpy(v) for k, v in model.frame_model()(x).items()}
    valid = np.any(x != 0.0, axis=-1)

    def expected(task):
        losses = [
            -np.log(frames[task][row, t, labels[task][row]])
            for row in range(3)
            for t in range(8)
            if valid[row, t] and labels[task][row] >= 0
        ]
        return np.mean(losses)

    np.testing.assert_allclose(scores["emotion_loss"], expected("emotion"), rtol=1e-4)
    np.testing.assert_allclose(scores["gender_loss"], expected("gender"), rtol=1e-4)
    assert scores["naturalness_loss"] == 0.0
    np.testing.assert_allclose(
        scores["loss"], expected("emotion") + 0.1 * expected("gender"), rtol=1e-4
    )


def test_training_learns_frame_labels_and_normalisation_is_adapted():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    emotion = rng.integers(0, 4, 64)
    centres = rng.standard_normal((4, 32)).astype("float32")
    x = rng.standard_normal((64, 12, 32)).astype("float32") + 5.0
    x += 2.0 * centres[emotion][:, None, :]  # every frame carries its utterance's class
    x[::2, 9:] = 0.0  # padding
    model = KimMTL(
        network="dnn",
        auxiliary_tasks=("gender",),
        num_layers=2,
        units=16,
        context_frames=3,
        dropout_rate=0.0,
    )
    model.adapt_feature_normalization(list(x[:, :9]))
    normalization = model.get_layer("feature_normalization")
    np.testing.assert_allclose(
        np.ravel(keras.ops.convert_to_numpy(normalization.mean)),
        x[:, :9].reshape(-1, 32).mean(axis=0),
        atol=1e-4,
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    labels = {"emotion": emotion, "gender": rng.integers(0, 2, 64)}
    history = model.fit(x, labels, batch_size=16, epochs=6, verbose=0).history
    assert history["emotion_loss"][-1] < 0.4 * history["emotion_loss"][0]
    assert history["emotion_ua"][-1] > 0.9


@pytest.mark.parametrize("network", ["dnn", "lstm"])
def test_shared_checks_of_the_training_model(tmp_path, network):
    x = _features(batch=2, frames=10, valid=[10, 6])
    check_model(
        lambda: KimMTL(network=network, auxiliary_tasks=("gender", "naturalness"), **TINY),
        x,
        {"emotion": (20, 4), "gender": (20, 2), "naturalness": (20, 2)},
        tmp_path,
    )


@pytest.mark.parametrize(
    "network",
    # The LSTM's masked recurrence exports too, but takes several times longer: slow.
    ["dnn", pytest.param("lstm", marks=pytest.mark.slow)],
)
def test_utterance_model_exports_with_the_frame_feature_frontend(tmp_path, network):
    model = KimMTL(network=network, auxiliary_tasks=("gender",), **TINY)
    model.adapt_feature_normalization(_features(batch=4, frames=20, seed=3).reshape(-1, 32))
    utterance = model.utterance_model()
    x = _features(batch=2, frames=10, valid=[10, 4])
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in utterance(x).items()}
    frames = keras.ops.convert_to_numpy(model.frame_model()(x)["emotion"])
    np.testing.assert_allclose(outputs["emotion"][1], frames[1, :4].mean(axis=0), atol=1e-6)
    check_model(
        utterance,
        x,
        {"emotion": (2, 4), "gender": (2, 2)},
        tmp_path,
        export=True,
        frontend=FrameFeatures.from_preset("kim2017"),
        label_names={
            "emotion": ["neutral", "happiness", "sadness", "anger"],
            "gender": ["female", "male"],
        },
    )


def test_predict_frame_posteriors_per_utterance():
    model = KimMTL(network="lstm", **TINY)
    sequences = [_features(1, n, seed=n)[0] for n in (7, 30, 1)]
    posteriors = model.predict_frame_posteriors(sequences, batch_size=2)
    assert [p.shape for p in posteriors] == [(7, 4), (30, 4), (1, 4)]
    frame_model = model.frame_model()
    for sequence, result in zip(sequences, posteriors, strict=True):
        alone = keras.ops.convert_to_numpy(frame_model(sequence[None])["emotion"])[0]
        np.testing.assert_allclose(result, alone, atol=1e-5)
    gender = model.predict_frame_posteriors(sequences[:1], task="gender")
    assert gender[0].shape == (7, 2)
    with pytest.raises(ValueError, match="speaker"):
        model.predict_frame_posteriors(sequences, task="speaker")


def test_utterance_functionals():
    posteriors = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.15, 0.25, 0.5]], dtype=np.float32)
    features = utterance_functionals(posteriors, threshold=0.2)
    np.testing.assert_allclose(
        features,
        [0.7, 0.15, 0.25, 0.5, 0.1, 0.1, 0.1, 0.1, 0.4, 0.125, 0.175, 0.3, 0.5, 0.0, 0.5, 0.5],
    )
    stacked = utterance_functionals([posteriors, posteriors[:1], np.zeros((0, 4))])
    assert stacked.shape == (3, 16) and np.all(stacked[2] == 0)
    names = functional_names(["neutral", "happiness", "sadness", "anger"])
    assert len(names) == 16 and names[0] == "max_neutral"
    assert names[-1] == "share_above_threshold_anger"


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"network": "gru"}, "gru"),
        ({"context_frames": 24}, "odd"),
        ({"auxiliary_tasks": ("speaker",)}, "speaker"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"units": 0}, "units"),
    ],
)
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        KimMTL(**arguments)
    with pytest.raises(ValueError, match="bogus"):
        KimMTL.from_preset("kim2017_dnn", bogus=1)


def test_adapt_rejects_wrong_shapes():
    model = KimMTL(network="dnn", **TINY)
    with pytest.raises(ValueError, match="32"):
        model.adapt_feature_normalization(np.zeros((10, 5)))
