"""ser_keras.data.feature_cache: frame-feature sequences computed once, read back after."""

import numpy as np
import pytest

from ser_keras.corpora.records import Utterance
from ser_keras.data import feature_cache
from ser_keras.features.frame_features import FrameFeatures
from tests.helpers import speech_like, write_wav


def test_sequences_are_cached_and_a_changed_file_is_computed_again(tmp_path, monkeypatch):
    utterances, waveforms = [], []
    for number, seconds in enumerate((0.3, 0.5)):
        wave = speech_like(seconds, seed=number)
        path = write_wav(tmp_path / f"u{number}.wav", wave)
        utterances.append(Utterance(path=str(path), corpus="c", language="en", speaker="s"))
        waveforms.append(wave)
    frontend = FrameFeatures.from_preset("kim2017")
    sequences, path, reused = feature_cache.cached_sequences(
        frontend, utterances, waveforms, tmp_path / "cache", progress=False
    )
    assert not reused and path.exists() and path.parent == tmp_path / "cache"
    assert [s.shape[1] for s in sequences] == [32, 32] and len(sequences[1]) > len(sequences[0])

    import ser_keras.data.pipeline as pipeline

    def not_again(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(pipeline, "compute_features", not_again)
    again, same_path, reused = feature_cache.cached_sequences(
        frontend, utterances, waveforms, tmp_path / "cache"
    )
    assert reused and same_path == path
    for a, b in zip(sequences, again, strict=True):
        np.testing.assert_allclose(a, b)
    monkeypatch.undo()

    write_wav(utterances[0].path, speech_like(0.4, seed=5))
    assert feature_cache.sequence_cache_path(tmp_path / "cache", frontend, utterances) != path
    with pytest.raises(ValueError, match="One waveform per utterance"):
        feature_cache.cached_sequences(frontend, utterances, waveforms[:1], tmp_path / "cache")
