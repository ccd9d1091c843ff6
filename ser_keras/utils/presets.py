"""Preset lookup shared by every `from_preset` of the package."""

from __future__ import annotations

import copy


def preset_config(presets, preset, overrides=None, *, kind="preset", owner=None, extra=None):
    """The constructor arguments of a preset, with `overrides` applied.

    Args:
        presets: Dict preset name -> dict of constructor arguments.
        preset: The preset's name.
        overrides: Arguments replacing (or adding to) the preset's.
        kind: What a preset is called in the error for an unknown name, e.g.
            `"front-end preset"`.
        owner: With `owner` (e.g. the class name), `overrides` may only set
            the preset's own arguments and the names in `extra`; an other
            argument is an error naming `owner`. `None`: any argument.
        extra: Names `overrides` may set beyond the preset's arguments when
            `owner` is given (e.g. `("name", "trainable")`).

    Returns:
        A new dict (a deep copy: changing it never changes `presets`).
    """
    if not isinstance(preset, str) or preset not in presets:
        raise ValueError(f"Unknown {kind}: {preset!r}. Available: {sorted(presets)}")
    overrides = dict(overrides or {})
    if owner is not None:
        allowed = set(presets[preset]) | set(extra or ())
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ValueError(
                f"Unknown arguments {unknown} for {owner}; allowed: {sorted(allowed)}."
            )
    config = copy.deepcopy(presets[preset])
    config.update(overrides)
    return config
