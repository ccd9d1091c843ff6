"""KerasTuner search spaces of the model families (`hypermodels`), search helpers
(`search`: tuners, failed-trial checks, speaker validation folds, trial tables) and
the search of `apps.tune` (`experiment`: `TuneConfig`, `TuneSearch`)."""
