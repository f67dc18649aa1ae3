"""Trend charts for `metrics`: one small line panel per query, rendered to a PNG.

matplotlib, drawing with Agg: it draws without a display or a browser (plotly
needs a headless Chrome to export a PNG, and SVG from pygal is not previewed inline
by Slack), and its output is an ordinary image any Slack client shows in the thread.
It is imported on first use, so start-up and the other actions don't pay for it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_LINES = 5  # per panel; more series than this are summed up in the table only


@dataclass(frozen=True)
class Panel:
    title: str
    lines: Sequence[tuple[str, Sequence[tuple[float, float]]]]  # (legend, [(unix, value)])
    format: Callable[[float], str]


def render(title: str, panels: Sequence[Panel]) -> bytes:
    """A PNG of `panels` on a two-column grid with a shared time axis (UTC)."""
    # The object API, not pyplot: no global figure state shared between threads, and
    # `savefig(format="png")` draws with Agg whatever backend is configured.
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    rows = max(1, math.ceil(len(panels) / 2))
    figure = Figure(figsize=(10, 2.6 * rows), dpi=100, layout="constrained")
    figure.suptitle(title, fontsize=11)
    axes = figure.subplots(rows, 2, sharex=True, squeeze=False).flatten()
    for ax, panel in zip(axes, panels, strict=False):
        ax.set_title(panel.title, fontsize=9, loc="left")
        drawn = 0
        for legend, points in panel.lines[:MAX_LINES]:
            if not points:
                continue
            times = [datetime.fromtimestamp(t, UTC) for t, _ in points]
            ax.plot(times, [v for _, v in points], linewidth=1.2, label=legend or None)
            drawn += 1
        if drawn == 0:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        elif drawn > 1:
            ax.legend(fontsize=7, loc="upper left")
        fmt = panel.format
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos, f=fmt: f(value)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
