"""ser_keras.evaluation.reports.plot_tsne: Figure 2 of Kim et al. (t-SNE panels)."""

import numpy as np
import pytest

from ser_keras.evaluation.reports import plot_tsne


def test_plot_tsne_writes_one_panel_per_system(tmp_path):
    rng = np.random.default_rng(0)
    panels = [
        (name, rng.normal(size=(12, 16)), rng.integers(0, 4, 12)) for name in ("STL", "MTL", "X")
    ]
    path = plot_tsne(panels, ["n", "h", "s", "a"], tmp_path / "tsne.png", title="t", seed=1)
    assert path.stat().st_size > 0
    with pytest.raises(ValueError, match="at least 5 points"):
        plot_tsne([("few", np.zeros((3, 2)), np.zeros(3))], ["n"], tmp_path / "few.png")
    with pytest.raises(ValueError, match="empty"):
        plot_tsne([], ["n"], tmp_path / "none.png")
