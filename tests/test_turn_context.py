"""The turn-context design: a causal transformer over the turn states before every head.
Checked on tiny random models: it starts as the identity, stays causal, saves and loads, and
its evidence is the change when a turn is removed after the encoder."""

import copy

import numpy as np
import pytest
import torch

from conftest import conversation, make_tiny_model
from qualaudit.batching import TurnWindows, WindowBuilder
from qualaudit.model import QualityModel, UntrainedModelWarning
from qualaudit.scorer import Auditor
from qualaudit.training.datasets import transcript
from qualaudit.training.train import _with_context_layers

TURNS = (("user", "password reset link not working"), ("assistant", "i sent the link again"),
         ("user", "still not working"), ("assistant", "i sent the link again"),
         ("user", "this is useless"), ("assistant", "sorry, reset done"), ("user", "ok"))


@pytest.fixture(scope="module")
def context_model(tiny_encoder_dir):
    """A context model whose layers are not the identity (their zero-initialised output
    projections are given random weights), so every check below can fail."""
    model = make_tiny_model(tiny_encoder_dir, seed=1, context_layers=2)
    torch.manual_seed(2)
    with torch.no_grad():
        for layer in model.turn_context.layers:
            for linear in (layer.attn.out_proj, layer.ff[-1]):
                linear.weight.normal_(std=0.3)
                linear.bias.normal_(std=0.1)
    return model.eval()


def windows_of(model, *transcripts) -> TurnWindows:
    builder = WindowBuilder(model.tokenizer, model.config.max_turn_tokens,
                            model.config.max_context_tokens)
    roles = {"user": "customer", "assistant": "agent"}
    return builder.build([transcript(t["id"], [(roles[m["role"]], m["content"]) for m in t["messages"]])
                          for t in transcripts])


def test_new_context_layers_change_no_score(tiny_model, toy_transcripts):
    added = _with_context_layers(copy.deepcopy(tiny_model), 2)
    assert added.config.context_layers == 2 and added.turn_context is not None
    before, after = Auditor(tiny_model).score(toy_transcripts), Auditor(added).score(toy_transcripts)
    for a, b in zip(before, after):
        for target in ("resolution", "repeat_inquiry", "escalation", "satisfaction"):
            assert getattr(b, target) == pytest.approx(getattr(a, target), abs=1e-6)


def test_context_layers_are_not_added_twice(context_model):
    with pytest.raises(ValueError, match="already has 2 turn-context layers"):
        _with_context_layers(context_model, 1)


@torch.no_grad()
def test_a_turn_never_reads_the_turns_after_it(context_model):
    windows = windows_of(context_model, conversation("c", *TURNS))
    states = context_model.encode_windows(windows)
    changed = states.clone()
    changed[5:] += torch.randn_like(changed[5:])  # turns 5 and 6 only
    a = context_model(windows, with_evidence=True, encode=lambda w: states)
    b = context_model(windows, with_evidence=True, encode=lambda w: changed)
    for name, logits in a.turn_logits.items():
        torch.testing.assert_close(b.turn_logits[name][:5], logits[:5])
        assert not torch.allclose(b.turn_logits[name][5:], logits[5:])
    running_a = a.groups[0].output.running["escalation.v1"][0]
    running_b = b.groups[0].output.running["escalation.v1"][0]
    torch.testing.assert_close(running_b[:5], running_a[:5])


@torch.no_grad()
def test_leave_one_out_is_the_transcript_read_again_without_the_turn(context_model):
    """An independent path: drop turn t's window and encoder state, run the forward pass on
    what is left, and compare with the leave-one-out logits of the full pass."""
    transcripts = [conversation("c", *TURNS), conversation("d", *TURNS[:3])]
    windows = windows_of(context_model, *transcripts)
    states = context_model.encode_windows(windows)
    full = context_model(windows, with_evidence=True, encode=lambda w: states)
    loo = full.groups[0].output.leave_one_out
    start = 0
    for row, count in enumerate(windows.turn_counts):
        for t in range(count):
            keep = [k for k in range(start, start + count) if k != start + t]
            if not keep:
                continue
            sub = TurnWindows(*([getattr(windows, f)[k] for k in keep]
                                for f in ("input_ids", "token_type_ids", "is_agent")),
                              [len(keep)], [False] * len(keep), [False] * len(keep),
                              [False] * len(keep))
            alone = context_model(sub, encode=lambda w, keep=keep: states[keep]).conversation_logits
            for name, value in alone.items():
                torch.testing.assert_close(loo[name][row, t], value[0], atol=1e-5, rtol=1e-5)
        start += count


def test_the_top_evidence_turn_moves_the_score_most_when_removed(context_model):
    auditor = Auditor(context_model, precision="fp32")
    transcript = conversation("c", *TURNS)
    scored = auditor.score(transcript)
    windows = windows_of(context_model, transcript)
    with torch.no_grad():
        states = context_model.encode_windows(windows)
        loo = context_model(windows, with_evidence=True, encode=lambda w: states
                            ).groups[0].output.leave_one_out["resolution.v1"][0]
    for target in ("resolution", "escalation"):
        evidence = scored.evidence[target]
        assert evidence, target
        moved = [abs(e.contribution) for e in evidence]
        assert moved == sorted(moved, reverse=True)
    full_logit = np.log(scored.resolution / (1 - scored.resolution))
    calibration = context_model.calibration
    from qualaudit.evidence import target_logit
    from qualaudit.heads import resolve_heads

    spec = next(s for s in resolve_heads(context_model.config.heads) if s.target == "resolution")
    changes = full_logit - target_logit(calibration, spec, loo.numpy())
    top = scored.evidence["resolution"][0]
    assert changes[top.index] == pytest.approx(top.contribution, abs=1e-4)
    assert abs(changes[top.index]) == pytest.approx(np.abs(changes).max(), abs=1e-9)


def test_context_models_save_load_and_score_alike(context_model, tmp_path, toy_transcripts):
    context_model.save_pretrained(tmp_path / "m")
    with pytest.warns(UntrainedModelWarning):
        loaded = QualityModel.from_pretrained(tmp_path / "m")
    assert loaded.config.context_layers == 2
    for a, b in zip(Auditor(context_model, precision="fp32").score(toy_transcripts),
                    Auditor(loaded, precision="fp32").score(toy_transcripts)):
        assert b.resolution == pytest.approx(a.resolution, abs=1e-6)
        assert [e.index for e in b.evidence["escalation"]] == [e.index for e in a.evidence["escalation"]]


def test_reduced_precision_scoring_keeps_the_context_layers(context_model, toy_transcripts):
    quantized = Auditor(context_model, precision="fp32", quantize="int8")
    assert quantized.model.encoder is not context_model.encoder
    assert quantized.model.turn_context is context_model.turn_context
    fp32 = Auditor(context_model, precision="fp32").score(toy_transcripts)
    for a, b in zip(fp32, quantized.score(toy_transcripts)):
        assert b.resolution == pytest.approx(a.resolution, abs=0.05)
