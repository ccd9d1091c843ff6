"""The loaders on the real corpora in ../shared/data (skipped where absent)."""

import json

import pytest

from ser_keras.corpora import load_corpus
from ser_keras.corpora.__main__ import main
from ser_keras.corpora.labels import get_label_map

pytestmark = pytest.mark.real_data


def describe(capsys, *arguments):
    # The loaders' listings (headers only): decoding every real file is the cache's tests' job.
    assert main(["describe", *map(str, arguments), "--json", "--headers-only"]) == 0
    return json.loads(capsys.readouterr().out)


def test_emodb(shared_data, capsys):
    summary = describe(capsys, "emodb", shared_data / "emodb")
    assert (summary["utterances"], summary["speakers"], len(summary["labels"])) == (535, 10, 7)
    assert summary["labels"]["anger"] == 127 and summary["labels"]["boredom"] == 81
    assert summary["languages"] == {"de": 535}
    assert set(summary["genders"]) == {"female", "male"}
    assert summary["skipped"] == [] and summary["warnings"] == []
    # The wav/ folder reads the same; common6 leaves only boredom out.
    listing = load_corpus("emodb", shared_data / "emodb" / "wav")
    assert len(listing.utterances) == 535
    assert get_label_map("common6").unmapped_counts(listing.utterances) == {"boredom": 81}
    speakers = {u.speaker: u.gender for u in listing.utterances}
    assert speakers["03"] == "male" and speakers["08"] == "female"


def test_urdu(shared_data, capsys):
    summary = describe(capsys, "urdu", shared_data / "urdu")
    assert summary["utterances"] == 400
    assert summary["labels"] == {"anger": 100, "happiness": 100, "neutral": 100, "sadness": 100}
    assert summary["languages"] == {"ur": 400} and summary["skipped"] == []


def test_ravdess(shared_data, capsys):
    summary = describe(capsys, "ravdess", shared_data / "ravdess")
    assert (summary["utterances"], summary["speakers"], len(summary["labels"])) == (361, 6, 8)
    assert summary["skipped"] == []
    [warning] = summary["warnings"]
    assert warning["path"].endswith("Actor_05/03-01-05-01-01-01-02.wav")
    listing = load_corpus("ravdess", shared_data / "ravdess")
    quirk = next(u for u in listing.utterances if u.path == warning["path"])
    assert (quirk.speaker, quirk.gender) == ("05", "male")


def test_turev(shared_data, capsys):
    summary = describe(capsys, "turev", shared_data / "turev")
    assert summary["utterances"] == 400 and len(summary["labels"]) == 4
    assert summary["labels"]["calm"] == 93
    assert summary["languages"] == {"tr": 400} and summary["warnings"] == []


def test_bangla_as_a_folder_of_unlabelled_speech(shared_data, capsys):
    summary = describe(
        capsys,
        "folder",
        shared_data / "bangla",
        "--language",
        "bn",
        "--speaker-pattern",
        "^[A-Za-z]+",
        "--corpus",
        "bangla",
    )
    assert (summary["utterances"], summary["speakers"]) == (200, 5)
    assert summary["languages"] == {"bn": 200}
    assert summary["labels"] == {} and summary["unlabelled"] == 200
    listing = load_corpus(
        "folder", shared_data / "bangla", language="bn", speaker_pattern="^[A-Za-z]+"
    )
    assert sorted({u.speaker for u in listing.utterances}) == ["MI", "N", "S", "U", "Z"]
