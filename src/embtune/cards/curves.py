"""Loss and metric curves for the model card: PNG with matplotlib (``embtune[plots]``), else a hand-made SVG.

Two panels over the training step: the losses (training, validation) and the evaluator metrics. The SVG is
self-contained (no scripts, no external fonts), so the card always has a curve without matplotlib.
"""

from __future__ import annotations

import logging
import math
from html import escape
from pathlib import Path
from typing import Any

from .front_matter import as_float
from .logs import merged_rows

logger = logging.getLogger(__name__)

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
Series = dict[str, list[tuple[float, float]]]
MAX_SERIES = 6  # per SVG panel: three legend entries a line, two lines


def curve_series(log_rows: list[dict[str, Any]]) -> tuple[Series, Series]:
    """(losses, metrics): column -> [(step, value)] for every numeric column the training-log table shows."""
    losses: Series = {}
    metrics: Series = {}
    for i, row in enumerate(merged_rows(log_rows)):
        step = as_float(row.get("Step"))
        x = step if step is not None else float(i)
        for column, value in row.items():
            y = as_float(value)
            if column in ("Epoch", "Step") or y is None or math.isinf(y):
                continue
            target = losses if column.lower().endswith("loss") else metrics
            target.setdefault(column, []).append((x, y))
    return losses, metrics


def plot_curves(log_rows: list[dict[str, Any]], path: str | Path) -> bool:
    """Write the curves to ``path`` (.png needs matplotlib; .svg never does). Returns whether a file was
    written: False without numeric logs, for a .png without matplotlib, or on any error (logged)."""
    path = Path(path)
    try:
        losses, metrics = curve_series(log_rows)
        if not losses and not metrics:
            return False
        if path.suffix.lower() == ".svg":
            path.write_text(svg_curves(losses, metrics), encoding="utf-8")
            return True
        if path.suffix.lower() != ".png":
            logger.warning("plot_curves: unsupported file type %s; use .png or .svg", path.suffix)
            return False
        return _png_curves(losses, metrics, path)
    except Exception as err:  # a curve is never worth a failed save
        logger.warning("plot_curves: could not write %s: %s", path, err)
        return False


def write_curves(
    log_rows: list[dict[str, Any]], folder: str | Path, stem: str = "training_curves"
) -> str | None:
    """Write ``{stem}.png`` (matplotlib installed) or ``{stem}.svg`` into ``folder``; return the file name."""
    for suffix in (".png", ".svg"):
        if plot_curves(log_rows, Path(folder) / f"{stem}{suffix}"):
            return f"{stem}{suffix}"
    return None


def _png_curves(losses: Series, metrics: Series, path: Path) -> bool:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.info(
            "matplotlib is not installed (pip install 'embtune[plots]'); writing an SVG curve instead"
        )
        return False
    panels = [(title, s) for title, s in (("Loss", losses), ("Metrics", metrics)) if s]
    fig = Figure(figsize=(6 * len(panels), 4), dpi=100)
    FigureCanvasAgg(fig)
    for i, (title, series) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for name, points in series.items():
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return True


def _ticks(low: float, high: float) -> tuple[float, float]:
    if high - low < 1e-12:
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    return low, high


def _panel(series: Series, title: str, left: float, width: float = 420, height: float = 260) -> list[str]:
    series = dict(list(series.items())[:MAX_SERIES])
    top, bottom, margin_l, margin_r = 30.0, 52.0, 55.0, 10.0
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = _ticks(min(xs), max(xs))
    y0, y1 = _ticks(min(ys), max(ys))
    plot_w, plot_h = width - margin_l - margin_r, height - top - bottom

    def px(x: float) -> float:
        return left + margin_l + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    out = [
        f'<text x="{left + width / 2:.1f}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left + margin_l:.1f}" y="{top:.1f}" width="{plot_w:.1f}" height="{plot_h:.1f}" '
        'fill="none" stroke="#999"/>',
        f'<text x="{left + margin_l - 4:.1f}" y="{top + 4:.1f}" text-anchor="end">{y1:.4g}</text>',
        f'<text x="{left + margin_l - 4:.1f}" y="{top + plot_h:.1f}" text-anchor="end">{y0:.4g}</text>',
        f'<text x="{left + margin_l:.1f}" y="{top + plot_h + 14:.1f}">{x0:.4g}</text>',
        f'<text x="{left + margin_l + plot_w:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="end">{x1:.4g}</text>',
        f'<text x="{left + margin_l + plot_w / 2:.1f}" y="{top + plot_h + 14:.1f}" text-anchor="middle">step</text>',
    ]
    for k, (name, points) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if len(points) == 1:
            x, y = points[0]
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        legend_x = left + margin_l + (k % 3) * (plot_w / 3)
        legend_y = top + plot_h + 28 + (k // 3) * 12
        out.append(f'<rect x="{legend_x:.1f}" y="{legend_y - 8:.1f}" width="10" height="3" fill="{color}"/>')
        out.append(f'<text x="{legend_x + 13:.1f}" y="{legend_y:.1f}">{escape(name[:40])}</text>')
    return out


def svg_curves(losses: Series, metrics: Series) -> str:
    """A standalone SVG document with one panel per non-empty group."""
    panels = [(title, s) for title, s in (("Loss", losses), ("Metrics", metrics)) if s]
    width, height = 420 * len(panels), 260
    body: list[str] = []
    for i, (title, series) in enumerate(panels):
        body += _panel(series, title, left=420.0 * i)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">\n'
        f'<rect width="{width}" height="{height}" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )
