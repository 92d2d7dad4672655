import copy
import json
import math
import random
from importlib.resources import files

import jsonschema
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import conversation
from qualaudit.calibration import TemperatureScaler
from qualaudit.schema import TranscriptScore, to_dataframe
from qualaudit.scorer import Auditor

ROW_SCHEMA = json.loads((files("qualaudit") / "row.schema.json").read_text())


@pytest.fixture(scope="module")
def auditor(tiny_model):
    return Auditor(tiny_model, device="cpu")


def logit(p):
    return math.log(p) - math.log1p(-p)


def test_rows_follow_the_contract(auditor, toy_transcripts):
    results = auditor.score(toy_transcripts)
    assert [r.id for r in results] == ["t1", "t2", "t3", "t4"]
    for r in results:
        row = r.to_dict()
        jsonschema.validate(row, ROW_SCHEMA)
        for name in ("resolution", "satisfaction"):
            dist = row[f"{name}_dist"]
            assert sum(dist) == pytest.approx(1.0)
            assert row[name] == pytest.approx(dist[3] + dist[4])  # P(level > 0)
        assert (row["escalation_turn"] is None) == (row["escalation"] < 0.5)
    assert results[1].agent_type == "ai" and results[3].metadata == {"channel": "chat", "team": "blue"}


def test_one_sided_transcripts_give_null_for_the_missing_side(auditor):
    customer_only, agent_only = auditor.score([
        conversation("c", ("user", "hello?"), ("user", "anyone there?")),
        conversation("a", ("assistant", "hello how can i help")),
    ])
    assert customer_only.empathy is None and "empathy" not in customer_only.evidence
    assert all(t.solution_given is None and t.empathy is None for t in customer_only.turns)
    assert all(t.escalation_signal is not None for t in customer_only.turns)
    assert agent_only.empathy is not None
    assert all(t.escalation_signal is None and t.solution_confirmed is None for t in agent_only.turns)
    for r in (customer_only, agent_only):
        assert all(0 <= v <= 1 for v in (r.resolution, r.satisfaction, r.repeat_inquiry, r.escalation))


def test_scores_do_not_depend_on_batch_composition(tiny_model, toy_transcripts):
    rng = random.Random(0)
    words = "my order card charged twice refund please help sorry still not working".split()
    many = toy_transcripts + [
        conversation(f"r{i}", *[("user" if k % 2 == 0 else "assistant",
                                 " ".join(rng.choices(words, k=rng.randint(1, 30))))
                                for k in range(rng.randint(1, 12))])
        for i in range(20)]
    together = Auditor(tiny_model, max_batch_tokens=100_000, chunk_turns=10_000).score(many)
    tiny_batches = Auditor(tiny_model, max_batch_tokens=64, chunk_turns=7).score(many)
    assert [r.id for r in together] == [t["id"] for t in many]
    assert [r.id for r in tiny_batches] == [t["id"] for t in many]
    alone = Auditor(tiny_model)
    for t, a, b in zip(many, together, tiny_batches):
        c = alone.score(t)
        for field in ("resolution", "satisfaction", "repeat_inquiry", "escalation"):
            assert abs(getattr(a, field) - getattr(b, field)) <= 1e-4
            assert abs(getattr(a, field) - getattr(c, field)) <= 1e-4
        assert np.allclose(a.resolution_dist, c.resolution_dist, atol=1e-4)
        assert a.escalation_turn == c.escalation_turn or abs(a.escalation - 0.5) < 1e-4


def test_hundreds_of_turns(auditor):
    turns = [("user" if k % 2 == 0 else "assistant", f"still not working {k}") for k in range(400)]
    result = auditor.score(conversation("long", *turns))
    assert result.n_turns == 400 and len(result.turns) == 400
    assert all(0 <= e.index < 400 for ev in result.evidence.values() for e in ev)


def test_agent_type_is_never_a_model_input(auditor, toy_transcripts):
    as_ai = auditor.score({**toy_transcripts[0], "agent_type": "ai"})
    as_human = auditor.score({**toy_transcripts[0], "agent_type": "human"})
    assert as_ai.agent_type == "ai" and as_human.agent_type == "human"
    assert as_ai.to_dict()["turns"] == as_human.to_dict()["turns"]
    assert (as_ai.resolution, as_ai.escalation) == (as_human.resolution, as_human.escalation)


def test_where_the_confirmation_stands_matters(auditor):
    problem = [("user", "my card was charged twice"), ("assistant", "sorry, refund sent"),
               ("user", "when"), ("assistant", "in a few minutes")]
    confirmation = ("user", "thanks it works now")
    at_end = auditor.score(conversation("end", *problem, confirmation))
    at_start = auditor.score(conversation("start", confirmation, *problem))
    assert at_end.resolution_dist != pytest.approx(at_start.resolution_dist, abs=1e-6)
    assert at_end.repeat_inquiry != pytest.approx(at_start.repeat_inquiry, abs=1e-6)


def score_without(auditor, transcript, position, head="resolution_v1"):
    """Score with one turn's pooling weight forced to zero: an independent path to 'left out'."""
    hook = auditor.model.conversation_heads.score[head].register_forward_hook(
        lambda module, args, out: out.index_fill(1, torch.tensor([position]), -1e4))
    try:
        return auditor.score(transcript)
    finally:
        hook.remove()


def test_evidence_is_the_change_when_a_turn_is_left_out(auditor):
    transcript = conversation("e", ("user", "password reset link not working"),
                              ("assistant", "i sent the link again"), ("user", "still not working"),
                              ("assistant", "sorry about that, reset done"), ("user", "thanks great"))
    full = auditor.score(transcript)
    top = full.evidence["resolution"][0]
    deltas = {}
    for position in range(5):
        without = score_without(auditor, transcript, position)
        deltas[position] = logit(full.resolution) - logit(without.resolution)
    assert deltas[top.index] == pytest.approx(top.contribution, abs=1e-4)
    others = [abs(d) for p, d in deltas.items() if p != top.index]
    assert abs(deltas[top.index]) >= max(others)  # more than any other (so a random) turn


def forced_escalation(tiny_model, bias):
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.conversation_heads.out["escalation_v1"][-1].bias.fill_(bias)
    return Auditor(model)


def test_escalation_turn_is_the_first_turn_the_running_estimate_reaches_half(tiny_model, toy_transcripts):
    high = forced_escalation(tiny_model, 3.0).score(toy_transcripts)
    low = forced_escalation(tiny_model, -30.0).score(toy_transcripts)
    for r in high:
        assert r.escalation >= 0.5 and r.escalation_turn is not None
        running = [(t.index, t.escalation_running) for t in r.turns]
        first = next(i for i, p in running if p >= 0.5)
        assert r.escalation_turn == first
        assert running[-1][1] == pytest.approx(r.escalation)
    assert all(r.escalation < 0.5 and r.escalation_turn is None for r in low)


def test_calibration_is_applied(tiny_model, toy_transcripts):
    plain = Auditor(tiny_model).score(toy_transcripts[0])
    model = copy.deepcopy(tiny_model)
    model.calibration["resolution.v1"] = TemperatureScaler.from_dict(
        {"method": "temperature", "binary": False, "n_classes": 5, "temperature": 2.0})
    calibrated = Auditor(model).score(toy_transcripts[0])
    expected = np.sqrt(plain.resolution_dist)
    assert calibrated.resolution_dist == pytest.approx(list(expected / expected.sum()), abs=1e-6)
    assert calibrated.satisfaction == pytest.approx(plain.satisfaction)


def test_system_and_empty_turns_are_kept_out_of_scoring(auditor):
    result = auditor.score({"id": "s", "messages": [
        {"role": "system", "content": "you are a helpful bot"},
        {"role": "user", "content": "my order"}, {"role": "assistant", "content": "   "},
        {"role": "assistant", "content": "sorry about that"}]})
    assert result.n_turns == 4
    assert [t.index for t in result.turns] == [1, 3]


def test_truncation_is_recorded(auditor):
    result = auditor.score(conversation("long-turn", ("user", "hi"), ("assistant", "sorry " * 200)))
    assert result.truncated == {"turn_tokens": [1]}
    assert auditor.score(conversation("short", ("user", "hi"))).truncated is None


def test_inputs_one_or_many(auditor, toy_transcripts):
    assert isinstance(auditor.score(toy_transcripts[0]), TranscriptScore)
    rows = [{"conversation_id": t["id"], "role": m["role"], "text": m["content"]}
            for t in toy_transcripts for m in t["messages"]]
    from_frame = auditor.score(pd.DataFrame(rows))
    assert [r.id for r in from_frame] == ["t1", "t2", "t3", "t4"]
    from_list = auditor.score(toy_transcripts)
    assert [r.resolution for r in from_frame] == pytest.approx([r.resolution for r in from_list])
    lazy = auditor.score_iter(iter(toy_transcripts))
    assert next(lazy).id == "t1"


def test_dataset_input(auditor, toy_transcripts):
    datasets = pytest.importorskip("datasets")
    rows = [{"conversation_id": t["id"], "role": m["role"], "text": m["content"]}
            for t in toy_transcripts for m in t["messages"]]
    results = auditor.score(datasets.Dataset.from_list(rows))
    assert [r.id for r in results] == ["t1", "t2", "t3", "t4"]


def test_results_to_dataframe(auditor, toy_transcripts):
    frame = to_dataframe(auditor.score(toy_transcripts))
    assert list(frame["id"]) == ["t1", "t2", "t3", "t4"]
    assert "turns" not in frame.columns and frame["resolution"].between(0, 1).all()


def test_bf16_stays_close_to_fp32(tiny_model, toy_transcripts):
    fp32 = Auditor(tiny_model).score(toy_transcripts)
    bf16 = Auditor(tiny_model, precision="bf16").score(toy_transcripts)
    for a, b in zip(fp32, bf16):
        assert abs(a.resolution - b.resolution) < 0.05


def test_stats_count_what_was_read(tiny_model, toy_transcripts):
    auditor = Auditor(tiny_model)
    auditor.score(toy_transcripts)
    assert auditor.stats.transcripts == 4 and auditor.stats.turns == 12
    assert auditor.stats.tokens > 12


def test_bad_settings_are_refused(tiny_model):
    with pytest.raises(ValueError, match="precision"):
        Auditor(tiny_model, precision="fp8")
    with pytest.raises(ValueError):
        Auditor(tiny_model, max_batch_tokens=0)


def test_a_transcript_object_without_scored_turns_is_refused(auditor):
    from qualaudit.errors import InputError
    from qualaudit.schema import Transcript, Turn

    empty = Transcript("sys-only", (Turn("system", "be nice"),), n_input_turns=1)
    with pytest.raises(InputError, match="no customer or agent turn"):
        auditor.score([empty])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_cuda_without_cuda_is_a_clear_error(tiny_model):
    from qualaudit.errors import QualauditError

    with pytest.raises(QualauditError, match="CUDA is not available"):
        Auditor(tiny_model, device="cuda")
