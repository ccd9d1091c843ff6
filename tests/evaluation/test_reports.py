import gc
import json
import pathlib

import numpy as np
import pytest

from ser_keras.evaluation import reports
from tests.evaluation.test_metrics import FU2021_CLASSES, FU2021_TABLE3_COUNTS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def leftovers(folder):
    return [p.name for p in pathlib.Path(folder).iterdir() if p.name.startswith(".")]


def png_shape(path):
    import matplotlib.image

    return matplotlib.image.imread(str(path)).shape


def live_figures():
    from matplotlib.figure import Figure

    gc.collect()
    figures = []
    for candidate in gc.get_objects():
        try:
            if isinstance(candidate, Figure):
                figures.append(candidate)
        except ReferenceError:  # a dead weak proxy among the tracked objects
            continue
    return figures


def test_write_json_atomic_converts_numpy_and_nan(tmp_path):
    path = tmp_path / "nested" / "report.json"
    obj = {
        "ua": np.float32(0.5),
        "count": np.int64(3),
        "ok": np.bool_(True),
        "confusion": np.arange(4).reshape(2, 2),
        "missing": float("nan"),
        "speakers": ("a", "b"),
        "where": tmp_path,
        7: {"deep": [np.float64(np.inf)]},
    }
    assert reports.write_json_atomic(path, obj) == path
    loaded = json.loads(path.read_text())
    assert loaded == {
        "ua": 0.5, "count": 3, "ok": True, "confusion": [[0, 1], [2, 3]], "missing": None,
        "speakers": ["a", "b"], "where": str(tmp_path), "7": {"deep": [None]},
    }
    assert leftovers(path.parent) == []
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_failed_write_leaves_previous_file(tmp_path):
    path = tmp_path / "report.json"
    reports.write_json_atomic(path, {"version": 1})
    with pytest.raises(TypeError, match="object"):
        reports.write_json_atomic(path, {"version": 2, "bad": object()})

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with reports.atomic_path(path) as temporary:
            temporary.write_text("half")
            raise Boom()
    assert json.loads(path.read_text()) == {"version": 1}
    assert leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="folder"):
        reports.write_text_atomic(tmp_path, "x")


def test_markdown_table():
    table = reports.markdown_table(
        ["setting", "WA", "UA", "folds"],
        [["multi|task", 69.957, None, 4], ["single", float("nan"), 64.7, 4]],
    )
    assert table.splitlines() == [
        "| setting | WA | UA | folds |",
        "|---|---|---|---|",
        "| multi\\|task | 69.96 | n/a | 4 |",
        "| single | n/a | 64.70 | 4 |",
    ]
    assert "| 0.1 |" in reports.markdown_table(["x"], [[0.123]], float_format="{:.1f}")
    with pytest.raises(ValueError, match="Row 0 has 1 cells but there are 2"):
        reports.markdown_table(["a", "b"], [[1]])


def test_confusion_markdown_reproduces_paper_table3():
    lines = reports.confusion_markdown(FU2021_TABLE3_COUNTS, FU2021_CLASSES).splitlines()
    assert lines[0] == "| true \\ predicted (%) | " + " | ".join(FU2021_CLASSES) + " |"
    # Rows as printed in Table 3 of Fu et al. (zeros printed there as "0").
    assert lines[2] == "| anger | 58.33 | 0.00 | 25.00 | 16.67 | 0.00 | 0.00 | 0.00 |"
    assert lines[8] == "| surprise | 27.27 | 9.09 | 0.00 | 18.18 | 0.00 | 0.00 | 45.45 |"
    assert len(lines) == 2 + len(FU2021_CLASSES)


def test_confusion_markdown_empty_row_and_errors():
    lines = reports.confusion_markdown([[2, 2], [0, 0]], ["a", "b"]).splitlines()
    assert lines[2] == "| a | 50.00 | 50.00 |"
    assert lines[3] == "| b | n/a | n/a |"
    with pytest.raises(ValueError, match="3 class names for a 2-class"):
        reports.confusion_markdown([[1, 0], [0, 1]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="square"):
        reports.confusion_markdown([[1, 0, 0], [0, 1, 0]], ["a", "b"])


def test_plot_confusion_matrix(tmp_path):
    path = reports.plot_confusion_matrix(
        FU2021_TABLE3_COUNTS, FU2021_CLASSES, tmp_path / "table3.png", title="Table 3"
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, _ = png_shape(path)
    assert height > 300 and width > 300
    counts = reports.plot_confusion_matrix(
        [[5, 1], [0, 0]], ["a", "b"], tmp_path / "counts.png", normalize=False
    )
    assert counts.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="2 class names for a 3-class"):
        reports.plot_confusion_matrix(np.eye(3), ["a", "b"], tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.png", "table3.png"]


def test_plot_training_curves_one_panel_per_family(tmp_path):
    epochs = 5
    curve = list(np.linspace(1.0, 0.5, epochs))
    multitask = {
        key: curve
        for key in [
            "loss", "emotion_loss", "speaker_loss", "emotion_accuracy", "speaker_accuracy",
            "emotion_ua", "val_loss", "val_emotion_loss", "val_emotion_accuracy",
            "val_emotion_ua",
        ]
    }
    three = reports.plot_training_curves(multitask, tmp_path / "three.png", title="fold 1")
    one = reports.plot_training_curves({"loss": curve, "val_loss": curve}, tmp_path / "one.png")
    four = reports.plot_training_curves(
        dict(multitask, learning_rate=[1e-3] * epochs), tmp_path / "four.png"
    )
    widths = [png_shape(path)[1] for path in (one, three, four)]
    assert widths[0] < widths[1] < widths[2]
    with pytest.raises(ValueError, match="no per-epoch numeric series"):
        reports.plot_training_curves({"note": ["a", "b"]}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    assert leftovers(tmp_path) == []


def test_plot_settings_comparison(tmp_path):
    # Table 2 of Fu et al. as the reference, fractions.
    paper = {
        "single task": {"wa": 0.6551, "ua": 0.6470},
        "multitask": {"wa": 0.6996, "ua": 0.6979},
    }
    ours = {
        "single task": {"wa": 0.61, "ua": 0.60, "wa_std": 0.05, "ua_std": 0.04},
        "multitask": {"wa": 0.66, "ua": 0.65},
    }
    path = reports.plot_settings_comparison(
        ours, tmp_path / "settings.png", title="SAVEE LOSO", reference=paper
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    # The same scores in percent give the same picture.
    percent = {s: {k: 100 * v for k, v in d.items()} for s, d in ours.items()}
    paper_percent = {s: {k: 100 * v for k, v in d.items()} for s, d in paper.items()}
    same = reports.plot_settings_comparison(
        percent, tmp_path / "percent.png", title="SAVEE LOSO", reference=paper_percent,
        units="percent",
    )
    assert same.read_bytes() == path.read_bytes()
    # Percent passed as fractions: read as percent, with a warning, not a failure.
    with pytest.warns(UserWarning, match="cannot be a fraction"):
        guessed = reports.plot_settings_comparison(
            percent, tmp_path / "guessed.png", title="SAVEE LOSO", reference=paper_percent
        )
    assert guessed.read_bytes() == path.read_bytes()
    with pytest.raises(ValueError, match="'permille'"):
        reports.plot_settings_comparison(ours, tmp_path / "x.png", units="permille")
    with pytest.raises(ValueError, match="'multitask' has no score \\['macro_f1'\\]"):
        reports.plot_settings_comparison(
            {"multitask": {"wa": 0.6, "ua": 0.6}}, tmp_path / "x.png", metrics=("macro_f1",)
        )


def test_figures_do_not_accumulate(tmp_path):
    before = len(live_figures())
    reports.plot_confusion_matrix([[3, 1], [0, 4]], ["a", "b"], tmp_path / "cm.png")
    reports.plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "curves.png")
    assert len(live_figures()) == before
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []
