"""benchmarks/human_requests.py on a tiny model and a small USS-shaped corpus read by the real
reader: the alarms count every ordinary customer turn of the dev split and no turn that names a
person to talk to, and each request pair reads the signal at its turn."""

import numpy as np
import pytest

from conftest import load_benchmark
from qualaudit import Auditor
from qualaudit.training.datasets import by_split, load_sources

human_requests = load_benchmark("human_requests")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "uss"
    folder.mkdir()
    for corpus in ("MWOZ", "ReDial"):
        blocks = [f"USER\tI need a table for {i}.\tinform\t3,4,3\n"
                  f"SYSTEM\tWhich day?\trequest\t\n"
                  f"USER\t{'Get me a manager.' if i % 3 == 0 else 'Friday.'}\tinform\t{1 + i % 5},2,3\n"
                  f"USER\tOVERALL\t\t{1 + i % 5},3,3"
                  for i in range(60)]
        (folder / f"{corpus}.txt").write_text("\n\n".join(blocks) + "\n")
    return load_sources(folder.parent, ["uss"])


def test_alarms_pairs_and_requests(tiny_model_dir, loaded):
    with pytest.warns(UserWarning):
        auditor = Auditor.from_pretrained(tiny_model_dir, device="cpu")
    results = human_requests.measure(auditor, loaded)
    dev = by_split(loaded["uss"], "dev")
    ordinary = sum(x.role == "customer" and "manager" not in x.text
                   for e in dev for x in e.transcript.scored_turns)
    assert 0 < ordinary < sum(x.role == "customer" for e in dev for x in e.transcript.scored_turns)
    assert results["alarms"]["uss"]["turns"] == ordinary
    assert results["alarms"]["stc3"] == {"turns": 0, "above_half": pytest.approx(np.nan, nan_ok=True)}
    assert 0 <= results["alarms"]["uss"]["above_half"] <= 1
    assert set(results["pairs"]) == {p.name for p in human_requests.quality.PAIRS if p.target == "escalation"}
    assert results["pairs"]["escalation/dbdc3/report"]["n"] == 0
    requests = results["requests"]
    assert requests["pairs"] == len(requests["signal"]) > 0
    pair = next(p for p in human_requests.behaviour.load_pairs() if p["behaviour"] == "asks_for_human")
    (a,) = auditor.score([pair["a"]])
    assert requests["signal"][0][0] == pytest.approx(a.turns[pair["turn"]].escalation_signals["asks_for_human"])
    assert "requests flagged" in human_requests.to_markdown({"tiny": results})


def test_short_turns_cut_one_long_customer_turn_per_dialogue(tiny_model_dir, loaded):
    with pytest.warns(UserWarning):
        auditor = Auditor.from_pretrained(tiny_model_dir, device="cpu")
    dev = by_split(loaded["uss"], "dev")
    # every dialogue opens with a customer turn of six words that is not its last
    assert human_requests.short_turns(auditor, dev)["dialogues"] == len(dev) > 0
    assert human_requests.short_turns(auditor, [])["dialogues"] == 0
    # one dialogue: its opening turn is the only one to cut, at full length and to 1-3 words
    turns = dev[0].transcript.scored_turns
    short = human_requests.short_turns(auditor, dev[:1])
    opening = turns[0].text.split()
    scores = auditor.score([{"id": str(n), "messages": [
        {"role": "user" if x.role == "customer" else "assistant",
         "content": " ".join(opening[:n]) if k == 0 else x.text} for k, x in enumerate(turns)]}
        for n in (len(opening), 1, 2, 3)])
    signal = [s.turns[0].escalation_signals["asks_for_human"] for s in scores]
    assert short["full_above_half"] == float(signal[0] > 0.5)
    assert short["cut_above_half"] == pytest.approx(np.mean([v > 0.5 for v in signal[1:]]))
    assert short["escalation_mean_abs_change"] == pytest.approx(
        np.mean([abs(s.escalation - scores[0].escalation) for s in scores[1:]]), abs=1e-6)
    at_cut = [s.turns[0].escalation_running for s in scores]
    assert short["escalation_at_cut_mean_abs_change"] == pytest.approx(
        np.mean([abs(v - at_cut[0]) for v in at_cut[1:]]), abs=1e-6)
    assert "cut to 1-3 words" in human_requests.to_markdown({"tiny": human_requests.measure(auditor, loaded)})
