"""The audit report as one self-contained HTML file: nothing is fetched when it is viewed (no
scripts, styles, fonts or images from elsewhere), it reads offline and prints to PDF.

Safety: transcripts, metadata values and ids are customer-controlled. Every piece of text
from the report goes through `html.escape` (quotes included) before it reaches the page;
the page builds no element, attribute, link or event handler from data; charts are SVG
images (`charts`), which cannot run script. The page carries a Content-Security-Policy that
allows no script at all (`default-src 'none'`), images only as data: URIs and only its own
inline style, so even a mistake in escaping would run nothing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from . import charts
from .build import present_sections
from .markdown import interval, names_list, number, omitted_sentence, shown_strata

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
       "form-action 'none'")
MAX_TREND_CHARTS = 8  # "all", then the series with alerts (agent type first)

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.86rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f8}td.num{text-align:right;white-space:nowrap}
.small{color:#888}.alert{color:#c0392b;font-weight:600}.note{color:#555;font-size:.9rem}
.mix{background:#fff4e5;border-left:4px solid #e67e22;padding:.4rem .8rem}
.quote{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace;font-size:.8rem}
img.chart{display:block;max-width:100%;height:auto;margin:.6rem 0}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}img.chart,table{break-inside:avoid}}
"""


def esc(value: Any) -> str:
    """Text from data, escaped for HTML text and attribute values; "–" for None."""
    return "–" if value is None else html.escape(str(value), quote=True)


def to_html(report: Mapping[str, Any]) -> str:
    """The whole report (see `build.build_report`) as one HTML document."""
    parts = [_head(), "<h1>qualaudit audit report</h1>"]
    if report.get("title"):
        parts.append(f"<p><strong>{esc(report['title'])}</strong></p>")
    provenance = report["provenance"]
    if "n_conversations" in report:
        types = ", ".join(f"{esc(k)} {v}" for k, v in report.get("agent_types", {}).items())
        parts.append(f"<p>{report['n_conversations']} conversations ({types}) from "
                     f"{len(provenance['inputs'])} score file(s). Intervals are 95%; "
                     "<span class=small>grey</span> marks a small cohort or period.</p>")
        parts += [f"<p class=mix>{esc(note)}</p>" for note in report.get("notes", [])]
    renderers = {"cohorts": _cohorts, "ai_vs_human": _ai_vs_human,
                 "escalation_timing": _escalation, "speed": _speed, "trends": _trends,
                 "triage": _triage, "agreement": _agreement, "compare": _compare,
                 "exclusions": _exclusions}
    for name, section in present_sections(report):
        parts += renderers[name](section)
    parts += _provenance(provenance)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _head() -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>qualaudit audit report</title><style>{_STYLE}</style></head><body>")


def _img(chart: tuple[str, int, int], alt: str) -> str:
    uri, width, height = chart
    return (f"<img class=\"chart\" src=\"{uri}\" width=\"{width}\" height=\"{height}\" "
            f"alt=\"{esc(alt)}\">")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]],
           numeric: Sequence[int] = ()) -> str:
    """A table of cells that are already escaped (or numbers formatted by the report)."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td class=num>{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _cohort_name(entry: Mapping[str, Any]) -> str:
    name = esc(entry["cohort"])
    return f"<span class=small>{name} (small)</span>" if entry["small"] else name


def _cohorts(section: Mapping[str, Any]) -> list[str]:
    from ..schema import ROW_TARGETS

    parts = ["<h2>Cohorts</h2>",
             "<p class=note>Mean score [95% interval]; below it, the share at or over the "
             "decision threshold (" + esc(", ".join(f"{t} {v:g}" for t, v in
                                                    section["thresholds"].items())) +
             "). Means: bootstrap clustered by customer (analytic above 20,000); shares: "
             "Wilson (on the effective n when customers cluster).</p>"]
    for key, entries in section["tables"].items():
        rows = []
        for e in entries:
            cells = [_cohort_name(e), str(e["n"])]
            for target in ROW_TARGETS:
                r = e["targets"][target]
                cell = esc(interval(r["mean"]))
                if "share" in r and r["share"]["value"] is not None:
                    cell += f"<br><span class=note>share {esc(interval(r['share']))}</span>"
                cells.append(cell)
            rows.append(cells)
        parts += [f"<h3>By {esc(key)}</h3>", _img(charts.cohort_chart(entries, key),
                                                   f"scores by {key}"),
                  _table(["cohort", "n", *ROW_TARGETS], rows, numeric=range(1, 7))]
        rest = section.get("omitted", {}).get(key)
        if rest:
            parts.append(f"<p class=note>{esc(omitted_sentence(rest))}</p>")
    return parts


def _ai_vs_human(section: Mapping[str, Any]) -> list[str]:
    parts = ["<h2>AI vs human, like for like</h2>",
             f"<p>AI (n={section['n_ai']}) minus human (n={section['n_human']}); strata: "
             f"{esc(section['strata_source'])}; reference mix: {esc(section['reference'])}.</p>"]
    if not section["targets"]:
        return parts + [f"<p class=note>{esc(n)}</p>" for n in section["notes"]]
    parts.append(_img(charts.ai_vs_human_chart(section), "AI vs human differences"))
    rows = [[esc(t), esc(interval(r["raw"], 3, True)), esc(interval(r["adjusted"], 3, True)),
             esc(names_list(r["not_comparable"]))] for t, r in section["targets"].items()]
    parts.append(_table(["score", "raw difference", "adjusted difference", "not comparable"],
                        rows, numeric=(1, 2)))
    parts += [f"<p class=mix>{esc(r['mix_effect'])}</p>" for r in section["targets"].values()
              if r.get("mix_effect")]
    strata, more = shown_strata(section["targets"]["resolution"]["strata"])
    parts.append(_table(["stratum", "n AI", "n human", "AI resolution", "human resolution",
                         "weight", "comparable"],
                        [[esc(s["name"]), str(s["n_a"]), str(s["n_b"]), number(s["mean_a"]),
                          number(s["mean_b"]), number(s["weight"]),
                          "yes" if s["comparable"] else "no"] for s in strata],
                        numeric=(1, 2, 3, 4, 5)))
    if more:
        parts.append(f"<p class=note>{more} smaller strata are in the JSON report.</p>")
    left = "; ".join(f"{esc(k)}: {v}" for k, v in section["left_out"].items() if v)
    if left:
        parts.append(f"<p class=note>Left out: {left}</p>")
    return parts + [f"<p class=note>{esc(n)}</p>" for n in section["notes"]]


def _escalation(section: Mapping[str, Any]) -> list[str]:
    parts = ["<h2>Escalation timing (AI conversations)</h2>",
             f"<p>Escalation became needed in {section['n_escalation_needed']} of "
             f"{section['n_ai']} AI conversations ({esc(interval(section['share_needed']))}).</p>"]
    if section.get("histogram"):
        parts += [f"<p>Of {section['n_timed']} with turn-by-turn agent types the bot answered a "
                  f"median of {section['median_turns']:g} more turn(s) (mean "
                  f"{section['mean_turns']:.1f}); {section['handed_off']} were handed to a "
                  f"human, {section['not_handed_off']} never were.</p>",
                  _img(charts.histogram_chart(section["histogram"]), "escalation timing")]
    if section.get("note"):
        parts.append(f"<p class=note>{esc(section['note'])}</p>")
    return parts


def _speed(section: Mapping[str, Any]) -> list[str]:
    parts = ["<h2>Speed beside quality</h2>"]
    if section.get("note"):
        return parts + [f"<p class=note>{esc(section['note'])}</p>"]
    if section.get("summary"):
        parts.append(f"<p>{esc(section['summary'])}</p>")
    for key, entries in section["tables"].items():
        rows = [[_cohort_name(e), str(e["n"]), number(e["median_minutes"], 1),
                 esc(interval(e["minutes"], 1)), esc(interval(e["resolution"])),
                 esc(interval(e["repeat_inquiry"]))] for e in entries]
        parts += [f"<h3>By {esc(key)}</h3>", _img(charts.speed_chart(entries, key),
                                                   f"handle time and resolution by {key}"),
                  _table(["cohort", "n", "median minutes", "mean minutes", "resolution",
                          "repeat inquiry"], rows, numeric=range(1, 6))]
    return parts


def _trends(section: Mapping[str, Any]) -> list[str]:
    tests = section["tests"]
    parts = ["<h2>Trends and decline alerts</h2>",
             f"<p class=note>Per {esc(section['over'])} ({esc(section['tz'])}; ISO weeks). "
             f"Alert: {esc(tests['alert'])}. Retrospective: {esc(tests['retrospective'])}. "
             f"False alarms: {esc(tests['multiplicity'])}. Baseline: "
             f"{esc(', '.join(section.get('baseline_periods', [])))}.</p>"]
    alerts = section["alerts"]
    if alerts:
        rows = [[esc(a["key"]), esc(a["cohort"]), esc(a["target"]), esc(a["direction"]),
                 "<span class=alert>yes</span>" if a["cusum_alert"] else "no", esc(a["since"]),
                 number(a["cusum_p"], 4), "yes" if a["trend"] else "no", number(a["mk_p"], 4),
                 esc(a.get("model_change"))] for a in alerts]
        parts.append(_table(["key", "cohort", "score", "worse if", "CUSUM alert", "since",
                             "CUSUM p", "MK trend", "MK p", "model change"], rows,
                            numeric=(6, 8)))
    else:
        parts.append("<p>No alert: no series changed for the worse beyond what the tests "
                     "allow for.</p>")
    alerted = {(a["key"], a["cohort"]) for a in alerts}
    chosen = [s for s in section["series"] if s["key"] == "all"]
    chosen += sorted((s for s in section["series"] if (s["key"], s["cohort"]) in alerted
                      and s["key"] != "all"), key=lambda s: s["key"] != "agent_type")
    for series in chosen[:MAX_TREND_CHARTS]:
        changes = [c["period"] for c in series["model_changes"]]
        parts.append(_img(charts.trend_chart(series, section["periods"], changes),
                          f"trend of {series['key']} {series['cohort']}"))
        if changes:
            parts.append(f"<p class=note>Model changes in this series: {esc(', '.join(changes))}"
                         " (a change there may be the model's, not the conversations').</p>")
    if len(chosen) > MAX_TREND_CHARTS:
        parts.append(f"<p class=note>{len(chosen) - MAX_TREND_CHARTS} more series with alerts "
                     "are in the JSON report.</p>")
    return parts + [f"<p class=note>{esc(n)}</p>" for n in section["notes"]]


def _triage(section: Mapping[str, Any]) -> list[str]:
    redacted = "redacted" if section["redacted"] else "NOT redacted"
    parts = ["<h2>Triage queues</h2>",
             "<p class=note>Worst first, with the turns that moved each score most"
             + (f"; their text from the transcripts, personal data {redacted}.</p>"
                if section["transcripts"] else " (give the transcripts for their text).</p>")]
    for target, queue in section["queues"].items():
        parts.append(f"<h3>{esc(target)}: {queue['n_past_threshold']} conversation(s) "
                     f"{esc(queue['direction'])} {queue['threshold']:g}</h3>")
        rows = []
        for item in queue["items"]:
            evidence = "".join(
                f"<div>turn {e['index']}"
                + (f": <span class=quote>{esc(e['text'])}</span>" if e.get("text") else "")
                + "</div>" for e in item["evidence"]) or "–"
            rows.append([esc(item["id"]), number(item["score"], 3), esc(item["agent_type"]),
                         evidence])
        if rows:
            parts.append(_table(["id", "score", "agent type", "evidence"], rows, numeric=(1,)))
    return parts


def _agreement(section: Mapping[str, Any]) -> list[str]:
    rows = []
    for target, r in section["targets"].items():
        rows.append([esc(target), str(r.get("n", 0))] + [esc(_metric(r.get(m))) for m in
                                                         ("auroc", "f1", "kappa", "qwk", "ece")])
    return ["<h2>Agreement with your QA labels</h2>",
            f"<p>{section['n_matched']} of {section['n_labelled']} labelled conversations "
            f"scored; threshold {section['threshold']:g}.</p>",
            _table(["score", "n", "AUROC", "F1", "kappa", "weighted kappa", "ECE"], rows,
                   numeric=range(1, 7))] + [f"<p class=note>{esc(n)}</p>" for n in section["notes"]]


def _metric(metric: Mapping[str, Any] | None) -> str:
    return "–" if not metric else interval(metric)


def _compare(section: Mapping[str, Any]) -> list[str]:
    parts = ["<h2>Two versions compared</h2>",
             f"<p>B ({esc(section['b'])}) minus A ({esc(section['a'])}), paired on "
             f"{section['n_paired']} shared ids; only in A: {section['only_in_a']}, only in B: "
             f"{section['only_in_b']}.</p>"]
    if section.get("note"):
        return parts + [f"<p class=note>{esc(section['note'])}</p>"]
    rows = []
    for target, r in section["targets"].items():
        flips = r.get("flips")
        rows.append([esc(target), str(r["n"]), number(r["mean_a"], 3), number(r["mean_b"], 3),
                     esc(interval(r["difference"], 3, True)),
                     f"{flips['share']:.3f} (up {flips['up']}, down {flips['down']})"
                     if flips else "–"])
    parts.append(_table(["score", "n", "mean A", "mean B", "difference B - A", "flipped"],
                        rows, numeric=range(1, 5)))
    for target, r in section["targets"].items():
        parts += [f"<h3>Moved most on {esc(target)}</h3>",
                  _table(["id", "A", "B", "change"],
                         [[esc(m["id"]), number(m["a"], 3), number(m["b"], 3),
                           number(m["change"], 3, True)] for m in r["top_movers"][:5]],
                         numeric=(1, 2, 3))]
    return parts


def _exclusions(exclusions: Sequence[Mapping[str, Any]]) -> list[str]:
    if not exclusions:
        return ["<h2>Excluded rows</h2>", "<p>Nothing was excluded.</p>"]
    rows = [[esc(e["reason"]), esc(e["section"]), str(e["count"]),
             esc("; ".join(f"{x.get('source')}:{x.get('line')}" + (f" ({x['id']})" if x.get("id")
                                                                     else "")
                           for x in e["examples"]))] for e in exclusions]
    return ["<h2>Excluded rows</h2>",
            _table(["reason", "left out of", "rows", "first locations"], rows, numeric=(2,))]


def _provenance(provenance: Mapping[str, Any]) -> list[str]:
    parts = ["<h2>Provenance</h2>",
             f"<p>qualaudit {esc(provenance['qualaudit_version'])}, generated "
             f"{esc(provenance['generated_at'])}, seed {esc(provenance['seed'])}, "
             f"{esc(provenance['n_boot'])} bootstrap resamples.</p>"]
    if provenance["inputs"]:
        parts.append(_table(["input", "rows", "sha256"],
                            [[esc(s["path"]), str(s["rows"]), esc(s.get("sha256"))]
                             for s in provenance["inputs"]], numeric=(1,)))
    if provenance["models"]:
        parts.append(_table(["model", "version", "weights sha256", "precision", "rows"],
                            [[esc(m["name"]), esc(m["version"]),
                              esc((m.get("weights_sha256") or "")[:16]), esc(m["precision"]),
                              esc(m.get("rows"))] for m in provenance["models"]],
                            numeric=(4,)))
    return parts
