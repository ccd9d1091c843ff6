"""Mel-frequency cepstral coefficients from log-mel frames, as a Keras layer.

`MelCepstrum` is the orthonormal DCT-II over the mel axis (what
`librosa.feature.mfcc(S=log_mel)` computes), registered with Keras as
`ser_keras>MelCepstrum` (its name since it was defined in
`ser_keras.models.multigate`, so saved models keep loading).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


def dct_matrix(num_mels, num_coefficients):
    """`[num_mels, num_coefficients]` orthonormal DCT-II matrix (`dct(type=2, norm="ortho")`)."""
    n = np.arange(num_mels)
    k = np.arange(num_coefficients)
    matrix = np.cos(np.pi / num_mels * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / num_mels)
    matrix[:, 0] /= math.sqrt(2.0)
    return matrix.astype("float32")


@keras.saving.register_keras_serializable(package="ser_keras")
class MelCepstrum(keras.layers.Layer):
    """MFCCs from log-mel frames: the orthonormal DCT-II over the mel axis.

    On a dB log-mel spectrogram this is exactly `librosa.feature.mfcc(S=...)`;
    on the front-end's per-utterance normalised log-mel it gives the MFCCs up
    to that normalisation's scale and the offset of coefficient 0.

    Args:
        num_coefficients: Number of cepstral coefficients kept (librosa: 20).
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    def __init__(self, num_coefficients=20, **kwargs):
        super().__init__(**kwargs)
        if (
            isinstance(num_coefficients, bool)
            or not isinstance(num_coefficients, int)
            or num_coefficients < 1
        ):
            raise ValueError(
                f"`num_coefficients` must be a positive integer; received {num_coefficients!r}."
            )
        self.num_coefficients = num_coefficients

    def build(self, input_shape):
        num_mels = input_shape[-1]
        if num_mels is None or num_mels < self.num_coefficients:
            raise ValueError(
                f"MelCepstrum needs at least num_coefficients={self.num_coefficients} mel bands; "
                f"received input shape {tuple(input_shape)}."
            )
        self._matrix = dct_matrix(int(num_mels), self.num_coefficients)

    def call(self, log_mel):
        return ops.matmul(log_mel, ops.convert_to_tensor(self._matrix, dtype=log_mel.dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_coefficients,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_coefficients": self.num_coefficients})
        return config
