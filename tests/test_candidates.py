"""benchmarks/candidates.py: the selection metric early stopping calls, and a candidate
trained, souped, evaluated, compared and shipped end to end on the tiny synthetic data dir."""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest
import torch

from conftest import load_benchmark
from qualaudit.model import QualityModel
from test_quality_benchmark import write_tiny_data

candidates = load_benchmark("candidates")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_data(tmp_path_factory.mktemp("candidate-data"), seed=1,
                           per_split={"train": 8, "dev": 6, "report": 6}, uss_files=("MWOZ", "ReDial"))


def test_selection_metric_is_the_protocols_selection_score(data_dir, tiny_model_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = QualityModel.from_pretrained(tiny_model_dir)
        in_memory = candidates.selection_metric(str(data_dir), precision="fp32")(model)
        saved = candidates.quality.selection_score(str(tiny_model_dir), str(data_dir), n_resamples=10)
    assert np.isfinite(in_memory) and in_memory == pytest.approx(saved, abs=1e-9)


def test_a_candidate_is_trained_evaluated_compared_and_shipped(data_dir, tiny_model_dir, tmp_path,
                                                              capsys):
    out, previous, bundled = tmp_path / "b1", tmp_path / "previous.json", tmp_path / "bundled"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        QualityModel.from_pretrained(tiny_model_dir).save_pretrained(bundled, card_sections={
            "Recipe": "the old recipe", "Metrics (report split)": "old figures"})
        candidates.main(["train", "-o", str(out), "--init", str(bundled), "--context-layers", "1",
                         "--max-train-tokens", "3000", "--threads", "1", "--data-dir", str(data_dir),
                         "--quiet"])
        candidates.main(["evaluate", str(bundled), "-o", str(previous), "--data-dir", str(data_dir)])
    record = json.loads((out / "results.json").read_text())
    assert record["design"] == "reading=turns, context_layers=1" and record["train_tokens"] >= 3000
    state = torch.load(out / "checkpoint.pt", weights_only=False)["state"]
    assert record["train_s"] > 0 and record["train_s"] == pytest.approx(state["seconds"])  # every session
    assert all("selection" in d for d in record["dev"])  # early stopping read the selection pairs
    assert set(record["behaviours"]["behaviours"]) == set(candidates.transfer_behaviours.BEHAVIOURS)
    assert np.isfinite(record["selection_score"]) and np.isfinite(record["report_score"])

    soup = tmp_path / "soup"  # a soup of one model twice is that model, evaluated alike
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        candidates.main(["soup", str(out), str(out), "-o", str(soup), "--threads", "1",
                         "--data-dir", str(data_dir)])
        made, theirs = (QualityModel.from_pretrained(d).state_dict() for d in (soup, out))
    assert made.keys() == theirs.keys() and all(torch.equal(v, theirs[k]) for k, v in made.items())
    souped = json.loads((soup / "results.json").read_text())
    assert souped["ingredients"] == [str(out)] * 2
    assert souped["selection_score"] == pytest.approx(record["selection_score"], abs=1e-9)
    unjudged = tmp_path / "unjudged"  # made to be calibrated again first: saved, not evaluated
    candidates.main(["soup", str(out), str(out), "-o", str(unjudged), "--threads", "1",
                     "--data-dir", str(data_dir), "--no-evaluate"])
    assert "saved " in capsys.readouterr().out
    made = json.loads((unjudged / "results.json").read_text())
    assert made["ingredients"] == [str(out)] * 2 and "protocol" not in made and "report_score" not in made
    assert QualityModel.from_pretrained(unjudged).weights_sha256 == QualityModel.from_pretrained(soup).weights_sha256

    candidates.main(["compare", str(out), str(out)])
    assert "selection score" in capsys.readouterr().out

    limits = tmp_path / "limits.md"
    limits.write_text("English only.")
    ship = ["ship", str(out), "--to", str(bundled), "--previous", str(previous),
            "--section", f"Limits={limits}"]
    assert set(record["guarantees"]) == set(candidates.behaviour.BEHAVIOURS)
    record["guarantees"]["loop"]["pass_rate"] = 0.5
    (out / "results.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="guarantee on .*loop"):
        candidates.main(ship)  # CI would fail on it: refused
    for r in record["guarantees"].values():
        r["pass_rate"] = 1.0
    record["guarantees"]["closing_thanks"]["pass_rate"] = 0.0  # measured, not guaranteed
    (out / "results.json").write_text(json.dumps(record))
    with (out / "README.md").open("a") as f:  # what `qualaudit calibrate` appends, twice
        f.write("\n## Recalibrated\nfirst refit\n\n## Recalibrated\nsecond refit\n")
    candidates.main(ship)
    card = (bundled / "README.md").read_text()
    assert "## Recalibrated\nfirst refit\n\nsecond refit\n" in card  # the refits are kept
    assert card.index("## Transfer") < card.index("## Architecture") < card.index("## Limits")
    assert "## History" in card and "#### Metrics (report split)\nold figures" in card
    assert "(selection " in card  # the recipe line says the weights were chosen on selection
    assert "Behaviour guarantees" in card and "| closing_thanks (measured) |" in card
    shipped = QualityModel.from_pretrained(bundled)
    assert shipped.config.context_layers == 1 and shipped.config.version == "0.3.0"
    assert shipped.weights_sha256 == QualityModel.from_pretrained(out).weights_sha256


def test_a_turn_head_alone_trains_on_its_dev_loss_and_leaves_every_other_weight(
        data_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "signal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        candidates.main(["train", "-o", str(out), "--init", str(tiny_model_dir),
                         "--heads", "escalation_signal", "--freeze-encoder", "--max-train-tokens", "8000",
                         "--uss-share", "1.0", "--threads", "1", "--data-dir", str(data_dir), "--quiet"])
        before, after = (QualityModel.from_pretrained(d).state_dict() for d in (tiny_model_dir, out))
    # saved in fp16: a weight that did not train is its fp16 rounding, exactly
    changed = {k for k, v in before.items() if not torch.equal(v.half().float(), after[k].float())}
    assert changed and all("escalation_signal" in k for k in changed)
    record = json.loads((out / "results.json").read_text())
    assert record["dev"] and not any("selection" in d for d in record["dev"])  # chosen on dev loss
    assert np.isfinite(record["selection_score"])  # still evaluated on the whole protocol
    assert "'uss_share': 1.0" in (out / "README.md").read_text()  # the recipe as run
    assert candidates.unscored_by_selection(["escalation_signal", "breakdown"])
    assert candidates.unscored_by_selection(["satisfaction"])
    assert candidates.unscored_by_selection(["satisfaction", "breakdown"])
    assert not candidates.unscored_by_selection(["escalation_signal", "escalation"])
    assert not candidates.unscored_by_selection(["satisfaction", "resolution"])
    assert not candidates.unscored_by_selection(["empathy"])  # the row's empathy is its turns'
    assert not candidates.unscored_by_selection(None)


def _judged(report=0.757, diffs=(0.01, 0.02), suite=None, drop=0.04, rise=0.2, twins=0.05,
            guarantees=None, checks=18, ece=0.044):
    """A candidate's evaluation and fit results with only what the ship rule reads."""
    suite = suite or dict.fromkeys(candidates.transfer_behaviours.BEHAVIOURS, 15)
    guarantees = guarantees or dict.fromkeys(candidates.behaviour.BEHAVIOURS, 13)
    twins = twins if isinstance(twins, dict) else dict.fromkeys(
        ("resolution", "satisfaction", "empathy", "repeat_inquiry", "escalation"), twins)
    pairs = {f"{t}/{i}": {"target": t, "diff_single_task": d, "diff_single_task_ci": [d - 0.1, d + 0.05],
                          "model": 0.70, "model_ci": [0.62, 0.78]}
             for t in candidates.quality.MAIN_TARGETS for i, d in enumerate(diffs)}
    behaviours = {k: {"passed": v, "pairs": 20} for k, v in suite.items()}
    behaviours["style_parity"]["targets"] = {t: {"mean_abs_delta": v} for t, v in twins.items()}
    record = {"report_score": report, "protocol": {"pairs": pairs},
              "behaviours": {"behaviours": behaviours, "closing_thanks_drop": drop, "fix_confirmed_rise": rise},
              "guarantees": {k: {"passed": v, "pairs": 14, "pass_rate": v / 14} for k, v in guarantees.items()}}
    fit = {"checks": [{"status": "pass"}] * checks + [{"status": "fail"}] * (30 - checks),
           "metrics": {candidates.RESOLUTION_ECE: {"model": ece, "model_ci": [ece - 0.01, ece + 0.03]}}}
    return record, fit


MOVED = "moves something by more than noise"


def _missed(new, base):
    """The conditions missed other than round 134's, which a candidate with the bundled model's
    own figures always misses (its test is below)."""
    return [c.name for c in candidates.ship_conditions(new[0], base[0], new[1], base[1])
            if not c.met and c.name != MOVED]


def _moved(new, base):
    return next(c for c in candidates.ship_conditions(new[0], base[0], new[1], base[1]) if c.name == MOVED)


def test_a_candidate_ships_only_when_something_moves_beyond_noise():
    base = _judged()
    same = copy.deepcopy(base)
    assert not _moved(same, base).met and _moved(same, base).figures == "nothing"
    near = copy.deepcopy(base)
    near[0]["protocol"]["pairs"]["escalation/0"]["model"] = 0.78  # inside the interval: noise
    assert not _moved(near, base).met
    out = copy.deepcopy(base)
    out[0]["protocol"]["pairs"]["escalation/0"]["model"] = 0.781
    assert _moved(out, base).figures == "escalation/0 above the bundled model's interval"
    above = copy.deepcopy(base)
    above[0]["protocol"]["pairs"]["empathy/1"]["diff_single_task_ci"] = [0.001, 0.1]
    assert _moved(above, base).figures == "empathy/1: single-task interval newly above 0"
    assert not _moved(above, above).met  # already above 0 in the bundled model
    suite = dict.fromkeys(candidates.transfer_behaviours.BEHAVIOURS, 15)
    assert _moved(_judged(suite=suite | {"style_parity": 16}), base).figures == "suite +1"
    assert not _moved(_judged(suite=suite | {"style_parity": 16, "closing_thanks": 14}), base).met
    guarantees = dict.fromkeys(candidates.behaviour.BEHAVIOURS, 13) | {"loop": 14}
    assert _moved(_judged(guarantees=guarantees), base).figures == "guarantees +1"


def test_the_ship_rule_names_each_condition_a_candidate_misses(tmp_path, capsys):
    base = _judged()
    assert _missed(_judged(), base) == []  # the bundled model's own figures meet the rule
    assert _missed(_judged(report=0.7569), base) == ["report score at least the bundled model's"]
    assert _missed(_judged(diffs=(0.01, -0.01)), base) == [
        f"{t}: mean above its single-task reference" for t in candidates.quality.MAIN_TARGETS]
    dipped = _judged()
    dipped[0]["protocol"]["pairs"]["repeat_inquiry/1"]["diff_single_task_ci"] = [-0.07, -0.001]
    assert _missed(dipped, base) == ["no single-task interval wholly below 0 where the bundled model's is not"]
    assert _missed(dipped, dipped) == []  # an interval already below 0 in the bundled model is not held against it
    assert _missed(_judged(), dipped) == []
    uncached = _judged()
    next(iter(uncached[0]["protocol"]["pairs"].values()))["diff_single_task"] = None
    assert _missed(uncached, base) == ["resolution: mean above its single-task reference"]
    one_below = dict.fromkeys(candidates.transfer_behaviours.BEHAVIOURS, 15) | {"silent_ending": 14}
    assert _missed(_judged(suite=one_below | {"repeated_answer": 16}), base) == []
    assert _missed(_judged(suite=one_below), base) == ["suite pairs at least the bundled model's"]
    two_below = one_below | {"silent_ending": 13, "repeated_answer": 20}
    assert _missed(_judged(suite=two_below), base) == [
        "suite: no behaviour more than one pair below the bundled model's"]
    assert _missed(_judged(drop=-0.051), base) == ["closing drop at most 0.05, fix rise at least 0.05"]
    assert _missed(_judged(rise=0.049), base) == ["closing drop at most 0.05, fix rise at least 0.05"]
    twins = {"resolution": 0.04, "satisfaction": 0.04, "empathy": 0.06, "repeat_inquiry": 0.06,
             "escalation": 0.06}
    assert _missed(_judged(twins=twins), base) == ["twins no further apart on at least 3 of 5 targets"]
    assert _missed(_judged(twins=twins | {"escalation": 0.05}), base) == []
    assert _missed(_judged(checks=17, ece=0.051), base) == [
        "fit checks at least the bundled model's", "resolution's ECE on STC-3's report split at most 0.05"]
    twelve = dict.fromkeys(candidates.behaviour.BEHAVIOURS, 12)
    asks = twelve | {"asks_for_human": 11, "loop": 13}  # one below, as many in all: CI's bar alone
    assert _missed(_judged(guarantees=asks), _judged(guarantees=twelve)) == [
        "every guaranteed behaviour at 80% or more (CI)"]
    assert _missed(_judged(guarantees=twelve | {"closing_thanks": 10, "empathy": 13}), _judged(guarantees=twelve)) == [
        "guarantee pairs at least the bundled model's",
        "guarantees: no behaviour more than one pair below the bundled model's"]

    cut = _judged()
    cut[0]["protocol"]["closing"] = "protocol"
    with pytest.raises(ValueError, match="'protocol'.*'kept'"):  # a record before round 130 reads "kept"
        _missed(cut, base)
    assert _missed(cut, cut) == []
    elsewhere = _judged()
    elsewhere[0]["protocol"]["single_task"] = {"resolution": {"fingerprint": "a"}, "empathy": {"fingerprint": "b"}}
    moved = _judged()
    moved[0]["protocol"]["single_task"] = {"resolution": {"fingerprint": "c"}}
    with pytest.raises(ValueError, match="references of resolution scored other conversations"):
        _missed(moved, elsewhere)
    assert _missed(elsewhere, elsewhere) == [] and _missed(_judged(), elsewhere) == []
    with pytest.raises(ValueError, match="no evaluation .*--no-evaluate"):
        _missed(({"ingredients": []}, _judged()[1]), base)

    for name, (record, fit) in {"base": base, "cand": _judged(report=0.75)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(record))
        (tmp_path / name / "quality.json").write_text(json.dumps(fit))
    with pytest.raises(SystemExit):  # the bundled model judged against itself moves nothing
        candidates.main(["judge", str(tmp_path / "base"), "--base", str(tmp_path / "base")])
    out = capsys.readouterr().out
    assert out.count("MISS") == 1 and f"MISS  {MOVED}: nothing" in out
    with pytest.raises(SystemExit) as stopped:
        candidates.main(["judge", str(tmp_path / "cand"), "--base", str(tmp_path / "base")])
    assert stopped.value.code == 1
    assert "MISS  report score at least the bundled model's: 0.7500 against 0.7570" in capsys.readouterr().out
