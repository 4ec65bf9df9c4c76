"""The text report: a verdict line, the per-block table, suspects and diagnoses.

Rendered with rich: a real table, colour on a terminal, plain text when piped or
when turned into a string (``str(report)`` is always plain and fixed-width).

>>> from gradproof._report import BlockResult, ElementResult, Report
>>> block = BlockResult(name="w", shape=(2,), status="pass", difference=1e-9, scale=1.0,
...                     max_abs_error=1e-10, worst_index=(1,), checked=2)
>>> report = Report(status="pass", difference=1e-9, tol=None, blocks={"w": block},
...                 suspects=(), scheme="central", eps=1e-7, precision="float64",
...                 evaluations=7, seconds=0.01, coverage="every coordinate: 2 of 2")
>>> print(render_text(report, width=80))
gradient check: PASS  difference 1.000e-09 (error model; ~1e-7 or less: great)
block  shape  difference  scale  max |error|  worst at  status
w      (2,)     1.00e-09   1.00     1.00e-10  [1]       pass
1 block: 1 pass, 0 fail, 0 inconclusive; 0 wrong elements, 0 at kinks
checked: every coordinate: 2 of 2; mode full, scheme central (eps=1e-07),
float64; 7 loss evaluations in 0.01 s
<BLANKLINE>
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradproof._report import BlockResult, ElementResult, Report

WIDTH = 100
WORST_PER_BLOCK = 3
STYLE = {"pass": "bold green", "fail": "bold red", "inconclusive": "bold yellow"}
WORD = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}


def render_text(report: Report, width: int = WIDTH) -> str:
    """``report`` as plain text at a fixed width (no colour codes, no trailing spaces)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,  # in a notebook rich would display instead of writing to buffer
        soft_wrap=False,
    )
    console.print(renderable(report))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def print_report(report: Report, console: Console | None = None) -> None:
    """Print ``report`` to the terminal: coloured on a TTY, plain when piped.

    Piped (or written to a file), the output is exactly :func:`render_text` at the
    console's width: no colour codes and no trailing spaces, for clean CI logs.
    """
    console = console or Console()
    if console.is_terminal or console.is_jupyter:
        console.print(renderable(report))
    else:
        console.file.write(render_text(report, width=console.width))


def renderable(report: Report) -> RenderableType:
    """The whole report as one rich renderable (verdict first, coverage last)."""
    parts: list[RenderableType] = [_verdict(report), _table(report), _counts(report)]
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
    parts.append(Text(covered(report), style="dim"))
    return Group(*parts)


def _verdict(report: Report) -> Text:
    text = Text()
    text.append(f"gradient check: {WORD[report.status]}", style=STYLE[report.status])
    text.append(
        f"  difference {report.difference:.3e} ({bound(report)}; {band(report.difference)})"
    )
    if report.status == "fail" and report.difference < 1e-6:
        text.append(
            "\n  the seeds' rule of thumb would pass this difference; the error model finds "
            "elements wrong beyond the numerical derivative's own error (see below)"
        )
    return text


def bound(report: Report) -> str:
    """What judged the difference: the user's ``tol`` or the error model."""
    return f"tol {report.tol:.1e}" if report.tol is not None else "error model"


def band(difference: float) -> str:
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
            Text(block.name),
            shape_text(block.shape),
            f"{block.difference:.2e}",
            "-" if block.scale is None else f"{block.scale:.2f}",
            f"{block.max_abs_error:.2e}",
            index_text(block.worst_index),
            Text(status_text(block), style=STYLE[block.status]),
        )
    return table


def status_text(block: BlockResult) -> str:
    """``"fail (4 wrong, 1 kink)"``: the status with the block's counts."""
    extras = []
    if block.wrong_elements:
        extras.append(f"{len(block.wrong_elements)} wrong")
    if block.kinks:
        extras.append(f"{len(block.kinks)} kink{'s' if len(block.kinks) != 1 else ''}")
    if block.checked < block.size:
        extras.append(f"{block.checked}/{block.size} checked")
    return block.status + (f" ({', '.join(extras)})" if extras else "")


def counts_text(report: Report) -> str:
    """``"6 blocks: 4 pass, 2 fail, 0 inconclusive; 8 wrong elements, 0 at kinks"``."""
    blocks = list(report.blocks.values())
    by = {s: sum(b.status == s for b in blocks) for s in ("pass", "fail", "inconclusive")}
    wrong = sum(len(b.wrong_elements) for b in blocks)
    kinks = sum(len(b.kinks) for b in blocks)
    return (
        f"{_plural(len(blocks), 'block')}: {by['pass']} pass, {by['fail']} fail, "
        f"{by['inconclusive']} inconclusive; {_plural(wrong, 'wrong element')}, {kinks} at kinks"
    )


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _counts(report: Report) -> Text:
    return Text(counts_text(report))


def _suspects(report: Report) -> Text:
    return Text(
        "suspects (latest block first; backprop runs output to input): "
        + ", ".join(report.suspects),
        style="bold",
    )


def explanations(report: Report) -> list[str]:
    """One sentence per suspect (its diagnosis) and per inconclusive block (its reason)."""
    lines = []
    for name in report.suspects:
        block = report.blocks[name]
        if block.diagnosis is not None:
            lines.append(block.diagnosis.sentence)
        else:
            lines.append(f"{name}: wrong, and no simple pattern (scale, sign, transpose) fits")
    for block in report.blocks.values():
        if block.status == "inconclusive":
            lines.append(f"{block.name}: inconclusive: {block.reason}")
    return lines


def _details(report: Report) -> Table | None:
    lines = explanations(report)
    if not lines:
        return None
    grid = Table.grid(padding=(0, 1), pad_edge=False)
    grid.add_column(no_wrap=True)
    grid.add_column()
    for line in lines:
        grid.add_row("  -", Text(line))
    return grid


def worst_elements(report: Report) -> list[ElementResult]:
    """The worst elements of every block that did not pass, a few per block.

    Elements beyond their tolerance come first and alone; a block that fails on
    ``tol`` with every element within tolerance shows its worst ones instead.
    """
    rows: list[ElementResult] = []
    for block in report.blocks.values():
        if block.passed:
            continue
        beyond = [e for e in block.worst if e.abs_error > e.tolerance]
        rows.extend((beyond or list(block.worst))[:WORST_PER_BLOCK])
    return rows


def _worst(report: Report) -> Table | None:
    rows = worst_elements(report)
    if not rows:
        return None
    table = Table(title=None, box=None, pad_edge=False, header_style="bold")
    for column in ("element", "analytic", "numerical", "abs error", "rel error", "tolerance"):
        table.add_column(column, justify="left" if column == "element" else "right")
    for e in rows:
        table.add_row(
            Text(e.label + (f" ({e.note})" if e.note else "")),
            f"{e.analytic: .6e}",
            f"{e.numerical: .6e}",
            f"{e.abs_error:.2e}",
            f"{e.rel_error:.2e}",
            f"{e.tolerance:.2e}",
        )
    return table


def covered(report: Report) -> str:
    """What was checked: coverage, mode, scheme, precision, evaluations and time."""
    step = f"eps={report.eps:g}" if report.eps is not None else "scaled steps"
    coverage = report.coverage or "coverage not recorded"
    text = (
        f"checked: {coverage}; mode {report.mode}, scheme {report.scheme} ({step}), "
        f"{report.precision}; {report.evaluations} loss evaluations in {report.seconds:.2f} s"
    )
    if report.miss_probability is not None:
        text += f"; chance a bug this size went unseen: {report.miss_probability:.1e}"
    return text


def shape_text(shape: tuple[int, ...]) -> str:
    """``(5, 4)``; ``(3,)`` for one axis."""
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def index_text(index: tuple[int, ...]) -> str:
    """``[3, 1]``; ``[]`` for a scalar."""
    return "[" + ", ".join(str(i) for i in index) + "]"
