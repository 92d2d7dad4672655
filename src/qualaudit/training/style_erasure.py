"""The agent wording a templated bot and a human agent differ in, as directions of the
encoder's agent turn states, so that the model can erase it (`ModelConfig.style_erased`).

Reports compare AI and human agents on the scores, so two conversations with the same content,
one in each wording, must score alike. Teaching heads that on the twins they train on did not
carry to other twins (round 135, `benchmarks/README.md`); erasing the directions the twins'
agent turn states differ along (the top singular vectors of the paired differences, the linear
concept erasure of Ravfogel et al. 2020 in one step) removes it from what every head reads.
Those directions are partly what an agent says, not how: erased whole, they took the stated
fix with them (round 135). So the basis is kept orthogonal to the weights of the agent-turn
heads that read the fix and the loop (`KEPT`), whose logits then do not move at all
(round 138).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..batching import builder_for, default_max_turn_chars
from ..model import QualityModel
from ..schema import Transcript

# the agent-turn heads whose logits the erasure leaves exactly as they were
KEPT = ("solution_given", "breakdown")


@torch.inference_mode()
def agent_states(model: QualityModel, transcript: Transcript) -> torch.Tensor:
    """(agent turns, H) encoder states of a transcript's agent turns, as the model reads them
    before anything is erased."""
    builder = builder_for(model.config, model.tokenizer, default_max_turn_chars(model.config.max_turn_tokens))
    windows = builder.build([transcript])
    states = model.encode_windows(windows)[:windows.n_turns]
    return states[torch.tensor(windows.is_agent, dtype=torch.bool, device=states.device)]


def fit_style_erasure(model: QualityModel, twins: Sequence[tuple[Transcript, Transcript]],
                      directions: int, kept: Sequence[str] = KEPT) -> int:
    """Set the model's `style_basis` to the top `directions` singular vectors of the differences
    between each twin's two agent turn states (turn by turn), taken orthogonal to the weights of
    the agent-turn heads of the targets `kept`, and `style_mean` to their mean state; the
    model's config must already ask for that many (`style_erased`). Twins whose agent turns
    differ in number are skipped. Returns the twins used."""
    if model.config.style_erased != directions or directions < 1:
        raise ValueError(f"the model erases {model.config.style_erased} direction(s), asked for "
                         f"{directions}: build it with style_erased={directions} (at least 1)")
    rows = _kept_rows(model, kept)
    model.eval()
    differences, states = [], []
    for a, b in twins:
        first, second = agent_states(model, a), agent_states(model, b)
        if first.shape == second.shape and len(first):
            differences.append(first - second)
            states += [first, second]
    stacked = torch.cat(differences).double() if differences else torch.zeros(0)
    if len(stacked) < directions:
        raise ValueError(f"{len(stacked)} paired agent turns from {len(differences)} usable twins "
                         f"of {len(twins)}: too few for {directions} direction(s)")
    if len(rows):
        q = torch.linalg.qr(rows.T.double()).Q  # (H, rows) orthonormal: what the kept heads read
        stacked = stacked - (stacked @ q) @ q.T
    basis = torch.linalg.svd(stacked, full_matrices=False).Vh[:directions].T
    model.style_basis.copy_(basis.float())
    model.style_mean.copy_(torch.cat(states).mean(0))
    return len(differences)


def _kept_rows(model: QualityModel, kept: Sequence[str]) -> torch.Tensor:
    """(rows, H) the weights of the agent-turn heads of the targets `kept`."""
    heads = {s.target: s for s in model.specs if s.level == "agent_turn"}
    unknown = [t for t in kept if t not in heads]
    if unknown:
        raise ValueError(f"kept: {unknown} are not agent-turn heads of this model; it has {sorted(heads)}")
    if kept and model.config.context_layers:
        raise ValueError("kept heads read the turn context, not the encoder states the erasure "
                         "changes: keep none for a model with context_layers")
    weights = [model.turn_heads.heads[heads[t].key].weight.detach() for t in kept]
    return torch.cat(weights) if weights else torch.zeros(0)


def with_style_erased(model: QualityModel, twins: Sequence[tuple[Transcript, Transcript]],
                      directions: int, kept: Sequence[str] = KEPT) -> tuple[QualityModel, int]:
    """A copy of a model (weights, tokenizer and calibration shared with it) that erases
    `directions` directions fitted on `twins` (`fit_style_erasure`, keeping the heads of
    `kept`), and the twins used."""
    config = dataclasses.replace(model.config, style_erased=directions)
    erased = QualityModel(config, model.encoder, model.tokenizer, model.calibration)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("style_")}
    missing, unexpected = erased.load_state_dict(own, strict=False)
    if unexpected or set(missing) != {"style_basis", "style_mean"}:
        raise ValueError(f"cannot copy the model's weights: missing {missing}, unexpected {unexpected}")
    return erased, fit_style_erasure(erased, twins, directions, kept)
