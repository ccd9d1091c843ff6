"""ser_keras: speech emotion recognition with multi-task, cross-language and
semi-supervised learning in Keras 3 / TensorFlow."""

__version__ = "0.1.0"
