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

    Attributes:
        status: ``"pass"``, ``"fail"`` or ``"inconclusive"``.
        difference: the seeds' ``||g - g~|| / (||g|| + ||g~||)`` over every
            checked coordinate.
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
        from gradproof._render_text import render_text

        return render_text(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        from gradproof._render_json import report_to_dict

        return report_to_dict(self)
