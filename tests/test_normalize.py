import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from qualaudit.errors import InputError
from qualaudit.normalize import (
    check_utf8,
    clean_text,
    make_transcript,
    normalize_agent_type,
    normalize_id,
    normalize_role,
    parse_role_map,
)


@pytest.mark.parametrize("raw, role", [
    ("user", "customer"), ("customer", "customer"), ("client", "customer"), ("USER", "customer"),
    ("assistant", "agent"), ("agent", "agent"), ("helpdesk", "agent"), ("bot", "agent"),
    ("SYSTEM", "agent"), ("Assistant", "agent"), ("system", "system"), ("tool", "system"),
])
def test_roles_from_common_exports(raw, role):
    assert normalize_role(raw) == role


def test_unknown_role_lists_what_was_found_and_what_is_accepted():
    with pytest.raises(InputError) as info:
        normalize_role("visitor")
    message = str(info.value)
    assert "'visitor'" in message and "assistant" in message and "customer=visitor" in message


def test_role_map_from_string_and_mapping():
    mapping = parse_role_map("customer=visitor,agent=operator")
    assert normalize_role("visitor", mapping) == "customer"
    assert normalize_role("Visitor", mapping) == "customer"
    assert parse_role_map({"customer": ["guest", "visitor"], "agent": "rep"}) == {
        "guest": "customer", "visitor": "customer", "rep": "agent"}
    # a mapping overrides the built-in vocabulary
    assert normalize_role("bot", parse_role_map("customer=bot")) == "customer"


@pytest.mark.parametrize("spec", ["customer", "customer=", "boss=visitor"])
def test_bad_role_maps_are_errors(spec):
    with pytest.raises(InputError, match="role"):
        parse_role_map(spec)


def test_agent_types():
    assert normalize_agent_type("AI") == "ai"
    assert normalize_agent_type("bot") == "ai"
    assert normalize_agent_type("Human") == "human"
    assert normalize_agent_type(None) is None and normalize_agent_type(float("nan")) is None
    with pytest.raises(InputError, match="expected one of ai, human, mixed, unknown"):
        normalize_agent_type("robot")


def test_clean_text():
    assert clean_text("  hi\u200b  there\r\n\r\n\r\nbye\x07 ") == "hi there\n\nbye"
    assert clean_text("cafe\u0301") == "caf\u00e9"  # NFC


def test_empty_turns_are_dropped_but_indices_kept():
    t = make_transcript("a", [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "  "},
                              {"role": "assistant", "text": None}, {"role": "user", "text": "ok"}])
    assert [(x.index, x.text) for x in t.turns] == [(0, "hi"), (3, "ok")]
    assert t.n_input_turns == 4


def test_no_text_at_all_is_rejected_with_id_and_line():
    with pytest.raises(InputError) as info:
        make_transcript("t9", [{"role": "user", "text": " "}, {"role": "system", "text": "be nice"}],
                        source="chats.jsonl", line=7)
    assert (info.value.transcript_id, info.value.line, info.value.source) == ("t9", 7, "chats.jsonl")
    assert "no text" in str(info.value)


def test_one_sided_transcripts_are_valid():
    t = make_transcript("c", [{"role": "user", "text": "hello?"}, {"role": "user", "text": "anyone?"}])
    assert [x.role for x in t.scored_turns] == ["customer", "customer"]


def test_agent_type_derived_from_turns_for_handoffs():
    t = make_transcript("h", [{"role": "user", "text": "hi"},
                              {"role": "assistant", "text": "bot here", "agent_type": "ai"},
                              {"role": "agent", "text": "human here", "agent_type": "human"}])
    assert t.agent_type == "mixed"
    assert [x.agent_type for x in t.turns] == [None, "ai", "human"]
    assert make_transcript("h2", [{"role": "user", "text": "hi"}], agent_type="human").agent_type == "human"


def test_agent_turns_inherit_an_explicit_ai_or_human_transcript_type():
    raw = [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "bot here"},
           {"role": "system", "text": "note"}, {"role": "agent", "text": "me", "agent_type": "human"}]
    for given in ("ai", "bot", "human"):
        t = make_transcript("i", raw, agent_type=given)
        expected = normalize_agent_type(given)
        assert t.agent_type == expected
        # customer and system turns keep None; a turn's own value wins over the transcript's
        assert [x.agent_type for x in t.turns] == [None, expected, None, "human"]
    for given in ("mixed", "unknown", None):
        t = make_transcript("m", raw[:3], agent_type=given)
        assert [x.agent_type for x in t.turns] == [None, None, None]
    assert make_transcript("m", raw[:3]).agent_type == "unknown"
    # the handoff inference is unchanged: no transcript-level value, turns AI then human
    handoff = make_transcript("h", [raw[0], {**raw[1], "agent_type": "ai"}, raw[3]])
    assert handoff.agent_type == "mixed"
    assert [x.agent_type for x in handoff.turns] == [None, "ai", "human"]
    first = make_transcript("i", raw, agent_type="ai")  # passed back in, it comes back equal
    again = make_transcript(first.id, [{"role": x.role, "text": x.text, "agent_type": x.agent_type,
                                        "speaker": x.speaker, "index": x.index}
                                       for x in first.turns], agent_type=first.agent_type)
    assert again == first


def test_errors_name_the_field():
    with pytest.raises(InputError) as info:
        make_transcript("e", [{"role": "user", "text": "hi"}, {"role": "user", "text": 5}],
                        source="f.jsonl", line=2)
    assert info.value.field == "turns[1].text" and "string" in str(info.value)
    assert (info.value.turn, info.value.part) == (1, "text")
    with pytest.raises(InputError) as info:
        make_transcript("e", [{"role": "user", "text": "bad \udcff byte"}])
    assert "UTF-8" in str(info.value) and info.value.field == "turns[0].text"
    assert (info.value.turn, info.value.part) == (0, "text")
    with pytest.raises(InputError) as info:
        make_transcript("e", [{"role": "user", "text": "hi"},
                              {"role": "agent", "text": "ok", "agent_type": "robot"}])
    assert (info.value.field, info.value.turn, info.value.part) == ("turns[1].agent_type", 1,
                                                                    "agent_type")


def test_missing_id_is_an_error():
    with pytest.raises(InputError, match="missing transcript id"):
        make_transcript(None, [{"role": "user", "text": "hi"}])
    assert make_transcript(12.0, [{"role": "user", "text": "hi"}]).id == "12"


def test_a_long_unknown_role_is_not_echoed():
    text = "please refund my card ending 4111 1111 1111 1111 now"
    with pytest.raises(InputError) as info:
        normalize_role(text)
    assert "4111" not in str(info.value) and "52-character" in str(info.value)


def test_errors_carry_turn_and_part_and_located_keeps_them():
    with pytest.raises(InputError) as info:
        make_transcript("e", [{"role": "user", "text": "hi"}, {"role": "wizard", "text": "b"}])
    error = info.value
    assert (error.field, error.turn, error.part) == ("turns[1].role", 1, "role")
    moved = error.located(source="f.csv", line=9, turn=5, part="text")
    assert (moved.source, moved.line, moved.turn, moved.part) == ("f.csv", 9, 1, "role")
    with pytest.raises(InputError) as info:
        make_transcript(" ", [{"role": "user", "text": "hi"}])
    assert (info.value.field, info.value.turn, info.value.part) == ("id", None, "id")


def test_turn_indices_given_are_kept_and_must_increase():
    t = make_transcript("i", [{"role": "user", "text": "hi", "index": 2},
                              {"role": "agent", "text": " ", "index": 4},
                              {"role": "agent", "text": "ok"}])
    assert [(x.index, x.text) for x in t.turns] == [(2, "hi"), (5, "ok")]
    assert t.n_input_turns == 6  # the last index + 1
    for bad in (1, -1, "3", 2.0, True, None):
        turns = [{"role": "user", "text": "a", "index": 1}, {"role": "agent", "text": "b", "index": bad}]
        if bad is None:
            assert [x.index for x in make_transcript("i", turns).turns] == [1, 2]
            continue
        with pytest.raises(InputError, match="expected an integer turn index of at least 2") as info:
            make_transcript("i", turns, source="s", line=3)
        assert (info.value.field, info.value.turn, info.value.part) == ("turns[1].index", 1, "index")
        assert (info.value.source, info.value.line, info.value.transcript_id) == ("s", 3, "i")


def test_n_input_turns_is_the_largest_count_known():
    turns = [{"role": "user", "text": "hi"}, {"role": "agent", "text": "ok"}]
    assert make_transcript("n", turns).n_input_turns == 2
    assert make_transcript("n", turns, n_input_turns=7).n_input_turns == 7
    assert make_transcript("n", turns, n_input_turns=0).n_input_turns == 2
    with pytest.raises(InputError, match="n_input_turns"):
        make_transcript("n", turns, n_input_turns="7")


def test_make_transcript_is_idempotent():
    first = make_transcript(
        4.0, [{"role": "USER", "text": " hi\u200b  there ", "timestamp": datetime(2024, 1, 2, 3)},
              {"role": "assistant", "text": "", "agent_type": "bot"},
              {"role": "assistant", "text": "bot", "agent_type": "bot"},
              {"role": "human_agent", "text": "human", "agent_type": "person"}],
        metadata={"when": date(2024, 1, 2), "n": np.int64(3)}, source="f", line=2)
    again = make_transcript(
        first.id,
        [{"role": t.role, "text": t.text, "timestamp": t.timestamp, "agent_type": t.agent_type,
          "speaker": t.speaker, "index": t.index} for t in first.turns],
        agent_type=first.agent_type, metadata=first.metadata, n_input_turns=first.n_input_turns)
    assert again == first
    assert [(t.speaker, t.index) for t in first.turns] == [("USER", 0), ("assistant", 2),
                                                            ("human_agent", 3)]
    assert first.agent_type == "mixed" and first.n_input_turns == 4


def test_metadata_becomes_plain_json():
    t = make_transcript("m", [{"role": "user", "text": "hi"}], metadata={
        "at": datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc), "day": date(2024, 5, 1),
        "pd_at": pd.Timestamp("2024-05-01 09:30"), "missing": pd.NaT, "nan": float("nan"),
        "np_int": np.int64(3), "np_float": np.float32(0.5), "np_bool": np.bool_(True),
        "np_time": np.datetime64("2024-05-01T09:30:00.000000000"), "np_nat": np.datetime64("NaT"),
        "array": np.array([1, 2]), "nested": {"tags": ("a", np.str_("b")), 1: [float("nan")]},
    })
    assert t.metadata == {
        "at": "2024-05-01T09:30:00+00:00", "day": "2024-05-01", "pd_at": "2024-05-01T09:30:00",
        "missing": None, "nan": None, "np_int": 3, "np_float": 0.5, "np_bool": True,
        "np_time": "2024-05-01T09:30:00.000000000", "np_nat": None, "array": [1, 2],
        "nested": {"tags": ["a", "b"], "1": [None]},
    }
    assert type(t.metadata["np_int"]) is int and type(t.metadata["np_bool"]) is bool
    json.dumps(t.metadata, allow_nan=False)


@pytest.mark.parametrize("value, field", [
    (object(), "metadata.bad"), (Decimal("1.5"), "metadata.bad"),
    (timedelta(seconds=3), "metadata.bad"), ({"deep": [1, {2, 3}]}, "metadata.bad.deep[1]"),
    (float("inf"), "metadata.bad"), ("caf\udce9", "metadata.bad"), ({(1, 2): "x"}, "metadata.bad"),
])
def test_metadata_that_json_cannot_hold_is_a_located_error(value, field):
    with pytest.raises(InputError) as info:
        make_transcript("m", [{"role": "user", "text": "hi"}], metadata={"ok": 1, "bad": value},
                        source="f.jsonl", line=4)
    error = info.value
    assert (error.field, error.part, error.transcript_id, error.line) == (field, "metadata", "m", 4)


def test_one_id_and_one_utf8_check_for_every_reader():
    assert normalize_id(" a ") == "a" and normalize_id(12.0) == "12" and normalize_id(7) == "7"
    for missing in (None, float("nan"), pd.NaT, pd.NA, "  "):
        assert normalize_id(missing) is None
        with pytest.raises(InputError, match="missing transcript id"):
            make_transcript(missing, [{"role": "user", "text": "hi"}])
    with pytest.raises(InputError, match=r"invalid UTF-8 \(or a lone surrogate\) at character 2"):
        check_utf8("ab\udcff")
    check_utf8("caf\u00e9")


def test_system_only_transcript_is_rejected():
    with pytest.raises(InputError, match="no customer or agent turn has any text"):
        make_transcript("s", [{"role": "system", "text": "be nice"}])


def test_long_label_values_are_never_echoed():
    secret = "my card number is 4111 1111 1111 1111, please refund"
    with pytest.raises(InputError) as info:
        normalize_agent_type(secret)
    assert "4111" not in str(info.value) and "not shown" in str(info.value)
    with pytest.raises(InputError) as info:
        normalize_role({"name": secret})
    assert "4111" not in str(info.value)


def test_turn_timestamps_give_the_conversation_span():
    t = make_transcript("ts", [{"role": "user", "text": "hi", "timestamp": "2026-11-02T09:14:00Z"},
                               {"role": "assistant", "text": "hello"},
                               {"role": "user", "text": "bye", "timestamp": "2026-11-02T09:20:00Z"}])
    assert t.metadata == {"started_at": "2026-11-02T09:14:00Z", "ended_at": "2026-11-02T09:20:00Z"}
    assert make_transcript("n", [{"role": "user", "text": "hi"}]).metadata == {}
