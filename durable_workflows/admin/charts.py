"""Charts drawn on the server as SVG: no CDN, no JavaScript build, nothing to load.

Every text that comes from stored data goes through `escape` (format_html); numbers are
formatted here. Colours and fonts come from admin.css classes, so a dark admin theme applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .display import humanize_seconds


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[int]
    css: str


def hourly_bars(hours: Sequence[datetime], series: Sequence[Series], *, title: str,
                width: int = 760, height: int = 180) -> SafeString:
    """Grouped bars, one group per hour, with a scale on the left and every third hour named."""
    left, bottom, top = 40, 22, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max([1, *(v for s in series for v in s.values)])
    group = plot_w / max(1, len(hours))
    bar = max(1.0, (group - 2) / max(1, len(series)))
    parts: list[SafeString] = []
    for tick in _ticks(peak):
        y = top + plot_h - plot_h * tick / peak
        parts.append(format_html('<line class="dw-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                                 '<text class="dw-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                                 left, width - 8, f"{y:.1f}", f"{y:.1f}", left - 4, f"{y + 3:.1f}", tick))
    for i, hour in enumerate(hours):
        x0 = left + i * group + 1
        for j, s in enumerate(series):
            value = s.values[i]
            h = plot_h * value / peak
            parts.append(format_html(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{} {}: {}</title></rect>',
                s.css, f"{x0 + j * bar:.1f}", f"{top + plot_h - h:.1f}", f"{bar:.1f}", f"{h:.1f}",
                hour.strftime("%H:00"), s.label, value))
        if i % 3 == 0:
            parts.append(format_html('<text class="dw-axis" x="{}" y="{}">{}</text>',
                                     f"{x0:.1f}", height - 6, hour.strftime("%H:00")))
    legend = format_html_join("", '<tspan class="{}-text" dx="12">■ {}</tspan>', ((s.css, s.label) for s in series))
    return format_html(
        '<svg class="dw-chart" role="img" aria-label="{}" viewBox="0 0 {} {}" width="{}" height="{}">'
        '<text class="dw-axis" x="{}" y="9">{}</text>{}</svg>',
        title, width, height + 12, width, height + 12, left, legend, mark_safe("".join(parts)))


def _ticks(peak: int) -> list[int]:
    step = max(1, peak // 4)
    return list(range(0, peak + 1, step))[:6]


@dataclass(frozen=True)
class Bar:
    """One row of an instance's timeline."""

    label: str
    start: datetime
    end: datetime
    css: str
    note: str = ""


def timeline(bars: Sequence[Bar], *, width: int = 760, row: int = 18) -> SafeString:
    """A bar per step from its start to its end (or now), on one time axis for the instance."""
    if not bars:
        return SafeString("")
    origin = min(b.start for b in bars)
    span = max((max(b.end for b in bars) - origin).total_seconds(), 0.001)
    label_w, right = 200, 70
    plot_w = width - label_w - right
    height = row * len(bars) + 22
    parts: list[SafeString] = []
    for i, b in enumerate(bars):
        y = 4 + i * row
        x = label_w + plot_w * (b.start - origin).total_seconds() / span
        w = max(2.0, plot_w * (b.end - b.start).total_seconds() / span)
        duration = humanize_seconds((b.end - b.start).total_seconds())
        parts.append(format_html(
            '<text class="dw-axis" x="{}" y="{}" text-anchor="end">{}</text>'
            '<rect class="{}" x="{}" y="{}" width="{}" height="{}" rx="2"><title>{}: {}{}</title></rect>'
            '<text class="dw-axis" x="{}" y="{}">{}</text>',
            label_w - 6, y + row - 6, _clip(b.label, 30),
            b.css, f"{x:.1f}", y, f"{w:.1f}", row - 4, b.label, duration, f" ({b.note})" if b.note else "",
            f"{min(x + w + 4, width - right + 4):.1f}", y + row - 6, b.note or duration))
    parts.append(format_html('<text class="dw-axis" x="{}" y="{}">0</text>'
                             '<text class="dw-axis" x="{}" y="{}" text-anchor="end">+{}</text>',
                             label_w, height - 4, label_w + plot_w, height - 4, humanize_seconds(span)))
    return format_html('<svg class="dw-chart dw-timeline-chart" role="img" aria-label="Step timeline" '
                       'viewBox="0 0 {} {}" width="{}" height="{}">{}</svg>',
                       width, height, width, height, mark_safe("".join(parts)))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
