"""What the `written_two_turn` augmentation teaches, on the written chats it never trains on:
the 100 held-out questions of `written/faq.jsonl` (`augment.written_chats("held_out")`), each
asked in a two-turn chat answered once and evaded once. Resolution should rank the answered
chat above the evaded one, repeat inquiry the other way round; each is an AUROC over the 200
chats. The chats were written by the project (benchmarks/README.md, round 51), so this measures
the behaviour on the wording the augmentation draws from, not transfer: the suite does that.

Usage: `python benchmarks/written_chats.py [--model DIR]` prints both AUROCs as JSON.
"""

from __future__ import annotations

import argparse
import json

from qualaudit import Auditor
from qualaudit.metrics import auroc
from qualaudit.training.datasets.augment import written_chats


def held_out_aurocs(auditor: Auditor) -> dict[str, float | int]:
    """`{"chats", "resolution", "repeat_inquiry"}`: the number of chats scored and each
    target's AUROC, answered over evaded for resolution, evaded over answered for repeat
    inquiry."""
    transcripts, answered = [], []
    for group, chat in written_chats("held_out"):
        for side in ("answer", "evasive"):
            transcripts.append({"id": f"{group}/{side}", "messages": [
                {"role": "user", "content": chat["question"]},
                {"role": "assistant", "content": chat[side]}]})
            answered.append(side == "answer")
    scores = auditor.score(transcripts)
    return {"chats": len(scores),
            "resolution": auroc([s.resolution for s in scores], answered),
            "repeat_inquiry": auroc([s.repeat_inquiry for s in scores], [not a for a in answered])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or hub id (default: the bundled model)")
    args = parser.parse_args(argv)
    auditor = Auditor.from_pretrained(args.model, precision="fp32", device="cpu")
    print(json.dumps(held_out_aurocs(auditor), indent=2))


if __name__ == "__main__":
    main()
