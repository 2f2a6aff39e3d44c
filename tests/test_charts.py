"""The summary's charts: exact 1200x600 PNGs, whatever the data (none, zeros, odd names)."""

from __future__ import annotations

import struct
import zlib

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from bot.analytics.charts import (
    EMPTY,
    KindRate,
    WeekPoint,
    cut,
    override_rates_figure,
    override_rates_png,
    volume_trend_figure,
    volume_trend_png,
)

SIGNATURE = b"\x89PNG\r\n\x1a\n"
ODD = ["$x$", "a_b^c", r"$\frac{$", "$$", "100% $ & co", "tab\tand\nnewline", "🚀 launch"]
KINDS = [
    KindRate("expense_report", 40, 5),
    KindRate("refund", 10, 4),
    KindRate("vendor_onboarding", 0, 0),
    KindRate("access_request", 25, 0),
]
WEEKS = [
    WeekPoint("2026-W44", 120, 70, 6, 50),
    WeekPoint("2026-W45", 0, 0, 0, 0),
    WeekPoint("2026-W46", 90, 90, 0, 0),
    WeekPoint("2026-W47", 150, 80, 12, 70),
]


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, checking its CRC."""
    assert data[:8] == SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR"
    assert length == 13
    body = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert crc == zlib.crc32(kind + body)
    width, height = struct.unpack(">II", body[:8])
    return width, height


def texts(figure: Figure) -> list[Text]:
    figure.draw_without_rendering()  # tick labels exist once drawn
    return [t for t in figure.findobj(Text) if isinstance(t, Text) and t.get_text()]


def literal(figure: Figure, wanted: str) -> None:
    """`wanted` appears as drawn text, and with mathtext off."""
    found = [t for t in texts(figure) if t.get_text() == wanted]
    assert found, f"{wanted!r} not among {[t.get_text() for t in texts(figure)]}"
    assert all(not t.get_parse_math() and not t.get_usetex() for t in found)


def test_override_rates_is_a_1200_by_600_png() -> None:
    data = override_rates_png(KINDS)
    assert png_size(data) == (1200, 600)
    figure = override_rates_figure(KINDS)
    shown = [t.get_text() for t in texts(figure)]
    assert "12% of 40" in shown
    assert "40% of 10" in shown
    assert "0% of 25" in shown
    assert "no decisions" in shown
    assert "healthy 5-20%" in shown
    assert "How often people overrode the AI, by kind" in shown


def test_volume_trend_is_a_1200_by_600_png() -> None:
    assert png_size(volume_trend_png(WEEKS)) == (1200, 600)
    shown = [t.get_text() for t in texts(volume_trend_figure(WEEKS))]
    assert {"2026-W44", "2026-W45", "2026-W46", "2026-W47"} <= set(shown)
    assert "360 cases, 67% decided automatically" in shown


@pytest.mark.parametrize("render", [override_rates_png, volume_trend_png])
def test_empty_input_draws_a_no_decisions_figure(render: object) -> None:
    assert callable(render)
    assert png_size(render([])) == (1200, 600)
    for figure in (override_rates_figure([]), volume_trend_figure([])):
        assert EMPTY in [t.get_text() for t in texts(figure)]


def test_zero_divisions_never_raise() -> None:
    zeros = [KindRate("a", 0, 0), KindRate("b", 0, 3), KindRate("c", -1, -1)]
    assert png_size(override_rates_png(zeros)) == (1200, 600)
    assert [t.get_text() for t in texts(override_rates_figure(zeros))].count("no decisions") == 3
    weeks = [WeekPoint("2026-W01", 0, 0, 0, 0), WeekPoint("2026-W02", 0, 0, 0, 0)]
    assert png_size(volume_trend_png(weeks)) == (1200, 600)
    # more overrides than decisions (bad data) is shown as 100%, not more
    capped = override_rates_figure([KindRate("x", 2, 5)])
    assert "100% of 2" in [t.get_text() for t in texts(capped)]


def test_thirty_kinds_with_long_names_and_dollars() -> None:
    rows = [
        KindRate(f"{ODD[i % len(ODD)]} kind number {i} with a rather long name indeed", i, i // 3)
        for i in range(30)
    ]
    assert png_size(override_rates_png(rows)) == (1200, 600)
    figure = override_rates_figure(rows)
    names = [cut(row.kind, 32) for row in rows]
    assert all(len(name) <= 32 and name.endswith("…") for name in names)
    for name in names:
        literal(figure, name)


@pytest.mark.parametrize("name", ODD)
def test_math_and_markup_in_names_are_drawn_literally(name: str) -> None:
    # A malformed formula (`$\frac{$`) would raise while drawing if mathtext parsed it.
    assert png_size(override_rates_png([KindRate(name, 4, 1)])) == (1200, 600)
    literal(override_rates_figure([KindRate(name, 4, 1)]), cut(name, 32))
    weeks = [WeekPoint(name, 3, 1, 1, 2)]
    assert png_size(volume_trend_png(weeks)) == (1200, 600)
    literal(volume_trend_figure(weeks), cut(name, 12))


def test_names_are_cut_to_one_line_of_drawable_characters() -> None:
    assert cut("$x$", 32) == "$x$"
    assert cut("tab\tand\nnewline", 32) == "tab and newline"
    assert cut("🚀 launch", 32) == "? launch"  # the font has no rocket: no glyph warning
    assert cut("x" * 40, 10) == "x" * 9 + "…"


def test_size_is_the_same_for_any_data() -> None:
    small = [KindRate("a", 1, 0)]
    many = [KindRate(f"kind {i}", 100 * i, 7 * i) for i in range(30)]
    sizes = {png_size(override_rates_png(rows)) for rows in ([], small, many)}
    weeks = [WeekPoint(f"2026-W{i:02d}", i * 10, i, i % 4, i * 2) for i in range(1, 53)]
    sizes |= {png_size(volume_trend_png(w)) for w in ([], WEEKS, weeks)}
    assert sizes == {(1200, 600)}
    assert len(override_rates_png(KINDS)) == len(override_rates_png(KINDS))


def test_ten_charts_render() -> None:
    rows = [KindRate(f"kind {i}", 10 + i, i % 5) for i in range(30)]
    weeks = [WeekPoint(f"2026-W{i:02d}", i * 10, i, i % 4, i * 2) for i in range(1, 27)]
    for _ in range(5):
        assert override_rates_png(rows)[:8] == SIGNATURE
        assert volume_trend_png(weeks)[:8] == SIGNATURE
