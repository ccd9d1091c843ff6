"""tf.data pipelines: feature precomputation and training/evaluation datasets.

Two ways to feed a model:

* precompute the front-end once (`compute_features`) and train on the
  features (`make_dataset`): the apps' default on CPU, where the features of a
  corpus fit in memory and every epoch would otherwise recompute them;
* feed padded waveform batches with their lengths (`make_waveform_dataset`)
  to a model whose first layer is the `LogMel` front-end, so that the
  front-end runs on the accelerator and the exported model takes waveforms.

`make_mixed_dataset` builds batches that mix labelled and unlabelled samples
at a fixed ratio (Latif et al., the cross-language multi-task paper: the
emotion loss uses the labelled part, the auxiliary tasks the whole batch).
Labels are always a dict `task -> int32 [batch]`, -1 marking a sample without
that label (the convention of `ser_keras.training.multitask.MultiTaskModel`).
"""

import weakref

import numpy as np
import tensorflow as tf

from ser_keras.utils.validation import positive_int

# tf.functions wrapping a front-end, per front-end object and jit setting.
_FRONTEND_FUNCTIONS = weakref.WeakKeyDictionary()


def _frontend_function(frontend, jit_compile):
    functions = _FRONTEND_FUNCTIONS.setdefault(frontend, {})
    if jit_compile not in functions:
        # A weak reference, so that the cached function does not keep its key alive.
        frontend_ref = weakref.ref(frontend)

        def apply(waveform, lengths):
            return frontend_ref()((waveform, lengths))

        functions[jit_compile] = tf.function(
            apply,
            input_signature=(
                tf.TensorSpec([None, None], tf.float32, name="waveform"),
                tf.TensorSpec([None], tf.int32, name="lengths"),
            ),
            jit_compile=jit_compile,
        )
    return functions[jit_compile]


def _check_waveforms(waveforms):
    """Returns the waveforms as float32 1-D arrays; ValueError listing bad ones."""
    arrays, problems = [], []
    for index, waveform in enumerate(waveforms):
        array = np.asarray(waveform, dtype=np.float32)
        if array.ndim != 1:
            problems.append(f"#{index}: expected a 1-D waveform, got shape {array.shape}")
        elif not np.all(np.isfinite(array)):
            problems.append(f"#{index}: non-finite samples (NaN or inf)")
        arrays.append(array)
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ValueError(f"{len(problems)} invalid waveform(s): {shown}{more}")
    return arrays


def compute_features(
    frontend,
    waveforms,
    batch_size=32,
    progress=False,
    jit_compile=False,
    length_multiple=None,
):
    """Runs a front-end over variable-length waveforms in length-sorted batches.

    Waveforms are sorted by length, cut into batches, each batch padded only to
    its own longest waveform (and passed with the true lengths, so padding
    never changes the features), and the results put back in input order.

    Args:
        frontend: a `ser_keras.features.logmel.LogMel` layer (anything called
            as `frontend((waveform [B, T] float32, lengths [B] int32))` with
            `num_frames` and `num_frames_for_samples(n)` like it).
        waveforms: sequence of 1-D float arrays at the front-end's sample rate.
        batch_size: waveforms per front-end call.
        progress: show a tqdm progress bar.
        jit_compile: compile the front-end with XLA. XLA compiles once per
            distinct batch shape (use with `length_multiple`). On the 2-core
            CPU here it gave no speed-up over the traced graph (EMO-DB, both
            presets) and cost 7-9 s of compilation, hence off by default.
        length_multiple: if set, each batch is padded up to a multiple of this
            many samples, bounding the number of distinct shapes.

    Returns:
        With a fixed `frontend.num_frames`: np.ndarray float32
        `[len(waveforms), num_frames, num_mels]`. With `num_frames=None`: a list
        of float32 arrays `[frames_i, num_mels]`, each cut to its utterance's
        valid frame count.
    """
    batch_size = positive_int("batch_size", batch_size)
    length_multiple = positive_int("length_multiple", length_multiple, allow_none=True)
    arrays = _check_waveforms(waveforms)
    count = len(arrays)
    num_frames = getattr(frontend, "num_frames", None)
    function = _frontend_function(frontend, bool(jit_compile))
    lengths = np.array([array.shape[0] for array in arrays], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")

    fixed = None
    variable = [None] * count
    starts = range(0, count, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, total=(count + batch_size - 1) // batch_size, desc="features")
    for start in starts:
        indices = order[start : start + batch_size]
        batch_lengths = lengths[indices]
        width = int(batch_lengths.max())
        if length_multiple is not None:
            width = -(-width // length_multiple) * length_multiple
        batch = np.zeros((len(indices), width), dtype=np.float32)
        for row, index in enumerate(indices):
            batch[row, : lengths[index]] = arrays[index]
        features = function(tf.constant(batch), tf.constant(batch_lengths, dtype=tf.int32))
        features = np.asarray(features)  # a view of the tensor's buffer, copied below
        if num_frames is not None:
            if fixed is None:
                fixed = np.empty((count,) + features.shape[1:], dtype=np.float32)
            fixed[indices] = features
        else:
            for row, index in enumerate(indices):
                frames = frontend.num_frames_for_samples(lengths[index])
                variable[index] = features[row, :frames].copy()
    if num_frames is not None:
        if fixed is None:
            num_mels = getattr(frontend, "num_mels", 0)
            fixed = np.zeros((0, num_frames, num_mels), dtype=np.float32)
        return fixed
    return variable


def _as_input_structure(inputs, name="inputs"):
    """Validates an array or dict of arrays with a common first dimension."""
    if isinstance(inputs, dict):
        if not inputs:
            raise ValueError(f"`{name}` is an empty dict.")
        arrays = {key: np.asarray(value) for key, value in inputs.items()}
        sizes = {key: value.shape[0] if value.ndim else None for key, value in arrays.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise ValueError(f"All arrays in `{name}` need the same first dimension. Got {sizes}")
        return arrays, next(iter(sizes.values()))
    array = np.asarray(inputs)
    if array.ndim == 0:
        raise ValueError(f"`{name}` must be an array with a sample dimension. Got a scalar.")
    return array, array.shape[0]


def _as_labels(labels, count, name="labels"):
    if labels is None:
        return None
    if not isinstance(labels, dict):
        raise ValueError(
            f"`{name}` must be a dict task -> int array (-1 = missing). Received: {type(labels)}"
        )
    converted = {}
    for task, values in labels.items():
        values = np.asarray(values)
        if values.shape != (count,):
            raise ValueError(
                f"{name}[{task!r}] has shape {values.shape}; expected ({count},) "
                "to match the inputs."
            )
        if values.size and not np.issubdtype(values.dtype, np.integer):
            raise ValueError(
                f"{name}[{task!r}] must hold integers (-1 = missing). Got {values.dtype}"
            )
        if values.size and values.min() < -1:
            raise ValueError(
                f"{name}[{task!r}] holds {values.min()}; the only negative allowed is -1."
            )
        converted[task] = values.astype(np.int32)
    return converted


def _gather(structure, indices):
    return tf.nest.map_structure(lambda tensor: tf.gather(tensor, indices), structure)


def _to_tensors(structure):
    return tf.nest.map_structure(tf.convert_to_tensor, structure)


def _index_dataset(count, shuffle, seed, repeat):
    dataset = tf.data.Dataset.range(count)
    if shuffle:
        dataset = dataset.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset


def _with_labels(batch_inputs, label_tensors, indices):
    """`batch_inputs`, or `(batch_inputs, labels of indices)` when there are labels."""
    if label_tensors is None:
        return batch_inputs
    return batch_inputs, _gather(label_tensors, indices)


def _epoch_batches(count, batch_size, seed, epochs, initial_epoch, drop_remainder):
    """`(indices, batch seed)` of every batch of epochs `initial_epoch` to `epochs - 1`, in a row.

    Epoch `e` takes the stateless shuffle of `[0, count)` by the seed
    `[seed, e]`, and its batch `b` the augmentation seed folded from
    `[seed, e]` and `b`: both are pure functions of `(seed, epoch)`, so
    starting at epoch `k` (a resumed run) gives the batches that an
    uninterrupted run gives at epoch `k`.
    """
    per_epoch = num_batches(count, batch_size, drop_remainder)

    def one_epoch(epoch):
        epoch_seed = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=epoch_seed
        )
        batches = tf.data.Dataset.from_tensor_slices(order).batch(
            batch_size, drop_remainder=drop_remainder
        )
        seeds = tf.data.Dataset.range(per_epoch).map(
            lambda batch: tf.random.experimental.stateless_fold_in(epoch_seed, batch)
        )
        return tf.data.Dataset.zip(batches, seeds)

    dataset = tf.data.Dataset.range(initial_epoch, epochs).flat_map(one_epoch)
    return dataset.apply(
        tf.data.experimental.assert_cardinality((epochs - initial_epoch) * per_epoch)
    )


def _check_epochs(epochs, initial_epoch, shuffle, seed, repeat):
    """Validates `epochs`/`initial_epoch`; returns them as ints (`epochs` may be None)."""
    epochs = positive_int("epochs", epochs, allow_none=True)
    integer = isinstance(initial_epoch, (int, np.integer)) and not isinstance(initial_epoch, bool)
    if not integer or initial_epoch < 0:
        raise ValueError(
            f"`initial_epoch` must be an integer >= 0. Received: initial_epoch={initial_epoch!r}"
        )
    initial_epoch = int(initial_epoch)
    if epochs is None:
        if initial_epoch:
            raise ValueError(
                "`initial_epoch` needs `epochs` (the per-epoch order of a resumable run). "
                f"Received: initial_epoch={initial_epoch}, epochs=None"
            )
        return None, 0
    if initial_epoch > epochs:
        raise ValueError(
            "`initial_epoch` must be at most `epochs` (equal: no batch left). Received: "
            f"initial_epoch={initial_epoch}, epochs={epochs}"
        )
    integer_seed = isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
    if not shuffle or not integer_seed or repeat:
        raise ValueError(
            "`epochs` gives each epoch the order of its (seed, epoch): it needs shuffle=True "
            "and an integer seed, and no repeat. Received: "
            f"shuffle={shuffle!r}, seed={seed!r}, repeat={repeat!r}"
        )
    return epochs, initial_epoch


def _batched_dataset(
    count,
    load,
    batch_size,
    shuffle,
    seed,
    repeat,
    drop_remainder,
    batch_seeds=False,
    epochs=None,
    initial_epoch=0,
):
    """Batches of sample indices mapped by `load`, prefetched.

    With `epochs`, the batches of epochs `initial_epoch`..`epochs - 1` one
    after the other (see `_epoch_batches`); otherwise one pass as
    `_index_dataset` orders it.

    With `batch_seeds`, `load` also receives an int64 `[2]` seed per batch:
    with `epochs` a function of `(seed, epoch, batch)`; otherwise a stream
    that restarts from `seed` for a new dataset and moves on every pass
    (`rerandomize_each_iteration`), for reproducible augmentation.
    """
    if epochs is not None:
        dataset = _epoch_batches(count, batch_size, seed, epochs, initial_epoch, drop_remainder)
        if not batch_seeds:
            dataset = dataset.map(lambda indices, _: indices)
    else:
        dataset = _index_dataset(count, shuffle, seed, repeat)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        if batch_seeds:
            seeds = tf.data.Dataset.random(
                seed=0 if seed is None else seed, rerandomize_each_iteration=True
            ).map(lambda value: tf.stack([value, 0]))
            dataset = tf.data.Dataset.zip(dataset, seeds)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def make_dataset(
    inputs,
    labels=None,
    batch_size=32,
    shuffle=False,
    seed=None,
    drop_remainder=False,
    repeat=False,
    augment=None,
    epochs=None,
    initial_epoch=0,
):
    """In-memory arrays -> batched, prefetched `tf.data.Dataset`.

    Batches are gathered from the arrays by index (shuffled over the whole set
    each epoch when `shuffle`), one gather per batch.

    For training that must resume exactly (`ser_keras.training.runner`), give
    `epochs`: the dataset then holds the batches of epochs `initial_epoch` to
    `epochs - 1` one after the other, each epoch's order and augmentation a
    pure function of `(seed, epoch)` rather than of how many passes ran
    before, so a run resumed at epoch `k` sees the batches that the
    uninterrupted run saw at epoch `k`. Pass `fit` `initial_epoch`, `epochs`
    and `steps_per_epoch=num_batches(N, batch_size, drop_remainder)`.

    Args:
        inputs: np.ndarray `[N, ...]` or dict name -> array `[N, ...]`.
        labels: dict task -> int array `[N]` (-1 = missing), or None to yield
            inputs only (prediction).
        batch_size: samples per batch.
        shuffle: shuffle the sample order, reshuffled every epoch.
        seed: shuffle seed; the same seed gives the same order sequence.
        drop_remainder: drop the last batch when smaller than `batch_size`.
        repeat: repeat indefinitely (then pass `steps_per_epoch` to fit).
        augment: Optional training-time augmentation of the input batches, a
            callable `(batch_inputs, seed) -> batch_inputs` with `seed` an
            int64 `[2]` stateless seed, e.g.
            `ser_keras.data.augmentation.SpecAugment`. The seeds differ per
            batch and per epoch and follow from `seed`, so a run is
            reproducible. Only for training data (it needs `shuffle`).
        epochs: `None` for one pass per iteration of the dataset, reshuffled
            by tf.data each pass; or the number of epochs of the run (needs
            `shuffle` and an integer `seed`, not `repeat`), see above.
        initial_epoch: The first epoch the dataset holds (with `epochs`): the
            number of epochs a resumed run has already completed.

    Returns:
        `tf.data.Dataset` of `(inputs, labels)` (or `inputs` when `labels` is
        None), labels int32.
    """
    batch_size = positive_int("batch_size", batch_size)
    epochs, initial_epoch = _check_epochs(epochs, initial_epoch, shuffle, seed, repeat)
    if augment is not None and not shuffle:
        raise ValueError(
            "`augment` is for training data, which is shuffled: pass shuffle=True "
            f"(received shuffle={shuffle!r}); evaluation data is never augmented."
        )
    inputs, count = _as_input_structure(inputs)
    labels = _as_labels(labels, count)
    input_tensors = _to_tensors(inputs)
    label_tensors = None if labels is None else _to_tensors(labels)

    def load(indices):
        batch_inputs = _gather(input_tensors, indices)
        return _with_labels(batch_inputs, label_tensors, indices)

    if augment is None:
        return _batched_dataset(
            count, load, batch_size, shuffle, seed, repeat, drop_remainder,
            epochs=epochs, initial_epoch=initial_epoch,
        )

    def load_augmented(indices, batch_seed):
        batch_inputs = augment(_gather(input_tensors, indices), batch_seed)
        return _with_labels(batch_inputs, label_tensors, indices)

    return _batched_dataset(
        count, load_augmented, batch_size, shuffle, seed, repeat, drop_remainder,
        batch_seeds=True, epochs=epochs, initial_epoch=initial_epoch,
    )


def num_batches(count, batch_size, drop_remainder=False):
    """Batches in one epoch of `count` samples: `fit`'s `steps_per_epoch` with `epochs`.

    Args:
        count: Samples per epoch.
        batch_size: Samples per batch.
        drop_remainder: Whether the last, smaller batch is dropped.

    Returns:
        The number of batches, an int.
    """
    batch_size = positive_int("batch_size", batch_size)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"`count` must be an integer >= 0. Received: count={count!r}")
    return int(count) // batch_size if drop_remainder else -(-int(count) // batch_size)


def make_waveform_dataset(
    waveforms,
    labels=None,
    batch_size=32,
    shuffle=False,
    seed=None,
    drop_remainder=False,
    repeat=False,
    max_samples=None,
    epochs=None,
    initial_epoch=0,
):
    """Variable-length waveforms -> batches padded to each batch's longest.

    Yields `({"waveform": float32 [B, T_batch], "lengths": int32 [B]}, labels)`,
    the input of a model whose first layer is the `LogMel` front-end
    (`LogMel` accepts this dict, and ignores samples beyond `lengths`).

    Args:
        waveforms: sequence of 1-D float arrays.
        labels: dict task -> int array `[N]` (-1 = missing), or None.
        batch_size: waveforms per batch.
        shuffle: shuffle the order, reshuffled every epoch.
        seed: shuffle seed.
        drop_remainder: drop the last smaller batch.
        repeat: repeat indefinitely.
        max_samples: if set, waveforms are cut to their first `max_samples`
            samples before batching (saves padding and front-end time; note
            that the front-end's per-utterance statistics then come from the
            kept part only).
        epochs: With the number of epochs of the run, each epoch's order is
            a pure function of `(seed, epoch)` (see `make_dataset`).
        initial_epoch: The first epoch the dataset holds (with `epochs`).

    Returns:
        `tf.data.Dataset` as described, prefetched.
    """
    batch_size = positive_int("batch_size", batch_size)
    max_samples = positive_int("max_samples", max_samples, allow_none=True)
    epochs, initial_epoch = _check_epochs(epochs, initial_epoch, shuffle, seed, repeat)
    arrays = _check_waveforms(waveforms)
    if max_samples is not None:
        arrays = [array[:max_samples] for array in arrays]
    count = len(arrays)
    labels = _as_labels(labels, count)
    lengths = np.array([array.shape[0] for array in arrays], dtype=np.int64)
    values = np.concatenate(arrays) if count else np.zeros((0,), np.float32)
    ragged = tf.RaggedTensor.from_row_lengths(values, lengths)
    label_tensors = None if labels is None else _to_tensors(labels)
    lengths_tensor = tf.constant(lengths, dtype=tf.int32)

    def load(indices):
        waveform = tf.gather(ragged, indices).to_tensor(default_value=0.0)
        batch_inputs = {"waveform": waveform, "lengths": tf.gather(lengths_tensor, indices)}
        return _with_labels(batch_inputs, label_tensors, indices)

    return _batched_dataset(
        count, load, batch_size, shuffle, seed, repeat, drop_remainder,
        epochs=epochs, initial_epoch=initial_epoch,
    )


def make_mixed_dataset(
    labelled_inputs,
    labelled_labels,
    unlabelled_inputs,
    unlabelled_labels=None,
    batch_size=32,
    labelled_fraction=0.5,
    seed=None,
    domain_task=None,
    repeat=False,
):
    """Batches mixing labelled and unlabelled samples at a fixed ratio.

    Each batch holds `round(batch_size * labelled_fraction)` labelled samples
    followed by the rest unlabelled; both parts are shuffled independently
    every pass. Tasks missing on one side are filled with -1 there (e.g. the
    emotion label of unlabelled speech), so a masked multi-task loss trains
    the emotion head on the labelled part and the auxiliary heads on all.
    Without `repeat`, one epoch is one pass over the labelled samples (the
    unlabelled stream cycles as long as needed); the last batch may be smaller.

    Args:
        labelled_inputs: array `[N_l, ...]` or dict of arrays.
        labelled_labels: dict task -> int array `[N_l]` (-1 = missing).
        unlabelled_inputs: array `[N_u, ...]` or dict, same structure, dtype and
            trailing shape as `labelled_inputs`.
        unlabelled_labels: dict task -> int array `[N_u]` (e.g. language
            ids), or None.
        batch_size: samples per batch.
        labelled_fraction: share of labelled samples per batch, in (0, 1).
        seed: shuffle seed.
        domain_task: if a name is given, a task of that name is added with
            0 for labelled and 1 for unlabelled samples (paper 000's domain
            classifier).
        repeat: repeat indefinitely.

    Returns:
        `tf.data.Dataset` of `(inputs, labels)`, prefetched.

    Reference:
        Latif et al., multi-task learning for cross-language SER with unlabelled
        data, Section 3.2 (emotion loss on labelled data only; language and
        domain classifiers on all data).
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"`batch_size` must be an integer >= 2. Received: {batch_size!r}")
    if not 0.0 < labelled_fraction < 1.0:
        raise ValueError(
            "`labelled_fraction` must be in (0, 1). "
            f"Received: labelled_fraction={labelled_fraction}"
        )
    num_labelled = min(max(int(round(batch_size * labelled_fraction)), 1), batch_size - 1)
    num_unlabelled = batch_size - num_labelled

    labelled_inputs, labelled_count = _as_input_structure(labelled_inputs, "labelled_inputs")
    unlabelled_inputs, unlabelled_count = _as_input_structure(
        unlabelled_inputs, "unlabelled_inputs"
    )
    if labelled_count == 0 or unlabelled_count == 0:
        raise ValueError(
            "Both parts need samples. Received "
            f"{labelled_count} labelled and {unlabelled_count} unlabelled."
        )
    tf.nest.assert_same_structure(labelled_inputs, unlabelled_inputs)
    for left, right in zip(
        tf.nest.flatten(labelled_inputs), tf.nest.flatten(unlabelled_inputs), strict=True
    ):
        if left.shape[1:] != right.shape[1:] or left.dtype != right.dtype:
            raise ValueError(
                "Labelled and unlabelled inputs differ in dtype or in shape beyond the sample "
                f"axis: {left.dtype}{left.shape[1:]} vs {right.dtype}{right.shape[1:]}"
            )
    labelled_labels = _as_labels(labelled_labels, labelled_count, "labelled_labels") or {}
    unlabelled_labels = _as_labels(unlabelled_labels, unlabelled_count, "unlabelled_labels") or {}
    tasks = list(dict.fromkeys(list(labelled_labels) + list(unlabelled_labels)))
    if domain_task is not None:
        if domain_task in tasks:
            raise ValueError(f"`domain_task`={domain_task!r} is already a task in the labels.")
        labelled_labels[domain_task] = np.zeros(labelled_count, np.int32)
        unlabelled_labels[domain_task] = np.ones(unlabelled_count, np.int32)
        tasks.append(domain_task)
    for task in tasks:
        labelled_labels.setdefault(task, np.full(labelled_count, -1, np.int32))
        unlabelled_labels.setdefault(task, np.full(unlabelled_count, -1, np.int32))

    labelled_tensors = (_to_tensors(labelled_inputs), _to_tensors(labelled_labels))
    unlabelled_tensors = (_to_tensors(unlabelled_inputs), _to_tensors(unlabelled_labels))
    labelled_seed = seed
    unlabelled_seed = None if seed is None else seed + 1

    labelled_indices = _index_dataset(labelled_count, True, labelled_seed, repeat)
    labelled_indices = labelled_indices.batch(num_labelled)
    unlabelled_indices = _index_dataset(unlabelled_count, True, unlabelled_seed, True)
    unlabelled_indices = unlabelled_indices.batch(num_unlabelled, drop_remainder=True)

    def load(labelled_batch, unlabelled_batch):
        first = _gather(labelled_tensors, labelled_batch)
        second = _gather(unlabelled_tensors, unlabelled_batch)
        return tf.nest.map_structure(lambda a, b: tf.concat([a, b], axis=0), first, second)

    dataset = tf.data.Dataset.zip((labelled_indices, unlabelled_indices))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
