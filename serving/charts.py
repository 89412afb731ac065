"""Small inline SVG charts rendered on the server: no JavaScript charting library, nothing fetched.

Charts of people are aggregates: callers pass counts through ``upstream.disclosure`` first; a suppressed
value (None) is drawn as an empty bar labelled "<8", never as its true height.
"""

from __future__ import annotations

from html import escape

from upstream.disclosure import SUPPRESSED


def bar_chart_svg(
    labels: list[str], values: list[int | None], title: str, width: int = 420, height: int = 180
) -> str:
    """A plain bar chart with value labels; accessible via <title> and an aria-label. None = suppressed."""
    left, bottom, top = 30, 34, 18
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((v for v in values if v is not None), default=0) or 1
    slot = plot_w / max(len(values), 1)
    bar_w = max(slot * 0.7, 2)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="app-chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#4c6272"/>',
    ]
    for i, (label, raw) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * (raw or 0) / peak
        value = SUPPRESSED if raw is None else raw
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#005eb8">'
            f"<title>{escape(label)}: {escape(str(value))}</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" font-size="10" text-anchor="middle">{escape(str(value))}</text>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14:.1f}" font-size="9" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
