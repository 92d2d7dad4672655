"""A user's labels file: reading (CSV, TSV, JSONL), located errors, and the join onto
transcripts as training examples the training loop accepts."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from qualaudit.errors import InputError
from qualaudit.io.labels import COLUMNS, read_labels
from qualaudit.training.datasets import split_of
from qualaudit.training.datasets.user import user_examples


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def chats() -> list[dict]:
    """c1: turns 0 customer, 1 agent, 2 empty (dropped), 3 agent; c2: customer only; c3 plain."""
    return [
        {"id": "c1", "turns": [{"role": "user", "text": "my card was charged twice"},
                               {"role": "agent", "text": "sorry about that"},
                               {"role": "user", "text": "  "},
                               {"role": "agent", "text": "refund sent"}]},
        {"id": "c2", "turns": [{"role": "user", "text": "hello?"}]},
        {"id": "c3", "messages": [{"role": "user", "content": "password reset"},
                                  {"role": "assistant", "content": "link sent"}]},
    ]


CSV = """id,turn,resolution,resolution_grade,satisfaction,repeat_inquiry,escalation,empathy
c1,,1,,-1,0,1,
c1,1,,,,,,2
c1,3,,,,,,0
c2,,0,,,,,
c3,,,2,2,,,1
"""


# ------------------------------------------------------------------------------ reading
def test_read_csv(tmp_path):
    labels = read_labels(write(tmp_path, "labels.csv", CSV))
    assert labels["c1"] == {"resolution": 1, "satisfaction": -1, "repeat_inquiry": 0,
                            "escalation": 1, "empathy_turns": {1: 2, 3: 0},
                            "source": str(tmp_path / "labels.csv"), "line": 2}
    assert labels["c2"] == {"resolution": 0, "source": str(tmp_path / "labels.csv"), "line": 5}
    assert labels["c3"]["resolution_grade"] == 2 and labels["c3"]["empathy"] == 1


def test_read_tsv_with_bom_and_partial_columns(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_bytes("\ufeffid\tescalation\n7\ttrue\n8\tFALSE\n\n9\t\n".encode())
    labels = read_labels(path)
    assert labels["7"]["escalation"] == 1 and labels["8"]["escalation"] == 0
    assert "escalation" not in labels["9"]


def test_read_jsonl(tmp_path):
    rows = [{"id": 5, "resolution": True, "satisfaction": 2.0, "escalation": None},
            {"id": "c1", "turn": 1, "empathy": 1}]
    labels = read_labels(write(tmp_path, "labels.jsonl", "\n".join(map(json.dumps, rows)) + "\n"))
    assert labels["5"]["resolution"] == 1 and labels["5"]["satisfaction"] == 2
    assert "escalation" not in labels["5"]
    assert labels["c1"]["empathy_turns"] == {1: 1} and labels["c1"]["line"] == 2


def test_repeated_equal_conversation_labels_are_accepted(tmp_path):
    text = "id,turn,resolution,empathy\nc1,1,1,2\nc1,3,1,1\n"
    assert read_labels(write(tmp_path, "l.csv", text))["c1"] == {
        "resolution": 1, "empathy_turns": {1: 2, 3: 1}, "source": str(tmp_path / "l.csv"),
        "line": 2}


@pytest.mark.parametrize(("text", "line", "field", "message"), [
    ("id,score\nc1,1\n", 1, "score", "unknown column"),
    ("conversation_id,resolution\nc1,1\n", 1, "conversation_id", "unknown column"),
    ("resolution\n1\n", 1, "id", "no id column"),
    ("id,resolution\nc1,1\nc2,2\n", 3, "resolution", "from 0 to 1, found '2'"),
    ("id,resolution\nc1,yes\n", 2, "resolution", "found 'yes'"),
    ("id,satisfaction\nc1,4\n", 2, "satisfaction", "from -2 to 2, found '4'"),
    ("id,resolution_grade\nc1,1.5\n", 2, "resolution_grade", "from -2 to 2"),
    ("id,empathy\nc1,3\n", 2, "empathy", "from 0 to 2"),
    ("id,turn,empathy\nc1,-1,1\n", 2, "turn", "integer >= 0"),
    ("id,resolution\nc1,1\n\nc1,1\n", 4, "id", "second conversation row of this id (the first is on line 2)"),
    ("id,turn,empathy\nc1,2,1\nc1,2,0\n", 3, "turn", "second row for turn 2"),
    ("id,turn,resolution\nc1,,1\nc1,3,0\n", 3, "resolution", "1 on line 2 for the same id, 0 here"),
    ("id,resolution,resolution_grade\nc1,1,-1\n", 2, "resolution", "disagrees"),
    ("id,resolution\n,1\n", 2, "id", "missing id"),
])
def test_csv_errors_name_file_line_and_field(tmp_path, text, line, field, message):
    path = write(tmp_path, "labels.csv", text)
    with pytest.raises(InputError) as info:
        read_labels(path)
    error = info.value
    assert (error.source, error.line, error.field) == (str(path), line, field)
    assert message in str(error)


def test_errors_list_accepted_columns_and_suggest_fixes(tmp_path):
    with pytest.raises(InputError) as info:
        read_labels(write(tmp_path, "a.csv", "id,notes\nc1,x\n"))
    assert all(c in str(info.value) for c in COLUMNS)
    with pytest.raises(InputError, match="rating - 3"):
        read_labels(write(tmp_path, "b.csv", "id,satisfaction\nc1,5\n"))
    with pytest.raises(InputError, match="resolution_grade"):
        read_labels(write(tmp_path, "c.csv", "id,resolution\nc1,-2\n"))


def test_malformed_files(tmp_path):
    with pytest.raises(InputError, match="expected 2 fields") as info:
        read_labels(write(tmp_path, "a.csv", "id,resolution\nc1,1,0\n"))
    assert info.value.line == 2
    # a quoted field over two lines: the next row's line is still right
    with pytest.raises(InputError) as info:
        read_labels(write(tmp_path, "b.csv", 'id,resolution\n"c\n1",1\nc2,7\n'))
    assert info.value.line == 4
    with pytest.raises(InputError, match="not valid JSON") as info:
        read_labels(write(tmp_path, "c.jsonl", '{"id": "c1"}\n{"id": \n'))
    assert info.value.line == 2
    with pytest.raises(InputError, match="JSON object"):
        read_labels(write(tmp_path, "d.jsonl", "[1, 2]\n"))
    with pytest.raises(InputError, match="unknown column") as info:
        read_labels(write(tmp_path, "e.jsonl", '{"id": "c1"}\n{"id": "c2", "resolved": 1}\n'))
    assert (info.value.line, info.value.field) == (2, "resolved")
    with pytest.raises(InputError, match="format of the labels"):
        read_labels(write(tmp_path, "f.xlsx", ""))
    (tmp_path / "g.csv").write_bytes(b"id,resolution\nc1,1\n\xff,0\n")
    with pytest.raises(InputError, match="UTF-8") as info:
        read_labels(tmp_path / "g.csv")
    assert info.value.line == 3
    assert read_labels(write(tmp_path, "h.csv", "")) == {}


# ------------------------------------------------------------------------------ joining
def test_user_examples_map_labels_onto_the_heads(tmp_path, caplog):
    labels = read_labels(write(tmp_path, "labels.csv", CSV))
    examples = {e.transcript.id: e for e in user_examples(chats(), labels)}
    c1, c2, c3 = examples["c1"], examples["c2"], examples["c3"]
    assert {e.source for e in examples.values()} == {"user"}
    assert c1.group == "c1" and c1.split == split_of("user", "c1")

    # binary resolution: all mass on +1 (resolved) or -1 (not); grades: one-hot at grade + 2
    assert np.array_equal(c1.labels["resolution"], [0, 0, 0, 1, 0])
    assert np.array_equal(c2.labels["resolution"], [0, 1, 0, 0, 0])
    assert np.array_equal(c3.labels["resolution"], [0, 0, 0, 0, 1])
    assert np.array_equal(c1.labels["satisfaction"], [0, 1, 0, 0, 0])
    assert c1.labels["escalation"] == 1 and c1.labels["repeat_inquiry"] == 0
    assert c1.labels["escalation"].dtype == np.float32
    assert set(c2.labels) == {"resolution"} and not c2.turn_labels

    # empathy by input index: c1's turn 2 was empty, so turn 3 is the third scored turn
    empathy = c1.turn_labels["empathy"]
    assert empathy.shape == (3, 3, 3)
    assert np.isnan(empathy[0]).all()
    assert np.array_equal(empathy[1], np.tile([0, 0, 1], (3, 1)))
    assert np.array_equal(empathy[2], np.tile([1, 0, 0], (3, 1)))
    # conversation-level empathy labels every agent turn
    assert np.isnan(c3.turn_labels["empathy"][0]).all()
    assert np.array_equal(c3.turn_labels["empathy"][1], np.tile([0, 1, 0], (3, 1)))


def test_turn_rows_take_precedence_over_conversation_empathy(tmp_path):
    path = write(tmp_path, "l.csv", "id,turn,empathy\nc1,,2\nc1,3,1\n")
    (c1,) = user_examples(chats()[:1], path)
    empathy = c1.turn_labels["empathy"]
    assert np.isnan(empathy[:2]).all()  # agent turn 1 has no turn label of its own
    assert np.array_equal(empathy[2], np.tile([0, 1, 0], (3, 1)))


def test_unlabelled_transcripts_are_skipped_and_counted(tmp_path, caplog):
    path = write(tmp_path, "l.csv", "id,escalation\nc3,1\n")
    with caplog.at_level(logging.INFO, logger="qualaudit.datasets"):
        examples = user_examples(chats(), path)
    assert [e.transcript.id for e in examples] == ["c3"]
    assert "2 transcript(s) without labels skipped" in caplog.text


def test_labels_without_a_transcript_are_an_error(tmp_path):
    path = write(tmp_path, "l.csv", "id,escalation\nc3,1\nx1,0\nx2,1\n")
    with pytest.raises(InputError, match=r"2 labelled id\(s\) have no transcript.*'x1', 'x2'"):
        user_examples(chats(), path)


@pytest.mark.parametrize("turn", [0, 2, 9])
def test_empathy_on_a_turn_that_is_not_an_agent_turn(tmp_path, turn):
    path = write(tmp_path, "l.csv", f"id,turn,empathy\nc1,{turn},1\n")
    with pytest.raises(InputError, match=rf"turn {turn} is not an agent turn.*\[1, 3\]") as info:
        user_examples(chats(), path)
    assert info.value.transcript_id == "c1" and info.value.source == str(path)


def test_conversation_empathy_without_agent_turns_is_unused(tmp_path, caplog):
    path = write(tmp_path, "l.csv", "id,empathy,escalation\nc2,2,1\n")
    with caplog.at_level(logging.WARNING, logger="qualaudit.datasets"):
        (c2,) = user_examples(chats(), path)
    assert not c2.turn_labels and "no agent turn" in caplog.text


def test_examples_feed_the_training_loss(tmp_path, tiny_model):
    from qualaudit.batching import WindowBuilder
    from qualaudit.training.batches import prepare, stack_labels
    from qualaudit.training.train import batch_loss

    examples = user_examples(chats(), write(tmp_path, "labels.csv", CSV))
    items = prepare(examples, WindowBuilder(tiny_model.tokenizer, 48, 24), max_turns=32)
    specs = [s for s in tiny_model.specs if s.target in
             ("resolution", "satisfaction", "repeat_inquiry", "escalation", "empathy")]
    stacked = stack_labels(items, specs)
    target, weight = stacked["empathy.v1"]
    assert target.shape == (6, 3, 3) and float(weight.sum()) == 3 * 3 * 3  # 3 labelled agent turns
    with torch.no_grad():
        loss, parts = batch_loss(tiny_model, items, specs, {})
    assert torch.isfinite(loss)
    assert set(parts) == {"resolution", "satisfaction", "repeat_inquiry", "escalation", "empathy"}
