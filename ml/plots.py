"""Small inline SVG charts for the admin: no image files, no plotting library on the request path."""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

COLORS = ("#3b5bdb", "#e8590c", "#2b8a3e", "#862e9c")


def line_chart_svg(
    series: dict[str, list[float]], *, width: int = 520, height: int = 220, y_label: str = ""
) -> SafeString:
    """Lines for each named series over a shared x axis (1..n), with min/max labels and a legend."""
    values = [v for points in series.values() for v in points if v is not None]
    if not values:
        return mark_safe('<p class="muted">No data yet.</p>')
    pad_l, pad_r, pad_t, pad_b = 48, 12, 12, 28
    n = max(len(points) for points in series.values())
    lo, hi = min(values), max(values)
    if hi == lo:
        hi = lo + 1.0

    def xy(i: int, v: float) -> str:
        x = pad_l + (i / max(n - 1, 1)) * (width - pad_l - pad_r)
        y = pad_t + (1 - (v - lo) / (hi - lo)) * (height - pad_t - pad_b)
        return f"{x:.1f},{y:.1f}"

    lines = []
    for (name, points), color in zip(series.items(), COLORS):
        coords = " ".join(xy(i, v) for i, v in enumerate(points) if v is not None)
        lines.append((color, coords, name))
    polylines = format_html_join(
        "", '<polyline fill="none" stroke="{}" stroke-width="2" points="{}"><title>{}</title></polyline>', lines
    )
    legend = format_html_join(
        "",
        '<text x="{}" y="{}" fill="{}" font-size="12">■ {}</text>',
        ((pad_l + 8 + 110 * i, pad_t + 12, color, name) for i, (color, _, name) in enumerate(lines)),
    )
    return format_html(
        '<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif">'
        '<rect x="{pl}" y="{pt}" width="{iw}" height="{ih}" fill="#fafafa" stroke="#ddd"/>'
        '<text x="4" y="{pt2}" font-size="11" fill="#666">{hi}</text>'
        '<text x="4" y="{yb}" font-size="11" fill="#666">{lo}</text>'
        '<text x="{pl}" y="{xb}" font-size="11" fill="#666">epoch 1</text>'
        '<text x="{xr}" y="{xb}" font-size="11" fill="#666" text-anchor="end">epoch {n}</text>'
        "{polylines}{legend}</svg>",
        label=y_label or "chart",
        w=width,
        h=height,
        pl=pad_l,
        pt=pad_t,
        iw=width - pad_l - pad_r,
        ih=height - pad_t - pad_b,
        pt2=pad_t + 10,
        yb=height - pad_b,
        xb=height - 8,
        xr=width - pad_r,
        n=n,
        hi=f"{hi:.4g}",
        lo=f"{lo:.4g}",
        polylines=polylines,
        legend=legend,  # format_html escapes to str first
    )


def loss_curve_svg(loss_history: list[dict]) -> SafeString:
    series = {"loss": [row.get("loss") for row in loss_history]}
    if any(row.get("val_loss") is not None for row in loss_history):
        series["val_loss"] = [row.get("val_loss") for row in loss_history]
    return line_chart_svg(series, y_label="training loss per epoch")
