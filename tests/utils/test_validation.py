import numpy as np
import pytest

from ser_keras.utils.validation import positive_int, positive_ints, positive_number


def test_positive_int_accepts_python_and_numpy_ints():
    assert positive_int("units", 3) == 3
    value = positive_int("units", np.int64(4))
    assert value == 4 and type(value) is int
    assert positive_int("num_frames", None, allow_none=True) is None


@pytest.mark.parametrize("value", [0, -2, 2.0, True, "3", None])
def test_positive_int_names_the_value(value):
    with pytest.raises(ValueError, match=r"`units` must be a positive integer\. Received: units="):
        positive_int("units", value)


def test_positive_int_allow_none_message():
    with pytest.raises(ValueError, match="positive integer or None. Received: key_dim=0"):
        positive_int("key_dim", 0, allow_none=True)


def test_positive_ints():
    assert positive_ints("conv_filters", [8, np.int32(16)]) == (8, 16)
    with pytest.raises(ValueError, match="must not be empty"):
        positive_ints("conv_filters", [])
    with pytest.raises(ValueError, match="sequence of positive integers"):
        positive_ints("conv_filters", 8)
    with pytest.raises(ValueError, match="conv_filters=0"):
        positive_ints("conv_filters", (8, 0))


def test_positive_number_accepts_ints_and_floats():
    assert positive_number("top_db", 40) == 40.0
    value = positive_number("hop_length", np.float32(0.016))
    assert type(value) is float and value == pytest.approx(0.016)


@pytest.mark.parametrize("value", [0, -1.5, float("nan"), float("inf"), True, "40", None])
def test_positive_number_names_the_value(value):
    with pytest.raises(ValueError, match=r"`top_db` must be a positive number\. Received: top_db="):
        positive_number("top_db", value)
