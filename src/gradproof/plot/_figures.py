"""The figures. Each builds a fresh Figure (no pyplot), so nothing global changes."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from gradproof._errors import invalid
from gradproof._render.words import BANDS, BLUE, COLOUR, RED, TITLE, VERDICT

if TYPE_CHECKING:
    from gradproof._report import Report, SweepResult, TaylorResult

FORMATS = (".png", ".svg")
TINY = 1e-18  # where a zero goes on a log axis


@contextmanager
def _style() -> Iterator[None]:
    """Names are user text: never parse ``$...$`` as mathtext."""
    with matplotlib.rc_context({"text.parse_math": False, "svg.hashsalt": "gradproof"}):
        yield


def save(figure: Figure, path: str | Path) -> Path:
    """Save ``figure`` as PNG or SVG, chosen by the suffix of ``path``.

    Raises:
        InvalidArgument: a suffix other than ``.png`` or ``.svg``.
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise invalid("path", str(path), "must end in .png or .svg", "name the file plot.png")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _done(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        save(figure, path)
    return figure


def blocks(report: Report, *, path: str | Path | None = None) -> Figure:
    """Bar chart of the relative difference per block, log scale, thresholds drawn.

    The thresholds are the Gradient Checking notebook's rule of thumb: 1e-7 great,
    1e-5 look closer, 1e-3 worry.

    Args:
        report: a :class:`~gradproof.Report`.
        path: where to save the figure (``.png`` or ``.svg``); None: not saved.

    Returns:
        The Figure: one bar per block, coloured by its status.
    """
    names = list(report.blocks)
    values = [max(b.difference, TINY) for b in report.blocks.values()]
    colours = [COLOUR[b.status] for b in report.blocks.values()]
    with _style():
        figure = Figure(figsize=(max(4.0, 0.7 * len(names) + 2.5), 3.6), layout="constrained")
        ax = figure.add_subplot()
        ax.bar(range(len(names)), values, color=colours)
        crowded = len(names) > 8 or max((len(n) for n in names), default=0) > 8
        ax.set_xticks(
            range(len(names)),
            labels=names,
            rotation=30 if crowded else 0,
            ha="right" if crowded else "center",
            rotation_mode="anchor",
        )
        ax.set_yscale("log")
        _thresholds(ax, report.tol)
        ax.set_ylim(min(*values, 1e-9) / 3, max(*values, 1e-2) * 3)
        ax.set_ylabel("difference ‖g − g̃‖ / (‖g‖ + ‖g̃‖)")
        ax.set_title(
            f"{TITLE}: {VERDICT[report.status]} (difference {report.difference:.2e})",
            fontsize=10,
        )
    return _done(figure, path)


def _thresholds(ax: Axes, tol: float | None) -> None:
    """The rule of thumb's lines, labelled at the right; the user's ``tol`` at the left."""
    for band in BANDS:
        ax.axhline(band.level, color="0.45", linestyle="--", linewidth=0.8)
        ax.annotate(
            band.label,
            (1.0, band.level),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    if tol is not None:
        ax.axhline(tol, color=BLUE, linewidth=1.0)
        ax.annotate(
            f"tol {tol:.0e}",
            (0.0, tol),
            xycoords=("axes fraction", "data"),
            xytext=(2, 3),
            textcoords="offset points",
            fontsize=8,
            color=BLUE,
        )


def scatter(report: Report, *, path: str | Path | None = None) -> Figure:
    """Analytic against numerical, one panel per block (its sampled elements, else its worst).

    The dashed diagonal is a correct gradient; the solid line has the block's
    fitted ``scale`` as its slope, so a ×2 bug shows as a line of slope 2.

    Args:
        report: a :class:`~gradproof.Report`.
        path: where to save the figure (``.png`` or ``.svg``); None: not saved.
    """
    shown = [b for b in report.blocks.values() if b.sample or b.worst]
    columns = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    with _style():
        figure = Figure(figsize=(3.2 * columns, 3.0 * rows), layout="constrained")
        if not shown:
            ax = figure.add_subplot()
            ax.text(0.5, 0.5, "no elements recorded", ha="center", va="center")
            ax.set_axis_off()
            return _done(figure, path)
        for k, block in enumerate(shown):
            ax = figure.add_subplot(rows, columns, k + 1)
            pairs = block.sample or tuple((e.analytic, e.numerical) for e in block.worst)
            analytic = np.array([a for a, _ in pairs])
            numerical = np.array([n for _, n in pairs])
            reach = float(max(np.max(np.abs(analytic)), np.max(np.abs(numerical)), 1e-300))
            line = np.array([-reach, reach])
            ax.plot(line, line, color="0.5", linestyle="--", linewidth=0.8, label="slope 1")
            if block.scale is not None and math.isfinite(block.scale):
                ax.plot(
                    line / max(abs(block.scale), 1.0),
                    line / max(abs(block.scale), 1.0) * block.scale,
                    color=COLOUR[block.status],
                    linewidth=1.0,
                    label=f"slope {block.scale:.2f}",
                )
            ax.scatter(numerical, analytic, color=COLOUR[block.status], zorder=3, s=18)
            ax.set_title(f"{block.name}: {block.status}", fontsize=10)
            ax.set_xlabel("numerical", fontsize=8)
            ax.set_ylabel("analytic", fontsize=8)
            ax.legend(fontsize=7, loc="upper left")
    return _done(figure, path)


def sweep(result: SweepResult, *, path: str | Path | None = None) -> Figure:
    """The relative difference against ε on log axes: the V of truncation and roundoff.

    Args:
        result: a :class:`~gradproof.SweepResult` from :func:`gradproof.sweep`.
        path: where to save the figure (``.png`` or ``.svg``); None: not saved.
    """
    eps = np.asarray(result.eps, dtype=float)
    diff = np.maximum(np.asarray(result.differences, dtype=float), TINY)
    with _style():
        figure = Figure(figsize=(5.0, 3.6), layout="constrained")
        ax = figure.add_subplot()
        ax.loglog(eps, diff, marker="o", color=BLUE)
        ax.scatter(
            [result.best_eps],
            [max(result.best_difference, TINY)],
            color=RED,
            zorder=3,
            label=f"best ε = {result.best_eps:.0e}",
        )
        for band in BANDS:
            ax.axhline(band.level, color="0.6", linestyle="--", linewidth=0.8)
        ax.set_xlabel("step ε")
        ax.set_ylabel("difference")
        ax.set_title("central differences: truncation (right) against roundoff (left)", fontsize=9)
        ax.legend(fontsize=8)
    return _done(figure, path)


def taylor(result: TaylorResult, *, path: str | Path | None = None) -> Figure:
    """The Taylor residuals against h on log axes, with reference slopes 1 and 2.

    Args:
        result: a :class:`~gradproof.TaylorResult` from :func:`gradproof.taylor_test`.
        path: where to save the figure (``.png`` or ``.svg``); None: not saved.
    """
    h = np.asarray(result.steps, dtype=float)
    first = np.maximum(np.asarray(result.residuals, dtype=float), TINY)
    zeroth = np.maximum(np.asarray(result.residuals_zeroth, dtype=float), TINY)
    with _style():
        figure = Figure(figsize=(5.0, 3.6), layout="constrained")
        ax = figure.add_subplot()
        ax.loglog(h, zeroth, marker=".", color="0.5", label="|J(θ+hv) − J(θ)|")
        ax.loglog(
            h, first, marker="o", color=COLOUR[result.status], label="|J(θ+hv) − J(θ) − h g·v|"
        )
        _reference(ax, h, first[0], 1, ":")
        _reference(ax, h, first[0], 2, "--")
        if result.noise_floor > 0:
            ax.axhline(result.noise_floor, color="0.7", linewidth=0.8, label="noise floor")
        order = "?" if result.order is None else f"{result.order:.2f}"
        ax.set_title(f"Taylor test: {VERDICT[result.status]} (order {order})", fontsize=10)
        ax.set_xlabel("h")
        ax.set_ylabel("residual")
        ax.legend(fontsize=7)
    return _done(figure, path)


def _reference(ax: Axes, h: np.ndarray, start: float, slope: int, style: str) -> None:
    ax.loglog(
        h,
        start * (h / h[0]) ** slope,
        color="0.3",
        linestyle=style,
        linewidth=0.8,
        label=f"slope {slope}",
    )


def to_svg(figure: Figure) -> str:
    """``figure`` as SVG text: for a notebook's ``IPython.display.SVG``, or inlined in HTML.

    Args:
        figure: a Figure from one of the plot functions (or any matplotlib Figure).

    Returns:
        The SVG document, as text.

    >>> import numpy as np, gradproof, gradproof.plot
    >>> report = gradproof.check(lambda w: float(w @ w), np.ones(2), lambda w: 2 * w)
    >>> svg = gradproof.plot.to_svg(gradproof.plot.blocks(report))
    >>> svg.startswith("<?xml") and "</svg>" in svg
    True
    """
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()
