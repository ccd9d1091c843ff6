"""ser_keras.predict: recordings of any rate and channel count -> one record per usable file."""

import subprocess
import sys

import numpy as np
import pytest

import ser_keras
from ser_keras.predict import Predictor, collect_audio_files
from tests import predict_data as data
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model kept as a training run keeps it (two folds) and exported; recordings."""
    root = tmp_path_factory.mktemp("predict")
    model = data.tiny_model()
    data.save_like_a_run(model, root / "run" / "mtl" / "fold_A", best_validation=0.40)
    data.save_like_a_run(model, root / "run" / "mtl" / "fold_B", best_validation=0.55)
    version = data.export_tiny(model, root / "saved_models")
    recordings = data.write_recordings(root / "recordings")
    return root, version, recordings


@pytest.fixture(scope="module")
def from_export(setup):
    root, _, recordings = setup
    predictor = Predictor(root / "saved_models" / "tiny", batch_size=3)
    return predictor, predictor.predict([recordings])


def test_one_record_per_usable_file_of_any_rate_and_channel_count(setup, from_export):
    _, version, recordings = setup
    predictor, result = from_export
    assert predictor.kind == "saved_model" and predictor.model_path == version
    assert predictor.sample_rate == 16000 and predictor.budget_seconds == data.BUDGET_SECONDS

    by_name = {r["path"][len(str(recordings)) + 1 :]: r for r in result.predictions}
    assert sorted(by_name) == sorted(data.USABLE)  # notes.txt is not audio
    reference = by_name["mono_16k.wav"]
    for name in ("mono_16k.wav", "rate_22k.wav", "stereo_48k.wav"):
        record = by_name[name]
        assert record["label"] in data.EMOTIONS
        assert set(record["probabilities"]) == set(data.EMOTIONS)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert record["auxiliary"]["speaker"] in data.SPEAKERS
        # Resampled to 16 kHz: the same second of speech, uncut, and nearly the
        # same answer (without resampling, 22.05 kHz audio lasts 1.38 s and
        # 48 kHz 3 s, cut to the 1.6 s budget).
        assert record["duration_seconds"] == pytest.approx(1.0, abs=1e-3)
        assert record["speech_seconds"] == pytest.approx(reference["speech_seconds"], abs=0.05)
        assert record["cut"] is False
        for emotion in data.EMOTIONS:
            assert record["probabilities"][emotion] == pytest.approx(
                reference["probabilities"][emotion], abs=0.02
            )
    long = by_name["nested/deeper/long_16k.flac"]
    assert long["cut"] is True and long["speech_seconds"] == pytest.approx(data.BUDGET_SECONDS)
    assert long["duration_seconds"] == pytest.approx(3.0)


def test_unusable_files_are_skipped_with_the_reason(setup, from_export):
    _, _, recordings = setup
    _, result = from_export
    prefix = len(str(recordings)) + 1
    reasons = {entry["path"][prefix:]: entry["reason"] for entry in result.skipped}
    assert set(reasons) == set(data.UNUSABLE)
    for name, words in data.UNUSABLE.items():
        assert words in reasons[name], reasons[name]
    assert reasons["silent.wav"].startswith("no speech")


def test_the_records_are_what_the_export_serves(setup, from_export):
    import tensorflow as tf

    _, version, recordings = setup
    _, result = from_export
    predictor = Predictor(version)
    waveform = predictor.decode(recordings / "mono_16k.wav")
    served = tf.saved_model.load(str(version)).signatures["serving_default"](
        waveform=tf.constant(waveform[None]), lengths=tf.constant([len(waveform)])
    )
    record = result.predictions[0]
    assert record["path"].endswith("mono_16k.wav")
    np.testing.assert_allclose(
        [record["probabilities"][e] for e in data.EMOTIONS],
        served["emotion_probabilities"].numpy()[0],
        atol=1e-6,
    )
    assert record["label"] == served["emotion_label"].numpy()[0].decode()
    assert record["speech_seconds"] == pytest.approx(float(served["speech_seconds"].numpy()[0]))


def test_exports_without_the_audio_outputs_get_them_computed_alike(setup, from_export):
    """An export written before `speech_seconds`, `cut` and `no_speech` existed."""
    _, version, recordings = setup
    _, result = from_export
    predictor = Predictor(version, batch_size=3)
    predictor._audio_outputs_in_graph = False  # what the predictor finds in an older export
    older = predictor.predict([recordings])
    assert older.skipped == result.skipped
    for record, reference in zip(older.predictions, result.predictions, strict=True):
        assert record["cut"] == reference["cut"]
        assert record["speech_seconds"] == pytest.approx(reference["speech_seconds"], abs=1e-6)


def test_a_training_run_folder_gives_its_best_fold_and_the_same_answers(setup, from_export):
    root, _, recordings = setup
    _, exported = from_export
    predictor = Predictor(root / "run", batch_size=2)
    assert predictor.kind == "keras"
    assert predictor.model_path == root / "run" / "mtl" / "fold_B" / "best.keras"
    assert "0.55" in predictor.note
    result = ser_keras.predict(root / "run" / "mtl" / "fold_A", [recordings])
    assert [r["path"] for r in result.predictions] == [r["path"] for r in exported.predictions]
    assert result.skipped == exported.skipped
    for record, reference in zip(result.predictions, exported.predictions, strict=True):
        assert record["label"] == reference["label"] and record["cut"] == reference["cut"]
        assert record["auxiliary"] == reference["auxiliary"]
        for emotion in data.EMOTIONS:
            assert record["probabilities"][emotion] == pytest.approx(
                reference["probabilities"][emotion], abs=1e-5
            )


def test_files_and_folders_are_collected_once_and_missing_inputs_named(setup, tmp_path):
    _, _, recordings = setup
    (tmp_path / "empty_folder").mkdir()
    files, skipped = collect_audio_files(
        [recordings / "mono_16k.wav", recordings, tmp_path / "gone.wav", tmp_path / "empty_folder"]
    )
    assert files[0] == str(recordings / "mono_16k.wav")
    assert len(files) == len(set(files)) == len(data.USABLE) + len(data.UNUSABLE)
    assert {entry["reason"].split(" (")[0] for entry in skipped} == {
        "no such file or folder",
        "no audio files in this folder",
    }


def test_a_model_path_that_names_no_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Predictor(tmp_path / "missing")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match=r"no model \(an exported SavedModel or a .keras model\)"):
        Predictor(tmp_path / "nothing")
    with pytest.raises(ValueError, match="batch_size"):
        Predictor(tmp_path / "nothing", batch_size=0)


def test_import_ser_keras_stays_light_and_predict_is_callable():
    code = (
        "import sys, ser_keras; assert 'tensorflow' not in sys.modules, 'import ser_keras'; "
        "import ser_keras.predict as module; assert 'tensorflow' not in sys.modules, 'predict'; "
        "assert ser_keras.predict is module and callable(module); "
        "assert ser_keras.Predictor is module.Predictor"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
