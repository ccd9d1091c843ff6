"""A Functional Keras model trained on several classification tasks with label gaps.

`MultiTaskModel` is the training core shared by the package's multi-task
models (Fu et al.'s attention CNN-BLSTM with its speaker head, Latif et al.'s
emotion / speaker / gender heads, Kim et al.'s auxiliary tasks, ...). Its
outputs are a dict task -> softmax probabilities; the labels `y` are a dict
task -> int labels where -1 marks a sample without a label for that task, so
batches can mix corpora that label different tasks. Each task's loss is the
sparse categorical cross-entropy averaged over the samples that have its label
(0 when none in the batch, never NaN); the total is the weighted sum

    L = sum_t task_weights[t] * L_t  (+ regularisation losses),

e.g. `L = gamma * L_emotion + theta * L_speaker` (Fu et al., eq. 5).

Per task `t` with a weight > 0, training and evaluation report `t_loss`,
`t_accuracy` (accuracy over the labelled samples) and `t_ua` (unweighted
accuracy, the mean per-class recall), plus the total `loss`; with validation
data Keras adds `val_` versions, e.g. `val_emotion_ua` for checkpoints, early
stopping and KerasTuner objectives. `predict` returns the dict of
probabilities of every head.

Reference:
    C. Fu, C. Liu, C. T. Ishi, H. Ishiguro, "An end-to-end multitask learning
    model to improve speech emotion recognition", EUSIPCO 2020 (eq. 5).
"""

from __future__ import annotations

import copy
import math

import keras
import tensorflow as tf  # GradientTape and tf.distribute only (TensorFlow backend).
from keras import ops

from ser_keras.training.distribute import replica_context
from ser_keras.training.losses import masked_sparse_categorical_crossentropy_sum
from ser_keras.training.metrics import MaskedAccuracy, UnweightedAccuracy


def _resolve_task_weights(task_weights, task_names):
    """Task weights as floats for every task; absent tasks get 0 (switched off)."""
    if task_weights is None:
        return {task: 1.0 for task in task_names}
    if not isinstance(task_weights, dict):
        raise ValueError(
            f"`task_weights` must be a dict task -> weight or None; received {task_weights!r}."
        )
    unknown = sorted(set(task_weights) - set(task_names))
    if unknown:
        raise ValueError(
            f"`task_weights` names tasks {unknown} that are not outputs of the model "
            f"(outputs: {list(task_names)})."
        )
    weights = {}
    for task in task_names:
        value = task_weights.get(task, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"The weight of task {task!r} must be a number; received {value!r}.")
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"The weight of task {task!r} must be finite and >= 0; received {value!r}."
            )
        weights[task] = float(value)
    if not any(weights.values()):
        raise ValueError(f"At least one task weight must be > 0; received {task_weights!r}.")
    return weights


@keras.saving.register_keras_serializable(package="ser_keras")
class MultiTaskModel(keras.Model):
    """Functional model with one softmax head per task and masked per-task losses.

    Build it like a Functional model, with a dict of outputs; compile it with
    an optimizer only (the losses and metrics are built in):

    ```python
    features = keras.Input((256, 128))
    hidden = keras.layers.GlobalAveragePooling1D()(features)
    outputs = {
        "emotion": keras.layers.Dense(7, activation="softmax", name="emotion")(hidden),
        "speaker": keras.layers.Dense(4, activation="softmax", name="speaker")(hidden),
    }
    model = MultiTaskModel(features, outputs, task_weights={"emotion": 1.0, "speaker": 0.5})
    model.compile(optimizer="rmsprop")
    model.fit(features_array, {"emotion": emotions, "speaker": speakers}, ...)
    ```

    Labels: `y` is a dict task -> int `[batch]` (or `[batch, 1]`) with -1 for
    "no label"; tasks that are not outputs are ignored; an output task
    missing from `y` contributes no loss and its metrics are neither updated
    nor reported for that data (e.g. evaluation data without speaker labels).
    A plain array is accepted when exactly one task has a weight > 0.
    `sample_weight` may be an array `[batch]` (all tasks) or a dict task ->
    `[batch]`; it weights the labelled samples in losses and metrics.

    Under `tf.distribute`, every task's loss is divided by the number of
    labelled samples in the global batch (all-reduced), and the
    regularisation losses by the number of replicas, so that the SUM
    all-reduce of the gradients gives exactly the single-device gradient.

    Subclasses that build their graph in `__init__` from their own arguments
    (keras-hub `Backbone` style, e.g. `AttentionCNNBLSTM`) override
    `get_config()` to return those arguments; `from_config()` then calls the
    constructor.

    Args:
        inputs: The model's input tensor(s), as for `keras.Model`.
        outputs: Dict task name -> output tensor `[batch, num_classes]` of
            softmax probabilities; the number of classes of each task is read
            from its last dimension.
        name: Model name.
        task_weights: Dict task -> loss weight (>= 0). `None` weights every
            task 1. A task absent from the dict, or with weight 0, is switched
            off: no loss, no metrics, no gradient to its head (its
            probabilities are still predicted).
        **kwargs: Other `keras.Model` arguments (e.g. `trainable`).

    Reference:
        Fu et al., EUSIPCO 2020, eq. 5 (weighted sum of task losses).
    """

    def __init__(self, inputs, outputs, name=None, *, task_weights=None, **kwargs):
        # Keyword-only `task_weights` keeps the positional signature of
        # `Functional.__init__`, so Keras serialises the graph in get_config()
        # and from_config() revives it (with task_weights) as this class.
        if not isinstance(outputs, dict) or not outputs:
            raise ValueError(
                "`outputs` must be a non-empty dict task name -> probabilities tensor; "
                f"received {outputs!r}."
            )
        num_classes = {}
        for task, tensor in outputs.items():
            if not isinstance(task, str) or not task:
                raise ValueError(f"Task names must be non-empty strings; received {task!r}.")
            shape = tuple(getattr(tensor, "shape", ()))
            if len(shape) != 2 or shape[-1] is None:
                raise ValueError(
                    f"The output of task {task!r} must have shape [batch, num_classes] with a "
                    f"known number of classes; received shape {shape}."
                )
            num_classes[task] = int(shape[-1])
        resolved_weights = _resolve_task_weights(task_weights, tuple(outputs))
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)

        self._task_names = tuple(outputs)
        self._num_classes = num_classes
        self._task_weights = resolved_weights
        self._active_tasks = tuple(t for t in self._task_names if resolved_weights[t] > 0)
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.task_loss_trackers = {
            t: keras.metrics.Mean(name=f"{t}_loss") for t in self._active_tasks
        }
        self.task_accuracy_metrics = {
            t: MaskedAccuracy(name=f"{t}_accuracy") for t in self._active_tasks
        }
        self.task_ua_metrics = {
            t: UnweightedAccuracy(num_classes[t], name=f"{t}_ua") for t in self._active_tasks
        }

    # ------------------------------------------------------------------ info
    @property
    def task_names(self):
        """All output tasks, in the order of the `outputs` dict."""
        return self._task_names

    @property
    def active_tasks(self):
        """The tasks with a weight > 0 (trained, with metrics)."""
        return self._active_tasks

    @property
    def num_classes(self):
        """Dict task -> number of classes (from the output shapes)."""
        return dict(self._num_classes)

    @property
    def task_weights(self):
        """Dict task -> loss weight (0 for switched-off tasks)."""
        return dict(self._task_weights)

    @property
    def metrics(self):
        trackers = [self.total_loss_tracker]
        for task in self._active_tasks:
            trackers += [
                self.task_loss_trackers[task],
                self.task_accuracy_metrics[task],
                self.task_ua_metrics[task],
            ]
        return trackers

    # --------------------------------------------------------------- compile
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, label_smoothing=0.0,
                **kwargs):
        """Compiles with an optimizer; the masked losses and metrics are built in.

        Args:
            optimizer: Optimizer instance or name.
            label_smoothing: Share of every task's target spread evenly over
                its classes (0: one-hot targets; `ser_keras.training.recipe`).
                It changes the training loss only: validation and test
                losses are the plain cross-entropy.
            loss: Must be None (the masked per-task losses are fixed).
            metrics: Must be None (loss, accuracy and UA per task are tracked).
            **kwargs: Other `keras.Model.compile` arguments (`run_eagerly`,
                `jit_compile`, `steps_per_execution`, ...). `loss_weights`
                and `weighted_metrics` must be None: use `task_weights`.
        """
        rejected = {
            "loss": loss,
            "metrics": metrics,
            "loss_weights": kwargs.pop("loss_weights", None),
            "weighted_metrics": kwargs.pop("weighted_metrics", None),
        }
        for argument, value in rejected.items():
            if value is not None:
                raise ValueError(
                    f"MultiTaskModel computes its own masked per-task losses and metrics "
                    f"(weights via task_weights); compile() takes no `{argument}`. "
                    f"Received {argument}={value!r}."
                )
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, int | float)
            or not 0.0 <= label_smoothing < 1.0
        ):
            raise ValueError(
                "`label_smoothing` must be in [0, 1). Received: "
                f"label_smoothing={label_smoothing!r}"
            )
        self._label_smoothing = float(label_smoothing)
        super().compile(optimizer=optimizer, **kwargs)

    def get_compile_config(self):
        """Keras' compile configuration plus `label_smoothing` (a loaded model trains alike)."""
        config = super().get_compile_config()
        if config:
            config["label_smoothing"] = getattr(self, "_label_smoothing", 0.0)
        return config

    def compile_from_config(self, config):
        """Recompiles a loaded model (`.keras`) with its saved optimizer and settings."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            # Create the optimizer variables so that their saved values load.
            self.optimizer.build(self.trainable_variables)

    # ---------------------------------------------------------------- losses
    def _labels_dict(self, y):
        if y is None:
            raise ValueError(
                "MultiTaskModel needs labels: a dict task -> int labels (-1 = missing). "
                "Received y=None."
            )
        if isinstance(y, dict):
            return y
        if len(self._active_tasks) == 1:
            return {self._active_tasks[0]: y}
        raise ValueError(
            f"Labels must be a dict task -> int labels for the tasks {list(self._active_tasks)}; "
            f"received {type(y).__name__}."
        )

    @staticmethod
    def _task_sample_weight(sample_weight, task):
        if isinstance(sample_weight, dict):
            return sample_weight.get(task)
        return sample_weight

    def _loss_terms(self, y, y_pred, sample_weight, training=False):
        """Dict task -> `(replica_loss, global_count)` for the active tasks present in `y`.

        With `training`, the compiled label smoothing applies.

        `replica_loss` is the replica's loss sum divided by the global number
        of labelled samples; the replicas' values add up to the task's masked
        mean over the global batch (with one replica: the masked mean).
        """
        labels = self._labels_dict(y)
        _, context = replica_context()
        terms = {}
        for task in self._active_tasks:
            if task not in labels or labels[task] is None:
                continue
            probabilities = ops.cast(y_pred[task], "float32")
            loss_sum, count = masked_sparse_categorical_crossentropy_sum(
                labels[task],
                probabilities,
                self._task_sample_weight(sample_weight, task),
                label_smoothing=getattr(self, "_label_smoothing", 0.0) if training else 0.0,
            )
            if context is not None:
                count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
            terms[task] = (ops.divide_no_nan(loss_sum, count), count)
        return terms

    def _total_loss(self, terms):
        num_replicas, _ = replica_context()
        total = ops.zeros((), dtype="float32")
        for task, (value, _) in terms.items():
            total = total + self._task_weights[task] * value
        if self.losses:
            regularization = ops.sum([ops.cast(loss, "float32") for loss in self.losses])
            total = total + regularization / num_replicas
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The weighted sum of the masked task losses plus the model's losses.

        Args:
            x: Inputs (used only when `y_pred` is None).
            y: Dict task -> int labels (-1 = missing).
            y_pred: Dict task -> probabilities; computed from `x` when None.
            sample_weight: Optional array or dict task -> array.
            training: Passed to the model when `y_pred` is computed here.

        Returns:
            Scalar float32 loss (per replica under `tf.distribute`, scaled so
            that the replicas' values sum to the global loss).
        """
        if y_pred is None:
            y_pred = self(x, training=training)
        return self._total_loss(self._loss_terms(y, y_pred, sample_weight, training=training))

    # ----------------------------------------------------------------- steps
    def _update_metrics(self, x, y, y_pred, sample_weight, terms, loss):
        num_replicas, _ = replica_context()
        labels = self._labels_dict(y)
        batch_size = ops.shape(keras.tree.flatten(x)[0])[0]
        # Replica-scaled values times the number of replicas, so that the
        # trackers' cross-replica aggregation gives the global values.
        self.total_loss_tracker.update_state(loss * num_replicas, sample_weight=batch_size)
        logs = {"loss": self.total_loss_tracker.result()}
        for task, (value, count) in terms.items():
            self.task_loss_trackers[task].update_state(
                value * num_replicas, sample_weight=count / num_replicas
            )
            weights = self._task_sample_weight(sample_weight, task)
            self.task_accuracy_metrics[task].update_state(
                labels[task], y_pred[task], sample_weight=weights
            )
            self.task_ua_metrics[task].update_state(
                labels[task], y_pred[task], sample_weight=weights
            )
            for metric in (
                self.task_loss_trackers[task],
                self.task_accuracy_metrics[task],
                self.task_ua_metrics[task],
            ):
                logs[metric.name] = metric.result()
        return logs

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            terms = self._loss_terms(y, y_pred, sample_weight, training=True)
            loss = self._total_loss(terms)
            scaled_loss = self.optimizer.scale_loss(loss)  # mixed-precision loss scaling
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        # Heads of switched-off tasks (and tasks absent from y) get no gradient.
        pairs = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        if pairs:
            self.optimizer.apply_gradients(pairs)
        return self._update_metrics(x, y, y_pred, sample_weight, terms, loss)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        terms = self._loss_terms(y, y_pred, sample_weight)
        loss = self._total_loss(terms)
        return self._update_metrics(x, y, y_pred, sample_weight, terms, loss)

    # --------------------------------------------------------- serialisation
    def get_config(self):
        config = super().get_config()  # the Functional graph (layers, inputs, outputs)
        config["task_weights"] = dict(self._task_weights)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Keras' Functional revival pops keys from the dict: work on a copy.
        return super().from_config(copy.deepcopy(config), custom_objects=custom_objects)
