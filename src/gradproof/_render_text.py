"""The text report: a verdict line, the per-block table, suspects and diagnoses.

Rendered with rich: a real table, colour on a terminal, plain text when piped or
when turned into a string (``str(report)`` is always plain and fixed-width).
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradproof._report import BlockResult, Report

WIDTH = 100
STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow"}
WORD = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}


def render_text(report: Report, width: int = WIDTH) -> str:
    """``report`` as plain text at a fixed width (no colour codes)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
    console.print(renderable(report))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def print_report(report: Report, console: Console | None = None) -> None:
    """Print ``report`` to the terminal: coloured on a TTY, plain when piped."""
    (console or Console()).print(renderable(report))


def renderable(report: Report) -> RenderableType:
    parts: list[RenderableType] = [_verdict(report), _table(report)]
    if report.suspects:
        parts.append(_suspects(report))
    details = _details(report)
    if details is not None:
        parts.append(details)
    worst = _worst(report)
    if worst is not None:
        parts.append(worst)
    for note in report.notes:
        parts.append(Text(f"note: {note}"))
    parts.append(Text(_covered(report), style="dim"))
    return Group(*parts)


def _verdict(report: Report) -> Text:
    text = Text()
    text.append(f"gradient check: {WORD[report.status]}", style=STYLE[report.status])
    bound = f"tol {report.tol:.1e}" if report.tol is not None else "error model"
    text.append(f"  difference {report.difference:.3e} ({bound}; {_band(report.difference)})")
    return text


def _band(difference: float) -> str:
    """The seeds' rule of thumb for the relative difference."""
    if difference < 1e-6:
        return "~1e-7 or less: great"
    if difference < 1e-4:
        return "~1e-5: look closer"
    return "~1e-3 or more: worry"


def _table(report: Report) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (
        ("block", "left"),
        ("shape", "left"),
        ("difference", "right"),
        ("scale", "right"),
        ("max |error|", "right"),
        ("worst at", "left"),
        ("status", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for block in report.blocks.values():
        table.add_row(
            block.name,
            _shape(block.shape),
            f"{block.difference:.2e}",
            "-" if block.scale is None else f"{block.scale:.2f}",
            f"{block.max_abs_error:.2e}",
            _index(block.worst_index),
            Text(_status(block), style=STYLE[block.status]),
        )
    return table


def _status(block: BlockResult) -> str:
    text = block.status
    extras = []
    if block.wrong_elements:
        extras.append(f"{len(block.wrong_elements)} wrong")
    if block.kinks:
        extras.append(f"{len(block.kinks)} kink")
    if block.checked < block.size:
        extras.append(f"{block.checked}/{block.size} checked")
    return text + (f" ({', '.join(extras)})" if extras else "")


def _suspects(report: Report) -> Text:
    return Text(
        "suspects (latest block first; backprop runs output to input): "
        + ", ".join(report.suspects),
        style="bold",
    )


def _details(report: Report) -> Group | None:
    lines: list[RenderableType] = []
    for name in report.suspects:
        block = report.blocks[name]
        if block.diagnosis is not None:
            lines.append(Text(f"  - {block.diagnosis.sentence}"))
    for block in report.blocks.values():
        if block.status == "inconclusive":
            lines.append(Text(f"  - {block.name}: inconclusive: {block.reason}"))
    return Group(*lines) if lines else None


def _worst(report: Report) -> Table | None:
    rows = [e for b in report.blocks.values() if not b.passed for e in b.worst[:3]]
    if not rows:
        return None
    table = Table(title=None, box=None, pad_edge=False, header_style="bold")
    for column in ("element", "analytic", "numerical", "abs error", "rel error", "tolerance"):
        table.add_column(column, justify="left" if column == "element" else "right")
    for e in rows:
        table.add_row(
            e.label + (f" ({e.note})" if e.note else ""),
            f"{e.analytic: .6e}",
            f"{e.numerical: .6e}",
            f"{e.abs_error:.2e}",
            f"{e.rel_error:.2e}",
            f"{e.tolerance:.2e}",
        )
    return table


def _covered(report: Report) -> str:
    step = f"eps={report.eps:g}" if report.eps is not None else "scaled steps"
    return (
        f"checked: {report.coverage}; mode {report.mode}, scheme {report.scheme} ({step}), "
        f"{report.precision}; {report.evaluations} loss evaluations in {report.seconds:.2f} s"
    )


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def _index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"
