"""A progress bar while a synthetic corpus is generated (the apps' first minutes)."""

from ser_keras import cli
from ser_keras.audio import synthetic


def test_generation_shows_the_number_of_utterances_on_stderr(tmp_path, capsys):
    synthetic.make_folder_corpus(tmp_path, "en", num_speakers=2, per_speaker=1, progress=True)
    captured = capsys.readouterr()
    assert "synthesising folder corpus" in captured.err
    assert "2/2" in captured.err
    assert captured.out == ""

    # Reused: nothing to do, no bar.
    synthetic.make_folder_corpus(tmp_path, "en", num_speakers=2, per_speaker=1, progress=True)
    assert capsys.readouterr().err == ""


def test_no_bar_unless_asked(tmp_path, capsys):
    synthetic.make_folder_corpus(tmp_path, "en", num_speakers=2, per_speaker=1)
    assert capsys.readouterr().err == ""


def test_apps_default_corpora_show_the_bar(tmp_path, monkeypatch):
    calls = []

    def fake_make(directory, **options):
        calls.append(options)

    monkeypatch.setattr(synthetic, "make_savee_corpus", fake_make)
    cli.synthetic_corpus_spec(tmp_path, "savee", seed=0, per_emotion=1)
    cli.synthetic_corpus_spec(tmp_path, "savee", seed=0, per_emotion=1, progress=False)
    assert [options["progress"] for options in calls] == [True, False]
