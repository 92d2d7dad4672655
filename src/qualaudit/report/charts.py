"""The report's charts as static SVG (matplotlib, imported only when a chart is drawn).

Why matplotlib and SVG: a static SVG of a chart is a few to a few tens of kilobytes and needs
no script to show, so a report stays small, opens offline, prints to PDF and can carry a
Content-Security-Policy that allows no script at all; plotly would inline about 4.6 MB of
JavaScript per page. Charts are embedded as `<img src="data:image/svg+xml;base64,...">`:
an SVG shown as an image never runs script nor fetches anything, whatever its text holds.
Text from data (cohort names, periods) is drawn as plain text (`text.parse_math` off, so
`$` is a dollar sign, not mathtext), and the SVG carries no date, so the same report gives
the same bytes.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..schema import ROW_TARGETS

WIDTH = 9.0  # inches; every chart is this wide
_RC = {"svg.fonttype": "none", "text.parse_math": False, "svg.hashsalt": "qualaudit",
       "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
ALERT_COLOR, BAND_COLOR, LINE_COLOR = "#c0392b", "#aec7e8", "#1f77b4"
MAX_LABEL = 40  # characters of a data label drawn in a chart


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # a dependency, but a slim install may lack it
        raise ImportError("the HTML report draws its charts with matplotlib: "
                          "pip install 'matplotlib>=3.8'") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def svg_data_uri(figure: Any) -> tuple[str, int, int]:
    """(data: URI of the figure as SVG, width px, height px); the figure is closed."""
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    svg = buffer.getvalue()
    # the size the tight bounding box gave, in points (1/72 in) -> CSS pixels (1/96 in)
    size = re.search(rb'<svg [^>]*width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    width, height = (int(round(float(v) * 4 / 3)) for v in size.groups())
    encoded = base64.b64encode(svg).decode("ascii")
    return f"data:image/svg+xml;base64,{encoded}", width, height


def _label(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _error_bar(entry: Mapping[str, Any]) -> list[list[float]]:
    """[[below], [above]] the value for an error bar: a missing bound draws none, and a
    percentile interval that does not contain its estimate (possible for a bootstrap of a
    small sample) draws nothing past it."""
    value = entry["value"]
    low = entry["low"] if entry["low"] is not None else value
    high = entry["high"] if entry["high"] is not None else value
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def cohort_chart(entries: Sequence[Mapping[str, Any]], key: str) -> tuple[str, int, int]:
    """One panel per score: each cohort's mean with its 95% interval (small cohorts hollow)."""
    plt = _pyplot()
    with plt.rc_context(_RC):
        rows = entries[:30]
        height = 1.2 + 0.28 * len(rows)
        figure, axes = plt.subplots(1, len(ROW_TARGETS), figsize=(WIDTH * 1.3, height), sharey=True,
                                    layout="constrained")
        labels = [_label(e["cohort"]) for e in rows]
        for axis, target in zip(axes, ROW_TARGETS):
            for y, entry in enumerate(rows):
                mean = entry["targets"][target]["mean"]
                if mean["value"] is None:
                    continue
                axis.errorbar(mean["value"], y, xerr=_error_bar(mean),
                              fmt="o", color=LINE_COLOR, mfc="white" if entry["small"] else LINE_COLOR,
                              capsize=3)
            axis.set_title(target.replace("_", " "))
            axis.set_xlim(0, 1)
            axis.grid(axis="x", alpha=0.3)
        axes[0].set_yticks(range(len(rows)), labels)
        axes[0].invert_yaxis()
        figure.suptitle(f"By {_label(key)}: mean and 95% interval (hollow: small cohort)")
        return svg_data_uri(figure)


def ai_vs_human_chart(section: Mapping[str, Any]) -> tuple[str, int, int]:
    """Raw and adjusted difference (AI minus human) per score, with intervals."""
    plt = _pyplot()
    with plt.rc_context(_RC):
        figure, axis = plt.subplots(figsize=(WIDTH, 3.2))
        targets = list(section["targets"])
        for offset, kind, color in ((-0.15, "raw", "#7f7f7f"), (0.15, "adjusted", LINE_COLOR)):
            for y, target in enumerate(targets):
                r = section["targets"][target][kind]
                if r["value"] is None:
                    continue
                axis.errorbar(r["value"], y + offset, xerr=_error_bar(r),
                              fmt="o", color=color, capsize=3, label=kind if y == 0 else None)
        axis.axvline(0, color="black", lw=0.8)
        axis.set_yticks(range(len(targets)), [t.replace("_", " ") for t in targets])
        axis.invert_yaxis()
        axis.set_xlabel("AI minus human")
        axis.legend(loc="lower right")
        axis.set_title("AI vs human: raw and like-for-like (adjusted) difference, 95% intervals")
        return svg_data_uri(figure)


def histogram_chart(histogram: Sequence[Mapping[str, Any]]) -> tuple[str, int, int]:
    """Escalation timing: conversations by AI turns after the escalation turn."""
    plt = _pyplot()
    with plt.rc_context(_RC):
        figure, axis = plt.subplots(figsize=(WIDTH, 2.8))
        axis.bar([h["turns"] for h in histogram], [h["count"] for h in histogram], color=LINE_COLOR)
        axis.set_xlabel("AI turns after escalation became needed (before a hand-off or the end)")
        axis.set_ylabel("conversations")
        axis.set_title("Escalation timing")
        return svg_data_uri(figure)


def speed_chart(entries: Sequence[Mapping[str, Any]], key: str) -> tuple[str, int, int]:
    """Median handle time against resolution, one point per cohort."""
    plt = _pyplot()
    with plt.rc_context(_RC):
        figure, axis = plt.subplots(figsize=(WIDTH, 3.2))
        for entry in entries[:30]:
            r = entry["resolution"]
            if r["value"] is None:
                continue
            axis.scatter(entry["median_minutes"], r["value"], color=LINE_COLOR,
                         facecolors="white" if entry["small"] else LINE_COLOR)
            axis.annotate(_label(entry["cohort"]), (entry["median_minutes"], r["value"]),
                          textcoords="offset points", xytext=(5, 3))
        axis.set_xlabel("median handle time (minutes)")
        axis.set_ylabel("mean resolution")
        axis.set_title(f"Speed beside quality, by {_label(key)}")
        axis.grid(alpha=0.3)
        return svg_data_uri(figure)


def trend_chart(series: Mapping[str, Any], periods: Sequence[str],
                model_changes: Sequence[str]) -> tuple[str, int, int]:
    """One panel per score: period means with a 95% band; periods from an alert's start in
    red; dashed lines where the model changed."""
    plt = _pyplot()
    with plt.rc_context(_RC):
        figure, axes = plt.subplots(len(ROW_TARGETS), 1, figsize=(WIDTH, 1.6 * len(ROW_TARGETS)),
                                    sharex=True, layout="constrained")
        x = list(range(len(periods)))
        for axis, target in zip(axes, ROW_TARGETS):
            result = series["targets"][target]
            points = result["points"]
            means = [p["mean"] if p["mean"] is not None else float("nan") for p in points]
            lows = [p["low"] if p["low"] is not None else float("nan") for p in points]
            highs = [p["high"] if p["high"] is not None else float("nan") for p in points]
            axis.fill_between(x, lows, highs, color=BAND_COLOR, alpha=0.6, lw=0)
            axis.plot(x, means, color=LINE_COLOR, lw=1.2, marker="o", ms=2.5)
            if result.get("alert"):
                start = result["change_from"]
                axis.plot(x[start:], means[start:], "o", color=ALERT_COLOR, ms=4,
                          label="alert (CUSUM)")
                axis.legend(loc="lower left", fontsize=7)
            for index in (periods.index(p) for p in model_changes if p in periods):
                axis.axvline(index, color="#555555", ls="--", lw=0.8)
            axis.set_ylabel(target.replace("_", " "), fontsize=8)
        step = max(1, len(periods) // 13)
        axes[-1].set_xticks(x[::step], [_label(p) for p in periods[::step]], rotation=45,
                            ha="right")
        figure.suptitle(f"{_label(series['key'])} = {_label(series['cohort'])}: per period, 95% "
                        "band; red: alert; dashed: model change")
        return svg_data_uri(figure)
