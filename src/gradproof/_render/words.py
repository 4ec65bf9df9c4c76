"""Every word, threshold and colour that more than one view of a report uses.

The text report, the HTML page and the plots say "FAIL" in the same red, judge a
relative difference by the same rule of thumb and name the same columns; they take
all of it from here, so a change of wording or colour is made once.

The rule of thumb is the Gradient Checking notebook's (deeplearning.ai): a relative
difference of about 1e-7 or less is great, about 1e-5 means look closer, about 1e-3
or more means worry.

>>> band(3e-8), band(2e-5), band(0.3)
('~1e-7 or less: great', '~1e-5: look closer', '~1e-3 or more: worry')
>>> [b.label for b in BANDS]
['1e-7: great', '1e-5: look closer', '1e-3: worry']
"""

from __future__ import annotations

import math
import unicodedata
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from gradproof._report import BlockResult, ElementResult, Report, Status

# ------------------------------------------------------------------ colours

GREEN = "#2e7d32"
RED = "#c62828"
AMBER = "#f9a825"
BLUE = "#1565c0"  # the user's own lines: `tol` on the bar chart, the ε sweep
INK = "#1b1b1b"  # text, and the label on an amber badge (white on amber is unreadable)

# ----------------------------------------------------------------- verdicts

VERDICT: dict[Status, str] = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
COLOUR: dict[Status, str] = {"pass": GREEN, "fail": RED, "inconclusive": AMBER}
TERMINAL_STYLE: dict[Status, str] = {
    "pass": "bold green",
    "fail": "bold red",
    "inconclusive": "bold yellow",
}
TITLE = "gradient check"


class Band(NamedTuple):
    """One band of the notebook's rule of thumb for the relative difference."""

    level: float  # the typical difference of the band: the line the plots draw
    below: float  # differences under this (and not under the band before) fall in it
    reach: str  # how the text report states the band's range
    advice: str

    @property
    def label(self) -> str:
        """``"1e-7: great"``: the band's line as the plots label it."""
        return f"{self.level:.0e}".replace("e-0", "e-") + f": {self.advice}"


BANDS = (
    Band(1e-7, 1e-6, "~1e-7 or less", "great"),
    Band(1e-5, 1e-4, "~1e-5", "look closer"),
    Band(1e-3, math.inf, "~1e-3 or more", "worry"),
)


def band(difference: float) -> str:
    """The notebook's rule of thumb for a relative difference, in words."""
    for b in BANDS:
        if difference < b.below:
            return f"{b.reach}: {b.advice}"
    return f"{BANDS[-1].reach}: {BANDS[-1].advice}"  # NaN compares false everywhere


def rule_of_thumb_caveat(report: Report) -> str | None:
    """Why a failure whose overall difference the rule of thumb calls great still fails."""
    if report.status != "fail" or not report.difference < BANDS[0].below:
        return None
    return (
        "the notebook's rule of thumb would pass this difference; the error model finds "
        "elements wrong beyond the numerical derivative's own error (see below)"
    )


def bound(report: Report) -> str:
    """What judged the difference: the user's ``tol`` or the error model."""
    return f"tol {report.tol:.1e}" if report.tol is not None else "error model"


def checked_nothing(report: Report) -> bool:
    """Whether no coordinate was checked at all (a budget spent before the first one): the
    report's difference is then over nothing, and no rule of thumb may call it great."""
    return not any(block.checked for block in report.blocks.values())


def difference_text(report: Report) -> str:
    """``"difference 2.851e-01 (error model; ~1e-3 or more: worry)"``."""
    if checked_nothing(report):
        return "no difference: no coordinate was checked (see below)"
    if "near_zero" in report.extra:
        return (
            f"difference {report.difference:.3e} ({bound(report)}; not meaningful: the "
            "gradient and its estimate are both zero within the error bound)"
        )
    return f"difference {report.difference:.3e} ({bound(report)}; {band(report.difference)})"


# -------------------------------------------------------------- user text

# Characters that move the cursor, clear the screen, end a line, reorder text or cannot be
# encoded: control (Cc), format (Cf: bidi overrides, zero-width), surrogate (Cs), line and
# paragraph separators (Zl, Zp).
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    r"""``text`` safe to show: control characters as escapes, as Python writes them.

    Block names, notes and diagnoses come from the user's parameter structure; a name
    holding ``"\x1b[2J"`` would clear the terminal and ``"a\nb"`` would break the
    table. Backslashes are doubled, so that an escaped control character and the same
    characters typed literally stay different names.

    >>> print(printable("W\x1b[2J"), printable("a\nb"), printable("a\\nb"), printable("\r"))
    W\x1b[2J a\nb a\\nb \r
    >>> printable("layer2.weight")
    'layer2.weight'
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape(c) for c in text)


def _escape(char: str) -> str:
    if char in ESCAPES:
        return ESCAPES[char]
    if unicodedata.category(char) not in UNSAFE_CATEGORIES:
        return char
    code = ord(char)
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )


# ------------------------------------------------------------------- tables

BLOCK_COLUMNS = ("block", "shape", "difference", "scale", "max |error|", "worst at", "status")
ELEMENT_COLUMNS = ("element", "analytic", "numerical", "abs error", "rel error", "tolerance")
SUSPECTS = "suspects (latest block first; backprop runs output to input): "
NOTE = "note: "
WORST_PER_BLOCK = 3


def shape_text(shape: tuple[int, ...]) -> str:
    """``(5, 4)``; ``(3,)`` for one axis."""
    return "(" + ", ".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


def index_text(index: tuple[int, ...]) -> str:
    """``[3, 1]``; ``[]`` for a scalar."""
    return "[" + ", ".join(str(i) for i in index) + "]"


def block_difference_text(block: BlockResult) -> str:
    """The block's difference to two decimals, ``-`` where nothing of it was checked."""
    return f"{block.difference:.2e}" if block.checked else "-"


def max_error_text(block: BlockResult) -> str:
    """The block's largest absolute error, ``-`` where nothing of it was checked."""
    return f"{block.max_abs_error:.2e}" if block.checked else "-"


def scale_text(block: BlockResult) -> str:
    """The fitted scale to two decimals, ``-`` where none was fitted."""
    return "-" if block.scale is None else f"{block.scale:.2f}"


def element_text(element: ElementResult) -> str:
    """``"W2[2, 0]"``, with its note (``"near a kink"``) where it has one; :func:`printable`."""
    return printable(element.label + (f" ({element.note})" if element.note else ""))


def suspects_text(report: Report) -> str:
    """The suspects line: :data:`SUSPECTS` and the suspect blocks' names, :func:`printable`."""
    return SUSPECTS + ", ".join(printable(name) for name in report.suspects)


def note_text(note: str) -> str:
    """``"note: ..."``, :func:`printable`."""
    return NOTE + printable(note)


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


def explanations(report: Report) -> list[str]:
    """One sentence per suspect (its diagnosis) and per inconclusive block (its reason).

    The sentences name the blocks, so each is :func:`printable`.
    """
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
    return [printable(line) for line in lines]


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
    return printable(text + proves(report))


def proves(report: Report) -> str:
    """What a pass proves in this precision, from the coarsest block's ``detectable``."""
    limits = [(b.detectable, b.name) for b in report.blocks.values() if b.detectable is not None]
    if report.status != "pass" or not limits:
        return ""
    worst, name = max(limits)
    return (
        f"; a pass proves every element right to {worst:.0e} of its block's largest "
        f"gradient element ({name}'s bound, the loosest)"
    )
