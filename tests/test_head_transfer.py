"""benchmarks/head_transfer.py's readings of a transcript without its closing: every trailing
closing pleasantry goes with the turns after it, a thank-you with content stays, and the
first exchange is never cut."""

import pytest

from conftest import load_benchmark, make_tiny_model
from qualaudit.training.datasets.examples import transcript

head_transfer = load_benchmark("head_transfer")


def roles_texts(t):
    return [(x.role, x.text) for x in t.turns]


def test_without_closing_cuts_every_trailing_pleasantry_and_the_farewells_after_it():
    t = transcript("t", [("customer", "My card was charged twice."),
                         ("agent", "I have refunded the second charge."),
                         ("customer", "Great, thanks!"), ("agent", "You're welcome."),
                         ("customer", "Bye."), ("agent", "Goodbye!")])
    assert roles_texts(head_transfer.without_closing(t)) == roles_texts(t)[:2]
    cut = head_transfer.without_last_customer_turn(head_transfer.without_closing(t))
    assert roles_texts(cut) == roles_texts(t)[:2]  # a single customer turn is kept


def test_without_closing_keeps_a_thank_you_with_content_and_the_first_exchange():
    content = transcript("c", [("customer", "The app crashes."), ("agent", "Update to 2.1."),
                               ("customer", "Thanks, but it still crashes."), ("agent", "Sorry!")])
    assert roles_texts(head_transfer.without_closing(content)) == roles_texts(content)
    assert roles_texts(head_transfer.without_last_customer_turn(content)) == roles_texts(content)[:2]
    short = transcript("s", [("agent", "Hello!"), ("customer", "Thanks, bye.")])
    assert roles_texts(head_transfer.without_closing(short)) == roles_texts(short)


def test_the_heads_measurement_refuses_a_model_that_reads_resolution_apart(tiny_encoder_dir, tmp_path):
    make_tiny_model(tiny_encoder_dir, closing_apart=["resolution.v1"]).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="apart from the"):
        head_transfer.heads(str(tmp_path / "m"), {}, {}, seeds=1, epochs=1)
