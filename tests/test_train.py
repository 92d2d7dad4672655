"""Training loop, augmentations, calibration fitting and the train / calibrate / evaluate
commands, on a tiny encoder and synthetic labelled transcripts."""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import make_tiny_model
from qualaudit.batching import TurnWindows
from qualaudit.cli import main
from qualaudit.heads import HEAD_SPECS, empathy_score, p_positive
from qualaudit.metrics import auroc
from qualaudit.model import QualityModel, UntrainedModelWarning
from qualaudit.training.batches import forward, prepare, window_builder
from qualaudit.training.calibration_job import fit_calibration, labelled_logits
from qualaudit.training.datasets import Example, by_split, split_of, transcript
from qualaudit.training.datasets.augment import TWIN_SETS, Augmenter, style_twins
from qualaudit.training.recipe import build, recipe_text, soup
from qualaudit.training.train import (
    TrainingArgs,
    TrainResult,
    _anchor,
    _prepared_twins,
    _row_empathy,
    _splits,
    _train_mode,
    anchor_loss,
    batch_loss,
    consistency_loss,
    contrast_loss,
    label_balance,
    taught,
    train,
)

ESCALATE = ["can i speak to a human agent please", "this is ridiculous, manager please",
            "still not working, same problem again"]
CALM = ["thanks it works now", "great that fixed it", "ok thank you"]


def toy_examples(n: int = 60, seed: int = 0) -> list[Example]:
    """Conversations whose escalation label is decided by the customer's last turn, and
    whose resolution follows it: learnable by a tiny model in a few steps."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        bad = i % 2 == 0
        t = transcript(f"c{i}", [("customer", "my card was charged twice"),
                                 ("agent", "sorry about that, refund sent"),
                                 ("customer", rng.choice(ESCALATE if bad else CALM))])
        signals = np.full((3, 3), np.nan, np.float32)
        signals[2, 2] = float(bad)
        out.append(Example(t, "toy", t.id, turn_labels={"escalation_signal": signals},
                           labels={"escalation": np.float32(bad),
                                   "resolution": np.eye(5, dtype=np.float32)[1 if bad else 3]}))
    return out


def tiny_args(tmp_path, encoder, **kw) -> TrainingArgs:
    kw.setdefault("max_train_tokens", 4000)
    return TrainingArgs(output_dir=str(tmp_path / "out"), examples=toy_examples(), init=encoder,
                        batch_tokens=400, evals=2, max_turn_tokens=32, max_context_tokens=16,
                        lr=1e-3, head_lr=1e-2, augment=0.0, progress=False, **kw)


def test_args_are_checked_on_creation(tmp_path):
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        TrainingArgs(output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="batch_tokens"):
        TrainingArgs(output_dir=str(tmp_path), examples=[], batch_tokens=0)
    with pytest.raises(ValueError, match="uss_share"):
        TrainingArgs(output_dir=str(tmp_path), examples=[], uss_share=1.5)
    with pytest.raises(ValueError, match="not a directory"):
        TrainingArgs(output_dir=str(tmp_path), data_dir=str(tmp_path / "missing"))


def test_splits_are_fixed_and_proportioned():
    splits = [split_of("stc3", str(i)) for i in range(4000)]
    assert splits == [split_of("stc3", str(i)) for i in range(4000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "dev", "report")}
    assert 0.77 < share["train"] < 0.83 and 0.08 < share["dev"] < 0.12


def test_dev_is_halved_between_early_stopping_and_calibration(tmp_path):
    examples = [Example(transcript(str(i), [("customer", "hi")]), "stc3", str(i)) for i in range(3000)]
    dev = by_split(examples, "dev")
    stop, calibrate = by_split(examples, "dev:stop"), by_split(examples, "dev:calibrate")
    assert sorted(e.group for e in stop + calibrate) == sorted(e.group for e in dev)
    assert not {e.group for e in stop} & {e.group for e in calibrate}
    assert 0.4 < len(stop) / len(dev) < 0.6
    _, chosen = _splits(examples, TrainingArgs(output_dir=str(tmp_path), examples=examples,
                                               dev_per_source=10_000))
    assert {e.group for e in chosen} == {e.group for e in stop}
    with pytest.raises(ValueError, match="dev:calibrate"):
        by_split(examples, "train:stop")


def test_loss_is_masked_per_head(tiny_encoder_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        model = QualityModel.from_encoder(tiny_encoder_dir, max_turn_tokens=32, max_context_tokens=16)
    examples = toy_examples(4)
    from qualaudit.batching import WindowBuilder

    items = prepare(examples, WindowBuilder(model.tokenizer, 32, 16), 32)
    specs = [s for s in model.specs if s.target in ("escalation", "escalation_signal", "empathy")]
    balance = label_balance(items, specs)
    loss, parts = batch_loss(model, items, specs, balance)
    assert set(parts) == {"escalation", "escalation_signal"}  # nothing labels empathy
    assert torch.isfinite(loss) and loss.requires_grad


def test_training_learns_resumes_and_refuses_other_args(tmp_path, tiny_encoder_dir):
    result = train(tiny_args(tmp_path, tiny_encoder_dir))
    first, last = result.dev_losses[0]["total"], min(d["total"] for d in result.dev_losses)
    assert result.train_tokens >= 4000 and len(result.dev_losses) >= 2
    assert last <= first
    assert set(result.model.config.trained_heads) == {"escalation.v1", "escalation_signal.v1",
                                                      "resolution.v1"}
    # the model separates the two kinds of ending it was trained on
    again = train(tiny_args(tmp_path, tiny_encoder_dir))  # resumes: nothing left to do
    assert again.steps == result.steps
    with pytest.raises(ValueError, match="other arguments"):
        train(tiny_args(tmp_path, tiny_encoder_dir, seed=1))


def test_a_selection_metric_chooses_the_weights_kept(tmp_path, tiny_encoder_dir):
    values = iter([0.9, 0.1, 0.2, 0.3, 0.4, 0.5])
    seen = []

    def select(model):
        seen.append(model.training)
        return next(values)

    result = train(tiny_args(tmp_path, tiny_encoder_dir, context_layers=1), select)
    assert len(result.dev_losses) >= 2 and seen == [False] * len(result.dev_losses)
    assert result.best_step == result.dev_losses[0]["step"]  # the first eval rated highest
    assert result.model.config.context_layers == 1
    assert [d["selection"] for d in result.dev_losses] == [0.9, 0.1, 0.2, 0.3, 0.4, 0.5][:len(seen)]
    args = tiny_args(tmp_path, tiny_encoder_dir, context_layers=1)
    kept = f"weights kept at step {result.best_step} (the highest selection metric)"
    assert kept in recipe_text(args, result, "")
    unselected = replace(result, dev_losses=[{k: v for k, v in d.items() if k != "selection"}
                                             for d in result.dev_losses])
    assert "(the lowest dev loss)" in recipe_text(args, unselected, "")
    with pytest.raises(ValueError, match="finite"):
        train(tiny_args(tmp_path / "nan", tiny_encoder_dir), lambda model: float("nan"))


@pytest.mark.parametrize("reading", ["turns", "conversation"])
def test_training_learns_a_learnable_target(tmp_path, tiny_encoder_dir, reading):
    result = train(tiny_args(tmp_path, tiny_encoder_dir, max_train_tokens=15000, max_epochs=10,
                             reading=reading))
    model = result.model
    assert model.config.reading == reading
    z, y = labelled_logits(model, toy_examples(40, seed=1))["escalation.v1"]
    assert auroc(z, y) > 0.9


def _teacher_file(path, target, labels):
    path.write_text(json.dumps({target: {"labels": labels}}))
    return str(path)


def test_teacher_labels_mix_into_the_labels_they_cover(tmp_path):
    examples = toy_examples(6)
    esc = _teacher_file(tmp_path / "esc.json", "escalation", {"toy/c0": [0.9, 0.1], "toy/c1": [0.2, 0.8]})
    res = _teacher_file(tmp_path / "res.json", "resolution", {"toy/c1": [0.0, 0.0, 0.0, 0.0, 1.0]})
    mixed = taught(examples, (esc, res), 0.25)
    assert mixed[0].labels["escalation"] == pytest.approx(0.25 * 0.1 + 0.75 * 1.0)
    assert mixed[1].labels["escalation"] == pytest.approx(0.25 * 0.8)
    np.testing.assert_allclose(mixed[1].labels["resolution"], [0, 0, 0, 0.75, 0.25])
    np.testing.assert_array_equal(mixed[0].labels["resolution"], examples[0].labels["resolution"])
    assert mixed[2] is examples[2] and examples[0].labels["escalation"] == 1.0  # copies only
    wrong = _teacher_file(tmp_path / "wrong.json", "resolution", {"toy/c0": [0.5, 0.5, 0.0]})
    with pytest.raises(ValueError, match="resolution for toy/c0 has shape"):
        taught(examples, (wrong,), 0.5)
    nobody = _teacher_file(tmp_path / "nobody.json", "escalation", {"other/c0": [0.5, 0.5]})
    with pytest.raises(ValueError, match="cover no training conversation"):
        taught(examples, (nobody,), 0.5)
    (tmp_path / "bad.json").write_text('{"escalation": [1, 2]}')
    with pytest.raises(ValueError, match="bad.json: not a teacher labels file"):
        taught(examples, (str(tmp_path / "bad.json"),), 0.5)
    with pytest.raises(ValueError, match="not a file"):
        TrainingArgs(output_dir=str(tmp_path), examples=[], teacher_labels=(str(tmp_path / "no.json"),))
    with pytest.raises(ValueError, match="teacher_weight"):
        TrainingArgs(output_dir=str(tmp_path), examples=[], teacher_weight=1.5)


def test_training_learns_the_teacher_where_it_has_all_the_weight(tmp_path, tiny_encoder_dir):
    """A teacher that says the opposite of every escalation label, at weight 1: the model
    learns the teacher's labels, so the teacher labels reach the loss."""
    inverted = {f"toy/{e.transcript.id}": [float(e.labels["escalation"]), 1 - float(e.labels["escalation"])]
                for e in toy_examples()}
    args = tiny_args(tmp_path, tiny_encoder_dir, max_train_tokens=15000, max_epochs=10,
                     teacher_labels=(_teacher_file(tmp_path / "t.json", "escalation", inverted),),
                     teacher_weight=1.0)
    z, y = labelled_logits(train(args).model, toy_examples(40, seed=1))["escalation.v1"]
    assert auroc(z, y) < 0.1


@torch.no_grad()
def test_turn_hazards_are_in_window_order(tiny_model):
    """The noisy-OR of each transcript's hazards, read back from `turn_hazards`, is its
    escalation, with transcripts of several lengths grouped out of order."""
    model = QualityModel(tiny_model.config, tiny_model.encoder, tiny_model.tokenizer).eval()
    examples = [Example(transcript(f"h{n}", [("customer", f"problem {k}") if k % 2 == 0 else
                                             ("agent", f"answer {k}") for k in range(n)]), "toy", "g")
                for n in (5, 1, 3, 8, 2)]
    windows = TurnWindows.concat([p.windows for p in prepare(examples, window_builder(model), None)])
    output = model(windows, group_turns=4)
    assert [g.rows for g in output.groups] != [[0, 1, 2, 3, 4]]  # grouped, not in order
    hazards = output.turn_hazards["escalation.v1"].double()
    ends = np.cumsum([5, 1, 3, 8, 2])
    survival = torch.stack([-torch.nn.functional.softplus(h).sum() for h in hazards.tensor_split(ends[:-1].tolist())])
    torch.testing.assert_close(1 - survival.exp(), torch.sigmoid(output.conversation_logits["escalation.v1"].double()),
                               atol=1e-5, rtol=1e-4)


def test_escalation_labelled_at_a_turn_trains_the_hazard_there(tmp_path, tiny_encoder_dir):
    """Positives labelled only at their last customer turn (as "human_request_turn" labels
    them), negatives by the conversation label: the model learns to tell them apart, so the
    turn labels reach the loss."""
    examples = []
    for e in toy_examples():
        if float(e.labels["escalation"]) == 1.0:
            at_turn = np.full(3, np.nan, np.float32)
            at_turn[2] = 1.0
            e.turn_labels["escalation"] = at_turn
            del e.labels["escalation"]
        examples.append(e)
    args = tiny_args(tmp_path, tiny_encoder_dir, max_train_tokens=15000, max_epochs=10)
    args.examples = examples
    z, y = labelled_logits(train(args).model, toy_examples(40, seed=1))["escalation.v1"]
    assert auroc(z, y) > 0.9


def test_augmentations_label_what_they_change():
    base = toy_examples(6)
    bitext = []
    for i, (intent, text) in enumerate([("contact_human_agent", "i want a real person"),
                                        ("complaint", "i want to file a complaint"),
                                        *[("track_order", f"where is my order {k}") for k in range(4)]]):
        t = transcript(f"b{i}", [("customer", text)])
        bitext.append(Example(t, "bitext", f"g{i}", info={"intent": intent,
                                                         "response": "Let me check. One moment."}))
    for e in base:
        e.source = "stc3"
    aug = Augmenter(base + bitext)
    rng = random.Random(0)
    requests = [aug.human_request(rng) for _ in range(20)]
    for r in requests:
        texts = [t.text for t in r.transcript.scored_turns]
        k = next(k for k, x in enumerate(texts) if x in ("i want a real person", "i want a complaint",
                                                         "i want to file a complaint"))
        assert r.transcript.scored_turns[k].role == "customer"
        signals = r.turn_labels["escalation_signal"][k]
        assert signals[1] == 1 or signals[2] == 1
        assert float(r.labels["escalation"]) == 1.0
    for r in (aug.human_request_turn(rng) for _ in range(10)):
        at = np.flatnonzero(~np.isnan(r.turn_labels["escalation"]))
        assert "escalation" not in r.labels and r.source == "augment:human_request_turn"
        turns = r.transcript.scored_turns
        request = next(k for k, x in enumerate(turns) if x.text in ("i want a real person", "i want to file a complaint"))
        assert r.turn_labels["escalation"][request] == 1.0
        assert list(at) == [k for k in range(request + 1) if turns[k].role == "customer"]
        assert (r.turn_labels["escalation"][at[:-1]] == 0).all()
    loop = aug.loop(rng)
    agents = [t.text for t in loop.transcript.scored_turns if t.role == "agent"]
    assert len(agents) >= 3 and float(loop.labels["repeat_inquiry"]) == 1.0
    dropped = [aug.dropped(rng) for _ in range(10)]
    assert all(d is None or d.transcript.scored_turns[-1].role == "customer" for d in dropped)


def test_fit_calibration_installs_a_calibrator_per_labelled_head(tiny_model):
    model = QualityModel(tiny_model.config, tiny_model.encoder, tiny_model.tokenizer)
    model.load_state_dict(tiny_model.state_dict())
    report = fit_calibration(model, toy_examples(60))
    assert {r.head for r in report} == {"escalation.v1", "escalation_signal.v1", "resolution.v1"}
    assert all(r.n >= 20 and 0 <= r.ece_after <= 1 for r in report)
    assert model.calibration.is_calibrated("escalation.v1")
    assert not model.calibration.is_calibrated("empathy.v1")


def write_user_data(tmp_path, n: int = 60):
    rows, labels = [], ["id,resolution,escalation"]
    for e in toy_examples(n):
        rows.append({"id": e.transcript.id, "messages": [
            {"role": t.role.replace("customer", "user").replace("agent", "assistant"), "content": t.text}
            for t in e.transcript.turns]})
        bad = int(float(e.labels["escalation"]))
        labels.append(f"{e.transcript.id},{1 - bad},{bad}")
    transcripts = tmp_path / "chats.jsonl"
    transcripts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    label_file = tmp_path / "labels.csv"
    label_file.write_text("\n".join(labels) + "\n")
    return transcripts, label_file


def test_cli_train_calibrate_evaluate_on_user_labels(tmp_path, tiny_model_dir, capsys):
    transcripts, labels = write_user_data(tmp_path)
    out = tmp_path / "ours"
    code = main(["train", "--transcripts", str(transcripts), "--labels", str(labels),
                 "--init", str(tiny_model_dir), "-o", str(out), "--heads", "resolution,escalation",
                 "--freeze-encoder", "--max-epochs", "1", "--quiet"])
    assert code == 0
    card = (out / "README.md").read_text()
    assert "## Recipe" in card and "## Calibration" in card
    model = QualityModel.from_pretrained(out)
    assert {"resolution.v1", "escalation.v1"} <= set(model.config.trained_heads)
    assert model.config.name == "ours"  # never passes for the default model

    recal = tmp_path / "recal"
    assert main(["calibrate", str(out), "-o", str(recal), "--transcripts", str(transcripts),
                 "--labels", str(labels)]) == 0
    assert "## Recalibrated" in (recal / "README.md").read_text()
    before = json.loads((recal / "calibration.json").read_text())["heads"]
    assert main(["calibrate", str(recal), "-o", str(recal), "--transcripts", str(transcripts),
                 "--labels", str(labels), "--heads", "escalation", "--method", "affine"]) == 0
    after = json.loads((recal / "calibration.json").read_text())["heads"]
    assert after["escalation.v1"]["method"] == "affine" and len(after["escalation.v1"]["bias"]) == 1
    assert after["resolution.v1"] == before["resolution.v1"]  # not named: kept as it was
    assert main(["calibrate", str(recal), "-o", str(recal), "--transcripts", str(transcripts),
                 "--labels", str(labels), "--heads", "escalation,lunch"]) == 2
    assert "--heads: lunch not among the targets" in capsys.readouterr().err
    assert main(["calibrate", str(recal), "-o", str(recal), "--transcripts", str(transcripts),
                 "--labels", str(labels), "--heads", "escalation,empathy", "--method", "affine"]) != 0
    assert "--heads: empathy had fewer than 20 labelled items" in capsys.readouterr().err
    assert json.loads((recal / "calibration.json").read_text())["heads"] == after  # nothing written

    capsys.readouterr()
    report = tmp_path / "agreement.json"
    assert main(["evaluate", str(transcripts), str(labels), "--model", str(recal),
                 "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert "escalation" in json.dumps(data) and "escalation" in capsys.readouterr().out


def test_heads_trained_on_a_frozen_encoder_leave_the_others_calibration_as_it_was(tmp_path, tiny_model_dir):
    """Their scores did not change, so a calibration fitted with care (affine, other data)
    must not be replaced by the training run's default; with the encoder trained, every
    head's scores move and every head is fitted again."""
    transcripts, labels = write_user_data(tmp_path, 600)  # 20+ dev:calibrate conversations
    data = ["--transcripts", str(transcripts), "--labels", str(labels)]
    cal = tmp_path / "cal"
    assert main(["calibrate", str(tiny_model_dir), "-o", str(cal), *data, "--method", "affine"]) == 0
    before = json.loads((cal / "calibration.json").read_text())["heads"]

    def trained(*flags: str) -> dict:
        out = tmp_path / "-".join(["out", *flags])
        assert main(["train", *data, "--init", str(cal), "-o", str(out), "--heads", "escalation",
                     "--max-epochs", "1", "--quiet", *flags]) == 0
        return json.loads((out / "calibration.json").read_text())["heads"]

    frozen = trained("--freeze-encoder")
    assert frozen["resolution.v1"] == before["resolution.v1"]
    assert frozen["escalation.v1"]["method"] == "temperature"  # the trained head: fitted again
    assert "keep the calibration they came with: `" in (tmp_path / "out---freeze-encoder" / "README.md").read_text()
    assert trained()["resolution.v1"]["method"] == "temperature"


def test_a_turn_head_trained_alone_refits_the_conversation_heads_that_read_it(tmp_path, tiny_encoder_dir):
    """Every conversation head reads the turn heads' logits (`TurnHeads.features`), so training
    a turn head on a frozen encoder moves their scores too: the calibration they came with no
    longer fits them."""
    model = make_tiny_model(tiny_encoder_dir)
    fit_calibration(model, toy_examples(600), method="affine")
    init = model.save_pretrained(tmp_path / "init")
    args = TrainingArgs(output_dir=str(tmp_path / "out"), examples=toy_examples(600), init=str(init),
                        heads=["escalation_signal"], freeze_encoder=True, max_train_tokens=4000,
                        batch_tokens=400, evals=1, head_lr=1e-2, augment=0.0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        build(args)
    before, after = (QualityModel.from_pretrained(d).calibration for d in (init, args.output_dir))
    assert before["resolution.v1"].method == "affine"
    assert after["resolution.v1"].method == after["escalation.v1"].method == "temperature"


def test_cli_train_needs_one_label_source(tmp_path, capsys):
    assert main(["train", "-o", str(tmp_path / "x")]) == 2
    assert "give --data-dir, or --transcripts with --labels" in capsys.readouterr().err


def test_named_heads_with_a_frozen_encoder_leave_other_scores_unchanged(tmp_path, tiny_model_dir):
    args = TrainingArgs(output_dir=str(tmp_path / "ft"), examples=toy_examples(), init=str(tiny_model_dir),
                        heads=["escalation"], freeze_encoder=True, batch_tokens=400, evals=1,
                        max_epochs=1, augment=0.0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        saved = QualityModel.from_pretrained(tiny_model_dir)
        before = saved.state_dict()
        tuned = train(args).model
    after = tuned.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("escalation_v1" in k for k in changed)
    # fine-tuning keeps the saved model's turn window (once overwritten by training defaults)
    window = ("max_turn_tokens", "max_context_tokens")
    assert [getattr(tuned.config, k) for k in window] == [getattr(saved.config, k) for k in window]


def test_a_named_head_trains_on_the_conversations_that_label_it(tmp_path, tiny_model_dir):
    """Most conversations lack the head's labels: they are left out, not batched into steps
    with nothing to learn (which once failed with "does not require grad")."""
    examples = toy_examples()
    for e in examples[12:]:
        del e.turn_labels["escalation_signal"]
    result = trained_alone(TrainingArgs(
        output_dir=str(tmp_path / "ft"), examples=examples, init=str(tiny_model_dir),
        heads=["escalation_signal"], freeze_encoder=True, batch_tokens=400, evals=1, max_epochs=1,
        augment=0.0, progress=False))
    assert 0 < result.steps <= 3  # one pass over at most 12 short conversations


def trained_alone(args: TrainingArgs) -> TrainResult:
    """`train(args)`, checking that only the named head's own layers changed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        before = QualityModel.from_pretrained(args.init).state_dict()
        result = train(args)
    changed = {k for k, v in result.model.state_dict().items() if not torch.equal(before[k], v)}
    (head,) = args.heads
    assert changed and all(f"{head}_v1" in k for k in changed)
    return result


def test_a_named_head_trains_on_augmentations_made_from_sources_that_do_not_label_it(
        tmp_path, tiny_model_dir):
    """Two-turn answers are made from Bitext requests, which label escalation only: repeat
    inquiry trained alone still gets them (labelled 0 or 1), and nothing else trains."""
    examples = toy_examples(24)
    for e in examples:
        e.labels["repeat_inquiry"] = e.labels["escalation"]
    requests = [("track_order", "where is my parcel", "Your parcel ships within two days."),
                ("cancel_order", "cancel my order please", "Open Orders and choose Cancel."),
                ("get_refund", "how do I get my money back", "Refunds go to your card in 5 days.")]
    for k, (intent, ask, reply) in enumerate(requests * 4):
        t = transcript(f"b{k}", [("customer", ask)])
        examples.append(Example(t, "bitext", f"{intent}/{k}", labels={"escalation": np.float32(0.0)},
                                info={"intent": intent, "response": reply}))

    def steps(augment: float) -> int:
        return trained_alone(TrainingArgs(
            output_dir=str(tmp_path / f"ft{augment}"), examples=examples, init=str(tiny_model_dir),
            heads=["repeat_inquiry"], freeze_encoder=True, batch_tokens=200, evals=1, max_epochs=1,
            augment=augment, augment_kinds=("two_turn_answered",), progress=False)).steps

    assert steps(1.0) > steps(0.0)


def test_refit_heads_replaces_the_conversation_heads_and_trains_nothing_else(tmp_path, tiny_encoder_dir):
    examples = toy_examples()
    for e in examples:  # refitting needs labels for every conversation head
        e.labels["satisfaction"] = e.labels["resolution"]
        e.labels["repeat_inquiry"] = e.labels["escalation"]
    first = train(tiny_args(tmp_path, tiny_encoder_dir, max_train_tokens=2000)).model
    first.save_pretrained(tmp_path / "first")
    before = first.state_dict()

    def refit(**kw) -> TrainingArgs:
        return TrainingArgs(output_dir=str(tmp_path / "refit"), examples=examples,
                            init=str(tmp_path / "first"), refit_heads=True, batch_tokens=400,
                            evals=1, max_train_tokens=1500, head_lr=1e-2, augment=0.0,
                            progress=False, **kw)

    with warnings.catch_warnings():  # the first model trained only the heads its toy data labels
        warnings.simplefilter("ignore", UntrainedModelWarning)
        refitted = train(refit()).model
    after = refitted.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("conversation_heads.") for k in changed)
    assert len(changed) == len([k for k in before if k.startswith("conversation_heads.")])
    _train_mode(refitted, refit())  # the frozen layers read as in scoring: no dropout
    assert refitted.conversation_heads.training
    assert not refitted.encoder.training and not refitted.turn_heads.training
    assert set(refitted.config.trained_heads) >= {"resolution.v1", "satisfaction.v1",
                                                  "repeat_inquiry.v1", "escalation.v1"}
    with pytest.raises(ValueError, match="do not name heads"):
        refit(heads=["resolution"])
    with pytest.raises(ValueError, match="is not one"):
        train(TrainingArgs(output_dir=str(tmp_path / "new"), examples=examples, init=tiny_encoder_dir,
                           refit_heads=True, max_turn_tokens=32, max_context_tokens=16, progress=False))
    for e in examples:
        del e.labels["repeat_inquiry"]
    with pytest.raises(ValueError, match="no training labels"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        train(TrainingArgs(output_dir=str(tmp_path / "unlabelled"), examples=examples,
                           init=str(tmp_path / "first"), refit_heads=True, progress=False))


def test_a_saved_model_keeps_its_window_and_refuses_another(tmp_path, tiny_model_dir):
    args = TrainingArgs(output_dir=str(tmp_path / "ft"), examples=toy_examples(),
                        init=str(tiny_model_dir), max_turn_tokens=64, progress=False)
    with pytest.raises(ValueError, match="keeps its own turn window"):
        train(args)


def test_training_cuts_long_conversations_as_scoring_does(tiny_model):
    from qualaudit.batching import within_max_turns

    turns = [("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(9)]
    example = Example(transcript("long", turns), "toy", "g",
                      turn_labels={"breakdown": np.arange(9, dtype=np.float32)})
    (item,) = prepare([example], window_builder(tiny_model), max_turns=4)
    kept, left_out, _ = within_max_turns(example.transcript, 4)
    assert [t.index for t in item.example.transcript.scored_turns] == [0, 1, 7, 8]
    assert [t.index for t in kept.scored_turns] == [0, 1, 7, 8] and left_out == [2, 6]
    assert item.example.turn_labels["breakdown"].tolist() == [0, 1, 7, 8]
    assert item.turns == 4


def shortcut_dialogues(n: int = 60, seed: int = 0) -> list[Example]:
    """STC-3-like dialogues resolved when the customer sees the refund, where a closing
    thank-you goes with resolution too (three in four resolved ones end with one, one in four
    unresolved ones): the shortcut the closing pairs exist to break."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        resolved = i % 2 == 0
        turns = [("customer", "my card was charged twice"),
                 ("agent", rng.choice(["refund sent, it shows tomorrow", "we cannot see that charge"])),
                 ("customer", "i see it now" if resolved else "still nothing on my statement")]
        if rng.random() < (0.75 if resolved else 0.25):
            turns.append(("customer", rng.choice(["ok thank you", "thanks, bye", "great thanks"])))
        t = transcript(f"s{i}", turns)
        out.append(Example(t, "stc3", t.id, labels={
            "resolution": np.eye(5, dtype=np.float32)[3 if resolved else 1]}))
    return out


def consistency_trained(tmp_path, encoder: str, examples: list[Example], tokens: int = 12000,
                        **loss) -> QualityModel:
    """A tiny model trained from `encoder` on `examples` with one pair loss's arguments."""
    return train(TrainingArgs(
        output_dir=str(tmp_path / "_".join(f"{k}{v}" for k, v in loss.items())), examples=examples,
        init=encoder, batch_tokens=400, evals=1, max_train_tokens=tokens, max_turn_tokens=32,
        max_context_tokens=16, lr=1e-3, head_lr=1e-2, augment=0.0, progress=False, **loss)).model


def fix_replies(n: int = 60, seed: int = 0) -> list[Example]:
    """STC-3-like dialogues, each a fix and the customer's reply, resolved exactly when a closing
    thank-you follows; the reply confirms the fix or says it is still open at random, so the
    labels alone teach the thank-you and nothing of the reply."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        resolved, confirms = i % 2 == 0, rng.random() < 0.5
        turns = [("customer", "my card was charged twice"), ("agent", "refund sent, it shows tomorrow"),
                 ("customer", rng.choice(["yes i see the refund now", "it shows on my statement now"]
                                         if confirms else ["still nothing on my statement", "no refund yet"]))]
        turns += [("customer", "ok thank you")] if resolved else []
        t = transcript(f"f{i}", turns)
        nan = [np.nan] * (len(turns) - 3)
        out.append(Example(t, "stc3", t.id, turn_labels={
            "solution_given": np.array([np.nan, 1.0, np.nan, *nan], np.float32),
            "solution_confirmed": np.array([0.0, np.nan, float(confirms), *nan], np.float32)},
            labels={"resolution": np.eye(5, dtype=np.float32)[3 if resolved else 1]}))
    return out


ANSWERS = ["restart the modem and wait two minutes", "check the cable behind the television",
           "your invoice shows a credit from march", "the courier collects parcels before noon",
           "reset the password from the login page", "update the banking app to version five"]


def loops(n: int = 60, seed: int = 0) -> list[Example]:
    """Helpdesk dialogues whose last agent turn repeats the answer before it or gives a new one,
    labelled breakdown exactly when it says "unfortunately", at random: the labels alone teach
    the word and nothing of the repetition."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        first, new = rng.sample(ANSWERS, 2)
        broken = rng.random() < 0.5
        last = rng.choice([first, new])
        turns = [("customer", "my service stopped working"), ("agent", first),
                 ("customer", rng.choice(["that did not help", "what else can i try"])),
                 ("agent", f"unfortunately {last}" if broken else last)]
        t = transcript(f"l{i}", turns)
        out.append(Example(t, "stc3", t.id, turn_labels={
            "breakdown": np.array([np.nan, 0.0, np.nan, float(broken)], np.float32)}))
    return out


def unasked(n: int = 60, seed: int = 0) -> list[Example]:
    """Helpdesk dialogues in which no customer asks for a person, needing escalation exactly
    when the customer says "again" at the start, at random: the labels alone teach the word and
    nothing of a request."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        again = rng.random() < 0.5
        turns = [("customer", "my service stopped working" + (" again" if again else "")),
                 ("agent", rng.choice(ANSWERS)), ("customer", rng.choice(["that did not help", "what else"])),
                 ("agent", rng.choice(ANSWERS))]
        t = transcript(f"u{i}", turns)
        out.append(Example(t, "stc3", t.id, labels={"escalation": np.float32(again)}))
    return out


@pytest.mark.parametrize("data, draw, loss, target", [(fix_replies, "reply_pair", "reply_contrast", "resolution"),
                                                      (loops, "loop_pair", "loop_contrast", "breakdown"),
                                                      (unasked, "request_pair", "request_contrast", "escalation")])
def test_a_contrast_loss_ranks_a_pairs_first_reading_above_its_second(tmp_path, tiny_encoder_dir,
                                                                     data, draw, loss, target):
    """A confirmed fix above an open one; a looped answer above a new one; a request for a
    person above a turn that asks for no one."""
    aug, rng = Augmenter(data(40, seed=1)), random.Random(0)
    pairs = [getattr(aug, draw)(rng) for _ in range(40)]
    hinge = {}
    for weight in (0.0, 5.0):
        model = consistency_trained(tmp_path, tiny_encoder_dir, data(), tokens=30000,
                                    **{loss: weight, loss.replace("contrast", "pairs"): 4})
        made = prepare([e for pair in pairs for e in pair], window_builder(model), None)
        head = next(s for s in model.specs if s.target == target)
        with torch.no_grad():
            hinge[weight] = float(contrast_loss(model, list(zip(made[0::2], made[1::2])), [head]))
    assert hinge[5.0] < 0.5 * hinge[0.0], hinge  # the labels alone leave the reply, the repetition or the request unread


def test_style_consistency_narrows_what_the_agents_wording_moves_on_held_out_twins(tmp_path, tiny_encoder_dir):
    gaps = {}
    for weight in (0.0, 5.0):
        model = consistency_trained(tmp_path, tiny_encoder_dir, toy_examples(),
                                    style_consistency=weight, style_pairs=4)
        made = prepare([e for twin in style_twins("held_out") for e in twin], window_builder(model), None)
        heads = [s for s in model.specs if s.target in ("escalation", "resolution")]  # the toy's
        with torch.no_grad():
            gaps[weight] = float(consistency_loss(model, list(zip(made[0::2], made[1::2])), heads))
    assert gaps[5.0] < 0.5 * gaps[0.0], gaps  # the twins it never saw score closer


def test_the_style_loss_draws_the_training_twins_of_the_named_sets(tiny_model_dir):
    builder = window_builder(QualityModel.from_pretrained(tiny_model_dir))
    drawn = {sets: _prepared_twins(builder, 32, sets)
             for sets in (("style_twins",), ("style_twins_manners",), TWIN_SETS)}
    assert [len(v) for v in drawn.values()] == [80, 60, 140]
    ids = {sets: [bot.example.transcript.id for bot, _ in twins] for sets, twins in drawn.items()}
    assert ids[TWIN_SETS] == ids[("style_twins",)] + ids[("style_twins_manners",)]
    assert all(i.startswith(("twinA-", "twinB-", "twinC-")) for i in ids[("style_twins_manners",)])


def test_shared_layers_trains_what_every_conversation_head_reads_beside_the_named_heads(tmp_path, tiny_model_dir):
    from test_last_turns import trained_from  # here: test_last_turns imports this module

    examples = [replace(e, labels={**e.labels, "satisfaction": e.labels["resolution"],
                                   "repeat_inquiry": e.labels["escalation"]}) for e in toy_examples(24)]

    def args(name: str, **kw) -> TrainingArgs:
        return TrainingArgs(output_dir=str(tmp_path / name), examples=examples, init=str(tiny_model_dir),
                            freeze_encoder=True, batch_tokens=400, evals=1, max_epochs=1, augment=0.0,
                            progress=False, **kw)

    every = ["resolution", "satisfaction", "repeat_inquiry", "escalation"]
    _, _, _, alone = trained_from(tiny_model_dir, args("alone", heads=every))
    _, _, _, shared = trained_from(tiny_model_dir, args("shared", heads=every, shared_layers=True))
    assert alone and all(k.startswith("conversation_heads.") and k.split(".")[2].endswith("_v1") for k in alone)
    layers = {k.split(".")[1] for k in shared - alone}
    assert layers == {"proj", "role", "start", "end", "norm"}, layers
    assert all(k.startswith("conversation_heads.") for k in shared)  # no turn head, no encoder
    with pytest.raises(ValueError, match="shared_layers changes every conversation head's scores: "
                                         "name satisfaction, repeat_inquiry, escalation too"):
        train(args("one", heads=["resolution"], shared_layers=True))
    with pytest.raises(ValueError, match="shared_layers adds the conversation heads' shared layers"):
        TrainingArgs(output_dir=str(tmp_path / "x"), examples=[], shared_layers=True)


def empathic(n: int = 60) -> list[Example]:
    """Toy conversations whose agent turn is empathic (every mechanism at level 2) exactly
    when it says it understands: what a templated bot says more than a human agent does."""
    out = []
    for i, e in enumerate(toy_examples(n)):
        warm = i % 3 == 0
        turns = [(t.role, ("i understand how frustrating this is, " if warm else "") + t.text
                  if t.role == "agent" else t.text) for t in e.transcript.scored_turns]
        levels = np.full((len(turns), 3, 3), np.nan, np.float32)
        levels[1] = np.eye(3, dtype=np.float32)[2 if warm else 0]
        out.append(replace(e, transcript=transcript(e.transcript.id, turns),
                           turn_labels={**e.turn_labels, "empathy": levels}))
    return out


def test_style_empathy_narrows_the_row_empathy_of_held_out_twins(tmp_path, tiny_encoder_dir):
    """Empathy is an agent-turn head: the style loss reaches it only when asked, and then the
    twins' row empathy (the mean over agent turns) comes closer."""
    twins = [e for twin in style_twins("held_out") for e in twin]
    gaps = {}
    for asked in (False, True):
        model = consistency_trained(tmp_path, tiny_encoder_dir, empathic(), tokens=40000,
                                    style_consistency=50.0, style_pairs=4, style_empathy=asked)
        made = prepare(twins, window_builder(model), None)
        empathy = next(s for s in model.specs if s.target == "empathy")
        with torch.no_grad():
            gaps[asked] = float(consistency_loss(model, list(zip(made[0::2], made[1::2])), [empathy]))
    assert gaps[True] < 0.5 * gaps[False], gaps


def test_row_empathy_is_the_mean_over_agent_turns_the_row_reports():
    logits = torch.randn(5, 3, 3)
    is_agent = torch.tensor([False, True, True, False, True])
    got = _row_empathy(logits, is_agent, torch.tensor([3, 2]))
    scores = empathy_score(torch.softmax(logits, -1).numpy())
    assert np.allclose(got.numpy(), [scores[[1, 2]].mean(), scores[4]], atol=1e-6)


def test_style_consistency_needs_a_conversation_head(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="style_consistency trains conversation heads"):
        train(TrainingArgs(output_dir=str(tmp_path / "x"), examples=toy_examples(8), init=str(tiny_model_dir),
                           heads=["escalation_signal"], freeze_encoder=True, style_consistency=1.0,
                           progress=False))
    with pytest.raises(ValueError, match="style_empathy holds the empathy head alike"):
        train(TrainingArgs(output_dir=str(tmp_path / "y"), examples=toy_examples(8), init=str(tiny_model_dir),
                           style_consistency=1.0, style_empathy=True, progress=False))
    with pytest.raises(ValueError, match="set style_consistency > 0"):
        TrainingArgs(output_dir=str(tmp_path / "z"), examples=[], style_empathy=True)
    with pytest.raises(ValueError, match=r"twin_sets must name some of style_twins, style_twins_manners, found \['x'\]"):
        TrainingArgs(output_dir=str(tmp_path / "z"), examples=[], twin_sets=("x",))


def flipped(examples: list[Example]) -> list[Example]:
    """`examples` with every label turned around: what a run that forgets would learn."""
    return [replace(e, labels={"escalation": 1 - e.labels["escalation"],
                               "resolution": e.labels["resolution"][::-1].copy()},
                    turn_labels={"escalation_signal": 1 - e.turn_labels["escalation_signal"]})
            for e in examples]


def test_the_anchor_keeps_a_trained_models_outputs_where_new_labels_would_move_them(tmp_path, tiny_encoder_dir):
    initial = train(tiny_args(tmp_path / "first", tiny_encoder_dir, max_train_tokens=8000)).model
    initial_dir = str(initial.save_pretrained(tmp_path / "initial"))
    items = prepare(toy_examples(20, seed=3), window_builder(initial), None)
    with torch.no_grad():
        before = forward(initial, items)
    drift = {}
    for weight in (0.0, 20.0):
        args = replace(tiny_args(tmp_path / f"w{weight}", initial_dir), examples=flipped(toy_examples()),
                       anchor=weight, max_turn_tokens=None, max_context_tokens=None)
        model = train(args).model
        with torch.no_grad():
            drift[weight] = float(anchor_loss(forward(model, items), before, model.specs,
                                              torch.ones(len(items), dtype=torch.bool), [p.turns for p in items]))
    assert drift[20.0] < 0.5 * drift[0.0], drift


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (never in CI)")
def test_training_runs_on_cuda_with_the_anchor_and_the_style_loss(tmp_path, tiny_encoder_dir):
    """Every loss's tensors live on the model's device: the class-balance weights once stayed
    on the CPU and stopped the first GPU run at its first step (benchmarks/README.md, round 81)."""
    initial = train(tiny_args(tmp_path / "first", tiny_encoder_dir)).model
    initial_dir = str(initial.save_pretrained(tmp_path / "initial"))
    args = replace(tiny_args(tmp_path / "cuda", initial_dir), device="cuda", anchor=1.0,
                   style_consistency=1.0, max_turn_tokens=None, max_context_tokens=None)
    result = train(args)
    assert result.steps > 0 and result.model.device.type == "cuda"
    assert all(np.isfinite(d["total"]) for d in result.dev_losses)


def test_the_anchor_reads_the_sources_conversations_not_the_augmentations(tiny_model, tiny_encoder_dir):
    items = prepare(toy_examples(6), window_builder(tiny_model), None)
    augmented = [replace(p, example=replace(p.example, source="augment:loop")) for p in items]
    specs = list(tiny_model.specs)
    moved = make_tiny_model(tiny_encoder_dir, seed=1)  # other weights: other outputs
    ones = {s.name: 1.0 for s in specs}
    _, parts = batch_loss(moved, augmented, specs, {}, (tiny_model, ones))
    assert "anchor" not in parts  # nothing from the sources: nothing to keep
    mixed = items[:3] + augmented[3:]
    _, parts = batch_loss(moved, mixed, specs, {}, (tiny_model, ones))
    with torch.no_grad():
        alone = anchor_loss(forward(moved, items[:3]), forward(tiny_model, items[:3]), specs,
                            torch.ones(3, dtype=torch.bool), [p.turns for p in items[:3]])
    assert parts["anchor"] == pytest.approx(float(alone), rel=1e-4)  # the augmented three left out


def test_a_targets_anchor_weighs_its_own_heads_only(tiny_model, tiny_encoder_dir):
    items = prepare(toy_examples(6), window_builder(tiny_model), None)
    specs = list(tiny_model.specs)
    moved = make_tiny_model(tiny_encoder_dir, seed=1)
    with torch.no_grad():
        new, old = forward(moved, items), forward(tiny_model, items)
    read, turns = torch.ones(len(items), dtype=torch.bool), [p.turns for p in items]
    alone = {s.name: float(anchor_loss(new, old, [s], read, turns)) for s in specs}
    resolution = next(s.name for s in specs if s.target == "resolution")
    assert alone[resolution] > 0
    weighted = anchor_loss(new, old, specs, read, turns, {resolution: 10.0})  # the others at 0
    assert float(weighted) == pytest.approx(10 * alone[resolution], rel=1e-4)


def test_anchor_targets_override_the_anchor_by_target(tmp_path, tiny_encoder_dir):
    model = make_tiny_model(tiny_encoder_dir)
    model.config.trained_heads = list(model.config.heads)
    args = tiny_args(tmp_path, tiny_encoder_dir, anchor=2.0, anchor_targets={"resolution": 50.0})
    weights = {HEAD_SPECS[name].target: w for name, w in _anchor(model, args)[1].items()}
    assert weights.pop("resolution") == 50.0 and set(weights.values()) == {2.0}
    assert _anchor(model, tiny_args(tmp_path, tiny_encoder_dir, anchor_targets={"resolution": 5.0}))
    assert _anchor(model, tiny_args(tmp_path, tiny_encoder_dir, anchor_targets={"resolution": 0.0})) is None
    with pytest.raises(ValueError, match="'resolve' is not a target"):
        tiny_args(tmp_path, tiny_encoder_dir, anchor_targets={"resolve": 1.0})
    with pytest.raises(ValueError, match="resolution's weight must be >= 0"):
        tiny_args(tmp_path, tiny_encoder_dir, anchor_targets={"resolution": -1.0})


def test_the_anchor_needs_a_trained_model(tmp_path, tiny_encoder_dir):
    with pytest.raises(ValueError, match="anchor keeps a trained model's outputs"):
        train(tiny_args(tmp_path, tiny_encoder_dir, anchor=1.0))
    with pytest.raises(ValueError, match="anchor must be >= 0"):
        tiny_args(tmp_path, tiny_encoder_dir, anchor=-1.0)


def closing_gap(model: QualityModel, pairs: list[tuple[Example, Example]]) -> float:
    """`consistency_loss` of resolution over closing pairs: how far a closing moves it."""
    made = prepare([e for pair in pairs for e in pair], window_builder(model), None)
    resolution = next(s for s in model.specs if s.target == "resolution")
    with torch.no_grad():
        return float(consistency_loss(model, list(zip(made[0::2], made[1::2])), [resolution]))


def test_closing_consistency_narrows_what_a_closing_moves(tmp_path, tiny_encoder_dir):

    aug = Augmenter(shortcut_dialogues(40, seed=1))
    rng = random.Random(0)
    pairs = [aug.closing_pair(rng) for _ in range(40)]
    gaps, separation = {}, {}
    for weight in (0.0, 5.0):
        model = consistency_trained(tmp_path, tiny_encoder_dir, shortcut_dialogues(),
                                    closing_consistency=weight, closing_pairs=4)
        gaps[weight] = closing_gap(model, pairs)
        z, y = labelled_logits(model, shortcut_dialogues(40, seed=2))["resolution.v1"]
        separation[weight] = auroc(p_positive(torch.from_numpy(z).softmax(-1).numpy()), p_positive(y))
    assert gaps[5.0] < 0.2 * gaps[0.0], gaps  # a closing moves resolution far less
    assert separation[5.0] > 0.9, separation  # and what resolves it still counts


def test_closing_pairs_say_when_resolution_never_reads_the_closing(tmp_path, tiny_encoder_dir, caplog):
    # read before its closing, a pair's two readings are one reading: the loss has nothing to
    # narrow (bar dropout), and training says so rather than pretend to teach the invariance
    pairs = [pair for pair in map(Augmenter(shortcut_dialogues(40, seed=1)).closing_pair,
                                  [random.Random(k) for k in range(12)]) if pair]
    assert len(pairs) >= 8
    gaps = {}
    for apart in ([], ["resolution.v1"]):  # the same weights, read with the closing and without
        model = make_tiny_model(tiny_encoder_dir, closing_apart=apart)
        gaps[bool(apart)] = closing_gap(model, pairs)
    assert gaps[False] > 1e-6 and gaps[True] < 1e-10, gaps
    saved = model.save_pretrained(tmp_path / "apart")
    with caplog.at_level("WARNING", logger="qualaudit.train"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        train(TrainingArgs(output_dir=str(tmp_path / "out"), examples=shortcut_dialogues(), init=str(saved),
                           batch_tokens=400, evals=1, max_train_tokens=2000, augment=0.0, progress=False,
                           closing_consistency=1.0))
        assert "differ only by dropout" in caplog.text
        caplog.clear()
        consistency_trained(tmp_path / "plain", tiny_encoder_dir, shortcut_dialogues(), tokens=2000,
                            closing_consistency=1.0)
        assert "differ only by dropout" not in caplog.text


@pytest.mark.parametrize("weight, per_step, head, other", [
    ("closing_consistency", "closing_pairs", "resolution", "escalation"),
    ("reply_contrast", "reply_pairs", "resolution", "escalation"),
    ("loop_contrast", "loop_pairs", "breakdown", "escalation"),
    ("request_contrast", "request_pairs", "escalation", "resolution")])
def test_a_pair_loss_needs_dialogues_and_its_head(tmp_path, tiny_encoder_dir, weight, per_step, head, other):
    with pytest.raises(ValueError, match=f"{weight} must be"):
        tiny_args(tmp_path, tiny_encoder_dir, **{weight: -1.0})
    with pytest.raises(ValueError, match=f"{per_step} must be"):
        tiny_args(tmp_path, tiny_encoder_dir, **{per_step: 0})
    toy = [replace(e, turn_labels={**e.turn_labels, "breakdown": np.array([np.nan, 0.0, np.nan], np.float32)})
           for e in toy_examples()]  # the toy labels resolution; breakdown too, here
    with pytest.raises(ValueError, match=f"{weight} makes its pairs from STC-3"):  # toy dialogues are not
        train(replace(tiny_args(tmp_path / "toy", tiny_encoder_dir, **{weight: 1.0}), examples=toy))
    with pytest.raises(ValueError, match=f"{weight} trains the {head} head"):
        train(tiny_args(tmp_path / "other", tiny_encoder_dir, **{weight: 1.0}, heads=[other]))


def test_a_soup_averages_the_weights_of_models_of_one_design(tmp_path, tiny_encoder_dir):
    a, b, other = (make_tiny_model(tiny_encoder_dir, seed=s, **kw)
                   for s, kw in ((0, {}), (1, {}), (2, {"context_layers": 1})))
    fit_calibration(a, toy_examples(60))
    assert a.calibration.is_calibrated("escalation.v1")
    dirs = [a.save_pretrained(tmp_path / "a"), b.save_pretrained(tmp_path / "b")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        # toy_examples(60) has one dev:calibrate item: too few to calibrate any head
        soup(dirs, tmp_path / "soup", toy_examples(60), version="9.9.9",
             card_sections={"Training data": "toy data"})
        made, a, b = (QualityModel.from_pretrained(d) for d in (tmp_path / "soup", *dirs))
        with pytest.raises(ValueError, match=r"not of the design .*context_layers"):
            soup([dirs[0], other.save_pretrained(tmp_path / "other")], tmp_path / "x", [], "1")
        with pytest.raises(ValueError, match="at least two"):
            soup(dirs[:1], tmp_path / "x", [], "1")
    theirs = a.state_dict(), b.state_dict()
    for name, tensor in made.state_dict().items():
        expected = (theirs[0][name] + theirs[1][name]) / 2 if tensor.is_floating_point() else theirs[0][name]
        torch.testing.assert_close(tensor, expected, atol=2e-3, rtol=2e-3)  # saved in fp16
    differ = [k for k, v in theirs[0].items() if not torch.allclose(v, theirs[1][k], atol=0.05)]
    assert differ and all(not torch.allclose(made.state_dict()[k], t[k], atol=0.01)
                          for k in differ for t in theirs)  # the new heads: seeds 0 and 1 differ
    assert made.config.version == "9.9.9" and made.config.heads == a.config.heads
    assert not made.calibration.is_calibrated("escalation.v1")  # the ingredients' is dropped
    card = (tmp_path / "soup" / "README.md").read_text()
    assert "## Training data\ntoy data" in card and "uniform average of the weights of 2" in card
    assert str(dirs[0]) in card and a.weights_sha256 in card


def test_a_soup_of_heads_trained_alone_keeps_every_other_heads_calibration(tmp_path, tiny_encoder_dir):
    a, b = (make_tiny_model(tiny_encoder_dir, seed=s) for s in (0, 1))
    fit_calibration(a, toy_examples(60))
    dirs = [a.save_pretrained(tmp_path / "a"), b.save_pretrained(tmp_path / "b")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        soup(dirs, tmp_path / "soup", toy_examples(60), version="9.9.9", heads=["resolution"])
        made, a = (QualityModel.from_pretrained(d) for d in (tmp_path / "soup", dirs[0]))
        with pytest.raises(ValueError, match="unknown target"):  # a typo would keep every calibration
            soup(dirs, tmp_path / "typo", [], version="9.9.9", heads=["resolutoin"])
    assert made.calibration.is_calibrated("escalation.v1")
    assert made.calibration["escalation.v1"].to_dict() == a.calibration["escalation.v1"].to_dict()
    assert not made.calibration.is_calibrated("resolution.v1")  # too few items to fit it again


def test_a_soup_onto_another_model_replaces_only_the_named_heads(tmp_path, tiny_encoder_dir):
    a, b, later = (make_tiny_model(tiny_encoder_dir, seed=s) for s in (0, 1, 2))
    fit_calibration(later, toy_examples(60))
    dirs = [a.save_pretrained(tmp_path / "a"), b.save_pretrained(tmp_path / "b")]
    onto = later.save_pretrained(tmp_path / "later")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        soup(dirs, tmp_path / "soup", toy_examples(60), version="9.9.9", heads=["resolution"],
             onto=onto)
        with pytest.raises(ValueError, match="name them"):
            soup(dirs, tmp_path / "x", [], version="9.9.9", onto=onto)
        other = make_tiny_model(tiny_encoder_dir, seed=3, context_layers=1)
        with pytest.raises(ValueError, match=r"not of the design .*context_layers"):
            soup(dirs, tmp_path / "x", [], "1", heads=["resolution"],
                 onto=other.save_pretrained(tmp_path / "other"))
        made, a, b, later = (QualityModel.from_pretrained(d)
                             for d in (tmp_path / "soup", *dirs, onto))
    theirs, base = (a.state_dict(), b.state_dict()), later.state_dict()
    moved = [k for k in base if ".resolution_v1." in k]
    assert moved and len(moved) < len(base)
    for name, tensor in made.state_dict().items():
        expected = (theirs[0][name] + theirs[1][name]) / 2 if name in moved else base[name]
        torch.testing.assert_close(tensor, expected, atol=2e-3, rtol=2e-3)  # saved in fp16
    assert all(not torch.allclose(base[k], made.state_dict()[k], atol=0.01) for k in moved
               if base[k].is_floating_point() and base[k].numel() > 1)
    assert made.calibration["escalation.v1"].to_dict() == later.calibration["escalation.v1"].to_dict()
    assert "in `" + str(onto) + "`" in (tmp_path / "soup" / "README.md").read_text()
