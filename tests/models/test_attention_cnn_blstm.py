import keras
import numpy as np
import pytest

from ser_keras.experiments.fu_savee_crosslang import PRESETS as EXPERIMENT_PRESETS
from ser_keras.models.attention_cnn_blstm import PRESETS, AttentionCNNBLSTM
from tests.model_checks import check_model

TINY = dict(
    num_frames=24,
    num_mels=12,
    conv_filters=(8, 8, 8),
    bottleneck_units=8,
    lstm_units=4,
    num_attention_heads=2,
    num_emotions=3,
)


def _paper_parameter_count(num_emotions, num_speakers):
    """Parameters of the paper's network, from Section 3.3 and Table 1."""
    d_spec, bn, d_lstm = 128, 512, 128
    filters, kernels = (512, 1024, 2048), (3, 1, 3)
    count, channels = 0, d_spec
    for f, k in zip(filters, kernels, strict=True):
        count += k * channels * f + f
        channels = f
    count += channels * bn + bn
    lstm_input = bn
    for _ in range(2):  # two BLSTMs: 2 directions x 4 gates
        count += 2 * 4 * (d_lstm * (lstm_input + d_lstm) + d_lstm)
        lstm_input = 2 * d_lstm
    model_dim = 2 * d_lstm
    count += 4 * (model_dim * model_dim + model_dim)  # Q, K, V (16 heads x 16) and W
    count += model_dim  # U of the local attention
    for classes in (num_emotions, num_speakers):
        if classes:
            count += model_dim * classes + classes
    return count


def test_paper_preset_matches_table_1():
    model = AttentionCNNBLSTM.from_preset("fu2021", num_speakers=4)
    assert tuple(model.inputs[0].shape) == (None, 256, 128)
    assert tuple(model.get_layer("conv_3").output.shape) == (None, 252, 2048)  # fm = 252
    assert tuple(model.get_layer("bottleneck").output.shape) == (None, 252, 512)
    assert tuple(model.get_layer("blstm_2").output.shape) == (None, 252, 256)
    assert model.get_layer("self_attention").num_heads == 16
    assert {k: tuple(v.shape) for k, v in model.output.items()} == {
        "emotion": (None, 7),
        "speaker": (None, 4),
    }
    assert model.count_params() == _paper_parameter_count(7, 4) == 9_381_899
    assert model.task_weights == {"emotion": 1.0, "speaker": 1.0}
    assert model.get_layer("dropout").rate == 0.35
    # The paper's training (Section 4.1): batch 64, 300 epochs.
    paper = EXPERIMENT_PRESETS["paper"]
    assert (paper["model_preset"], paper["batch_size"], paper["epochs"]) == ("fu2021", 64, 300)


def test_single_task_model_has_no_speaker_head():
    model = AttentionCNNBLSTM(**TINY)
    assert model.task_names == ("emotion",)
    assert model.num_classes == {"emotion": 3}


def test_tiny_model_passes_the_shared_checks_with_export(tmp_path):
    features = np.random.default_rng(0).uniform(-1, 1, (2, 24, 12)).astype("float32")
    check_model(
        lambda: AttentionCNNBLSTM(**TINY, num_speakers=2, speaker_loss_weight=0.5),
        features,
        {"emotion": (2, 3), "speaker": (2, 2)},
        tmp_path,
        export=True,
        label_names={"emotion": ["anger", "happiness", "neutral"]},
    )


def test_every_weight_gets_a_gradient_and_a_step_lowers_the_loss():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    emotion = rng.integers(0, 3, 32).astype("int32")
    speaker = rng.integers(0, 2, 32).astype("int32")
    features = rng.normal(0, 0.3, (32, 24, 12)).astype("float32")
    features[np.arange(32), :, emotion] += 1.5  # class = which mel band is loud
    features[np.arange(32), :, 6 + speaker] += 1.5
    speaker[::2] = -1
    labels = {"emotion": emotion, "speaker": speaker}
    model = AttentionCNNBLSTM(**TINY, num_speakers=2, dropout_rate=0.0)

    with tf.GradientTape() as tape:
        loss = model.compute_loss(y=labels, y_pred=model(features, training=True))
    gradients = tape.gradient(loss, model.trainable_weights)
    pairs = zip(model.trainable_weights, gradients, strict=True)
    disconnected = [w.path for w, g in pairs if g is None]
    assert not disconnected

    # A small step along the gradient lowers the loss (eager: tracing the
    # LSTMs' training graph for fit() would cost ~10 s here).
    keras.optimizers.SGD(0.05).apply(gradients, model.trainable_weights)
    after = model.compute_loss(y=labels, y_pred=model(features, training=True))
    assert float(after) < float(loss)


def test_from_preset_overrides_and_errors():
    model = AttentionCNNBLSTM.from_preset("fu2021_cpu", **{k: v for k, v in TINY.items()})
    assert model.get_config()["conv_filters"] == [8, 8, 8]
    assert PRESETS["fu2021_cpu"]["num_frames"] == 256
    with pytest.raises(ValueError, match="Unknown preset"):
        AttentionCNNBLSTM.from_preset("fu2020")
    with pytest.raises(ValueError, match="num_filters"):
        AttentionCNNBLSTM.from_preset("fu2021", num_filters=3)
    with pytest.raises(ValueError, match="divisible"):
        AttentionCNNBLSTM(**{**TINY, "num_attention_heads": 3})
    with pytest.raises(ValueError, match="too short"):
        AttentionCNNBLSTM(**{**TINY, "num_frames": 4})
    with pytest.raises(ValueError, match="same length"):
        AttentionCNNBLSTM(**{**TINY, "conv_kernel_sizes": (3, 3)})
    with pytest.raises(ValueError, match="num_speakers"):
        AttentionCNNBLSTM(**TINY, num_speakers=-1)


@pytest.mark.slow
def test_paper_size_model_runs_a_training_step():
    model = AttentionCNNBLSTM.from_preset("fu2021", num_speakers=3)
    model.compile()  # RMSprop, the paper's optimizer
    rng = np.random.default_rng(0)
    features = rng.uniform(-1, 1, (4, 256, 128)).astype("float32")
    labels = {"emotion": np.array([0, 1, 2, 6]), "speaker": np.array([0, 1, 2, -1])}
    logs = model.train_on_batch(features, labels, return_dict=True)
    assert np.isfinite(logs["loss"]) and "emotion_ua" in logs
    predictions = model.predict(features, verbose=0)
    assert predictions["emotion"].shape == (4, 7) and predictions["speaker"].shape == (4, 3)
