from ser_keras.corpora.turev import load_turev
from ser_keras.corpora.urdu import load_urdu
from tests.corpora.util import by_name, skipped_by_name


def test_tiny_urdu(tmp_path, make_corpus):
    make_corpus(
        tmp_path,
        [
            "Angry/SM1_F10_A010.wav",
            "Sad/SF3_F2_S019.wav",
            "Happy/SM1_F11_N011.wav",  # letter disagrees with the folder
            "Neutral/SM2_F1_Q001.wav",  # unknown letter
            "Neutral/recording.wav",
        ],
        corrupt=["Happy/SF1_F1_H001.wav"],
    )
    listing = load_urdu(tmp_path)
    utterances = by_name(listing)
    assert {name: (u.speaker, u.gender, u.label) for name, u in utterances.items()} == {
        "SM1_F10_A010.wav": ("SM1", "male", "anger"),
        "SF3_F2_S019.wav": ("SF3", "female", "sadness"),
        "SM1_F11_N011.wav": ("SM1", "male", "happiness"),
    }
    assert {(u.language, u.naturalness) for u in listing.utterances} == {("ur", "natural")}
    assert [w.path.endswith("SM1_F11_N011.wav") for w in listing.warnings] == [True]
    skipped = skipped_by_name(listing)
    assert "unknown emotion letter 'Q'" in skipped["SM2_F1_Q001.wav"]
    assert "does not follow URDU" in skipped["recording.wav"]
    assert "unreadable audio header" in skipped["SF1_F1_H001.wav"]


def test_tiny_turev(tmp_path, make_corpus):
    make_corpus(
        tmp_path,
        [
            "Angry/1157_kz_acik.wav",
            "Calm/1234_sk_bugu.wav",
            "Happy/6783_mt_kibir.wav",
            "Sad/1984_hl_yanki.wav",
            "Sad/1984_kz_cay.wav",  # code disagrees with the folder: folder wins
            "Sad/yanki.wav",
        ],
    )
    listing = load_turev(tmp_path)
    utterances = by_name(listing)
    assert {name: (u.speaker, u.label) for name, u in utterances.items()} == {
        "1157_kz_acik.wav": ("1157", "anger"),
        "1234_sk_bugu.wav": ("1234", "calm"),
        "6783_mt_kibir.wav": ("6783", "happiness"),
        "1984_hl_yanki.wav": ("1984", "sadness"),
        "1984_kz_cay.wav": ("1984", "sadness"),
    }
    assert {(u.language, u.gender) for u in listing.utterances} == {("tr", None)}
    assert len(listing.warnings) == 1 and "'anger'" in listing.warnings[0].reason
    assert "does not follow TurEV-DB" in skipped_by_name(listing)["yanki.wav"]
