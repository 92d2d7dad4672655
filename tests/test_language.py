"""Language of a transcript: detected into the row, a warning when the model was not trained on
it, and `--languages` to reject such transcripts instead of scoring them."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import conversation
from qualaudit.cli import main
from qualaudit.language import detect_text
from qualaudit.scorer import Auditor

GERMAN = conversation("de-1", ("customer", "Hallo, mein Paket ist seit zwei Wochen nicht angekommen."),
                      ("agent", "Das tut mir leid. Ich prüfe gleich die Sendungsnummer für Sie."),
                      ("customer", "Danke, das Problem ist jetzt gelöst."))
ENGLISH = conversation("en-1", ("customer", "my card was charged twice for the same order"),
                       ("agent", "sorry about that, i have sent the refund to your card"),
                       ("customer", "thanks it works now"), language="fr")
SHORT = conversation("short-1", ("customer", "ok"), ("agent", "thanks"))


@pytest.mark.parametrize(("text", "language"), [
    ("Bonjour, je n'arrive pas à me connecter à mon compte depuis hier soir.", "fr"),
    ("my internet has been dropping every evening, can I talk to someone", "en"),
    ("Sarah Jones.", "und"),
    ("ok thanks", "und"),
])
def test_detect_text(text, language):
    assert detect_text(text)[0] == language


def test_rows_carry_the_language_and_warn_when_the_model_does_not_know_it(tiny_model, caplog):
    auditor = Auditor(tiny_model, device="cpu", precision="fp32")
    with caplog.at_level(logging.WARNING, logger="qualaudit.language"):
        german, english, short = auditor.score([GERMAN, ENGLISH, SHORT])
    assert (german.language, english.language, short.language) == ("de", "en", "und")
    assert len(german.warnings) == 1 and "'de' is not one the model was trained on (en)" in \
        german.warnings[0]
    assert english.warnings == [] and short.warnings == []
    assert english.metadata["language"] == "fr"  # a given metadata.language is kept as given
    assert [r.getMessage() for r in caplog.records if "de-1" in r.getMessage()]
    row = german.to_dict(per_turn=False)
    assert (row["language"], row["schema_version"]) == ("de", "1.2")


def test_a_model_trained_on_german_does_not_warn(tiny_encoder_dir):
    from conftest import make_tiny_model

    model = make_tiny_model(tiny_encoder_dir, languages=["en", "de"])
    (row,) = Auditor(model, device="cpu", precision="fp32").score([GERMAN])
    assert (row.language, row.warnings) == ("de", [])


def test_cli_languages_rejects_other_languages(tiny_model_dir, tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(t) + "\n" for t in (ENGLISH, GERMAN, SHORT)))
    out, errors = tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    common = [str(source), "--model", str(tiny_model_dir), "--precision", "fp32", "--quiet"]
    assert main(["score", *common, "-o", str(out), "--errors", str(errors),
                 "--languages", "en"]) == 3
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["en-1", "short-1"]
    (error,) = [json.loads(x) for x in errors.read_text().splitlines()]
    assert (error["id"], error["line"], error["field"]) == ("de-1", 2, "language")
    assert "detected language 'de', not one of --languages en" in error["reason"]
    assert "1 rejected" in capsys.readouterr().err
    assert main(["score", *common, "-o", str(out), "--languages", "en",
                 "--on-error", "fail"]) == 1
    assert main(["score", *common, "-o", str(out), "--languages", "en,de"]) == 0
