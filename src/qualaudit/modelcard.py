"""The README.md model card written next to every saved model."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import QualityModel

_UNTRAINED = """> **WARNING: UNTRAINED HEADS.** The heads {heads} of this model were never trained.
> Their scores are random numbers that mean nothing. Do not use them to judge conversations,
> agents or teams. This model exists to test pipelines; train it or load a trained model.
"""


def render_model_card(model: QualityModel, sections: dict[str, str]) -> str:
    """Generated facts (heads, calibration, encoder, sizes) plus the caller's own sections
    (data, recipe, metrics, limits), each under its own heading."""
    config = model.config
    encoder = config.encoder
    n_params = sum(p.numel() for p in model.parameters())
    lines = [f"# {config.name} {config.version}", ""]
    if config.untrained_heads:
        lines += [_UNTRAINED.format(heads=", ".join(config.untrained_heads)), ""]
    lines += [
        "A qualaudit model: a shared transformer encoder reads each turn with bounded preceding "
        "context; small heads score agent turns, customer turns and the whole conversation.",
        "",
        "## Architecture",
        f"- encoder: `{encoder.get('model_type')}`, hidden {encoder.get('hidden_size')}, "
        f"{encoder.get('num_hidden_layers')} layers",
        f"- parameters: {n_params:,}",
        f"- turn window: {config.max_turn_tokens} tokens of the turn + {config.max_context_tokens} "
        "of the previous turn",
        f"- conversation pooling: learned attention, {config.conversation_dim} dims, "
        f"{config.position_buckets} position buckets from the start and from the end",
        "- `agent_type` (AI or human) is never a model input.",
        "",
        "## Heads",
        "| head | level | trained | calibration |",
        "|---|---|---|---|",
    ]
    for spec in model.specs:
        trained = "yes" if spec.name in config.trained_heads else "**no**"
        calibrator = model.calibration.get(spec.name)
        method = type(calibrator).__name__ if calibrator is not None else "none"
        lines.append(f"| `{spec.name}` | {spec.level} | {trained} | {method} |")
    sections = dict(sections)
    if "Training data" not in sections:
        sections["Training data"] = (
            "None: no head of this model was trained." if not config.trained_heads else
            "Not documented by whoever saved this model: treat its scores with suspicion.")
    lines += ["", "## Outputs", _OUTPUTS.strip(), "",
              f"Weights SHA-256 (over names, dtypes, shapes and bytes): `{model.weights_sha256}`"]
    for title, body in sections.items():
        lines += ["", f"## {title}", body.strip()]
    return "\n".join(lines) + "\n"


_OUTPUTS = """
- `resolution`, `satisfaction`: P(level > 0) from calibrated distributions over the 5-level
  scale -2..2 (`resolution_dist`, `satisfaction_dist`).
- `empathy`: mean over agent turns of (expected EPITOME levels of emotional reactions,
  interpretations and explorations) / 6, a graded score in [0, 1]; null without agent turns.
- `repeat_inquiry`: P(the customer contacts again about the same matter); see Training data
  for what the head learned from.
- `escalation`: P(a human or higher tier was needed at some turn), a noisy-OR of per-turn
  hazards; `escalation_turn`: the first turn at which the running estimate reaches 0.5.
- Evidence: the change in each target's logit when a turn is left out of the pooling.
"""
