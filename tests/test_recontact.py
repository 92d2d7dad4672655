"""Recontact labels from synthetic logs: window edges, customers, ties, order, censoring, zones."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from qualaudit.errors import InputError
from qualaudit.normalize import make_transcript
from qualaudit.recontact import recontact_labels


def chat(tid: str, customer: str | int | None, start: str | None, end: str | None = None,
         **metadata) -> dict:
    """A JSONL-shaped conversation whose turn timestamps are `start` and `end`."""
    turns = [{"role": "user", "text": "my card was charged twice", "timestamp": start},
             {"role": "agent", "text": "sorry, refunded", "timestamp": end or start}]
    row = {"id": tid, "turns": turns, **({"metadata": metadata} if metadata else {})}
    if customer is not None:
        row["customer_id"] = customer
    return row


# a late conversation of another customer sets the end of the logs (the censoring horizon)
HORIZON = chat("horizon", "zz", "2024-03-01T00:00:00Z")


def test_recontact_inside_and_outside_the_window():
    logs = [chat("a1", "c1", "2024-01-01T10:00:00Z", "2024-01-01T10:20:00Z"),
            chat("a2", "c1", "2024-01-05T09:00:00Z", "2024-01-05T09:10:00Z"),
            chat("a3", "c1", "2024-01-20T09:00:00Z"), HORIZON]
    labels = recontact_labels(logs, window_days=7)
    assert labels["a1"] is True  # back after 4 days
    assert labels["a2"] is False  # next one 15 days later
    assert labels["a3"] is False  # nothing in the 7 days after, fully observed
    assert list(labels) == ["a1", "a2", "a3", "horizon"]  # input order


def test_window_edge_is_inclusive_and_window_days_matters():
    logs = [chat("a1", "c1", "2024-01-01T00:00:00Z"), chat("a2", "c1", "2024-01-08T00:00:00Z"),
            HORIZON]
    assert recontact_labels(logs, window_days=7)["a1"] is True
    assert recontact_labels(logs, window_days=6.99)["a1"] is False
    assert recontact_labels(logs, window_days=30)["a1"] is True


def test_other_customers_do_not_count_and_ids_compare_as_text():
    logs = [chat("a1", "c1", "2024-01-01T00:00:00Z"), chat("b1", "c2", "2024-01-02T00:00:00Z"),
            chat("n1", 12, "2024-01-01T00:00:00Z"), chat("n2", "12", "2024-01-03T00:00:00Z"),
            HORIZON]
    labels = recontact_labels(logs)
    assert labels["a1"] is False and labels["b1"] is False
    assert labels["n1"] is True  # 12 and "12" are one customer


def test_missing_customer_or_time_is_unknown():
    logs = [chat("a1", None, "2024-01-01T00:00:00Z"), chat("a2", None, "2024-01-02T00:00:00Z"),
            {"id": "u1", "customer_id": "c2", "messages": [{"role": "user", "content": "hi"}]},
            chat("t1", "c2", "2024-01-01T00:00:00Z"), chat("k1", "c3", "2024-01-01T00:00:00Z"),
            HORIZON]
    labels = recontact_labels(logs)
    assert labels["a1"] is None and labels["a2"] is None  # no customer id
    assert labels["u1"] is None  # no time
    # c2's untimed conversation may have fallen in t1's window: not a known negative
    assert labels["t1"] is None
    assert labels["k1"] is False


def test_ties_are_not_recontacts():
    # a conversation that starts at the instant another ends (a transfer) or at the same
    # time (parallel chats) is not a return; neither counts as the other's recontact
    logs = [chat("a1", "c1", "2024-01-01T10:00:00Z", "2024-01-01T10:30:00Z"),
            chat("a2", "c1", "2024-01-01T10:30:00Z", "2024-01-01T10:40:00Z"),
            chat("p1", "c2", "2024-01-01T10:00:00Z"), chat("p2", "c2", "2024-01-01T10:00:00Z"),
            HORIZON]
    labels = recontact_labels(logs)
    assert labels["a1"] is False and labels["a2"] is False
    assert labels["p1"] is False and labels["p2"] is False


def test_overlapping_conversation_is_not_a_recontact_but_a_later_one_is():
    logs = [chat("a1", "c1", "2024-01-01T10:00:00Z", "2024-01-01T12:00:00Z"),
            chat("a2", "c1", "2024-01-01T11:00:00Z", "2024-01-01T11:30:00Z"),
            HORIZON]
    labels = recontact_labels(logs)
    assert labels["a1"] is False  # a2 started before a1 ended
    assert labels["a2"] is False  # a1 started before a2 ended


def test_unsorted_input_gives_the_same_labels():
    logs = [chat("a3", "c1", "2024-01-09T00:00:00Z"), HORIZON,
            chat("a1", "c1", "2024-01-01T00:00:00Z"), chat("a2", "c1", "2024-01-04T00:00:00Z")]
    labels = recontact_labels(logs)
    assert labels == {"a3": False, "horizon": None, "a1": True, "a2": True}
    assert recontact_labels(sorted(logs, key=lambda r: r["id"])) == labels


def test_right_censoring_at_the_end_of_the_logs():
    logs = [chat("a1", "c1", "2024-01-01T00:00:00Z"), chat("a2", "c1", "2024-01-03T00:00:00Z"),
            chat("b1", "c2", "2024-01-06T00:00:00Z")]
    labels = recontact_labels(logs, window_days=7)
    assert labels["a1"] is True  # a recontact seen is known even near the end
    assert labels["a2"] is None  # its window runs past 2024-01-06, the last time in the data
    assert labels["b1"] is None
    # an export known to cover a later period uncensors them
    later = recontact_labels(logs, window_days=7, data_end="2024-01-31T00:00:00Z")
    assert later == {"a1": True, "a2": False, "b1": False}
    # a data_end before the last timestamp never shortens the horizon
    assert recontact_labels(logs, data_end=datetime(2023, 1, 1)) == labels


def test_timezones_compare_as_instants():
    # a1 ends 2024-01-02 04:00 UTC; a2 starts 2024-01-09 00:00 UTC: 6 days 20 hours later,
    # although the local clock times are 7 days 2 hours apart
    logs = [chat("a1", "c1", "2024-01-01T22:00:00-05:00", "2024-01-01T23:00:00-05:00"),
            chat("a2", "c1", "2024-01-09T01:00:00+01:00"), HORIZON]
    assert recontact_labels(logs, window_days=7)["a1"] is True
    # a time without a zone counts as UTC: 2024-01-09T05:00 is 7 days 1 hour after a1's end
    logs[1] = chat("a2", "c1", "2024-01-09T05:00:00")
    assert recontact_labels(logs, window_days=7)["a1"] is False


def test_explicit_metadata_times_and_transcripts():
    ended_only = make_transcript("a1", [{"role": "user", "text": "hi"}],
                                 metadata={"customer_id": "c1", "ended_at": "2024-01-01T00:00:00Z"})
    started_only = make_transcript("a2", [{"role": "user", "text": "hi again"}],
                                   metadata={"customer_id": "c1",
                                             "started_at": "2024-01-02T00:00:00Z"})
    labels = recontact_labels([ended_only, started_only], window_days=1)
    assert labels["a1"] is True
    assert labels["a2"] is None  # censored: the logs end at its own time
    assert recontact_labels(ended_only) == {"a1": None}


def test_reads_a_file_and_a_custom_customer_key(tmp_path):
    path = tmp_path / "chats.jsonl"
    rows = [chat("a1", None, "2024-01-01T00:00:00Z", account="x"),
            chat("a2", None, "2024-01-02T00:00:00Z", account="x"), HORIZON]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert recontact_labels(str(path), customer_key="account")["a1"] is True
    assert recontact_labels(str(path))["a1"] is None


@pytest.mark.parametrize("bad", ["yesterday", "01/02/2024 10:00", "1704067200"])
def test_unparseable_timestamp_names_the_transcript_and_field(bad):
    logs = [chat("a1", "c1", "2024-01-01T00:00:00Z"), chat("a2", "c1", bad)]
    with pytest.raises(InputError) as info:
        recontact_labels(logs)
    assert info.value.transcript_id == "a2"
    assert info.value.field == "metadata.started_at"
    assert "ISO 8601" in str(info.value) and repr(bad) in str(info.value)


def test_start_after_end_is_an_error():
    t = make_transcript("a1", [{"role": "user", "text": "hi"}],
                        metadata={"customer_id": "c1", "started_at": "2024-01-02T00:00:00Z",
                                  "ended_at": "2024-01-01T00:00:00Z"})
    with pytest.raises(InputError, match="starts .* after it ends"):
        recontact_labels([t])


@pytest.mark.parametrize("window", [0, -1, float("nan"), "7", True])
def test_bad_window(window):
    with pytest.raises(ValueError, match="window_days"):
        recontact_labels([HORIZON], window_days=window)


def test_empty_input():
    assert recontact_labels([]) == {}

