import keras
import numpy as np
import pytest
import scipy.fft

from ser_keras.layers.cepstrum import MelCepstrum, dct_matrix


def test_mel_cepstrum_is_librosa_mfcc():
    # librosa.feature.mfcc(S=log_mel) is the orthonormal DCT-II over the mel
    # axis, cut to n_mfcc (scipy's dct, as librosa calls it).
    rng = np.random.default_rng(0)
    log_mel = rng.normal(size=(40, 30)).astype("float32") * 10  # [frames, mels] in dB
    expected = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=-1)[:, :13]
    got = keras.ops.convert_to_numpy(MelCepstrum(13)(log_mel[None]))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        log_mel @ dct_matrix(30, 13), expected, rtol=1e-4, atol=1e-3
    )


def test_mel_cepstrum_checks_its_sizes():
    with pytest.raises(ValueError, match="0"):
        MelCepstrum(0)
    with pytest.raises(ValueError, match="num_coefficients=13"):
        MelCepstrum(13)(np.zeros((1, 4, 8), "float32"))


def test_mel_cepstrum_keeps_the_registered_name_of_saved_models():
    # Saved before the layer moved out of ser_keras.models.multigate: the
    # registered name (not the module) finds the class.
    assert keras.saving.get_registered_name(MelCepstrum) == "ser_keras>MelCepstrum"
    saved = {
        "module": "ser_keras.models.multigate",
        "class_name": "MelCepstrum",
        "config": {"name": "mfcc", "num_coefficients": 7},
        "registered_name": "ser_keras>MelCepstrum",
    }
    layer = keras.saving.deserialize_keras_object(saved)
    assert isinstance(layer, MelCepstrum) and layer.num_coefficients == 7
