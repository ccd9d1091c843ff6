"""MirroredStrategy vs one device for the models whose `train_step` is their own.

`MultiTaskModel` and the AAE trainer have their own tests (test_multitask.py,
test_distribute.py). Here: `KimMTL` (paper 001: frame-level targets, the loss a
masked mean over the valid frames of labelled utterances, which differ in
number between the replicas) and `MultiGatingSER` (paper 003: its own
`train_step` adding the GE2E-style contrastive terms). One SGD step on the
same global batch must give the same weights on 2 replicas (2 logical CPUs)
as on one device.

Dropout is 0 and the softmax-gated MMoE variant is used for paper 003: dropout
masks and the hard-concrete gate noise are drawn per replica, so they cannot
match one device by construction. The contrastive weights are 0 in the
equality check because its centroids come from each replica's part of the
batch (documented in `MultiGatingSER._loss_with_contrastive`); a second step
with the paper's weights checks that the contrastive terms run and stay
finite under the strategy.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from tests.model_checks import PROJECT_ROOT

_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from ser_keras.models.kim_mtl import KimMTL
    from ser_keras.models.multigate import MultiGatingSER

    rng = np.random.default_rng(0)

    # Paper 001: 8 utterances of 12 frames of 32 features, different valid lengths
    # (padding 0.0), some utterances without an emotion or gender label.
    kim_x = rng.standard_normal((8, 12, 32)).astype("float32")
    for row, valid in enumerate([12, 3, 7, 12, 5, 9, 2, 11]):
        kim_x[row, valid:] = 0.0
    kim_y = {
        "emotion": np.array([0, 1, -1, 3, 2, -1, 1, 0], "int32"),
        "gender": np.array([1, -1, 0, 0, 1, 1, -1, 0], "int32"),
        "naturalness": np.array([0, 0, 1, -1, 1, 0, 0, 1], "int32"),
    }

    def kim():
        return KimMTL(network="lstm", num_layers=2, units=6, dropout_rate=0.0)

    # Paper 003: two languages with their own label sets, -1 where a sample
    # belongs to the other language.
    names = {"en": ["anger", "neutral", "surprise"],
             "de": ["anger", "boredom", "neutral", "sadness"]}
    gate_x = {"features": rng.uniform(0, 1, (8, 10, 24)).astype("float32"),
              "egemaps": rng.normal(size=(8, 5)).astype("float32")}
    gate_x["features"][1::2, 6:] = -1.0
    language = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    gate_y = {
        "emotion_en": np.where(language == 0, [0, 0, 1, 0, 2, 0, 1, 0], -1).astype("int32"),
        "emotion_de": np.where(language == 1, [0, 1, 0, 2, 0, 3, 0, 1], -1).astype("int32"),
    }

    def gating(weights):
        return MultiGatingSER(
            class_names=names, variant="mmoe", num_frames=10, num_mels=24,
            experts=("statistics",), embedding_dims={"egemaps": 5}, expert_units=6,
            tower_units={"en": 8, "de": 8}, shared_tower_units=8, dropout_rate=0.0,
            min_samples_per_class=1, contrastive_weights=weights)

    def step(build, x, y, strategy=None):
        keras.utils.set_random_seed(0)
        scope = strategy.scope() if strategy is not None else tf.init_scope()
        with scope:
            model = build()
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        history = model.fit(dataset, epochs=1, verbose=0).history
        logs = {k: float(v[-1]) for k, v in history.items()}
        return logs, [w.tolist() for w in model.get_weights()]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    zero = {"en": 0.0, "de": 0.0}
    result = {
        "kim": [step(kim, kim_x, kim_y), step(kim, kim_x, kim_y, mirrored)],
        "gating": [step(lambda: gating(zero), gate_x, gate_y),
                   step(lambda: gating(zero), gate_x, gate_y, mirrored)],
        "gating_contrastive": step(lambda: gating(None), gate_x, gate_y, mirrored)[0],
    }
    print(json.dumps(result))
    """
)


def _run():
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=str(PROJECT_ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _assert_same_step(single, mirrored, keys):
    (single_logs, single_weights), (mirrored_logs, mirrored_weights) = single, mirrored
    for key in keys:
        np.testing.assert_allclose(mirrored_logs[key], single_logs[key], rtol=1e-5, atol=1e-6)
    assert len(single_weights) == len(mirrored_weights)
    for one, two in zip(single_weights, mirrored_weights, strict=True):
        np.testing.assert_allclose(np.array(two), np.array(one), rtol=1e-4, atol=1e-6)


def test_kim_and_multigate_train_steps_under_mirrored_strategy_match_one_device():
    result = _run()
    _assert_same_step(*result["kim"], keys=("loss", "emotion_loss", "gender_loss"))
    _assert_same_step(*result["gating"], keys=("loss",))
    contrastive = result["gating_contrastive"]
    assert np.isfinite(contrastive["loss"])
    assert contrastive["emotion_en_contrastive_loss"] > 0
