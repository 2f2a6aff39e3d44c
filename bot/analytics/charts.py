"""Charts for the managers' summary: data in, PNG bytes out.

Drawn with matplotlib's object API on the Agg canvas, never pyplot: no global figure
state, so it is safe in a server and from several threads. Every chart is exactly
1200x600 px (12x6 inches at 100 dpi; not cropped to its contents).

Names come from workflows and are drawn literally: every string that comes from the
data is drawn with mathtext off (a kind called `$x$` shows its dollars), characters
the font lacks become `?` (no glyph warnings), and long names are cut with `…`.
Zero divisions never raise: a kind without decisions says so, and a week without
cases leaves a gap in the rate lines.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.ft2font import FT2Font
from matplotlib.ticker import MaxNLocator

WIDTH, HEIGHT, DPI = 12, 6, 100  # inches, inches, dots per inch: 1200x600 px
EMPTY = "No decisions in this period"
NAME_LENGTH = 32  # characters of a kind's name shown before "…"
WEEK_LENGTH = 12

HEALTHY = "#2a9d8f"
HIGH = "#e76f51"
LOW = "#457b9d"
MUTED = "#6c757d"
BARS = "#a8dadc"
AUTOMATION = "#1d3557"
OVERRIDES = "#e63946"


@dataclass(frozen=True)
class KindRate:
    kind: str
    decisions: int  # human decisions that week
    overrides: int  # of which the human overrode the AI


@dataclass(frozen=True)
class WeekPoint:
    week: str  # ISO week, "2026-W47"
    cases: int  # all cases received that week
    automatic: int  # decided automatically
    overrides: int  # human overrides
    decisions: int  # human decisions


def override_rates_png(
    rows: Sequence[KindRate], healthy: tuple[float, float] = (0.05, 0.20)
) -> bytes:
    """Override rate (overrides / human decisions) by kind as horizontal bars, the
    healthy band shaded, each bar annotated "12% of 40"."""
    return png(override_rates_figure(rows, healthy))


def volume_trend_png(weeks: Sequence[WeekPoint]) -> bytes:
    """Cases per week as bars; the automation rate (automatic / cases) and the override
    rate (overrides / human decisions) as lines in percent on a second axis."""
    return png(volume_trend_figure(weeks))


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes, at exactly its size (no tight bounding box)."""
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)  # the figure's own size: no tight bbox
    return out.getvalue()


def new_figure() -> Figure:
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def empty_figure(title: str) -> Figure:
    figure = new_figure()
    figure.text(0.5, 0.9, title, ha="center", va="center", fontsize=16, **LITERAL)
    figure.text(0.5, 0.5, EMPTY, ha="center", va="center", fontsize=22, color=MUTED, **LITERAL)
    return figure


# Text drawn exactly as given: no TeX, no mathtext.
LITERAL: dict[str, Any] = {"usetex": False, "parse_math": False}


def override_rates_figure(
    rows: Sequence[KindRate], healthy: tuple[float, float] = (0.05, 0.20)
) -> Figure:
    title = "How often people overrode the AI, by kind"
    if not rows:
        return empty_figure(title)
    low, high = sorted((max(0.0, healthy[0]) * 100, max(0.0, healthy[1]) * 100))
    rates = [rate(row.overrides, row.decisions) for row in rows]
    shown = [r for r in rates if r is not None]
    top = max([high, *shown])
    figure = new_figure()
    figure.subplots_adjust(left=0.24, right=0.97, top=0.86, bottom=0.1)
    ax = figure.add_subplot()
    count = len(rows)
    size = 10.0 if count <= 12 else 8.5 if count <= 20 else 7.0
    positions = list(range(count))
    ax.barh(
        positions,
        [r or 0.0 for r in rates],
        height=0.7,
        color=[colour(r, low, high) for r in rates],
        zorder=2,
    )
    ax.axvspan(low, high, color=HEALTHY, alpha=0.15, zorder=1, label=band(healthy))
    ax.set_xlim(0, top * 1.25 + 1)
    ax.set_ylim(count - 0.5, -0.5)  # the first kind at the top
    ax.set_yticks(positions, labels=[""] * count)
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#dddddd", zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel("overridden, % of human decisions", **LITERAL)
    ax.xaxis.set_major_formatter("{x:.0f}%")
    names = ax.get_yaxis_transform()  # x in axes fractions, y in data
    for position, row, value in zip(positions, rows, rates, strict=True):
        ax.text(
            -0.01,
            position,
            cut(row.kind, NAME_LENGTH),
            transform=names,
            ha="right",
            va="center",
            fontsize=size,
            **LITERAL,
        )
        note = "no decisions" if value is None else f"{value:.0f}% of {max(0, row.decisions)}"
        ax.text(
            (value or 0.0) + top * 0.01 + 0.3,
            position,
            note,
            ha="left",
            va="center",
            fontsize=size,
            color=MUTED if value is None else "black",
            style="italic" if value is None else "normal",
            **LITERAL,
        )
    ax.text(
        (low + high) / 2,
        1.01,
        band(healthy),
        transform=ax.get_xaxis_transform(),
        ha="center",
        va="bottom",
        fontsize=9,
        color=HEALTHY,
        **LITERAL,
    )
    decisions = sum(max(0, row.decisions) for row in rows)
    overrides = sum(max(0, row.overrides) for row in rows)
    overall = rate(overrides, decisions)
    subtitle = (
        f"{overall:.0f}% overall: {overrides} of {decisions} human decisions"
        if overall is not None
        else "no human decisions"
    )
    figure.suptitle(title, fontsize=15, y=0.975, **LITERAL)
    figure.text(0.5, 0.91, subtitle, ha="center", fontsize=10, color=MUTED, **LITERAL)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return figure


def volume_trend_figure(weeks: Sequence[WeekPoint]) -> Figure:
    title = "Cases per week, automation and override rates"
    if not weeks:
        return empty_figure(title)
    figure = new_figure()
    figure.subplots_adjust(left=0.07, right=0.92, top=0.86, bottom=0.16)
    ax = figure.add_subplot()
    count = len(weeks)
    positions = list(range(count))
    cases = [max(0, w.cases) for w in weeks]
    ax.bar(positions, cases, width=0.7, color=BARS, label="cases", zorder=2)
    ax.set_ylim(0, max([*cases, 1]) * 1.15)
    ax.set_xlim(-0.6, count - 0.4)
    ax.set_ylabel("cases", **LITERAL)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", color="#eeeeee", zorder=0)
    ax.set_axisbelow(True)
    ax.set_xticks(positions, labels=[""] * count)
    label_weeks(ax, [w.week for w in weeks])

    automation = [rate(w.automatic, w.cases) for w in weeks]
    overridden = [rate(w.overrides, w.decisions) for w in weeks]
    rates = ax.twinx()
    rates.plot(
        positions,
        [math.nan if r is None else r for r in automation],
        color=AUTOMATION,
        marker="o",
        linewidth=2,
        label="automated, % of cases",
        zorder=3,
    )
    rates.plot(
        positions,
        [math.nan if r is None else r for r in overridden],
        color=OVERRIDES,
        marker="s",
        linewidth=2,
        label="overridden, % of human decisions",
        zorder=3,
    )
    known = [r for r in (*automation, *overridden) if r is not None]
    rates.set_ylim(0, max([100.0, *known]) * 1.05)
    rates.yaxis.set_major_formatter("{x:.0f}%")
    rates.set_ylabel("percent", **LITERAL)

    bars, bar_labels = ax.get_legend_handles_labels()
    lines, line_labels = rates.get_legend_handles_labels()
    rates.legend(bars + lines, bar_labels + line_labels, loc="upper left", fontsize=9)
    total = sum(cases)
    automatic = sum(max(0, w.automatic) for w in weeks)
    share = rate(automatic, total)
    subtitle = (
        f"{total} cases, {share:.0f}% decided automatically"
        if share is not None
        else "no cases received"
    )
    figure.suptitle(title, fontsize=15, y=0.975, **LITERAL)
    figure.text(0.5, 0.91, subtitle, ha="center", fontsize=10, color=MUTED, **LITERAL)
    for side in ("top",):
        ax.spines[side].set_visible(False)
        rates.spines[side].set_visible(False)
    return figure


def label_weeks(ax: Axes, labels: Sequence[str]) -> None:
    """Week names under the bars, drawn literally; thinned out when there are many."""
    count = len(labels)
    step = max(1, math.ceil(count / 26))
    slanted = count > 12
    below = ax.get_xaxis_transform()  # x in data, y in axes fractions
    for position, label in enumerate(labels):
        if position % step:
            continue
        ax.text(
            position,
            -0.02,
            cut(label, WEEK_LENGTH),
            transform=below,
            ha="right" if slanted else "center",
            va="top",
            rotation=45 if slanted else 0,
            rotation_mode="anchor" if slanted else "default",
            fontsize=8 if slanted else 9,
            **LITERAL,
        )


def rate(part: int, whole: int) -> float | None:
    """`part` as a percentage of `whole` (at most 100); None when there is no whole."""
    if whole <= 0:
        return None
    return min(max(0, part), whole) * 100.0 / whole


def colour(value: float | None, low: float, high: float) -> str:
    if value is None:
        return MUTED
    if value > high:
        return HIGH
    return HEALTHY if value >= low else LOW


def band(healthy: tuple[float, float]) -> str:
    low, high = sorted(healthy)
    return f"healthy {low * 100:.4g}-{high * 100:.4g}%"


def cut(text: str, limit: int) -> str:
    """`text` on one line, in characters the font has, at most `limit` characters."""
    flat = " ".join(text.split())
    drawable = "".join(c if ord(c) in glyphs() else "?" for c in flat)
    return drawable if len(drawable) <= limit else drawable[: limit - 1].rstrip() + "…"


@lru_cache(maxsize=1)
def glyphs() -> frozenset[int]:
    """The code points the default font can draw."""
    path = findfont(FontProperties())
    return frozenset(FT2Font(path).get_charmap())


__all__ = [
    "KindRate",
    "WeekPoint",
    "override_rates_figure",
    "override_rates_png",
    "volume_trend_figure",
    "volume_trend_png",
]
