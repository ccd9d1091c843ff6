import keras
import numpy as np
import pytest

from ser_keras.layers.residual import ResidualBlock


def _inputs(channels=4, seed=0):
    return np.random.default_rng(seed).standard_normal((2, 6, 5, channels)).astype("float32")


def test_output_is_residual_plus_identity():
    block = ResidualBlock(4)
    x = _inputs()
    y = keras.ops.convert_to_numpy(block(x, training=False))
    assert y.shape == x.shape
    # F(x) by hand from the block's own sub-layers: conv, BN, ReLU, conv, BN, ReLU.
    f = block.conv_1(x)
    f = keras.ops.relu(block.norm_1(f, training=False))
    f = block.conv_2(f)
    f = keras.ops.relu(block.norm_2(f, training=False))
    np.testing.assert_allclose(y, keras.ops.convert_to_numpy(f) + x, atol=1e-5)
    # F(x) >= 0 after the last ReLU, and no ReLU after the addition: the
    # output keeps the negative values of x (Equation 1: y = F(x) + x).
    assert (y < 0).any()
    assert np.all(y >= x - 1e-6)


def test_zero_residual_branch_gives_identity():
    block = ResidualBlock(3, kernel_size=(3, 1), kernel_initializer="zeros")
    x = _inputs(3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(block(x)), x, atol=1e-6)


def test_two_convolutions_with_batch_norm_and_no_shortcut_parameters():
    block = ResidualBlock(8, kernel_size=3)
    block.build((None, 10, 10, 8))
    kernels = [w for w in block.weights if w.path.endswith("kernel")]
    assert [tuple(k.shape) for k in kernels] == [(3, 3, 8, 8), (3, 3, 8, 8)]
    # 2 kernels, no biases, 2 x (gamma, beta, moving mean, moving variance).
    assert len(block.weights) == 2 + 8
    assert block.count_params() == 2 * 3 * 3 * 8 * 8 + 2 * 4 * 8


def test_gradients_reach_the_input_through_the_shortcut():
    import tensorflow as tf

    block = ResidualBlock(2, kernel_initializer="zeros")
    x = tf.constant(_inputs(2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(block(x, training=True))
    gradient = tape.gradient(total, x).numpy()
    np.testing.assert_allclose(gradient, np.ones_like(gradient))


def test_config_round_trip_and_serialization(tmp_path):
    block = ResidualBlock(4, kernel_size=(3, 5), momentum=0.9, kernel_regularizer="l2", name="rb")
    clone = ResidualBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    assert clone.kernel_size == (3, 5)

    inputs = keras.Input((6, 5, 4))
    model = keras.Model(inputs, block(inputs))
    x = _inputs()
    expected = model.predict(x, verbose=0)
    path = tmp_path / "block.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.predict(x, verbose=0), expected, atol=1e-6)
    # The kernel regularizer adds its losses.
    assert len(model.losses) == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": 0}, "filters=0"),
        ({"filters": 4.0}, "filters=4.0"),
        ({"filters": 4, "kernel_size": 0}, "kernel_size=0"),
        ({"filters": 4, "kernel_size": (3, 3, 3)}, "kernel_size=(3, 3, 3)"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ResidualBlock(**kwargs)


def test_identity_shortcut_needs_matching_channels():
    with pytest.raises(ValueError, match="filters=8, input channels=4"):
        ResidualBlock(8)(_inputs(4))
    with pytest.raises(ValueError, match="rank 4"):
        ResidualBlock(4)(np.zeros((2, 5, 4), "float32"))
