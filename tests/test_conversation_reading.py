"""The conversation-reading design: a transcript encoded as text in chunks of turns, each turn's
state pooled over its own tokens. Checked on tiny random models: the packing, the pooling, the
scorer and the forward pass agree, every turn keeps its outputs and evidence, and a saved
turn-reading model can be switched to it for training."""

import dataclasses

import pytest
import torch

from conftest import conversation, make_tiny_model
from qualaudit.batching import ConversationBuilder, TurnWindows, WindowBuilder, builder_for
from qualaudit.errors import ModelLoadError
from qualaudit.model import QualityModel, UntrainedModelWarning
from qualaudit.scorer import Auditor
from qualaudit.training.datasets import transcript
from qualaudit.training.train import TrainingArgs, _initial_model, _with_reading

TURNS = tuple((("user", "assistant")[k % 2], text) for k, text in enumerate((
    "my card was charged twice for the same order", "sorry about that, let me check the order",
    "it was the blue jacket order", "i see two charges, one is pending and will drop off",
    "how long will that take", "usually three to five days, i can refund it now instead",
    "yes please refund it", "done, the refund is on its way", "thanks it works now")))
ROLES = {"user": "customer", "assistant": "agent"}


def as_transcript(t: dict):
    return transcript(t["id"], [(ROLES[m["role"]], m["content"]) for m in t["messages"]])


@pytest.fixture(scope="module")
def reader(tiny_encoder_dir):
    return make_tiny_model(tiny_encoder_dir, seed=3, reading="conversation", chunk_tokens=100)


def test_turns_are_packed_in_order_with_the_opening_and_the_turn_before(reader):
    builder = builder_for(reader.config, reader.tokenizer)
    assert isinstance(builder, ConversationBuilder)
    windows = builder.build([as_transcript(conversation("c", *TURNS)),
                             as_transcript(conversation("d", *TURNS[:2]))])
    assert windows.turn_counts == [9, 2] and windows.n_turns == 11 == len(windows.spans)
    assert len(windows.input_ids) >= 3  # c needs more than one chunk of 100 tokens
    assert max(windows.lengths) <= 100
    own = [reader.tokenizer(f"{ROLES[r]}: {t}", add_special_tokens=False)["input_ids"][:48]
           for r, t in TURNS + TURNS[:2]]
    for k, (w, start, end) in enumerate(windows.spans):
        assert windows.input_ids[w][start:end] == own[k]  # the turn's own tokens, in place
    chunks_of_c = sorted({w for w, _, _ in windows.spans[:9]})
    assert [w for w, _, _ in windows.spans[:9]] == sorted(w for w, _, _ in windows.spans[:9])
    for w in chunks_of_c[1:]:
        first = next(k for k, span in enumerate(windows.spans) if span[0] == w)
        ids, start = windows.input_ids[w], windows.spans[first][1]
        n, m = min(24, len(own[0])), min(10, len(own[first - 1]))
        assert ids[1:1 + n] == own[0][:n]  # opens with the opening turn
        # then the end of the turn before (after its role prefix), then the turn
        assert first > 1 and ids[start - m:start] == own[first - 1][-m:]
    assert {w for w, _, _ in windows.spans[9:]}.isdisjoint(chunks_of_c)  # one transcript a chunk


def test_concat_moves_the_spans_with_their_chunks(reader):
    builder = builder_for(reader.config, reader.tokenizer)
    parts = [builder.build([as_transcript(conversation(i, *TURNS))]) for i in "ab"]
    joined = TurnWindows.concat(parts)
    both = builder.build([as_transcript(conversation(i, *TURNS)) for i in "ab"])
    assert joined == both
    turn_windows = WindowBuilder(reader.tokenizer, 48, 24).build([as_transcript(conversation("x", *TURNS))])
    with pytest.raises(ValueError, match="cannot concatenate"):
        TurnWindows.concat([parts[0], turn_windows])


@torch.no_grad()
def test_a_turn_state_is_the_mean_of_its_own_tokens(reader):
    windows = builder_for(reader.config, reader.tokenizer).build(
        [as_transcript(conversation("c", *TURNS))])
    states = reader.encode_windows(windows, max_batch_tokens=150)  # several batches
    for k, (w, start, end) in enumerate(windows.spans):
        ids = torch.tensor([windows.input_ids[w]])
        hidden = reader.encoder(input_ids=ids, attention_mask=torch.ones_like(ids),
                                token_type_ids=torch.zeros_like(ids)).last_hidden_state[0]
        torch.testing.assert_close(states[k], hidden[start:end].mean(0), atol=1e-5, rtol=1e-5)


def _states(model, *transcripts):
    windows = builder_for(model.config, model.tokenizer).build([as_transcript(t) for t in transcripts])
    return model.encode_windows(windows, max_batch_tokens=150), windows


@pytest.mark.parametrize("closing", [TURNS[-1:], TURNS[-1:] + (("assistant", "glad to help, bye"),)])
def test_reading_causally_no_later_turn_changes_an_earlier_turn_state(reader, closing):
    """conversation_causal: the states of a conversation's turns are the same whatever is
    said after them (a closing thank-you cannot lift the fix before it); the plain
    conversation reading, where a chunk is read both ways, changes them."""
    causal = _with_reading(reader, "conversation_causal").eval()
    body = TURNS[:8]
    with torch.no_grad():
        before, windows = _states(causal, conversation("b", *body))
        after, _ = _states(causal, conversation("a", *body, *closing))
        plain_before, _ = _states(reader, conversation("b", *body))
        plain_after, _ = _states(reader, conversation("a", *body, *closing))
    assert len({w for w, _, _ in windows.spans}) >= 2  # across chunks too
    torch.testing.assert_close(after[:len(body)], before, atol=1e-5, rtol=1e-5)
    assert (plain_after[:len(body)] - plain_before).abs().max() > 1e-3


def test_scoring_causally_keeps_the_earlier_turns_outputs_when_a_closing_follows(reader):
    causal = _with_reading(reader, "conversation_causal").eval()
    body = TURNS[:8]
    short, long = Auditor(causal, precision="fp32").score(
        [conversation("b", *body), conversation("a", *body, ("user", "ok thanks, bye"))])
    for x, y in zip(short.turns, long.turns):  # the scorer's encoder path, per-turn outputs
        assert x.index == y.index
        for field in ("empathy", "solution_given", "breakdown", "solution_confirmed", "escalation_signal"):
            assert getattr(x, field) == pytest.approx(getattr(y, field), abs=1e-5)


def test_every_turn_keeps_its_outputs_evidence_and_scores_alike_in_any_batch(reader):
    transcripts = [conversation("c", *TURNS), conversation("d", *TURNS[:3]),
                   conversation("e", *TURNS[2:])]
    together = Auditor(reader, precision="fp32", max_batch_tokens=200).score(transcripts)
    for t, row in zip(transcripts, together):
        alone = Auditor(reader, precision="fp32").score(t)
        assert [turn.index for turn in row.turns] == list(range(len(t["messages"])))
        assert all(turn.escalation_signals and turn.escalation_running is not None
                   for turn in row.turns if turn.role == "customer")
        assert all(turn.empathy is not None for turn in row.turns if turn.role == "agent")
        assert row.escalation_turn is None or 0 <= row.escalation_turn < len(t["messages"])
        assert row.evidence["resolution"]
        for target in ("resolution", "repeat_inquiry", "escalation", "satisfaction"):
            assert getattr(alone, target) == pytest.approx(getattr(row, target), abs=1e-5)


def test_saved_reading_round_trips_and_bad_settings_are_refused(reader, tmp_path, tiny_encoder_dir):
    reader.save_pretrained(tmp_path / "m")
    with pytest.warns(UntrainedModelWarning):
        loaded = QualityModel.from_pretrained(tmp_path / "m")
    assert (loaded.config.reading, loaded.config.chunk_tokens) == ("conversation", 100)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "reads the conversation as text" in card and "reading: the conversation as text" in card
    with pytest.raises(ValueError, match="reading must be one of"):
        make_tiny_model(tiny_encoder_dir, reading="window")
    with pytest.raises(ModelLoadError, match="chunk_tokens = 300 exceeds the encoder's 256"):
        make_tiny_model(tiny_encoder_dir, reading="conversation", chunk_tokens=300)
    too_small = make_tiny_model(tiny_encoder_dir, reading="conversation", chunk_tokens=64)
    with pytest.raises(ValueError, match="chunk_tokens must be >= 98"):
        builder_for(too_small.config, too_small.tokenizer)


def test_a_saved_turn_model_switches_reading_with_every_weight_kept(tiny_model, tiny_model_dir, tmp_path):
    args = TrainingArgs(output_dir=str(tmp_path), examples=[], init=str(tiny_model_dir),
                        reading="conversation")
    switched = _initial_model(args)
    assert switched.config.reading == "conversation"
    before = {k: v for k, v in tiny_model.state_dict().items()}
    for name, value in switched.state_dict().items():
        torch.testing.assert_close(value, before[name])
    with pytest.raises(ValueError, match="reading must be one of"):
        TrainingArgs(output_dir=str(tmp_path), examples=[], reading="chunks")
    kept = _initial_model(dataclasses.replace(args, reading=None))
    assert kept.config.reading == "turns"
