import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.manifest import load_manifest
from tests.corpora.util import by_name, skipped_by_name


def test_manifest_rows(tmp_path, make_corpus):
    make_corpus(
        tmp_path,
        ["clips/a.wav", "clips/b.wav", "clips/c.wav", "clips/d.wav", "other/e.wav", "clips/f.wav"],
        corrupt=["clips/bad.wav"],
    )
    absolute = tmp_path / "other" / "e.wav"
    (tmp_path / "lists").mkdir()
    manifest = tmp_path / "lists" / "cafe.csv"
    manifest.write_text(
        "\ufeffPath, Speaker ,Emotion,gender,language,corpus,naturalness,notes\n"
        "../clips/a.wav,spk1,Angry,F,fr,cafe,acted,first\n"
        "../clips/b.wav,spk2,,male,,,natural,\n"
        "../clips/c.wav,spk3,frustration,,de,,,\n"
        f"{absolute},spk4,joy,m,en,,,\n"
        "../clips/d.wav,spk1,sad,x,fr,,,\n"
        "../clips/f.wav,spk1,sad,,,,,\n"
        ",spk1,sad,f,fr,,,\n"
        "../clips/missing.wav,spk1,sad,f,fr,,,\n"
        "../clips/a.wav,spk9,sad,f,fr,,,\n"
        "../clips/bad.wav,spk1,sad,f,fr,,,\n"
        "\n"
    )
    listing = load_manifest(manifest, language="it", corpus="mine")
    utterances = by_name(listing)
    described = {
        name: (u.corpus, u.speaker, u.label, u.gender, u.language, u.naturalness)
        for name, u in utterances.items()
    }
    assert described == {
        "a.wav": ("cafe", "spk1", "anger", "female", "fr", "acted"),
        "b.wav": ("mine", "spk2", None, "male", "it", "natural"),
        "c.wav": ("mine", "spk3", "frustration", None, "de", None),
        "e.wav": ("mine", "spk4", "happiness", "male", "en", None),
        "f.wav": ("mine", "spk1", "sadness", None, "it", None),
    }
    assert utterances["a.wav"].path == str(tmp_path / "clips" / "a.wav")
    assert listing.corpus == "mine" and listing.root == str(manifest)
    skipped = skipped_by_name(listing)
    assert "gender 'x'" in skipped["d.wav"]
    assert skipped["missing.wav"] == "file not found"
    assert "listed again on line 10" in skipped["a.wav"]
    assert "unreadable audio header" in skipped["bad.wav"]
    assert any(
        item.reason == "empty path" and item.path.endswith("cafe.csv:8") for item in listing.skipped
    )


def test_rows_without_language_are_skipped_without_a_default(tmp_path, make_corpus):
    make_corpus(tmp_path, ["a.wav", "b.wav"])
    (tmp_path / "manifest.csv").write_text("path,speaker,language\na.wav,s1,\nb.wav,s1,bn\n")
    listing = load_manifest(tmp_path)  # a folder holding manifest.csv
    assert [u.language for u in listing.utterances] == ["bn"]
    assert "no language" in skipped_by_name(listing)["a.wav"]


def test_manifest_errors(tmp_path, make_corpus):
    with pytest.raises(CorpusError, match="manifest file not found"):
        load_manifest(tmp_path / "absent.csv")
    with pytest.raises(CorpusError, match="manifest file not found.*manifest.csv"):
        load_manifest(tmp_path)
    (tmp_path / "no_speaker.csv").write_text("path,emotion\na.wav,sad\n")
    with pytest.raises(CorpusError, match="lacks the column.*speaker"):
        load_manifest(tmp_path / "no_speaker.csv")
    (tmp_path / "empty.csv").write_text("path,speaker\n")
    with pytest.raises(CorpusError, match="lists no files"):
        load_manifest(tmp_path / "empty.csv")
    (tmp_path / "gone.csv").write_text("path,speaker\ngone.wav,s1\n")
    with pytest.raises(CorpusError, match="names an existing file"):
        load_manifest(tmp_path / "gone.csv", language="en")
    with pytest.raises(ValueError, match="english"):
        load_manifest(tmp_path / "gone.csv", language="english")
