"""ResNet-LSTM multi-task model for cross-language SER with unlabelled data.

A shared trunk (a ResNet of 8 residual blocks over the log-mel spectrogram,
then an LSTM of 128 units) feeds one classifier per task: emotion (the primary
task; binary valence in the paper), language identification and domain
classification (labelled vs unlabelled data). Each classifier is a dense layer
of 256 units before the softmax. Training minimises

    L = L_e + alpha * (L_l + L_d),   alpha = 0.3,

where every sample updates the trunk and the language and domain heads, and
only samples with an emotion label (label -1 elsewhere) update the emotion
head: `MultiTaskModel`'s masked per-task losses with task weights
`{"emotion": 1, "language": alpha, "domain": alpha}`. A batch without any
emotion label contributes 0 to L_e (not NaN).

What the paper gives: 8 residual blocks with identity shortcuts and two
3 x 3 convolutions each, batch normalisation before ReLU, an LSTM of 128
units, a dense layer of 256 units per classifier, alpha = 0.3, 6 s of
128-band log-mel input (25 ms Hamming window, 10 ms shift, 0-8 kHz). What it
does not give (our choices, named arguments marked "not in the paper"): the
number of filters, how the ResNet reduces the spectrogram (here: max-pooling
after each stage of blocks), how the width changes between stages while the
shortcuts stay identities (here: a 1 x 1 convolution, batch normalisation and
ReLU before a wider stage), the first convolution that lifts the single-channel
spectrogram to the first stage's width, how the ResNet output enters the LSTM
(here: frequency and channels are flattened per time step), the LSTM output
used (here: its last output), the dense activation (ReLU) and dropout (none
in the paper preset).

Reference:
    S. Latif et al., multi-task learning with language and domain
    identification on unlabelled speech for cross-language speech emotion
    recognition (paper 000 of this project), Sections 3 and 4.3.
"""

from __future__ import annotations

import keras

from ser_keras.layers.residual import ResidualBlock
from ser_keras.training.multitask import MultiTaskModel
from ser_keras.utils.presets import preset_config

# Output names, primary task first.
TASKS = ("emotion", "language", "domain")

# Domain head classes: index 0 = labelled (emotional) data, 1 = unlabelled.
DOMAIN_CLASSES = ("labelled", "unlabelled")

# The presets take 6 s of the `latif_6s` front-end (600 frames of 10 ms): the
# paper crops or pads every utterance to 6 s. Apps pass the front-end's frame
# count (`num_frames=features.shape[1]`); `num_frames=None` accepts any length.
RESNET_LSTM_PRESETS = {
    # Paper 000, Section 4.3: 8 residual blocks (3 x 3), BN before ReLU, LSTM
    # 128, dense 256 per classifier, alpha 0.3. Filters, pooling, the stem and
    # the stage layout are not in the paper (our choice: four stages of two
    # blocks, widths 16-128, 2 x 2 max-pooling after each stage, so 6 s
    # (about 600 frames) x 128 mels reach the LSTM as about 37 steps).
    "latif_crosslang": {
        "num_frames": 600,
        "num_mels": 128,
        "stem_filters": 16,
        "stem_pool_size": None,
        "stackwise_num_filters": (16, 32, 64, 128),
        "stackwise_num_blocks": (2, 2, 2, 2),
        "stackwise_pool_sizes": ((2, 2), (2, 2), (2, 2), (2, 2)),
        "kernel_size": 3,
        "lstm_units": 128,
        "dense_units": 256,
        "dropout_rate": 0.0,
        "alpha": 0.3,
    },
    # The same graph reduced for a 2-core CPU (NOT the paper's size): a 2 x 4
    # max-pool after the stem, narrower stages, LSTM 32, dense 64, and
    # dropout 0.3 against over-fitting small corpora. Still 8 residual blocks.
    "latif_crosslang_cpu": {
        "num_frames": 600,
        "num_mels": 128,
        "stem_filters": 8,
        "stem_pool_size": (2, 4),
        "stackwise_num_filters": (8, 16, 16, 32),
        "stackwise_num_blocks": (2, 2, 2, 2),
        "stackwise_pool_sizes": ((2, 2), (2, 2), (2, 2), (2, 1)),
        "kernel_size": 3,
        "lstm_units": 32,
        "dense_units": 64,
        "dropout_rate": 0.3,
        "alpha": 0.3,
    },
}


def _pair(value, name):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(
        isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in pair
    ):
        raise ValueError(f"`{name}` must be a positive int or a pair of them. Received: {value!r}")
    return pair


def _count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. Received: {name}={value!r}")
    return value


@keras.saving.register_keras_serializable(package="ser_keras")
class ResNetLSTM(MultiTaskModel):
    """ResNet + LSTM trunk with emotion, language and domain classifiers.

    Input: log-mel spectrograms `[batch, num_frames, num_mels]` (the `latif`
    front-end, 6 s). Outputs: a dict of softmax probabilities, `"emotion"`
    `[batch, num_emotions]`, and where enabled `"language"`
    `[batch, num_languages]` and `"domain"` `[batch, 2]` (`DOMAIN_CLASSES`).
    Labels are a dict of the same keys holding int class ids, -1 where a
    sample has no label for that task (e.g. unlabelled speech has no emotion).

    Setting `num_languages=0` drops the language head and
    `use_domain_head=False` the domain head (the ablations of Figure 2); with
    both off the model is the paper's single-task baseline.

    Args:
        num_frames: Frames per input (6 s of the `latif` front-end); `None`
            accepts any length.
        num_mels: Mel bands per frame (paper: 128).
        num_emotions: Classes of the emotion head (paper: 2, binary valence;
            any label set works).
        num_languages: Classes of the language head; 0 = no language head.
        use_domain_head: Whether to add the domain (labelled vs unlabelled)
            head.
        stem_filters: Filters of the 3 x 3 convolution (+ BN + ReLU) lifting
            the spectrogram to feature maps (not in the paper).
        stem_pool_size: Optional max-pooling `(frames, mels)` after the stem
            (not in the paper; `None` = none).
        stackwise_num_filters: Width of each stage of residual blocks (not in
            the paper). A stage wider than its input starts with a 1 x 1
            convolution + BN + ReLU, so that every shortcut is an identity.
        stackwise_num_blocks: Residual blocks per stage (paper: 8 in all).
        stackwise_pool_sizes: Max-pooling `(frames, mels)` after each stage,
            or `None` for none (not in the paper).
        kernel_size: Kernel of the residual convolutions (paper: 3).
        lstm_units: Units of the LSTM (paper: 128).
        dense_units: Units of the dense layer of each classifier (paper: 256).
        dropout_rate: Dropout before each classifier's dense and softmax
            layers (not in the paper: 0.0).
        alpha: Weight of the auxiliary losses, `L = L_e + alpha (L_l + L_d)`
            (paper: 0.3).
        **kwargs: `MultiTaskModel` / `keras.Model` arguments (`name`...).

    Example:
    ```python
    model = ResNetLSTM.from_preset(
        "latif_crosslang", num_frames=600, num_emotions=2, num_languages=5,
        use_domain_head=True)
    model.compile(optimizer="adam")
    model.fit(features, {"emotion": valence, "language": language,
                         "domain": domain})  # valence -1 on unlabelled speech
    ```

    Reference:
        Latif et al. (paper 000), Sections 3.1, 3.2 (Equation 2) and 4.3.
    """

    def __init__(
        self,
        num_frames=None,
        num_mels=128,
        num_emotions=2,
        num_languages=0,
        use_domain_head=False,
        stem_filters=16,
        stem_pool_size=None,
        stackwise_num_filters=(16, 32, 64, 128),
        stackwise_num_blocks=(2, 2, 2, 2),
        stackwise_pool_sizes=((2, 2), (2, 2), (2, 2), (2, 2)),
        kernel_size=3,
        lstm_units=128,
        dense_units=256,
        dropout_rate=0.0,
        alpha=0.3,
        **kwargs,
    ):
        if num_frames is not None:
            _count(num_frames, "num_frames", 1)
        _count(num_mels, "num_mels", 1)
        _count(num_emotions, "num_emotions", 2)
        _count(num_languages, "num_languages", 0)
        if num_languages == 1:
            raise ValueError(
                "A language head needs at least 2 languages (0 = no language head). "
                f"Received: num_languages={num_languages}"
            )
        _count(stem_filters, "stem_filters", 1)
        stem_pool = None if stem_pool_size is None else _pair(stem_pool_size, "stem_pool_size")
        stackwise_num_filters = tuple(stackwise_num_filters)
        stackwise_num_blocks = tuple(stackwise_num_blocks)
        stackwise_pool_sizes = tuple(stackwise_pool_sizes)
        num_stages = len(stackwise_num_filters)
        if not num_stages == len(stackwise_num_blocks) == len(stackwise_pool_sizes):
            raise ValueError(
                "`stackwise_num_filters`, `stackwise_num_blocks` and `stackwise_pool_sizes` "
                "need one entry per stage. Received lengths "
                f"{len(stackwise_num_filters)}, {len(stackwise_num_blocks)}, "
                f"{len(stackwise_pool_sizes)}"
            )
        if not stackwise_num_filters:
            raise ValueError("The ResNet needs at least one stage. Received no stages.")
        for filters in stackwise_num_filters:
            _count(filters, "stackwise_num_filters entries", 1)
        for blocks in stackwise_num_blocks:
            _count(blocks, "stackwise_num_blocks entries", 1)
        pools = tuple(
            None if pool is None else _pair(pool, "stackwise_pool_sizes entries")
            for pool in stackwise_pool_sizes
        )
        kernel = _pair(kernel_size, "kernel_size")
        _count(lstm_units, "lstm_units", 1)
        _count(dense_units, "dense_units", 1)
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` must be in [0, 1). Received: {dropout_rate!r}")
        if float(alpha) < 0.0:
            raise ValueError(f"`alpha` must be non-negative. Received: alpha={alpha!r}")

        # The mel axis after all pooling must not vanish.
        mels_left = num_mels
        frames_left = num_frames
        for pool in ((stem_pool,) if stem_pool else ()) + tuple(p for p in pools if p):
            mels_left //= pool[1]
            if frames_left is not None:
                frames_left //= pool[0]
        if mels_left < 1 or (frames_left is not None and frames_left < 1):
            raise ValueError(
                "The pooling reduces the input to nothing: "
                f"num_frames={num_frames}, num_mels={num_mels} with stem_pool_size="
                f"{stem_pool_size}, stackwise_pool_sizes={stackwise_pool_sizes}"
            )

        # === Functional graph ===
        inputs = keras.Input(shape=(num_frames, num_mels), name="features")
        x = keras.layers.Reshape((-1, num_mels, 1), name="add_channel")(inputs)
        x = keras.layers.Conv2D(
            stem_filters, kernel, padding="same", use_bias=False,
            kernel_initializer="he_normal", name="stem_conv",
        )(x)
        x = keras.layers.BatchNormalization(name="stem_bn")(x)
        x = keras.layers.ReLU(name="stem_relu")(x)
        if stem_pool:
            x = keras.layers.MaxPooling2D(stem_pool, name="stem_pool")(x)
        channels = stem_filters
        for stage, (filters, blocks, pool) in enumerate(
            zip(stackwise_num_filters, stackwise_num_blocks, pools, strict=True), start=1
        ):
            if filters != channels:
                # Not in the paper: widen with a 1 x 1 projection outside the
                # blocks so that every shortcut stays an identity.
                x = keras.layers.Conv2D(
                    filters, 1, use_bias=False, kernel_initializer="he_normal",
                    name=f"stage{stage}_transition_conv",
                )(x)
                x = keras.layers.BatchNormalization(name=f"stage{stage}_transition_bn")(x)
                x = keras.layers.ReLU(name=f"stage{stage}_transition_relu")(x)
                channels = filters
            for block in range(1, blocks + 1):
                x = ResidualBlock(filters, kernel, name=f"stage{stage}_block{block}")(x)
            if pool:
                x = keras.layers.MaxPooling2D(pool, name=f"stage{stage}_pool")(x)
        # [batch, time, mels, channels] -> [batch, time, mels * channels]
        x = keras.layers.Reshape((-1, mels_left * channels), name="to_sequence")(x)
        shared = keras.layers.LSTM(lstm_units, name="lstm")(x)

        def head(task, num_classes):
            y = shared
            if dropout_rate:
                y = keras.layers.Dropout(dropout_rate, name=f"{task}_dropout_1")(y)
            y = keras.layers.Dense(dense_units, activation="relu", name=f"{task}_dense")(y)
            if dropout_rate:
                y = keras.layers.Dropout(dropout_rate, name=f"{task}_dropout_2")(y)
            return keras.layers.Dense(num_classes, activation="softmax", name=task)(y)

        outputs = {"emotion": head("emotion", num_emotions)}
        task_weights = {"emotion": 1.0}
        if num_languages:
            outputs["language"] = head("language", num_languages)
            task_weights["language"] = float(alpha)
        if use_domain_head:
            outputs["domain"] = head("domain", len(DOMAIN_CLASSES))
            task_weights["domain"] = float(alpha)

        kwargs.setdefault("name", "resnet_lstm")
        super().__init__(inputs=inputs, outputs=outputs, task_weights=task_weights, **kwargs)

        # === Config ===
        self.num_frames = num_frames
        self.num_mels = num_mels
        self.num_emotions = num_emotions
        self.num_languages = num_languages
        self.use_domain_head = bool(use_domain_head)
        self.stem_filters = stem_filters
        self.stem_pool_size = stem_pool
        self.stackwise_num_filters = stackwise_num_filters
        self.stackwise_num_blocks = stackwise_num_blocks
        self.stackwise_pool_sizes = pools
        self.kernel_size = kernel
        self.lstm_units = lstm_units
        self.dense_units = dense_units
        self.dropout_rate = float(dropout_rate)
        self.alpha = float(alpha)

    @property
    def num_residual_blocks(self) -> int:
        """Residual blocks in the trunk (the paper: 8)."""
        return int(sum(self.stackwise_num_blocks))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_frames": self.num_frames,
            "num_mels": self.num_mels,
            "num_emotions": self.num_emotions,
            "num_languages": self.num_languages,
            "use_domain_head": self.use_domain_head,
            "stem_filters": self.stem_filters,
            "stem_pool_size": self.stem_pool_size,
            "stackwise_num_filters": self.stackwise_num_filters,
            "stackwise_num_blocks": self.stackwise_num_blocks,
            "stackwise_pool_sizes": self.stackwise_pool_sizes,
            "kernel_size": self.kernel_size,
            "lstm_units": self.lstm_units,
            "dense_units": self.dense_units,
            "dropout_rate": self.dropout_rate,
            "alpha": self.alpha,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("stem_pool_size", "kernel_size"):
            if isinstance(config.get(key), list):
                config[key] = tuple(config[key])
        for key in ("stackwise_num_filters", "stackwise_num_blocks"):
            config[key] = tuple(config[key])
        config["stackwise_pool_sizes"] = tuple(
            None if pool is None else tuple(pool) for pool in config["stackwise_pool_sizes"]
        )
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """Builds the model from a `RESNET_LSTM_PRESETS` entry.

        Args:
            preset: `"latif_crosslang"` (the paper's sizes where it gives them) or
                `"latif_crosslang_cpu"` (reduced for a CPU; not the paper's).
            **kwargs: Constructor arguments replacing the preset's (and the
                data-dependent ones: `num_frames`, `num_emotions`,
                `num_languages`, `use_domain_head`).
        """
        return cls(**preset_config(RESNET_LSTM_PRESETS, preset, kwargs))
