"""Attention-based CNN-BLSTM with an optional speaker head (Fu et al.).

Log-mel spectrogram `[batch, 256 frames, 128 mels]` -> three 1-D convolutions
over time (512, 1024, 2048 filters; kernels 3, 1, 3; "valid", so 256 -> 252
frames as Table 1's `fm`) -> Dense bottleneck (512) -> two bidirectional LSTMs
(128 units each way, full sequences) -> 16-head self-attention over time ->
local-attention pooling -> one softmax head for emotion and, in the
multi-task setting, one for the speaker; trained with
`L = gamma * L_emotion + theta * L_speaker` (eq. 5) by `MultiTaskModel`.

Choices the paper leaves open (named arguments; ours are the defaults):
- activation of the convolutions and the bottleneck: ReLU (`activation`);
- where the dropout (rate 0.35) sits: after the bottleneck and after the
  pooling, before the heads;
- the head size of the self-attention: 256 / 16 = 16, with query, key and
  value projections and the output projection `W` of eq. 2;
- padded frames (value -1 after normalisation) are not masked: the paper pads
  and lets the attention learn to ignore them.

The paper trained with Keras' "rmsprop" (its default learning rate 0.001),
batch 64, 300 epochs, keeping the best model (the "paper" preset of
`ser_keras.experiments.fu_savee_crosslang`, which trains it);
`model.compile()` without arguments uses RMSprop with that default.

Reference:
    C. Fu, C. Liu, C. T. Ishi, H. Ishiguro, "An end-to-end multitask learning
    model to improve speech emotion recognition", EUSIPCO 2020 (Section 3.3,
    Table 1, Section 4.1).
"""

from __future__ import annotations

import keras

from ser_keras.layers.attention import LocalAttentionPooling, MultiHeadSelfAttention
from ser_keras.training.multitask import MultiTaskModel
from ser_keras.utils.keras_loading import outside_object_sharing
from ser_keras.utils.presets import preset_config
from ser_keras.utils.validation import positive_int, positive_ints

PRESETS = {
    # Section 3.3, Table 1 and Section 4.1 of the paper. The number of
    # speakers depends on the training data (e.g. 3 in a SAVEE
    # leave-one-speaker-out fold): pass num_speakers > 0 for the multi-task
    # model; 0 is the single-task model.
    "fu2021": {
        "num_frames": 256,
        "num_mels": 128,
        "conv_filters": (512, 1024, 2048),
        "conv_kernel_sizes": (3, 1, 3),
        "bottleneck_units": 512,
        "lstm_units": 128,
        "num_lstm_layers": 2,
        "num_attention_heads": 16,
        "dropout_rate": 0.35,
        "activation": "relu",
        "num_emotions": 7,
        "num_speakers": 0,
        "emotion_loss_weight": 1.0,
        "speaker_loss_weight": 1.0,
    },
    # The same graph scaled down for a CPU (NOT the paper's sizes): the
    # layer widths divided by 8 (convolutions, bottleneck), the LSTM by 4 and
    # 4 attention heads; same input, kernels, dropout and loss weights.
    "fu2021_cpu": {
        "num_frames": 256,
        "num_mels": 128,
        "conv_filters": (64, 128, 256),
        "conv_kernel_sizes": (3, 1, 3),
        "bottleneck_units": 64,
        "lstm_units": 32,
        "num_lstm_layers": 2,
        "num_attention_heads": 4,
        "dropout_rate": 0.35,
        "activation": "relu",
        "num_emotions": 7,
        "num_speakers": 0,
        "emotion_loss_weight": 1.0,
        "speaker_loss_weight": 1.0,
    },
}

@keras.saving.register_keras_serializable(package="ser_keras")
class AttentionCNNBLSTM(MultiTaskModel):
    """Attention CNN-BLSTM for speech emotion recognition, optionally multi-task.

    A Functional graph built in the constructor (keras-hub `Backbone` style);
    outputs a dict `{"emotion": [batch, num_emotions]}` plus
    `"speaker": [batch, num_speakers]` when `num_speakers > 0`, all softmax
    probabilities. Trained by `MultiTaskModel` (masked per-task losses,
    `val_emotion_ua`); `compile()` needs only an optimizer (default RMSprop).

    Example:
    ```python
    model = AttentionCNNBLSTM.from_preset("fu2021", num_speakers=3)
    model.compile()  # RMSprop, as in the paper
    model.fit(features, {"emotion": emotions, "speaker": speakers}, batch_size=64)
    ```

    Args:
        num_frames: Frames per input spectrogram (`L` = 256); None accepts any
            length longer than the convolutions' receptive field.
        num_mels: Mel bands per frame (`d_spec` = 128).
        conv_filters: Filters of the 1-D convolutions over time (512, 1024, 2048).
        conv_kernel_sizes: Their kernel sizes (3, 1, 3); "valid" padding.
        bottleneck_units: Width of the Dense bottleneck (`bn` = 512).
        lstm_units: Units of each LSTM direction (`d_lstm` = 128).
        num_lstm_layers: Number of stacked bidirectional LSTMs (2).
        num_attention_heads: Heads of the self-attention (`N_head` = 16);
            `2 * lstm_units` must be divisible by it.
        dropout_rate: Dropout rate (0.35) after the bottleneck and before the heads.
        activation: Activation of the convolutions and the bottleneck (not
            given in the paper; ReLU).
        num_emotions: Emotion classes (7 for SAVEE).
        num_speakers: Speaker classes of the auxiliary head; 0 = no speaker
            head (single-task).
        emotion_loss_weight: `gamma` of eq. 5 (1).
        speaker_loss_weight: `theta` of eq. 5 (1); 0 keeps the speaker head
            but does not train it.
        **kwargs: `name`, `trainable`.

    Reference:
        C. Fu, C. Liu, C. T. Ishi, H. Ishiguro, "An end-to-end multitask
        learning model to improve speech emotion recognition", EUSIPCO 2020.
    """

    def __init__(
        self,
        num_frames=256,
        num_mels=128,
        conv_filters=(512, 1024, 2048),
        conv_kernel_sizes=(3, 1, 3),
        bottleneck_units=512,
        lstm_units=128,
        num_lstm_layers=2,
        num_attention_heads=16,
        dropout_rate=0.35,
        activation="relu",
        num_emotions=7,
        num_speakers=0,
        emotion_loss_weight=1.0,
        speaker_loss_weight=1.0,
        **kwargs,
    ):
        num_frames = positive_int("num_frames", num_frames, allow_none=True)
        num_mels = positive_int("num_mels", num_mels)
        conv_filters = positive_ints("conv_filters", conv_filters)
        conv_kernel_sizes = positive_ints("conv_kernel_sizes", conv_kernel_sizes)
        if len(conv_filters) != len(conv_kernel_sizes):
            raise ValueError(
                "`conv_filters` and `conv_kernel_sizes` must have the same length; received "
                f"{conv_filters!r} and {conv_kernel_sizes!r}."
            )
        shrink = sum(k - 1 for k in conv_kernel_sizes)
        if num_frames is not None and num_frames - shrink < 1:
            raise ValueError(
                f"num_frames={num_frames} is too short for conv_kernel_sizes="
                f"{conv_kernel_sizes!r} ('valid' convolutions remove {shrink} frames)."
            )
        bottleneck_units = positive_int("bottleneck_units", bottleneck_units)
        lstm_units = positive_int("lstm_units", lstm_units)
        num_lstm_layers = positive_int("num_lstm_layers", num_lstm_layers)
        num_attention_heads = positive_int("num_attention_heads", num_attention_heads)
        if (2 * lstm_units) % num_attention_heads:
            raise ValueError(
                f"2 * lstm_units = {2 * lstm_units} must be divisible by num_attention_heads="
                f"{num_attention_heads}."
            )
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` must be in [0, 1); received {dropout_rate!r}.")
        num_emotions = positive_int("num_emotions", num_emotions)
        if isinstance(num_speakers, bool) or not isinstance(num_speakers, int) or num_speakers < 0:
            raise ValueError(f"`num_speakers` must be an integer >= 0; received {num_speakers!r}.")

        # === Functional graph ===
        features = keras.Input(shape=(num_frames, num_mels), name="features")
        x = features
        layers_spec = zip(conv_filters, conv_kernel_sizes, strict=True)
        for index, (filters, kernel_size) in enumerate(layers_spec):
            x = keras.layers.Conv1D(
                filters,
                kernel_size,
                padding="valid",
                activation=activation,
                name=f"conv_{index + 1}",
            )(x)
        x = keras.layers.Dense(bottleneck_units, activation=activation, name="bottleneck")(x)
        x = keras.layers.Dropout(dropout_rate, name="bottleneck_dropout")(x)
        for index in range(num_lstm_layers):
            x = keras.layers.Bidirectional(
                keras.layers.LSTM(lstm_units, return_sequences=True),
                name=f"blstm_{index + 1}",
            )(x)
        x = MultiHeadSelfAttention(num_attention_heads, name="self_attention")(x)
        x = LocalAttentionPooling(name="local_attention")(x)
        x = keras.layers.Dropout(dropout_rate, name="dropout")(x)
        outputs = {
            "emotion": keras.layers.Dense(num_emotions, activation="softmax", name="emotion")(x)
        }
        task_weights = {"emotion": float(emotion_loss_weight)}
        if num_speakers > 0:
            outputs["speaker"] = keras.layers.Dense(
                num_speakers, activation="softmax", name="speaker"
            )(x)
            task_weights["speaker"] = float(speaker_loss_weight)

        super().__init__(inputs=features, outputs=outputs, task_weights=task_weights, **kwargs)

        # === Config ===
        self.num_frames = num_frames
        self.num_mels = num_mels
        self.conv_filters = conv_filters
        self.conv_kernel_sizes = conv_kernel_sizes
        self.bottleneck_units = bottleneck_units
        self.lstm_units = lstm_units
        self.num_lstm_layers = num_lstm_layers
        self.num_attention_heads = num_attention_heads
        self.dropout_rate = float(dropout_rate)
        self.activation = activation
        self.num_emotions = num_emotions
        self.num_speakers = num_speakers
        self.emotion_loss_weight = float(emotion_loss_weight)
        self.speaker_loss_weight = float(speaker_loss_weight)

    def get_config(self):
        # Not chained to MultiTaskModel.get_config(): the constructor takes
        # these arguments, not a serialised graph (keras-hub Backbone style).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_frames": self.num_frames,
            "num_mels": self.num_mels,
            "conv_filters": list(self.conv_filters),
            "conv_kernel_sizes": list(self.conv_kernel_sizes),
            "bottleneck_units": self.bottleneck_units,
            "lstm_units": self.lstm_units,
            "num_lstm_layers": self.num_lstm_layers,
            "num_attention_heads": self.num_attention_heads,
            "dropout_rate": self.dropout_rate,
            "activation": keras.activations.serialize(keras.activations.get(self.activation)),
            "num_emotions": self.num_emotions,
            "num_speakers": self.num_speakers,
            "emotion_loss_weight": self.emotion_loss_weight,
            "speaker_loss_weight": self.speaker_loss_weight,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The graph holds Bidirectional layers: see ser_keras.utils.keras_loading.
        with outside_object_sharing():
            return cls(**config)

    @classmethod
    def from_preset(cls, preset, **overrides):
        """Builds the model from a preset of `PRESETS`, with arguments overridden.

        Args:
            preset: `"fu2021"` (the paper's sizes) or `"fu2021_cpu"` (scaled
                down for a CPU; not the paper's).
            **overrides: Constructor arguments replacing the preset's, e.g.
                `num_speakers=3` or `num_emotions=6`.
        """
        config = preset_config(
            PRESETS, preset, overrides, owner="AttentionCNNBLSTM", extra=("name", "trainable")
        )
        return cls(**config)
