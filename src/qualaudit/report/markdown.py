"""The audit report as Markdown, for tickets and pull requests.

Every text cell that comes from data (ids, cohort values, metadata, transcript text) is made
inert: a leading =, +, -, @ gets a quote (`io.writers.formula_guarded`, as the CSV outputs
do), and the characters Markdown or HTML would act on (`|`, `<`, `>`, `&`, backticks,
brackets, newlines) are escaped. Numbers are formatted by the report, never guarded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..io.writers import formula_guarded
from ..schema import ROW_TARGETS
from .agreement import to_markdown as agreement_markdown
from .build import present_sections
from .table import MAX_COHORTS

_ESCAPES = str.maketrans({"|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;", "`": "\\`",
                          "[": "\\[", "]": "\\]", "*": "\\*", "_": "\\_", "\n": " ", "\r": " "})
SHOWN_PERIODS = 60


def text_cell(value: Any) -> str:
    """A data-derived text cell: formula-guarded, then escaped for Markdown and HTML."""
    if value is None:
        return "–"
    return str(formula_guarded(str(value))).translate(_ESCAPES)


def number(value: Any, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def interval(entry: Mapping[str, Any] | None, digits: int = 2, signed: bool = False) -> str:
    """"value [low, high]" of {"value", "low", "high"} ("–" where missing)."""
    if not entry or entry.get("value") is None:
        return "–"
    text = number(entry["value"], digits, signed)
    if entry.get("low") is not None and entry.get("high") is not None:
        text += f" [{number(entry['low'], digits, signed)}, {number(entry['high'], digits, signed)}]"
    return text


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def to_markdown(report: Mapping[str, Any]) -> str:
    """The whole report (see `build.build_report`) as one Markdown document."""
    lines = ["# qualaudit audit report", ""]
    if report.get("title"):
        lines += [f"**{text_cell(report['title'])}**", ""]
    provenance = report["provenance"]
    if "n_conversations" in report:
        types = ", ".join(f"{text_cell(k)} {v}" for k, v in report.get("agent_types", {}).items())
        lines += [f"{report['n_conversations']} conversations ({types}) from "
                  f"{len(provenance['inputs'])} score file(s); qualaudit "
                  f"{provenance['qualaudit_version']}, seed {provenance['seed']}. Intervals are "
                  "95%. † marks a small cohort or period (intervals unstable).", ""]
        lines += [f"> **Note:** {text_cell(note)}" for note in report.get("notes", [])] + [""]
    renderers = {"cohorts": _cohorts, "ai_vs_human": _ai_vs_human,
                 "escalation_timing": _escalation, "speed": _speed, "trends": _trends,
                 "triage": _triage, "agreement": _agreement, "compare": _compare,
                 "exclusions": _exclusions}
    for name, section in present_sections(report):
        lines += renderers[name](section)
    lines += _provenance(provenance)
    return "\n".join(lines).rstrip() + "\n"


def _agreement(section: Mapping[str, Any]) -> list[str]:
    return ["## Agreement with your QA labels", "", agreement_markdown(section)]


def _cohorts(cohorts: Mapping[str, Any]) -> list[str]:
    thresholds = cohorts["thresholds"]
    lines = ["## Cohorts", "",
             "Mean score [95% interval] and, in brackets after it, the share at or over the "
             "decision threshold (" + ", ".join(f"{t} {v:g}" for t, v in thresholds.items()) +
             "). Means: bootstrap, clustered by customer_id when rows carry one (analytic "
             "above 20,000); shares: Wilson (on the effective n when customers cluster).", ""]
    head = ["cohort", "n", *ROW_TARGETS]
    for key, entries in cohorts["tables"].items():
        rows = []
        for e in entries:
            cells = [text_cell(e["cohort"]) + (" †" if e["small"] else ""), str(e["n"])]
            for target in ROW_TARGETS:
                r = e["targets"][target]
                cell = interval(r["mean"])
                if "share" in r and r["share"]["value"] is not None:
                    cell += f" (share {interval(r['share'])})"
                cells.append(cell)
            rows.append(cells)
        lines += [f"### By {text_cell(key)}", "", *table(head, rows)]
        rest = cohorts.get("omitted", {}).get(key)
        if rest:
            lines += [omitted_sentence(rest), ""]
    return lines


def shown_strata(strata: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """The `MAX_COHORTS` largest strata (by conversations), and how many more there are."""
    ranked = sorted(strata, key=lambda s: -(s["n_a"] + s["n_b"]))
    return ranked[:MAX_COHORTS], max(0, len(ranked) - MAX_COHORTS)


def names_list(names: Sequence[str], limit: int = 10) -> str | None:
    """"a, b, c" for up to `limit` names, then "and N more"; None for none."""
    if not names:
        return None
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def omitted_sentence(rest: Mapping[str, int]) -> str:
    """What a cohort table leaves out when a key has more values than it lists."""
    return (f"{rest['cohorts']} smaller cohort(s) ({rest['rows']} conversations) are not listed "
            f"here (the {MAX_COHORTS} largest are); they count in every other figure.")


def _ai_vs_human(section: Mapping[str, Any]) -> list[str]:
    lines = ["## AI vs human, like for like", "",
             f"AI (n={section['n_ai']}) minus human (n={section['n_human']}); strata: "
             f"{text_cell(section['strata_source'])}; reference mix: {section['reference']}. "
             "The adjusted difference compares like with like: each stratum's difference, "
             "weighted by the reference mix.", ""]
    rows = []
    for target, r in section["targets"].items():
        rows.append([target, interval(r["raw"], 3, True), interval(r["adjusted"], 3, True),
                     text_cell(names_list(r["not_comparable"]))])
    lines += table(["target", "raw difference", "adjusted difference", "not comparable"], rows)
    for r in section["targets"].values():
        if r.get("mix_effect"):
            lines += [f"**{r['mix_effect']}**", ""]
    resolution = section["targets"].get("resolution")
    if resolution:
        strata, more = shown_strata(resolution["strata"])
        strata_rows = [[text_cell(s["name"]), str(s["n_a"]), str(s["n_b"]), number(s["mean_a"]),
                        number(s["mean_b"]), number(s["weight"]),
                        "yes" if s["comparable"] else "no"] for s in strata]
        lines += ["Resolution by stratum:", "",
                  *table(["stratum", "n AI", "n human", "AI", "human", "weight", "comparable"],
                         strata_rows)]
        if more:
            lines += [f"{more} smaller strata are in the JSON report.", ""]
    left = {k: v for k, v in section["left_out"].items() if v}
    if left:
        lines += ["Left out: " + "; ".join(f"{k}: {v}" for k, v in left.items()), ""]
    lines += [f"- {text_cell(note)}" for note in section["notes"]]
    return lines + [""]


def _escalation(section: Mapping[str, Any]) -> list[str]:
    lines = ["## Escalation timing (AI conversations)", "",
             f"Escalation became needed in {section['n_escalation_needed']} of "
             f"{section['n_ai']} AI conversations ({interval(section['share_needed'])}).", ""]
    if section.get("histogram"):
        lines += [f"Of {section['n_timed']} with turn-by-turn agent types, the bot answered a "
                  f"median of {section['median_turns']:g} more turn(s) after escalation became "
                  f"needed (mean {section['mean_turns']:.1f}); {section['handed_off']} were "
                  f"handed to a human, {section['not_handed_off']} never were.", ""]
        lines += table(["AI turns after escalation", "conversations"],
                       [[h["turns"], str(h["count"])] for h in section["histogram"]])
    if section.get("note"):
        lines += [section["note"], ""]
    return lines


def _speed(section: Mapping[str, Any]) -> list[str]:
    lines = ["## Speed beside quality", ""]
    if section.get("note"):
        return lines + [section["note"], ""]
    if section.get("summary"):
        lines += [section["summary"], ""]
    for key, entries in section["tables"].items():
        rows = [[text_cell(e["cohort"]) + (" †" if e["small"] else ""), str(e["n"]),
                 number(e["median_minutes"], 1), interval(e["minutes"], 1),
                 interval(e["resolution"]), interval(e["repeat_inquiry"])] for e in entries]
        lines += [f"### By {text_cell(key)}", "",
                  *table(["cohort", "n", "median minutes", "mean minutes", "resolution",
                          "repeat inquiry"], rows)]
    if section.get("negative_durations"):
        lines += [f"{section['negative_durations']} conversation(s) end before they start: "
                  "left out of handle time.", ""]
    return lines


def _trends(section: Mapping[str, Any]) -> list[str]:
    tests = section["tests"]
    lines = ["## Trends and decline alerts", "",
             f"Per {section['over']} ({section['tz']}; weeks are ISO weeks). Alert: "
             f"{tests['alert']}. Retrospective: {tests['retrospective']}. False alarms: "
             f"{tests['multiplicity']}. Baseline: "
             f"{', '.join(section.get('baseline_periods', [])) or '–'}.", ""]
    alerts = section["alerts"]
    if alerts:
        rows = [[text_cell(a["key"]), text_cell(a["cohort"]), a["target"], a["direction"],
                 "yes" if a["cusum_alert"] else "no", text_cell(a["since"]),
                 number(a["cusum_p"], 4), "yes" if a["trend"] else "no", number(a["mk_p"], 4),
                 text_cell(a.get("model_change"))] for a in alerts]
        lines += table(["key", "cohort", "target", "worse if", "CUSUM alert", "since",
                        "CUSUM p", "MK trend", "MK p", "model change"], rows)
    else:
        lines += ["No alert: no series changed for the worse beyond what the tests allow for.", ""]
    overall = next((s for s in section["series"] if s["key"] == "all"), None)
    if overall:
        periods = section["periods"][-SHOWN_PERIODS:]
        offset = len(section["periods"]) - len(periods)
        rows = []
        for i, period in enumerate(periods, offset):
            first = overall["targets"]["resolution"]["points"][i]
            rows.append([period + (" †" if first["small"] else ""), str(first["n"])]
                        + [interval(overall["targets"][t]["points"][i]) for t in ROW_TARGETS])
        lines += ["All conversations, per period:", "",
                  *table(["period", "n", *ROW_TARGETS], rows)]
        changes = overall["model_changes"]
        if changes:
            lines += ["Model changes in this series (read a change here as possibly the "
                      "model's, not the conversations'): " + "; ".join(
                          f"{text_cell(c['period'])}: {', '.join(text_cell(m) for m in c['models'])}"
                          for c in changes), ""]
    lines += [f"- {text_cell(n)}" for n in section["notes"]]
    return lines + [""]


def _triage(section: Mapping[str, Any]) -> list[str]:
    redacted = "redacted" if section["redacted"] else "NOT redacted (--no-redact)"
    lines = ["## Triage queues", "",
             "Worst first. Evidence turns: the turns that moved the score most"
             + (f"; their text from the transcripts, personal data {redacted}."
                if section["transcripts"] else " (pass --transcripts for their text)."), ""]
    for target, queue in section["queues"].items():
        lines += [f"### {target}: {queue['n_past_threshold']} conversation(s) "
                  f"{queue['direction']} {queue['threshold']:g}", ""]
        rows = []
        for item in queue["items"]:
            evidence = "; ".join(f"turn {e['index']}" + (f": {text_cell(e['text'])}"
                                                         if e.get("text") else "")
                                 for e in item["evidence"]) or "–"
            rows.append([text_cell(item["id"]), number(item["score"], 3),
                         text_cell(item["agent_type"]), evidence])
        if rows:
            lines += table(["id", "score", "agent type", "evidence"], rows)
    return lines


def _compare(section: Mapping[str, Any]) -> list[str]:
    lines = ["## Two versions compared", "",
             f"B ({text_cell(section['b'])}) minus A ({text_cell(section['a'])}), paired on "
             f"{section['n_paired']} shared conversation ids; only in A: {section['only_in_a']}, "
             f"only in B: {section['only_in_b']}.", ""]
    if section.get("note"):
        return lines + [section["note"], ""]
    rows = []
    for target, r in section["targets"].items():
        flips = r.get("flips")
        rows.append([target, str(r["n"]), number(r["mean_a"], 3), number(r["mean_b"], 3),
                     interval(r["difference"], 3, True),
                     f"{flips['share']:.3f} [{number(flips['low'], 3)}, {number(flips['high'], 3)}]"
                     f" (up {flips['up']}, down {flips['down']})" if flips else "–"])
    lines += table(["target", "n", "mean A", "mean B", "difference B - A", "flipped decisions"],
                   rows)
    for target, r in section["targets"].items():
        movers = [[text_cell(m["id"]), number(m["a"], 3), number(m["b"], 3),
                   number(m["change"], 3, True)] for m in r["top_movers"][:5]]
        lines += [f"Moved most on {target}:", "", *table(["id", "A", "B", "change"], movers)]
    return lines


def _exclusions(exclusions: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["## Excluded rows", ""]
    if not exclusions:
        return lines + ["Nothing was excluded.", ""]
    rows = [[text_cell(e["reason"]), text_cell(e["section"]), str(e["count"]),
             "; ".join(text_cell(f"{x.get('source')}:{x.get('line')}"
                                 + (f" ({x['id']})" if x.get("id") else ""))
                       for x in e["examples"])] for e in exclusions]
    return lines + table(["reason", "left out of", "rows", "first locations"], rows)


def _provenance(provenance: Mapping[str, Any]) -> list[str]:
    lines = ["## Provenance", "",
             f"qualaudit {provenance['qualaudit_version']}, generated "
             f"{provenance['generated_at']}, seed {provenance['seed']}, "
             f"{provenance['n_boot']} bootstrap resamples.", ""]
    rows = [[text_cell(s["path"]), str(s["rows"]), text_cell(s.get("sha256"))]
            for s in provenance["inputs"]]
    if rows:
        lines += table(["input", "rows", "sha256"], rows)
    models = [[text_cell(m["name"]), text_cell(m["version"]),
               text_cell((m.get("weights_sha256") or "")[:16]), text_cell(m["precision"]),
               str(m.get("rows", ""))] for m in provenance["models"]]
    if models:
        lines += table(["model", "version", "weights sha256", "precision", "rows"], models)
    return lines
