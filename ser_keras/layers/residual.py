"""Residual block with an identity shortcut, `y = F(x) + x`.

The block of the ResNet trunk in Latif et al. (paper 000): two small (3 x 3 by
default) convolutions, each followed by batch normalisation and then ReLU, and
an identity shortcut from the block's input to its output. The shortcut adds
no parameters, so the block keeps the shape of its input (same spatial size,
same number of channels).

Reference:
    S. Latif et al., multi-task learning with language and domain
    identification on unlabelled speech for cross-language speech emotion
    recognition (paper 000 of this project), Section 3.1, Equation 1, and
    Section 4.3.
    K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016.
"""

from __future__ import annotations

import keras

from ser_keras.utils.validation import positive_int


@keras.saving.register_keras_serializable(package="ser_keras")
class ResidualBlock(keras.layers.Layer):
    """Two convolutions with batch normalisation before ReLU, plus `x`.

    Computes `y = F(x) + x` with
    `F(x) = ReLU(BN(Conv(ReLU(BN(Conv(x))))))` (Equation 1 of the paper:
    "batch normalisation before applying the ReLU activation in each
    convolutional layer", identity shortcut). Following Equation 1 literally,
    no activation follows the addition (He et al. apply one; the paper's
    equation does not).

    The convolutions use `"same"` padding and no bias (the batch
    normalisation that follows has its own offset).

    Args:
        filters: Channels of both convolutions. Must equal the channels of
            the input, since the shortcut is the identity.
        kernel_size: Size of both convolution kernels, an int or a pair
            (the paper: 3, i.e. 3 x 3).
        momentum: Momentum of the batch normalisation moving statistics.
        epsilon: Epsilon of the batch normalisation.
        kernel_initializer: Initializer of the convolution kernels.
        kernel_regularizer: Optional regularizer of the convolution kernels.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`...).

    Example:
    ```python
    x = keras.Input((600, 128, 16))
    y = ResidualBlock(16)(x)  # (None, 600, 128, 16)
    ```

    Reference:
        Latif et al. (paper 000), Section 3.1, Equation 1; He et al.,
        CVPR 2016.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        filters = positive_int("filters", filters)
        pair = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(pair) != 2 or any(
            isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in pair
        ):
            raise ValueError(
                "`kernel_size` must be a positive int or a pair of them. "
                f"Received: kernel_size={kernel_size!r}"
            )
        self.filters = filters
        self.kernel_size = pair
        self.momentum = momentum
        self.epsilon = epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

        def convolution(name):
            return keras.layers.Conv2D(
                filters,
                pair,
                padding="same",
                use_bias=False,
                kernel_initializer=self.kernel_initializer,
                kernel_regularizer=self.kernel_regularizer,
                dtype=self.dtype_policy,
                name=name,
            )

        def normalization(name):
            return keras.layers.BatchNormalization(
                momentum=momentum, epsilon=epsilon, dtype=self.dtype_policy, name=name
            )

        self.conv_1 = convolution("conv_1")
        self.norm_1 = normalization("bn_1")
        self.conv_2 = convolution("conv_2")
        self.norm_2 = normalization("bn_2")
        self.add_shortcut = keras.layers.Add(dtype=self.dtype_policy, name="add")

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "ResidualBlock expects inputs of rank 4 [batch, height, width, channels]. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if input_shape[-1] != self.filters:
            raise ValueError(
                "The identity shortcut needs as many input channels as `filters`. "
                f"Received: filters={self.filters}, input channels={input_shape[-1]}"
            )
        self.conv_1.build(input_shape)
        self.norm_1.build(input_shape)
        self.conv_2.build(input_shape)
        self.norm_2.build(input_shape)

    def call(self, inputs, training=None):
        residual = self.conv_1(inputs)
        residual = keras.ops.relu(self.norm_1(residual, training=training))
        residual = self.conv_2(residual)
        residual = keras.ops.relu(self.norm_2(residual, training=training))
        return self.add_shortcut([residual, inputs])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
