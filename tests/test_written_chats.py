"""The held-out written chats (benchmarks/written_chats.py): every held-out question asked
twice, and each AUROC turned the right way."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from conftest import load_benchmark
from qualaudit import Auditor, UntrainedModelWarning
from qualaudit.training.datasets.augment import written_chats

chats = load_benchmark("written_chats")


@dataclass
class _Score:
    resolution: float
    repeat_inquiry: float


class _ReadsTheAnswer:
    """Scores a chat resolved, and not to be repeated, exactly when its reply is the answer."""

    def __init__(self) -> None:
        self.answers = {chat["answer"] for _, chat in written_chats("held_out")}

    def score(self, transcripts):
        answered = [t["messages"][1]["content"] in self.answers for t in transcripts]
        return [_Score(float(a), float(not a)) for a in answered]


def test_a_model_that_tells_answers_from_evasions_scores_one_on_both():
    assert chats.held_out_aurocs(_ReadsTheAnswer()) == {"chats": 200, "resolution": 1.0,
                                                        "repeat_inquiry": 1.0}


def test_a_real_model_scores_every_held_out_chat(tiny_model_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)
        result = chats.held_out_aurocs(Auditor.from_pretrained(tiny_model_dir, device="cpu",
                                                               precision="fp32"))
    assert result["chats"] == 200
    assert 0.0 <= result["resolution"] <= 1.0 and 0.0 <= result["repeat_inquiry"] <= 1.0
