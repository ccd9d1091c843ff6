"""Model builders, one module per paper, each with presets holding the paper's numbers."""

from ser_keras.models.attention_cnn_blstm import AttentionCNNBLSTM

__all__ = ["AttentionCNNBLSTM"]
