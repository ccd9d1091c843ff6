"""Tiny architectures and random data for the tuning tests (seconds per trial on a CPU)."""

import numpy as np

from ser_keras.tuning import hypermodels

NUM_FRAMES, NUM_MELS = 16, 8

# Architecture presets far below the CPU presets: the tests check that trials
# run and complete, not what they learn.
TINY_ATTENTION = {
    "num_frames": NUM_FRAMES,
    "num_mels": NUM_MELS,
    "conv_filters": (8, 8, 8),
    "bottleneck_units": 8,
    "lstm_units": 4,
    "num_attention_heads": 2,
}
TINY_RESNET = {
    "num_frames": NUM_FRAMES,
    "num_mels": NUM_MELS,
    "stem_filters": 4,
    "stackwise_num_filters": (4, 4),
    "stackwise_num_blocks": (1, 1),
    "stackwise_pool_sizes": ((2, 2), (2, 2)),
    "lstm_units": 4,
    "dense_units": 8,
}


def tiny_hypermodel(family):
    """(HyperModel, tasks -> number of classes) of a family at test size."""
    if family == "attention_cnn_blstm":
        classes = {"emotion": 3, "speaker": 3}
        model = hypermodels.AttentionCNNBLSTMHyperModel(
            num_emotions=3, num_speakers=3, preset=TINY_ATTENTION
        )
    elif family == "resnet_lstm_mtl":
        classes = {"emotion": 2, "language": 2, "domain": 2}
        model = hypermodels.ResNetLSTMHyperModel(
            num_emotions=2, num_languages=2, use_domain_head=True, preset=TINY_RESNET
        )
    elif family == "aae_mtl":
        # cpu_small takes 32 x 16 segments.
        classes = {"emotion": 3, "speaker": 4, "gender": 2}
        model = hypermodels.AAEMultiTaskHyperModel(classes, preset="cpu_small", seed=0)
    else:
        raise ValueError(family)
    return model, classes


def random_data(family, classes, count=24, seed=0):
    """Random inputs of the family's shape and labels with some -1 gaps."""
    rng = np.random.default_rng(seed)
    shape = (32, 16) if family == "aae_mtl" else (NUM_FRAMES, NUM_MELS)
    x = rng.normal(size=(count,) + shape).astype("float32")
    y = {}
    for task, number in classes.items():
        labels = np.arange(count) % number
        rng.shuffle(labels)
        if task != "emotion" and family != "aae_mtl":
            labels[: count // 6] = -1
        y[task] = labels.astype("int32")
    if family == "resnet_lstm_mtl":
        y["emotion"][y["domain"] == 1] = -1  # unlabelled speech has no emotion
    return x, y

