"""A turn's echo (`qualaudit.echo`: how much it repeats an earlier turn of its role) and the
heads that read it (`ModelConfig.echo`): the echo is read from the words, the read starts at
zero (a trained model keeps its scores), moves only the outputs of the heads it names (a turn
head's turn outputs, escalation's hazard), and training adds it to a saved model and trains it
with its head alone, or alone (`reads_only`)."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import conversation, load_benchmark, make_tiny_model
from qualaudit.batching import builder_for
from qualaudit.cli import main
from qualaudit.echo import band, echoes
from qualaudit.model import ModelConfig, QualityModel, UntrainedModelWarning
from qualaudit.scorer import Auditor
from qualaudit.training.datasets.examples import Example, empty_turn_labels, transcript
from qualaudit.training.train import TrainingArgs, train
from test_last_turns import trained_from
from test_train import write_user_data

candidates = load_benchmark("candidates")

BREAKDOWN, ESCALATION = "breakdown.v1", "escalation.v1"
ANSWER = "Please restart the router and wait two minutes."
LOOP = [("customer", "my internet is down"), ("agent", ANSWER),
        ("customer", "I did, still down"), ("agent", "Restart the router, then wait two minutes please."),
        ("customer", "still nothing"), ("agent", "Have you tried restarting your router?")]


def test_the_echo_is_the_largest_word_overlap_with_an_earlier_turn_of_the_same_role():
    values = echoes(LOOP)
    assert values[0] == values[1] == 0.0  # nothing before them
    # "restart router wait two minutes" against "restart router then wait two minutes"
    assert values[3] == pytest.approx(5 / 6)
    # a paraphrase shares few words: "restarting" is not "restart"; "router" of seven
    assert values[5] == pytest.approx(1 / 7)
    # the customer's turns are compared with the customer's only
    assert echoes([("agent", "down again"), ("customer", "down again")]) == [0.0, 0.0]
    # stop words and case do not count; a turn with no content words echoes nothing
    assert echoes([("agent", "The ROUTER is down."), ("agent", "a router down")]) == [0.0, 1.0]
    assert echoes([("agent", "it is"), ("agent", "it is")]) == [0.0, 0.0]


def test_bands_start_at_a_quarter():
    assert [band(x) for x in (0.0, 0.249, 0.25, 0.5, 0.74, 0.75, 1.0)] == [0, 0, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("reading", ["turns", "conversation"])
def test_windows_carry_each_scored_turns_echo_for_a_model_that_reads_it(tiny_model, reading):
    chats = [transcript("a", LOOP), transcript("b", [("customer", "hi"), ("customer", "hi")])]
    config = ModelConfig(**{**tiny_model.config.__dict__, "reading": reading, "echo": [BREAKDOWN]})
    windows = builder_for(config, tiny_model.tokenizer).build(chats)
    assert windows.echo == [*echoes(LOOP), 0.0, 1.0]
    # a model that does not read it is not given it
    assert builder_for(replace(config, echo=[]), tiny_model.tokenizer).build(chats).echo == []


def test_turn_heads_and_the_causal_conversation_head_read_the_echo(tiny_model):
    base = tiny_model.config.__dict__
    for bad in (["resolution.v1"], ["repeat_inquiry.v1"], ["speed.v1"], "breakdown.v1"):
        with pytest.raises(ValueError, match="echo must list turn heads or causal conversation heads"):
            ModelConfig(**{**base, "echo": bad})
    assert ModelConfig(**{**base, "echo": [BREAKDOWN, ESCALATION]}).echo == [BREAKDOWN, ESCALATION]


def test_the_read_starts_at_zero_and_moves_only_its_heads_turn_outputs(tiny_encoder_dir, tmp_path):
    plain = make_tiny_model(tiny_encoder_dir, seed=3)
    reads = make_tiny_model(tiny_encoder_dir, seed=4, echo=[BREAKDOWN])
    missing, unexpected = reads.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing == ["turn_heads.echo.breakdown_v1.weight"]
    chat = conversation("a", *[("assistant" if r == "agent" else "user", t) for r, t in LOOP])

    def scored(model):
        return Auditor(model, precision="fp32").score([chat])[0]

    before, same = scored(plain), scored(reads)
    assert [t.breakdown for t in before.turns] == pytest.approx([t.breakdown for t in same.turns], abs=1e-7)
    with torch.no_grad():
        reads.turn_heads.echo["breakdown_v1"].weight[3] = 4.0  # the top band only
    after = scored(reads)
    bands = [band(e) for e in echoes(LOOP)]
    assert bands == [0, 0, 1, 3, 1, 0]  # customers echo customers
    for b, x, y in zip(bands, before.turns, after.turns, strict=True):
        if x.breakdown is not None:  # agent turns
            assert y.breakdown > x.breakdown + 0.1 if b == 3 else y.breakdown == pytest.approx(x.breakdown, abs=1e-7)
            assert y.solution_given == pytest.approx(x.solution_given, abs=1e-7)
    for target in ("resolution", "satisfaction", "repeat_inquiry", "escalation"):
        assert getattr(after, target) == pytest.approx(getattr(before, target), abs=1e-7)
    reads.save_pretrained(tmp_path / "saved")
    with pytest.warns(UntrainedModelWarning):
        loaded = QualityModel.from_pretrained(tmp_path / "saved")
    assert loaded.config.echo == [BREAKDOWN]
    assert [t.breakdown for t in scored(loaded).turns] == pytest.approx([t.breakdown for t in after.turns], abs=1e-6)


def test_escalations_read_starts_at_zero_and_moves_only_escalation_where_a_turn_echoes(
        tiny_encoder_dir, tmp_path):
    plain = make_tiny_model(tiny_encoder_dir, seed=3)
    reads = make_tiny_model(tiny_encoder_dir, seed=4, echo=[ESCALATION])
    missing, unexpected = reads.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing == ["conversation_heads.echo.escalation_v1.weight"]
    chat = conversation("a", *[("assistant" if r == "agent" else "user", t) for r, t in LOOP])
    moved_on = [("customer", "my internet is down"), ("agent", ANSWER),
                ("customer", "the light is red"), ("agent", "Then the line is cut; a technician comes today.")]
    fresh = conversation("b", *[("assistant" if r == "agent" else "user", t) for r, t in moved_on])

    def scored(model):
        return Auditor(model, precision="fp32").score([chat, fresh])

    before, same = scored(plain), scored(reads)
    for x, y in zip(before, same, strict=True):
        assert y.escalation == pytest.approx(x.escalation, abs=1e-7)
        assert [t.escalation_running for t in y.turns] == pytest.approx([t.escalation_running for t in x.turns], abs=1e-7)
    with torch.no_grad():
        table = reads.conversation_heads.echo["escalation_v1"].weight  # the top band only; not
        table[3] = torch.linspace(-3.0, 3.0, table.shape[1])  # constant: the norm would remove it
    after = scored(reads)
    assert max(band(e) for e in echoes(moved_on)) < 3
    assert after[1].escalation == pytest.approx(before[1].escalation, abs=1e-7)  # nothing echoes there
    assert after[0].escalation != pytest.approx(before[0].escalation, abs=1e-4)
    running = [(x.escalation_running, y.escalation_running) for x, y in zip(before[0].turns, after[0].turns)]
    assert [y for _, y in running[:3]] == pytest.approx([x for x, _ in running[:3]], abs=1e-7)  # before the repeat
    assert running[3][1] != pytest.approx(running[3][0], abs=1e-4)  # from the repeat on
    for target in ("resolution", "satisfaction", "repeat_inquiry"):
        assert getattr(after[0], target) == pytest.approx(getattr(before[0], target), abs=1e-7)
    assert [t.breakdown for t in after[0].turns] == [t.breakdown for t in before[0].turns]
    assert after[0].evidence["escalation"]  # leave-one-out still drops one turn's hazard
    reads.save_pretrained(tmp_path / "saved")
    with pytest.warns(UntrainedModelWarning):
        loaded = QualityModel.from_pretrained(tmp_path / "saved")
    assert loaded.config.echo == [ESCALATION]
    assert scored(loaded)[0].escalation == pytest.approx(after[0].escalation, abs=1e-6)


def loops(n: int) -> list[Example]:
    """Chats whose agent repeats its answer (breakdown = 1 on the repeats) or moves on (0)."""
    out = []
    for i in range(n):
        repeat = i % 2 == 0
        agent = [ANSWER, ANSWER if repeat else "I have reset your line from our side now."]
        t = transcript(f"l{i}", [("customer", "my internet is down"), ("agent", agent[0]),
                                 ("customer", "still down"), ("agent", agent[1])])
        breakdown = empty_turn_labels(t)
        breakdown[1], breakdown[3] = 0.0, float(repeat)
        out.append(Example(t, "toy", t.id, turn_labels={"breakdown": breakdown},
                           labels={"escalation": np.float32(repeat)}))
    return out


def test_training_adds_the_read_to_a_saved_model_and_trains_it_with_its_head_alone(
        tmp_path, tiny_model_dir):
    examples = loops(24)

    def args(name: str, **kw) -> TrainingArgs:
        return TrainingArgs(output_dir=str(tmp_path / name), examples=examples, init=str(tiny_model_dir),
                            heads=["breakdown"], freeze_encoder=True, batch_tokens=200, evals=1,
                            max_epochs=2, augment=0.0, head_lr=5e-2, progress=False, **kw)

    model, after, added, changed = trained_from(tiny_model_dir, args("ft", echo=["breakdown"]))
    assert model.config.echo == [BREAKDOWN]
    assert added == {"turn_heads.echo.breakdown_v1.weight"}
    assert changed and all("breakdown_v1" in k for k in changed)
    table = after["turn_heads.echo.breakdown_v1.weight"]
    assert torch.equal(table[0], torch.zeros_like(table[0]))  # the lowest band adds nothing
    assert table[3].item() > 0  # an exact repeat learned to raise breakdown
    model.save_pretrained(tmp_path / "saved")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        with pytest.raises(ValueError, match="echo must list turn heads"):
            train(args("bad", echo=["resolution"]))
        with pytest.raises(ValueError, match="echo: unknown target"):
            train(args("bad", echo=["nothing"]))
        with pytest.raises(ValueError, match="name them too"):  # trained weights are never dropped
            train(TrainingArgs(output_dir=str(tmp_path / "drop"), examples=examples,
                               init=str(tmp_path / "saved"), echo=[], progress=False))


def test_reads_only_trains_the_read_and_nothing_else(tmp_path, tiny_model_dir):
    def args(name: str, **kw) -> TrainingArgs:
        kw.setdefault("echo", ["breakdown"])
        return TrainingArgs(output_dir=str(tmp_path / name), examples=loops(24), init=str(tiny_model_dir),
                            heads=["breakdown"], batch_tokens=200, evals=1, max_epochs=2, augment=0.0,
                            head_lr=5e-2, progress=False, **kw)

    _, after, _, changed = trained_from(tiny_model_dir, args("ft", freeze_encoder=True, reads_only=True))
    assert not changed  # breakdown's own map included
    assert after["turn_heads.echo.breakdown_v1.weight"][3].item() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        with pytest.raises(ValueError, match="set freeze_encoder"):
            args("loose", reads_only=True)
        with pytest.raises(ValueError, match="no added read"):
            train(args("none", freeze_encoder=True, reads_only=True, echo=None))


def test_escalation_learns_from_its_read_alone_that_a_repeated_answer_needs_a_person(tmp_path, tiny_model_dir):
    args = TrainingArgs(output_dir=str(tmp_path / "esc"), examples=loops(24), init=str(tiny_model_dir),
                        heads=["escalation"], echo=["escalation"], freeze_encoder=True, reads_only=True,
                        batch_tokens=200, evals=1, max_epochs=3, augment=0.0, head_lr=5e-2, progress=False)
    model, after, added, changed = trained_from(tiny_model_dir, args)
    assert model.config.echo == [ESCALATION] and not changed
    assert added == {"conversation_heads.echo.escalation_v1.weight"}
    table = after["conversation_heads.echo.escalation_v1.weight"]
    assert torch.equal(table[0], torch.zeros_like(table[0])) and table[3].abs().sum() > 0
    repeated, moved_on = (Auditor(model, precision="fp32").score([e.transcript])[0].escalation
                          for e in loops(2))
    assert repeated > moved_on


def test_cli_train_adds_the_read_to_the_heads_it_names(tmp_path, tiny_model_dir):
    transcripts, labels = write_user_data(tmp_path)
    out = tmp_path / "ours"
    assert main(["train", "--transcripts", str(transcripts), "--labels", str(labels),
                 "--init", str(tiny_model_dir), "-o", str(out), "--heads", "resolution",
                 "--echo", "breakdown", "--freeze-encoder", "--max-epochs", "1", "--quiet"]) == 0
    with pytest.warns(UntrainedModelWarning):
        config = QualityModel.from_pretrained(out).config
    assert config.echo == [BREAKDOWN]
    assert candidates.design(config).endswith(", echo=breakdown.v1")


def test_the_card_says_which_heads_read_the_echo_and_how(tiny_encoder_dir):
    from qualaudit.modelcard import render_model_card

    def line(echo):
        card = render_model_card(make_tiny_model(tiny_encoder_dir, seed=5, echo=echo), {})
        return next(x for x in card.splitlines() if x.startswith("- echo read"))

    turn, causal = "a turn head adds a learned vector", "the causal conversation head adds one"
    assert turn in line([BREAKDOWN]) and causal not in line([BREAKDOWN])
    assert causal in line([ESCALATION]) and turn not in line([ESCALATION])
    both = line([BREAKDOWN, ESCALATION])
    assert turn in both and causal in both
