"""DNN-MTL and LSTM-MTL of Kim et al. (2017): frame-level multi-task networks.

A shared network maps every frame of the 32 frame features
(`ser_keras.features.frame_features.FrameFeatures`) to softmax posteriors of
the main task, emotion (4 classes), and of the auxiliary tasks, gender and
naturalness (2 classes each), trained with

    L = L_emotion + sum_i lambda_i * L_aux_i,   lambda_i = 0.1   (eq. 1)

where each `L` is the cross-entropy averaged over labelled frames (every
frame carries its utterance's labels; padded frames none).

- `network="dnn"` (DNN-MTL, after Han et al. 2014): 3 hidden layers of 256
  units applied to every frame with a 250 ms context window (25 frames, 12
  each side). The first hidden layer is a `Conv1D` with kernel 25 over time,
  which is exactly a dense layer on the stacked context window (zero frames
  beyond the utterance's ends); the others are dense layers per frame.
- `network="lstm"` (LSTM-MTL, after Lee & Tashev 2015): 2 unidirectional LSTM
  layers of 256 cells over the frame sequence, masked at padding.

Dropout 0.5 follows every hidden layer. With no auxiliary task (`auxiliary_
tasks=()`) the models are the single-task baselines DNN-STL and LSTM-STL.

Utterance level (Section 4.2): the frame posteriors of the emotion head are
summarised by 4 functionals per class (`utterance_functionals`: max, min,
mean, and the share of frames whose posterior exceeds a threshold, after Han
et al.), 16 values per utterance, classified by an Extreme Learning Machine
(`ser_keras.models.elm`). The auxiliary heads are discarded after training.

How the frame-level training fits `MultiTaskModel` (masked per-task losses,
`task_weights`): the model's outputs are the frame posteriors flattened to
`[batch * frames, classes]`, and `train_step`/`test_step` expand the
utterance labels `[batch]` to every frame (-1 on padded frames). Padded
frames are recognised by all features being `pad_value` (0.0), which no real
frame has (see `FrameFeatures`). `frame_model()` gives the posteriors as
`[batch, frames, classes]`, `utterance_model()` the mean posterior over each
utterance's frames `[batch, classes]` (the model exported for serving). The
frame layers (validity, standardisation, masking, flattening, masked mean)
are in `ser_keras.layers.frames`.

Choices the paper leaves open (named arguments; ours are the defaults):
- feature standardisation: a layer inside the model (per-feature mean and
  variance of the training frames, set by `adapt_feature_normalization`), so
  serving needs no external statistics;
- the DNN's activation: ReLU (`activation`);
- the paper does not say whether auxiliary heads see the whole network: all
  heads sit on the last shared layer (Figure 1);
- the LSTM sees the frames in time order only (the paper found no difference
  between LSTM and BLSTM).

Reference:
    J. Kim, G. Englebienne, K. P. Truong, V. Evers, "Towards speech emotion
    recognition 'in the wild' using aggregated corpora and deep multi-task
    learning", Interspeech 2017 (Sections 4.2, 5.1; Figure 1). K. Han, D. Yu,
    I. Tashev, "Speech emotion recognition using deep neural network and
    extreme learning machine", Interspeech 2014. J. Lee, I. Tashev, "High-level
    feature representation using recurrent neural network for speech emotion
    recognition", Interspeech 2015.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf  # one traced prediction function for any batch shape
from keras import ops

from ser_keras.layers.frames import (
    FeatureStandardization,
    FlattenFrames,
    FrameValidity,
    MaskedFrameMean,
    MaskFrames,
)
from ser_keras.training.multitask import MultiTaskModel
from ser_keras.utils.presets import preset_config
from ser_keras.utils.validation import positive_int

NETWORKS = ("dnn", "lstm")
AUXILIARY_TASKS = ("gender", "naturalness")
# Class names of the auxiliary heads, in class-index order.
AUXILIARY_CLASSES = {"gender": ("female", "male"), "naturalness": ("acted", "natural")}

PRESETS = {
    # Section 4.2: DNN-MTL, 3 hidden layers x 256 nodes, 250 ms context window;
    # dropout 0.5 (Section 5.1); lambda = 0.1 for every auxiliary task (eq. 1).
    "kim2017_dnn": {
        "network": "dnn",
        "num_features": 32,
        "num_layers": 3,
        "units": 256,
        "context_frames": 25,
        "dropout_rate": 0.5,
        "activation": "relu",
        "num_emotions": 4,
        "auxiliary_tasks": ("gender", "naturalness"),
        "auxiliary_loss_weight": 0.1,
        "pad_value": 0.0,
    },
    # Section 4.2: LSTM-MTL, 2 layers x 256 cells.
    "kim2017_lstm": {
        "network": "lstm",
        "num_features": 32,
        "num_layers": 2,
        "units": 256,
        "context_frames": 25,
        "dropout_rate": 0.5,
        "activation": "relu",
        "num_emotions": 4,
        "auxiliary_tasks": ("gender", "naturalness"),
        "auxiliary_loss_weight": 0.1,
        "pad_value": 0.0,
    },
}

# Section 5.1: Adam with a fixed learning rate. The rest of the paper's training
# (its batch size, the share of training data kept for validation, early
# stopping) is the experiment's: ser_keras.experiments.gender_naturalness.PRESETS.
LEARNING_RATE = 3e-3

# Traced frame-posterior functions per model and task (weak keys: no cycle, no tracking).
_FRAME_FUNCTIONS = weakref.WeakKeyDictionary()

# Han et al.'s threshold of the fourth functional (share of frames whose
# posterior exceeds it); Kim et al. do not restate it.
DEFAULT_FUNCTIONAL_THRESHOLD = 0.2
FUNCTIONAL_NAMES = ("max", "min", "mean", "share_above_threshold")


# ----------------------------------------------------------------- model
def _auxiliary_tasks(value):
    if isinstance(value, str):
        value = (value,)
    try:
        tasks = tuple(value)
    except TypeError as error:
        raise ValueError(
            f"`auxiliary_tasks` must be a sequence of {AUXILIARY_TASKS}; received {value!r}."
        ) from error
    unknown = [task for task in tasks if task not in AUXILIARY_TASKS]
    if unknown or len(set(tasks)) != len(tasks):
        raise ValueError(
            f"`auxiliary_tasks` must name distinct tasks from {AUXILIARY_TASKS}; "
            f"received {value!r}."
        )
    return tasks


@keras.saving.register_keras_serializable(package="ser_keras")
class KimMTL(MultiTaskModel):
    """DNN-MTL / LSTM-MTL (and their single-task baselines) on frame features.

    Input: frame features `[batch, frames, num_features]` (any number of
    frames; padded frames hold `pad_value` in every feature). Outputs: dict
    task -> frame posteriors flattened to `[batch * frames, classes]` for
    `"emotion"` and each auxiliary task. Labels for `fit`/`evaluate` are per
    utterance: dict task -> int `[batch]` (-1 = missing), copied to every
    valid frame by `train_step`/`test_step`.

    Example:
    ```python
    model = KimMTL.from_preset("kim2017_lstm")  # gender + naturalness, lambda 0.1
    model.adapt_feature_normalization(training_frames)  # [N, 32] or list of [T_i, 32]
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))  # 3e-3, Section 5.1
    model.fit(chunks, {"emotion": e, "gender": g, "naturalness": n}, batch_size=128)
    posteriors = model.predict_frame_posteriors(utterance_features)  # list of [T_i, 4]
    ```

    Args:
        network: `"dnn"` or `"lstm"`.
        num_features: Features per frame (32).
        num_layers: Hidden layers of the shared network (DNN 3, LSTM 2).
        units: Units per hidden layer / LSTM cells (256).
        context_frames: The DNN's context window in frames (25 = 250 ms at a
            10 ms shift; odd). Unused by the LSTM.
        dropout_rate: Dropout after every hidden layer (0.5).
        activation: Activation of the DNN's hidden layers (ReLU; the paper
            does not say).
        num_emotions: Emotion classes (4: neutral, happiness, sadness, anger).
        auxiliary_tasks: Subset of `("gender", "naturalness")`; `()` gives
            the single-task baseline (DNN-STL / LSTM-STL).
        auxiliary_loss_weight: `lambda` of eq. 1 for every auxiliary task (0.1).
        pad_value: Feature value of padded frames.
        **kwargs: `name`, `trainable`.

    Reference:
        Kim et al., Interspeech 2017, Section 4.2 and Figure 1.
    """

    def __init__(
        self,
        network="lstm",
        num_features=32,
        num_layers=2,
        units=256,
        context_frames=25,
        dropout_rate=0.5,
        activation="relu",
        num_emotions=4,
        auxiliary_tasks=("gender", "naturalness"),
        auxiliary_loss_weight=0.1,
        pad_value=0.0,
        **kwargs,
    ):
        if network not in NETWORKS:
            raise ValueError(f"`network` must be one of {NETWORKS}; received {network!r}.")
        num_features = positive_int("num_features", num_features)
        num_layers = positive_int("num_layers", num_layers)
        units = positive_int("units", units)
        context_frames = positive_int("context_frames", context_frames)
        if context_frames % 2 == 0:
            raise ValueError(
                f"`context_frames` must be odd (a window centred on the frame); "
                f"received {context_frames}."
            )
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` must be in [0, 1); received {dropout_rate!r}.")
        num_emotions = positive_int("num_emotions", num_emotions)
        auxiliary_tasks = _auxiliary_tasks(auxiliary_tasks)
        if float(auxiliary_loss_weight) < 0:
            raise ValueError(
                f"`auxiliary_loss_weight` must be >= 0; received {auxiliary_loss_weight!r}."
            )

        # === Functional graph ===
        features = keras.Input(shape=(None, num_features), name="frame_features")
        valid = FrameValidity(pad_value, name="frame_validity")(features)
        x = FeatureStandardization(name="feature_normalization")(features)
        x = MaskFrames(name="mask_padding")([x, valid])
        for index in range(num_layers):
            if network == "dnn" and index == 0:
                layer = keras.layers.Conv1D(
                    units, context_frames, padding="same", activation=activation, name="hidden_1"
                )
                x = layer(x)
            elif network == "dnn":
                x = keras.layers.Dense(units, activation=activation, name=f"hidden_{index + 1}")(x)
            else:
                x = keras.layers.LSTM(units, return_sequences=True, name=f"lstm_{index + 1}")(
                    x, mask=valid
                )
            x = keras.layers.Dropout(dropout_rate, name=f"dropout_{index + 1}")(x)

        head_sizes = {"emotion": num_emotions}
        head_sizes.update({task: len(AUXILIARY_CLASSES[task]) for task in auxiliary_tasks})
        frame_outputs, utterance_outputs, outputs = {}, {}, {}
        for task, size in head_sizes.items():
            probabilities = keras.layers.Dense(size, activation="softmax", name=f"{task}_frames")(x)
            frame_outputs[task] = probabilities
            utterance_outputs[task] = MaskedFrameMean(name=task)([probabilities, valid])
            outputs[task] = FlattenFrames(name=f"{task}_flat")(probabilities)
        task_weights = {"emotion": 1.0}
        task_weights.update({task: float(auxiliary_loss_weight) for task in auxiliary_tasks})

        super().__init__(inputs=features, outputs=outputs, task_weights=task_weights, **kwargs)

        # Symbolic tensors of the same graph, for frame_model()/utterance_model().
        self._graph_tensors = {
            "features": features,
            "valid": valid,
            "frames": frame_outputs,
            "utterance": utterance_outputs,
        }

        # === Config ===
        self.network = network
        self.num_features = num_features
        self.num_layers = num_layers
        self.units = units
        self.context_frames = context_frames
        self.dropout_rate = float(dropout_rate)
        self.activation = activation
        self.num_emotions = num_emotions
        self.auxiliary_tasks = auxiliary_tasks
        self.auxiliary_loss_weight = float(auxiliary_loss_weight)
        self.pad_value = float(pad_value)

    # ------------------------------------------------------------ training
    def adapt_feature_normalization(self, frames):
        """Sets the feature standardisation from training frames.

        Args:
            frames: Array `[num_frames, num_features]`, or a list of
                per-utterance arrays `[frames_i, num_features]` (e.g. the
                output of `compute_features` with `FrameFeatures`).
        """
        if isinstance(frames, (list, tuple)):
            frames = [np.asarray(item, dtype=np.float32) for item in frames if len(item)]
            frames = np.concatenate(frames, axis=0) if frames else np.zeros((0,))
        frames = np.asarray(frames, dtype=np.float32)
        if frames.ndim != 2 or frames.shape[1] != self.num_features or frames.shape[0] < 2:
            raise ValueError(
                f"Expected at least 2 frames of {self.num_features} features, [frames, "
                f"{self.num_features}]; received shape {frames.shape}."
            )
        self.get_layer("feature_normalization").adapt(frames)

    def _frame_targets(self, data):
        """Copies utterance labels (and sample weights) to every valid frame, flattened."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        features = keras.tree.flatten(x)[0]
        valid = ops.any(ops.not_equal(ops.convert_to_tensor(features), self.pad_value), axis=-1)
        frame_shape = ops.shape(valid)

        def expand(values, fill):
            values = ops.reshape(values, (-1, 1))
            values = ops.broadcast_to(values, frame_shape)
            values = ops.where(valid, values, ops.full_like(values, fill))
            return ops.reshape(values, (-1,))

        labels = self._labels_dict(y)
        frame_labels = {
            task: None if value is None else expand(ops.cast(value, "int32"), -1)
            for task, value in labels.items()
        }
        if isinstance(sample_weight, dict):
            sample_weight = {
                task: None if value is None else expand(ops.cast(value, "float32"), 0.0)
                for task, value in sample_weight.items()
            }
        elif sample_weight is not None:
            sample_weight = expand(ops.cast(sample_weight, "float32"), 0.0)
        return x, frame_labels, sample_weight

    def train_step(self, data):
        return super().train_step(self._frame_targets(data))

    def test_step(self, data):
        return super().test_step(self._frame_targets(data))

    # ---------------------------------------------------------- inference
    def frame_model(self):
        """A Keras model (shared layers): features -> dict task -> `[batch, frames, classes]`."""
        tensors = self._graph_tensors
        return keras.Model(tensors["features"], dict(tensors["frames"]), name=f"{self.name}_frames")

    def utterance_model(self):
        """A Keras model (shared layers): features -> dict task -> `[batch, classes]`.

        Each head's output is its frame posteriors averaged over the
        utterance's valid frames: the model exported for serving (emotion
        posteriors per utterance; the ELM back-end stays outside).
        """
        tensors = self._graph_tensors
        return keras.Model(
            tensors["features"], dict(tensors["utterance"]), name=f"{self.name}_utterance"
        )

    def predict_frame_posteriors(self, sequences, task="emotion", batch_size=32):
        """Frame posteriors of each utterance.

        Args:
            sequences: List of per-utterance features `[frames_i, num_features]`.
            task: The head to read (`"emotion"` or an auxiliary task).
            batch_size: Utterances per batch (batches group similar lengths,
                padded to their longest; one traced function serves all shapes).

        Returns:
            List of float32 arrays `[frames_i, classes]`, in input order.
        """
        if task not in self._graph_tensors["frames"]:
            raise ValueError(
                f"Unknown task {task!r}; the model's heads: {list(self._graph_tensors['frames'])}."
            )
        function = self._frame_function(task)
        arrays = [np.asarray(item, dtype=np.float32) for item in sequences]
        for index, array in enumerate(arrays):
            if array.ndim != 2 or array.shape[1] != self.num_features:
                raise ValueError(
                    f"sequences[{index}] must be [frames, {self.num_features}]; "
                    f"received shape {array.shape}."
                )
        lengths = np.array([array.shape[0] for array in arrays], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        results = [None] * len(arrays)
        for start in range(0, len(arrays), batch_size):
            indices = order[start : start + batch_size]
            width = max(1, int(lengths[indices].max()))
            batch = np.full(
                (len(indices), width, self.num_features), self.pad_value, dtype=np.float32
            )
            for row, index in enumerate(indices):
                batch[row, : lengths[index]] = arrays[index]
            output = np.asarray(function(tf.constant(batch)))
            for row, index in enumerate(indices):
                results[index] = output[row, : lengths[index]].copy()
        return results

    def _frame_function(self, task):
        """`features [B, T, F] -> task posteriors [B, T, C]`, traced once for all shapes."""
        functions = _FRAME_FUNCTIONS.setdefault(self, {})
        if task not in functions:
            model = keras.Model(
                self._graph_tensors["features"], self._graph_tensors["frames"][task]
            )
            functions[task] = tf.function(
                lambda features: model(features, training=False),
                input_signature=[tf.TensorSpec([None, None, self.num_features], tf.float32)],
            )
        return functions[task]

    # ------------------------------------------------------- serialisation
    def get_config(self):
        # Not chained to MultiTaskModel.get_config(): the constructor takes
        # these arguments, not a serialised graph (keras-hub Backbone style).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": self.network,
            "num_features": self.num_features,
            "num_layers": self.num_layers,
            "units": self.units,
            "context_frames": self.context_frames,
            "dropout_rate": self.dropout_rate,
            "activation": keras.activations.serialize(keras.activations.get(self.activation)),
            "num_emotions": self.num_emotions,
            "auxiliary_tasks": list(self.auxiliary_tasks),
            "auxiliary_loss_weight": self.auxiliary_loss_weight,
            "pad_value": self.pad_value,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, **overrides):
        """Builds the model from a preset of `PRESETS`, with arguments overridden.

        Args:
            preset: `"kim2017_dnn"` or `"kim2017_lstm"` (the paper's sizes).
            **overrides: Constructor arguments replacing the preset's, e.g.
                `auxiliary_tasks=("gender",)` or `units=64`.
        """
        config = preset_config(
            PRESETS, preset, overrides, owner="KimMTL", extra=("name", "trainable")
        )
        return cls(**config)


# ------------------------------------------------------- utterance level
def utterance_functionals(posteriors, threshold=DEFAULT_FUNCTIONAL_THRESHOLD):
    """The high-level features of an utterance: 4 functionals of each class's posterior.

    For each class k over the utterance's frames: max, min, mean, and the
    share of frames whose posterior exceeds `threshold` (Han et al. 2014),
    ordered `[max_1..max_C, min_1..min_C, mean_1..mean_C, share_1..share_C]`:
    16 values for 4 emotions.

    Args:
        posteriors: One utterance's `[frames, classes]` array, or a list of
            them.
        threshold: Posterior threshold of the fourth functional.

    Returns:
        float32 `[4 * classes]` for one utterance, `[N, 4 * classes]` for a
        list. An utterance without frames gives zeros.

    Reference:
        Han, Yu, Tashev, Interspeech 2014 (utterance-level features); Kim et
        al., Interspeech 2017, Section 4.2.
    """
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"`threshold` must be in [0, 1); received {threshold!r}.")
    if isinstance(posteriors, np.ndarray) and posteriors.ndim == 2:
        return _functionals(posteriors, threshold)
    rows = [_functionals(np.asarray(item, dtype=np.float32), threshold) for item in posteriors]
    if not rows:
        raise ValueError("`posteriors` is empty.")
    return np.stack(rows)


def _functionals(posteriors, threshold):
    if posteriors.ndim != 2:
        raise ValueError(
            f"Posteriors must be [frames, classes]; received shape {posteriors.shape}."
        )
    if posteriors.shape[0] == 0:
        return np.zeros(4 * posteriors.shape[1], dtype=np.float32)
    return np.concatenate(
        [
            posteriors.max(axis=0),
            posteriors.min(axis=0),
            posteriors.mean(axis=0),
            (posteriors > threshold).mean(axis=0),
        ]
    ).astype(np.float32)


def functional_names(class_names):
    """Names of the `utterance_functionals` columns, e.g. `"mean_anger"`."""
    return [f"{name}_{label}" for name in FUNCTIONAL_NAMES for label in class_names]
