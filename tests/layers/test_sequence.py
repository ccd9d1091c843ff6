import keras
import numpy as np
import pytest

from ser_keras.layers.sequence import FrameMask, LastStateAttention, MaskedStatisticsPooling


def _features(batch, frames=10, mels=24, valid=(10, 6), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(batch, frames, mels)).astype("float32")
    for row in range(batch):
        x[row, valid[row % len(valid)] :] = -1.0  # the fu2021 padding value
    return x


def test_frame_mask_and_masked_statistics():
    x = _features(2, valid=(10, 4))
    mask = keras.ops.convert_to_numpy(FrameMask(-1.0)(x))
    np.testing.assert_array_equal(mask.sum(axis=1), [10, 4])
    everything_padded = np.full((1, 5, 24), -1.0, "float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(FrameMask(-1.0)(everything_padded)), [[1, 0, 0, 0, 0]]
    )
    stats = keras.ops.convert_to_numpy(MaskedStatisticsPooling()(x, mask=mask))
    np.testing.assert_allclose(stats[1, :24], x[1, :4].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats[1, 24:], x[1, :4].std(axis=0), rtol=1e-3, atol=1e-4)


def test_last_state_attention_is_equation_2_over_valid_frames():
    rng = np.random.default_rng(0)
    query = rng.normal(size=(2, 4)).astype("float32")
    sequence = rng.normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=bool)
    layer = LastStateAttention(6)
    out = keras.ops.convert_to_numpy(layer(query, sequence, mask=mask))
    q = query @ layer.query_kernel.numpy()
    k = sequence @ layer.key_kernel.numpy()
    v = sequence @ layer.value_kernel.numpy()
    for row in range(2):
        valid = mask[row]
        scores = k[row, valid] @ q[row] / np.sqrt(4)
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        np.testing.assert_allclose(out[row], weights @ v[row, valid], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "layer, config",
    [
        (FrameMask, {"name": "frame_mask", "pad_value": -1.0}),
        (MaskedStatisticsPooling, {"name": "statistics"}),
        (LastStateAttention, {"name": "logmel_attention", "units": 4}),
    ],
)
def test_layers_keep_the_registered_names_of_saved_models(layer, config):
    # Saved before the layers moved out of ser_keras.models.multigate: the
    # registered name (not the module) finds the class.
    name = f"ser_keras>{layer.__name__}"
    assert keras.saving.get_registered_name(layer) == name
    saved = {
        "module": "ser_keras.models.multigate",
        "class_name": layer.__name__,
        "config": config,
        "registered_name": name,
    }
    restored = keras.saving.deserialize_keras_object(saved)
    assert type(restored) is layer and restored.name == config["name"]
