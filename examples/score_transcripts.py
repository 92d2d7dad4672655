"""Score transcripts from Python and compare AI-handled with human-handled conversations.

Usage: python examples/score_transcripts.py [MODEL_DIR]
Without MODEL_DIR it uses the bundled default model (models/default, trained and
calibrated); pass a directory to score with another, such as one you fine-tuned with
`qualaudit train`.
"""

import sys
from pathlib import Path

from qualaudit import Auditor, to_dataframe

here = Path(__file__).parent
auditor = Auditor.from_pretrained(sys.argv[1] if len(sys.argv) > 1 else None)

# One transcript as a plain dict ...
result = auditor.score({"id": "quick", "messages": [
    {"role": "user", "content": "My card was charged twice."},
    {"role": "assistant", "content": "Sorry about that! I've refunded the duplicate charge."},
    {"role": "user", "content": "Thanks, I can see it."},
]})
print(f"resolution {result.resolution:.2f}, escalation {result.escalation:.2f}")
for evidence in result.evidence["resolution"]:
    print(f"  turn {evidence.index} ({evidence.role}) moved resolution by {evidence.contribution:+.2f} (logit)")

# ... or whole files: JSONL with one transcript per line, and a CSV with one row per turn.
results = auditor.score(here / "transcripts.jsonl") + auditor.score(here / "turns.csv")
frame = to_dataframe(results)
print(frame.groupby("agent_type")[["resolution", "empathy", "repeat_inquiry", "escalation"]].mean())
