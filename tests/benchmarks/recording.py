"""A `bench_vs_reference` run with every deep fold and every SVM fit recorded.

The benchmark tests of each experiment check the same two things on what is
recorded here: the rows each deep fold trained, validated and was tested on,
and the rows each SVM was fitted and scored on.
"""

import numpy as np
import pytest

from benchmarks import bench_vs_reference as bench
from ser_keras.experiments import base
from ser_keras.features import opensmile_functionals


def run_recorded(argv, *, test_labels=False, patches=()):
    """Runs `bench_vs_reference` with `argv`, recording its deep folds and SVM fits.

    Skips the calling test where openSMILE is not installed.

    Args:
        argv: The benchmark's command-line arguments.
        test_labels: Also record each deep fold's test labels (the ones the
            deep model is scored against, in `test` order).
        patches: Further `(target, name, value)` to patch during the run.

    Returns:
        `(deep, reference)`: one dict per deep fold (`seed`, `setting`,
        `fold`, `utterances`, `train`, `validation`, `test` and, with
        `test_labels`, `test_labels`) and one per SVM fit (`seed` of the
        deep folds before it, `feature_set`, `labels`, `train`, `test`,
        `finite`: whether its training features are all finite).
    """
    if not opensmile_functionals.opensmile_available():
        pytest.skip(
            "openSMILE is not installed (pip install -e '.[reference]'): the reference "
            "features cannot be computed"
        )
    deep, reference = [], []
    real_train_fold = base.Experiment.train_fold
    real_fit = bench.fit_reference

    def recording_train_fold(self, **options):
        test = np.asarray(options["test_index"])
        entry = {
            "seed": self.config.seed,
            "setting": options["setting"],
            "fold": options["fold_name"],
            "utterances": list(options["utterances"]),
            "train": np.asarray(options["train_index"]),
            "validation": np.asarray(options["validation_index"]),
            "test": test,
        }
        if test_labels:
            entry["test_labels"] = np.asarray(
                options["make_split"](test, "test").labels["emotion"]
            )
        deep.append(entry)
        return real_train_fold(self, **options)

    def recording_fit(features, labels, train_rows, test_rows, feature_set):
        # The deep folds of a seed are all trained before its SVMs are fitted.
        reference.append(
            {
                "seed": deep[-1]["seed"],
                "feature_set": feature_set,
                "labels": np.asarray(labels),
                "train": np.asarray(train_rows),
                "test": np.asarray(test_rows),
                "finite": bool(np.isfinite(features[train_rows]).all()),
            }
        )
        return real_fit(features, labels, train_rows, test_rows, feature_set)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base.Experiment, "train_fold", recording_train_fold)
        patch.setattr(bench, "fit_reference", recording_fit)
        for target, name, value in patches:
            patch.setattr(target, name, value)
        code = bench.main(argv)
    assert code == 0
    return deep, reference
