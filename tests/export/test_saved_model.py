import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.export import saved_model as saved_model_lib
from ser_keras.export.saved_model import export_saved_model, load_metadata, next_version
from ser_keras.features.logmel import LogMel
from ser_keras.training.multitask import MultiTaskModel

NUM_FRAMES, NUM_MELS = 16, 8
EMOTIONS = ["anger", "happiness", "neutral"]


def _frontend():
    return LogMel.from_preset("fu2021", num_frames=NUM_FRAMES, num_mels=NUM_MELS)


def _model():
    """A small multi-task model on [batch, 16, 8] features (fast to trace)."""
    keras.utils.set_random_seed(0)
    features = keras.Input((NUM_FRAMES, NUM_MELS), name="features")
    hidden = keras.layers.Dense(6, activation="tanh")(features)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    outputs = {
        "emotion": keras.layers.Dense(3, activation="softmax", name="emotion")(pooled),
        "speaker": keras.layers.Dense(2, activation="softmax", name="speaker")(pooled),
    }
    return MultiTaskModel(features, outputs)


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
    assert set(serving.structured_outputs) == expected_keys
    assert serving.structured_outputs["emotion_label"].dtype == tf.string
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
