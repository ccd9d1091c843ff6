"""Tests of ser_keras.data.pipeline: feature precomputation and tf.data datasets."""

import numpy as np
import pytest

from ser_keras.data.pipeline import (
    compute_features,
    make_dataset,
    make_mixed_dataset,
    make_waveform_dataset,
)
from ser_keras.features.logmel import LogMel
from tests.helpers import speech_like


@pytest.fixture(scope="module")
def waveforms():
    seconds = [0.9, 0.3, 1.4, 0.3, 0.6, 1.1, 0.45]
    return [speech_like(s, f0=100.0 + 15 * i, seed=i) for i, s in enumerate(seconds)]


def _batches(dataset):
    return [
        (
            {k: v.numpy() for k, v in x.items()} if isinstance(x, dict) else x.numpy(),
            {k: v.numpy() for k, v in y.items()},
        )
        for x, y in dataset
    ]


def test_compute_features_fixed_frames_keeps_input_order(waveforms):
    frontend = LogMel.from_preset("fu2021")
    features = compute_features(frontend, waveforms, batch_size=3)
    assert features.shape == (len(waveforms), 256, 128) and features.dtype == np.float32
    for index, waveform in enumerate(waveforms):
        alone = np.asarray(frontend(waveform[None]))[0]
        np.testing.assert_allclose(features[index], alone, atol=1e-5)
    padded_to_multiple = compute_features(frontend, waveforms, batch_size=4, length_multiple=8000)
    np.testing.assert_allclose(padded_to_multiple, features, atol=1e-5)


def test_compute_features_variable_frames_returns_trimmed_list(waveforms):
    frontend = LogMel.from_preset("latif")
    features = compute_features(frontend, waveforms, batch_size=2)
    assert isinstance(features, list) and len(features) == len(waveforms)
    for index, waveform in enumerate(waveforms):
        frames = frontend.num_frames_for_samples(len(waveform))
        assert features[index].shape == (frames, 128)
        alone = np.asarray(frontend(waveform[None]))[0]
        np.testing.assert_allclose(features[index], alone, atol=1e-5)


def test_compute_features_rejects_bad_waveforms_before_computing(waveforms):
    frontend = LogMel.from_preset("fu2021")
    bad = list(waveforms[:2]) + [np.zeros((10, 2), np.float32), np.array([0.0, np.nan])]
    with pytest.raises(ValueError, match=r"#2: expected a 1-D.*#3: non-finite"):
        compute_features(frontend, bad)
    with pytest.raises(ValueError, match="batch_size"):
        compute_features(frontend, waveforms, batch_size=0)


def test_make_dataset_batches_and_labels():
    inputs = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    labels = {"emotion": np.array([0, 1, 2, -1, 0, 1, 2, -1, 0, 1]), "speaker": np.arange(10)}
    batches = _batches(make_dataset(inputs, labels, batch_size=4))
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), inputs)
    emotion = np.concatenate([y["emotion"] for _, y in batches])
    np.testing.assert_array_equal(emotion, labels["emotion"])
    assert batches[0][1]["emotion"].dtype == np.int32
    dropped = _batches(make_dataset(inputs, labels, batch_size=4, drop_remainder=True))
    assert [x.shape[0] for x, _ in dropped] == [4, 4]


def test_make_dataset_shuffle_is_seeded_and_reshuffles_each_epoch():
    inputs = {"features": np.arange(20, dtype=np.float32)[:, None], "id": np.arange(20)}
    labels = {"emotion": np.arange(20) % 3}

    def order(dataset, epochs=1):
        return [
            np.concatenate([x["id"].numpy() for x, _ in dataset]).tolist() for _ in range(epochs)
        ]

    first = order(make_dataset(inputs, labels, batch_size=6, shuffle=True, seed=3), epochs=2)
    again = order(make_dataset(inputs, labels, batch_size=6, shuffle=True, seed=3), epochs=2)
    other = order(make_dataset(inputs, labels, batch_size=6, shuffle=True, seed=4))
    assert first == again
    assert sorted(first[0]) == list(range(20)) and first[0] != list(range(20))
    assert first[0] != first[1]
    assert other[0] != first[0]
    # Inputs and labels stay aligned after shuffling.
    for x, y in make_dataset(inputs, labels, batch_size=6, shuffle=True, seed=3):
        np.testing.assert_array_equal(y["emotion"].numpy(), x["id"].numpy() % 3)


def test_make_dataset_without_labels_and_repeat():
    dataset = make_dataset(np.zeros((5, 2), np.float32), batch_size=2, repeat=True)
    shapes = [x.shape[0] for x in dataset.take(5)]
    assert shapes == [2, 2, 2, 2, 2]


@pytest.mark.parametrize(
    "labels",
    [{"emotion": np.zeros(4, np.int32)}, {"emotion": np.full(5, -2)}, [0, 1, 2, 3, 4]],
)
def test_make_dataset_rejects_bad_labels(labels):
    with pytest.raises(ValueError):
        make_dataset(np.zeros((5, 2), np.float32), labels, batch_size=2)


def test_waveform_dataset_pads_per_batch_and_feeds_the_frontend(waveforms):
    labels = {"emotion": np.arange(len(waveforms)) % 2}
    dataset = make_waveform_dataset(waveforms, labels, batch_size=3)
    frontend = LogMel.from_preset("fu2021")
    expected = compute_features(frontend, waveforms, batch_size=4)
    start = 0
    for inputs, batch_labels in dataset:
        waveform, lengths = inputs["waveform"].numpy(), inputs["lengths"].numpy()
        true_lengths = [len(w) for w in waveforms[start : start + len(lengths)]]
        np.testing.assert_array_equal(lengths, true_lengths)
        assert waveform.shape == (len(lengths), max(true_lengths))
        for row, length in enumerate(lengths):
            np.testing.assert_array_equal(waveform[row, :length], waveforms[start + row])
            assert np.all(waveform[row, length:] == 0.0)
        features = np.asarray(frontend(inputs))
        np.testing.assert_allclose(features, expected[start : start + len(lengths)], atol=1e-5)
        np.testing.assert_array_equal(
            batch_labels["emotion"].numpy(), labels["emotion"][start : start + len(lengths)]
        )
        start += len(lengths)
    assert start == len(waveforms)
    cut = next(iter(make_waveform_dataset(waveforms, batch_size=7, max_samples=8000)))
    assert cut["waveform"].shape[1] == 8000 and int(cut["lengths"].numpy().max()) == 8000


def test_mixed_dataset_ratio_and_missing_labels():
    labelled = np.arange(10, dtype=np.float32)[:, None]  # values 0..9
    unlabelled = 100 + np.arange(7, dtype=np.float32)[:, None]  # values 100..106
    dataset = make_mixed_dataset(
        labelled,
        {"emotion": np.arange(10) % 2, "language": np.zeros(10, np.int64)},
        unlabelled,
        {"language": np.ones(7, np.int64)},
        batch_size=8,
        labelled_fraction=0.25,
        seed=0,
        domain_task="domain",
    )
    batches = _batches(dataset)
    assert len(batches) == 5  # one pass over 10 labelled samples, 2 per batch
    seen = []
    for x, y in batches:
        assert x.shape == (8, 1)
        assert np.all(x[:2] < 100) and np.all(x[2:] >= 100)
        np.testing.assert_array_equal(y["emotion"][:2], x[:2, 0].astype(int) % 2)
        np.testing.assert_array_equal(y["emotion"][2:], -1)
        np.testing.assert_array_equal(y["language"], [0, 0] + [1] * 6)
        np.testing.assert_array_equal(y["domain"], [0, 0] + [1] * 6)
        seen.extend(x[:2, 0].tolist())
    assert sorted(seen) == list(range(10))


def test_mixed_dataset_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="differ"):
        make_mixed_dataset(
            np.zeros((4, 3), np.float32),
            {"emotion": np.zeros(4, int)},
            np.zeros((4, 2), np.float32),
            batch_size=4,
        )
    with pytest.raises(ValueError, match="labelled_fraction"):
        make_mixed_dataset(
            np.zeros((4, 3), np.float32),
            {"emotion": np.zeros(4, int)},
            np.zeros((4, 3), np.float32),
            batch_size=4,
            labelled_fraction=1.0,
        )
