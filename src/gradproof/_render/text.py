"""The text report: a verdict line, the per-block table, suspects and diagnoses.

Rendered with rich: a real table, colour on a terminal, plain text when piped or
when turned into a string (``str(report)`` is always plain and fixed-width). Every
name that came from the user is shown through :func:`~gradproof._render.words.printable`,
so a control character in a block name reaches the terminal as ``\x1b``, never as
the character itself.

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
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradproof._render.words import (
    BLOCK_COLUMNS,
    ELEMENT_COLUMNS,
    TERMINAL_STYLE,
    TITLE,
    VERDICT,
    block_difference_text,
    counts_text,
    covered,
    difference_text,
    element_text,
    explanations,
    index_text,
    max_error_text,
    note_text,
    printable,
    rule_of_thumb_caveat,
    scale_text,
    shape_text,
    status_text,
    suspects_text,
    worst_elements,
)

if TYPE_CHECKING:
    from gradproof._report import Report

WIDTH = 100


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


def terminal_console() -> Console:
    """The command line's console: colour and the terminal's width on a TTY; plain text,
    :data:`WIDTH` columns wide, when piped. A closed pipe raises ``BrokenPipeError``
    (rich's own handling exits 1, which the command line uses for "the gradient failed")."""
    console = _Console()
    return console if console.is_terminal else _Console(width=WIDTH)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def renderable(report: Report) -> RenderableType:
    """The whole report as one rich renderable (verdict first, coverage last)."""
    parts: list[RenderableType] = [_verdict(report), _table(report), Text(counts_text(report))]
    if report.suspects:
        parts.append(Text(suspects_text(report), style="bold"))
    details = _details(report)
    if details is not None:
        parts.append(details)
    worst = _worst(report)
    if worst is not None:
        parts.append(worst)
    for note in report.notes:
        parts.append(Text(note_text(note)))
    parts.append(Text(covered(report), style="dim"))
    return Group(*parts)


def _verdict(report: Report) -> Text:
    text = Text()
    text.append(f"{TITLE}: {VERDICT[report.status]}", style=TERMINAL_STYLE[report.status])
    text.append(f"  {difference_text(report)}")
    caveat = rule_of_thumb_caveat(report)
    if caveat is not None:
        text.append(f"\n  {caveat}")
    return text


def _table(report: Report) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in BLOCK_COLUMNS:
        numeric = column in ("difference", "scale", "max |error|")
        table.add_column(column, justify="right" if numeric else "left")
    for block in report.blocks.values():
        table.add_row(
            Text(printable(block.name)),
            shape_text(block.shape),
            block_difference_text(block),
            scale_text(block),
            max_error_text(block),
            index_text(block.worst_index),
            Text(status_text(block), style=TERMINAL_STYLE[block.status]),
        )
    return table


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


def _worst(report: Report) -> Table | None:
    rows = worst_elements(report)
    if not rows:
        return None
    table = Table(title=None, box=None, pad_edge=False, header_style="bold")
    for column in ELEMENT_COLUMNS:
        table.add_column(column, justify="left" if column == "element" else "right")
    for e in rows:
        table.add_row(
            Text(element_text(e)),
            f"{e.analytic: .6e}",
            f"{e.numerical: .6e}",
            f"{e.abs_error:.2e}",
            f"{e.rel_error:.2e}",
            f"{e.tolerance:.2e}",
        )
    return table
