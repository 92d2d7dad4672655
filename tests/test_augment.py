"""Augmentations: each kind is a valid example made only of real training turns (or the
project's written ones), with the labels its change keeps and none it makes unknowable
(hand-made synthetic dialogues)."""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pytest

from qualaudit.closing import is_pleasantry
from qualaudit.echo import BANDS, echoes
from qualaudit.heads import HEAD_SPECS
from qualaudit.training.datasets import Example, empty_turn_labels, transcript
from qualaudit.training.datasets.augment import (
    BOTTOM,
    HIGH,
    KINDS,
    OPT_IN,
    TWIN_SETS,
    Augmenter,
    _confirms,
    _last_word,
    _unthanked,
    style_twins,
    written_chats,
    written_turns,
)
from qualaudit.training.train import TrainingArgs

NAN = np.nan
SHAPES = {s.target: s.shape for s in HEAD_SPECS.values()}
RESPONSES = {
    "track_order": "I can help you track it. Open {{Order Details}} on our site. The status is shown there.",
    "recover_password": "Sorry you are locked out. Click Forgot Password. Follow the email we send.",
    "get_invoice": "Your invoice is in {{Account Section}}. Download it as a PDF.",
    "complaint": "I am sorry about this. I will file the complaint now.",
    "contact_human_agent": "I will connect you with an agent.",
    # one reply per ask, each worded otherwise: what "reworded_loop" draws its answers from
    "cancel_order": ["I can cancel it for you. Open {{Online Order Interaction}} and choose Cancel.",
                     "Sure, orders can be cancelled under My Orders. Pick the order and press Cancel.",
                     "Cancelling is quick. Go to your orders page and select Cancel Order.",
                     "No problem. In your account, find the order and click the Cancel button.",
                     "You can cancel from the order history. Choose the order, then Cancel.",
                     "Happy to help with that. The Cancel option is next to each open order."],
}
ASKS = {
    "track_order": ["where is my parcel", "track my order please", "has my package shipped",
                    "when does my order arrive"],
    "recover_password": ["i forgot my password", "cannot log in anymore"],
    "get_invoice": ["i need my invoice", "send me the bill for march"],
    "complaint": ["this is the third time your courier lost my parcel, I am furious"],
    "contact_human_agent": ["let me speak to a person"],
    "cancel_order": ["cancel my order", "i want to cancel the purchase", "how do i cancel an order",
                     "please cancel what i bought", "stop my order", "i no longer want my order"],
}


def responses(intent: str) -> list[str]:
    reply = RESPONSES[intent]
    return [reply] if isinstance(reply, str) else reply


def stc3(tid: str, turns: list[tuple[str, str]], resolution: int, given: list[float],
         confirmed: list[float]) -> Example:
    t = transcript(tid, turns)
    signals = empty_turn_labels(t, (3,))  # as the reader labels them: no customer turn asks for a person
    signals[[k for k, x in enumerate(t.scored_turns) if x.role == "customer"], 2] = 0.0
    return Example(t, "stc3", tid, turn_labels={
        "solution_given": np.array(given, np.float32),
        "solution_confirmed": np.array(confirmed, np.float32), "escalation_signal": signals},
        labels={"resolution": np.eye(5, dtype=np.float32)[resolution],
                "satisfaction": np.eye(5, dtype=np.float32)[resolution],
                "escalation": np.float32(resolution < 2), "repeat_inquiry": np.float32(resolution < 2)})


def uss(tid: str, turns: list[tuple[str, str]], dissatisfied: list[float]) -> Example:
    t = transcript(tid, turns)
    signals = empty_turn_labels(t, (3,))
    signals[[k for k, x in enumerate(t.scored_turns) if x.role == "customer"], 0] = dissatisfied
    return Example(t, "uss", tid, turn_labels={"escalation_signal": signals},
                   labels={"repeat_inquiry": np.float32(dissatisfied[-1])})


def bitext() -> list[Example]:
    out = []
    for intent, asks in ASKS.items():
        for i, ask in enumerate(asks):
            t = transcript(f"{intent}-{i}", [("customer", ask)])
            signals = empty_turn_labels(t, (3,))
            signals[0, 1] = float(intent == "complaint")
            signals[0, 2] = float(intent == "contact_human_agent")
            out.append(Example(t, "bitext", f"{intent}/{i}", turn_labels={"escalation_signal": signals},
                               labels={"escalation": np.float32(intent in ("complaint", "contact_human_agent"))},
                               info={"intent": intent, "response": responses(intent)[i % len(responses(intent))]}))
    return out


def dialogues() -> list[Example]:
    return [
        stc3("fixed", [("customer", "My router keeps dropping the connection."),
                       ("agent", "Sorry for the trouble. Please restart it and update the firmware."),
                       ("customer", "Thank you so much!"), ("agent", "Glad to help, have a nice day.")],
              4, [NAN, 0.9, NAN, NAN], [0.0, NAN, 1.0, NAN]),
        stc3("fixed2", [("customer", "The app crashes when I open photos."),
                        ("agent", "Sorry for the trouble. Which version do you have?"),
                        ("customer", "Version 2.1 on my phone."),
                        ("agent", "Please install version 2.3, it fixes the crash."),
                        ("customer", "It works now."),
                        ("customer", "OK, thanks. Bye!")],
              3, [NAN, 0.0, NAN, 0.8, NAN, NAN], [0.0, NAN, 0.0, NAN, 1.0, 0.0]),
        stc3("fixed3", [("customer", "How do I change my delivery address?"),
                        ("agent", "Open Settings, then Addresses, and edit the default one."),
                        ("customer", "Found it and changed it. Thanks a lot!")], 4, [NAN, 0.9, NAN], [0.0, NAN, 1.0]),
        stc3("open_thanks", [("customer", "My parcel never arrived."),
                             ("agent", "Sorry for the trouble. We cannot trace it yet."),
                             ("customer", "Okay, thank you.")], 0, [NAN, 0.0, NAN], [0.0, NAN, 0.0]),
        stc3("open", [("customer", "I was billed twice this month."),
                      ("agent", "Sorry for the trouble. Please send us your account number."),
                      ("customer", "I sent it yesterday and nobody replied.")],
             0, [NAN, 0.0, NAN], [0.0, NAN, 0.0]),
        uss("booking", [("customer", "I need a table for two tonight."),
                        ("agent", "What name should I book it under?"),
                        ("customer", "Sarah Jones."),
                        ("agent", "Booked for tomorrow at 7."),
                        ("customer", "That is wrong, I said tonight."),
                        ("agent", "Sorry, it is now booked for tonight."),
                        ("customer", "Great, thank you.")], [0.0, 0.0, 1.0, 0.0]),
        uss("offer", [("agent", "Would you like a taxi as well?"), ("customer", "No thank you."),
                      ("agent", "Enjoy your stay.")], [0.0]),
    ]


def real_sentences(examples: list[Example]) -> set[str]:
    """Every sentence of a real turn or a real reply, placeholders removed."""
    texts = [t.text for e in examples for t in e.transcript.turns]
    texts += [re.sub(r"\{\{[^}]*\}\}", "", e.info["response"]) for e in examples if "response" in e.info]
    return {s for text in texts for s in sentences(text)}


def sentences(text: str) -> list[str]:
    return [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


WRITTEN = ("requests", "mentions")


@pytest.fixture
def data() -> list[Example]:
    return dialogues() + bitext()


def made(data: list[Example], kind: str, n: int = 30, seed: int = 0) -> list[Example]:
    aug, rng = Augmenter(data), random.Random(seed)
    return [e for e in (getattr(aug, kind)(rng) for _ in range(n)) if e is not None]


@pytest.mark.parametrize("text", ["Thanks!", "OK, thank you.", "No that's all, thanks. Bye!", "ok",
                                  "Great, thank you for your help. Have a nice day.", "No, great, thanks!",
                                  "No thanks, that's all I needed.", "Thanks for the help, bye",
                                  "You've been a great help, thank you so much for your assistance and your patience.",
                                  "ok thanks anyway", "Many thanks, have a good weekend",
                                  "Thanks for the information, I really appreciate it.",
                                  "No thanks, that's all the information I needed.", "Thank you so much!",
                                  "Thank you too much", "great, thanks, you should be all set",
                                  "ok, thank you, i'm all done with you today"])
def test_closing_pleasantries_are_detected(text):
    assert is_pleasantry(text)


@pytest.mark.parametrize("text", ["thanks but it still doesn't work", "OK, can you check again?",
                                  "Thank you. I also need a taxi to the station.", "No.", "Yes.",
                                  "Thanks, order 12345 never arrived", "It is OK now, but unstable.",
                                  "Thanks for nothing", "thanks Dropbox sync", "thanks, it was no help",
                                  "No good, thanks.", "ok thanks i need help", "Thanks. Still needs help.",
                                  "It's OK now, thanks.", "thanks, that fixed it", "thanks, I'll try that",
                                  "Thanks, but I would like to speak to a person",
                                  "ok thanks, i need assistance", "ok thank you, i need information about this",
                                  "ok thanks, would you do this for me", "ok thanks, do it again",
                                  "ok thanks i think you should help me", "ok thank you, i am done with you",
                                  "ok thanks, this is too much"])
def test_problems_and_questions_are_not_pleasantries(text):
    assert not is_pleasantry(text)


@pytest.mark.parametrize("kind", KINDS + OPT_IN)
def test_each_kind_is_a_valid_example_of_real_or_written_turns(data, kind):
    examples = made(data, kind)
    assert examples, f"{kind} made nothing from data that has what it needs"
    known = real_sentences(data) | {s for name in WRITTEN for line in written_turns(name)
                                    for s in sentences(line)}
    known |= {s for _, chat in written_chats("train") for text in chat.values() for s in sentences(text)}
    for e in examples:
        assert e.source == f"augment:{kind}"
        n = len(e.transcript.scored_turns)
        for target, values in e.turn_labels.items():
            assert values.shape == (n, *SHAPES[target]), target
            assert np.all(np.isnan(values) | ((values >= 0) & (values <= 1)))
        for target, value in e.labels.items():
            value = np.asarray(value)
            assert np.all((value >= 0) & (value <= 1))
            if SHAPES[target] == (5,):
                assert value.sum() == pytest.approx(1.0)
        for turn in e.transcript.scored_turns:
            if kind == "short_turn" and not set(sentences(turn.text)) <= known:  # a cut real turn
                words = turn.text.split()
                assert any(x.text.split()[:len(words)] == words for d in data
                           for x in d.transcript.scored_turns), turn.text
                continue
            assert set(sentences(turn.text)) <= known, turn.text


def test_closing_removed_keeps_resolution_and_leaves_out_repeat_inquiry(data):
    bases = {e.transcript.id: e for e in data}
    resolved = set()
    for e in made(data, "closing_removed"):
        base = bases[e.transcript.id.split("+")[0]]
        resolved.add(bool(base.labels["resolution"][3:].sum() >= 0.5))
        kept = [t.text for t in e.transcript.scored_turns]
        assert kept == [t.text for t in base.transcript.scored_turns[:len(kept)]]
        assert not is_pleasantry(kept[-1])
        assert "repeat_inquiry" not in e.labels
        np.testing.assert_array_equal(e.labels["resolution"], base.labels["resolution"])
        np.testing.assert_array_equal(e.labels["satisfaction"], base.labels["satisfaction"])
        np.testing.assert_array_equal(e.turn_labels["solution_given"],
                                      base.turn_labels["solution_given"][:len(kept)])
    assert resolved == {True, False}  # from both classes, so the closing tells neither apart


def test_closing_added_appends_another_dialogues_closing_keeping_its_labels(data):
    bases = {e.transcript.id: e for e in data}
    used = set()
    closings = {("Thank you so much!", "Glad to help, have a nice day."), ("OK, thanks. Bye!",),
                ("Great, thank you.",), ("Okay, thank you.",)}  # the fixture's closings, with the agent's farewell
    added = set()
    for e in made(data, "closing_added"):
        turns = e.transcript.scored_turns
        base = bases[e.transcript.id.split("+")[0]]
        used.add(base.transcript.id)
        n = len(base.transcript.scored_turns)
        assert [t.text for t in turns[:n]] == [t.text for t in base.transcript.scored_turns]
        block = tuple(t.text for t in turns[n:])
        assert block in closings and turns[n].role == "customer"
        assert all(t.role == "agent" for t in turns[n + 1:])
        added.add(block)
        assert not is_pleasantry([t.text for t in turns[:n] if t.role == "customer"][-1])
        assert np.isnan(e.turn_labels["solution_confirmed"][n:]).all()
        np.testing.assert_array_equal(e.labels["resolution"], base.labels["resolution"])
        assert "satisfaction" not in e.labels
        assert float(e.labels["repeat_inquiry"]) == float(base.labels["repeat_inquiry"])
    assert {"open", "fixed3"} <= used  # resolved and unresolved dialogues both get one
    assert len(added) >= 2 and any(len(block) == 2 for block in added)


def test_silent_fix_ends_on_the_fix(data):
    for e in made(data, "silent_fix"):
        assert e.transcript.scored_turns[-1].role == "agent"
        assert e.turn_labels["solution_given"][-1] >= 0.5
        assert e.labels["resolution"][3:].sum() >= 0.5
        assert not {"satisfaction", "repeat_inquiry"} & set(e.labels)


def test_fix_unresolved_ends_on_an_unresolved_customers_last_word_after_the_fix(data):
    examples = made(data, "fix_unresolved")
    assert examples
    for e in examples:
        turns = e.transcript.scored_turns
        assert [x.role for x in turns[-2:]] == ["agent", "customer"]
        assert e.turn_labels["solution_given"][-2] >= 0.5  # the fix, as silent_fix ends on it
        # "open" is the one dialogue rated unresolved whose last customer turn answers the agent
        # and is no pleasantry ("open_thanks" ends on one)
        assert turns[-1].text == "I sent it yesterday and nobody replied."
        assert e.turn_labels["solution_confirmed"][-1] == 0.0
        assert set(e.labels) == {"resolution"} and e.labels["resolution"][0] == 1.0


def test_reply_pair_is_one_answer_confirmed_in_words_and_answered_openly(data):
    aug, rng = Augmenter(data), random.Random(0)
    confirmations = Counter()
    for _ in range(30):
        confirmed, opened = aug.reply_pair(rng)
        turns, other = confirmed.transcript.scored_turns, opened.transcript.scored_turns
        assert [t.text for t in turns[:-1]] == [t.text for t in other[:-1]]  # the same answer
        assert turns[-2].role == "agent"
        assert turns[-1].role == "customer" and confirmed.turn_labels["solution_confirmed"][-1] == 1.0
        confirmations[turns[-1].text] += 1
        assert other[-1].text == "I sent it yesterday and nobody replied."
        assert confirmed.labels["resolution"][3:].sum() == 1.0 and opened.labels["resolution"][0] == 1.0
    # "fixed"'s confirmation is a pleasantry ("Thank you so much!"): never drawn; "fixed3"'s
    # loses its sentence of thanks, which an open word rarely has
    assert set(confirmations) == {"It works now.", "Found it and changed it."}


def test_loop_pair_is_one_agent_turn_looped_and_answered_anew(data):
    aug, rng = Augmenter(data), random.Random(0)
    for _ in range(20):
        looped, answered = aug.loop_pair(rng)
        turns, other = looped.transcript.scored_turns, answered.transcript.scored_turns
        assert [t.text for t in turns[:-1]] == [t.text for t in other[:-1]]  # the same dialogue so far
        assert turns[-1].role == other[-1].role == "agent" and turns[-2].role == "customer"
        # "fixed2"'s second answer is the fixture's one new answer after a customer's new turn
        # ("fixed"'s follows a thank-you, "booking" is no helpdesk dialogue)
        assert other[-1].text == "Please install version 2.3, it fixes the crash."
        assert echoes([(t.role, t.text) for t in turns])[-1] >= BANDS[1]  # the loop repeats the answer before
        assert not looped.labels and not answered.labels  # ranked by the loss, never labelled


def test_request_pair_is_one_customer_turn_asking_for_a_person_or_not(data):
    asking = stc3("asking", [("customer", "I was billed twice this month."),
                             ("agent", "Please send us your account number."),
                             ("customer", "Let me talk to your manager.")], 0, [NAN, 0.0, NAN], [0.0, NAN, 0.0])
    asking.turn_labels["escalation_signal"][2, 2] = 1.0  # its source says this turn asks for a person
    aug, rng = Augmenter([*data, asking]), random.Random(0)
    requests, mentions = set(written_turns("requests")), set(written_turns("mentions"))
    bases = [[(t.role, t.text) for t in e.transcript.scored_turns] for e in data if e.source in ("stc3", "uss")]
    neutral = Counter()
    drawn = [pair for _ in range(80) if (pair := aug.request_pair(rng)) is not None]
    assert len(drawn) > 60  # None only when "asking" is drawn: its one slot asks already
    for request, other in drawn:
        a, b = ([(t.role, t.text) for t in e.transcript.scored_turns] for e in (request, other))
        k = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        assert a[:k] == b[:k] and a[k + 1:] == b[k + 1:] and a[k][0] == b[k][0] == "customer"
        assert a[k][1] in requests and b[k][1] != "Let me talk to your manager."
        assert a[k - 1][0] == "agent"
        # after it, the dialogue's next turn when the agent's, else nothing
        assert any(d[:k] == a[:k] and a[k + 1:] == [x for x in d[k + 1:k + 2] if x[0] == "agent"] for d in bases)
        neutral["mention" if b[k][1] in mentions else "real"] += 1
        if b[k][1] not in mentions:  # the dialogue's own turn: b is a real dialogue's start
            assert any(d[:k + 1] == b[:k + 1] for d in bases), b
        assert not (request.labels or request.turn_labels or other.labels or other.turn_labels)
    assert neutral["mention"] > 15 and neutral["real"] > 15, neutral


def test_names_and_thanks_are_explicit_negatives_for_escalation_signals(data):
    examples = made(data, "name_or_thanks", n=60)
    said = set()
    for e in examples:
        turns = e.transcript.scored_turns
        # the inserted turn is the one labelled as no complaint (the bases label no complaints)
        rows = [k for k, row in enumerate(e.turn_labels["escalation_signal"]) if row[1] == 0.0]
        assert len(rows) == 1
        k = rows[0]
        said.add(turns[k].text)
        assert turns[k].role == "customer" and turns[k - 1].role == "agent" and k < len(turns) - 1
        assert turns[k].text == "Sarah Jones." or "?" not in turns[k - 1].text
        assert np.isnan(e.turn_labels["escalation_signal"][k, 0])
        assert e.turn_labels["escalation_signal"][k, 1] == 0.0
        if turns[k].text == "Sarah Jones.":
            assert turns[k - 1].text == "What name should I book it under?"
    assert "Sarah Jones." in said and said & {"Thank you so much!", "Great, thank you."}
    assert not said & {"No thank you.", "OK, thanks. Bye!"}  # a refusal, a goodbye


def test_repeated_answer_labels_breakdown_from_the_second_repeat(data):
    examples = made(data, "repeated_answer")
    assert any(t.text.startswith("Sorry for the trouble. Sorry for the trouble.")
               for e in examples for t in e.transcript.turns), "a common opener is put in front"
    for e in examples:
        turns = e.transcript.scored_turns
        agents = [k for k, t in enumerate(turns) if t.role == "agent"]
        assert 3 <= len(agents) <= 5
        breakdown = e.turn_labels["breakdown"]
        assert np.isnan(breakdown[agents[0]]) and np.all(breakdown[agents[1:]] == 1.0)
        last = e.turn_labels["escalation_signal"][-1]
        assert turns[-1].role == "customer"
        assert last[0] == 1.0 or last[1] == 1.0
        assert float(e.labels["escalation"]) == 1.0 and float(e.labels["repeat_inquiry"]) == 1.0
        np.testing.assert_array_equal(e.labels["resolution"], BOTTOM)


def first_sentence(reply: str) -> str:
    """A Bitext reply's first sentence, its {{placeholders}} removed."""
    return sentences(re.sub(r"\{\{[^}]*\}\}", "", reply))[0]


def first_sentence_of_reply_to(ask: str) -> str:
    """The first sentence of the fixture's own reply to a Bitext ask."""
    intent = next(i for i, texts in ASKS.items() if ask in texts)
    replies = responses(intent)
    return first_sentence(replies[ASKS[intent].index(ask) % len(replies)])


def test_reworded_loop_answers_one_request_in_other_words_each_time(data):
    replies = {first_sentence(r): intent for intent in ASKS for r in responses(intent)}
    asks = {a: intent for intent, texts in ASKS.items() for a in texts}
    endings = Counter()
    for e in made(data, "reworded_loop", n=150):
        turns = e.transcript.scored_turns
        agents = [k for k, t in enumerate(turns) if t.role == "agent"]
        assert 3 <= len(agents) <= 5 and turns[0].role == "customer"
        answers = [turns[k].text for k in agents]
        assert len(set(answers)) == len(answers), "worded otherwise each time"
        intents = {asks[t.text] for t in turns[:agents[-1]] if t.role == "customer"}
        intents |= {replies[sentences(a)[0]] for a in answers}
        assert len(intents) == 1 and intents <= set(RESPONSES), "one request, its intent's replies"
        for k in agents:  # no answer is the reply to the ask before it
            assert sentences(turns[k].text)[0] != first_sentence_of_reply_to(turns[k - 1].text)
        breakdown = e.turn_labels["breakdown"]
        assert np.isnan(breakdown[agents[0]]) and np.all(breakdown[agents[1:]] == 1.0)
        endings[turns[-1].role] += 1
        if turns[-1].role == "customer":  # a real frustrated turn with its source's signals
            assert np.nanmax(e.turn_labels["escalation_signal"][-1][:2]) == 1.0
        assert float(e.labels["escalation"]) == 1.0 and float(e.labels["repeat_inquiry"]) == 1.0
        np.testing.assert_array_equal(e.labels["resolution"], BOTTOM)
    assert endings["agent"] and endings["customer"]


def assert_two_turn_labels(e: Example, answered: bool) -> None:
    """A question answered in one reply: resolution HIGH, no repeat inquiry or escalation; not
    answered: resolution at the bottom, repeat inquiry 1, escalation left out."""
    if answered:
        np.testing.assert_array_equal(e.labels["resolution"], HIGH)
        assert float(e.labels["repeat_inquiry"]) == 0.0 and float(e.labels["escalation"]) == 0.0
    else:
        np.testing.assert_array_equal(e.labels["resolution"], BOTTOM)
        assert float(e.labels["repeat_inquiry"]) == 1.0 and "escalation" not in e.labels


def test_two_turn_answered_pairs_right_and_wrong_replies(data):
    asks = {a: intent for intent, texts in ASKS.items() for a in texts}
    seen = Counter()
    for e in made(data, "two_turn_answered", n=40):
        ask, reply = e.transcript.scored_turns
        intent = asks[ask.text]
        assert intent not in ("complaint", "contact_human_agent")
        right = any(first_sentence(r) in reply.text for r in responses(intent))
        seen[right] += 1
        assert_two_turn_labels(e, answered=right)
        assert "{{" not in reply.text
    assert seen[True] and seen[False]


def test_written_two_turn_pairs_written_questions_with_their_answer_or_evasion(data):
    chats = {chat["question"]: chat for _, chat in written_chats("train")}
    held_out = {chat["question"] for _, chat in written_chats("held_out")}
    seen = Counter()
    for e in made(data, "written_two_turn", n=60):
        ask, reply = e.transcript.scored_turns
        assert ask.role == "customer" and reply.role == "agent" and ask.text not in held_out
        answered = reply.text == chats[ask.text]["answer"]
        assert answered or reply.text == chats[ask.text]["evasive"]
        seen[answered] += 1
        assert_two_turn_labels(e, answered=answered)
    assert seen[True] and seen[False]


def test_written_chats_hold_every_third_item_out():
    train, held_out = written_chats("train"), written_chats("held_out")
    assert len(held_out) == 100 and len(train) == 200
    assert not {g for g, _ in train} & {g for g, _ in held_out}
    assert {c["domain"] for _, c in held_out} == {c["domain"] for _, c in train}
    with pytest.raises(ValueError, match="part must be"):
        written_chats("dev")


@pytest.mark.parametrize("name, n", [("style_twins", 120), ("style_twins_manners", 90)])
def test_style_twins_share_the_customers_turns_and_hold_every_third_out(name, n):
    train_twins, held_out = style_twins("train", name), style_twins("held_out", name)
    assert len(held_out) == n // 3 and len(train_twins) == n - n // 3
    assert not {bot.group for bot, _ in train_twins} & {bot.group for bot, _ in held_out}
    for bot, human in train_twins + held_out:
        assert (bot.transcript.agent_type, human.transcript.agent_type) == ("ai", "human")
        a, b = bot.transcript.scored_turns, human.transcript.scored_turns
        assert [t.role for t in a] == [t.role for t in b] and a[0].role == "customer"
        for x, y in zip(a, b, strict=True):
            assert (x.text == y.text) == (x.role == "customer"), bot.transcript.id
        assert not bot.labels and not bot.turn_labels  # the loss reads them, no label does
    with pytest.raises(ValueError, match="part must be"):
        style_twins("dev", name)


def test_twin_sets_are_apart_and_an_unknown_one_is_named():
    ids = [{bot.transcript.id for pair in style_twins(part, name) for bot in pair}
           for name in TWIN_SETS for part in ("train", "held_out")]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 2 * (120 + 90)
    with pytest.raises(ValueError, match="no twin set 'twins'; known: style_twins, style_twins_manners"):
        style_twins("train", "twins")


def test_opt_in_kinds_are_drawn_only_when_named(data):
    assert not set(OPT_IN) & set(KINDS)
    assert "augment:written_two_turn" not in {e.source for e in Augmenter(data).make(60, random.Random(0))}
    assert TrainingArgs(output_dir="unused", examples=[], augment_kinds=OPT_IN).augment_kinds == OPT_IN


def test_make_is_deterministic_and_spreads_over_every_kind(data):
    aug = Augmenter(data)
    first = aug.make(45, random.Random(3))
    second = aug.make(45, random.Random(3))
    assert [[t.text for t in e.transcript.turns] for e in first] == [
        [t.text for t in e.transcript.turns] for e in second]
    assert len(first) == 45 and {e.source for e in first} == {f"augment:{k}" for k in KINDS}
    counts = Counter(e.source for e in first)
    # 45 = 2 rounds of 21 draws (the three request kinds and short_turn 3 times each) + the
    # first 3 of a third (3 human_request)
    assert counts["augment:human_request"] == 3 * 3 and counts["augment:loop"] == 2
    assert counts["augment:short_turn"] == 2 * 3
    assert counts["augment:written_request_turn"] == 2 * 3 and counts["augment:person_mentioned"] == 2


def test_make_draws_only_the_kinds_named(data, tmp_path):
    examples = Augmenter(data, ("loop", "human_request")).make(16, random.Random(0))
    counts = Counter(e.source for e in examples)
    assert counts == {"augment:loop": 4, "augment:human_request": 12}  # 4 rounds of 1 + 3
    with pytest.raises(ValueError, match="must be some of"):
        Augmenter(data, ("loop", "typo"))
    with pytest.raises(ValueError, match="must be some of"):
        TrainingArgs(output_dir=str(tmp_path), examples=[], augment_kinds=("typo",))


def test_a_kind_named_twice_is_drawn_twice_as_often(data):
    examples = Augmenter(data, ("loop", "two_turn_answered", "two_turn_answered")).make(30, random.Random(0))
    assert Counter(e.source for e in examples) == {"augment:loop": 10, "augment:two_turn_answered": 20}


@pytest.mark.parametrize("subset", ["none", "bitext", "unrated"])
def test_make_skips_kinds_the_data_cannot_make(data, subset):
    chosen = {"none": [], "bitext": bitext(), "unrated": [e for e in dialogues() if e.source == "uss"]}[subset]
    examples = Augmenter(chosen).make(18, random.Random(0))
    assert len(examples) == (0 if subset == "none" else 18)
    if subset == "bitext":
        assert {e.source for e in examples} == {f"augment:{k}" for k in (
            "loop", "repeated_answer", "two_turn_answered")}


def test_closing_pair_is_one_dialogue_with_and_without_its_closing(data):
    aug, rng = Augmenter(data), random.Random(0)
    sources = Counter()
    for _ in range(40):
        with_closing, without = aug.closing_pair(rng)
        sources[with_closing.source] += 1
        turns, kept = with_closing.transcript.scored_turns, without.transcript.scored_turns
        n = len(kept)
        assert [t.text for t in turns[:n]] == [t.text for t in kept] and len(turns) > n
        assert turns[n].role == "customer" and is_pleasantry(turns[n].text)
        assert all(t.role == "agent" for t in turns[n + 1:])
        assert not is_pleasantry([t.text for t in kept if t.role == "customer"][-1])
        np.testing.assert_array_equal(with_closing.labels["resolution"], without.labels["resolution"])
    # a real closing removed (the real dialogue is the one with it) and one added, both often
    assert sources["stc3"] >= 10 and sources["augment:closing_added"] >= 10


@pytest.mark.parametrize("name", WRITTEN)
def test_written_turns_are_distinct_nonblank_lines(name):
    lines = written_turns(name)
    assert len(lines) >= 100
    assert all(line.strip() == line and line for line in lines)
    assert len({line.lower() for line in lines}) == len(lines)
    assert not set(written_turns("requests")) & set(written_turns("mentions"))


def test_written_requests_are_labelled_at_their_turn_like_bitexts(data):
    requests = set(written_turns("requests"))
    for e in made(data, "written_request_turn"):
        turns = e.transcript.scored_turns
        at = next(k for k, x in enumerate(turns) if x.text in requests)
        assert turns[at].role == "customer" and "escalation" not in e.labels
        assert e.turn_labels["escalation"][at] == 1.0
        labelled = np.flatnonzero(~np.isnan(e.turn_labels["escalation"]))
        assert list(labelled) == [k for k in range(at + 1) if turns[k].role == "customer"]
        signals = e.turn_labels["escalation_signal"][at]
        assert signals[2] == 1.0 and signals[1] == 0.0 and np.isnan(signals[0])


def test_the_augmentations_read_a_thanks_to_the_agents_name_as_the_closing_does():
    def dialogue(agent: str, last: str, confirmed: float) -> Example:
        return stc3("n", [("customer", "My invoice is wrong."), ("agent", agent), ("customer", last)],
                    4, [NAN, 0.9, NAN], [0.0, NAN, confirmed])

    named, unnamed = "Hi, I'm Marco. I corrected it.", "I corrected it."
    # a last word after the fix, a confirmation in words, a confirmation without its thanks
    assert _last_word(dialogue(named, "Thanks Marco!", 0.0)) is None
    assert _last_word(dialogue(unnamed, "Thanks Marco!", 0.0)) == 2
    assert not _confirms(dialogue(named, "Thanks Marco!", 1.0), 2)
    assert _confirms(dialogue(unnamed, "Thanks Marco!", 1.0), 2)
    said = dialogue(named, "It is right now. Thanks Marco!", 1.0).transcript.scored_turns
    assert _unthanked(said, 2) == "It is right now."
    said = dialogue(unnamed, "It is right now. Thanks Marco!", 1.0).transcript.scored_turns
    assert _unthanked(said, 2) == "It is right now. Thanks Marco!"


def test_mentions_are_negatives_for_asking_and_for_escalation_at_their_turn(data):
    mentions = set(written_turns("mentions"))
    examples = made(data, "person_mentioned", n=40)
    assert {e.transcript.id.split("+")[0] for e in examples} >= {"fixed", "booking"}
    for e in examples:
        turns = e.transcript.scored_turns
        [at] = [k for k, x in enumerate(turns) if x.text in mentions]
        assert turns[at].role == "customer" and turns[at - 1].role == "agent" and at < len(turns) - 1
        assert list(np.flatnonzero(~np.isnan(e.turn_labels["escalation"]))) == [at]
        assert e.turn_labels["escalation"][at] == 0.0
        np.testing.assert_array_equal(e.turn_labels["escalation_signal"][at, 1:], [0.0, 0.0])
        assert "satisfaction" not in e.labels
        base = next(d for d in dialogues() if d.transcript.id == e.transcript.id.split("+")[0])
        assert [t.text for k, t in enumerate(turns) if k != at] == [t.text for t in base.transcript.scored_turns]


def test_short_turns_are_real_negatives_cut_in_place(data):
    examples = made(data, "short_turn", n=40)
    assert examples
    lengths = set()
    for e in examples:
        base = next(d for d in dialogues() if d.transcript.id == e.transcript.id.split("+")[0])
        assert base.source == "stc3"
        turns, before = e.transcript.scored_turns, base.transcript.scored_turns
        [at] = [k for k, (x, y) in enumerate(zip(turns, before, strict=True)) if x.text != y.text]
        words = turns[at].text.split()
        assert turns[at].role == "customer" and before[at].text.split()[:len(words)] == words
        assert 1 <= len(words) <= 5 < len(before[at].text.split())
        lengths.add(len(words))
        labelled = np.argwhere(~np.isnan(e.turn_labels["escalation_signal"]))
        assert labelled.tolist() == [[at, 2]] and e.turn_labels["escalation_signal"][at, 2] == 0.0
        assert set(e.turn_labels) == {"escalation_signal"} and not e.labels
    assert len(lengths) > 1
