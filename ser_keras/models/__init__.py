"""Model builders, one module per paper, each with presets holding the paper's numbers.

Importing this package registers every ser_keras model and layer class with
Keras, so `keras.saving.load_model` reads any `.keras` file the apps write
after `import ser_keras.models`.
"""

from ser_keras.models.aae_mtl import AAEMultiTaskModel
from ser_keras.models.attention_cnn_blstm import AttentionCNNBLSTM
from ser_keras.models.kim_mtl import KimMTL
from ser_keras.models.multigate import MultiGatingSER
from ser_keras.models.resnet_lstm import ResNetLSTM

# The utterance-level wrapper of segment classifiers (paper 002's serving model).
import ser_keras.export.segment_model  # noqa: E402, F401  isort: skip

__all__ = ["AAEMultiTaskModel", "AttentionCNNBLSTM", "KimMTL", "MultiGatingSER", "ResNetLSTM"]
