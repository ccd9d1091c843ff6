"""Utterance-level openSMILE functionals (eGeMAPS, ComParE) of decoded waveforms.

openSMILE is optional (`pip install opensmile`): `opensmile_available()` says
whether it can be used, and `opensmile_functionals` raises `ImportError`
where it cannot.

    features = opensmile_functionals(waveforms, 16000)   # [N, 88] eGeMAPSv02

Reference:
    F. Eyben et al., "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS)
    for Voice Research and Affective Computing", IEEE Trans. Affective
    Computing, 2016.
"""

from __future__ import annotations

import numpy as np

# Feature set name -> the openSMILE `FeatureSet` attribute.
FEATURE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}


def opensmile_available() -> bool:
    """Whether the `opensmile` package can be imported."""
    try:
        import opensmile  # noqa: F401
    except ImportError:
        return False
    return True


def opensmile_functionals(waveforms, sample_rate: int, feature_set: str = "egemaps") -> np.ndarray:
    """The functionals of every waveform (eGeMAPSv02: 88 per utterance).

    Args:
        waveforms: Mono float waveforms, one per utterance.
        sample_rate: Their rate in Hz.
        feature_set: `"egemaps"` (eGeMAPSv02) or `"compare"` (ComParE 2016).

    Returns:
        float32 `[len(waveforms), num_functionals]`.

    Raises:
        ImportError: openSMILE is not installed.
        ValueError: An unknown `feature_set`.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(
            f"`feature_set` must be one of {', '.join(FEATURE_SETS)}. Received: {feature_set!r}"
        )
    import opensmile

    smile = opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[feature_set]),
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    rows = [
        np.asarray(smile.process_signal(waveform, sample_rate), dtype=np.float32).reshape(-1)
        for waveform in waveforms
    ]
    return np.stack(rows).astype(np.float32)
