"""The job behind `qualaudit train`: train, save fp16, fit the calibration on the saved
model's dev outputs, and write the model card. Every figure in the card is measured on the
weights as shipped (fp16, reloaded), not on the float32 weights in memory."""

from __future__ import annotations

import inspect
import platform
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..calibration import Calibration
from ..model import QualityModel
from .calibration_job import HeadCalibration, fit_calibration
from .datasets import Example, by_split
from .train import TrainingArgs, TrainResult, train

LICENCES = """\
| source | what it supervises | licence |
|---|---|---|
| NTCIR-14 STC-3 DCH-1, English (`stc3_dch/train_data_en.json`) | resolution, satisfaction, solution given / confirmed, escalation, repeat_inquiry | annotations CC BY 4.0; dialogue text crawled from Weibo |
| USS: MultiWOZ, SGD, ReDial (`uss/`) | dissatisfied signal, asks_for_human (negatives), satisfaction, repeat_inquiry | research data, no licence file |
| EPITOME (`epitome/`) | empathy (3 mechanisms x 3 levels) | **academic licence: research use only** |
| Bitext customer-support sample (`bitext/`) | asks_for_human and complaint signals, escalation | CDLA-Sharing-1.0 |
| DBDC3 English dev (`dbdc3/`) | breakdown, escalation (weight 0.3), asks_for_human (negatives) | MIT |

Because EPITOME is licensed for research use only, the empathy head (and the shared encoder it
helped train) inherits that restriction: check it before commercial use, or retrain without
EPITOME (`--sources stc3,uss,bitext,dbdc3`) and fine-tune empathy on your own labels."""


@dataclass
class BuildSummary:
    """What `build` did: the training run, and the calibration fitted on the saved model."""

    directory: Path
    training: TrainResult
    calibration: list[HeadCalibration]
    seconds: float


def label_card() -> str:
    """How each source maps onto the heads, and why: the readers' own docstrings, so the
    card cannot drift from the code."""
    from .datasets import augment, bitext, dbdc3, epitome, stc3, uss

    parts = [f"**{m.NAME}.** {inspect.cleandoc(m.__doc__)}" for m in (stc3, uss, epitome, bitext, dbdc3)]
    parts.append(f"**Augmentations.** {inspect.cleandoc(augment.__doc__)}")
    return "\n\n".join(parts)


def calibration_table(report: list[HeadCalibration]) -> str:
    rows = ["| head | dev items | method | ECE before | ECE after |", "|---|---|---|---|---|"]
    rows += [f"| `{r.head}` | {r.n} | {r.method} | {r.ece_before:.3f} | {r.ece_after:.3f} |"
             for r in report]
    return "\n".join(rows)


def build(args: TrainingArgs, method: str = "temperature", command: str = "",
          extra_sections: dict[str, str] | None = None,
          select: Callable[[QualityModel], float] | None = None) -> BuildSummary:
    """Train per `args` (keeping the weights `select` rates highest, if given), then `finish`."""
    start = time.perf_counter()
    result = train(args, select)
    report = finish(result, args, method, command, extra_sections)
    return BuildSummary(Path(args.output_dir), result, report, time.perf_counter() - start)


def finish(result: TrainResult, args: TrainingArgs, method: str = "temperature",
           command: str = "", extra_sections: dict[str, str] | None = None) -> list[HeadCalibration]:
    """Save the trained model to `args.output_dir` in fp16, calibrate it on the calibration
    half of the dev split (early stopping used the other half) as reloaded from disk, and save
    it again with calibration and model card. Named heads trained on a frozen encoder leave
    the scores of the heads `_other_heads` names as they were, so those keep the calibration
    they came with."""
    untouched = (_other_heads(result.model, args.heads, args.reads_only)
                 if args.heads is not None and args.freeze_encoder else set())
    return _save_calibrated(result.model, Path(args.output_dir), args.all_examples(), method, {
        "Training data": LICENCES if args.data_dir else "The user's own labelled transcripts.",
        "Label card": label_card() if args.data_dir else "See the labels file given to `qualaudit train`.",
        "Recipe": recipe_text(args, result, command),
    }, extra_sections, keep=untouched)[1]


def soup(directories: list[str | Path], output_dir: str | Path, examples: list[Example],
         version: str, method: str = "temperature", command: str = "",
         card_sections: dict[str, str] | None = None,
         heads: Collection[str] | None = None,
         onto: str | Path | None = None) -> QualityModel:
    """The uniform average of the weights of saved models of one design and heads (a "model
    soup", Wortsman et al. 2022), saved and calibrated as `finish` saves a trained model.
    Fine-tunes of one initial model that differ only in seed and data order sit in one basin,
    so their average is a model too, and often better than each on data none of them trained
    on: the seed's noise averages out at no training cost. `examples` gives the calibration
    half of the dev split, as for the ingredients; their own calibrations are dropped, but for
    ingredients that trained only the targets `heads` names on a frozen encoder, the heads whose
    scores that training left as they were (`_other_heads`) keep the first ingredient's
    calibration (their weights are the same in each). `onto` (with `heads`) puts only the
    average of those heads' own layers into another saved model of the design, with its
    calibration for those same heads: the seeds of one head,
    trained from an earlier model, averaged into a later one that differs only in other heads.
    `card_sections` (their training data, label card) join the generated recipe in the card.
    Returns the soup as saved (fp16 weights, calibrated; the calibration report is in its card)."""
    if len(directories) < 2:
        raise ValueError(f"a soup needs at least two models, found {len(directories)}")
    if onto is not None and not heads:
        raise ValueError("onto puts the average of the named heads into another model: name them")
    models = [QualityModel.from_pretrained(d) for d in directories]
    first = models[0].config
    others = [*zip(directories[1:], models[1:], strict=True)]
    base = models[0] if onto is None else QualityModel.from_pretrained(onto)
    if onto is not None:
        others.append((onto, base))
    for directory, model in others:
        theirs, ours = (asdict(replace(c, name="", version="")) for c in (model.config, first))
        if theirs != ours:
            differ = sorted(k for k, v in theirs.items() if ours[k] != v)
            raise ValueError(f"{directory} is not of the design of {directories[0]}: "
                             f"config fields {differ} differ; only models of one design and "
                             "heads can be averaged")
    targets = {s.target for s in models[0].specs}
    if heads is not None and not set(heads) <= targets:
        raise ValueError(f"heads: unknown target(s) {sorted(set(heads) - targets)}; the models "
                         f"have {sorted(targets)}")
    averaged_heads = [s for s in base.specs if onto is not None and s.target in heads]
    states = [m.state_dict() for m in models]
    average = {k: sum(s[k].float() for s in states) / len(states)
               if v.is_floating_point() and (onto is None or any(h.owns(k) for h in averaged_heads))
               else v for k, v in base.state_dict().items()}
    config = replace(base.config, version=version)
    untouched = set() if heads is None else _other_heads(base, heads)
    kept = Calibration({h: c for h, c in base.calibration.items() if h in untouched})
    model = QualityModel(config, base.encoder, base.tokenizer, kept)
    model.load_state_dict(average)
    model.eval()
    ingredients = "\n".join(f"- `{d}`: {m.config.name} {m.config.version}, weights SHA-256 "
                            f"`{m.weights_sha256}`" for d, m in zip(directories, models, strict=True))
    averaged = (f"the layers of {', '.join(sorted(heads))} in `{onto}` ({base.config.name} "
                f"{base.config.version}, weights SHA-256 `{base.weights_sha256}`) replaced by "
                "the uniform average of theirs in" if onto is not None else
                "the uniform average of the weights of")
    recipe = (f"- command: `{command or 'qualaudit.training.recipe.soup'}`\n"
              f"- {averaged} {len(models)} models of this design "
              "(a model soup; their recipes are in their own cards):\n" + ingredients)
    return _save_calibrated(model, Path(output_dir), examples, method,
                            {**(card_sections or {}), "Recipe": recipe}, keep=untouched)[0]


def _other_heads(model: QualityModel, targets: Collection[str], reads_only: bool = False) -> set[str]:
    """The names of the heads that a run training only `targets` on a frozen encoder leaves as
    they were: the other targets' heads, less the conversation heads when a trained target is a
    per-turn head, whose logits every conversation head reads (`TurnHeads.features`). The
    reads that `reads_only` trains are added after those logits are read."""
    feeds = not reads_only and any(s.level != "conversation" for s in model.specs if s.target in targets)
    return {s.name for s in model.specs
            if s.target not in targets and not (feeds and s.level == "conversation")}


def _save_calibrated(model: QualityModel, out: Path, examples: list[Example], method: str,
                     sections: dict[str, str], extra_sections: dict[str, str] | None = None,
                     keep: Collection[str] = ()) -> tuple[QualityModel, list[HeadCalibration]]:
    """Save `model` to `out` in fp16, calibrate it on the `dev:calibrate` half of `examples`
    as reloaded from disk (early stopping used the other half), and save it again with its
    calibration and model card; the model as saved, and the calibration report. The heads in
    `keep` that have a calibration keep it."""
    model.save_pretrained(out, dtype=torch.float16)
    shipped = QualityModel.from_pretrained(out)
    kept = {head: shipped.calibration[head] for head in sorted(keep) if head in shipped.calibration}
    report = [r for r in fit_calibration(shipped, by_split(examples, "dev:calibrate"), method=method)
              if r.head not in kept]
    shipped.calibration.update(kept)
    note = (f" The heads this run did not change keep the calibration they came with: "
            f"{', '.join(f'`{h}`' for h in kept)}." if kept else "")
    sections = {
        **sections,
        "Calibration": "Fitted per head on the calibration half of the dev split (no "
                       "augmentations; early stopping used the other half), on the fp16 weights "
                       "as saved. ECE is measured on the same items, against the same (soft) "
                       "labels the head was trained on; ECE on data the calibration did not see "
                       f"is in the cross-source figures.{note}\n\n" + calibration_table(report),
        **(extra_sections or {}),
    }
    shipped.save_pretrained(out, card_sections=sections, dtype=torch.float16)
    return shipped, report


def recipe_text(args: TrainingArgs, result: TrainResult, command: str) -> str:
    settings = {k: v for k, v in asdict(args).items() if k not in ("examples", "progress")}
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, {args.device}"
    selected = bool(result.dev_losses) and "selection" in result.dev_losses[0]
    return "\n".join([
        f"- command: `{command or 'qualaudit train'}`",
        f"- {result.steps} steps, {result.train_tokens:,} training tokens, "
        f"{result.seconds / 60:.1f} min on {machine}; weights kept at step {result.best_step} "
        f"({'the highest selection metric' if selected else 'the lowest dev loss'})",
        f"- settings: `{settings}`",
        "- losses: one per head, averaged over the items its sources label (masked); soft "
        "targets (annotator shares and distributions); class imbalance by pos_weight = "
        "sqrt(neg/pos) (binary) and 1/sqrt(frequency) class weights (empathy levels); "
        "AdamW, linear warm-up and decay, gradient clipping at 1.0; " + (
            "the weights with the highest selection metric (the mean main metric of the "
            "cross-source selection pairs, `benchmarks/quality.py --protocol`) are kept "
            "(early stopping)." if selected else
            "the weights with the lowest summed dev loss are kept (early stopping)."),
        "- dev losses: " + "; ".join(
            f"step {d['step']}: {d['total']:.3f}"
            + (f" (selection {d['selection']:.4f})" if selected else "")
            for d in result.dev_losses),
    ])

