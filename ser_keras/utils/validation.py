"""Argument checks shared by the layers, models and pipelines.

Each raises `ValueError` naming the argument and the value received.
"""

from __future__ import annotations

import math

import numpy as np


def positive_number(name, value):
    """Checks that `value` is a finite number > 0 (a Python or NumPy number, not a bool).

    Args:
        name: Argument name, for the error message.
        value: The value to check.

    Returns:
        `value` as a Python `float`.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"`{name}` must be a positive number. Received: {name}={value!r}")
    return float(value)


def positive_int(name, value, *, allow_none=False):
    """Checks that `value` is a positive integer (a Python or NumPy int, not a bool).

    Args:
        name: Argument name, for the error message.
        value: The value to check.
        allow_none: Whether `None` is accepted (and returned as is).

    Returns:
        `value` as a Python `int` (or `None`).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        expected = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"`{name}` must be {expected}. Received: {name}={value!r}")
    return int(value)


def positive_ints(name, values):
    """Checks that `values` is a non-empty sequence of positive integers.

    Args:
        name: Argument name, for the error message.
        values: The sequence to check.

    Returns:
        A tuple of Python `int`s.
    """
    try:
        values = tuple(values)
    except TypeError as error:
        raise ValueError(
            f"`{name}` must be a sequence of positive integers. Received: {name}={values!r}"
        ) from error
    if not values:
        raise ValueError(f"`{name}` must not be empty. Received: {name}={values!r}")
    return tuple(positive_int(name, value) for value in values)
