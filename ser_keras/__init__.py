"""ser_keras: speech emotion recognition with multi-task, cross-language and
semi-supervised learning in Keras 3 / TensorFlow."""

__version__ = "0.1.0"


def __getattr__(name):
    """`ser_keras.predict` (a callable module) and `ser_keras.Predictor`, imported on first use.

    `import ser_keras` stays light (no TensorFlow); the prediction code loads
    when first asked for.
    """
    if name in ("predict", "Predictor"):
        import importlib

        module = importlib.import_module("ser_keras.predict")
        return module if name == "predict" else module.Predictor
    raise AttributeError(f"module 'ser_keras' has no attribute {name!r}")
