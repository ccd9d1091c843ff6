import json
import os
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.audio.io import AudioOptions
from ser_keras.export import saved_model as saved_model_lib
from ser_keras.export.saved_model import export_saved_model, load_metadata, next_version
from ser_keras.features.logmel import LogMel
from ser_keras.features.trimming import TrimSilence, trim_silence_batch
from tests.helpers import speech_like, tiny_multitask_model

NUM_FRAMES, NUM_MELS = 16, 8
EMOTIONS = ["anger", "happiness", "neutral"]


def _frontend():
    return LogMel.from_preset("fu2021", num_frames=NUM_FRAMES, num_mels=NUM_MELS)


def _model():
    """A small multi-task model on [batch, 16, 8] features (fast to trace)."""
    return tiny_multitask_model(NUM_FRAMES, NUM_MELS, {"emotion": 3, "speaker": 2}, seed=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base_dir = tmp_path_factory.mktemp("saved_models")
    model = _model()
    path = export_saved_model(
        model,
        base_dir,
        "ser",
        frontend=_frontend(),
        label_names={"emotion": EMOTIONS, "speaker": ["savee:DC", "savee:JE"]},
        metadata={"run": "test", "ua": 0.5},
    )
    return base_dir, model, path


def test_layout_signatures_and_outputs(exported):
    base_dir, model, path = exported
    assert path == base_dir / "ser" / "1"
    assert sorted(p.name for p in (base_dir / "ser").iterdir()) == ["1"]  # no temporary left
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {"serving_default", "features"}

    serving = loaded.signatures["serving_default"]
    inputs = serving.structured_input_signature[1]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()} == {
        "waveform": (tf.float32, [None, None]),
        "lengths": (tf.int32, [None]),
    }
    expected_keys = {
        "emotion_probabilities",
        "emotion_label",
        "speaker_probabilities",
        "speaker_label",
    }
    audio_keys = {"speech_seconds": tf.float32, "cut": tf.bool, "no_speech": tf.bool}
    assert set(serving.structured_outputs) == expected_keys | set(audio_keys)
    for key, dtype in audio_keys.items():
        assert serving.structured_outputs[key].dtype == dtype
        assert serving.structured_outputs[key].shape.as_list() == [None]
    assert serving.structured_outputs["emotion_label"].dtype == tf.string
    assert set(loaded.signatures["features"].structured_outputs) == expected_keys
    features_inputs = loaded.signatures["features"].structured_input_signature[1]
    assert features_inputs["features"].shape.as_list() == [None, NUM_FRAMES, NUM_MELS]

    rng = np.random.default_rng(3)
    waveform = (0.1 * rng.standard_normal((3, 12000))).astype("float32")
    lengths = np.array([12000, 8000, 4000], dtype="int32")
    served = serving(waveform=tf.constant(waveform), lengths=tf.constant(lengths))
    expected = model(_frontend()((waveform, lengths)))
    np.testing.assert_allclose(
        served["emotion_probabilities"].numpy(), expected["emotion"].numpy(), atol=1e-5
    )
    labels = [v.decode() for v in served["emotion_label"].numpy()]
    assert labels == [EMOTIONS[i] for i in np.argmax(expected["emotion"].numpy(), axis=-1)]


def test_metadata_is_stored_as_json_and_in_the_saved_model(exported):
    _, model, path = exported
    document = load_metadata(path)
    assert document["tasks"]["emotion"] == {"num_classes": 3, "label_names": EMOTIONS}
    assert document["metadata"] == {"run": "test", "ua": 0.5}
    assert document["frontend"]["config"]["frame_step"] == 400
    assert document["sample_rate"] == 16000 and document["version"] == 1
    # Trimming by default, as training's decoding (AudioOptions' defaults).
    options = AudioOptions()
    trimming = document["trim_silence"]
    assert trimming["enabled"] is True
    assert trimming["class"] == "ser_keras.features.trimming.TrimSilence"
    assert trimming["config"] == {
        "sample_rate": 16000,
        "top_db": options.trim_db,
        "frame_length": options.trim_frame_length,
        "hop_length": options.trim_hop_length,
        "silence_floor_db": options.silence_floor_db,
    }
    assert (trimming["frame_samples"], trimming["hop_samples"]) == (1024, 256)
    assert document["signatures"]["serving_default"]["outputs"][:2] == [
        "emotion_probabilities",
        "emotion_label",
    ]
    loaded = tf.saved_model.load(str(path))
    assert json.loads(loaded.ser_keras_metadata.numpy().decode()) == document
    assert [v.decode() for v in loaded.emotion_label_names.numpy()] == EMOTIONS


def test_a_predict_request_proto_is_served(exported):
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    _, _, path = exported
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ser"
    request.model_spec.signature_name = "serving_default"
    waveform = (0.1 * np.random.default_rng(4).standard_normal((1, 16000))).astype("float32")
    request.inputs["waveform"].CopyFrom(tf.make_tensor_proto(waveform))
    request.inputs["lengths"].CopyFrom(tf.make_tensor_proto(np.array([16000], dtype="int32")))
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())

    # What the model server does with it: the signature named in the request,
    # called with the decoded tensors.
    signature = tf.saved_model.load(str(path)).signatures[request.model_spec.signature_name]
    arguments = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    assert set(arguments) == set(signature.structured_input_signature[1])
    response = signature(**arguments)
    assert response["emotion_label"].numpy()[0].decode() in EMOTIONS
    np.testing.assert_allclose(response["emotion_probabilities"].numpy().sum(), 1.0, atol=1e-5)


def test_versions_count_up_and_are_never_overwritten(tmp_path):
    model, frontend = _model(), _frontend()
    names = {"emotion": EMOTIONS}

    def export(**kwargs):
        return export_saved_model(
            model, tmp_path, "m", frontend=frontend, label_names=names, verify=False, **kwargs
        )

    assert next_version(tmp_path, "m") == 1
    assert export().name == "1"
    assert export().name == "2"
    assert export(version=5).name == "5"
    assert export().name == "6"
    with pytest.raises(ValueError, match="exists already"):
        export(version=2)
    with pytest.raises(ValueError, match="positive integer"):
        export(version=0)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2", "5", "6"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_export_leaves_no_partial_version(tmp_path, monkeypatch, error):
    model, frontend = _model(), _frontend()
    first = export_saved_model(
        model, tmp_path, "m", frontend=frontend, label_names={"emotion": EMOTIONS}, verify=False
    )
    before = {p.name: p.stat().st_mtime_ns for p in first.rglob("*")}
    real_save = tf.saved_model.save

    def crash_after_writing(obj, export_dir, *args, **kwargs):
        real_save(obj, export_dir, *args, **kwargs)  # a complete write, then a crash
        raise error

    monkeypatch.setattr(saved_model_lib.tf.saved_model, "save", crash_after_writing)
    with pytest.raises(type(error)):
        export_saved_model(
            model, tmp_path, "m", frontend=frontend, label_names={"emotion": EMOTIONS}
        )
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]
    assert {p.name: p.stat().st_mtime_ns for p in first.rglob("*")} == before


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    def mismatch(*args, **kwargs):
        raise RuntimeError("Export verification failed: simulated")

    monkeypatch.setattr(saved_model_lib, "_verify", mismatch)
    with pytest.raises(RuntimeError, match="verification"):
        export_saved_model(
            _model(), tmp_path, "m", frontend=_frontend(), label_names={"emotion": EMOTIONS}
        )
    assert os.listdir(tmp_path / "m") == []


def test_single_output_model_is_served_as_the_emotion_head(tmp_path):
    features = keras.Input((NUM_FRAMES, NUM_MELS))
    pooled = keras.layers.GlobalAveragePooling1D()(features)
    model = keras.Model(features, keras.layers.Dense(3, activation="softmax")(pooled))
    path = export_saved_model(
        model, tmp_path, "plain", frontend=_frontend(), label_names={"emotion": EMOTIONS}
    )
    outputs = tf.saved_model.load(str(path)).signatures["features"].structured_outputs
    assert set(outputs) == {"emotion_probabilities", "emotion_label"}


def test_bad_arguments_are_refused_before_writing(tmp_path):
    model, frontend = _model(), _frontend()

    def export(**kwargs):
        arguments = dict(frontend=frontend, label_names={"emotion": EMOTIONS})
        arguments.update(kwargs)
        return export_saved_model(model, tmp_path, arguments.pop("name", "m"), **arguments)

    with pytest.raises(ValueError, match="3 classes but 2"):
        export(label_names={"emotion": EMOTIONS[:2]})
    with pytest.raises(ValueError, match="'emotion' class names"):
        export(label_names={"speaker": ["a", "b"]})
    with pytest.raises(ValueError, match="lacks"):
        export(label_names={"emotion": EMOTIONS, "gender": ["f", "m"]})
    with pytest.raises(ValueError, match="JSON"):
        export(metadata={"when": object()})
    with pytest.raises(ValueError, match="front-end produces"):
        export(frontend=LogMel.from_preset("fu2021", num_frames=NUM_FRAMES, num_mels=16))
    with pytest.raises(ValueError, match="plain folder name"):
        export(name="../m")
    with pytest.raises(ValueError, match="Keras layer"):
        export(frontend=lambda x: x)
    assert not (tmp_path / "m").exists() or os.listdir(tmp_path / "m") == []


# --- silence trimming in serving_default ------------------------------------


def _latif_frontend():
    return LogMel.from_preset("latif", num_frames=NUM_FRAMES, num_mels=NUM_MELS)


@pytest.fixture(scope="module")
def trimming_exports(tmp_path_factory):
    """The same model behind the same front-end, exported with and without trimming.

    Both verified (the verification batch has silence at the ends of a row).
    The "latif" front-end (per-utterance standardisation) is used: fu2021's
    min-max over the valid frames moves with any frame of near-silence, even
    the <= 48 ms that trimming leaves, so it would measure the front-end's
    sensitivity rather than the trimming.
    """
    base_dir = tmp_path_factory.mktemp("trimming")
    model = _model()
    paths = {
        trim: export_saved_model(
            model,
            base_dir,
            f"trim_{trim}",
            frontend=_latif_frontend(),
            label_names={"emotion": EMOTIONS, "speaker": ["a", "b"]},
            trim_silence=trim,
        )
        for trim in (True, False)
    }
    return model, paths


def _bare_and_padded():
    """1 s of speech-like signal, loud at both ends (trimming keeps all of it), and it
    padded with 0.5 s of digital silence at both ends."""
    bare = speech_like(1.2, seed=5)[2400 : 2400 + 16000]
    silence = np.zeros(8000, dtype=np.float32)
    return bare, np.concatenate([silence, bare, silence])


def _serve(path, waveforms):
    batch = np.zeros((len(waveforms), max(len(w) for w in waveforms)), dtype=np.float32)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        waveform=tf.constant(batch), lengths=tf.constant(lengths)
    )
    return served["emotion_probabilities"].numpy(), batch, lengths


# Trimming leaves up to frame / 2 + hop = 768 samples (48 ms) of the padding
# at each end (320 before and 576 after here), so the features are not the
# bare waveform's: measured 0.017 apart at most, against 0.30 without trimming.
PADDED_TOLERANCE = 0.05


def test_trimming_export_serves_padded_audio_as_the_bare_audio(trimming_exports):
    model, paths = trimming_exports
    bare, padded = _bare_and_padded()
    assert trim_silence_batch(bare[None])[2].tolist() == [[0, len(bare)]]

    probabilities, batch, lengths = _serve(paths[True], [bare, padded])
    np.testing.assert_allclose(probabilities[1], probabilities[0], rtol=0, atol=PADDED_TOLERANCE)
    # Exactly the Keras model on the rows trimmed in numpy, as training decodes them.
    trimmed, trimmed_lengths, bounds = trim_silence_batch(batch, lengths)
    assert bounds.tolist() == [[0, 16000], [7680, 24576]]
    expected = model(_latif_frontend()((trimmed, trimmed_lengths)))["emotion"]
    np.testing.assert_allclose(probabilities, np.asarray(expected), rtol=0, atol=1e-5)

    untrimmed, _, _ = _serve(paths[False], [bare, padded])
    np.testing.assert_allclose(untrimmed[0], probabilities[0], rtol=0, atol=1e-5)
    assert np.max(np.abs(untrimmed[1] - untrimmed[0])) > 3 * PADDED_TOLERANCE


def test_the_metadata_records_whether_the_export_trims(trimming_exports):
    _, paths = trimming_exports
    for trim, path in paths.items():
        document = load_metadata(path)
        assert document["trim_silence"]["enabled"] is trim
        assert ("config" in document["trim_silence"]) is trim
        loaded = tf.saved_model.load(str(path))
        in_graph = json.loads(loaded.ser_keras_metadata.numpy().decode())
        assert in_graph["trim_silence"] == document["trim_silence"]


def test_verification_checks_the_in_graph_trimming(tmp_path):
    class NotTrimming(TrimSilence):
        def call(self, inputs):
            waveform, lengths = inputs
            return waveform, lengths

    with pytest.raises(RuntimeError, match="verification failed.*serving_default"):
        export_saved_model(
            _model(),
            tmp_path,
            "m",
            frontend=_frontend(),
            label_names={"emotion": EMOTIONS},
            trim_silence=NotTrimming(),
        )
    assert os.listdir(tmp_path / "m") == []


def test_trim_silence_argument_forms():
    trimmer = saved_model_lib._silence_trimmer
    assert trimmer(False, 16000) is None and trimmer(None, 16000) is None
    assert trimmer(AudioOptions(trim=False), 16000) is None
    custom = trimmer(AudioOptions(trim_db=30.0, sample_rate=None), 8000)
    assert (custom.top_db, custom.sample_rate) == (30.0, 8000)
    layer = TrimSilence(top_db=50.0)
    assert trimmer(layer, 16000) is layer
    assert trimmer(True, 16000).get_config()["top_db"] == AudioOptions().trim_db


@pytest.mark.parametrize(
    "value, message",
    [
        (AudioOptions(remove_pauses=True), "remove_pauses=True"),
        (AudioOptions(sample_rate=22050), "differs"),
        (TrimSilence(sample_rate=8000), "8000 Hz"),
        ("yes", "must be True, False"),
    ],
)
def test_bad_trim_silence_is_refused_before_writing(tmp_path, value, message):
    with pytest.raises(ValueError, match=message):
        export_saved_model(
            _model(),
            tmp_path,
            "m",
            frontend=_frontend(),
            label_names={"emotion": EMOTIONS},
            trim_silence=value,
        )
    assert not (tmp_path / "m").exists() or os.listdir(tmp_path / "m") == []


# --- what serving_default says about the audio --------------------------------

BUDGET_SAMPLES = NUM_FRAMES * 400  # fu2021's frame_step: 6400 samples, 0.4 s


def _serve_rows(path, rows, lengths=None):
    batch = np.zeros((len(rows), max(len(row) for row in rows)), dtype=np.float32)
    for index, row in enumerate(rows):
        batch[index, : len(row)] = row
    if lengths is None:
        lengths = [len(row) for row in rows]
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        waveform=tf.constant(batch), lengths=tf.constant(np.array(lengths, dtype=np.int32))
    )
    return {key: value.numpy() for key, value in served.items()}


def test_long_audio_is_cut_to_the_frame_budget_and_says_so(exported):
    _, _, path = exported
    rng = np.random.default_rng(7)
    long, short = (0.1 * rng.standard_normal((2, 16000))).astype(np.float32)
    served = _serve_rows(path, [long, short[:4800]])
    assert served["cut"].tolist() == [True, False]
    np.testing.assert_allclose(served["speech_seconds"], [BUDGET_SAMPLES / 16000, 0.3], atol=1e-6)
    assert served["no_speech"].tolist() == [False, False]
    document = load_metadata(path)
    assert document["frame_budget"] == {"samples": BUDGET_SAMPLES, "seconds": 0.4}
    assert document["sample_rate"] == 16000 and document["silence_floor_db"] == -60.0
    assert document["signatures"]["serving_default"]["outputs"][-3:] == [
        "speech_seconds",
        "cut",
        "no_speech",
    ]


def test_silent_or_empty_audio_is_flagged_and_gets_no_label(exported, trimming_exports):
    _, _, path = exported
    speech = speech_like(1.0, seed=4)[:4000]
    silence = np.zeros(16000, dtype=np.float32)
    faint = np.full(16000, 1e-4, dtype=np.float32)  # -80 dBFS, below the -60 dBFS floor
    served = _serve_rows(path, [speech, silence, faint, speech], lengths=[4000, 16000, 16000, 0])
    assert served["no_speech"].tolist() == [False, True, True, True]
    assert [label.decode() for label in served["emotion_label"]][1:] == ["", "", ""]
    assert served["emotion_label"][0].decode() in EMOTIONS
    assert served["speaker_label"][1].decode() == ""
    assert served["speech_seconds"].tolist()[1:] == [0.0, 0.0, 0.0]
    assert served["cut"].tolist() == [False, False, False, False]
    # Without trimming too: the silence floor alone flags it.
    _, paths = trimming_exports
    untrimmed = _serve_rows(paths[False], [speech, silence])
    assert untrimmed["no_speech"].tolist() == [False, True]


def test_the_features_signature_rejects_nan_and_inf(exported):
    _, _, path = exported
    features = tf.saved_model.load(str(path)).signatures["features"]
    values = np.zeros((2, NUM_FRAMES, NUM_MELS), dtype=np.float32)
    assert features(features=tf.constant(values))["emotion_probabilities"].shape == (2, 3)
    for bad in (np.nan, np.inf):
        values[1, 3, 2] = bad
        with pytest.raises(tf.errors.InvalidArgumentError, match="`features` has NaN or inf"):
            features(features=tf.constant(values))


def test_verification_checks_the_audio_outputs(tmp_path, monkeypatch):
    real = saved_model_lib.ServingFunctions.audio_outputs

    def never_cut(self, waveform, lengths, used_lengths):
        outputs = real(self, waveform, lengths, used_lengths)
        outputs["cut"] = tf.zeros_like(outputs["cut"])
        return outputs

    monkeypatch.setattr(saved_model_lib.ServingFunctions, "audio_outputs", never_cut)
    with pytest.raises(RuntimeError, match="verification failed.*'cut'"):
        export_saved_model(
            _model(), tmp_path, "m", frontend=_frontend(), label_names={"emotion": EMOTIONS}
        )
    assert os.listdir(tmp_path / "m") == []


# --- temporary folders of killed exports ---------------------------------------


def _killed_export_folder(model_dir, version):
    """The temporary folder of an export killed with SIGKILL by another process."""
    import signal
    import subprocess
    import sys

    code = (
        "import os, pathlib, signal, sys, tempfile\n"
        "folder = tempfile.mkdtemp(prefix=f'.tmp-{sys.argv[2]}-{sys.argv[3]}-{os.getpid()}-',"
        " dir=sys.argv[1])\n"
        "(pathlib.Path(folder) / 'saved_model.pb').write_bytes(b'half')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    tag = saved_model_lib._process_tag()
    completed = subprocess.run(
        [sys.executable, "-c", code, str(model_dir), str(version), tag], timeout=60
    )
    assert completed.returncode == -signal.SIGKILL
    [folder] = [p for p in model_dir.iterdir() if p.name.startswith(f".tmp-{version}-")]
    return folder


@pytest.mark.skipif(os.name != "posix", reason="process checks need POSIX")
def test_an_export_removes_what_killed_exports_left(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    killed = _killed_export_folder(model_dir, 1)
    tag = saved_model_lib._process_tag()
    # An export still running in this process, one on another host, and one of an
    # older exporter's naming: kept while recent.
    running = model_dir / f".tmp-2-{tag}-{os.getpid()}-abc"
    elsewhere = model_dir / ".tmp-3-otherhost.4026531836-12345-abc"
    old_style_recent = model_dir / ".tmp-4-k2j_x9"
    old_style_stale = model_dir / ".tmp-5-q8zz1a"
    for folder in (running, elsewhere, old_style_recent, old_style_stale):
        folder.mkdir()
        (folder / "saved_model.pb").write_bytes(b"")
    day_ago = time.time() - saved_model_lib.STALE_TEMPORARY_SECONDS - 60
    for item in (old_style_stale / "saved_model.pb", old_style_stale):
        os.utime(item, (day_ago, day_ago))
    (model_dir / ".tmp-notes").write_text("a file, not an export")

    path = export_saved_model(
        _model(),
        tmp_path,
        "m",
        frontend=_frontend(),
        label_names={"emotion": EMOTIONS},
        verify=False,
    )
    assert path == model_dir / "1"
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        ["1", running.name, elsewhere.name, old_style_recent.name, ".tmp-notes"]
    )
    assert not killed.exists() and not old_style_stale.exists()

    # A day later, the folders nobody has touched go too, whoever wrote them.
    later = time.time() + saved_model_lib.STALE_TEMPORARY_SECONDS + 60
    removed = saved_model_lib.remove_stale_temporaries(model_dir, now=later)
    assert sorted(p.name for p in removed) == sorted(
        [running.name, elsewhere.name, old_style_recent.name]
    )
