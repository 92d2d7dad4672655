"""A conversation's closing (`qualaudit.closing`) and the heads that do not read it
(`ModelConfig.closing_apart`): on tiny random models of every reading, such a head scores a
conversation with its closing exactly as without it, every other head and every per-turn output
is what the same weights give without `closing_apart`, and the closing's turns give those heads
no evidence."""

import json

import pytest
import torch

from conftest import conversation, make_tiny_model
from qualaudit.batching import TurnWindows, builder_for
from qualaudit.closing import closing_start, is_pleasantry, pleasantry_at, without_closing
from qualaudit.errors import ModelLoadError
from qualaudit.model import QualityModel, UntrainedModelWarning
from qualaudit.scorer import Auditor
from qualaudit.training.datasets import transcript

BODY = (("user", "my card was charged twice for the same order"),
        ("assistant", "sorry about that, let me check the order"),
        ("user", "it was the blue jacket order"),
        ("assistant", "i see two charges, one is pending and will drop off"),
        ("user", "how long will that take"),
        ("assistant", "usually three to five days, i can refund it now instead"),
        ("user", "yes please refund it"),
        ("assistant", "done, the refund is on its way"))
CLOSINGS = ((("user", "ok thanks"),),
            (("user", "great, thank you so much!"), ("assistant", "glad to help, have a nice day")),
            (("user", "ok thanks"), ("assistant", "anything else?"), ("user", "no that's all, bye")))
APART = ["resolution.v1"]


def test_a_closing_is_every_trailing_pleasantry_and_what_follows_it():
    turns = transcript("t", [("customer", "my router drops"), ("agent", "restart it"),
                             ("customer", "ok thanks"), ("agent", "anything else?"),
                             ("customer", "no that's all, bye"), ("agent", "bye")]).scored_turns
    assert closing_start(turns) == 2
    assert closing_start(turns[:2]) == 2  # none: the length
    # content is not a closing, nor is a pleasantry with nothing before it to close
    assert not is_pleasantry("thanks but it still doesn't work")
    assert not is_pleasantry("ok thanks, what about the second invoice?")
    assert closing_start(transcript("u", [("customer", "thanks"), ("agent", "hi")]).scored_turns) == 2
    t = transcript("v", [("customer", "my router drops"), ("agent", "restart it"),
                         ("customer", "that worked, the connection is stable")])
    assert without_closing(t) is t


def test_the_agents_name_in_a_thanks_closes_only_when_the_agent_used_it():
    opening = [("customer", "my parcel never arrived"), ("agent", "Hi, I'm Marco. A new one ships today.")]

    def start(last: str, before: list[tuple[str, str]] = opening) -> int:
        return closing_start(transcript("n", [*before, ("customer", last)]).scored_turns)

    assert start("Got it, thank you Marco!") == start("Thanks so much, Marco. Bye!") == 2
    assert start("thanks Marco have a nice day") == start("ok thanks Marco bye") == 2
    assert start("Thanks Marco I'm all set") == 2
    # a name the agent never used, a capitalised word that is no name, more than a thanks: read
    for last in ("Got it, thank you Sarah!", "ok thanks, Human!", "Thanks, Useless!",
                 "Thanks Marco, but it failed again.", "thanks again Marco, Windows still crashes",
                 "thanks Marco sent the wrong one", "thanks Marco Windows crashed", "thank you marco"):
        assert start(last) == 3, last
    # the name must come before the thanks, from an agent turn
    assert start("Great, thanks Priya!", [*opening, ("customer", "by noon?"), ("agent", "Priya here, yes")]) == 4
    assert start("Great, thanks Priya!", [("customer", "Hi, Priya here"), *opening[1:]]) == 3
    later = transcript("l", [*opening, ("customer", "Got it, thank you Sarah!"), ("agent", "Sarah here, bye")])
    assert closing_start(later.scored_turns) == 4
    assert is_pleasantry("Great, thanks Priya!", {"priya"}) and not is_pleasantry("Great, thanks Priya!")
    # a turn anywhere in the conversation is read the same way (the augmentations' reading)
    mid = transcript("m", [*opening, ("customer", "thanks Marco!"), ("agent", "Anything else?"),
                           ("customer", "thanks Sarah!"), ("agent", "Sarah here.")]).scored_turns
    assert pleasantry_at(mid, 2) and not pleasantry_at(mid, 4)
    first = transcript("f", [("customer", "thanks Marco!"), ("agent", "Marco here, bye")]).scored_turns
    assert not pleasantry_at(first, 0)
    # trailing closings are read back one by one, each with the agent turns before it
    assert start("bye Marco", [*opening, ("customer", "thanks Marco!"), ("agent", "Anything else?")]) == 2


DESIGNS = {"conversation": {"reading": "conversation", "chunk_tokens": 100},
           "causal": {"reading": "conversation_causal", "chunk_tokens": 100},
           "turns": {},
           "context": {"context_layers": 1},
           "conversation, context": {"reading": "conversation", "chunk_tokens": 100, "context_layers": 1}}


@pytest.fixture(scope="module", params=list(DESIGNS))
def pair(request, tiny_encoder_dir):
    """(a model whose resolution does not read the closing, the same weights reading it),
    their resolution made to move by tenths where a tiny random head would move by 1e-6."""
    config = DESIGNS[request.param]
    models = [make_tiny_model(tiny_encoder_dir, seed=5, closing_apart=APART, **config),
              make_tiny_model(tiny_encoder_dir, seed=5, **config)]
    with torch.no_grad():
        for model in models:
            model.conversation_heads.out["resolution_v1"][-1].weight.mul_(10)
            if model.turn_context is not None:  # a new context layer is the identity: make it read
                torch.manual_seed(1)
                for p in model.turn_context.parameters():
                    torch.nn.init.normal_(p, std=0.2)
    return models


@pytest.mark.parametrize("closing", CLOSINGS)
def test_a_head_apart_scores_the_conversation_as_without_its_closing(pair, closing):
    apart, reads = pair
    body, whole = conversation("b", *BODY), conversation("a", *BODY, *closing)
    short, long = Auditor(apart, precision="fp32", top_evidence=100).score([body, whole])
    assert long.resolution == pytest.approx(short.resolution, abs=1e-6)
    assert long.resolution_dist == pytest.approx(short.resolution_dist, abs=1e-6)
    # the same evidence as without the closing: its turns give none, the others the same
    assert [e.index for e in long.evidence["resolution"]] == [e.index for e in short.evidence["resolution"]]
    assert [e.contribution for e in long.evidence["resolution"]] == pytest.approx(
        [e.contribution for e in short.evidence["resolution"]], abs=1e-5)
    assert long.repeat_inquiry != pytest.approx(short.repeat_inquiry, abs=1e-4)  # still read
    assert [t.index for t in long.turns] == list(range(len(BODY) + len(closing)))
    for t in long.turns[len(BODY):]:  # the closing keeps its per-turn outputs
        assert (t.escalation_signal if t.role == "customer" else t.empathy) is not None
    control_short, control_long = Auditor(reads, precision="fp32").score([body, whole])
    assert abs(control_long.resolution - control_short.resolution) > 1e-3
    for target in ("satisfaction", "repeat_inquiry", "escalation"):  # every other head as before
        assert getattr(long, target) == pytest.approx(getattr(control_long, target), abs=1e-5)
    for x, y in zip(long.turns, control_long.turns, strict=True):
        for field in ("empathy", "solution_given", "breakdown", "solution_confirmed",
                      "escalation_signal", "escalation_running"):
            assert getattr(x, field) == pytest.approx(getattr(y, field), abs=1e-5)


def test_the_closing_chunk_is_read_again_cut_before_the_closing_and_nothing_else_changes(
        tiny_encoder_dir):
    config = {"reading": "conversation", "chunk_tokens": 100}
    apart = make_tiny_model(tiny_encoder_dir, closing_apart=APART, **config)
    plain = make_tiny_model(tiny_encoder_dir, **config)
    build = {name: builder_for(m.config, m.tokenizer).build
             for name, m in (("apart", apart), ("plain", plain))}
    roles = {"user": "customer", "assistant": "agent"}
    body = transcript("b", [(roles[r], t) for r, t in BODY])
    whole = transcript("a", [(roles[r], t) for r, t in BODY + CLOSINGS[2]])
    read, as_before = build["apart"]([whole]), build["plain"]([whole])
    assert read.closing == [False] * len(BODY) + [True] * 3
    # the whole conversation is read as before, plus one chunk: the body's last chunk
    assert read.input_ids[:-1] == as_before.input_ids and read.spans == as_before.spans
    cut = build["plain"]([body])
    last = cut.spans[-1][0]
    assert read.input_ids[-1] == cut.input_ids[last]
    assert [(k, *span) for k, *span in read.reread] == [
        (k, len(read.input_ids) - 1, *cut.spans[k][1:]) for k in range(len(BODY)) if cut.spans[k][0] == last]
    assert read.n_states == read.n_turns + len(read.reread) > read.n_turns
    # concatenated builds move the second readings with their turns and chunks
    joined = TurnWindows.concat([build["apart"]([body]), read])
    assert joined == build["apart"]([body, whole])


def test_closing_apart_is_saved_and_only_full_conversation_heads_may_be_named(tmp_path, tiny_encoder_dir):
    model = make_tiny_model(tiny_encoder_dir, closing_apart=APART)
    model.save_pretrained(tmp_path / "m")
    with pytest.warns(UntrainedModelWarning):
        assert QualityModel.from_pretrained(tmp_path / "m").config.closing_apart == APART
    assert "closing read apart (`resolution.v1`)" in (tmp_path / "m" / "README.md").read_text()
    for bad in (["escalation.v1"], ["empathy.v1"], ["nothing"], "resolution.v1"):
        with pytest.raises(ValueError, match="closing_apart"):
            make_tiny_model(tiny_encoder_dir, closing_apart=bad)
    path = tmp_path / "m" / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "closing_apart": ["escalation.v1"]}))
    with pytest.raises(ModelLoadError, match="config.json: closing_apart"):
        QualityModel.from_pretrained(tmp_path / "m")
