"""Tests of the ResNet-LSTM multi-task model (Latif et al., paper 000)."""

import keras
import numpy as np
import pytest

from ser_keras.layers.residual import ResidualBlock
from ser_keras.models.resnet_lstm import DOMAIN_CLASSES, RESNET_LSTM_PRESETS, ResNetLSTM
from ser_keras.training.losses import masked_sparse_categorical_crossentropy
from tests.model_checks import check_model

# The paper's graph (8 residual blocks) at test size.
TINY = {
    "num_frames": 16,
    "num_mels": 8,
    "stem_filters": 2,
    "stem_pool_size": None,
    "stackwise_num_filters": (2, 4),
    "stackwise_num_blocks": (4, 4),
    "stackwise_pool_sizes": ((2, 2), (2, 2)),
    "lstm_units": 4,
    "dense_units": 6,
}


def _tiny(**overrides):
    return ResNetLSTM(**{**TINY, **overrides})


def _batch(size=6, seed=0, frames=16, mels=8):
    return np.random.default_rng(seed).standard_normal((size, frames, mels)).astype("float32")


def test_presets_hold_the_papers_numbers():
    paper = RESNET_LSTM_PRESETS["latif_crosslang"]
    assert sum(paper["stackwise_num_blocks"]) == 8
    assert paper["kernel_size"] == 3
    assert paper["lstm_units"] == 128
    assert paper["dense_units"] == 256
    assert paper["alpha"] == 0.3
    assert paper["num_mels"] == 128
    assert paper["num_frames"] == 600  # 6 s at a 10 ms shift
    assert sum(RESNET_LSTM_PRESETS["latif_crosslang_cpu"]["stackwise_num_blocks"]) == 8


def test_paper_preset_graph():
    model = ResNetLSTM.from_preset("latif_crosslang", num_languages=5, use_domain_head=True)
    assert tuple(model.input.shape) == (None, 600, 128)
    assert {task: tuple(t.shape) for task, t in model.output.items()} == {
        "emotion": (None, 2),
        "language": (None, 5),
        "domain": (None, 2),
    }
    blocks = [layer for layer in model.layers if isinstance(layer, ResidualBlock)]
    assert len(blocks) == model.num_residual_blocks == 8
    assert all(block.kernel_size == (3, 3) for block in blocks)
    assert model.get_layer("lstm").units == 128
    for task in ("emotion", "language", "domain"):
        assert model.get_layer(f"{task}_dense").units == 256
        assert model.get_layer(task).get_config()["activation"] == "softmax"
    # Four 2 x 2 poolings: 600 x 128 -> 37 x 8 (x 128 channels) into the LSTM.
    assert tuple(model.get_layer("to_sequence").output.shape) == (None, 37, 8 * 128)
    assert model.task_weights == {"emotion": 1.0, "language": 0.3, "domain": 0.3}


def test_heads_can_be_switched_off():
    single = _tiny()
    assert list(single.output) == ["emotion"]
    assert single.task_weights == {"emotion": 1.0}
    language_only = _tiny(num_languages=3)
    assert list(language_only.output) == ["emotion", "language"]
    domain_only = _tiny(use_domain_head=True, alpha=0.5)
    assert list(domain_only.output) == ["emotion", "domain"]
    assert domain_only.task_weights == {"emotion": 1.0, "domain": 0.5}
    assert int(domain_only.output["domain"].shape[-1]) == len(DOMAIN_CLASSES)
    # Any emotion label set.
    assert int(_tiny(num_emotions=7).output["emotion"].shape[-1]) == 7
    # Variable-length input.
    variable = _tiny(num_frames=None)
    out = variable(_batch(2, frames=24), training=False)
    assert tuple(out["emotion"].shape) == (2, 2)


def test_loss_is_emotion_plus_alpha_times_auxiliary_losses():
    model = _tiny(num_languages=3, use_domain_head=True, alpha=0.3)
    model.compile(optimizer="sgd")
    x = _batch(6)
    y = {
        "emotion": np.array([0, 1, -1, -1, 1, -1]),
        "language": np.array([0, 1, 2, 2, 0, 1]),
        "domain": np.array([0, 0, 1, 1, 0, 1]),
    }
    predictions = model(x, training=False)
    loss = float(model.compute_loss(x, y, predictions, training=False))
    parts = {
        task: float(masked_sparse_categorical_crossentropy(y[task], predictions[task]))
        for task in y
    }
    expected = parts["emotion"] + 0.3 * (parts["language"] + parts["domain"])
    assert loss == pytest.approx(expected, rel=1e-5)
    # The emotion part averages over the three labelled samples only.
    probabilities = keras.ops.convert_to_numpy(predictions["emotion"])
    manual = -np.mean(np.log(probabilities[[0, 1, 4], [0, 1, 1]]))
    assert parts["emotion"] == pytest.approx(manual, rel=1e-5)


def test_unlabelled_batch_trains_trunk_and_auxiliary_heads_only():
    model = _tiny(num_languages=2, use_domain_head=True)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x = _batch(8)
    y = {
        "emotion": np.full(8, -1),
        "language": np.array([0, 1] * 4),
        "domain": np.ones(8, int),
    }
    emotion_before = [w.numpy().copy() for w in model.get_layer("emotion_dense").weights]
    lstm_before = [w.numpy().copy() for w in model.get_layer("lstm").weights]
    language_before = model.get_layer("language").weights[0].numpy().copy()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert logs["emotion_loss"] == 0.0
    emotion_after = model.get_layer("emotion_dense").weights
    for before, weight in zip(emotion_before, emotion_after, strict=True):
        np.testing.assert_array_equal(weight.numpy(), before)
    assert any(
        not np.array_equal(before, weight.numpy())
        for before, weight in zip(lstm_before, model.get_layer("lstm").weights, strict=True)
    )
    assert not np.array_equal(language_before, model.get_layer("language").weights[0].numpy())


@pytest.mark.slow
def test_learns_a_separable_emotion_task_with_unlabelled_samples():
    # Emotion = whether the upper mel bands carry energy; half the samples
    # have no emotion label. A model that cannot learn fails this test.
    rng = np.random.default_rng(1)
    x = 0.3 * rng.standard_normal((64, 16, 8)).astype("float32")
    emotion = rng.integers(0, 2, 64)
    x[emotion == 1, :, 4:] += 1.0
    language = rng.integers(0, 2, 64)
    y = {"emotion": np.where(np.arange(64) % 2 == 0, emotion, -1), "language": language}
    keras.utils.set_random_seed(0)
    model = _tiny(
        num_languages=2, stackwise_num_filters=(4,), stackwise_num_blocks=(2,),
        stackwise_pool_sizes=((2, 2),), lstm_units=8, dense_units=8,
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    predicted = model.predict(x, verbose=0)["emotion"].argmax(-1)
    assert (predicted == emotion).mean() > 0.9


def test_shared_model_checks_with_export(tmp_path):
    # Shapes, get_config/from_config, .keras round trip, and a SavedModel
    # (latif_6s front-end at test size) loaded without ser_keras.
    from ser_keras.features.logmel import LogMel

    model = check_model(
        lambda: _tiny(num_languages=3, use_domain_head=True, dropout_rate=0.2, alpha=0.25),
        _batch(2),
        {"emotion": (2, 2), "language": (2, 3), "domain": (2, 2)},
        tmp_path,
        export=True,
        frontend=LogMel.from_preset("latif_6s", num_frames=16, num_mels=8),
        label_names={
            "emotion": ["negative", "positive"],
            "language": ["de", "en", "ur"],
            "domain": list(DOMAIN_CLASSES),
        },
    )
    config = model.get_config()
    for key in ("num_frames", "num_mels", "num_emotions", "num_languages", "use_domain_head",
                "stem_filters", "stem_pool_size", "stackwise_num_filters",
                "stackwise_num_blocks", "stackwise_pool_sizes", "kernel_size", "lstm_units",
                "dense_units", "dropout_rate", "alpha"):
        assert key in config
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(restored, ResNetLSTM)
    assert restored.task_weights == {"emotion": 1.0, "language": 0.25, "domain": 0.25}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_emotions": 1}, "num_emotions=1"),
        ({"num_languages": 1}, "num_languages=1"),
        ({"num_languages": -2}, "num_languages=-2"),
        ({"stackwise_num_blocks": (4,)}, "one entry per stage"),
        ({"dropout_rate": 1.0}, "1.0"),
        ({"alpha": -0.1}, "alpha=-0.1"),
        ({"stackwise_pool_sizes": ((2, 4), (2, 4))}, "reduces the input to nothing"),
        ({"kernel_size": 0}, "kernel_size"),
    ],
)
def test_bad_arguments_name_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**overrides)


def test_unknown_preset_is_named():
    with pytest.raises(ValueError, match="'resnet50'"):
        ResNetLSTM.from_preset("resnet50")
