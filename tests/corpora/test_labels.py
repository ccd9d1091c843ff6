import numpy as np
import pytest

from ser_keras.corpora.labels import (
    LABEL_MAP_NAMES,
    UNLABELLED,
    LabelMap,
    canonical_label,
    get_label_map,
)
from ser_keras.corpora.records import Utterance


def utterances(*labels):
    return [
        Utterance(f"/x/{i}.wav", "test", "en", "s", label=label) for i, label in enumerate(labels)
    ]


def test_canonical_label():
    assert canonical_label(" Angry ") == "anger"
    assert canonical_label("joy") == "happiness"
    assert canonical_label("HAPPY") == "happiness"
    assert canonical_label("Surprised") == "surprise"
    assert canonical_label("Frustration") == "frustration"
    assert canonical_label("") is None and canonical_label(None) is None


def test_encode_unmapped_and_counts():
    common6 = get_label_map("common6")
    records = utterances("anger", "boredom", "sadness", None, "boredom", "surprise", "neutral")
    np.testing.assert_array_equal(common6.encode(records), [0, -1, 5, -1, -1, -1, 4])
    assert common6.encode(records).dtype == np.int32
    assert common6.unmapped_counts(records) == {"boredom": 2, "surprise": 1, UNLABELLED: 1}
    assert get_label_map("savee7").unmapped_counts(utterances("surprise", "fear")) == {}
    # Labels as plain strings work too.
    np.testing.assert_array_equal(common6.encode(["fear", "calm"]), [2, -1])


def test_four_class_merges_excited():
    four = get_label_map("four_class")
    assert four.classes == ("neutral", "happiness", "sadness", "anger")
    assert [four.index(x) for x in ("excited", "happiness", "frustration", None)] == [1, 1, -1, -1]


def test_binary_valence_per_paper_000_table_1():
    valence = get_label_map("binary_valence")
    assert valence.classes == ("negative", "positive")
    negative = ["anger", "sadness", "fear", "disgust", "boredom"]
    positive = ["neutral", "happiness", "surprise", "excited"]
    assert [valence.index(label) for label in negative] == [0] * 5
    assert [valence.index(label) for label in positive] == [1] * 4
    # EMOVO's "joy" and URDU's "happy" arrive as "happiness" (canonical vocabulary).
    assert valence.index(canonical_label("joy")) == 1
    assert valence.unmapped_counts(utterances("calm", "frustration", "other", "anger")) == {
        "calm": 1,
        "frustration": 1,
        "other": 1,
    }
    iemocap = get_label_map("binary_valence_iemocap")
    assert [iemocap.index(x) for x in ("anger", "excited", "fear", "surprise")] == [0, 1, -1, -1]


def test_every_named_map_and_errors():
    for name in LABEL_MAP_NAMES:
        label_map = get_label_map(name)
        assert label_map.name == name
        assert [label_map.index(c) for c in label_map.classes] == list(range(label_map.num_classes))
    assert get_label_map("emodb7").num_classes == 7
    assert get_label_map("ravdess8").classes[1] == "calm"
    with pytest.raises(ValueError, match="'seven'"):
        get_label_map("seven")
    with pytest.raises(ValueError, match="'joy'"):
        LabelMap("bad", ("anger",), {"rage": "joy"})
    with pytest.raises(ValueError, match="repeat"):
        LabelMap("bad", ("anger", "anger"))
    assert hash(get_label_map("four_class")) == hash(get_label_map("four_class"))
