"""`read_history_csv` and `plot_loss_panels` of `ser_keras.evaluation.reports`."""

from ser_keras.evaluation import reports


def test_read_history_csv_reads_every_numeric_column_but_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss,note\n0,1.5,2.0,a\n1,1.0,1.8,b\n")
    assert reports.read_history_csv(path) == {"loss": [1.5, 1.0], "val_loss": [2.0, 1.8]}
    assert reports.read_history_csv(tmp_path / "missing.csv") == {}


def test_plot_loss_panels_draws_the_panels_with_data(tmp_path):
    histories = {
        "fold1": {"reconstruction_loss": [1.0, 0.5], "val_reconstruction_loss": [1.2, 0.7]},
        "fold2": {"reconstruction_loss": [0.9]},
    }
    panels = [
        ("reconstruction", ("reconstruction_loss",), histories),
        ("regularisation", ("discriminator_loss",), histories),  # no data: left out
    ]
    path = reports.plot_loss_panels(panels, tmp_path / "phases.png", "losses")
    assert path == tmp_path / "phases.png" and path.stat().st_size > 0
    assert reports.plot_loss_panels(panels[1:], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
