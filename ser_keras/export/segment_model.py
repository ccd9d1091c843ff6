"""Utterance-level model over fixed-length segments, for export and serving.

Latif et al. (paper 002, Section 4.2) train on fixed 256-frame segments of the
log-mel spectrogram and, at test time, average the posterior probabilities of
an utterance's segments. Offline, `ser_keras.features.framing` cuts the
segments and `average_by_utterance` averages them. A served model needs the
same inside its graph: `SegmentAveragingModel` takes a padded batch of
variable-length feature sequences `[batch, frames, mels]` (the output of a
variable-length `LogMel` front-end), cuts each into non-overlapping segments
exactly as `ser_keras.features.framing.segment_features` does, runs a segment
model on every segment and averages each utterance's segment outputs. With it,
`ser_keras.export.saved_model.export_saved_model` exports waveform ->
utterance probabilities.

A padded batch carries no lengths beyond the front-end: an utterance's valid
frame count is recovered as one past its last frame that is not entirely
`pad_value` (the front-end writes `pad_value` into every frame beyond an
utterance's length). A real frame whose every mel band equals `pad_value`
exactly, at the very end of an utterance, would be taken for padding; with the
"latif" front-end (per-utterance standardisation, pad value 0) that needs a
frame whose every band sits exactly at the utterance mean.

Reference:
    S. Latif, R. Rana, S. Khalifa, R. Jurdak, J. Epps, B. W. Schuller,
    "Multi-Task Semi-Supervised Adversarial Autoencoding for Speech Emotion
    Recognition", IEEE Transactions on Affective Computing, 2020, Section 4.2.
"""

from __future__ import annotations

import keras
from keras import ops

from ser_keras.features.framing import LAST_SEGMENT_MODES
from ser_keras.utils.validation import positive_int


@keras.saving.register_keras_serializable(package="ser_keras")
class FeatureSegmenter(keras.layers.Layer):
    """Cuts padded feature sequences into non-overlapping fixed-length segments.

    Input `[batch, frames, features]`; outputs `(segments, segment_mask)`:
    `segments` `[batch * num_segments, segment_length, features]` (utterance
    b's segments are rows `b * num_segments ... (b + 1) * num_segments - 1`)
    and `segment_mask` bool `[batch, num_segments]`, True for the segments
    `segment_features` would cut from utterance b (its valid frames being all
    frames up to its last one that is not entirely `pad_value`): segment k is
    kept when it starts before the end (`last_segment="pad"`) or lies wholly
    inside it (`"drop"`); the first segment is always kept, padded with
    `pad_value`, so that every utterance is represented.
    `num_segments = max(1, ceil(frames / segment_length))`.

    Args:
        segment_length: frames per segment (paper 002: 256).
        pad_value: value of padding frames, that of the front-end.
        last_segment: `"pad"` or `"drop"`, as in `segment_features`.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, segment_length=256, pad_value=0.0, last_segment="pad", **kwargs):
        super().__init__(**kwargs)
        segment_length = positive_int("segment_length", segment_length)
        if last_segment not in LAST_SEGMENT_MODES:
            raise ValueError(
                f"`last_segment` must be one of {LAST_SEGMENT_MODES}. Received: {last_segment!r}"
            )
        self.segment_length = segment_length
        self.pad_value = float(pad_value)
        self.last_segment = last_segment

    def valid_frames(self, features):
        """`[batch]` int32: one past each utterance's last frame that is not all padding."""
        not_padding = ops.any(ops.not_equal(features, self.pad_value), axis=-1)
        positions = ops.arange(1, ops.shape(features)[1] + 1, dtype="int32")
        return ops.max(
            ops.where(not_padding, positions[None, :], ops.zeros_like(positions)[None, :]),
            axis=1,
        )

    def call(self, features):
        features = ops.convert_to_tensor(features, dtype=self.compute_dtype)
        frames = ops.shape(features)[1]
        num_features = features.shape[-1]
        length = self.segment_length
        num_segments = ops.maximum(1, (frames + length - 1) // length)
        padded = ops.pad(
            features,
            [[0, 0], [0, num_segments * length - frames], [0, 0]],
            constant_values=self.pad_value,
        )
        segments = ops.reshape(padded, (-1, length, num_features))

        valid = self.valid_frames(features)
        starts = ops.arange(0, num_segments, dtype="int32") * length  # [num_segments]
        if self.last_segment == "pad":
            kept = starts[None, :] < valid[:, None]
        else:
            kept = (starts[None, :] + length) <= valid[:, None]
        first = ops.equal(ops.arange(0, num_segments, dtype="int32"), 0)[None, :]
        segment_mask = ops.logical_or(kept, first)
        return segments, segment_mask

    def compute_output_spec(self, features):
        num_features = features.shape[-1]
        batch, frames = features.shape[0], features.shape[1]
        if frames is None:
            num_segments = None
        else:
            num_segments = max(1, -(-frames // self.segment_length))
        rows = None if batch is None or num_segments is None else batch * num_segments
        return (
            keras.KerasTensor((rows, self.segment_length, num_features), dtype=self.compute_dtype),
            keras.KerasTensor((batch, num_segments), dtype="bool"),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "segment_length": self.segment_length,
                "pad_value": self.pad_value,
                "last_segment": self.last_segment,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class SegmentAverage(keras.layers.Layer):
    """Mean of each utterance's kept segment outputs.

    Inputs `(values, segment_mask)`: `values` `[batch * num_segments, ...]` in
    the row order of `FeatureSegmenter` and `segment_mask` bool `[batch,
    num_segments]`; output `[batch, ...]`, the mean over the kept segments
    (the in-graph `average_by_utterance`).

    Args:
        **kwargs: `keras.layers.Layer` arguments.
    """

    def call(self, inputs):
        values, segment_mask = inputs
        values = ops.cast(values, "float32")
        mask_shape = ops.shape(segment_mask)
        trailing = tuple(values.shape[1:])
        grouped = ops.reshape(values, (mask_shape[0], mask_shape[1]) + trailing)
        weights = ops.cast(segment_mask, "float32")
        weights = ops.reshape(weights, (mask_shape[0], mask_shape[1]) + (1,) * len(trailing))
        total = ops.sum(grouped * weights, axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        return total / count

    def compute_output_spec(self, inputs):
        values, segment_mask = inputs
        return keras.KerasTensor((segment_mask.shape[0],) + tuple(values.shape[1:]), "float32")


@keras.saving.register_keras_serializable(package="ser_keras")
class SegmentAveragingModel(keras.Model):
    """Variable-length features -> utterance outputs by averaging segment outputs.

    A Functional model: features `[batch, frames, mels]` (padded with
    `pad_value` beyond each utterance) are cut by `FeatureSegmenter`, the
    `segment_model` maps every segment to its outputs (a dict task ->
    probabilities, or one tensor), and `SegmentAverage` averages them per
    utterance. Its outputs have the structure of `segment_model`'s, so
    `export_saved_model(SegmentAveragingModel(...), ..., frontend=LogMel.
    from_preset("latif"), ...)` serves waveform -> utterance probabilities.

    Args:
        segment_model: model from segments `[batch, segment_length, mels]`
            to a dict task -> `[batch, num_classes]` (or one tensor); its
            input shape fixes the segment length.
        pad_value: value of padding frames (the front-end's `pad_value`).
        last_segment: `"pad"` or `"drop"`, as in training
            (`segment_features`).
        **kwargs: `keras.Model` arguments (name, ...).

    Example:
    ```python
    segment_model = segment_classifier(aae_model, tasks=("emotion", "gender"))
    model = SegmentAveragingModel(segment_model, pad_value=frontend.pad_value)
    export_saved_model(model, "saved_models", "aae_mtl", frontend=frontend,
                       label_names={"emotion": classes, "gender": ["female", "male"]})
    ```

    Reference:
        Latif et al., IEEE Trans. Affective Computing, 2020, Section 4.2.
    """

    def __init__(self, segment_model, pad_value=0.0, last_segment="pad", **kwargs):
        input_shape = tuple(segment_model.input.shape[1:])
        if len(input_shape) != 2 or input_shape[0] is None or input_shape[1] is None:
            raise ValueError(
                "`segment_model` must take segments [batch, segment_length, mels] with both "
                f"sizes fixed. Received input shape {segment_model.input.shape}."
            )
        segment_length, num_mels = int(input_shape[0]), int(input_shape[1])

        # === Functional graph ===
        features = keras.Input(shape=(None, num_mels), name="features")
        segmenter = FeatureSegmenter(
            segment_length, pad_value=pad_value, last_segment=last_segment, name="segmenter"
        )
        segments, segment_mask = segmenter(features)
        segment_outputs = segment_model(segments)
        average = SegmentAverage(name="segment_average")
        if isinstance(segment_outputs, dict):
            outputs = {
                task: average((value, segment_mask)) for task, value in segment_outputs.items()
            }
        else:
            outputs = average((segment_outputs, segment_mask))
        super().__init__(inputs=features, outputs=outputs, **kwargs)

        # === Config ===
        self.segment_model = segment_model
        self.segment_length = segment_length
        self.pad_value = float(pad_value)
        self.last_segment = last_segment

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "segment_model": keras.saving.serialize_keras_object(self.segment_model),
            "pad_value": self.pad_value,
            "last_segment": self.last_segment,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["segment_model"] = keras.saving.deserialize_keras_object(
            config["segment_model"], custom_objects=custom_objects
        )
        return cls(**config)


def segment_classifier(model, tasks=None, name="segment_classifier"):
    """Segments -> dict task -> probabilities from a model's encoder and classifiers.

    Keeps only the prediction path (no decoder, no discriminator), so an
    export carries no training-only weights.

    Args:
        model: a model with `encoder` and `classifiers` (task -> head)
            attributes, e.g. `ser_keras.models.aae_mtl.AAEMultiTaskModel`.
        tasks: tasks to keep, in order; default all of `model.classifiers`.
        name: model name.

    Returns:
        keras.Model from `[batch, segment_length, mels]` to a dict task ->
        `[batch, num_classes]`.
    """
    encoder = getattr(model, "encoder", None)
    classifiers = getattr(model, "classifiers", None)
    if encoder is None or not isinstance(classifiers, dict):
        raise ValueError(
            "`model` needs `encoder` and `classifiers` attributes (an AAEMultiTaskModel); "
            f"received {type(model).__name__}."
        )
    tasks = tuple(classifiers) if tasks is None else tuple(tasks)
    missing = [task for task in tasks if task not in classifiers]
    if not tasks or missing:
        raise ValueError(
            f"`tasks` must name some of the model's heads {list(classifiers)}; received "
            f"{list(tasks)}."
        )
    inputs = keras.Input(shape=tuple(encoder.input.shape[1:]), name="segments")
    code = encoder(inputs)
    outputs = {task: classifiers[task](code) for task in tasks}
    return keras.Model(inputs, outputs, name=name)
