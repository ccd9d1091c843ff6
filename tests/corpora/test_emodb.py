import pytest

from ser_keras.corpora import CorpusError
from ser_keras.corpora.emodb import load_emodb
from tests.corpora.util import by_name, skipped_by_name


def test_tiny_emodb_root_or_wav_folder(tmp_path, make_corpus):
    make_corpus(
        tmp_path / "wav",
        ["03a01Fa.wav", "08b02Wb.wav", "16a04La.wav", "03a01Xa.wav", "readme.wav", "21a01Na.wav"],
        corrupt=["09a01Ta.wav"],
    )
    for directory in (tmp_path, tmp_path / "wav"):
        listing = load_emodb(directory)
        utterances = by_name(listing)
        assert {name: (u.speaker, u.gender, u.label) for name, u in utterances.items()} == {
            "03a01Fa.wav": ("03", "male", "happiness"),
            "08b02Wb.wav": ("08", "female", "anger"),
            "16a04La.wav": ("16", "female", "boredom"),
            "21a01Na.wav": ("21", None, "neutral"),
        }
        assert {u.language for u in listing.utterances} == {"de"}
        skipped = skipped_by_name(listing)
        assert set(skipped) == {"03a01Xa.wav", "readme.wav", "09a01Ta.wav"}
        assert "unknown emotion letter 'X'" in skipped["03a01Xa.wav"]
        assert "unreadable audio header" in skipped["09a01Ta.wav"]
        assert [w.reason for w in listing.warnings] == [
            "speaker '21' is not one of EMO-DB's ten; gender unknown"
        ]


def test_folder_without_usable_audio_names_the_reasons(tmp_path, make_corpus):
    make_corpus(tmp_path, ["hello.wav"])
    with pytest.raises(CorpusError, match="none of the 1 audio files.*hello.wav"):
        load_emodb(tmp_path)
