"""The weekly report for people: a chat message, terminal tables, a self-contained HTML
page, and the charts they carry."""

from __future__ import annotations

import base64
import html
from typing import Any

from rich.console import Console
from rich.table import Table

from bot.analytics.charts import KindRate, WeekPoint, override_rates_png, volume_trend_png
from bot.analytics.report import HEALTHY, Rate, Report


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def charts(report: Report) -> list[tuple[str, bytes]]:
    """The two PNG charts: override rate by kind (healthy band shaded), and the trend."""
    kinds = [KindRate(r.key, r.decisions, r.overrides) for r in report.override_by_kind]
    weeks = [
        WeekPoint(t["week"], t["cases"], t["automatic"], t["overrides"], t["decisions"])
        for t in report.trend
    ]
    return [
        (f"overrides-{report.week}.png", override_rates_png(kinds, HEALTHY)),
        (f"trend-{report.week}.png", volume_trend_png(weeks)),
    ]


def headline(report: Report) -> list[str]:
    trend = ""
    if report.override_rate is not None and report.previous_rate is not None:
        delta = (report.override_rate - report.previous_rate) * 100
        trend = f" ({delta:+.0f} pts on the week before)"
    return [
        f"Cases: {report.cases}, of which {report.automatic} decided automatically "
        f"({pct(report.automation_rate)}).",
        f"Human decisions: {report.human_decisions}; the AI was overridden "
        f"{pct(report.override_rate)}{trend}. Healthy is {HEALTHY[0]:.0%}-{HEALTHY[1]:.0%}.",
        f"Time to decision: median {seconds(report.median_seconds)}, "
        f"p90 {seconds(report.p90_seconds)}. SLA met: {pct(report.sla_compliance)} "
        f"of {report.sla_due}.",
    ]


def summary_text(report: Report) -> str:
    """The chat message: the headline numbers, then each flag with what to do."""
    lines = headline(report)
    kinds = ", ".join(
        f"{r.key} {pct(r.rate)} of {r.decisions}" for r in report.override_by_kind if r.decisions
    )
    if kinds:
        lines.append(f"Override rate by kind: {kinds}.")
    waiting = sum(q["waiting"] for q in report.queue.values())
    lines.append(f"Waiting for a person now: {waiting}.")
    if report.flags:
        lines.append("")
        lines.append("What to look at:")
        for flag in report.flags:
            lines.append(f"• {flag.subject}: {flag.measured} ({flag.against}). {flag.action}")
    else:
        lines.append("Nothing to flag this week.")
    return "\n".join(lines)


def _rate_table(title: str, rates: list[Rate], label: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(label)
    table.add_column("decisions", justify="right")
    table.add_column("overrides", justify="right")
    table.add_column("rate", justify="right")
    for rate in rates:
        table.add_row(rate.key, str(rate.decisions), str(rate.overrides), pct(rate.rate))
    return table


def print_tables(report: Report, console: Console) -> None:
    """Rich tables for a terminal."""
    console.print(f"[bold]Signoff weekly report {report.week}[/bold]", highlight=False)
    for line in headline(report):
        console.print(line, highlight=False, markup=False)
    console.print(_rate_table("Override rate by kind", report.override_by_kind, "kind"))
    console.print(_rate_table("By lane", report.override_by_lane, "lane"))
    console.print(_rate_table("By reviewer", report.override_by_reviewer, "reviewer"))
    buckets = [
        Rate(f"{int(r.key) / 10:.1f}-{int(r.key) / 10 + 0.1:.1f}", r.decisions, r.overrides)
        for r in report.override_by_bucket
    ]
    console.print(_rate_table("By AI confidence", buckets, "confidence"))
    flags = Table(title="Flags", title_justify="left")
    for column in ("flag", "subject", "measured", "against", "what to do"):
        flags.add_column(column, overflow="fold")
    for flag in report.flags:
        flags.add_row(flag.code, flag.subject, flag.measured, flag.against, flag.action)
    console.print(flags if report.flags else "No flags this week.")


def page(report: Report, images: list[tuple[str, bytes]]) -> str:
    """A self-contained HTML page: every string escaped, the charts inline."""
    e = html.escape

    def rows(rates: list[Rate]) -> str:
        return "".join(
            f"<tr><td>{e(r.key)}</td><td>{r.decisions}</td><td>{r.overrides}</td>"
            f"<td>{pct(r.rate)}</td></tr>"
            for r in rates
        )

    def table(title: str, rates: list[Rate], label: str) -> str:
        head = f"<tr><th>{e(label)}</th><th>decisions</th><th>overrides</th><th>rate</th></tr>"
        return f"<h2>{e(title)}</h2><table>{head}{rows(rates)}</table>"

    pictures = "".join(
        f'<img alt="{e(name)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'
        for name, data in images
    )
    flag_rows = "".join(
        f"<tr><td>{e(f.code)}</td><td>{e(f.subject)}</td><td>{e(f.measured)}</td>"
        f"<td>{e(f.against)}</td><td>{e(f.action)}</td></tr>"
        for f in report.flags
    )
    flags = (
        "<table><tr><th>flag</th><th>subject</th><th>measured</th><th>against</th>"
        f"<th>what to do</th></tr>{flag_rows}</table>"
        if report.flags
        else "<p>No flags this week.</p>"
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        "img{max-width:100%;display:block;margin:1em 0}"
    )
    body: list[Any] = [
        f"<h1>Signoff weekly report {e(report.week)}</h1>",
        "".join(f"<p>{e(line)}</p>" for line in headline(report)),
        "<h2>Flags</h2>",
        flags,
        pictures,
        table("Override rate by kind", report.override_by_kind, "kind"),
        table("By lane", report.override_by_lane, "lane"),
        table("By reviewer", report.override_by_reviewer, "reviewer"),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Signoff weekly report {e(report.week)}</title><style>{style}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
