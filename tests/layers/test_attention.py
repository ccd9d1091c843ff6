import keras
import numpy as np
import pytest

from ser_keras.layers.attention import LocalAttentionPooling, MultiHeadSelfAttention


def _sequences(batch=3, time=7, features=8, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, time, features)).astype("float32")


def test_self_attention_shape_heads_and_parameter_count():
    layer = MultiHeadSelfAttention(num_heads=4)
    outputs, scores = layer(_sequences(), return_attention_scores=True)
    assert tuple(outputs.shape) == (3, 7, 8)
    assert tuple(scores.shape) == (3, 4, 7, 7)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scores).sum(-1), 1.0, atol=1e-5)
    # Query, key, value: 8 -> 4 heads x 2 (+ bias); output W: 4 x 2 -> 8 (+ bias).
    assert layer.count_params() == 3 * (8 * 8 + 8) + (8 * 8 + 8)


def test_self_attention_ignores_masked_frames():
    x = _sequences()
    mask = np.ones((3, 7), dtype=bool)
    mask[:, 5:] = False
    layer = MultiHeadSelfAttention(num_heads=2)
    changed = x.copy()
    changed[:, 5:] = 100.0  # padded frames: must not affect the valid frames
    first = keras.ops.convert_to_numpy(layer(x, mask=mask))
    second = keras.ops.convert_to_numpy(layer(changed, mask=mask))
    np.testing.assert_allclose(first[:, :5], second[:, :5], atol=1e-5)
    assert not np.allclose(keras.ops.convert_to_numpy(layer(changed))[:, :5], first[:, :5])


def test_self_attention_rejects_indivisible_features_and_bad_heads():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadSelfAttention(num_heads=3)(_sequences())
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadSelfAttention(num_heads=0)
    assert MultiHeadSelfAttention(num_heads=3, key_dim=4)(_sequences()).shape == (3, 7, 8)


def test_local_attention_pooling_is_the_softmax_weighted_average():
    x = _sequences()
    layer = LocalAttentionPooling()
    pooled, weights = layer(x, return_attention_scores=True)
    context = keras.ops.convert_to_numpy(layer.context)
    scores = x @ context
    expected_weights = np.exp(scores - scores.max(1, keepdims=True))
    expected_weights /= expected_weights.sum(1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weights), expected_weights, atol=1e-5)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pooled), (expected_weights[..., None] * x).sum(1), atol=1e-5
    )
    assert layer.count_params() == 8


def test_local_attention_pooling_gives_padded_frames_no_weight():
    x = _sequences()
    mask = np.array([[True] * 7, [True] * 3 + [False] * 4, [False] * 7])
    layer = LocalAttentionPooling()
    pooled, weights = layer(x, mask=mask, return_attention_scores=True)
    weights = keras.ops.convert_to_numpy(weights)
    pooled = keras.ops.convert_to_numpy(pooled)
    assert np.all(weights[~mask] == 0.0)
    np.testing.assert_allclose(weights[:2].sum(1), 1.0, atol=1e-6)
    # Same result as pooling the valid frames alone; an all-padded row pools to 0.
    alone = keras.ops.convert_to_numpy(layer(x[1:2, :3]))
    np.testing.assert_allclose(pooled[1:2], alone, atol=1e-5)
    assert np.all(np.isfinite(pooled)) and np.all(pooled[2] == 0.0)


def test_keras_masking_propagates_through_both_layers():
    inputs = keras.Input((None, 8))
    masked = keras.layers.Masking(mask_value=-1.0)(inputs)
    outputs = LocalAttentionPooling()(MultiHeadSelfAttention(num_heads=2)(masked))
    model = keras.Model(inputs, outputs)
    x = _sequences(batch=2)
    padded = np.concatenate([x, -np.ones((2, 5, 8), "float32")], axis=1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(padded)), keras.ops.convert_to_numpy(model(x)), atol=1e-5
    )


@pytest.mark.parametrize(
    "layer",
    [
        MultiHeadSelfAttention(num_heads=2, key_dim=3, dropout_rate=0.1, use_bias=False),
        LocalAttentionPooling(context_regularizer="l2"),
    ],
    ids=["self_attention", "local_attention"],
)
def test_config_round_trip_and_keras_save(layer, tmp_path):
    x = _sequences()
    expected = keras.ops.convert_to_numpy(layer(x))
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)), expected, atol=1e-6)

    inputs = keras.Input((7, 8))
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "layer.keras")
    reloaded = keras.saving.load_model(tmp_path / "layer.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(x)), expected, atol=1e-6)
