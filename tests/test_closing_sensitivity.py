"""benchmarks/closing_sensitivity.py on tiny models: the parts add up to the whole change, the
encoder's part compares `a`'s and `b`'s states of the same turns, and the causal conversation
reading leaves it at zero."""

import pytest
import torch

from conftest import load_benchmark, make_tiny_model
from qualaudit.training.train import _with_reading

closing_sensitivity = load_benchmark("closing_sensitivity")
behaviour = load_benchmark("behaviour")


@pytest.fixture(scope="module")
def pairs():
    return [p for p in behaviour.load_pairs() if p["behaviour"] == "closing_thanks"][:4]


def test_parts_add_up_and_are_probabilities(tiny_encoder_dir, pairs):
    reader = make_tiny_model(tiny_encoder_dir, seed=3, reading="conversation", chunk_tokens=256).eval()
    report = closing_sensitivity.run(reader, pairs)
    assert set(report["pairs"]) == {p["id"] for p in pairs}
    for r in report["pairs"].values():
        assert all(0 <= r[k] <= 1 for k in ("a", "b", "a_cut"))
        assert r["total"] == pytest.approx(r["encoder"] + r["heads"], abs=1e-9)
        assert r["total"] == pytest.approx(r["a"] - r["b"], abs=1e-9)
    assert "encoder" in closing_sensitivity.to_markdown(report)


def test_the_encoder_part_is_zero_when_reading_causally(tiny_encoder_dir, pairs, monkeypatch):
    """With a fixed random readout of the turn states (random heads barely move P(resolved)),
    the encoder's part is what the closing changes in the states of the turns before it."""
    reader = make_tiny_model(tiny_encoder_dir, seed=3, reading="conversation", chunk_tokens=256).eval()
    readout = torch.randn(reader.encoder.config.hidden_size, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(closing_sensitivity, "p_resolved",
                        lambda model, windows, states: float((states.double() @ readout).sum()))
    causal = _with_reading(reader, "conversation_causal").eval()
    both_ways = closing_sensitivity.run(reader, pairs)["pairs"]
    one_way = closing_sensitivity.run(causal, pairs)["pairs"]
    assert all(abs(r["encoder"]) < 1e-5 for r in one_way.values())
    assert all(abs(r["encoder"]) > 1e-3 for r in both_ways.values())


def test_no_closing_pairs_is_an_error(tiny_model):
    with pytest.raises(ValueError, match="closing_thanks"):
        closing_sensitivity.run(tiny_model, [{"behaviour": "loop"}])


def test_a_model_that_reads_resolution_apart_from_the_closing_is_refused(tiny_encoder_dir, pairs):
    model = make_tiny_model(tiny_encoder_dir, closing_apart=["resolution.v1"])
    with pytest.raises(ValueError, match="apart from the closing"):
        closing_sensitivity.run(model, pairs)
