"""Networks of the multi-task semi-supervised adversarial autoencoder (AAE).

Functional builders for the five networks of Latif et al.: the convolutional
encoder (also the generator of the adversarial part), the transposed
convolution decoder, the discriminator that tells latent codes from samples of
the prior N(0, I), and one classifier per task (emotion, speaker, gender) on
the latent code, and the model that joins them, `AAEMultiTaskModel`, whose
`train_step` runs the training procedure (three phases per batch, separate
optimizers).

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

`AAEMultiTaskModel` (below the builders) is the model: the builders' networks
joined into one Functional model whose `train_step` runs the paper's three
phases. What follows is its documentation.

Trainer of the multi-task semi-supervised adversarial autoencoder (AAE).

`AAEMultiTaskModel` is a Functional `keras.Model` (segments in, a dict of
class probabilities per task out) whose `train_step` runs the paper's three
phases on every batch, in order, each with its own optimizer:

1. reconstruction: encoder + decoder minimise alpha * ||x - x_hat||^2;
2. regularisation: the discriminator learns to tell samples of the prior
   N(0, I) ("real") from latent codes ("fake") (Eq. 4), then the encoder
   (the generator) learns to fool it with the discriminator fixed (Eq. 5,
   first term);
3. classification: encoder + classifiers minimise
   L_c = beta * L_E + (1 - beta) * (L_G + L_S) (Eq. 2).

Labels arrive as a dict task -> int labels where -1 marks a missing label;
additional speech without emotion labels (LibriSpeech in the paper) thus only
trains the speaker and gender heads and the unsupervised phases. A task's loss
averages over the samples labelled for it and is 0 for a batch with none.

The same code gives the paper's Figure 3 baselines (`VARIANTS`): single-task
(emotion head only), the semi-supervised autoencoder (no discriminator) and
the supervised CNN (encoder + emotion classifier, no decoder).

Choices where the paper is silent or inconsistent (named where they are made):
* alpha weights the reconstruction phase as in Eq. 1 (Eq. 5 writes
  beta * L_AE for the encoder, taken as a typo: beta weights L_E in Eq. 2);
* L_AE is the mean squared error over the segment, not the sum (Eq. 3);
* the generator minimises log(1 - D(E(x))) (Eq. 5) unless
  `generator_loss="non_saturating"`;
* the encoder runs in training mode in each phase, so its batch-norm moving
  statistics are updated three times per batch;
* the CNN baseline is the encoder + emotion classifier (the multi-task CNN of
  Table 3, with two shared convolutions, is not reproduced).

Under `tf.distribute` every phase's loss is this replica's share of the loss
on the global batch (`ser_keras.training.distribute.global_batch_mean`; the
masked classification losses divide by the global number of labelled
samples), so the SUM all-reduce of each phase's gradients is the
single-device gradient on the global batch, for any split of the batch
(a replica left without samples contributes 0, not NaN); the prior samples
are drawn from a separate stream on each replica. Batch normalisation uses
each replica's statistics unless `synchronize_batch_norm` was applied.

This module uses `tf.GradientTape` for the per-phase updates, so it runs on
the TensorFlow backend.

Reference:
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020
    (arXiv:1907.06078), Section 3 and Section 4.3.
"""

from __future__ import annotations

import copy
import math

import keras
import tensorflow as tf
from keras import ops

from ser_keras.training.distribute import global_batch_mean, replica_context, replica_seed
from ser_keras.training.losses import masked_sparse_categorical_crossentropy_sum
from ser_keras.training.metrics import MaskedAccuracy, UnweightedAccuracy

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
    # A REDUCED configuration for a CPU (not the paper's): 128-frame x 32-band
    # segments and a narrower network; the `quick` preset of
    # `ser_keras.experiments.aae_mtl`.
    "latif2020_cpu": {
        "num_frames": 128,
        "num_mels": 32,
        "encoder_filters": (8, 16, 8),
        "kernel_size": 3,
        "pool_sizes": ((2, 2), (2, 2), (2, 1)),
        "head_filters": 8,
        "head_kernel_size": 3,
        "head_pool_size": (2, 2),
        "head_units": 32,
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


def build_aae_model(
    num_classes: dict,
    variant: str = "aae_mtl",
    preset: str | None = "latif2020",
    *,
    alpha: float | None = None,
    beta: float | None = None,
    generator_loss: str = "minimax",
    seed=None,
    name: str | None = None,
    **architecture,
):
    """Builds an `AAEMultiTaskModel` from a variant, an architecture preset and class counts.

    The one path from presets to a model, shared by the paper-002 experiment
    (`ser_keras.experiments.aae_mtl`) and the tuning hypermodel. Unlike
    `AAEMultiTaskModel.from_preset`, the heads are those named in
    `num_classes`, any subset of the variant's tasks that holds "emotion"
    (e.g. the AAE with only a gender head, a row of the paper's Table 5).

    Args:
        num_classes: Task -> number of classes, e.g. `{"emotion": 4,
            "speaker": 610, "gender": 2}`; one classifier per task, built in
            the variant's task order.
        variant: A key of `ser_keras.models.aae_mtl.VARIANTS`: which networks
            (decoder, discriminator) and the default alpha and beta.
        preset: A key of `AAE_MTL_PRESETS`, whose architecture `architecture`
            overrides; None: `architecture` alone (defaults: the paper's).
        alpha: Reconstruction weight (Eq. 1); None: the variant's.
        beta: Emotion-loss weight (Eq. 2); None: the variant's.
        generator_loss: "minimax" or "non_saturating" (see
            `AAEMultiTaskModel`).
        seed: Seed of the prior samples.
        name: Model name (default: the variant's).
        **architecture: Architecture arguments (see `build_aae_networks`).

    Returns:
        An uncompiled `ser_keras.models.aae_mtl.AAEMultiTaskModel`.

    Raises:
        ValueError: An unknown variant or preset, or tasks that are not the
            variant's or lack "emotion" (named, with what was received).

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Figure 1,
        Section 4.3 and Table 5.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {sorted(VARIANTS)}.")
    spec = VARIANTS[variant]
    num_classes = dict(num_classes or {})
    unknown = sorted(set(num_classes) - set(spec["tasks"]))
    if unknown or TASKS[0] not in num_classes:
        raise ValueError(
            f"Variant {variant!r} takes tasks among {list(spec['tasks'])}, {TASKS[0]!r} "
            f"included. Received num_classes={num_classes}."
        )
    config = get_preset(preset, **architecture) if preset is not None else architecture
    networks = build_aae_networks(
        {task: num_classes[task] for task in spec["tasks"] if task in num_classes},
        reconstruction=spec["reconstruction"],
        adversarial=spec["adversarial"],
        **config,
    )
    return AAEMultiTaskModel(
        encoder=networks["encoder"],
        classifiers=networks["classifiers"],
        decoder=networks["decoder"],
        discriminator=networks["discriminator"],
        alpha=spec["alpha"] if alpha is None else alpha,
        beta=spec["beta"] if beta is None else beta,
        generator_loss=generator_loss,
        seed=seed,
        name=name or variant,
    )


PHASES = ("reconstruction", "regularisation", "classification")
GENERATOR_LOSSES = ("minimax", "non_saturating")

# The paper's models and the baselines of Figure 3 / Table 3. alpha and beta
# are the values the paper selected on IEMOCAP for categorical emotion
# (Section 5.1): AAE models alpha=0.4, beta=0.6; AE models alpha=0.3,
# beta=0.7 (for dimensional emotion it reports AAE 0.3/0.7, AE 0.6/0.4). The
# CNN has no reconstruction term and one task, so L = L_E (beta=1).
VARIANTS = {
    "aae_mtl": {
        "tasks": ("emotion", "speaker", "gender"),
        "reconstruction": True,
        "adversarial": True,
        "alpha": 0.4,
        "beta": 0.6,
    },
    "aae_stl": {
        "tasks": ("emotion",),
        "reconstruction": True,
        "adversarial": True,
        "alpha": 0.4,
        "beta": 0.6,
    },
    "ae_mtl": {
        "tasks": ("emotion", "speaker", "gender"),
        "reconstruction": True,
        "adversarial": False,
        "alpha": 0.3,
        "beta": 0.7,
    },
    "ae_stl": {
        "tasks": ("emotion",),
        "reconstruction": True,
        "adversarial": False,
        "alpha": 0.3,
        "beta": 0.7,
    },
    "cnn_stl": {
        "tasks": ("emotion",),
        "reconstruction": False,
        "adversarial": False,
        "alpha": 0.0,
        "beta": 1.0,
    },
}

# Section 4.3: SGD with learning rate 0.0001 (batch size 32).
PAPER_LEARNING_RATE = 1e-4
PAPER_BATCH_SIZE = 32


def _paper_optimizer() -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(learning_rate=PAPER_LEARNING_RATE)


def _fresh_copy(optimizer) -> keras.optimizers.Optimizer:
    optimizer = keras.optimizers.get(optimizer)
    return optimizer.__class__.from_config(optimizer.get_config())


@keras.saving.register_keras_serializable(package="ser_keras")
class AAEMultiTaskModel(keras.Model):
    """Multi-task semi-supervised adversarial autoencoder with its training.

    Calling the model (or `predict`) maps segments `[batch, num_frames,
    num_mels]` to a dict task -> softmax probabilities. `fit` runs the three
    phases per batch (module docstring); `evaluate` and validation report the
    same losses without updates. Metrics per epoch: `loss` (Eq. 1:
    alpha * L_AE + L_c), `reconstruction_loss`, `discriminator_loss`,
    `generator_loss`, `<task>_loss`, `<task>_accuracy` and `emotion_ua`
    (prefixed `val_` for validation data).

    Args:
        encoder: the encoder / generator, segments -> latent code.
        classifiers: dict task -> classifier on the latent code. The
            `primary_task` must be one of them.
        decoder: latent code -> reconstructed segment; None drops the
            reconstruction phase (supervised CNN baseline).
        discriminator: latent code -> (fake, real) probabilities; None drops
            the regularisation phase (semi-supervised AE baseline).
        alpha: weight of the reconstruction loss (Eq. 1; paper 0.4).
        beta: weight of the primary task's loss; each auxiliary task's loss
            is weighted 1 - beta (Eq. 2; paper 0.6).
        primary_task: the task weighted by beta ("emotion").
        prior_stddev: standard deviation of the Gaussian prior p(d)
            (paper: N(0, I), i.e. 1.0).
        generator_loss: "minimax" minimises log(1 - D(E(x))) as Eq. 5
            writes it; "non_saturating" minimises -log D(E(x)), the usual
            GAN practice that keeps gradients alive when the discriminator
            wins early.
        seed: seed of the prior samples.
        **kwargs: `keras.Model` arguments (name, ...).

    Example:
    ```python
    model = AAEMultiTaskModel.from_preset(
        "latif2020", "aae_mtl", num_classes={"emotion": 4, "speaker": 610, "gender": 2})
    model.compile()  # SGD(1e-4) per phase, as in the paper
    model.fit(segments, {"emotion": e, "speaker": s, "gender": g},
              validation_data=(val_segments, val_labels), batch_size=32,
              callbacks=[RestoreBestAndHalveLearningRate()])
    ```

    Reference:
        Latif et al., "Multi-Task Semi-Supervised Adversarial Autoencoding for
        Speech Emotion Recognition", IEEE Trans. Affective Computing, 2020.
    """

    def __init__(
        self,
        encoder,
        classifiers,
        decoder=None,
        discriminator=None,
        alpha: float = 0.4,
        beta: float = 0.6,
        primary_task: str = "emotion",
        prior_stddev: float = 1.0,
        generator_loss: str = "minimax",
        seed=None,
        **kwargs,
    ):
        if not isinstance(classifiers, dict) or not classifiers:
            raise ValueError(
                f"classifiers must be a non-empty dict task -> model; got {classifiers!r}."
            )
        if primary_task not in classifiers:
            raise ValueError(
                f"primary_task={primary_task!r} has no classifier; tasks are {list(classifiers)}."
            )
        if discriminator is not None and decoder is None:
            raise ValueError(
                "A discriminator needs a decoder (the adversarial autoencoder); got "
                "decoder=None with a discriminator."
            )
        if not alpha >= 0.0:
            raise ValueError(f"alpha must be >= 0; got {alpha}.")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1]; got {beta}.")
        if not prior_stddev > 0.0:
            raise ValueError(f"prior_stddev must be > 0; got {prior_stddev}.")
        if generator_loss not in GENERATOR_LOSSES:
            raise ValueError(
                f"generator_loss must be one of {GENERATOR_LOSSES}; got {generator_loss!r}."
            )

        # === Functional graph: segments -> code -> per-task probabilities ===
        inputs = keras.Input(shape=tuple(encoder.input.shape[1:]), name="segments")
        code = encoder(inputs)
        outputs = {task: head(code) for task, head in classifiers.items()}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Networks used outside the prediction graph ===
        self.encoder = encoder
        self.decoder = decoder
        self.discriminator = discriminator
        self.classifiers = dict(classifiers)
        self.tasks = tuple(classifiers)

        # === Config ===
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.primary_task = primary_task
        self.prior_stddev = float(prior_stddev)
        self.generator_loss = generator_loss
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Phases and tasks trained by `fit`; `pretrain_auxiliary` narrows them.
        self._active_phases = self.phases
        self._active_tasks = self.tasks

        # === Metrics ===
        self._trackers = {"loss": keras.metrics.Mean(name="loss")}
        if decoder is not None:
            self._trackers["reconstruction_loss"] = keras.metrics.Mean(name="reconstruction_loss")
        if discriminator is not None:
            self._trackers["discriminator_loss"] = keras.metrics.Mean(name="discriminator_loss")
            self._trackers["generator_loss"] = keras.metrics.Mean(name="generator_loss")
        for task in self.tasks:
            self._trackers[f"{task}_loss"] = keras.metrics.Mean(name=f"{task}_loss")
            self._trackers[f"{task}_accuracy"] = MaskedAccuracy(name=f"{task}_accuracy")
        num_primary = int(self.classifiers[primary_task].output.shape[-1])
        self._trackers[f"{primary_task}_ua"] = UnweightedAccuracy(
            num_primary, name=f"{primary_task}_ua"
        )

    # ------------------------------------------------------------------ build

    @classmethod
    def from_preset(
        cls,
        preset: str = "latif2020",
        variant: str = "aae_mtl",
        num_classes: dict | None = None,
        alpha: float | None = None,
        beta: float | None = None,
        generator_loss: str = "minimax",
        seed=None,
        **architecture,
    ) -> AAEMultiTaskModel:
        """Builds a model from an architecture preset and a variant.

        Args:
            preset: a key of `ser_keras.models.aae_mtl.AAE_MTL_PRESETS`.
            variant: a key of `VARIANTS` ("aae_mtl" is the paper's model).
            num_classes: task -> number of classes; must cover the variant's
                tasks (extra tasks are ignored), e.g. `{"emotion": 4,
                "speaker": 610, "gender": 2}`.
            alpha: reconstruction weight; None takes the variant's value.
            beta: primary-task weight; None takes the variant's value.
            generator_loss: see the class docstring.
            seed: seed of the prior samples.
            **architecture: overrides of the preset's architecture arguments.

        Returns:
            An uncompiled `AAEMultiTaskModel`.
        """
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}; expected one of {sorted(VARIANTS)}.")
        spec = VARIANTS[variant]
        num_classes = dict(num_classes or {})
        missing = [task for task in spec["tasks"] if task not in num_classes]
        if missing:
            raise ValueError(
                f"Variant {variant!r} needs class counts for {list(spec['tasks'])}; "
                f"num_classes={num_classes} lacks {missing}."
            )
        return build_aae_model(
            {task: num_classes[task] for task in spec["tasks"]},
            variant,
            preset,
            alpha=alpha,
            beta=beta,
            generator_loss=generator_loss,
            seed=seed,
            name=variant,
            **architecture,
        )

    @property
    def phases(self) -> tuple[str, ...]:
        """The training phases this model runs, in order."""
        phases = []
        if self.decoder is not None:
            phases.append("reconstruction")
        if self.discriminator is not None:
            phases.append("regularisation")
        phases.append("classification")
        return tuple(phases)

    def task_weights(self, tasks=None) -> dict[str, float]:
        """Weight of each task's loss in L_c (Eq. 2): beta primary, 1 - beta others."""
        tasks = self.tasks if tasks is None else tasks
        return {
            task: (self.beta if task == self.primary_task else 1.0 - self.beta) for task in tasks
        }

    # ---------------------------------------------------------------- compile

    def compile(
        self,
        optimizer=None,
        reconstruction_optimizer=None,
        discriminator_optimizer=None,
        generator_optimizer=None,
        classification_optimizer=None,
        **kwargs,
    ):
        """Configures one optimizer per phase.

        Args:
            optimizer: template for every phase not given explicitly (each
                phase gets its own copy); default SGD(learning_rate=1e-4) as
                in the paper.
            reconstruction_optimizer: encoder + decoder (phase 1).
            discriminator_optimizer: discriminator (phase 2, first update).
            generator_optimizer: encoder as generator (phase 2, second update).
            classification_optimizer: encoder + classifiers (phase 3); also
                `self.optimizer`.
            **kwargs: other `keras.Model.compile` arguments (run_eagerly,
                jit_compile, steps_per_execution). Losses and metrics are
                fixed by the model.
        """
        for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"AAEMultiTaskModel computes its own losses and metrics; got {key}="
                    f"{kwargs[key]!r}."
                )
            kwargs.pop(key, None)
        template = _paper_optimizer() if optimizer is None else keras.optimizers.get(optimizer)
        given = {
            "reconstruction": reconstruction_optimizer,
            "discriminator": discriminator_optimizer,
            "generator": generator_optimizer,
            "classification": classification_optimizer,
        }
        chosen = {}
        for phase, value in given.items():
            if value is not None:
                chosen[phase] = keras.optimizers.get(value)
            elif phase == "classification":
                chosen[phase] = template
            else:
                chosen[phase] = _fresh_copy(template)
        identities = [id(opt) for opt in chosen.values()]
        if len(set(identities)) != len(identities):
            raise ValueError(
                "Each phase needs its own optimizer instance (an optimizer is built for "
                "one set of variables); the same instance was given for several phases."
            )
        self.reconstruction_optimizer = chosen["reconstruction"]
        self.discriminator_optimizer = chosen["discriminator"]
        self.generator_optimizer = chosen["generator"]
        self.classification_optimizer = chosen["classification"]
        super().compile(optimizer=self.classification_optimizer, **kwargs)
        self._build_optimizers()

    def _phase_variables(self) -> dict[str, list]:
        encoder = list(self.encoder.trainable_variables)
        variables = {
            "generator": encoder,
            "classification": encoder
            + [v for head in self.classifiers.values() for v in head.trainable_variables],
        }
        if self.decoder is not None:
            variables["reconstruction"] = encoder + list(self.decoder.trainable_variables)
        if self.discriminator is not None:
            variables["discriminator"] = list(self.discriminator.trainable_variables)
        return variables

    def _build_optimizers(self):
        for phase, variables in self._phase_variables().items():
            optimizer = getattr(self, f"{phase}_optimizer")
            if not optimizer.built:
                optimizer.build(variables)

    @property
    def phase_optimizers(self) -> dict[str, keras.optimizers.Optimizer]:
        """Optimizers of the phases this model runs (after `compile`)."""
        names = ["classification"]
        if self.decoder is not None:
            names.insert(0, "reconstruction")
        if self.discriminator is not None:
            names[1:1] = ["discriminator", "generator"]
        return {name: getattr(self, f"{name}_optimizer") for name in names}

    def get_compile_config(self):
        if not getattr(self, "compiled", False):
            return None
        return {
            f"{phase}_optimizer": keras.saving.serialize_keras_object(
                getattr(self, f"{phase}_optimizer")
            )
            for phase in ("reconstruction", "discriminator", "generator", "classification")
        }

    def compile_from_config(self, config):
        config = {
            key: keras.saving.deserialize_keras_object(value) for key, value in config.items()
        }
        self.compile(**config)

    # ------------------------------------------------------------------ steps

    @property
    def metrics(self):
        # Only the trackers the steps report: Keras reads the epoch's results
        # from `metrics` (aggregated over replicas) only when their names are
        # the keys the step returns, and otherwise keeps the first replica's
        # logs (wrong under tf.distribute, e.g. in `pretrain_auxiliary`).
        return [tracker for name, tracker in self._trackers.items() if self._tracker_active(name)]

    def _segments(self, x):
        if isinstance(x, dict):
            if len(x) != 1:
                raise ValueError(
                    f"AAEMultiTaskModel takes one input (segments); got inputs {sorted(x)}."
                )
            x = next(iter(x.values()))
        return ops.convert_to_tensor(x, dtype=self.compute_dtype)

    def _labels(self, y, tasks):
        if y is None:
            return {}
        if not isinstance(y, dict):
            if len(self.tasks) == 1:
                y = {self.tasks[0]: y}
            else:
                raise ValueError(
                    f"Labels must be a dict task -> int labels for tasks {list(self.tasks)}; "
                    f"got {type(y).__name__}."
                )
        missing = [task for task in tasks if task not in y]
        if missing:
            raise ValueError(
                f"Labels lack tasks {missing} (give -1 for samples without a label); "
                f"got keys {sorted(y)}."
            )
        return {task: ops.reshape(ops.cast(y[task], "int32"), (-1,)) for task in tasks}

    # The three loss functions below return this replica's share of the loss
    # on the global batch (the loss itself on one device), see
    # `ser_keras.training.distribute.global_batch_mean`.

    def _reconstruction_loss(self, x, x_hat):
        # Eq. 3 writes the squared L2 norm; we average over the segment's
        # elements (mean squared error) so that the loss does not grow with
        # the segment size (deviation: a constant factor num_frames *
        # num_mels, absorbed by alpha and the learning rate).
        return global_batch_mean(ops.square(ops.cast(x, "float32") - ops.cast(x_hat, "float32")))

    def _prior_samples(self, shape):
        """Samples of the prior N(0, prior_stddev^2 I), a separate stream per replica."""
        _, context = replica_context()
        if context is None:
            return self.prior_stddev * keras.random.normal(
                shape, dtype="float32", seed=self.seed_generator
            )
        # keras.random would draw the same samples on every replica (they
        # share the generator's mirrored state): fold the replica id in.
        seed = replica_seed(self.seed_generator.next())
        return self.prior_stddev * tf.random.stateless_normal(shape, seed=seed, dtype="float32")

    def _discriminator_loss(self, code, training):
        code = ops.cast(code, "float32")
        prior = self._prior_samples(ops.shape(code))
        batch = ops.shape(code)[0]
        both = ops.concatenate([prior, code], axis=0)
        labels = ops.concatenate(
            [ops.ones((batch,), dtype="int32"), ops.zeros((batch,), dtype="int32")], axis=0
        )
        probabilities = ops.cast(self.discriminator(both, training=training), "float32")
        # Eq. 4: maximise E[log D(d)] + E[log(1 - D(E(x)))], i.e. minimise the
        # cross-entropy of "real" (1) for prior samples plus that of "fake" (0)
        # for codes: twice the mean over the 2 * batch samples.
        return 2.0 * global_batch_mean(ops.sparse_categorical_crossentropy(labels, probabilities))

    def _generator_loss(self, code, training):
        probabilities = ops.cast(self.discriminator(code, training=training), "float32")
        batch = ops.shape(code)[0]
        if self.generator_loss == "minimax":
            # Eq. 5, first term: minimise E[log(1 - D(E(x)))] = -CE(fake).
            fake = ops.zeros((batch,), dtype="int32")
            return -global_batch_mean(ops.sparse_categorical_crossentropy(fake, probabilities))
        real = ops.ones((batch,), dtype="int32")
        return global_batch_mean(ops.sparse_categorical_crossentropy(real, probabilities))

    def _classification_terms(self, code, labels, training):
        """L_c's replica share and, per task, (masked mean, global labelled count).

        Under `tf.distribute` each task's loss sum is divided by the number of
        labelled samples of the global batch, so the replicas' shares add up
        to the global masked mean (see `ser_keras.training.losses`).
        """
        num_replicas, context = replica_context()
        weights = self.task_weights(tuple(labels))
        probabilities = {}
        terms = {}
        share = ops.zeros((), dtype="float32")
        for task, task_labels in labels.items():
            probabilities[task] = self.classifiers[task](code, training=training)
            loss_sum, count = masked_sparse_categorical_crossentropy_sum(
                task_labels, ops.cast(probabilities[task], "float32")
            )
            if context is not None:
                count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
            task_share = ops.divide_no_nan(loss_sum, count)
            share = share + weights[task] * task_share
            terms[task] = (task_share * num_replicas, count)
        return share, terms, probabilities

    @staticmethod
    def _apply(optimizer, tape, share, variables):
        """Applies the gradient of a replica's loss share (summed across replicas)."""
        gradients = tape.gradient(optimizer.scale_loss(share), variables)
        pairs = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        if pairs:
            optimizer.apply_gradients(pairs)

    def _update_metrics(self, values, labels, probabilities):
        """Updates the trackers; `values` maps name -> (value, weight or None)."""
        for name, (value, weight) in values.items():
            if weight is None:
                self._trackers[name].update_state(value)
            else:
                self._trackers[name].update_state(value, sample_weight=weight)
        for task, task_labels in labels.items():
            self._trackers[f"{task}_accuracy"].update_state(task_labels, probabilities[task])
            if task == self.primary_task:
                self._trackers[f"{task}_ua"].update_state(task_labels, probabilities[task])
        return {
            name: tracker.result()
            for name, tracker in self._trackers.items()
            if self._tracker_active(name)
        }

    def _tracker_active(self, name):
        if name == "loss":
            return True
        if name == "reconstruction_loss":
            return "reconstruction" in self._active_phases
        if name in ("discriminator_loss", "generator_loss"):
            return "regularisation" in self._active_phases
        return "classification" in self._active_phases and any(
            name.startswith(f"{task}_") for task in self._active_tasks
        )

    def _unpack(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError("AAEMultiTaskModel does not support sample weights.")
        labels = self._labels(y, self._active_tasks)
        if "classification" not in self._active_phases:
            labels = {}
        return self._segments(x), labels

    def train_step(self, data):
        x, labels = self._unpack(data)
        num_replicas, _ = replica_context()
        phases = self._active_phases
        values = {}
        total = ops.zeros((), dtype="float32")

        # Phase 1 -- reconstruction: encoder + decoder minimise alpha * L_AE.
        if "reconstruction" in phases:
            variables = self._phase_variables()["reconstruction"]
            with tf.GradientTape() as tape:
                x_hat = self.decoder(self.encoder(x, training=True), training=True)
                reconstruction = self._reconstruction_loss(x, x_hat)
                share = self.alpha * reconstruction
            self._apply(self.reconstruction_optimizer, tape, share, variables)
            # Replica shares times the number of replicas: the trackers'
            # cross-replica mean is then the global value.
            values["reconstruction_loss"] = (reconstruction * num_replicas, None)
            total = total + share * num_replicas

        # Phase 2 -- regularisation: the discriminator, then the encoder as
        # generator with the discriminator fixed. The discriminator update
        # does not change the encoder, so one encoding serves both updates.
        if "regularisation" in phases:
            variables = self._phase_variables()
            with tf.GradientTape() as generator_tape:
                code = self.encoder(x, training=True)
                with generator_tape.stop_recording():
                    with tf.GradientTape() as discriminator_tape:
                        discriminator = self._discriminator_loss(
                            ops.stop_gradient(code), training=True
                        )
                    self._apply(
                        self.discriminator_optimizer,
                        discriminator_tape,
                        discriminator,
                        variables["discriminator"],
                    )
                generator = self._generator_loss(code, training=True)
            # Only the encoder's variables receive this gradient.
            self._apply(self.generator_optimizer, generator_tape, generator, variables["generator"])
            values["discriminator_loss"] = (discriminator * num_replicas, None)
            values["generator_loss"] = (generator * num_replicas, None)

        # Phase 3 -- classification: encoder + classifiers minimise L_c (Eq. 2).
        probabilities = {}
        if labels:
            variables = list(self.encoder.trainable_variables) + [
                v for task in labels for v in self.classifiers[task].trainable_variables
            ]
            with tf.GradientTape() as tape:
                code = self.encoder(x, training=True)
                share, terms, probabilities = self._classification_terms(
                    code, labels, training=True
                )
            self._apply(self.classification_optimizer, tape, share, variables)
            total = total + share * num_replicas
            for task, (value, count) in terms.items():
                values[f"{task}_loss"] = (value, count / num_replicas)
        values["loss"] = (total, None)
        return self._update_metrics(values, labels, probabilities)

    def test_step(self, data):
        x, labels = self._unpack(data)
        num_replicas, _ = replica_context()
        phases = self._active_phases
        values = {}
        total = ops.zeros((), dtype="float32")
        code = self.encoder(x, training=False)
        if "reconstruction" in phases:
            reconstruction = self._reconstruction_loss(x, self.decoder(code, training=False))
            values["reconstruction_loss"] = (reconstruction * num_replicas, None)
            total = total + self.alpha * reconstruction * num_replicas
        if "regularisation" in phases:
            discriminator = self._discriminator_loss(code, training=False)
            generator = self._generator_loss(code, training=False)
            values["discriminator_loss"] = (discriminator * num_replicas, None)
            values["generator_loss"] = (generator * num_replicas, None)
        probabilities = {}
        if labels:
            share, terms, probabilities = self._classification_terms(code, labels, training=False)
            total = total + share * num_replicas
            for task, (value, count) in terms.items():
                values[f"{task}_loss"] = (value, count / num_replicas)
        values["loss"] = (total, None)
        return self._update_metrics(values, labels, probabilities)

    # ------------------------------------------------------------- procedures

    @property
    def training_stage(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(phases, tasks) that `fit` and `evaluate` currently run."""
        return self._active_phases, self._active_tasks

    def set_training_stage(self, phases=None, tasks=None):
        """Restricts the phases and tasks of the following `fit`/`evaluate` calls.

        Args:
            phases: subset of `self.phases` (None: all of them), run in the
                paper's order whatever the order given.
            tasks: subset of `self.tasks` (None: all of them) whose
                classification losses are trained and reported.
        """
        phases = self.phases if phases is None else tuple(phases)
        tasks = self.tasks if tasks is None else tuple(tasks)
        unknown_phases = [phase for phase in phases if phase not in self.phases]
        unknown_tasks = [task for task in tasks if task not in self.tasks]
        if not phases or unknown_phases or unknown_tasks:
            raise ValueError(
                f"Training stage must use phases among {list(self.phases)} and tasks among "
                f"{list(self.tasks)}; got phases={list(phases)}, tasks={list(tasks)}."
            )
        self._active_phases = tuple(phase for phase in self.phases if phase in phases)
        self._active_tasks = tuple(task for task in self.tasks if task in tasks)
        # Retrace the compiled steps: phases and tasks are Python-level choices.
        self.train_function = None
        self.test_function = None

    def pretrain_auxiliary(self, x=None, y=None, *, tasks=None, **fit_kwargs):
        """Pre-trains the auxiliary heads on additional speech, then restores full training.

        Section 4.3: the model is randomly initialised and trained first on
        LibriSpeech for speaker and gender classification only; those weights
        initialise the model that is then trained on emotional data. This
        runs `fit` with only the classification phase and the auxiliary tasks
        (emotion labels, if present, are ignored); the weights stay in this
        model, so a following `fit` continues from them. Give the speaker
        classifier one class per speaker of both the additional and the
        emotional data (one label space) when both are used.

        Args:
            x: segments, or a dataset yielding (segments, labels dict).
            y: labels dict (with x as arrays).
            tasks: tasks to pre-train; default every task but the primary.
            **fit_kwargs: `fit` arguments (epochs, batch_size, callbacks,
                validation_data, ...).

        Returns:
            The `History` of the pre-training `fit`.
        """
        if tasks is None:
            tasks = tuple(task for task in self.tasks if task != self.primary_task)
        if not tasks:
            raise ValueError(
                f"pretrain_auxiliary needs auxiliary tasks; the model has only {list(self.tasks)}."
            )
        previous = self.training_stage
        self.set_training_stage(("classification",), tasks)
        try:
            return self.fit(x, y, **fit_kwargs)
        finally:
            self.set_training_stage(*previous)

    def predict_utterances(self, segments, utterance_ids, batch_size=PAPER_BATCH_SIZE):
        """Utterance-level posteriors: the mean of each utterance's segment posteriors.

        Section 4.2: the model is trained on segments; at test time the
        posterior probabilities of an utterance's segments are averaged.

        Args:
            segments: `[num_segments, num_frames, num_mels]` features.
            utterance_ids: `[num_segments]` utterance index (or id) of each
                segment.
            batch_size: prediction batch size.

        Returns:
            (ids, posteriors): the sorted unique utterance ids and a dict
            task -> `[num_utterances, num_classes]` mean probabilities.
        """
        from ser_keras.features.framing import average_by_utterance

        outputs = self.predict(segments, batch_size=batch_size, verbose=0)
        ids = None
        posteriors = {}
        for task, probabilities in outputs.items():
            ids, posteriors[task] = average_by_utterance(probabilities, utterance_ids)
        return ids, posteriors

    # ---------------------------------------------------------- serialisation

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": serialize(self.encoder),
            "classifiers": {task: serialize(head) for task, head in self.classifiers.items()},
            "decoder": None if self.decoder is None else serialize(self.decoder),
            "discriminator": (
                None if self.discriminator is None else serialize(self.discriminator)
            ),
            "alpha": self.alpha,
            "beta": self.beta,
            "primary_task": self.primary_task,
            "prior_stddev": self.prior_stddev,
            "generator_loss": self.generator_loss,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        for key in ("encoder", "decoder", "discriminator"):
            if config.get(key) is not None:
                config[key] = deserialize(config[key], custom_objects=custom_objects)
        config["classifiers"] = {
            task: deserialize(head, custom_objects=custom_objects)
            for task, head in config["classifiers"].items()
        }
        return cls(**config)
