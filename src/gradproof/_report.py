"""The frozen result of a gradient check. Renderers live elsewhere."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "fail", "inconclusive"]
Index = tuple[int, ...]


@dataclass(frozen=True)
class ElementResult:
    """One coordinate of a block: what backprop said and what the loss says."""

    block: str
    index: Index
    analytic: float
    numerical: float
    abs_error: float
    rel_error: float
    tolerance: float
    note: str = ""

    @property
    def label(self) -> str:
        """``"W2[1, 3]"``, or the bare name for a scalar block."""
        if not self.index:
            return self.block
        return f"{self.block}[{', '.join(str(i) for i in self.index)}]"


@dataclass(frozen=True)
class Diagnosis:
    """The kind of bug a failing block looks like, in one sentence."""

    kind: str
    sentence: str


@dataclass(frozen=True)
class BlockResult:
    """The verdict for one block (one leaf of the parameter structure)."""

    name: str
    shape: tuple[int, ...]
    status: Status
    difference: float
    scale: float | None
    max_abs_error: float
    worst_index: Index
    checked: int
    wrong_elements: tuple[Index, ...] = ()
    kinks: tuple[Index, ...] = ()
    worst: tuple[ElementResult, ...] = ()
    diagnosis: Diagnosis | None = None
    reason: str = ""
    sample: tuple[tuple[float, float], ...] = ()
    # What a pass proves in this precision: an element off by more than this share of
    # the block's largest gradient element fails (None: not measured, e.g. unchecked).
    detectable: float | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def size(self) -> int:
        size = 1
        for n in self.shape:
            size *= n
        return size


@dataclass(frozen=True)
class Report:
    """Everything a gradient check found. ``str(report)`` renders it as text.

    ``report.to_html()`` renders one self-contained page, ``report.to_json()``
    JSON; in a notebook the report displays itself as HTML.

    Attributes:
        status: ``"pass"``, ``"fail"`` or ``"inconclusive"``.
        difference: the relative difference ``||g - g~|| / (||g|| + ||g~||)`` of the
            Gradient Checking notebook, over every checked coordinate.
        tol: the tolerance on ``difference`` (None: judged by the error model only).
        blocks: block name -> :class:`BlockResult`, in the order of the structure.
        suspects: failing blocks, the most likely origin of the bug first.
        coverage: what was checked, in words (every coordinate, a sample, probes).
        miss_probability: for sampled and probed checks, the stated probability
            that a bug of the reported relative size went unseen (None: full check).
        extra: mode-specific facts (JSON-ready), e.g. budget spent.
    """

    status: Status
    difference: float
    tol: float | None
    blocks: Mapping[str, BlockResult]
    suspects: tuple[str, ...]
    scheme: str
    eps: float | None
    precision: str
    evaluations: int
    seconds: float
    mode: str = "full"
    notes: tuple[str, ...] = ()
    coverage: str = ""
    miss_probability: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", types.MappingProxyType(dict(self.blocks)))
        object.__setattr__(self, "extra", types.MappingProxyType(dict(self.extra)))

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __str__(self) -> str:
        from gradproof._render.text import render_text

        return render_text(self)

    def __repr__(self) -> str:
        """A one-line summary; ``str(report)`` (or ``print``) gives the full text report."""
        suspects = f", suspects={self.suspects!r}" if self.suspects else ""
        return (
            f"Report(status={self.status!r}, difference={self.difference:.3e}, "
            f"blocks={len(self.blocks)}{suspects})"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        from gradproof._render.json import report_to_dict

        return report_to_dict(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON text (NaN and inf become ``null``)."""
        from gradproof._render.json import render_json

        return render_json(self, indent=indent)

    def to_html(self, *, plots: bool = True, full_page: bool = True) -> str:
        """The report as one self-contained HTML page (plots inlined, names escaped).

        Args:
            plots: inline the per-block bar chart and the analytic/numerical
                scatter (needs matplotlib: ``pip install 'gradproof[plot]'``).
            full_page: a complete document; False gives a ``<div>`` fragment.

        >>> import numpy as np, gradproof
        >>> report = gradproof.check(lambda w: float(w @ w), np.ones(2), lambda w: 2 * w)
        >>> report.to_html(plots=False).startswith("<!DOCTYPE html>")
        True
        """
        from gradproof._render.html import render_html

        return render_html(self, plots=plots, full_page=full_page)

    def _repr_html_(self) -> str:
        """The notebook view: the HTML report as a fragment, with plots if matplotlib is there."""
        from gradproof._render.html import render_notebook

        return render_notebook(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """IPython's plain-text view: the full text report."""
        printer.text(repr(self) if cycle else str(self).rstrip("\n"))


@dataclass(frozen=True)
class TaylorResult:
    """The Taylor test: residuals ``|J(θ+hv) − J(θ) − h g·v|`` over a ladder of ``h``.

    For the right gradient the residual shrinks like h² (order ≈ 2); for a wrong
    one, like h (order ≈ 1). ``residuals_zeroth`` (``|J(θ+hv) − J(θ)|``, order 1)
    is the reference line.
    """

    steps: tuple[float, ...]
    residuals: tuple[float, ...]
    residuals_zeroth: tuple[float, ...]
    order: float | None
    noise_floor: float
    status: Status
    explanation: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class SweepResult:
    """The notebook's relative difference against the central-difference step ε.

    Large ε: truncation error dominates; tiny ε: roundoff does. The curve is a V
    (on log axes) whose bottom is the best step.
    """

    eps: tuple[float, ...]
    differences: tuple[float, ...]
    best_eps: float
    best_difference: float
