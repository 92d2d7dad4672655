"""The README.md model card written next to every saved model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .heads import HEAD_SPECS
from .schema import OUTPUT_COLUMNS

if TYPE_CHECKING:
    from .model import QualityModel

_UNTRAINED = """> **WARNING: UNTRAINED HEADS.** The heads {heads} of this model were never trained.
> Their scores are random numbers that mean nothing. Do not use them to judge conversations,
> agents or teams. This model exists to test pipelines; train it or load a trained model.
"""


LEADING = ("Transfer",)  # sections placed before the generated facts


def render_model_card(model: QualityModel, sections: dict[str, str]) -> str:
    """Generated facts (heads, calibration, encoder, sizes) plus the caller's own sections
    (data, recipe, metrics, limits), each under its own heading; a "Transfer" section (the
    figures on sources the model did not train on) comes first."""
    config = model.config
    encoder = config.encoder
    n_params = sum(p.numel() for p in model.parameters())
    lines = [f"# {config.name} {config.version}", ""]
    sections = dict(sections)
    for title in LEADING:  # what a reader must see first: how it does where it was not trained
        if title in sections:
            lines += [f"## {title}", sections.pop(title).strip(), ""]
    if config.untrained_heads:
        lines += [_UNTRAINED.format(heads=", ".join(config.untrained_heads)), ""]
    lines += [
        "A qualaudit model: a shared transformer encoder reads "
        + ("the conversation as text, in chunks of turns" if config.reads_conversation
           else "each turn with bounded preceding context")
        + "; small heads score agent turns, customer turns and the whole conversation.",
        "",
        "## Architecture",
        f"- encoder: `{encoder.get('model_type')}`, hidden {encoder.get('hidden_size')}, "
        f"{encoder.get('num_hidden_layers')} layers",
        f"- parameters: {n_params:,}",
        (f"- reading: the conversation as text, turns packed in order into chunks of "
         f"{config.chunk_tokens} tokens (each turn up to {config.max_turn_tokens}); a chunk "
         f"after the first opens with the first {config.max_context_tokens} tokens of the "
         f"opening turn and the last {config.max_context_tokens} of the turn before; a turn's "
         "state pools its own tokens"
         + ("; each turn's tokens attend to their own turn and the turns before it only"
            if config.reading == "conversation_causal" else "")
         if config.reads_conversation else
         f"- turn window: {config.max_turn_tokens} tokens of the turn + "
         f"{config.max_context_tokens} of the previous turn"),
        (f"- turn context: {config.context_layers} causal transformer layer(s) over the turn "
         "states (each turn reads the turns before it; role and position aware), before every head"
         if config.context_layers else "- turn context: none (a turn sees only its window)"),
        f"- conversation pooling: learned attention, {config.conversation_dim} dims, "
        f"{config.position_buckets} position buckets from the start and from the end",
        *([f"- closing read apart ({', '.join(f'`{h}`' for h in config.closing_apart)}): "
           "only the turns before the customer's closing pleasantries (`qualaudit.closing`) are "
           "pooled, read as in the conversation without them (the closing's chunk is read a "
           "second time, cut before it); every other head reads the whole conversation"]
          if config.closing_apart else []),
        *([f"- last turns read ({', '.join(f'`{h}`' for h in config.last_turns)}): beside its "
           "pooled turns, the head reads the last customer turn and the last agent turn it pools, "
           "through a linear map added to the pooled vector"]
          if config.last_turns else []),
        *([_echo_line(config.echo)] if config.echo else []),
        "- `agent_type` (AI or human) is never a model input.",
        "- code: the forward pass is `qualaudit.model.QualityModel.forward`; training, the "
        "calibration fit and this card's recipe are `qualaudit.training` (`train`, "
        "`calibration_job`, `recipe`, `datasets`).",
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
    if "Training data" not in sections:
        sections["Training data"] = (
            "None: no head of this model was trained." if not config.trained_heads else
            "Not documented by whoever saved this model: treat its scores with suspicion.")
    lines += ["", "## Outputs", "One row per transcript (`qualaudit score`; the README's \"Output "
              "rows\" has every detail):", "", *_output_lines(), "",
              f"Weights SHA-256 (over names, dtypes, shapes and bytes): `{model.weights_sha256}`"]
    for title, body in sections.items():
        lines += ["", f"## {title}", body.strip()]
    return "\n".join(lines) + "\n"


def _output_lines() -> list[str]:
    """The output columns, from the one table of them (`schema.OUTPUT_COLUMNS`)."""
    return [f"- `{c.name}`: {c.description}" for c in OUTPUT_COLUMNS]


def _echo_line(echo: list[str]) -> str:
    """The architecture line of the heads that read the echo: turn heads, the causal head, or both."""
    parts = []
    if any(HEAD_SPECS[h].level != "conversation" for h in echo):
        parts.append("a turn head adds a learned vector for how much its turn repeats an earlier "
                     "turn of its role (the largest word overlap, `qualaudit.echo`), and the "
                     "conversation heads read its logits without it")
    if any(HEAD_SPECS[h].level == "conversation" for h in echo):
        parts.append("the causal conversation head adds one to each turn's input to its hazard")
    return f"- echo read ({', '.join(f'`{h}`' for h in echo)}): " + "; ".join(parts)
