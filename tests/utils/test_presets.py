import pytest

from ser_keras.utils.presets import preset_config

PRESETS = {"paper": {"units": 128, "sizes": [3, 1, 3]}, "cpu": {"units": 16, "sizes": [3]}}


def test_overrides_apply_to_a_deep_copy():
    config = preset_config(PRESETS, "paper", {"units": 64, "name": "model"})
    assert config == {"units": 64, "sizes": [3, 1, 3], "name": "model"}
    config["sizes"].append(5)
    assert PRESETS["paper"]["sizes"] == [3, 1, 3]


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"Unknown front-end preset: 'big'. Available: \['cpu', "):
        preset_config(PRESETS, "big", kind="front-end preset")
    with pytest.raises(ValueError, match=r"Unknown preset: \['paper'\]"):
        preset_config(PRESETS, ["paper"])


def test_owner_restricts_the_overrides():
    config = preset_config(PRESETS, "cpu", {"name": "m"}, owner="Model", extra=("name",))
    assert config == {"units": 16, "sizes": [3], "name": "m"}
    with pytest.raises(ValueError, match=r"Unknown arguments \['bogus'\] for Model"):
        preset_config(PRESETS, "cpu", {"bogus": 1}, owner="Model", extra=("name",))
