import pytest

from qualaudit.errors import InputError
from qualaudit.normalize import (
    clean_text,
    make_transcript,
    normalize_agent_type,
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


def test_errors_name_the_field():
    with pytest.raises(InputError) as info:
        make_transcript("e", [{"role": "user", "text": "hi"}, {"role": "user", "text": 5}],
                        source="f.jsonl", line=2)
    assert info.value.field == "turns[1].text" and "string" in str(info.value)
    with pytest.raises(InputError) as info:
        make_transcript("e", [{"role": "user", "text": "bad \udcff byte"}])
    assert "UTF-8" in str(info.value) and info.value.field == "turns[0]"


def test_missing_id_is_an_error():
    with pytest.raises(InputError, match="missing transcript id"):
        make_transcript(None, [{"role": "user", "text": "hi"}])
    assert make_transcript(12.0, [{"role": "user", "text": "hi"}]).id == "12"


def test_a_long_unknown_role_is_not_echoed():
    text = "please refund my card ending 4111 1111 1111 1111 now"
    with pytest.raises(InputError) as info:
        normalize_role(text)
    assert "4111" not in str(info.value) and "52-character" in str(info.value)
