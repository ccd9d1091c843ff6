"""Trainer of the multi-task semi-supervised adversarial autoencoder (AAE).

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

import keras
import tensorflow as tf
from keras import ops

from ser_keras.models import aae_mtl
from ser_keras.training.distribute import global_batch_mean, replica_context, replica_seed
from ser_keras.training.losses import masked_sparse_categorical_crossentropy_sum
from ser_keras.training.metrics import MaskedAccuracy, UnweightedAccuracy

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
        networks = aae_mtl.build_aae_networks(
            {task: num_classes[task] for task in spec["tasks"]},
            reconstruction=spec["reconstruction"],
            adversarial=spec["adversarial"],
            **aae_mtl.get_preset(preset, **architecture),
        )
        return cls(
            encoder=networks["encoder"],
            classifiers=networks["classifiers"],
            decoder=networks["decoder"],
            discriminator=networks["discriminator"],
            alpha=spec["alpha"] if alpha is None else alpha,
            beta=spec["beta"] if beta is None else beta,
            generator_loss=generator_loss,
            seed=seed,
            name=variant,
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
