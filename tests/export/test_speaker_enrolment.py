"""Per-speaker normalisation served: `enrol`, `serving_enrolled` and the fallback.

The SavedModel is exercised in a separate Python process that imports only
TensorFlow (never ser_keras), through `tf.saved_model.load` and through the
graph-mode loader a model server uses (the signature's tensors fed without
Python's shape checks); what it returns is compared here with the Keras model
on features standardised as training standardises them
(`standardize_per_speaker`, `BandStandardization`).
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from ser_keras.audio.io import load_audio, trim_silence
from ser_keras.export import saved_model as saved_model_lib
from ser_keras.export.saved_model import (
    SpeakerNormalization,
    export_saved_model,
    load_metadata,
)
from ser_keras.export.serving import (
    enrolled_inputs,
    enrolment_statistics,
    make_enrol_request,
    make_enrolled_request,
    rest_body_inputs,
    rest_enrol_body,
    rest_enrolled_body,
    serve_predict_request,
    signature_input_specs,
)
from ser_keras.features.logmel import LogMel
from ser_keras.features.normalization import (
    BandStandardization,
    band_statistics,
    standardize_per_speaker,
)
from ser_keras.predict import FALLBACK_NOTE, Predictor
from tests.helpers import speech_like, tiny_multitask_model, write_wav

RATE = 16000
NUM_FRAMES, NUM_MELS = 32, 8
EMOTIONS = ["anger", "happiness", "neutral"]
GENDERS = ["female", "male"]
TOLERANCE = 1e-5


def _frontend():
    return LogMel.from_preset("fu2021", num_frames=NUM_FRAMES, num_mels=NUM_MELS)


def _model():
    return tiny_multitask_model(
        NUM_FRAMES, NUM_MELS, {"emotion": 3, "gender": 2}, units=8, seed=5
    )


def _speaker(f0, seeds, seconds, lead=0.2):
    """Recordings of a synthetic speaker, with silence before and after the speech."""
    waveforms = []
    for seed, length in zip(seeds, seconds, strict=True):
        speech = speech_like(length, RATE, f0=f0, seed=seed)
        silence = np.zeros(int(lead * RATE), dtype=np.float32)
        waveforms.append(np.concatenate([silence, speech, silence[: len(silence) // 2]]))
    return waveforms


def _batch(waveforms):
    lengths = np.array([len(w) for w in waveforms], dtype=np.int32)
    batch = np.zeros((len(waveforms), lengths.max()), dtype=np.float32)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
    return batch, lengths


def _training_features(waveforms):
    """The front-end's features of the recordings decoded as training decodes them (trimmed)."""
    trimmed = [trim_silence(w, RATE)[0] for w in waveforms]
    batch, lengths = _batch(trimmed)
    return keras.ops.convert_to_numpy(_frontend()((batch, lengths)))


def _probabilities(model, features):
    return {
        task: keras.ops.convert_to_numpy(value)
        for task, value in model(features, training=False).items()
    }


# The separate process: TensorFlow only. It writes what the export answered.
CLIENT = r"""
import json
import sys

import numpy as np
import tensorflow as tf

export_dir, data_path, out_path = sys.argv[1:4]
data = np.load(data_path)
waveform, lengths = data["waveform"], data["lengths"]
rows = waveform.shape[0]
loaded = tf.saved_model.load(export_dir)
signatures = loaded.signatures
arrays, errors = {}, {}

enrolled = signatures["enrol"](waveform=tf.constant(waveform), lengths=tf.constant(lengths))
mean, std = enrolled["band_mean"].numpy(), enrolled["band_std"].numpy()
arrays.update(band_mean=mean, band_std=std, frames=enrolled["frames"].numpy(),
              enrol_no_speech=enrolled["no_speech"].numpy())


def statistics(mean_rows, std_rows):
    return {"band_mean": tf.constant(mean_rows), "band_std": tf.constant(std_rows)}


tiled = statistics(np.tile(mean, (rows, 1)), np.tile(std, (rows, 1)))
served = signatures["serving_enrolled"](
    waveform=tf.constant(waveform), lengths=tf.constant(lengths), **tiled)
fallback = signatures["serving_default"](
    waveform=tf.constant(waveform), lengths=tf.constant(lengths))
for prefix, outputs in (("enrolled", served), ("fallback", fallback)):
    for key, value in outputs.items():
        value = value.numpy()
        arrays[f"{prefix}/{key}"] = value.astype(str) if value.dtype == object else value


def error_of(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - recorded for the test to judge
        return f"{type(error).__name__}: {getattr(error, 'message', error)}"
    return None


enrolled_call = signatures["serving_enrolled"]
inputs = {"waveform": tf.constant(waveform), "lengths": tf.constant(lengths)}
bad = {
    "rows": statistics(np.tile(mean, (rows + 1, 1)), np.tile(std, (rows + 1, 1))),
    "bands": statistics(np.tile(np.append(mean, 0.0), (rows, 1)).astype(np.float32),
                        np.tile(np.append(std, 1.0), (rows, 1)).astype(np.float32)),
    "rank": statistics(mean, std),
}
for name, values in bad.items():
    errors[f"band_mean_{name}"] = error_of(lambda values=values: enrolled_call(**inputs, **values))
with_nan = waveform.copy()
with_nan[1, 1000] = np.nan
errors["enrol_nan"] = error_of(
    lambda: signatures["enrol"](waveform=tf.constant(with_nan), lengths=tf.constant(lengths)))
errors["enrol_silent"] = error_of(
    lambda: signatures["enrol"](waveform=tf.zeros_like(waveform), lengths=tf.constant(lengths)))

# The model server's path: the graph-mode loader, the signature's tensors fed
# through placeholders of any shape (a server checks dtypes, not shapes).
graph = tf.Graph()
with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
    meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
    signature = meta.signature_def["serving_enrolled"]
    free = {
        name: tf.compat.v1.placeholder(tf.as_dtype(spec.dtype), None, name=f"free_{index}")
        for index, (name, spec) in enumerate(sorted(signature.inputs.items()))
    }
    [probabilities] = tf.compat.v1.import_graph_def(
        meta.graph_def,
        input_map={signature.inputs[name].name: free[name] for name in free},
        return_elements=[signature.outputs["emotion_probabilities"].name],
        name="server",
    )

    def run(values):
        feed = {free["waveform"]: waveform, free["lengths"]: lengths}
        feed.update({free[name]: value.numpy() for name, value in values.items()})
        return session.run(probabilities, feed)

    arrays["server/emotion_probabilities"] = run(tiled)
    for name in ("bands", "rank"):
        errors[f"server_band_mean_{name}"] = error_of(lambda name=name: run(bad[name]))

np.savez(out_path, **arrays)
imported = sorted(name for name in sys.modules if name.split(".")[0] == "ser_keras")
with open(out_path + ".json", "w") as file:
    json.dump({"errors": errors, "ser_keras_modules": imported}, file)
assert "ser_keras" not in sys.modules, imported
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model exported with speaker normalisation; the speaker; the fallback."""
    root = tmp_path_factory.mktemp("enrolment")
    model = _model()
    # The training "corpus": two other speakers, whose pooled statistics are the fallback.
    others = _speaker(230.0, [11, 12, 13], [0.7, 1.0, 0.8]) + _speaker(95.0, [14, 15], [0.9, 0.6])
    pad_value = _frontend().pad_value
    normalization = SpeakerNormalization.from_features(
        _training_features(others), pad_value, source="pooled statistics of 2 test speakers"
    )
    path = export_saved_model(
        model,
        root / "saved_models",
        "ser",
        frontend=_frontend(),
        label_names={"emotion": EMOTIONS, "gender": GENDERS},
        speaker_normalization=normalization,
    )
    speaker = _speaker(150.0, [1, 2, 3], [0.6, 0.9, 1.2])
    return root, model, normalization, path, speaker


@pytest.fixture(scope="module")
def client(setup):
    """What the export answered in a process without ser_keras."""
    root, _, _, path, speaker = setup
    waveform, lengths = _batch(speaker)
    data_path, out_path = root / "inputs.npz", root / "answers.npz"
    np.savez(data_path, waveform=waveform, lengths=lengths)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    completed = subprocess.run(
        [sys.executable, "-I", "-c", CLIENT, str(path), str(data_path), str(out_path)],
        cwd=root,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    answers = dict(np.load(out_path))
    report = json.loads((root / "answers.npz.json").read_text())
    return answers, report


def test_enrol_gives_the_statistics_training_computes(setup, client):
    _, _, _, _, speaker = setup
    answers, _ = client
    features = _training_features(speaker)
    mean, std = band_statistics(features, _frontend().pad_value)
    np.testing.assert_allclose(answers["band_mean"], mean, rtol=0, atol=1e-5)
    np.testing.assert_allclose(answers["band_std"], std, rtol=0, atol=1e-5)
    valid_frames = np.sum(~np.all(features == _frontend().pad_value, axis=-1))
    assert int(answers["frames"]) == valid_frames
    assert answers["enrol_no_speech"].tolist() == [False] * len(speaker)


def test_the_enrolled_signature_is_the_model_on_per_speaker_standardised_features(setup, client):
    _, model, _, _, speaker = setup
    answers, _ = client
    features = _training_features(speaker)
    standardised = standardize_per_speaker(
        features, ["speaker"] * len(speaker), pad_value=_frontend().pad_value
    )
    expected = _probabilities(model, standardised)
    for task in ("emotion", "gender"):
        np.testing.assert_allclose(
            answers[f"enrolled/{task}_probabilities"], expected[task], rtol=0, atol=TOLERANCE
        )
    labels = [EMOTIONS[i] for i in np.argmax(expected["emotion"], axis=-1)]
    assert answers["enrolled/emotion_label"].tolist() == labels
    assert answers["enrolled/normalization"].tolist() == ["enrolled"] * len(speaker)
    # The model server's path answers the same.
    np.testing.assert_allclose(
        answers["server/emotion_probabilities"], expected["emotion"], rtol=0, atol=TOLERANCE
    )


def test_serving_default_uses_the_stored_fallback_and_says_so(setup, client):
    _, model, normalization, _, speaker = setup
    answers, _ = client
    standardise = BandStandardization(
        normalization.fallback_mean, normalization.fallback_std, pad_value=_frontend().pad_value
    )
    features = _training_features(speaker)
    expected = _probabilities(model, keras.ops.convert_to_numpy(standardise(features)))
    for task in ("emotion", "gender"):
        np.testing.assert_allclose(
            answers[f"fallback/{task}_probabilities"], expected[task], rtol=0, atol=TOLERANCE
        )
    assert answers["fallback/normalization"].tolist() == ["fallback"] * len(speaker)
    # The two paths differ: the test data tells enrolment from the fallback.
    difference = (
        answers["fallback/emotion_probabilities"] - answers["enrolled/emotion_probabilities"]
    )
    assert np.max(np.abs(difference)) > 100 * TOLERANCE


def test_a_wrong_shaped_band_mean_is_refused(client):
    _, report = client
    errors = report["errors"]
    # Another number of rows than waveforms: refused in the graph.
    assert errors["band_mean_rows"] is not None
    assert "`band_mean` must hold one row per row of `waveform`" in errors["band_mean_rows"]
    # Another number of bands, or one vector for the batch: refused by the signature in
    # Python, and in the graph where a server feeds the tensors unchecked.
    for name in ("bands", "rank"):
        assert errors[f"band_mean_{name}"] is not None, name
        assert errors[f"server_band_mean_{name}"] is not None, name
        assert "check_band_mean" in errors[f"server_band_mean_{name}"], name


def test_nan_or_silent_enrolment_audio_is_refused(client):
    _, report = client
    errors = report["errors"]
    assert errors["enrol_nan"] is not None
    assert "`waveform` has NaN or inf samples" in errors["enrol_nan"]
    assert errors["enrol_silent"] is not None
    assert "holds no speech frame" in errors["enrol_silent"]


def test_the_client_process_never_imported_ser_keras(client):
    _, report = client
    assert report["ser_keras_modules"] == []


def test_the_metadata_records_the_normalisation_and_the_signatures(setup):
    _, _, normalization, path, _ = setup
    document = load_metadata(path)
    recorded = document["speaker_normalization"]
    assert recorded["enabled"] is True
    assert recorded["fallback"]["mean"] == list(normalization.fallback_mean)
    assert recorded["fallback"]["std"] == list(normalization.fallback_std)
    assert recorded["fallback"]["source"] == "pooled statistics of 2 test speakers"
    assert recorded["pad_value"] == -1.0 and recorded["epsilon"] == 1e-5
    signatures = document["signatures"]
    assert set(signatures) == {"serving_default", "features", "enrol", "serving_enrolled"}
    assert "standardised per speaker" in signatures["features"]["expects"]
    assert "normalization" in signatures["serving_default"]["outputs"]
    assert set(signatures["serving_enrolled"]["inputs"]) == {
        "waveform",
        "lengths",
        "band_mean",
        "band_std",
    }
    assert signatures["enrol"]["outputs"] == ["band_mean", "band_std", "frames", "no_speech"]
    loaded = tf.saved_model.load(str(path))
    np.testing.assert_array_equal(
        loaded.fallback_band_mean.numpy(), np.float32(normalization.fallback_mean)
    )


def test_an_export_without_speaker_normalisation_states_it(tmp_path):
    path = export_saved_model(
        _model(), tmp_path, "plain", frontend=_frontend(), label_names={"emotion": EMOTIONS}
    )
    document = load_metadata(path)
    assert document["speaker_normalization"] == {"enabled": False}
    assert document["signatures"]["features"]["expects"] == "the front-end's features as they are"
    assert set(tf.saved_model.load(str(path)).signatures) == {"serving_default", "features"}


@pytest.mark.parametrize("fault", ["enrol", "fallback", "enrolled"])
def test_verification_covers_the_new_signatures(tmp_path, monkeypatch, fault):
    functions = saved_model_lib.ServingFunctions
    if fault == "enrol":  # statistics other than band_statistics
        real_enrol = functions.enrol

        def enrol(self, waveform, lengths):
            outputs = real_enrol(self, waveform, lengths)
            outputs["band_std"] = outputs["band_std"] * 1.1
            return outputs

        monkeypatch.setattr(functions, "enrol", enrol)
        message = "'enrol' output 'band_std'"
    else:  # one path standardises with other statistics than it was given
        real = functions._serve_standardized

        def serve_standardized(self, features, audio, band_mean, band_std, source):
            if source == fault:
                band_mean = band_mean + 0.3
            return real(self, features, audio, band_mean, band_std, source)

        monkeypatch.setattr(functions, "_serve_standardized", serve_standardized)
        signature = "serving_default" if fault == "fallback" else "serving_enrolled"
        message = f"signature '{signature}'"
    normalization = SpeakerNormalization(np.full(NUM_MELS, 0.5), np.full(NUM_MELS, 0.2))
    with pytest.raises(RuntimeError, match=f"verification failed.*{message}"):
        export_saved_model(
            _model(),
            tmp_path,
            "m",
            frontend=_frontend(),
            label_names={"emotion": EMOTIONS},
            speaker_normalization=normalization,
        )
    assert os.listdir(tmp_path / "m") == []


def test_bad_speaker_normalisation_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="one value per mel band"):
        SpeakerNormalization([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        SpeakerNormalization([0.0, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        SpeakerNormalization([0.0, 0.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="epsilon"):
        SpeakerNormalization([0.0], [1.0], epsilon=0.0)
    with pytest.raises(ValueError, match="`group`.*'utterance'"):
        SpeakerNormalization([0.0], [1.0], group="utterance")
    arguments = {"frontend": _frontend(), "label_names": {"emotion": EMOTIONS}}
    with pytest.raises(ValueError, match="holds statistics of 3 bands; the features have 8"):
        export_saved_model(
            _model(),
            tmp_path,
            "m",
            speaker_normalization=SpeakerNormalization([0.0] * 3, [1.0] * 3),
            **arguments,
        )
    with pytest.raises(ValueError, match="must be a SpeakerNormalization"):
        export_saved_model(
            _model(), tmp_path, "m", speaker_normalization={"mean": [0.0] * 8}, **arguments
        )
    assert not (tmp_path / "m").exists() or os.listdir(tmp_path / "m") == []


# --- request helpers (REST and gRPC) ------------------------------------------------


def test_rest_bodies_enrol_then_predict_enrolled(setup, client):
    _, _, _, path, speaker = setup
    answers, _ = client
    loaded = tf.saved_model.load(str(path))
    specs = signature_input_specs(loaded, "enrol")
    body = json.loads(json.dumps(rest_enrol_body(speaker, sample_rate=RATE, specs=specs)))
    assert body["signature_name"] == "enrol" and set(body["inputs"]) == {"waveform", "lengths"}
    # What the server does with the body, then its columnar answer as JSON.
    outputs = loaded.signatures["enrol"](
        **{k: tf.constant(v) for k, v in rest_body_inputs(body, specs).items()}
    )
    response = json.loads(
        json.dumps({"outputs": {k: v.numpy().tolist() for k, v in outputs.items()}})
    )
    mean, std = enrolment_statistics(response)
    np.testing.assert_allclose(mean, answers["band_mean"], rtol=0, atol=1e-6)

    enrolled_specs = signature_input_specs(loaded, "serving_enrolled")
    for layout in ("columnar", "row"):
        body = json.loads(
            json.dumps(
                rest_enrolled_body(
                    speaker, mean, std, sample_rate=RATE, layout=layout, specs=enrolled_specs
                )
            )
        )
        assert body["signature_name"] == "serving_enrolled"
        inputs = rest_body_inputs(body, enrolled_specs)
        served = loaded.signatures["serving_enrolled"](
            **{k: tf.constant(v) for k, v in inputs.items()}
        )
        np.testing.assert_allclose(
            served["emotion_probabilities"].numpy(),
            answers["enrolled/emotion_probabilities"],
            rtol=0,
            atol=TOLERANCE,
        )
    with pytest.raises(ValueError, match="22050 Hz"):
        rest_enrol_body(speaker, sample_rate=22050)
    with pytest.raises(ValueError, match="`band_std` must be >= 0"):
        enrolled_inputs(speaker, mean, -std, sample_rate=RATE)
    with pytest.raises(ValueError, match="must be 1-D"):
        enrolled_inputs(speaker, mean[None], std, sample_rate=RATE)
    with pytest.raises(ValueError, match="lacks"):
        enrolment_statistics({"error": "no such signature"})


def test_grpc_requests_enrol_then_predict_enrolled(setup, client):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    _, _, _, path, speaker = setup
    answers, _ = client
    loaded = tf.saved_model.load(str(path))
    request = make_enrol_request("ser", speaker, sample_rate=RATE, version=1)
    assert request.model_spec.signature_name == "enrol"
    response = serve_predict_request(loaded, type(request).FromString(request.SerializeToString()))
    mean, std = enrolment_statistics(response)
    np.testing.assert_allclose(std, answers["band_std"], rtol=0, atol=1e-6)
    request = make_enrolled_request("ser", speaker, mean, std, sample_rate=RATE)
    assert request.model_spec.signature_name == "serving_enrolled"
    response = serve_predict_request(loaded, request)
    np.testing.assert_allclose(
        tf.make_ndarray(response.outputs["emotion_probabilities"]),
        answers["enrolled/emotion_probabilities"],
        rtol=0,
        atol=TOLERANCE,
    )


# --- ser_keras.predict -----------------------------------------------------------------


def test_predictor_enrols_the_speaker_or_notes_the_fallback(setup, tmp_path):
    _, model, _, path, speaker = setup
    files = [
        write_wav(tmp_path / f"take_{i}.wav", waveform, RATE, subtype="FLOAT")
        for i, waveform in enumerate(speaker)
    ]
    write_wav(tmp_path / "silent.wav", np.zeros(RATE, dtype=np.float32), RATE)
    # Training's decoding (trimmed) of the same files, standardised per speaker.
    decoded = [load_audio(f) for f in files]
    batch, lengths = _batch(decoded)
    features = keras.ops.convert_to_numpy(_frontend()((batch, lengths)))
    standardised = standardize_per_speaker(features, [0] * len(files), _frontend().pad_value)
    expected = _probabilities(model, standardised)["emotion"]

    enrolled = Predictor(path, enrolment=[*files, tmp_path / "silent.wav"])
    assert enrolled.enrolment["files"] == [str(f) for f in files]
    assert [entry["path"] for entry in enrolled.enrolment["skipped"]] == [
        str(tmp_path / "silent.wav")
    ]
    records = enrolled.predict(files).predictions
    assert [r["normalization"] for r in records] == ["enrolled"] * len(files)
    assert all("note" not in r for r in records)
    got = np.array([[r["probabilities"][name] for name in EMOTIONS] for r in records])
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)  # records keep 6 digits
    assert "enrolment" in enrolled.describe()

    fallback = Predictor(path).predict(files).predictions
    assert [r["normalization"] for r in fallback] == ["fallback"] * len(files)
    assert all(r["note"] == FALLBACK_NOTE for r in fallback)
    with pytest.raises(ValueError, match="No usable enrolment recording"):
        Predictor(path, enrolment=[tmp_path / "silent.wav"])


def test_predict_app_enrols_with_enrol_and_names_the_flag_on_error(setup, tmp_path, capsys):
    from apps import predict as predict_app

    _, _, _, path, speaker = setup
    files = [
        str(write_wav(tmp_path / f"take_{i}.wav", waveform, RATE, subtype="FLOAT"))
        for i, waveform in enumerate(speaker)
    ]
    assert predict_app.main(["--model", str(path), "--json", "--enrol", *files, "--", *files]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [r["normalization"] for r in output["predictions"]] == ["enrolled"] * len(files)
    assert predict_app.main(["--model", str(path), "--json", *files]) == 0
    output = json.loads(capsys.readouterr().out)
    assert [r["normalization"] for r in output["predictions"]] == ["fallback"] * len(files)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(RATE, dtype=np.float32), RATE)
    assert predict_app.main(["--model", str(path), "--enrol", str(silent), "--", *files]) == 2
    assert "error: --enrol: No usable enrolment recording" in capsys.readouterr().err
