"""`locate_model` compares validation scores of result.json files written in either unit."""

import json

from ser_keras.export.sources import locate_model


def _fold(run, name, stored):
    fold = run / "mtl" / name
    fold.mkdir(parents=True)
    (fold / "best.keras").write_bytes(b"not read")
    (fold / "result.json").write_text(json.dumps(stored))
    return fold


def test_a_run_mixing_percent_and_fraction_results_picks_the_best_fold(tmp_path):
    # fold_A: an older result.json (fractions, no units); fold_B: percent, as written now.
    _fold(tmp_path, "fold_A", {"best_validation": 0.6})
    _fold(
        tmp_path,
        "fold_B",
        {"best_validation": 50.0, "units": "percent", "percent_keys": ["ua", "best_validation"]},
    )
    location = locate_model(tmp_path)
    assert location.path == tmp_path / "mtl" / "fold_A" / "best.keras"
