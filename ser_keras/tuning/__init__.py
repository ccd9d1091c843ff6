"""KerasTuner search spaces of the model families (`hypermodels`) and search helpers
(`search`: tuners, failed-trial checks, speaker validation folds, trial tables)."""
