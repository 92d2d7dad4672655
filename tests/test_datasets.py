"""Dataset readers: each public format in, the documented labels out (hand-made files)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from qualaudit.heads import ESCALATION_SIGNALS
from qualaudit.training.datasets import by_split, distribution, load_examples, load_sources
from qualaudit.training.datasets.examples import (
    ASKS_FOR_A_PERSON,
    NAMES_A_PERSON,
    empty_turn_labels,
    no_request_for_a_person,
    transcript,
)


def _stc3(root):
    folder = root / "stc3_dch"
    folder.mkdir()
    notes = [{"quality": {"A": a, "S": s, "E": 0}, "nugget": n} for a, s, n in [
        (2, 1, ["CNUG0", "HNUG*", "CNUG*"]), (1, 1, ["CNUG0", "HNUG*", "CNUG"]),
        (-1, -2, ["CNUG0", "HNUG", "CNUG"]), (-2, -1, ["CNUG0", "HNaN", "CNUG0"])]]
    dialogue = {"id": "d1", "turns": [
        {"sender": "customer", "utterances": ["My bill is wrong.", "Please fix it."]},
        {"sender": "helpdesk", "utterances": ["I have corrected it."]},
        {"sender": "customer", "utterances": ["Thanks."]}], "annotations": notes}
    (folder / "train_data_en.json").write_text(json.dumps([dialogue]))


def _uss(root):
    folder = root / "uss"
    folder.mkdir()
    (folder / "MWOZ.txt").write_text(
        "USER\tI need a taxi.\tinform\t3,3,3\n"
        "SYSTEM\tWhere to?\trequest\t\n"
        "USER\tYou already asked that!\tinform\t1,2,3\n"
        "SYSTEM\tSorry.\tapology\t\n"
        "USER\tJust get me a manager.\tinform\t1,1,2\n"
        "USER\tOVERALL\t\t2,2,4\n")


def _epitome(root):
    folder = root / "epitome"
    folder.mkdir()
    for name, level in (("emotional-reactions-reddit.csv", 2), ("interpretations-reddit.csv", 0),
                        ("explorations-reddit.csv", 1)):
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sp_id", "rp_id", "seeker_post", "response_post", "level", "rationales"])
            writer.writerow(["s1", "r1", "I feel alone.", "That sounds so hard. What happened?", level, ""])


def _bitext(root):
    folder = root / "bitext"
    folder.mkdir()
    with (folder / "Bitext_Sample_Customer_Support_Training_Dataset_1.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["instruction", "intent", "entity_value", "response"])
        for text, intent in [("i want to talk to a human", "contact_human_agent"),
                             ("I want to talk to a HUMAN!", "contact_human_agent"),
                             ("file a complaint", "complaint"),
                             ("how do i call customer service", "contact_customer_service"),
                             ("where is order 123", "track_order")]:
            writer.writerow([text, intent, "123" if "123" in text else "", "Sure. Let me help."])


def _dbdc3(root):
    folder = root / "dbdc3" / "dev" / "BOT"
    folder.mkdir(parents=True)
    votes = [{"breakdown": b} for b in "XXXO"]
    turns = [{"turn-index": 0, "speaker": "S", "utterance": "Hello!", "annotations": []},
             {"turn-index": 1, "speaker": "U", "utterance": "What is the time?", "annotations": []},
             {"turn-index": 2, "speaker": "S", "utterance": "I like cats.", "annotations": votes},
             {"turn-index": 3, "speaker": "U", "utterance": "Are you a human?", "annotations": []}]
    (folder / "B1.log.json").write_text(json.dumps({"dialogue-id": "B1", "turns": turns}))


@pytest.fixture
def data_dir(tmp_path):
    for make in (_stc3, _uss, _epitome, _bitext, _dbdc3):
        make(tmp_path)
    return tmp_path


def test_every_source_is_read_with_its_labels(data_dir):
    sources = load_sources(data_dir)
    assert sorted(sources) == ["bitext", "dbdc3", "epitome", "stc3", "uss"]

    (stc3,) = sources["stc3"]
    assert [t.role for t in stc3.transcript.scored_turns] == ["customer", "agent", "customer"]
    assert stc3.transcript.scored_turns[0].text == "My bill is wrong. Please fix it."
    np.testing.assert_allclose(stc3.labels["resolution"], distribution([2, 1, -1, -2]))
    np.testing.assert_allclose(stc3.turn_labels["solution_given"][:, ], [np.nan, 0.5, np.nan])
    np.testing.assert_allclose(stc3.turn_labels["solution_confirmed"], [0.0, np.nan, 0.25])
    asks = ESCALATION_SIGNALS.index("asks_for_human")  # no request for a person: negatives
    np.testing.assert_allclose(stc3.turn_labels["escalation_signal"][:, asks], [0.0, np.nan, 0.0])
    assert np.isnan(np.delete(stc3.turn_labels["escalation_signal"], asks, axis=1)).all()
    assert float(stc3.labels["escalation"]) == 0.5          # A <= -1 and S <= -1: 2 of 4
    assert float(stc3.labels["repeat_inquiry"]) == 0.75     # no CNUG*, last turn still the problem
    assert stc3.info["A_mean"] == 0.0

    (uss,) = sources["uss"]
    signals = uss.turn_labels["escalation_signal"]
    assert np.isnan(signals[1]).all()                       # the system turn
    assert signals[0, 0] == 0 and signals[2, 0] == pytest.approx(2 / 3)
    asks = signals[:, ESCALATION_SIGNALS.index("asks_for_human")]
    assert asks[0] == 0 and asks[2] == 0 and np.isnan(asks[4])  # "get me a manager": unlabelled
    np.testing.assert_allclose(uss.labels["satisfaction"], [0, 2 / 3, 0, 1 / 3, 0], atol=1e-6)
    assert float(uss.labels["repeat_inquiry"]) == pytest.approx(1.0)  # the last turn: 3 of 3 below 3

    (epitome,) = sources["epitome"]
    levels = epitome.turn_labels["empathy"]
    assert np.isnan(levels[0]).all()
    np.testing.assert_array_equal(levels[1], np.eye(3)[[2, 0, 1]])

    bitext = {e.transcript.turns[0].text: e for e in sources["bitext"]}
    human = bitext["i want to talk to a human"]
    assert human.turn_labels["escalation_signal"][0, 2] == 1 and float(human.labels["escalation"]) == 1
    assert np.isnan(human.turn_labels["escalation_signal"][0, 0])  # dissatisfied: not labelled
    assert "escalation" not in bitext["how do i call customer service"].labels
    assert float(bitext["where is order 123"].labels["escalation"]) == 0
    # paraphrases of one intent share a split group
    assert human.group == bitext["I want to talk to a HUMAN!"].group

    (dbdc3,) = sources["dbdc3"]
    np.testing.assert_allclose(dbdc3.turn_labels["breakdown"], [np.nan, np.nan, 0.75, np.nan])
    asks = dbdc3.turn_labels["escalation_signal"][:, ESCALATION_SIGNALS.index("asks_for_human")]
    np.testing.assert_array_equal(asks, [np.nan, 0.0, np.nan, np.nan])  # "a human?": unlabelled
    assert float(dbdc3.labels["escalation"]) == 1.0 and dbdc3.weight < 1


def test_named_sources_must_exist(data_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        load_sources(data_dir, ["nope"])
    with pytest.raises(FileNotFoundError, match="no uss data"):
        load_sources(tmp_path / "stc3_dch", ["uss"])


def test_by_split_partitions_the_examples(data_dir):
    examples = load_examples(data_dir)
    parts = [by_split(examples, s) for s in ("train", "dev", "report")]
    assert sum(len(p) for p in parts) == len(examples) == len(by_split(examples, "all"))
    with pytest.raises(ValueError, match="split must be"):
        by_split(examples, "test")


def test_complaint_posts_to_customer_service_are_not_requests_for_a_person():
    """STC-3's posts are addressed to "@Company Customer Service": that phrase does not keep
    a turn unlabelled there, a manager or a human still does (elsewhere both do)."""
    t = transcript("x", [("customer", "@Telecom Customer Service my bill is wrong"), ("agent", "Sorry."),
                         ("customer", "Let me talk to your manager."), ("agent", "One moment."),
                         ("customer", "I called customer service twice")])
    asks = ESCALATION_SIGNALS.index("asks_for_human")
    def labelled(person):
        return no_request_for_a_person(t, empty_turn_labels(t, (len(ESCALATION_SIGNALS),)), person)[:, asks]
    np.testing.assert_array_equal(labelled(NAMES_A_PERSON), [0, np.nan, np.nan, np.nan, 0])
    np.testing.assert_array_equal(labelled(ASKS_FOR_A_PERSON), [np.nan] * 5)
