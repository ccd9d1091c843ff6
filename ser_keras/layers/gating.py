"""Gates of multi-domain models: per-domain softmax gates and hard-concrete connections.

Two mechanisms of Wang et al.'s multilingual model:

* `SoftmaxGate` (eq. 7): `g(x) = softmax(W_k x)` -- a weight per expert,
  computed from a selector vector `x`. One instance per language gives the
  paper's multi-gating (and MMoE's per-task gates); one instance shared by all
  languages gives OMoE.
* `HardConcreteRouting` (eq. 8-9): the neural-architecture-search module.
  Higher-level representations `u_i = sum_j xi_ij W_ij v_j` combine the
  transformed low-level embeddings `W_ij v_j` through connection variables
  `xi_ij` in [0, 1] that follow the hard-concrete distribution of Louizos et
  al. (a stretched, clipped binary concrete with a learnable location
  `log alpha_ij`), so the connectivity is learned by gradient descent.

The hard-concrete functions (`hard_concrete_sample`, `hard_concrete_mean`,
`hard_concrete_open_probability`) follow Louizos et al., Section 4:

    u ~ U(0, 1),  s = sigmoid((log u - log(1 - u) + log alpha) / beta),
    s_bar = s (delta - gamma) + gamma,  xi = min(1, max(0, s_bar)),

with the paper's beta = 0.9, gamma = -0.1, delta = 2 (Wang et al., Section
5.1; `delta` is Louizos et al.'s zeta). Eq. 9 of Wang et al. prints the
division by beta outside the sigmoid; we divide the logit inside it, as in
Louizos et al. (eq. 10 there), of which eq. 9 is a transcription. At inference
the gates are deterministic: `min(1, max(0, sigmoid(log alpha) (delta - gamma)
+ gamma))` (Louizos et al., eq. 13). The expected number of open gates, `sum
sigmoid(log alpha - beta log(-gamma / delta))` (Louizos et al., eq. 12), is
available as an optional L0 penalty; Wang et al. state no penalty, so its
weight defaults to 0.

Reference:
    Z. Wang, Q. Meng, H. Lan, X. Zhang, K. Guo, A. Gupta, "Multilingual
    Speech Emotion Recognition With Multi-Gating Mechanism and Neural
    Architecture Search", Section 4.3 (eq. 7-9) and Section 5.1.
    C. Louizos, M. Welling, D. P. Kingma, "Learning Sparse Neural Networks
    through L0 Regularization", ICLR 2018, Section 4.
    J. Ma, Z. Zhao, J. Chen, A. Li, L. Hong, E. H. Chi, "SNR: Sub-Network
    Routing for Flexible Parameter Sharing in Multi-Task Learning", AAAI 2019.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ser_keras.utils.validation import positive_int

# Wang et al., Section 5.1: "For the NAS module, we let beta = 0.9,
# gamma = -0.1, delta = 2".
HARD_CONCRETE_BETA = 0.9
HARD_CONCRETE_GAMMA = -0.1
HARD_CONCRETE_DELTA = 2.0

# Keeps log(u) and log(1 - u) finite.
_UNIFORM_EPSILON = 1e-6


def _check_hard_concrete(beta, gamma, delta):
    for name, value in (("beta", beta), ("gamma", gamma), ("delta", delta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`{name}` must be a number; received {value!r}.")
        if not math.isfinite(value):
            raise ValueError(f"`{name}` must be finite; received {value!r}.")
    if beta <= 0:
        raise ValueError(f"`beta` (the temperature) must be > 0; received {beta!r}.")
    if not gamma < 0:
        raise ValueError(f"`gamma` must be < 0 (the stretch below 0); received {gamma!r}.")
    if not delta > 1:
        raise ValueError(f"`delta` must be > 1 (the stretch above 1); received {delta!r}.")


def hard_concrete_sample(
    log_alpha,
    beta=HARD_CONCRETE_BETA,
    gamma=HARD_CONCRETE_GAMMA,
    delta=HARD_CONCRETE_DELTA,
    seed=None,
):
    """Draws hard-concrete gates `xi` in [0, 1] with the shape of `log_alpha` (eq. 9).

    Differentiable with respect to `log_alpha` (reparameterised through the
    uniform noise); exactly 0 or 1 with non-zero probability.

    Args:
        log_alpha: Location parameters `log alpha` (any shape).
        beta: Temperature.
        gamma: Lower end of the stretch interval (< 0).
        delta: Upper end of the stretch interval (> 1).
        seed: A `keras.random.SeedGenerator` or an int, for the uniform noise.

    Returns:
        Tensor of `log_alpha`'s shape and dtype.
    """
    log_alpha = ops.convert_to_tensor(log_alpha)
    uniform = keras.random.uniform(
        ops.shape(log_alpha),
        minval=_UNIFORM_EPSILON,
        maxval=1.0 - _UNIFORM_EPSILON,
        dtype=log_alpha.dtype,
        seed=seed,
    )
    logistic = ops.log(uniform) - ops.log(1.0 - uniform)
    stretched = ops.sigmoid((logistic + log_alpha) / beta) * (delta - gamma) + gamma
    return ops.clip(stretched, 0.0, 1.0)


def hard_concrete_mean(log_alpha, gamma=HARD_CONCRETE_GAMMA, delta=HARD_CONCRETE_DELTA):
    """Deterministic test-time gates: `min(1, max(0, sigmoid(log alpha)(delta - gamma) + gamma))`.

    Args:
        log_alpha: Location parameters (any shape).
        gamma: Lower end of the stretch interval.
        delta: Upper end of the stretch interval.

    Returns:
        Tensor of `log_alpha`'s shape, values in [0, 1].
    """
    log_alpha = ops.convert_to_tensor(log_alpha)
    return ops.clip(ops.sigmoid(log_alpha) * (delta - gamma) + gamma, 0.0, 1.0)


def hard_concrete_open_probability(
    log_alpha, beta=HARD_CONCRETE_BETA, gamma=HARD_CONCRETE_GAMMA, delta=HARD_CONCRETE_DELTA
):
    """`P(xi > 0) = sigmoid(log alpha - beta log(-gamma / delta))` per gate.

    Its sum is the expected L0 norm of the gates (Louizos et al., eq. 12),
    the differentiable sparsity penalty.

    Args:
        log_alpha: Location parameters (any shape).
        beta: Temperature.
        gamma: Lower end of the stretch interval (< 0).
        delta: Upper end of the stretch interval (> 1).

    Returns:
        Tensor of `log_alpha`'s shape, values in (0, 1).
    """
    _check_hard_concrete(beta, gamma, delta)
    log_alpha = ops.convert_to_tensor(log_alpha)
    return ops.sigmoid(log_alpha - beta * math.log(-gamma / delta))


@keras.saving.register_keras_serializable(package="ser_keras")
class SoftmaxGate(keras.layers.Layer):
    """A softmax gate over experts: `g(x) = softmax(W_k x)` (eq. 7).

    Args:
        num_experts: Number of experts `M` weighted by the gate.
        use_bias: Add a bias before the softmax (eq. 7 has none: False).
        kernel_initializer: Initializer of `W_k`.
        kernel_regularizer: Optional regularizer of `W_k`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        selector: `[batch, features]`, the selector vector `x` (the GE2E
            embedding in the paper).

    Returns:
        `[batch, num_experts]` weights, non-negative, summing to 1 per sample.

    Reference:
        Wang et al., Section 4.3.1, eq. 7; Ma et al., "Modeling task
        relationships in multi-task learning with multi-gate
        mixture-of-experts", KDD 2018.
    """

    def __init__(
        self,
        num_experts,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = positive_int("num_experts", num_experts)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "SoftmaxGate expects a selector [batch, features] with a known feature size; "
                f"received shape {tuple(input_shape)}."
            )
        self.kernel = self.bias = None
        if self.num_experts == 1:
            return  # a softmax over one expert is 1: nothing to learn.
        self.kernel = self.add_weight(
            name="kernel",
            shape=(int(input_shape[-1]), self.num_experts),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.num_experts,), initializer="zeros")

    def call(self, selector):
        if self.num_experts == 1:
            return ops.ones((ops.shape(selector)[0], 1), dtype=self.compute_dtype)
        logits = ops.matmul(selector, self.kernel)
        if self.bias is not None:
            logits = logits + self.bias
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_experts)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="ser_keras")
class HardConcreteRouting(keras.layers.Layer):
    """Learned sparse connections between embeddings: `u_i = sum_j xi_ij W_ij v_j` (eq. 8).

    Takes the transformed embeddings `T[b, i, j] = W_ij v_j` (every low-level
    embedding `v_j` mapped by its transition matrix towards every
    higher-level representation `u_i`) and sums them over `j` with the
    connection variables `xi_ij` of a `[num_outputs, num_inputs]` matrix of
    hard-concrete gates (eq. 9). In training one gate matrix is drawn per
    call (per batch; shared by its samples); at inference the deterministic
    gates are used. With `l0_penalty_weight > 0`, training adds
    `l0_penalty_weight * sum_ij P(xi_ij > 0)` to the layer's losses.

    Args:
        beta: Temperature of the hard-concrete distribution (0.9).
        gamma: Lower end of the stretch interval (-0.1).
        delta: Upper end of the stretch interval (2).
        l0_penalty_weight: Weight of the expected-L0 penalty (0: none; the
            paper states none).
        log_alpha_initializer: Initializer of `log alpha`. The default,
            normal with mean 0 and standard deviation 0.01, starts every
            connection half-open (`sigmoid(0) = 0.5`, as Louizos et al.'s
            initial drop rate 0.5); the deterministic gate is then
            `0.5 * 2.1 - 0.1 = 0.95`.
        seed: Optional int seed of the gate noise.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        transitions: `[batch, num_outputs, num_inputs, units]`.
        training: Whether to sample the gates (else deterministic gates).
        return_gates: Also return the gate matrix used.

    Returns:
        `[batch, num_outputs, units]` (and `[num_outputs, num_inputs]` gates).

    Reference:
        Wang et al., Section 4.3.2, eq. 8-9; Louizos et al., ICLR 2018;
        Ma et al., AAAI 2019 (SNR).
    """

    def __init__(
        self,
        beta=HARD_CONCRETE_BETA,
        gamma=HARD_CONCRETE_GAMMA,
        delta=HARD_CONCRETE_DELTA,
        l0_penalty_weight=0.0,
        log_alpha_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_hard_concrete(beta, gamma, delta)
        if isinstance(l0_penalty_weight, bool) or not isinstance(l0_penalty_weight, (int, float)):
            raise ValueError(
                f"`l0_penalty_weight` must be a number >= 0; received {l0_penalty_weight!r}."
            )
        if not math.isfinite(l0_penalty_weight) or l0_penalty_weight < 0:
            raise ValueError(
                f"`l0_penalty_weight` must be finite and >= 0; received {l0_penalty_weight!r}."
            )
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.delta = float(delta)
        self.l0_penalty_weight = float(l0_penalty_weight)
        if log_alpha_initializer is None:
            log_alpha_initializer = keras.initializers.RandomNormal(mean=0.0, stddev=0.01)
        self.log_alpha_initializer = keras.initializers.get(log_alpha_initializer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
            raise ValueError(
                "HardConcreteRouting expects transitions [batch, num_outputs, num_inputs, units] "
                f"with known numbers of outputs and inputs; received shape {tuple(input_shape)}."
            )
        self.log_alpha = self.add_weight(
            name="log_alpha",
            shape=(int(input_shape[1]), int(input_shape[2])),
            initializer=self.log_alpha_initializer,
        )

    def gates(self, training=False):
        """The connection gates `xi`: sampled when `training`, else deterministic."""
        log_alpha = ops.convert_to_tensor(self.log_alpha)
        if training:
            return hard_concrete_sample(
                log_alpha, self.beta, self.gamma, self.delta, seed=self.seed_generator
            )
        return hard_concrete_mean(log_alpha, self.gamma, self.delta)

    def expected_l0(self):
        """The expected number of open connections, `sum_ij P(xi_ij > 0)`."""
        return ops.sum(
            hard_concrete_open_probability(self.log_alpha, self.beta, self.gamma, self.delta)
        )

    def call(self, transitions, training=None, return_gates=False):
        gates = self.gates(training=bool(training))
        if training and self.l0_penalty_weight > 0:
            self.add_loss(self.l0_penalty_weight * self.expected_l0())
        gates = ops.cast(gates, transitions.dtype)
        outputs = ops.einsum("ij,bijd->bid", gates, transitions)
        if return_gates:
            return outputs, gates
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "gamma": self.gamma,
                "delta": self.delta,
                "l0_penalty_weight": self.l0_penalty_weight,
                "log_alpha_initializer": keras.initializers.serialize(self.log_alpha_initializer),
                "seed": self.seed,
            }
        )
        return config
