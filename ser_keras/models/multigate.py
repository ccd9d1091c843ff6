"""Multilingual SER with per-language gates and a hard-concrete NAS module (Wang et al.).

One log-mel input feeds a bank of *feature experts*, each turning the
utterance into one vector `v_j`:

* `"logmel"`: the log-mel sequence through the encoder of Section 4.1 --
  1-D convolutions over time with kernel widths 3 and 5 ("n-gram features",
  64 filters each), a stacked bidirectional LSTM, and scaled dot-product
  attention whose query is the BiLSTM's last hidden state `z_hat` and whose
  keys and values are the whole output sequence (eq. 1-2);
* `"mfcc"`: MFCCs (the DCT-II of the log-mel frames, as librosa computes
  them) through the same kind of encoder with the paper's MFCC sizes (32
  filters, a 2-layer LSTM of 64 units);
* `"statistics"`: utterance-level functionals of the log-mel (mean and
  standard deviation of every band over the valid frames), a 1-D feature
  like the paper's GE2E/BYOL embeddings, and the default gate selector;
* any external utterance-level embeddings (`embedding_dims`, e.g. eGeMAPS
  functionals or a pretrained model's pooled embedding computed offline),
  each an extra model input.

The experts are combined per variant (`VARIANTS`, Section 5.2.2):

* `"single"`: the single-language model of Figure 1: the experts'
  concatenation `g (+) s(z')` into one classification tower;
* `"base"`: all languages together, shared experts and one shared tower over
  the union of the label sets;
* `"shared_bottom"`: `y_k = h_k(sum_i f_i(x))`, a tower per language;
* `"omoe"`: one softmax gate shared by all languages, `h_k(sum_i g_i(x) f_i(x))`;
* `"mmoe"`: a softmax gate per language (eq. 7);
* `"multigate"` (the paper's model): a gate per language over the outputs of
  a per-language hard-concrete NAS module, `u_i = sum_j xi_ij W_ij v_j`
  (eq. 8-9) with shared transition matrices `W_ij` and per-language
  connection variables `xi_ij`.

In the gated and summed variants every expert `f_i` ends with a linear map to
`expert_units` so that the experts can be added (the NAS module's `W_ij` play
that role in `"multigate"`). Each language `k` has its own tower `h_k` (two
Dense layers with the paper's widths and activations per language, dropout
0.1) and its own softmax head `emotion_<k>` over its own label set; labels of
the other languages' samples are -1 for that head, so `MultiTaskModel`'s
masked losses train every tower on its own language. The contrastive
auxiliary loss (eq. 3-6, `ser_keras.training.contrastive`) acts on each
tower's input with the language's weight `alpha`. The encoders' layers
(`FrameMask`, `MaskedStatisticsPooling`, `LastStateAttention`, `MelCepstrum`)
live in `ser_keras.layers.sequence` and `ser_keras.layers.cepstrum`.

Deviations from the paper (no pretrained speech model is available offline):
the paper's experts are Allosaurus, wav2vec, GE2E, BYOL and MFCC features;
ours are log-mel and MFCC sequences and log-mel functionals (plus optional
external embeddings), and the gate selector is the functionals vector
instead of the GE2E embedding (the GE2E fine-tuning learning rate `lr * 0.01`
therefore has no counterpart). Our reading of "CNN layer with 64 kernels of
size 3x3 and 5x5" is two parallel 1-D convolutions over time (widths 3 and
5, 64 filters each, ReLU -- the activation is not stated) whose outputs are
concatenated. The MFCC encoder's attention size and kernel widths and the
common expert size are not stated (ours: 2 x 64 = 128, widths 3 and 5, and
256, the other encoders' attention size). The dropout of 0.1 is applied
after every expert vector and every tower layer. The NAS transition matrices
`W_ij` are shared by the languages, the connection variables are per
language (the paper: "assigns different neural architecture for different
domains"). Towers of languages the paper does not use (other than English,
German, French) take German/French's settings and alpha 0.01 (German's).

Reference:
    Z. Wang, Q. Meng, H. Lan, X. Zhang, K. Guo, A. Gupta, "Multilingual
    Speech Emotion Recognition With Multi-Gating Mechanism and Neural
    Architecture Search" (Sections 4-5, eq. 1-9, Tables 3-4, Figure 4).
"""

from __future__ import annotations

import copy
import math

import keras
import numpy as np
import tensorflow as tf  # GradientTape and tf.distribute only (TensorFlow backend).
from keras import ops

from ser_keras.layers.cepstrum import MelCepstrum
from ser_keras.layers.gating import (
    HARD_CONCRETE_BETA,
    HARD_CONCRETE_DELTA,
    HARD_CONCRETE_GAMMA,
    HardConcreteRouting,
    SoftmaxGate,
)
from ser_keras.layers.sequence import FrameMask, LastStateAttention, MaskedStatisticsPooling
from ser_keras.training.contrastive import (
    MIN_SAMPLES_PER_CLASS,
    REDUCTIONS,
    GE2EContrastiveLoss,
)
from ser_keras.training.distribute import replica_context
from ser_keras.training.multitask import MultiTaskModel
from ser_keras.utils.keras_loading import outside_object_sharing
from ser_keras.utils.presets import preset_config
from ser_keras.utils.validation import positive_int, positive_ints

# The single-language model, then the multi-domain variants in the row order of
# Table 3 (whose rows and titles are ser_keras.experiments.multilingual_gating's).
VARIANTS = ("single", "base", "shared_bottom", "omoe", "mmoe", "multigate")
EXPERT_KINDS = ("logmel", "mfcc", "statistics")
GATED_VARIANTS = ("omoe", "mmoe", "multigate")
SHARED_TASK = "emotion"

# Section 5.1: "The unit number of feed forward layers for English, German and
# French are 256, 512, 512 respectively. For English, we use Mish and GeLU
# activation function ... For French and German, we use Tanh and ReLU ... The
# weight of contrastive auxilliary loss alpha is set to be 0.1, 0.01, and
# 0.015 for English, German and French respectively."
LANGUAGE_SETTINGS = {
    "en": {"tower_units": 256, "tower_activations": ("mish", "gelu"), "contrastive_weight": 0.1},
    "de": {"tower_units": 512, "tower_activations": ("tanh", "relu"), "contrastive_weight": 0.01},
    "fr": {"tower_units": 512, "tower_activations": ("tanh", "relu"), "contrastive_weight": 0.015},
}
# Languages the paper does not cover (our choice: German's settings).
DEFAULT_LANGUAGE_SETTINGS = {
    "tower_units": 512,
    "tower_activations": ("tanh", "relu"),
    "contrastive_weight": 0.01,
}

PRESETS = {
    # Section 5.1 where it gives a number; see the module docstring for the
    # choices it leaves open. Input: the "fu2021" log-mel front-end (16 kHz,
    # FFT 800, hop 400, 128 bands, 256 frames, -1 padding after min-max
    # normalisation). num_mfcc = 20 is librosa's default (the paper extracts
    # MFCCs with librosa).
    "wang": {
        "num_frames": 256,
        "num_mels": 128,
        "pad_value": -1.0,
        "experts": ("logmel", "mfcc", "statistics"),
        "gate_selector": "statistics",
        "logmel_conv_filters": 64,
        "logmel_conv_kernel_sizes": (3, 5),
        "logmel_lstm_units": 128,
        "logmel_lstm_layers": 1,
        "logmel_attention_units": 256,
        "num_mfcc": 20,
        "mfcc_conv_filters": 32,
        "mfcc_conv_kernel_sizes": (3, 5),
        "mfcc_lstm_units": 64,
        "mfcc_lstm_layers": 2,
        "mfcc_attention_units": 128,
        "expert_units": 256,
        "dropout_rate": 0.1,
        "min_samples_per_class": 6,
        "contrastive_reduction": "sum",
        "hard_concrete_beta": 0.9,
        "hard_concrete_gamma": -0.1,
        "hard_concrete_delta": 2.0,
        "l0_penalty_weight": 0.0,
    },
    # The same graph scaled down for a 2-core CPU (NOT the paper's sizes):
    # 128 frames (3.2 s), encoders of 16 filters, BiLSTMs of 32 (log-mel) and
    # 16 (MFCC, one layer instead of two: every recurrent layer costs tens of
    # seconds of graph tracing on a CPU) units, attention 64/32, experts of
    # 64 units. Emotions need 2 samples in a batch for the contrastive loss
    # (6 would leave almost every emotion out of the 32-sample batches of
    # the apps' quick preset, shared by several languages).
    "wang_cpu": {
        "num_frames": 128,
        "num_mels": 128,
        "pad_value": -1.0,
        "experts": ("logmel", "mfcc", "statistics"),
        "gate_selector": "statistics",
        "logmel_conv_filters": 16,
        "logmel_conv_kernel_sizes": (3, 5),
        "logmel_lstm_units": 32,
        "logmel_lstm_layers": 1,
        "logmel_attention_units": 64,
        "num_mfcc": 20,
        "mfcc_conv_filters": 16,
        "mfcc_conv_kernel_sizes": (3, 5),
        "mfcc_lstm_units": 16,
        "mfcc_lstm_layers": 1,
        "mfcc_attention_units": 32,
        "expert_units": 64,
        "dropout_rate": 0.1,
        "min_samples_per_class": 2,
        "contrastive_reduction": "sum",
        "hard_concrete_beta": 0.9,
        "hard_concrete_gamma": -0.1,
        "hard_concrete_delta": 2.0,
        "l0_penalty_weight": 0.0,
    },
}

# Section 5.1: "AdamW with learning rate lr = 0.001, beta1 = 0.9, beta2 = 0.999,
# epsilon = 1e-08, weight_decay = 1e-05". (Its 20 epochs, and our batch of 64 --
# the paper states none --, are the "paper" preset of
# ser_keras.experiments.multilingual_gating.)
PAPER_OPTIMIZER = {
    "learning_rate": 1e-3,
    "beta_1": 0.9,
    "beta_2": 0.999,
    "epsilon": 1e-8,
    "weight_decay": 1e-5,
}


def make_optimizer(**overrides):
    """The paper's AdamW (`PAPER_OPTIMIZER`), with settings overridden.

    Args:
        **overrides: `keras.optimizers.AdamW` arguments among
            `PAPER_OPTIMIZER`'s keys, e.g. `learning_rate=3e-4` (a tuner's).

    Returns:
        A `keras.optimizers.AdamW`.

    Raises:
        ValueError: An argument that is not one of `PAPER_OPTIMIZER`'s.
    """
    unknown = sorted(set(overrides) - set(PAPER_OPTIMIZER))
    if unknown:
        raise ValueError(
            f"Unknown optimizer settings {unknown}; expected some of {sorted(PAPER_OPTIMIZER)}."
        )
    return keras.optimizers.AdamW(**{**PAPER_OPTIMIZER, **overrides})


def language_settings(language):
    """Tower width, activations and contrastive weight of a language (paper or default)."""
    return copy.deepcopy(LANGUAGE_SETTINGS.get(language, DEFAULT_LANGUAGE_SETTINGS))


def task_name(language):
    """The output (task) name of a language's head: `emotion_<language>`."""
    return f"{SHARED_TASK}_{language}"


# ---------------------------------------------------------------- checks
def _non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number >= 0; received {value!r}.")
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0; received {value!r}.")
    return float(value)


def _per_language(name, values, languages, key, check):
    """A dict language -> value: given values, else each language's settings."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"`{name}` must be a dict language -> value or None; received {values!r}.")
    unknown = sorted(set(values) - set(languages))
    if unknown:
        raise ValueError(
            f"`{name}` names languages {unknown} not in class_names ({list(languages)})."
        )
    return {
        language: check(
            name, values[language] if language in values else language_settings(language)[key]
        )
        for language in languages
    }


def _activations(name, values):
    if isinstance(values, str):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError as error:
        raise ValueError(
            f"`{name}` must be a sequence of activation names; received {values!r}."
        ) from error
    if not values:
        raise ValueError(f"`{name}` must name at least one activation; received {values!r}.")
    for value in values:
        try:
            keras.activations.get(value)
        except ValueError as error:
            raise ValueError(f"`{name}`: unknown activation {value!r}.") from error
    return values


def union_of_classes(class_names):
    """The union of the languages' label sets, sorted (the shared label set of `"base"`)."""
    return tuple(sorted({name for names in class_names.values() for name in names}))


class _View:
    """Holds a Functional view of the graph without Keras tracking it as a sublayer."""

    def __init__(self, model):
        self.model = model


# ----------------------------------------------------------------- model
@keras.saving.register_keras_serializable(package="ser_keras")
class MultiGatingSER(MultiTaskModel):
    """Multilingual SER model with feature experts, gates, NAS and per-language towers.

    Input: log-mel features `[batch, num_frames, num_mels]` (a dict
    `{"features": ..., <embedding>: [batch, dim], ...}` when `embedding_dims`
    names external embeddings). Outputs: `{"emotion_<language>": [batch,
    num_classes]}` softmax probabilities, one head per language with its own
    label set (`{"emotion": ...}` over the union of the label sets for
    `"base"`). Labels: a dict with the same keys, -1 where a sample has no
    label for a head (every sample of another language).

    Training (`fit`): the masked per-head cross-entropy of `MultiTaskModel`
    plus, per head, `alpha * L_contrastive` (eq. 6) on the head's tower input,
    plus the hard-concrete L0 penalty when `l0_penalty_weight > 0`. Logs
    `loss`, per head `<task>_loss`, `<task>_accuracy`, `<task>_ua`,
    `<task>_contrastive_loss`, and `mean_ua` (the mean of the heads' UA;
    `val_mean_ua` selects checkpoints).

    Example:
    ```python
    model = MultiGatingSER.from_preset(
        "wang_cpu",
        class_names={"en": ["anger", "neutral"], "de": ["anger", "boredom", "neutral"]},
    )
    model.compile(optimizer=make_optimizer())
    model.fit(features, {"emotion_en": en_labels, "emotion_de": de_labels}, epochs=20)
    ```

    Args:
        class_names: Dict language code -> class names (in label-index
            order) of that language's head. The dict's order is the heads' order.
        variant: One of `VARIANTS`.
        experts: Internal experts, a subset of `EXPERT_KINDS`, in order.
        embedding_dims: Dict name -> size of external utterance-level
            embeddings, each an extra input and expert (None: none).
        gate_selector: The expert whose vector feeds the softmax gates
            (`"statistics"`, an embedding name), or `"concat"` for all
            experts' vectors concatenated.
        num_frames: Frames per input (None: any).
        num_mels: Mel bands per frame.
        pad_value: Value of padded frames, masked in the encoders (None: no mask).
        logmel_conv_filters: Filters of each log-mel convolution (64).
        logmel_conv_kernel_sizes: Widths of the parallel log-mel convolutions (3, 5).
        logmel_lstm_units: Units per direction of the log-mel BiLSTM (128).
        logmel_lstm_layers: Stacked log-mel BiLSTM layers (1).
        logmel_attention_units: Log-mel attention size (256).
        num_mfcc: MFCCs per frame (20).
        mfcc_conv_filters: Filters of each MFCC convolution (32).
        mfcc_conv_kernel_sizes: Widths of the parallel MFCC convolutions.
        mfcc_lstm_units: Units per direction of the MFCC BiLSTM (64).
        mfcc_lstm_layers: Stacked MFCC BiLSTM layers (2).
        mfcc_attention_units: MFCC attention size.
        normalize_statistics: Standardise the functionals feature by feature
            with statistics of the training data (`adapt_normalization`; our
            choice: the band means and standard deviations of a min-max
            normalised log-mel span a narrow range and, unscaled, an MLP
            learns from them slowly).
        expert_units: Common size of the experts' outputs in the summed and
            gated variants (the NAS module's `u_i`).
        dropout_rate: Dropout after every expert vector and tower layer (0.1).
        tower_units: Dict language -> tower width (None: `LANGUAGE_SETTINGS`).
        tower_activations: Dict language -> activations of the tower's layers.
        shared_tower_units: Width of the shared tower of `"base"`.
        shared_tower_activations: Activations of the shared tower.
        contrastive_weights: Dict language -> `alpha` (None: `LANGUAGE_SETTINGS`;
            0 switches the auxiliary loss off for that language).
        shared_contrastive_weight: `alpha` of `"base"` (None: the mean of
            the languages' weights).
        min_samples_per_class: Emotions with fewer samples of a language in a
            batch are left out of its contrastive loss (6).
        contrastive_reduction: `"sum"` (eq. 6) or `"mean"`.
        hard_concrete_beta: Temperature of the NAS gates (0.9).
        hard_concrete_gamma: Lower stretch of the NAS gates (-0.1).
        hard_concrete_delta: Upper stretch of the NAS gates (2).
        l0_penalty_weight: Weight of the NAS gates' expected-L0 penalty (0).
        seed: Optional int seed of the NAS gate noise.
        **kwargs: `name`, `trainable`.

    Reference:
        Wang et al., Sections 4-5.
    """

    def __init__(
        self,
        class_names,
        variant="multigate",
        experts=("logmel", "mfcc", "statistics"),
        embedding_dims=None,
        gate_selector="statistics",
        num_frames=256,
        num_mels=128,
        pad_value=-1.0,
        logmel_conv_filters=64,
        logmel_conv_kernel_sizes=(3, 5),
        logmel_lstm_units=128,
        logmel_lstm_layers=1,
        logmel_attention_units=256,
        num_mfcc=20,
        mfcc_conv_filters=32,
        mfcc_conv_kernel_sizes=(3, 5),
        mfcc_lstm_units=64,
        mfcc_lstm_layers=2,
        mfcc_attention_units=128,
        normalize_statistics=True,
        expert_units=256,
        dropout_rate=0.1,
        tower_units=None,
        tower_activations=None,
        shared_tower_units=512,
        shared_tower_activations=("tanh", "relu"),
        contrastive_weights=None,
        shared_contrastive_weight=None,
        min_samples_per_class=MIN_SAMPLES_PER_CLASS,
        contrastive_reduction="sum",
        hard_concrete_beta=HARD_CONCRETE_BETA,
        hard_concrete_gamma=HARD_CONCRETE_GAMMA,
        hard_concrete_delta=HARD_CONCRETE_DELTA,
        l0_penalty_weight=0.0,
        seed=None,
        **kwargs,
    ):
        # === Checks ===
        if not isinstance(class_names, dict) or not class_names:
            raise ValueError(
                "`class_names` must be a non-empty dict language -> class names; "
                f"received {class_names!r}."
            )
        class_names = {
            str(lang): tuple(str(n) for n in names) for lang, names in class_names.items()
        }
        for language, names in class_names.items():
            if not language or not names or len(set(names)) != len(names):
                raise ValueError(
                    f"Language {language!r} needs a non-empty list of distinct class names; "
                    f"received {list(names)!r}."
                )
        languages = tuple(class_names)
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}; received {variant!r}.")
        if variant == "single" and len(languages) != 1:
            raise ValueError(
                "The 'single' variant is the single-language model of Figure 1: give one "
                f"language in class_names; received {list(languages)}."
            )
        experts = tuple(experts)
        unknown = [e for e in experts if e not in EXPERT_KINDS]
        if unknown or len(set(experts)) != len(experts):
            raise ValueError(
                f"`experts` must be distinct names from {EXPERT_KINDS}; received {list(experts)!r}."
            )
        embedding_dims = dict(embedding_dims or {})
        for name, dim in embedding_dims.items():
            if not isinstance(name, str) or not name or name in EXPERT_KINDS or name == "features":
                raise ValueError(
                    f"Embedding names must be new non-empty strings (not {EXPERT_KINDS} or "
                    f"'features'); received {name!r}."
                )
            positive_int(f"embedding_dims[{name!r}]", dim)
        embedding_dims = {name: int(dim) for name, dim in embedding_dims.items()}
        expert_names = experts + tuple(embedding_dims)
        if not expert_names:
            raise ValueError("At least one expert (internal or embedding) is needed.")
        if gate_selector != "concat" and gate_selector not in expert_names:
            raise ValueError(
                f"`gate_selector` must be 'concat' or one of the experts {list(expert_names)}; "
                f"received {gate_selector!r}."
            )
        if num_frames is not None:
            num_frames = positive_int("num_frames", num_frames)
        num_mels = positive_int("num_mels", num_mels)
        logmel_conv_filters = positive_int("logmel_conv_filters", logmel_conv_filters)
        logmel_conv_kernel_sizes = positive_ints(
            "logmel_conv_kernel_sizes", logmel_conv_kernel_sizes
        )
        logmel_lstm_units = positive_int("logmel_lstm_units", logmel_lstm_units)
        logmel_lstm_layers = positive_int("logmel_lstm_layers", logmel_lstm_layers)
        logmel_attention_units = positive_int("logmel_attention_units", logmel_attention_units)
        num_mfcc = positive_int("num_mfcc", num_mfcc)
        if "mfcc" in experts and num_mfcc > num_mels:
            raise ValueError(f"`num_mfcc`={num_mfcc} exceeds num_mels={num_mels}.")
        mfcc_conv_filters = positive_int("mfcc_conv_filters", mfcc_conv_filters)
        mfcc_conv_kernel_sizes = positive_ints("mfcc_conv_kernel_sizes", mfcc_conv_kernel_sizes)
        mfcc_lstm_units = positive_int("mfcc_lstm_units", mfcc_lstm_units)
        mfcc_lstm_layers = positive_int("mfcc_lstm_layers", mfcc_lstm_layers)
        mfcc_attention_units = positive_int("mfcc_attention_units", mfcc_attention_units)
        expert_units = positive_int("expert_units", expert_units)
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"`dropout_rate` must be in [0, 1); received {dropout_rate!r}.")
        tower_units = _per_language(
            "tower_units", tower_units, languages, "tower_units", positive_int
        )
        tower_activations = _per_language(
            "tower_activations", tower_activations, languages, "tower_activations", _activations
        )
        shared_tower_units = positive_int("shared_tower_units", shared_tower_units)
        shared_tower_activations = _activations(
            "shared_tower_activations", shared_tower_activations
        )
        contrastive_weights = _per_language(
            "contrastive_weights",
            contrastive_weights,
            languages,
            "contrastive_weight",
            _non_negative,
        )
        if shared_contrastive_weight is not None:
            shared_contrastive_weight = _non_negative(
                "shared_contrastive_weight", shared_contrastive_weight
            )
        min_samples_per_class = positive_int("min_samples_per_class", min_samples_per_class)
        if contrastive_reduction not in REDUCTIONS:
            raise ValueError(
                f"`contrastive_reduction` must be one of {REDUCTIONS}; received "
                f"{contrastive_reduction!r}."
            )
        l0_penalty_weight = _non_negative("l0_penalty_weight", l0_penalty_weight)

        # === Functional graph ===
        features = keras.Input(shape=(num_frames, num_mels), name="features")
        embedding_inputs = {
            name: keras.Input(shape=(dim,), name=name) for name, dim in embedding_dims.items()
        }
        mask = FrameMask(pad_value, name="frame_mask")(features)
        vectors = {}
        for expert in experts:
            if expert == "logmel":
                vectors[expert] = _sequence_expert(
                    features,
                    mask,
                    "logmel",
                    logmel_conv_filters,
                    logmel_conv_kernel_sizes,
                    logmel_lstm_units,
                    logmel_lstm_layers,
                    logmel_attention_units,
                )
            elif expert == "mfcc":
                cepstrum = MelCepstrum(num_mfcc, name="mfcc")(features)
                vectors[expert] = _sequence_expert(
                    cepstrum,
                    mask,
                    "mfcc",
                    mfcc_conv_filters,
                    mfcc_conv_kernel_sizes,
                    mfcc_lstm_units,
                    mfcc_lstm_layers,
                    mfcc_attention_units,
                )
            else:
                functionals = MaskedStatisticsPooling(name="statistics")(features, mask=mask)
                vectors[expert] = functionals
                if normalize_statistics:
                    vectors[expert] = keras.layers.Normalization(
                        axis=-1, name="statistics_normalization"
                    )(functionals)
        vectors.update(embedding_inputs)
        selector = (
            keras.layers.Concatenate(name="gate_selector")(list(vectors.values()))
            if gate_selector == "concat" and len(vectors) > 1
            else vectors[expert_names[0] if gate_selector == "concat" else gate_selector]
        )
        vectors = {
            name: keras.layers.Dropout(dropout_rate, name=f"{name}_dropout")(vector)
            for name, vector in vectors.items()
        }
        num_experts = len(expert_names)

        representations, gates = {}, {}
        if variant == "single":
            language = languages[0]
            representations[task_name(language)] = (
                keras.layers.Concatenate(name="representation")(list(vectors.values()))
                if num_experts > 1
                else vectors[expert_names[0]]
            )
        elif variant == "multigate":
            # T[b, i, j] = W_ij v_j for every pair (eq. 8), shared by the languages.
            transitions = []
            for name in expert_names:
                mapped = keras.layers.Dense(
                    num_experts * expert_units, use_bias=False, name=f"{name}_transitions"
                )(vectors[name])
                transitions.append(
                    keras.layers.Reshape(
                        (num_experts, expert_units), name=f"{name}_transitions_reshape"
                    )(mapped)
                )
            transitions = ops.stack(transitions, axis=2)  # [B, M_i, M_j, units]
            for index, language in enumerate(languages):
                routed = HardConcreteRouting(
                    beta=hard_concrete_beta,
                    gamma=hard_concrete_gamma,
                    delta=hard_concrete_delta,
                    l0_penalty_weight=l0_penalty_weight,
                    seed=None if seed is None else int(seed) + index,
                    name=f"routing_{language}",
                )(transitions)
                gate = SoftmaxGate(num_experts, name=f"gate_{language}")(selector)
                task = task_name(language)
                gates[task] = gate
                representations[task] = ops.einsum("bm,bmd->bd", gate, routed)
        else:
            projected = ops.stack(
                [
                    keras.layers.Dense(expert_units, use_bias=False, name=f"{name}_projection")(
                        vectors[name]
                    )
                    for name in expert_names
                ],
                axis=1,
            )  # [B, M, units]
            if variant in ("base", "shared_bottom"):
                summed = ops.sum(projected, axis=1)
                tasks = (SHARED_TASK,) if variant == "base" else tuple(map(task_name, languages))
                for task in tasks:
                    representations[task] = summed
            elif variant == "omoe":
                gate = SoftmaxGate(num_experts, name="gate")(selector)
                mixed = ops.einsum("bm,bmd->bd", gate, projected)
                for language in languages:
                    gates[task_name(language)] = gate
                    representations[task_name(language)] = mixed
            else:  # mmoe
                for language in languages:
                    gate = SoftmaxGate(num_experts, name=f"gate_{language}")(selector)
                    gates[task_name(language)] = gate
                    representations[task_name(language)] = ops.einsum("bm,bmd->bd", gate, projected)

        outputs = {}
        if variant == "base":
            label_names = {SHARED_TASK: union_of_classes(class_names)}
            outputs[SHARED_TASK] = _tower(
                representations[SHARED_TASK],
                shared_tower_units,
                shared_tower_activations,
                dropout_rate,
                len(label_names[SHARED_TASK]),
                "shared_tower",
                SHARED_TASK,
            )
            base_weight = (
                float(np.mean(list(contrastive_weights.values())))
                if shared_contrastive_weight is None
                else shared_contrastive_weight
            )
            task_contrastive = {SHARED_TASK: base_weight}
        else:
            label_names = {task_name(lang): class_names[lang] for lang in languages}
            task_contrastive = {}
            for language in languages:
                task = task_name(language)
                outputs[task] = _tower(
                    representations[task],
                    tower_units[language],
                    tower_activations[language],
                    dropout_rate,
                    len(class_names[language]),
                    f"tower_{language}",
                    task,
                )
                task_contrastive[task] = contrastive_weights[language]

        inputs = features if not embedding_inputs else {"features": features, **embedding_inputs}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # Contrastive losses (eq. 3-6) with their learnable w and b, per head.
        self.contrastive_losses = {}
        for task, weight in task_contrastive.items():
            if weight > 0:
                layer = GE2EContrastiveLoss(
                    len(label_names[task]),
                    min_samples_per_class=min_samples_per_class,
                    reduction=contrastive_reduction,
                    name=f"{task}_contrastive",
                )
                layer.build()
                self.contrastive_losses[task] = layer
        self.contrastive_trackers = {
            task: keras.metrics.Mean(name=f"{task}_contrastive_loss")
            for task in self.contrastive_losses
        }
        self._task_contrastive_weights = task_contrastive
        self._label_names = {task: list(names) for task, names in label_names.items()}
        self._expert_names = expert_names
        # Representations (tower inputs) and gates of the same graph, for the
        # contrastive loss, Figure 4 and analysis; not tracked as sublayers.
        self._functionals = (
            _View(keras.Model(features, functionals, name=f"{self.name}_functionals"))
            if "statistics" in experts and normalize_statistics
            else None
        )
        self._details = _View(
            keras.Model(
                inputs,
                {"probabilities": outputs, "representations": representations, "gates": gates},
                name=f"{self.name}_details",
            )
        )

        # === Config ===
        self.class_names = {lang: list(names) for lang, names in class_names.items()}
        self.variant = variant
        self.experts = experts
        self.embedding_dims = embedding_dims
        self.gate_selector = gate_selector
        self.num_frames = num_frames
        self.num_mels = num_mels
        self.pad_value = None if pad_value is None else float(pad_value)
        self.logmel_conv_filters = logmel_conv_filters
        self.logmel_conv_kernel_sizes = logmel_conv_kernel_sizes
        self.logmel_lstm_units = logmel_lstm_units
        self.logmel_lstm_layers = logmel_lstm_layers
        self.logmel_attention_units = logmel_attention_units
        self.num_mfcc = num_mfcc
        self.mfcc_conv_filters = mfcc_conv_filters
        self.mfcc_conv_kernel_sizes = mfcc_conv_kernel_sizes
        self.mfcc_lstm_units = mfcc_lstm_units
        self.mfcc_lstm_layers = mfcc_lstm_layers
        self.mfcc_attention_units = mfcc_attention_units
        self.normalize_statistics = bool(normalize_statistics)
        self.expert_units = expert_units
        self.dropout_rate = float(dropout_rate)
        self.tower_units = tower_units
        self.tower_activations = tower_activations
        self.shared_tower_units = shared_tower_units
        self.shared_tower_activations = shared_tower_activations
        self.contrastive_weights = contrastive_weights
        self.shared_contrastive_weight = shared_contrastive_weight
        self.min_samples_per_class = min_samples_per_class
        self.contrastive_reduction = contrastive_reduction
        self.hard_concrete_beta = float(hard_concrete_beta)
        self.hard_concrete_gamma = float(hard_concrete_gamma)
        self.hard_concrete_delta = float(hard_concrete_delta)
        self.l0_penalty_weight = l0_penalty_weight
        self.seed = seed

    # ------------------------------------------------------------------ info
    @property
    def languages(self):
        """The languages, in head order."""
        return tuple(self.class_names)

    @property
    def expert_names(self):
        """The experts in gate order: internal experts, then embeddings."""
        return self._expert_names

    @property
    def label_names(self):
        """Dict task -> class names (for reports and `export_saved_model`)."""
        return {task: list(names) for task, names in self._label_names.items()}

    @property
    def task_contrastive_weights(self):
        """Dict task -> alpha of the contrastive loss (0 = off)."""
        return dict(self._task_contrastive_weights)

    def task_of(self, language):
        """The head that classifies `language`'s samples."""
        if language not in self.class_names:
            raise ValueError(
                f"Unknown language {language!r}; the model has {list(self.languages)}."
            )
        return SHARED_TASK if self.variant == "base" else task_name(language)

    def connection_gates(self):
        """Dict language -> deterministic NAS gates `xi` `[experts, experts]` (`"multigate"`)."""
        if self.variant != "multigate":
            return {}
        return {
            language: keras.ops.convert_to_numpy(
                self.get_layer(f"routing_{language}").gates(training=False)
            )
            for language in self.languages
        }

    def adapt_normalization(self, inputs, batch_size=256):
        """Fits the functionals' feature-wise standardisation to (training) inputs.

        Sets the mean and variance of the `"statistics_normalization"` layer
        from the functionals of `inputs` (as `keras.layers.Normalization.adapt`);
        call it once on the training data before `fit`. Without it the
        functionals enter unscaled. A no-op without that layer.

        Args:
            inputs: Model inputs (features, or the dict with `"features"`).
            batch_size: Batch size of the pass computing the functionals.
        """
        if self._functionals is None:
            return
        features = inputs["features"] if isinstance(inputs, dict) else inputs
        values = self._functionals.model.predict(features, batch_size=batch_size, verbose=0)
        self.get_layer("statistics_normalization").adapt(values)

    def forward_with_details(self, inputs, training=False):
        """One forward pass returning probabilities, tower inputs and gate weights.

        Returns:
            Dict with `"probabilities"` (task -> `[batch, classes]`),
            `"representations"` (task -> the tower input, `[batch, units]`)
            and `"gates"` (task -> softmax gate weights `[batch, experts]`,
            gated variants only).
        """
        return self._details.model(inputs, training=training)

    def predict_details(self, inputs, batch_size=64):
        """`forward_with_details` over a dataset in batches, as NumPy arrays."""
        return self._details.model.predict(inputs, batch_size=batch_size, verbose=0)

    # ---------------------------------------------------------------- losses
    def _contrastive_terms(self, y, representations):
        labels = self._labels_dict(y)
        terms = {}
        for task, layer in self.contrastive_losses.items():
            if task in labels and labels[task] is not None:
                terms[task] = layer(representations[task], labels[task])
        return terms

    def _loss_with_contrastive(self, terms, contrastive):
        """Eq. 6 per head: the masked cross-entropy total plus `alpha * L_contrastive`.

        A "sum" reduction is the sum over the replicas' samples (each replica
        adds its own); a "mean" is averaged over the replicas. Centroids come
        from each replica's part of the batch.
        """
        num_replicas, _ = replica_context()
        total = self._total_loss(terms)
        scale = 1.0 if self.contrastive_reduction == "sum" else 1.0 / num_replicas
        for task, value in contrastive.items():
            total = total + self._task_contrastive_weights[task] * scale * value
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The masked cross-entropies plus the contrastive and L0 terms (one forward pass).

        `y_pred` is ignored: the representations come from the same pass.
        """
        details = self.forward_with_details(x, training=training)
        terms = self._loss_terms(y, details["probabilities"], sample_weight, training=training)
        contrastive = self._contrastive_terms(y, details["representations"])
        return self._loss_with_contrastive(terms, contrastive)

    @property
    def metrics(self):
        return super().metrics + list(self.contrastive_trackers.values())

    def _step_logs(self, x, y, y_pred, sample_weight, terms, contrastive, loss):
        logs = self._update_metrics(x, y, y_pred, sample_weight, terms, loss)
        for task, value in contrastive.items():
            tracker = self.contrastive_trackers[task]
            tracker.update_state(value)
            logs[tracker.name] = tracker.result()
        uas = [self.task_ua_metrics[task].result() for task in terms]
        if uas:
            logs["mean_ua"] = ops.mean(ops.stack(uas))
        return logs

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            details = self.forward_with_details(x, training=True)
            y_pred = details["probabilities"]
            terms = self._loss_terms(y, y_pred, sample_weight, training=True)
            contrastive = self._contrastive_terms(y, details["representations"])
            loss = self._loss_with_contrastive(terms, contrastive)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables, strict=True) if g is not None]
        if pairs:
            self.optimizer.apply_gradients(pairs)
        return self._step_logs(x, y, y_pred, sample_weight, terms, contrastive, loss)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        details = self.forward_with_details(x, training=False)
        y_pred = details["probabilities"]
        terms = self._loss_terms(y, y_pred, sample_weight)
        contrastive = self._contrastive_terms(y, details["representations"])
        loss = self._loss_with_contrastive(terms, contrastive)
        return self._step_logs(x, y, y_pred, sample_weight, terms, contrastive, loss)

    # --------------------------------------------------------- serialisation
    def get_config(self):
        # Not chained to MultiTaskModel.get_config(): the constructor takes
        # these arguments, not a serialised graph (keras-hub Backbone style).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "class_names": {lang: list(names) for lang, names in self.class_names.items()},
            "variant": self.variant,
            "experts": list(self.experts),
            "embedding_dims": dict(self.embedding_dims),
            "gate_selector": self.gate_selector,
            "num_frames": self.num_frames,
            "num_mels": self.num_mels,
            "pad_value": self.pad_value,
            "logmel_conv_filters": self.logmel_conv_filters,
            "logmel_conv_kernel_sizes": list(self.logmel_conv_kernel_sizes),
            "logmel_lstm_units": self.logmel_lstm_units,
            "logmel_lstm_layers": self.logmel_lstm_layers,
            "logmel_attention_units": self.logmel_attention_units,
            "num_mfcc": self.num_mfcc,
            "mfcc_conv_filters": self.mfcc_conv_filters,
            "mfcc_conv_kernel_sizes": list(self.mfcc_conv_kernel_sizes),
            "mfcc_lstm_units": self.mfcc_lstm_units,
            "mfcc_lstm_layers": self.mfcc_lstm_layers,
            "mfcc_attention_units": self.mfcc_attention_units,
            "normalize_statistics": self.normalize_statistics,
            "expert_units": self.expert_units,
            "dropout_rate": self.dropout_rate,
            "tower_units": dict(self.tower_units),
            "tower_activations": {k: list(v) for k, v in self.tower_activations.items()},
            "shared_tower_units": self.shared_tower_units,
            "shared_tower_activations": list(self.shared_tower_activations),
            "contrastive_weights": dict(self.contrastive_weights),
            "shared_contrastive_weight": self.shared_contrastive_weight,
            "min_samples_per_class": self.min_samples_per_class,
            "contrastive_reduction": self.contrastive_reduction,
            "hard_concrete_beta": self.hard_concrete_beta,
            "hard_concrete_gamma": self.hard_concrete_gamma,
            "hard_concrete_delta": self.hard_concrete_delta,
            "l0_penalty_weight": self.l0_penalty_weight,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # The graph holds Bidirectional layers: see ser_keras.utils.keras_loading.
        with outside_object_sharing():
            return cls(**copy.deepcopy(config))

    @classmethod
    def from_preset(cls, preset, **overrides):
        """Builds the model from a preset of `PRESETS`, with arguments overridden.

        Args:
            preset: `"wang"` (the paper's sizes) or `"wang_cpu"` (scaled down
                for a CPU; not the paper's).
            **overrides: Constructor arguments replacing or adding to the
                preset's; `class_names` is required.
        """
        config = preset_config(PRESETS, preset, overrides)
        if "class_names" not in overrides:
            raise ValueError("`class_names` (dict language -> class names) must be given.")
        return cls(**config)


def _sequence_expert(
    sequence,
    mask,
    prefix,
    conv_filters,
    conv_kernel_sizes,
    lstm_units,
    lstm_layers,
    attention_units,
):
    """CNN + stacked BiLSTM + last-state attention (Section 4.1) -> `[batch, attention_units]`.

    Padded frames are set to 0 before the convolutions (as their "same"
    zero padding), so an utterance gives the same vector whatever its padding.
    """
    sequence = sequence * ops.cast(ops.expand_dims(mask, -1), sequence.dtype)
    branches = [
        keras.layers.Conv1D(
            conv_filters, width, padding="same", activation="relu", name=f"{prefix}_conv_{width}"
        )(sequence)
        for width in conv_kernel_sizes
    ]
    x = (
        keras.layers.Concatenate(name=f"{prefix}_ngrams")(branches)
        if len(branches) > 1
        else branches[0]
    )
    for index in range(lstm_layers - 1):
        x = keras.layers.Bidirectional(
            keras.layers.LSTM(lstm_units, return_sequences=True), name=f"{prefix}_blstm_{index + 1}"
        )(x, mask=mask)
    x, forward_h, _, backward_h, _ = keras.layers.Bidirectional(
        keras.layers.LSTM(lstm_units, return_sequences=True, return_state=True),
        name=f"{prefix}_blstm_{lstm_layers}",
    )(x, mask=mask)
    last_state = keras.layers.Concatenate(name=f"{prefix}_last_state")([forward_h, backward_h])
    return LastStateAttention(attention_units, name=f"{prefix}_attention")(last_state, x, mask=mask)


def _tower(x, units, activations, dropout_rate, num_classes, prefix, task):
    """Feed-forward classification tower `h_k` ending in the task's softmax head."""
    for index, activation in enumerate(activations):
        x = keras.layers.Dense(units, activation=activation, name=f"{prefix}_dense_{index + 1}")(x)
        x = keras.layers.Dropout(dropout_rate, name=f"{prefix}_dropout_{index + 1}")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name=task)(x)
