import pytest
from transformers import AutoTokenizer

from qualaudit.batching import PairTemplate, WindowBuilder, collate, token_budget_batches
from qualaudit.normalize import make_transcript


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_dir):
    return AutoTokenizer.from_pretrained(tiny_encoder_dir)


def test_pair_template_matches_the_tokenizer(tokenizer):
    t = PairTemplate.from_tokenizer(tokenizer)
    a, b = tokenizer(["hello", "thanks"], add_special_tokens=False)["input_ids"]
    assert t.prefix + a + t.middle + b + t.suffix == tokenizer("hello", "thanks")["input_ids"]


def transcript(*texts, tid="x"):
    roles = ["user", "assistant"]
    return make_transcript(tid, [{"role": roles[i % 2], "text": x} for i, x in enumerate(texts)])


def test_windows_hold_the_turn_then_the_previous_turn(tokenizer):
    builder = WindowBuilder(tokenizer, max_turn_tokens=50, max_context_tokens=50)
    w = builder.build([transcript("my order", "sorry about that"), transcript("hello", tid="y")])
    assert len(w.input_ids) == 3
    second = tokenizer("agent: sorry about that", "customer: my order")
    assert w.input_ids[1] == second["input_ids"]
    assert w.token_type_ids[1] == second["token_type_ids"]
    assert w.input_ids[0] == tokenizer("customer: my order")["input_ids"]
    assert w.turn_truncated == [False, False, False]
    assert w.input_ids[2] == tokenizer("customer: hello")["input_ids"]  # a new transcript: no context


def test_long_turns_are_cut_and_the_cut_is_recorded(tokenizer):
    builder = WindowBuilder(tokenizer, max_turn_tokens=6, max_context_tokens=3)
    w = builder.build([transcript("hi", "sorry " * 20)])
    assert w.turn_truncated == [False, True]
    assert len(w.input_ids[1]) == 6 + 3 + 3  # turn + context + [CLS] [SEP] [SEP]


def test_context_keeps_the_role_and_the_end_of_the_previous_turn(tokenizer):
    builder = WindowBuilder(tokenizer, max_turn_tokens=20, max_context_tokens=5)
    w = builder.build([transcript("hello my order card charged twice refund please", "sorry")])
    context = w.input_ids[1][w.token_type_ids[1].index(1):-1]  # segment B without its [SEP]
    expected = tokenizer("customer: twice refund please", add_special_tokens=False)["input_ids"]
    assert context == expected


def test_token_budget_batches_cover_each_index_once_within_budget():
    lengths = [5, 50, 7, 12, 50, 3, 200, 9]
    batches = token_budget_batches(lengths, max_batch_tokens=100)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100
    assert [len(b) for b in batches if 6 in b] == [1]  # longer than the budget: alone


def test_collate_pads_right_and_masks(tokenizer):
    builder = WindowBuilder(tokenizer, 50, 50)
    w = builder.build([transcript("hi", "sorry about that, refund sent")])
    batch = collate(w, [0, 1], pad_id=tokenizer.pad_token_id, with_token_types=True)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["token_type_ids"].shape
    n0 = len(w.input_ids[0])
    assert batch["attention_mask"][0].sum() == n0
    assert (batch["input_ids"][0, n0:] == tokenizer.pad_token_id).all()
    assert "token_type_ids" not in collate(w, [0], 0, with_token_types=False)
