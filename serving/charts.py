"""Small inline SVG charts rendered on the server: no JavaScript charting library, nothing fetched."""

from __future__ import annotations

from html import escape


def bar_chart_svg(labels: list[str], values: list[int], title: str, width: int = 420, height: int = 180) -> str:
    """A plain bar chart with value labels; accessible via <title> and an aria-label."""
    left, bottom, top = 30, 34, 18
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max(values, default=0) or 1
    slot = plot_w / max(len(values), 1)
    bar_w = max(slot * 0.7, 2)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="app-chart" role="img" aria-label="{escape(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" stroke="#4c6272"/>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / peak
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="#005eb8">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" font-size="10" text-anchor="middle">{value}</text>'
        )
        parts.append(
            f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 14:.1f}" font-size="9" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
