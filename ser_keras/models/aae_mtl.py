"""Networks of the multi-task semi-supervised adversarial autoencoder (AAE).

Functional builders for the five networks of Latif et al.: the convolutional
encoder (also the generator of the adversarial part), the transposed
convolution decoder, the discriminator that tells latent codes from samples of
the prior N(0, I), and one classifier per task (emotion, speaker, gender) on
the latent code. The training procedure (three phases per batch, separate
optimizers) lives in `ser_keras.training.aae`.

Inputs are log-mel segments laid out as the feature pipeline produces them,
`[batch, num_frames, num_mels]` (the paper's 128 x 256 spectrogram, frequency
by time, transposed). With the paper preset the latent code is 16 x 16 x 32.

The paper gives the number of stages, the latent size (16 x 16 x 32), the
dropout rate (0.3), the layer order (convolution, batch normalisation, ReLU,
max-pooling) and the classifier layout; it gives no kernel sizes, filter
counts of the first two encoder stages, pooling sizes or dense widths. Those
are named arguments whose defaults are our choices (marked "not in the paper"
below), picked so that a 256 x 128 segment maps to 16 x 16 x 32.

Reference:
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020
    (arXiv:1907.06078).
"""

from __future__ import annotations

import copy
import math

import keras

# Names of the supervised heads, primary task first.
TASKS = ("emotion", "speaker", "gender")

AAE_MTL_PRESETS = {
    # Section 4.3 of the paper: 256-frame segments of 128 mel bands, three
    # conv + BN + ReLU + max-pool stages to a 16 x 16 x 32 code, classifiers
    # and discriminator of one conv + max-pool and two dense layers, dropout
    # 0.3 between the dense layers. Kernel sizes, the first two stages'
    # filters, pooling sizes and dense widths are not given in the paper.
    "latif2020": {
        "num_frames": 256,
        "num_mels": 128,
        "encoder_filters": (32, 64, 32),
        "kernel_size": 3,
        "pool_sizes": ((2, 2), (2, 2), (4, 2)),
        "head_filters": 32,
        "head_kernel_size": 3,
        "head_pool_size": (2, 2),
        "head_units": 128,
        "dropout_rate": 0.3,
    },
    # The same graph at CPU-test size (not a paper configuration).
    "cpu_small": {
        "num_frames": 32,
        "num_mels": 16,
        "encoder_filters": (8, 8, 4),
        "kernel_size": 3,
        "pool_sizes": ((2, 2), (2, 2), (2, 1)),
        "head_filters": 4,
        "head_kernel_size": 3,
        "head_pool_size": (2, 2),
        "head_units": 16,
        "dropout_rate": 0.3,
    },
}


def get_preset(name: str, **overrides) -> dict:
    """Returns a copy of a preset's architecture arguments with overrides applied.

    Args:
        name: a key of `AAE_MTL_PRESETS`.
        **overrides: architecture arguments replacing the preset's values.

    Returns:
        dict of architecture arguments (see `build_encoder`).
    """
    if name not in AAE_MTL_PRESETS:
        raise ValueError(f"Unknown AAE preset {name!r}; expected one of {sorted(AAE_MTL_PRESETS)}.")
    config = copy.deepcopy(AAE_MTL_PRESETS[name])
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"Unknown architecture arguments {unknown} for preset {name!r}; "
            f"expected some of {sorted(config)}."
        )
    config.update(overrides)
    return config


def _pairs(pool_sizes) -> tuple[tuple[int, int], ...]:
    pairs = []
    for size in pool_sizes:
        pair = (size, size) if isinstance(size, int) else tuple(size)
        if len(pair) != 2 or any(int(s) < 1 for s in pair):
            raise ValueError(f"Each pool size must be an int or a pair of ints >= 1; got {size!r}.")
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs)


def latent_shape(
    num_frames: int = 256,
    num_mels: int = 128,
    encoder_filters=(32, 64, 32),
    pool_sizes=((2, 2), (2, 2), (4, 2)),
) -> tuple[int, int, int]:
    """Shape of the latent code for the given segment size and encoder.

    Args:
        num_frames: frames per segment.
        num_mels: mel bands per frame.
        encoder_filters: filters of each encoder stage; the last one is the
            code's depth.
        pool_sizes: max-pooling size (frames, mels) of each encoder stage.

    Returns:
        (code_frames, code_mels, code_channels).
    """
    pools = _pairs(pool_sizes)
    if len(pools) != len(encoder_filters):
        raise ValueError(
            f"pool_sizes has {len(pools)} entries but encoder_filters has "
            f"{len(encoder_filters)}; give one pooling size per stage."
        )
    time_factor = math.prod(p[0] for p in pools)
    mel_factor = math.prod(p[1] for p in pools)
    if num_frames % time_factor or num_mels % mel_factor:
        raise ValueError(
            f"Segment size (num_frames={num_frames}, num_mels={num_mels}) is not divisible by "
            f"the encoder's pooling ({time_factor}, {mel_factor}) from pool_sizes={pool_sizes}."
        )
    return (num_frames // time_factor, num_mels // mel_factor, int(encoder_filters[-1]))


def build_encoder(
    num_frames: int = 256,
    num_mels: int = 128,
    encoder_filters=(32, 64, 32),
    kernel_size: int = 3,
    pool_sizes=((2, 2), (2, 2), (4, 2)),
    name: str = "encoder",
) -> keras.Model:
    """Encoder / generator E_theta: log-mel segment -> latent code z.

    Three stages of convolution, batch normalisation (before the
    nonlinearity), ReLU and max-pooling (Section 4.3). The last stage has no
    ReLU: the code is matched to the prior N(0, I), which a non-negative code
    could never resemble (deviation; the paper does not say how the code's
    last activation is handled).

    Args:
        num_frames: frames per segment (paper: 256).
        num_mels: mel bands (paper: 128).
        encoder_filters: filters per stage; the last is the code depth
            (paper: 32; the first two are not in the paper).
        kernel_size: convolution kernel size (not in the paper).
        pool_sizes: max-pooling (frames, mels) per stage; the defaults map
            256 x 128 to 16 x 16 (not in the paper).
        name: model name.

    Returns:
        keras.Model from `[batch, num_frames, num_mels]` to
        `[batch, *latent_shape]`.

    Reference:
        Latif et al., "Multi-Task Semi-Supervised Adversarial Autoencoding for
        Speech Emotion Recognition", IEEE Trans. Affective Computing, 2020.
    """
    latent_shape(num_frames, num_mels, encoder_filters, pool_sizes)  # validates
    pools = _pairs(pool_sizes)
    inputs = keras.Input(shape=(num_frames, num_mels), name="segments")
    x = keras.layers.Reshape((num_frames, num_mels, 1), name="add_channel")(inputs)
    last = len(encoder_filters) - 1
    for index, (filters, pool) in enumerate(zip(encoder_filters, pools, strict=True)):
        x = keras.layers.Conv2D(
            int(filters), kernel_size, padding="same", use_bias=False, name=f"conv_{index + 1}"
        )(x)
        x = keras.layers.BatchNormalization(name=f"batch_norm_{index + 1}")(x)
        if index < last:
            x = keras.layers.ReLU(name=f"relu_{index + 1}")(x)
        x = keras.layers.MaxPooling2D(pool, name=f"max_pool_{index + 1}")(x)
    return keras.Model(inputs, x, name=name)


def build_decoder(
    num_frames: int = 256,
    num_mels: int = 128,
    encoder_filters=(32, 64, 32),
    kernel_size: int = 3,
    pool_sizes=((2, 2), (2, 2), (4, 2)),
    name: str = "decoder",
) -> keras.Model:
    """Decoder D_delta: latent code z -> reconstructed segment x_hat.

    The encoder's structure in reverse with transposed convolutions (Section
    4.3): each stage's transposed convolution upsamples by that stage's
    pooling size (strides) and is followed by batch normalisation and ReLU;
    the last one has a single filter and a linear output, since log-mel
    values are real-valued (the paper does not describe the output layer).

    Args:
        num_frames: frames per segment (paper: 256).
        num_mels: mel bands (paper: 128).
        encoder_filters: the encoder's filters per stage (mirrored here).
        kernel_size: transposed convolution kernel size (not in the paper).
        pool_sizes: the encoder's pooling sizes (used as strides, reversed).
        name: model name.

    Returns:
        keras.Model from `[batch, *latent_shape]` to
        `[batch, num_frames, num_mels]`.

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Section 4.3.
    """
    code_shape = latent_shape(num_frames, num_mels, encoder_filters, pool_sizes)
    pools = _pairs(pool_sizes)
    inputs = keras.Input(shape=code_shape, name="latent_code")
    x = inputs
    # Stage i undoes encoder stage i: its output has encoder stage i's input
    # depth (1 channel for the first stage, the segment itself).
    output_filters = (1,) + tuple(int(f) for f in encoder_filters[:-1])
    for index in reversed(range(len(encoder_filters))):
        is_output = index == 0
        x = keras.layers.Conv2DTranspose(
            output_filters[index],
            kernel_size,
            strides=pools[index],
            padding="same",
            use_bias=is_output,
            name=f"conv_transpose_{index + 1}",
        )(x)
        if not is_output:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{index + 1}")(x)
            x = keras.layers.ReLU(name=f"relu_{index + 1}")(x)
    outputs = keras.layers.Reshape((num_frames, num_mels), name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=name)


def _head(
    code_shape,
    num_outputs: int,
    filters: int,
    kernel_size: int,
    pool_size,
    units: int,
    dropout_rate: float,
    use_batch_norm: bool,
    name: str,
) -> keras.Model:
    if num_outputs < 2:
        raise ValueError(f"{name} needs at least 2 classes; got {num_outputs}.")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1); got {dropout_rate}.")
    inputs = keras.Input(shape=tuple(code_shape), name="latent_code")
    x = keras.layers.Conv2D(
        int(filters), kernel_size, padding="same", use_bias=not use_batch_norm, name="conv"
    )(inputs)
    if use_batch_norm:
        x = keras.layers.BatchNormalization(name="batch_norm")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(_pairs([pool_size])[0], name="max_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(int(units), activation="relu", name="dense_1")(x)
    x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
    # The last hidden layer: its output is the d-vector of the speaker head.
    x = keras.layers.Dense(int(units), activation="relu", name="dense_2")(x)
    outputs = keras.layers.Dense(num_outputs, activation="softmax", name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def build_classifier(
    code_shape=(16, 16, 32),
    num_classes: int = 4,
    head_filters: int = 32,
    head_kernel_size: int = 3,
    head_pool_size=(2, 2),
    head_units: int = 128,
    dropout_rate: float = 0.3,
    use_batch_norm: bool = True,
    name: str = "emotion_classifier",
) -> keras.Model:
    """Classifier C_phi on the latent code (emotion, speaker or gender).

    One convolution (with batch normalisation, which the paper applies after
    each convolutional layer, and ReLU) followed by max-pooling, two dense
    layers with dropout between them, and a softmax layer (Section 4.3).
    The second dense layer is the last hidden layer, whose output serves as
    the d-vector for speaker verification.

    Args:
        code_shape: shape of the latent code (paper: 16 x 16 x 32).
        num_classes: number of classes (paper: 4 emotions, 2 genders, the
            number of training speakers).
        head_filters: convolution filters (not in the paper).
        head_kernel_size: convolution kernel size (not in the paper).
        head_pool_size: max-pooling size (not in the paper).
        head_units: width of both dense layers (not in the paper).
        dropout_rate: dropout between the dense layers (paper: 0.3).
        use_batch_norm: batch normalisation after the convolution.
        name: model name.

    Returns:
        keras.Model from `[batch, *code_shape]` to class probabilities
        `[batch, num_classes]`.

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Section 4.3.
    """
    return _head(
        code_shape,
        int(num_classes),
        head_filters,
        head_kernel_size,
        head_pool_size,
        head_units,
        dropout_rate,
        use_batch_norm,
        name,
    )


def build_discriminator(
    code_shape=(16, 16, 32),
    head_filters: int = 32,
    head_kernel_size: int = 3,
    head_pool_size=(2, 2),
    head_units: int = 128,
    dropout_rate: float = 0.3,
    name: str = "discriminator",
) -> keras.Model:
    """Discriminator D_omega: prior sample (class 1, "real") vs code (class 0).

    The classifiers' architecture (Section 4.3: one convolution + max-pooling,
    two dense layers, softmax) with two classes; index 1 is the probability
    D(.) of Equation 4 that the input was drawn from N(0, I). Without batch
    normalisation: batch statistics of all-real and all-fake batches would
    let the discriminator tell them apart by their statistics alone
    (the paper does not say whether its discriminator normalises).

    Args:
        code_shape: shape of the latent code (paper: 16 x 16 x 32).
        head_filters: convolution filters (not in the paper).
        head_kernel_size: convolution kernel size (not in the paper).
        head_pool_size: max-pooling size (not in the paper).
        head_units: width of both dense layers (not in the paper).
        dropout_rate: dropout between the dense layers (the classifiers' 0.3,
            as the paper calls the architectures similar).
        name: model name.

    Returns:
        keras.Model from `[batch, *code_shape]` to `[batch, 2]` probabilities
        (fake, real).

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Eq. 4, Sec. 4.3.
    """
    return _head(
        code_shape,
        2,
        head_filters,
        head_kernel_size,
        head_pool_size,
        head_units,
        dropout_rate,
        False,
        name,
    )


def build_aae_networks(
    num_classes: dict,
    reconstruction: bool = True,
    adversarial: bool = True,
    num_frames: int = 256,
    num_mels: int = 128,
    encoder_filters=(32, 64, 32),
    kernel_size: int = 3,
    pool_sizes=((2, 2), (2, 2), (4, 2)),
    head_filters: int = 32,
    head_kernel_size: int = 3,
    head_pool_size=(2, 2),
    head_units: int = 128,
    dropout_rate: float = 0.3,
) -> dict:
    """Builds the encoder, optional decoder and discriminator, and the heads.

    Args:
        num_classes: task name -> number of classes, e.g.
            `{"emotion": 4, "speaker": 610, "gender": 2}`; one classifier per
            entry (a single-task model gives only "emotion").
        reconstruction: build the decoder (False: no autoencoder, as in the
            supervised CNN baseline).
        adversarial: build the discriminator (False: the semi-supervised AE
            baseline).
        num_frames, num_mels, encoder_filters, kernel_size, pool_sizes: see
            `build_encoder`.
        head_filters, head_kernel_size, head_pool_size, head_units,
            dropout_rate: see `build_classifier` (shared by the
            discriminator).

    Returns:
        dict with "encoder", "decoder" (or None), "discriminator" (or None)
        and "classifiers" (task -> model).

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Figure 1.
    """
    if not num_classes:
        raise ValueError(f"num_classes must name at least one task; got {num_classes!r}.")
    if adversarial and not reconstruction:
        # The paper's variants: AAE (both), AE (no discriminator), CNN (neither).
        raise ValueError(
            "adversarial=True needs reconstruction=True (an adversarial autoencoder "
            f"without its decoder is not one of the paper's models); got "
            f"reconstruction={reconstruction}, adversarial={adversarial}."
        )
    encoder_args = dict(
        num_frames=num_frames,
        num_mels=num_mels,
        encoder_filters=tuple(encoder_filters),
        kernel_size=kernel_size,
        pool_sizes=pool_sizes,
    )
    head_args = dict(
        head_filters=head_filters,
        head_kernel_size=head_kernel_size,
        head_pool_size=head_pool_size,
        head_units=head_units,
        dropout_rate=dropout_rate,
    )
    code_shape = latent_shape(num_frames, num_mels, encoder_filters, pool_sizes)
    return {
        "encoder": build_encoder(**encoder_args),
        "decoder": build_decoder(**encoder_args) if reconstruction else None,
        "discriminator": (build_discriminator(code_shape, **head_args) if adversarial else None),
        "classifiers": {
            task: build_classifier(code_shape, int(count), name=f"{task}_classifier", **head_args)
            for task, count in num_classes.items()
        },
    }
