import sys

import numpy as np
import pytest

from ser_keras.features.opensmile_functionals import opensmile_available, opensmile_functionals


def _fake_opensmile(calls):
    class FakeSmile:
        def __init__(self, feature_set, feature_level):
            calls.append((feature_set, feature_level))

        def process_signal(self, signal, sampling_rate):
            return np.full((1, 88), float(len(signal)) / sampling_rate)

    fake = type(sys)("opensmile")
    fake.Smile = FakeSmile
    fake.FeatureSet = type(
        "FeatureSet", (), {"eGeMAPSv02": "eGeMAPSv02", "ComParE_2016": "ComParE_2016"}
    )
    fake.FeatureLevel = type("FeatureLevel", (), {"Functionals": "Functionals"})
    return fake


def test_egemaps_functionals_come_from_opensmile(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "opensmile", _fake_opensmile(calls))
    assert opensmile_available()
    array = opensmile_functionals([np.zeros(16000), np.zeros(8000)], 16000)
    assert calls == [("eGeMAPSv02", "Functionals")]
    assert array.shape == (2, 88) and array.dtype == np.float32
    np.testing.assert_allclose(array[:, 0], [1.0, 0.5])
    opensmile_functionals([np.zeros(16000)], 16000, feature_set="compare")
    assert calls[-1] == ("ComParE_2016", "Functionals")
    with pytest.raises(ValueError, match="'gemaps'"):
        opensmile_functionals([np.zeros(10)], 16000, feature_set="gemaps")


def test_without_opensmile(monkeypatch):
    monkeypatch.setitem(sys.modules, "opensmile", None)  # as where it is not installed
    assert not opensmile_available()
    with pytest.raises(ImportError):
        opensmile_functionals([np.zeros(10)], 16000)
