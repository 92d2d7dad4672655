"""The agent wording erased from agent turn states (`ModelConfig.style_erased`, rounds 135 and 138)."""

import json
import warnings

import pytest
import torch

from conftest import load_benchmark, make_tiny_model
from qualaudit import Auditor
from qualaudit.batching import builder_for
from qualaudit.model import ModelConfig, QualityModel, UntrainedModelWarning
from qualaudit.training.datasets import transcript
from qualaudit.training.style_erasure import KEPT, fit_style_erasure, with_style_erased

CUSTOMER = [("my parcel has not arrived", "where is my order 5512"),
            ("i was charged twice this month", "can you refund the second charge"),
            ("the app logs me out every hour", "it happened again just now")]
BOT = ["Your request has been received. Order status: in transit. Estimated delivery: 2 days.",
       "Refund request created. Reference: R-2231. Processing time: 5-7 business days."]
HUMAN = ["Oh no, sorry about that! I checked and it's on its way, should be with you in two days.",
         "Ah, that's annoying, I'm sorry. I've put the refund through, you'll see it within a week."]


def twins() -> list:
    """Each customer's conversation with a bot's replies and with a human's, the content alike."""
    out = []
    for i, (first, second) in enumerate(CUSTOMER):
        for j in range(len(BOT)):
            pair = []
            for style, replies, agent_type in (("bot", BOT, "ai"), ("human", HUMAN, "human")):
                turns = [("customer", first), ("agent", replies[j]), ("customer", second), ("agent", replies[1 - j])]
                pair.append(transcript(f"t{i}{j}/{style}", turns, agent_type=agent_type))
            out.append(tuple(pair))
    return out


def states(model: QualityModel, t) -> tuple[torch.Tensor, torch.Tensor]:
    """(turn states as the heads read them, the agent mask) of one transcript."""
    windows = builder_for(model.config, model.tokenizer).build([t])
    with torch.inference_mode():
        read = model.encode_windows(windows)
        if model.config.style_erased:
            read = model.erase_style(read, windows)
        return read[:windows.n_turns], torch.tensor(windows.is_agent)


@pytest.fixture(scope="module")
def erased(tiny_encoder_dir):
    base = make_tiny_model(tiny_encoder_dir, seed=3)
    model, used = with_style_erased(base, twins(), 2)
    assert used == len(twins())
    return base, model


def test_the_twins_agent_states_no_longer_differ_along_the_erased_directions(erased):
    base, model = erased
    basis = model.style_basis
    assert basis.shape == (base.encoder.config.hidden_size, 2)
    assert torch.allclose(basis.T @ basis, torch.eye(2), atol=1e-5)  # orthonormal
    for bot, human in twins():
        (a, agent), (b, _) = states(model, bot), states(model, human)
        (a0, _), (b0, _) = states(base, bot), states(base, human)
        assert torch.allclose((a - b)[agent] @ basis, torch.zeros(1), atol=1e-4)
        assert ((a0 - b0)[agent] @ basis).abs().max() > 1e-3  # they did before
        assert torch.equal(a[~agent], a0[~agent])  # customer turns as the encoder read them
        assert torch.allclose(a[agent] - a0[agent], -((a0[agent] - model.style_mean) @ basis) @ basis.T,
                              atol=1e-5)


def turn_logits(model: QualityModel, t) -> dict[str, torch.Tensor]:
    """{target: (turns, *shape)} the turn heads' logits of one transcript."""
    windows = builder_for(model.config, model.tokenizer).build([t])
    with torch.inference_mode():
        logits = model(windows).turn_logits
    return {s.target: logits[s.name] for s in model.specs if s.name in logits}


def test_the_kept_heads_read_what_they_read_before_and_the_others_do_not(erased, tiny_encoder_dir):
    """Kept orthogonal to the fix and loop heads' weights, the erasure leaves their logits as
    they were; erased without keeping them, it moves them."""
    base, model = erased
    rows = torch.cat([base.turn_heads.heads[s.key].weight for s in base.specs if s.target in KEPT])
    assert torch.allclose(rows @ model.style_basis, torch.zeros(1), atol=1e-5)
    unkept, _ = with_style_erased(base, twins(), 2, kept=())
    moved = {}
    for bot, human in twins():
        for t in (bot, human):
            before, after, free = turn_logits(base, t), turn_logits(model, t), turn_logits(unkept, t)
            for target in KEPT:
                assert torch.allclose(after[target], before[target], atol=1e-5)
                moved[target] = max(moved.get(target, 0.0), float((free[target] - before[target]).abs().max()))
            moved["empathy"] = max(moved.get("empathy", 0.0), float((after["empathy"] - before["empathy"]).abs().max()))
    assert min(moved.values()) > 1e-4, moved


def test_a_model_without_erasure_or_with_an_unfitted_one_scores_as_before(tiny_encoder_dir):
    plain = make_tiny_model(tiny_encoder_dir, seed=3)
    unfitted = make_tiny_model(tiny_encoder_dir, seed=3, style_erased=2)
    assert "style_basis" not in plain.state_dict()
    assert not unfitted.style_basis.any()  # zeros: nothing erased until fitted
    bot, _ = twins()[0]
    assert torch.equal(states(plain, bot)[0], states(unfitted, bot)[0])


def test_the_erasure_is_saved_loaded_and_on_the_card(erased, tmp_path):
    base, model = erased
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["style_erased"] == 2
    assert "wording erased: 2 direction(s)" in (tmp_path / "m" / "README.md").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        loaded = QualityModel.from_pretrained(tmp_path / "m")
        scores = [Auditor(m, precision="fp32").score([t for pair in twins()[:2] for t in pair])
                  for m in (model, loaded, base)]
    assert torch.equal(loaded.style_basis, model.style_basis)
    assert [s.resolution for s in scores[0]] == [s.resolution for s in scores[1]]
    assert [s.resolution for s in scores[0]] != [s.resolution for s in scores[2]]  # it changes what heads read


def test_fitting_says_what_is_wrong(tiny_encoder_dir):
    with pytest.raises(ValueError, match="style_erased must be an integer >= 0"):
        ModelConfig(encoder={}, style_erased=-1)
    model = make_tiny_model(tiny_encoder_dir, style_erased=2)
    with pytest.raises(ValueError, match="erases 2 direction.*asked for 3"):
        fit_style_erasure(model, twins(), 3)
    bot, human = twins()[0]
    shorter = transcript("short", [("customer", "hi"), ("agent", "hello")])
    with pytest.raises(ValueError, match="0 paired agent turns from 0 usable twins of 1"):
        fit_style_erasure(model, [(bot, shorter)], 2)  # agent turns differ in number: skipped
    assert fit_style_erasure(model, [(bot, human), (bot, shorter)], 2) == 1
    with pytest.raises(ValueError, match=r"kept: \['resolution'\] are not agent-turn heads"):
        fit_style_erasure(model, twins(), 2, kept=("resolution",))
    in_context = make_tiny_model(tiny_encoder_dir, style_erased=2, context_layers=1)
    with pytest.raises(ValueError, match="kept heads read the turn context"):
        fit_style_erasure(in_context, twins(), 2)
    assert fit_style_erasure(in_context, twins(), 2, kept=()) == len(twins())


def test_candidates_erase_makes_an_unevaluated_candidate(tiny_model_dir, tmp_path, capsys):
    candidates = load_benchmark("candidates")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        candidates.main(["erase", str(tiny_model_dir), "-o", str(tmp_path / "v"), "--directions", "3",
                         "--version", "9.9.9", "--threads", "1", "--twin-sets", "style_twins,style_twins_manners",
                         "--kept", "solution_given"])
    config = json.loads((tmp_path / "v" / "config.json").read_text())
    record = json.loads((tmp_path / "v" / "results.json").read_text())
    assert config["style_erased"] == 3 and config["version"] == "9.9.9"
    assert record["twins_used"] == record["twins"] == 80 + 60 and "style_erased=3" in record["design"]
    assert record["kept"] == ["solution_given"]
    assert "not evaluated" in capsys.readouterr().out
