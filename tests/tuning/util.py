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

KIM_FEATURES = 6
# Kim et al.'s LSTM-MTL: 2 layers of 4 cells (hyperparameter units 256 -> 4).
TINY_KIM = {"num_features": KIM_FEATURES, "units": 4}
# Every expert of Wang et al.'s model (its attention sizes twice the LSTM's, as the paper's).
TINY_MULTIGATE = {
    "num_frames": NUM_FRAMES,
    "num_mels": NUM_MELS,
    "logmel_conv_filters": 3,
    "logmel_lstm_units": 4,
    "logmel_attention_units": 8,
    "num_mfcc": 6,
    "mfcc_conv_filters": 3,
    "mfcc_lstm_units": 2,
    "mfcc_lstm_layers": 1,
    "mfcc_attention_units": 4,
    "expert_units": 6,
    "min_samples_per_class": 2,
}
MULTIGATE_CLASSES = {"en": ["anger", "neutral", "sadness"], "de": ["anger", "boredom"]}


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
    elif family == "kim_mtl":
        classes = {"emotion": 4, "gender": 2, "naturalness": 2}
        model = hypermodels.KimMTLHyperModel(num_emotions=4, preset=TINY_KIM)
    elif family == "multigate":
        classes = {f"emotion_{lang}": len(names) for lang, names in MULTIGATE_CLASSES.items()}
        model = hypermodels.MultiGatingHyperModel(
            MULTIGATE_CLASSES, preset=TINY_MULTIGATE, seed=0, tower_units={"en": 8, "de": 8}
        )
    else:
        raise ValueError(family)
    return model, classes


def random_data(family, classes, count=24, seed=0):
    """Random inputs of the family's shape and labels with some -1 gaps.

    Kim et al.'s frames and Wang et al.'s log-mel frames end in padding (0.0
    and -1.0, their models' pad values); Wang et al.'s samples alternate
    between the languages, each labelled for its own head only.
    """
    rng = np.random.default_rng(seed)
    shape = {"aae_mtl": (32, 16), "kim_mtl": (NUM_FRAMES, KIM_FEATURES)}.get(
        family, (NUM_FRAMES, NUM_MELS)
    )
    x = rng.normal(size=(count,) + shape).astype("float32")
    if family == "kim_mtl":
        x[1::2, NUM_FRAMES // 2 :] = 0.0
    if family == "multigate":
        x = rng.uniform(0, 1, size=x.shape).astype("float32")
        x[1::3, NUM_FRAMES // 2 :] = -1.0
        y = {}
        for number, task in enumerate(classes):
            labels = np.full(count, -1, dtype="int32")
            mine = np.arange(number, count, len(classes))
            labels[mine] = np.arange(mine.size) % classes[task]
            y[task] = labels
        return x, y
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



def speakers_of_samples(samples, search_data):
    """The speakers whose inputs `samples` holds (rows of arrays given to `fit`).

    Each sample is found among the search's inputs (`SearchData.inputs`) by
    its bytes, so the speakers come from what the model saw, not from the
    split's bookkeeping.
    """
    owners = {}
    for row, utterance in enumerate(search_data.row_utterance):
        key = np.ascontiguousarray(search_data.inputs[row]).tobytes()
        owners.setdefault(key, set()).add(search_data.utterances[int(utterance)].speaker_id)
    speakers = set()
    for sample in np.asarray(samples):
        speakers |= owners[np.ascontiguousarray(sample).tobytes()]
    return speakers


def record_fits(monkeypatch):
    """Records the arguments of every `SERHyperModel.fit` a tuner makes (a list of dicts)."""
    fits = []
    original = hypermodels.SERHyperModel.fit

    def fit(self, hp, model, x=None, y=None, **kwargs):
        fits.append({"x": x, "y": y, **kwargs})
        return original(self, hp, model, x, y, **kwargs)

    monkeypatch.setattr(hypermodels.SERHyperModel, "fit", fit)
    return fits


def speaker_splits_of_fits(fits, search_data):
    """`(trained, validated)` speaker sets of every split the recorded fits trained on.

    With `validation_folds` each fold is a split (its indices into `x`),
    else `x` and `validation_data`.
    """
    splits = []
    for call in fits:
        x = np.asarray(call["x"])
        if call.get("validation_folds") is not None:
            pairs = [(x[train], x[validation]) for train, validation in call["validation_folds"]]
        else:
            pairs = [(x, call["validation_data"][0])]
        for train, validation in pairs:
            splits.append(
                (speakers_of_samples(train, search_data),
                 speakers_of_samples(validation, search_data))
            )
    return splits
