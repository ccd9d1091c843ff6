import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.export.saved_model import (
    describe_frontend,
    export_saved_model,
    frontend_from_description,
    load_metadata,
)
from ser_keras.export.serving import (
    find_served_models,
    make_predict_request,
    models_config_text,
    predict_request_inputs,
    read_export_sidecar,
    rest_body_inputs,
    rest_predict_body,
    rest_predict_url,
    serve_predict_request,
    sidecar_path,
    signature_input_specs,
    validate_inputs,
    waveform_batch,
    write_export_sidecar,
    write_models_config,
)
from ser_keras.features.logmel import FRONTEND_PRESETS, LogMel
from ser_keras.training.multitask import MultiTaskModel

NUM_FRAMES, NUM_MELS = 16, 8
EMOTIONS = ["anger", "happiness", "neutral"]
GENDERS = ["female", "male"]
RATE = 16000  # the presets' sample rate


def _frontend():
    return LogMel.from_preset("fu2021", num_frames=NUM_FRAMES, num_mels=NUM_MELS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small two-head model exported once: (model, frontend, export dir, loaded)."""
    keras.utils.set_random_seed(0)
    features = keras.Input((NUM_FRAMES, NUM_MELS))
    pooled = keras.layers.GlobalAveragePooling1D()(
        keras.layers.Dense(6, activation="tanh")(features)
    )
    model = MultiTaskModel(
        features,
        {
            "emotion": keras.layers.Dense(3, activation="softmax", name="emotion")(pooled),
            "gender": keras.layers.Dense(2, activation="softmax", name="gender")(pooled),
        },
    )
    frontend = _frontend()
    path = export_saved_model(
        model,
        tmp_path_factory.mktemp("saved_models"),
        "ser",
        frontend=frontend,
        label_names={"emotion": EMOTIONS, "gender": GENDERS},
        verify=False,
    )
    return model, frontend, path, tf.saved_model.load(str(path))


def _waveforms(seed=0, lengths=(12000, 7000)):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype("float32") for n in lengths]


def _arguments(frontend):
    """A front-end's configuration without its layer name."""
    return {k: v for k, v in frontend.get_config().items() if k != "name"}


def _keras_outputs(model, frontend, inputs):
    features = frontend((inputs["waveform"], inputs["lengths"]))
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(features).items()}


# --- models.config ---------------------------------------------------------


def _fake_model(base, name, *versions, with_graph=True):
    for version in versions:
        folder = base / name / str(version)
        folder.mkdir(parents=True)
        if with_graph:
            (folder / "saved_model.pb").write_bytes(b"")


def test_models_config_lists_every_servable_model_folder(tmp_path):
    _fake_model(tmp_path, "b_model", 1, 3)
    _fake_model(tmp_path, "a_model", 2)
    _fake_model(tmp_path, 'we"ird', 1)
    _fake_model(tmp_path, "b_model", 4, with_graph=False)  # an unusable version folder
    _fake_model(tmp_path, "broken", 1, with_graph=False)
    (tmp_path / "empty").mkdir()
    _fake_model(tmp_path, ".tmp-export", 1)  # hidden: ignored
    (tmp_path / "README.md").write_text("not a model")

    found = write_models_config(tmp_path)
    assert found.config_path == tmp_path / "models.config"
    assert found.models == {"a_model": [2], "b_model": [1, 3], 'we"ird': [1]}
    skipped = {entry.path: entry.reason for entry in found.skipped}
    assert set(skipped) == {
        str(tmp_path / "b_model" / "4"),
        str(tmp_path / "broken" / "1"),
        str(tmp_path / "broken"),
        str(tmp_path / "empty"),
    }
    assert "saved_model.pb" in skipped[str(tmp_path / "empty")]

    text = found.config_path.read_text()
    assert text.count("  config {") == 3
    assert 'name: "a_model"\n    base_path: "/models/a_model"' in text
    assert 'name: "we\\"ird"' in text
    assert "latest {\n        num_versions: 1" in text
    assert find_served_models(tmp_path).models == found.models  # models.config is no model

    every = write_models_config(tmp_path, serving_root=None, version_policy="all")
    text = every.config_path.read_text()
    assert f'base_path: "{tmp_path.resolve()}/b_model"' in text
    assert "all {\n      }" in text and "latest" not in text.split("model_config_list")[1]


def test_models_config_parses_as_tf_serving_model_server_config(tmp_path):
    model_server_config_pb2 = pytest.importorskip(
        "tensorflow_serving.config.model_server_config_pb2"
    )
    from google.protobuf import text_format

    text = models_config_text(["ser", 'a"b\\c'], serving_root="/srv/models/", version_policy="all")
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    entries = config.model_config_list.config
    assert [(e.name, e.base_path, e.model_platform) for e in entries] == [
        ("ser", "/srv/models/ser", "tensorflow"),
        ('a"b\\c', '/srv/models/a"b\\c', "tensorflow"),
    ]
    assert all(e.model_version_policy.HasField("all") for e in entries)
    latest = text_format.Parse(
        models_config_text(["ser"]), model_server_config_pb2.ModelServerConfig()
    )
    assert latest.model_config_list.config[0].model_version_policy.latest.num_versions == 1


def test_models_config_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        write_models_config(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No model folder.*empty"):
        write_models_config(tmp_path)
    assert not (tmp_path / "models.config").exists()
    with pytest.raises(ValueError, match="'newest'"):
        models_config_text(["m"], version_policy="newest")
    with pytest.raises(ValueError, match="Control characters"):
        models_config_text(["a\nb"])


# --- gRPC requests ---------------------------------------------------------


def test_predict_request_matches_the_signature_and_serves_the_same_outputs(exported):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    model, frontend, path, loaded = exported
    specs = signature_input_specs(path)
    assert {k: (v.dtype, v.shape.as_list()) for k, v in specs.items()} == {
        "waveform": (tf.float32, [None, None]),
        "lengths": (tf.int32, [None]),
    }
    inputs = waveform_batch(_waveforms(), sample_rate=RATE)
    request = make_predict_request("ser", inputs, specs=specs, version=1)
    wire = type(request).FromString(request.SerializeToString())  # as the server receives it

    assert wire.model_spec.name == "ser" and wire.model_spec.version.value == 1
    assert wire.model_spec.signature_name == "serving_default"
    assert set(wire.inputs) == set(specs)
    for name, spec in specs.items():
        assert wire.inputs[name].dtype == spec.dtype.as_datatype_enum
        assert len(wire.inputs[name].tensor_shape.dim) == spec.shape.rank
    decoded = predict_request_inputs(wire)
    for name in specs:
        assert decoded[name].dtype == inputs[name].dtype
        np.testing.assert_array_equal(decoded[name], inputs[name])

    signature = loaded.signatures["serving_default"]
    direct = signature(**{k: tf.constant(v) for k, v in decoded.items()})
    expected = _keras_outputs(model, frontend, inputs)
    np.testing.assert_allclose(
        direct["emotion_probabilities"].numpy(), expected["emotion"], rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        direct["gender_probabilities"].numpy(), expected["gender"], rtol=0, atol=1e-5
    )

    response = serve_predict_request(loaded, wire)
    assert response.model_spec.name == "ser"
    assert set(response.outputs) == {
        "emotion_probabilities",
        "emotion_label",
        "gender_probabilities",
        "gender_label",
        "speech_seconds",
        "cut",
        "no_speech",
    }
    for name, value in direct.items():
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs[name]), value.numpy())
    labels = [v.decode() for v in tf.make_ndarray(response.outputs["emotion_label"])]
    assert labels == [EMOTIONS[i] for i in expected["emotion"].argmax(axis=-1)]

    # The features signature through the same path.
    features = keras.ops.convert_to_numpy(frontend((inputs["waveform"], inputs["lengths"])))
    request = make_predict_request(
        "ser",
        {"features": features},
        signature_name="features",
        specs=signature_input_specs(loaded, "features"),
    )
    response = serve_predict_request(path, request)
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["emotion_probabilities"]),
        expected["emotion"],
        rtol=0,
        atol=1e-5,
    )


def test_serving_a_bad_request_names_the_input(exported):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    _, _, _, loaded = exported
    inputs = waveform_batch(_waveforms(), sample_rate=RATE)
    inputs["waveform"] = inputs["waveform"].astype("float64")
    request = make_predict_request("ser", inputs)  # no specs: encoded as given
    with pytest.raises(ValueError, match="'waveform' must be float32.*float64"):
        serve_predict_request(loaded, request)
    request.model_spec.signature_name = "classify"
    with pytest.raises(ValueError, match="no signature 'classify'.*serving_default"):
        serve_predict_request(loaded, request)
    with pytest.raises(ValueError, match="positive integer"):
        make_predict_request("ser", waveform_batch(_waveforms(), sample_rate=RATE), version=0)
    with pytest.raises(ValueError, match="model_name"):
        make_predict_request("", waveform_batch(_waveforms(), sample_rate=RATE))


# --- REST --------------------------------------------------------------------


def test_rest_body_round_trips_to_the_same_tensors_and_outputs(exported):
    _, _, path, loaded = exported
    specs = signature_input_specs(loaded)
    inputs = waveform_batch(_waveforms(seed=5, lengths=(3000, 5000, 4000)), sample_rate=RATE)
    signature = loaded.signatures["serving_default"]
    expected = signature(**{k: tf.constant(v) for k, v in inputs.items()})

    for layout in ("columnar", "row"):
        body = json.loads(json.dumps(rest_predict_body(inputs, layout=layout, specs=specs)))
        assert body["signature_name"] == "serving_default"
        if layout == "columnar":
            assert set(body["inputs"]) == {"waveform", "lengths"}
            assert body["inputs"]["lengths"] == [3000, 5000, 4000]
        else:
            assert [row["lengths"] for row in body["instances"]] == [3000, 5000, 4000]
            assert len(body["instances"][0]["waveform"]) == 5000
        arrays = rest_body_inputs(body, specs)
        for name in inputs:  # float32 -> JSON decimal -> float32 is exact
            assert arrays[name].dtype == inputs[name].dtype
            np.testing.assert_array_equal(arrays[name], inputs[name])
        served = signature(**{k: tf.constant(v) for k, v in arrays.items()})
        np.testing.assert_array_equal(
            served["emotion_probabilities"].numpy(), expected["emotion_probabilities"].numpy()
        )

    assert rest_predict_url("ser") == "http://localhost:8501/v1/models/ser:predict"
    assert (
        rest_predict_url("ser", host="10.0.0.2", port=9000, version=3)
        == "http://10.0.0.2:9000/v1/models/ser/versions/3:predict"
    )
    with pytest.raises(ValueError, match="exactly one of"):
        rest_body_inputs({"signature_name": "serving_default"}, specs)
    with pytest.raises(ValueError, match="lack the input.*lengths"):
        rest_body_inputs(
            {"instances": [{"waveform": [0.0], "lengths": 1}, {"waveform": [0]}]}, specs
        )
    with pytest.raises(ValueError, match="row layout"):
        rest_predict_body({"waveform": np.zeros((2, 4)), "lengths": np.ones(3)}, layout="row")


# --- validation ----------------------------------------------------------------


def test_the_signature_itself_rejects_wrong_dtypes_and_ranks_clearly(exported):
    _, _, _, loaded = exported
    signature = loaded.signatures["serving_default"]
    inputs = waveform_batch(_waveforms(), sample_rate=RATE)
    waveform, lengths = tf.constant(inputs["waveform"]), tf.constant(inputs["lengths"])
    errors = tf.errors.InvalidArgumentError
    with pytest.raises(errors, match="expected to be a float tensor but is a double tensor"):
        signature(waveform=tf.cast(waveform, tf.float64), lengths=lengths)
    with pytest.raises(errors, match="expected to be a int32 tensor but is a int64 tensor"):
        signature(waveform=waveform, lengths=tf.cast(lengths, tf.int64))
    with pytest.raises(errors, match=r"Shape of tensor waveform \[12000\] is not compatible"):
        signature(waveform=waveform[0], lengths=lengths)
    with pytest.raises(errors, match=r"Shape of tensor lengths \[2,1\] is not compatible"):
        signature(waveform=waveform, lengths=lengths[:, None])
    with pytest.raises(errors, match="one entry per row of `waveform`"):
        signature(waveform=waveform, lengths=lengths[:1])  # would broadcast silently
    with pytest.raises(errors, match="sample counts >= 0"):
        signature(waveform=waveform, lengths=-lengths)
    with pytest.raises(errors, match="NaN or inf"):
        signature(waveform=waveform * np.float32("nan"), lengths=lengths)
    with pytest.raises(errors, match=r"Shape of tensor features \[16,8\] is not compatible"):
        loaded.signatures["features"](features=tf.zeros((NUM_FRAMES, NUM_MELS)))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda x: x.pop("lengths"), r"Missing input\(s\) \['lengths'\].*waveform float32"),
        (lambda x: x.update(wave=x.pop("waveform")), r"Unknown input\(s\) \['wave'\]"),
        (
            lambda x: x.update(waveform=x["waveform"].astype("float64")),
            r"'waveform' must be float32 \[None, None\]; received dtype float64",
        ),
        (
            lambda x: x.update(lengths=tf.constant(x["lengths"], tf.int64)),
            "'lengths' must be int32.*int64",
        ),
        (
            lambda x: x.update(waveform=x["waveform"][0]),
            r"'waveform' must have rank 2.*shape \(12000,\).*waveform\[None\]",
        ),
        (lambda x: x.update(waveform=[[0.1, 0.2], [0.3]]), "'waveform' is ragged"),
        (lambda x: x.update(lengths=x["lengths"][:1]), "batch size.*lengths has 1, waveform has 2"),
        (lambda x: x.update(lengths=np.array([5, -1], "int32")), r"rows \[1\] are negative"),
        (lambda x: x["waveform"].__setitem__((1, 3), np.inf), r"'waveform' has NaN or inf.*\[1\]"),
        (lambda x: x.update(lengths=["a", "b"]), "'lengths' must be int32.*str"),
        (lambda x: x.update(lengths=[1.5, 2.0]), "'lengths' must be int32.*float64"),
        (lambda x: x.update(waveform=[[True, False]] * 2), "'waveform' must be float32.*bool"),
    ],
)
def test_validate_inputs_names_the_bad_input(exported, change, message):
    specs = signature_input_specs(exported[3])
    inputs = waveform_batch(_waveforms(), sample_rate=RATE)
    change(inputs)
    with pytest.raises(ValueError, match=message):
        validate_inputs(inputs, specs)


def test_validate_inputs_converts_json_like_values_and_checks_fixed_sizes(exported):
    loaded = exported[3]
    arrays = validate_inputs(
        {"waveform": [[0, 1, 2], [3, 4, 5]], "lengths": [3.0, 2.0]}, signature_input_specs(loaded)
    )
    assert arrays["waveform"].dtype == np.float32 and arrays["lengths"].dtype == np.int32
    np.testing.assert_array_equal(arrays["lengths"], [3, 2])
    specs = signature_input_specs(loaded, "features")
    with pytest.raises(
        ValueError, match=r"'features' must be float32 \[None, 16, 8\].*axis 2 is 9"
    ):
        validate_inputs({"features": np.zeros((1, NUM_FRAMES, 9), "float32")}, specs)
    with pytest.raises(ValueError, match="mapping"):
        validate_inputs([np.zeros((1, 2))], specs)
    with pytest.raises(ValueError, match="#1: expected a 1-D waveform"):
        waveform_batch([np.zeros(10), np.zeros((2, 10))], sample_rate=RATE)
    with pytest.raises(ValueError, match="empty"):
        waveform_batch([], sample_rate=RATE)


# --- front-end description and sidecars -------------------------------------


def test_every_preset_is_recognised_and_overrides_rebuild_the_same_frontend():
    for preset in FRONTEND_PRESETS:
        description = describe_frontend(LogMel.from_preset(preset))
        assert (description["preset"], description["overrides"]) == (preset, {})
    frontend = LogMel.from_preset("latif", num_frames=300, pad_value=-2.0)
    description = describe_frontend(frontend)
    assert description["preset"] == "latif"
    assert description["overrides"] == {"num_frames": 300, "pad_value": -2.0}
    assert description["class"] == "ser_keras.features.logmel.LogMel"
    rebuilt = frontend_from_description(json.loads(json.dumps(description)))
    assert _arguments(rebuilt) == _arguments(frontend)
    from_config = frontend_from_description({"config": description["config"]})
    assert _arguments(from_config) == _arguments(frontend)
    with pytest.raises(ValueError, match="'preset' or a 'config'"):
        frontend_from_description({"overrides": {}})
    with pytest.raises(ValueError, match="Unknown front-end preset"):
        frontend_from_description({"preset": "mfcc"})
    with pytest.raises(ValueError, match="hop"):
        frontend_from_description({"preset": "fu2021", "overrides": {"hop": 10}})
    with pytest.raises(ValueError, match="Only LogMel"):
        frontend_from_description({"class": "x.Mfcc", "preset": "fu2021"})


def test_the_export_stores_preset_overrides_and_label_names(exported):
    _, _, path, loaded = exported
    document = load_metadata(path)
    assert document["frontend"]["preset"] == "fu2021"
    assert document["frontend"]["overrides"] == {"num_frames": NUM_FRAMES, "num_mels": NUM_MELS}
    assert document["frontend"]["config"]["fft_length"] == 800
    assert document["tasks"]["gender"]["label_names"] == GENDERS
    assert (
        json.loads(loaded.ser_keras_metadata.numpy().decode())["frontend"] == document["frontend"]
    )


def test_sidecar_round_trip_and_bad_sidecars_are_named(tmp_path):
    model_path = tmp_path / "best.keras"
    assert sidecar_path(model_path) == tmp_path / "best.export.json"
    assert read_export_sidecar(model_path) is None
    written = write_export_sidecar(
        model_path,
        frontend=_frontend(),
        label_names={"emotion": EMOTIONS},
        name="ser",
        metadata={"fold": "DC"},
    )
    assert written == tmp_path / "best.export.json"
    document = read_export_sidecar(model_path)
    assert document["name"] == "ser" and document["metadata"] == {"fold": "DC"}
    assert document["label_names"] == {"emotion": EMOTIONS}
    rebuilt = frontend_from_description(document["frontend"])
    assert _arguments(rebuilt) == _arguments(_frontend())

    written.write_text("{not json")
    with pytest.raises(ValueError, match="best.export.json"):
        read_export_sidecar(model_path)
    written.write_text(json.dumps({"label_names": {"emotion": EMOTIONS}}))
    with pytest.raises(ValueError, match="not a ser_keras export sidecar"):
        read_export_sidecar(model_path)
    with pytest.raises(ValueError, match="at least two names"):
        write_export_sidecar(model_path, frontend=_frontend(), label_names={"emotion": "anger"})
    with pytest.raises(ValueError, match="repeats"):
        write_export_sidecar(model_path, frontend=_frontend(), label_names={"emotion": ["a", "a"]})
    with pytest.raises(ValueError, match=".keras file"):
        write_export_sidecar(tmp_path / "best.h5", frontend=_frontend(), label_names={})


# --- sample rates -------------------------------------------------------------


def test_request_helpers_refuse_audio_at_another_rate_than_the_model(exported):
    _, _, path, _ = exported
    model_rate = load_metadata(path)["sample_rate"]
    assert model_rate == RATE
    waveforms = _waveforms()
    with pytest.raises(ValueError, match="model takes 16000 Hz audio; received audio at 22050 Hz"):
        waveform_batch(waveforms, sample_rate=22050)
    with pytest.raises(ValueError, match="takes 8000 Hz audio; received audio at 16000 Hz"):
        waveform_batch(waveforms, sample_rate=RATE, model_sample_rate=8000)
    with pytest.raises(ValueError, match="sample_rate"):
        waveform_batch(waveforms, sample_rate=0)
    with pytest.raises(TypeError, match="sample_rate"):
        waveform_batch(waveforms)  # the rate must be stated
    inputs = waveform_batch(waveforms, sample_rate=float(model_rate), model_sample_rate=model_rate)
    with pytest.raises(ValueError, match="received audio at 22050 Hz"):
        rest_predict_body(inputs, sample_rate=22050)
    with pytest.raises(ValueError, match="received audio at 44100 Hz"):
        make_predict_request("ser", inputs, sample_rate=44100)
    assert rest_predict_body(inputs, sample_rate=RATE)["inputs"]["lengths"] == [12000, 7000]
