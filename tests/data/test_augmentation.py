import numpy as np
import pytest
import tensorflow as tf

from ser_keras.data.augmentation import SpecAugment
from ser_keras.data.pipeline import make_dataset

PAD = -1.0


def _features(lengths, frames=40, bands=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 1.0, size=(len(lengths), frames, bands)).astype("float32")
    for row, length in enumerate(lengths):
        x[row, length:] = PAD
    return x


def _masked(before, after):
    return np.asarray(before) != np.asarray(after)


def test_masks_stay_inside_the_true_length_and_padding_is_untouched():
    lengths = [40, 25, 10]
    x = _features(lengths)
    augment = SpecAugment(num_frequency_masks=2, max_frequency_width=4, num_time_masks=2,
                          max_time_width=6, max_time_fraction=0.5, mask_value=0.0,
                          pad_value=PAD)
    changed_any = False
    for step in range(20):
        y = augment(x, tf.constant([step, 0], dtype=tf.int64)).numpy()
        changed = _masked(x, y)
        changed_any |= changed.any()
        for row, length in enumerate(lengths):
            assert not changed[row, length:].any()  # padding keeps -1
            np.testing.assert_array_equal(y[row, length:], PAD)
        assert np.all(y[changed] == 0.0)  # masked bins hold mask_value
        # A frequency mask covers whole bands of the valid frames; a time mask whole frames.
        for row, length in enumerate(lengths):
            whole_bands = changed[row, :length].all(axis=0)
            whole_frames = changed[row, :length].all(axis=1)
            partial = changed[row, :length] & ~whole_bands[None, :] & ~whole_frames[:, None]
            assert not partial.any()
            assert whole_bands.sum() <= 2 * 4
            # Time masks: at most 2 spans of <= min(6, 0.5 * length) frames.
            assert whole_frames.sum() <= 2 * min(6, int(0.5 * length)) or whole_bands.all()
    assert changed_any


def test_the_same_seed_gives_the_same_masks_and_another_seed_others():
    x = _features([40, 30])
    augment = SpecAugment(max_frequency_width=6, max_time_width=8, pad_value=PAD)
    seed = tf.constant([7, 0], dtype=tf.int64)
    np.testing.assert_array_equal(augment(x, seed).numpy(), augment(x, seed).numpy())
    others = [augment(x, tf.constant([s, 0], dtype=tf.int64)).numpy() for s in range(8, 14)]
    assert any(not np.array_equal(o, augment(x, seed).numpy()) for o in others)


def test_no_masks_leaves_features_unchanged():
    x = _features([40, 12])
    augment = SpecAugment(num_frequency_masks=0, num_time_masks=0, pad_value=PAD)
    np.testing.assert_array_equal(augment(x, tf.constant([1, 0], tf.int64)).numpy(), x)


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"num_frequency_masks": -1}, "num_frequency_masks"),
        ({"max_time_width": 2.5}, "max_time_width"),
        ({"max_time_fraction": 0.0}, "max_time_fraction"),
        ({"max_time_fraction": 1.5}, "max_time_fraction"),
    ],
)
def test_bad_arguments_name_the_value(arguments, name):
    with pytest.raises(ValueError, match=name):
        SpecAugment(**arguments)


def test_rank_is_checked():
    with pytest.raises(ValueError, match=r"\[batch, frames, bands\]"):
        SpecAugment()(np.zeros((4, 10), "float32"), tf.constant([0, 0], tf.int64))


def _epochs(dataset, count):
    return [np.concatenate([x.numpy() for x, _ in dataset]) for _ in range(count)]


def test_make_dataset_augments_training_batches_reproducibly_and_anew_each_epoch():
    x = _features([40, 35, 30, 25, 20, 15], seed=1)
    labels = {"emotion": np.arange(6, dtype=np.int32) % 3}
    augment = SpecAugment(max_frequency_width=5, max_time_width=5, pad_value=PAD)

    def epochs():
        dataset = make_dataset(x, labels, batch_size=4, shuffle=True, seed=3, augment=augment)
        return _epochs(dataset, 2)

    first, second = epochs(), epochs()
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)  # the same seed, the same run
    assert not np.array_equal(first[0], first[1])  # new masks (and order) each epoch
    # Every augmented sample is one of the inputs with some bins masked to 0.
    plain = make_dataset(x, labels, batch_size=4, shuffle=True, seed=3)
    order = [np.concatenate([lab["emotion"].numpy() for _, lab in plain])]
    assert sorted(order[0].tolist()) == sorted(labels["emotion"].tolist())
    masked = first[0]
    matched = [
        any(np.all((m == s) | (m == 0.0)) for s in x) for m in masked
    ]
    assert all(matched)
    assert any(not any(np.array_equal(m, s) for s in x) for m in masked)


def test_make_dataset_refuses_augmenting_unshuffled_data():
    with pytest.raises(ValueError, match="shuffle"):
        make_dataset(_features([10]), None, augment=SpecAugment())
