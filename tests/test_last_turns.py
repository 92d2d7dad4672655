"""Conversation heads that also read the last customer and agent turns
(`ModelConfig.last_turns`): the read starts at zero (a trained model keeps its scores), leaving a
turn out for evidence leaves it out of this read too, and training adds it to a saved model and
trains it with the head it belongs to, nothing else."""

import json
import warnings

import numpy as np
import pytest
import torch

from conftest import conversation, load_benchmark, make_tiny_model
from qualaudit.cli import main
from qualaudit.errors import ModelLoadError
from qualaudit.head_layers import ConversationHeads
from qualaudit.heads import DEFAULT_HEADS, resolve_heads
from qualaudit.model import QualityModel, UntrainedModelWarning
from qualaudit.scorer import Auditor
from qualaudit.training.train import TrainingArgs, train
from test_train import toy_examples, write_user_data

candidates = load_benchmark("candidates")

REPEAT = "repeat_inquiry.v1"


def heads(last_turns=(REPEAT,)) -> ConversationHeads:
    torch.manual_seed(1)
    h = ConversationHeads(resolve_heads(list(DEFAULT_HEADS)), hidden=8, n_features=3, dim=8,
                          position_buckets=4, dropout=0.0, last_turns=last_turns).eval()
    with torch.no_grad():
        for p in h.last.parameters():
            torch.nn.init.normal_(p, std=0.5)
    return h


def test_a_new_last_turns_read_changes_no_score(tiny_encoder_dir):
    plain = make_tiny_model(tiny_encoder_dir, seed=3)
    reads = make_tiny_model(tiny_encoder_dir, seed=4, last_turns=[REPEAT])
    missing, unexpected = reads.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing == ["conversation_heads.last.repeat_inquiry_v1.weight",
                                          "conversation_heads.last.repeat_inquiry_v1.bias"]
    chats = [conversation("a", ("user", "my parcel never came"), ("assistant", "I resent it"),
                          ("user", "thanks")),
             conversation("b", ("user", "the app crashes on login"))]
    for x, y in zip(*(Auditor(m, precision="fp32").score(chats) for m in (plain, reads)), strict=True):
        assert x.repeat_inquiry == pytest.approx(y.repeat_inquiry, abs=1e-7)


def test_the_last_turns_are_read_and_a_turn_left_out_is_left_out_of_them():
    h, plain = heads(), heads(())
    g = torch.Generator().manual_seed(0)
    T = 6
    states, features = torch.randn(2, T, 8, generator=g), torch.randn(2, T, 3, generator=g)
    # row 0 alternates customer / agent; row 1 has one agent turn, then customers, then padding
    is_agent = torch.tensor([[False, True] * 3, [False, True, False, False, False, False]])
    mask = torch.tensor([[True] * T, [True] * 5 + [False]])
    out = h(states, features, is_agent, mask, with_evidence=True)
    key = REPEAT.replace(".", "_")
    z = h.norm(h.proj(torch.cat([states, features], -1)) + h.role(is_agent.long())
               + h.start(torch.arange(T).clamp(max=3))[None]
               + h.end((mask.sum(1)[:, None] - 1 - torch.arange(T)).clamp(0, 3)))

    def expected(row: int, kept: torch.Tensor) -> torch.Tensor:
        """The logit pooling the `kept` turns and reading the last of each role among them."""
        w = torch.softmax(h.score[key](z[row, kept]).squeeze(-1), 0)
        pooled = (w[:, None] * z[row, kept]).sum(0)
        ends = []
        for role in (False, True):
            own = torch.nonzero(kept & (is_agent[row] == role)).flatten()
            ends.append(z[row, own[-1]] if len(own) else torch.zeros(8))
        return h.out[key](pooled + h.last[key](torch.cat(ends))).squeeze(-1)

    for row in range(2):
        torch.testing.assert_close(out.logits[REPEAT][row], expected(row, mask[row]), atol=1e-5, rtol=1e-5)
        for t in range(int(mask[row].sum())):
            kept = mask[row] & (torch.arange(T) != t)
            torch.testing.assert_close(out.leave_one_out[REPEAT][row, t], expected(row, kept),
                                       atol=1e-5, rtol=1e-5)
    # the read moves the score; the heads it does not name are as without it
    other = plain(states, features, is_agent, mask, with_evidence=True)
    assert not torch.allclose(out.logits[REPEAT], other.logits[REPEAT])
    for name in ("resolution.v1", "satisfaction.v1", "escalation.v1"):
        torch.testing.assert_close(out.logits[name], other.logits[name])
        torch.testing.assert_close(out.leave_one_out[name], other.leave_one_out[name])


def test_the_turns_that_decide_a_last_turns_head_are_its_evidence(tiny_encoder_dir):
    model = make_tiny_model(tiny_encoder_dir, seed=2, last_turns=[REPEAT])
    with torch.no_grad():
        for p in model.conversation_heads.last.parameters():
            torch.nn.init.normal_(p, std=0.5)
    chat = conversation("a", ("user", "my parcel never came"), ("assistant", "I resent it today"),
                        ("user", "it is still not here"), ("assistant", "please wait two days"))
    (scored,) = Auditor(model, precision="fp32", top_evidence=4).score([chat])
    top = scored.evidence["repeat_inquiry"][0]
    moved = []
    for k in range(4):  # the score with each turn removed from the transcript
        kept = [m for i, m in enumerate(chat["messages"]) if i != k]
        (without,) = Auditor(model, precision="fp32").score([{**chat, "messages": kept}])
        moved.append(abs(scored.repeat_inquiry - without.repeat_inquiry))
    assert top.index == int(np.argmax(moved))


def test_last_turns_is_saved_and_only_full_conversation_heads_may_be_named(tmp_path, tiny_encoder_dir):
    model = make_tiny_model(tiny_encoder_dir, last_turns=[REPEAT])
    model.save_pretrained(tmp_path / "m")
    with pytest.warns(UntrainedModelWarning):
        assert QualityModel.from_pretrained(tmp_path / "m").config.last_turns == [REPEAT]
    assert "last turns read (`repeat_inquiry.v1`)" in (tmp_path / "m" / "README.md").read_text()
    for bad in (["escalation.v1"], ["empathy.v1"], ["nothing"], REPEAT):
        with pytest.raises(ValueError, match="last_turns"):
            make_tiny_model(tiny_encoder_dir, last_turns=bad)
    path = tmp_path / "m" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "last_turns": ["escalation.v1"]}))
    with pytest.raises(ModelLoadError, match="config.json: last_turns"):
        QualityModel.from_pretrained(tmp_path / "m")


def trained_from(init, args: TrainingArgs) -> tuple[QualityModel, dict, set[str], set[str]]:
    """Train `args` from the saved model `init`: the model, its weights, the names of the
    weights it added, and of those it changed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        before = QualityModel.from_pretrained(init).state_dict()
        model = train(args).model
    after = model.state_dict()
    return (model, after, {k for k in after if k not in before},
            {k for k in before if not torch.equal(before[k], after[k])})


def test_training_adds_the_read_to_a_saved_model_and_trains_it_with_its_head_alone(
        tmp_path, tiny_model_dir):
    examples = toy_examples(24)
    for e in examples:
        e.labels["repeat_inquiry"] = e.labels["escalation"]

    def args(name: str, **kw) -> TrainingArgs:
        return TrainingArgs(output_dir=str(tmp_path / name), examples=examples, init=str(tiny_model_dir),
                            heads=["repeat_inquiry"], freeze_encoder=True, batch_tokens=200, evals=1,
                            max_epochs=1, augment=0.0, progress=False, **kw)

    model, after, added, changed = trained_from(tiny_model_dir, args("ft", last_turns=["repeat_inquiry"]))
    assert model.config.last_turns == [REPEAT]
    assert added == {"conversation_heads.last.repeat_inquiry_v1.weight",
                     "conversation_heads.last.repeat_inquiry_v1.bias"}
    assert changed and all("repeat_inquiry_v1" in k for k in changed)
    assert all(after[k].abs().sum() > 0 for k in added)  # trained away from zero
    model.save_pretrained(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        for bad, message in ((["nothing"], "unknown target"), (["empathy"], "full pooling")):
            with pytest.raises(ValueError, match=message):
                train(args("bad", last_turns=bad))
        with pytest.raises(ValueError, match="name them too"):  # trained weights are never dropped
            train(TrainingArgs(output_dir=str(tmp_path / "drop"), examples=examples,
                               init=str(tmp_path / "saved"), last_turns=[], progress=False))


def test_cli_train_adds_the_read_to_the_heads_it_names(tmp_path, tiny_model_dir):
    transcripts, labels = write_user_data(tmp_path)
    out = tmp_path / "ours"
    assert main(["train", "--transcripts", str(transcripts), "--labels", str(labels),
                 "--init", str(tiny_model_dir), "-o", str(out), "--heads", "resolution",
                 "--last-turns", "resolution", "--freeze-encoder", "--max-epochs", "1", "--quiet"]) == 0
    with pytest.warns(UntrainedModelWarning):  # the tiny model's other heads never trained
        config = QualityModel.from_pretrained(out).config
    assert config.last_turns == ["resolution.v1"]
    assert candidates.design(config).endswith(", last_turns=resolution.v1")
