"""The HTML report: one self-contained page (plots inlined, no network, no script).

Every piece of user text (block names, notes, diagnoses) is escaped, and plots
are inlined as ``data:`` images, so the page can neither run code nor fetch
anything. Control characters are shown as escapes first (``\n``, ``\x1b``), as in
the text report: a browser would fold ``"a\nb"`` into ``"a b"`` and drop the rest,
and two different names must not look alike.

>>> from gradproof._report import BlockResult, Report
>>> block = BlockResult(name="<b>", shape=(1,), status="pass", difference=0.0, scale=1.0,
...                     max_abs_error=0.0, worst_index=(0,), checked=1)
>>> report = Report(status="pass", difference=0.0, tol=None, blocks={"<b>": block},
...                 suspects=(), scheme="central", eps=1e-7, precision="float64",
...                 evaluations=3, seconds=0.0)
>>> page = render_html(report, plots=False)
>>> "&lt;b&gt;" in page and "<b>" not in page
True
"""

from __future__ import annotations

import base64
import html
import importlib.util
from collections.abc import Iterable
from string import Template
from typing import TYPE_CHECKING

from gradproof._render.words import (
    AMBER,
    BLOCK_COLUMNS,
    ELEMENT_COLUMNS,
    GREEN,
    INK,
    RED,
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
    scale_text,
    shape_text,
    status_text,
    suspects_text,
    worst_elements,
)

if TYPE_CHECKING:
    from gradproof._report import Report

CSS = Template("""
.gradproof { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
  color: $ink; max-width: 70em; line-height: 1.4; }
.gradproof h1 { font-size: 1.4em; margin: 0.3em 0; }
.gradproof h2 { font-size: 1.1em; margin: 1.2em 0 0.4em; }
.gradproof .verdict { padding: 0.2em 0.5em; border-radius: 0.3em; color: #fff; }
.gradproof .pass { background: $green; } .gradproof .fail { background: $red; }
.gradproof .inconclusive { background: $amber; }
.gradproof td.status.inconclusive, .gradproof .verdict.inconclusive { color: $ink; }
.gradproof table { border-collapse: collapse; font-size: 0.9em; }
.gradproof th, .gradproof td { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd;
  text-align: right; }
.gradproof th:first-child, .gradproof td:first-child,
.gradproof table.blocks th:last-child { text-align: left; }
.gradproof td.name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.gradproof td.status { text-align: left; color: #fff; }
.gradproof .muted { color: #555; font-size: 0.9em; }
.gradproof figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
.gradproof figure img { max-width: 100%; }
""").substitute(ink=INK, green=GREEN, red=RED, amber=AMBER)
NO_MATPLOTLIB = "Plots need matplotlib, which is not installed: pip install 'gradproof[plot]'"


def render_html(report: Report, *, plots: bool = True, full_page: bool = True) -> str:
    """``report`` as HTML: a whole page, or a ``<div>`` for a notebook cell.

    Args:
        report: the :class:`~gradproof.Report` to render.
        plots: inline the per-block bar chart and the scatter (needs matplotlib;
            without it the page says how to install it).
        full_page: a complete ``<!DOCTYPE html>`` document; False gives a fragment.
    """
    e = html.escape
    word = VERDICT[report.status]
    parts = [
        '<div class="gradproof">',
        f"<style>{CSS}</style>",
        f'<h1>{TITLE}: <span class="verdict {report.status}">{word}</span></h1>',
        f"<p>{e(difference_text(report))}</p>",
        _blocks_table(report),
        f"<p>{e(counts_text(report))}</p>",
        *_suspects(report),
        *_worst(report),
        *(f'<p class="note">{e(note_text(note))}</p>' for note in report.notes),
        f'<p class="muted coverage">{e(covered(report))}</p>',
    ]
    if plots:
        parts.extend(_plots(report))
    parts.append("</div>")
    body = "\n".join(parts)
    if not full_page:
        return body
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>gradproof: {word}</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def render_notebook(report: Report) -> str:
    """The notebook view: a fragment, with plots where matplotlib is installed."""
    plots = importlib.util.find_spec("matplotlib") is not None
    return render_html(report, plots=plots, full_page=False)


def _blocks_table(report: Report) -> str:
    e = html.escape
    rows = [
        "<tr>"
        f'<td class="name">{e(printable(b.name))}</td><td>{shape_text(b.shape)}</td>'
        f"<td>{block_difference_text(b)}</td><td>{scale_text(b)}</td>"
        f"<td>{max_error_text(b)}</td><td>{index_text(b.worst_index)}</td>"
        f'<td class="status {b.status}">{e(status_text(b))}</td>'
        "</tr>"
        for b in report.blocks.values()
    ]
    return f'<table class="blocks">{_header(BLOCK_COLUMNS)}{"".join(rows)}</table>'


def _header(columns: Iterable[str]) -> str:
    return "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"


def _suspects(report: Report) -> list[str]:
    e = html.escape
    out = []
    if report.suspects:
        out.append(f"<h2>{e(suspects_text(report))}</h2>")
    lines = explanations(report)
    if lines:
        out.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>")
    return out


def _worst(report: Report) -> list[str]:
    rows = worst_elements(report)
    if not rows:
        return []
    e = html.escape
    body = "".join(
        "<tr>"
        f'<td class="name">{e(element_text(x))}</td>'
        f"<td>{x.analytic:.6e}</td><td>{x.numerical:.6e}</td><td>{x.abs_error:.2e}</td>"
        f"<td>{x.rel_error:.2e}</td><td>{x.tolerance:.2e}</td>"
        "</tr>"
        for x in rows
    )
    header = _header(ELEMENT_COLUMNS)
    return ["<h2>worst elements</h2>", f'<table class="worst">{header}{body}</table>']


def _plots(report: Report) -> list[str]:
    if importlib.util.find_spec("matplotlib") is None:
        return [f'<p class="muted">{NO_MATPLOTLIB}</p>']
    import gradproof.plot

    out = ["<h2>plots</h2>"]
    for figure, caption in (
        (gradproof.plot.blocks(report), "difference per block, with the verdict thresholds"),
        (gradproof.plot.scatter(report), "analytic against numerical (worst elements per block)"),
    ):
        data = base64.b64encode(gradproof.plot.to_svg(figure).encode()).decode("ascii")
        out.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/svg+xml;base64,{data}">'
            f'<figcaption class="muted">{html.escape(caption)}</figcaption></figure>'
        )
    return out
