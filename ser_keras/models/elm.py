"""Extreme Learning Machine (ELM): a random hidden layer and a least-squares output layer.

Han et al. (2014) and Lee & Tashev (2015) classify the utterance-level
high-level features (functionals of the frame posteriors) with an ELM; Kim et
al. (2017) keep "the same setting of ELM". An ELM is a single-hidden-layer
network whose input weights and biases are drawn at random and never trained;
only the output weights are fitted, in closed form, by regularised least
squares onto one-hot targets:

    H = g(X W + b),   beta = (H^T H + I / C)^-1 H^T T     (N >= L)
                      beta = H^T (H H^T + I / C)^-1 T     (N <  L)

with `L` hidden units, activation `g`, targets `T` (one-hot), and `C` the
`regularization` (None: the Moore-Penrose pseudo-inverse, `beta = H^+ T`).
Prediction is the arg-max of `H beta`.

Our choices (the papers do not give them): inputs are standardised with the
training mean and standard deviation; weights and biases uniform in [-1, 1];
sigmoid activation; 100 hidden units; C = 1. `predict_proba` turns the
least-squares outputs (estimates of the class posteriors) into probabilities
by clipping at 0 and normalising each row to sum 1 (uniform when no output is
positive).

Reference:
    G.-B. Huang, H. Zhou, X. Ding, R. Zhang, "Extreme learning machine for
    regression and multiclass classification", IEEE Trans. SMC-B 42(2), 2012.
    K. Han, D. Yu, I. Tashev, "Speech emotion recognition using deep neural
    network and extreme learning machine", Interspeech 2014.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

ACTIVATIONS = ("sigmoid", "tanh", "relu")


def _activation(name, values):
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * values))  # overflow-free logistic
    if name == "tanh":
        return np.tanh(values)
    return np.maximum(values, 0.0)


class ExtremeLearningMachine:
    """ELM classifier (NumPy), deterministic for a seed.

    Example:
    ```python
    elm = ExtremeLearningMachine(num_hidden=100, seed=0).fit(train_features, train_labels)
    predictions = elm.predict(test_features)
    ```

    Args:
        num_hidden: Hidden units `L`.
        activation: `"sigmoid"`, `"tanh"` or `"relu"`.
        regularization: `C` of the ridge solution (> 0); None for the
            pseudo-inverse (no regularisation).
        standardize: Standardise the inputs with the training statistics.
        seed: Seed of the random hidden layer.

    Reference:
        Huang et al., IEEE Trans. SMC-B 2012 (equations of the module docstring).
    """

    def __init__(
        self, num_hidden=100, activation="sigmoid", regularization=1.0, standardize=True, seed=0
    ):
        if isinstance(num_hidden, bool) or not isinstance(num_hidden, (int, np.integer)):
            raise ValueError(f"`num_hidden` must be a positive integer; received {num_hidden!r}.")
        if num_hidden < 1:
            raise ValueError(f"`num_hidden` must be a positive integer; received {num_hidden!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {ACTIVATIONS}; received {activation!r}.")
        if regularization is not None and not float(regularization) > 0:
            raise ValueError(f"`regularization` must be > 0 or None; received {regularization!r}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer; received {seed!r}.")
        self.num_hidden = int(num_hidden)
        self.activation = activation
        self.regularization = None if regularization is None else float(regularization)
        self.standardize = bool(standardize)
        self.seed = int(seed)
        self.num_classes = None
        self.input_weights = None
        self.biases = None
        self.output_weights = None
        self.mean = None
        self.scale = None

    # ---------------------------------------------------------------- fit
    def _check_features(self, features, name="features"):
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError(
                f"`{name}` must be a non-empty [samples, dims] array; "
                f"received shape {features.shape}."
            )
        if not np.all(np.isfinite(features)):
            raise ValueError(f"`{name}` holds non-finite values (NaN or inf).")
        return features

    def _hidden(self, features):
        if self.standardize:
            features = (features - self.mean) / self.scale
        return _activation(self.activation, features @ self.input_weights + self.biases)

    def fit(self, features, labels, num_classes=None):
        """Draws the hidden layer and solves the output weights.

        Args:
            features: `[N, dims]` training inputs.
            labels: int `[N]` class ids; -1 marks a sample left out.
            num_classes: Number of classes; default `max(labels) + 1`.

        Returns:
            self.
        """
        features = self._check_features(features)
        labels = np.asarray(labels)
        if labels.shape != (features.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"`labels` must be int [{features.shape[0]}]; received {labels.dtype} "
                f"{labels.shape}."
            )
        keep = labels >= 0
        if not np.any(keep):
            raise ValueError("`labels` has no labelled sample (all -1).")
        features, labels = features[keep], labels[keep]
        largest = int(labels.max())
        if num_classes is None:
            num_classes = largest + 1
        if num_classes <= largest:
            raise ValueError(f"`num_classes`={num_classes} is too small for the label {largest}.")
        self.num_classes = int(num_classes)

        if self.standardize:
            self.mean = features.mean(axis=0)
            scale = features.std(axis=0)
            self.scale = np.where(scale > 1e-12, scale, 1.0)
        rng = np.random.default_rng(self.seed)
        dims = features.shape[1]
        self.input_weights = rng.uniform(-1.0, 1.0, size=(dims, self.num_hidden))
        self.biases = rng.uniform(-1.0, 1.0, size=(self.num_hidden,))

        hidden = self._hidden(features)
        targets = np.eye(self.num_classes)[labels]
        samples = hidden.shape[0]
        if self.regularization is None:
            self.output_weights = np.linalg.pinv(hidden) @ targets
        elif samples >= self.num_hidden:
            gram = hidden.T @ hidden + np.eye(self.num_hidden) / self.regularization
            self.output_weights = np.linalg.solve(gram, hidden.T @ targets)
        else:
            gram = hidden @ hidden.T + np.eye(samples) / self.regularization
            self.output_weights = hidden.T @ np.linalg.solve(gram, targets)
        return self

    # ------------------------------------------------------------ predict
    def _check_fitted(self):
        if self.output_weights is None:
            raise ValueError("This ExtremeLearningMachine is not fitted yet: call fit() first.")

    def decision_function(self, features):
        """The least-squares outputs `H beta`, `[N, num_classes]`."""
        self._check_fitted()
        features = self._check_features(features)
        if features.shape[1] != self.input_weights.shape[0]:
            raise ValueError(
                f"Expected {self.input_weights.shape[0]} input dims; received {features.shape[1]}."
            )
        return self._hidden(features) @ self.output_weights

    def predict_proba(self, features):
        """Outputs clipped at 0 and normalised per row, float32 `[N, num_classes]`."""
        scores = np.maximum(self.decision_function(features), 0.0)
        totals = scores.sum(axis=1, keepdims=True)
        uniform = np.full_like(scores, 1.0 / self.num_classes)
        safe = np.where(totals > 0, totals, 1.0)
        return np.where(totals > 0, scores / safe, uniform).astype(np.float32)

    def predict(self, features):
        """Class ids `[N]` (int64): the arg-max of the outputs."""
        return np.argmax(self.decision_function(features), axis=1)

    # ------------------------------------------------------------- storage
    def get_config(self):
        """The constructor arguments."""
        return {
            "num_hidden": self.num_hidden,
            "activation": self.activation,
            "regularization": self.regularization,
            "standardize": self.standardize,
            "seed": self.seed,
        }

    def save(self, path):
        """Writes the fitted machine to a `.npz` file (config + arrays); returns the path."""
        self._check_fitted()
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "input_weights": self.input_weights,
            "biases": self.biases,
            "output_weights": self.output_weights,
        }
        if self.standardize:
            arrays.update(mean=self.mean, scale=self.scale)
        config = dict(self.get_config(), num_classes=self.num_classes)
        with open(path, "wb") as handle:
            np.savez(handle, config=np.array(json.dumps(config)), **arrays)
        return path

    @classmethod
    def load(cls, path):
        """Reads a machine written by `save`."""
        with np.load(path) as data:
            config = json.loads(str(data["config"]))
            num_classes = config.pop("num_classes")
            machine = cls(**config)
            machine.num_classes = num_classes
            machine.input_weights = data["input_weights"]
            machine.biases = data["biases"]
            machine.output_weights = data["output_weights"]
            if machine.standardize:
                machine.mean = data["mean"]
                machine.scale = data["scale"]
        return machine
