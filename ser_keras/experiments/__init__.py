"""The papers' experiments: one module per protocol on a shared base.

| module | paper | experiment |
|---|---|---|
| `fu_savee_crosslang` | Fu et al. 2020 (004) | `FuSaveeCrossLanguage` |
| `crosslang_valence` | Latif et al. (000) | `CrossLanguageValence` |
| `aae_mtl` | Latif et al. (002) | `AAEMultiTask` |
| `gender_naturalness` | Kim et al. 2017 (001) | `GenderNaturalness` |
| `multilingual_gating` | Wang et al. (003) | `MultilingualGating` |

Each takes a typed configuration (a dataclass: the experiment's preset merged
with overrides, validated when built) and runs without argparse:

    from ser_keras.experiments import FuSaveeCrossLanguage, FuSaveeCrossLanguageConfig
    result = FuSaveeCrossLanguage(FuSaveeCrossLanguageConfig(epochs=3)).run()

The names are imported lazily: importing this package (and building a
configuration) does not import TensorFlow.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ConfigError": "config",
    "ExperimentConfig": "config",
    "Experiment": "base",
    "ExperimentResult": "base",
    "SpeakerLeakageError": "base",
    "FuSaveeCrossLanguage": "fu_savee_crosslang",
    "FuSaveeCrossLanguageConfig": "fu_savee_crosslang",
    "MultilingualGating": "multilingual_gating",
    "MultilingualGatingConfig": "multilingual_gating",
    "CrossLanguageValence": "crosslang_valence",
    "CrossLanguageValenceConfig": "crosslang_valence",
    "AAEMultiTask": "aae_mtl",
    "AAEMultiTaskConfig": "aae_mtl",
    "GenderNaturalness": "gender_naturalness",
    "GenderNaturalnessConfig": "gender_naturalness",
}


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, name)


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
