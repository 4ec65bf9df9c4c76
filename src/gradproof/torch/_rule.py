"""torch's elementwise tolerance rule: it decides `gradcheck` where ``atol`` or ``rtol`` is given.

An element of a Jacobian fails when ``|analytic - numerical| > atol + rtol *
|numerical|``, with torch's numerical Jacobian (central differences of step
``eps``) and torch's analytic one (one backward per output element), as
``torch.autograd.gradcheck``'s default mode checks it. Where the rule holds it
forgives what gradproof's error model failed; where it breaks, the report
names the elements that break it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from gradproof._engine.blocks import WORST_SHOWN
from gradproof._report import BlockResult, Diagnosis, ElementResult, Index, Report
from gradproof.torch._common import as_pairs, index_label

if TYPE_CHECKING:
    from gradproof.torch._function_loss import FunctionLoss

TORCH_EPS, TORCH_ATOL, TORCH_RTOL = 1e-6, 1e-5, 1e-3  # torch.autograd.gradcheck's defaults


def rule_decides(report: Report) -> bool:
    """Whether torch's rule, where given, decides ``report``'s failure in gradproof's stead.

    It decides the elements the error model failed and the blocks it could not
    judge; a failure on the user's own ``tol`` stands.
    """
    if report.tol is not None and report.difference > report.tol:
        return False
    return all(b.passed or _decided(b) for b in report.blocks.values())


def _decided(block: BlockResult) -> bool:
    """Whether torch's rule judges ``block`` in the error model's stead (wrong or unjudged)."""
    return block.status == "inconclusive" or (block.status == "fail" and bool(block.wrong_elements))


@dataclasses.dataclass(frozen=True, eq=False)
class _Jacobian:
    """Output ``output``'s Jacobian in input ``block``, both ways: (output size, input size)."""

    block: str
    input_shape: tuple[int, ...]
    output: int
    output_shape: tuple[int, ...]
    analytic: np.ndarray
    numerical: np.ndarray

    def element(self, i: int, j: int, bound: float) -> ElementResult:
        """Element ``[i, j]`` as a report row; the note names the output element."""
        a, n = float(self.analytic[i, j]), float(self.numerical[i, j])
        err = abs(a - n)
        size = max(abs(a), abs(n))
        where = index_label(np.unravel_index(i, self.output_shape))
        return ElementResult(
            block=self.block,
            index=_unravel(j, self.input_shape),
            analytic=a,
            numerical=n,
            abs_error=err,
            rel_error=err / size if size > 0 else 0.0,
            tolerance=float(bound),
            note=f"Jacobian of output {self.output}{where}",
        )


@dataclasses.dataclass(frozen=True)
class _Breaks:
    """The Jacobian elements of one input that break torch's rule."""

    count: int
    columns: frozenset[int]  # the input's elements (flat) in a breaking Jacobian column
    shape: tuple[int, ...]  # the input's shape
    worst: tuple[ElementResult, ...]  # furthest beyond the bound first
    largest: float  # the largest |analytic - numerical| among them

    @classmethod
    def merged(cls, parts: list[_Breaks]) -> _Breaks | None:
        """One input's breaks over every output; None where nothing breaks the rule."""
        count = sum(p.count for p in parts)
        if not count:
            return None
        worst = sorted((e for p in parts for e in p.worst), key=_furthest_first)
        return cls(
            count,
            frozenset().union(*(p.columns for p in parts)),
            parts[0].shape,
            tuple(worst[:WORST_SHOWN]),
            max([0.0, *(p.largest for p in parts)]),  # 0.0 first: a NaN never wins
        )

    def wrong_elements(self) -> tuple[Index, ...]:
        return tuple(_unravel(j, self.shape) for j in sorted(self.columns))


@dataclasses.dataclass(frozen=True)
class TorchRule:
    """torch's rule on each Jacobian element: ``|analytic - numerical| <= atol + rtol*|numerical|``.

    >>> TorchRule.given(None, None, None) is None
    True
    >>> TorchRule.given(0.0, None, None)  # the one not given takes torch's default
    TorchRule(atol=0.0, rtol=0.001, eps=1e-06)
    """

    atol: float
    rtol: float
    eps: float
    # torch's numerical Jacobians by (loss, input), made once for every check that needs them
    jacobians: dict[tuple[int, str], list[np.ndarray]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def given(cls, atol: float | None, rtol: float | None, eps: float | None) -> TorchRule | None:
        """The rule where the user gave ``atol`` or ``rtol``; None where both are None."""
        if atol is None and rtol is None:
            return None
        return cls(
            float(TORCH_ATOL if atol is None else atol),
            float(TORCH_RTOL if rtol is None else rtol),
            float(TORCH_EPS if eps is None else eps),
        )

    def describe(self) -> str:
        """What the rule checks, in words (the context of its failure)."""
        return (
            "the outputs, by torch's rule on each Jacobian element: |analytic - numerical| <= "
            f"atol + rtol * |numerical| (atol={self.atol:g}, rtol={self.rtol:g}; numerical "
            f"Jacobian by central differences, eps={self.eps:g})"
        )

    def check(
        self,
        loss: FunctionLoss,
        params: dict[str, np.ndarray],
        report: Report,
        analytic: list[dict[str, np.ndarray]] | None = None,
    ) -> Report | None:
        """None where the rule holds; else ``report``, naming the elements that break it.

        ``analytic``: the Jacobians under test (default: the backward's, one
        backward per output element; the forward-mode check passes the jvp's).
        """
        analytic = loss.analytic_jacobians() if analytic is None else analytic
        found: dict[str, _Breaks] = {}
        for name in loss.names:
            numerical = self.numerical(loss, params, name)
            jacobians = [
                _Jacobian(name, as_pairs(params[name]).shape, k, tuple(out.shape), a[name], n)
                for k, (a, n, out) in enumerate(zip(analytic, numerical, loss.outputs, strict=True))
            ]
            breaks = _Breaks.merged([self._breaks(j) for j in jacobians])
            if breaks is not None:
                found[name] = breaks
        if not found:
            return None
        blocks = {
            name: self._block(block, found.get(name)) for name, block in report.blocks.items()
        }
        failing = tuple(n for n in reversed(list(blocks)) if blocks[n].status == "fail")
        return dataclasses.replace(report, status="fail", blocks=blocks, suspects=failing)

    def numerical(
        self, loss: FunctionLoss, params: dict[str, np.ndarray], name: str
    ) -> list[np.ndarray]:
        """torch's numerical Jacobians of every output in input ``name`` (made once)."""
        key = (id(loss), name)
        if key not in self.jacobians:
            self.jacobians[key] = loss.numerical_jacobians(params, name, self.eps)
        return self.jacobians[key]

    def holds_projected(
        self,
        loss: FunctionLoss,
        params: dict[str, np.ndarray],
        weights: tuple[Any, ...],
        grad: dict[str, np.ndarray],
    ) -> bool:
        """Whether ``grad``, a backward applied to ``weights``, keeps the rule's bound.

        Where every Jacobian element keeps it, so does the projection:
        ``|grad - sum_k w_k N_k| <= sum_k |w_k| (atol + rtol |N_k|)`` in every
        coordinate (N: the numerical Jacobians), which judges a check of one
        projection (an output's gradient undefined, a row of the vmap'd backward)
        as torch's rule would.
        """
        w = [np.asarray(t.detach().cpu().double().reshape(-1)) for t in weights]
        for name in loss.names:
            numerical = self.numerical(loss, params, name)
            estimate = sum(wk @ n for wk, n in zip(w, numerical, strict=True))
            bound = sum(
                np.abs(wk) @ (self.atol + self.rtol * np.abs(n))
                for wk, n in zip(w, numerical, strict=True)
            )
            error = np.abs(as_pairs(grad[name]).reshape(-1) - estimate)
            if not np.all(error <= bound):
                return False
        return True

    def forgive(self, report: Report) -> Report:
        """``report`` with the failures the rule decides passed (a ``tol`` failure stands)."""
        blocks = {name: self._block(block, None) for name, block in report.blocks.items()}
        if not all(b.passed for b in blocks.values()):
            return report
        return dataclasses.replace(report, status="pass", blocks=blocks, suspects=())

    def _breaks(self, jacobian: _Jacobian) -> _Breaks:
        """The elements of one Jacobian that break the rule (its worst ones as report rows)."""
        a, n = jacobian.analytic, jacobian.numerical
        err, bound = np.abs(a - n), self.atol + self.rtol * np.abs(n)
        with np.errstate(invalid="ignore"):
            rows, cols = np.nonzero(~(err <= bound))  # NaN breaks it, as in torch.allclose
        excess = np.nan_to_num(err[rows, cols] - bound[rows, cols], nan=np.inf)
        worst = [
            jacobian.element(int(rows[r]), int(cols[r]), float(bound[rows[r], cols[r]]))
            for r in np.argsort(-excess, kind="stable")[:WORST_SHOWN]
        ]
        return _Breaks(
            int(rows.size),
            frozenset(cols.tolist()),
            jacobian.input_shape,
            tuple(worst),
            float(np.max(err[rows, cols], initial=0.0)),
        )

    def _block(self, block: BlockResult, breaks: _Breaks | None) -> BlockResult:
        """``block`` as the rule judges it."""
        if breaks is not None:
            return self._broken(block, breaks)
        if block.passed or not _decided(block):
            return block  # passed, or failed on the user's tol: the rule does not decide
        return dataclasses.replace(
            block,
            status="pass",
            wrong_elements=(),
            diagnosis=None,
            reason=f"within torch's rule (atol={self.atol:g}, rtol={self.rtol:g})",
        )

    def _broken(self, block: BlockResult, breaks: _Breaks) -> BlockResult:
        """``block`` failed, naming the elements that break the rule."""
        sentence = (
            f"{block.name}: {breaks.count} Jacobian element(s) beyond torch's bound atol + rtol * "
            f"|numerical| (atol={self.atol:g}, rtol={self.rtol:g}); gradproof's error model "
            f"alone: {block.status}"
        )
        return dataclasses.replace(
            block,
            status="fail",
            wrong_elements=breaks.wrong_elements(),
            worst=breaks.worst,
            worst_index=breaks.worst[0].index,
            max_abs_error=breaks.largest,
            diagnosis=block.diagnosis or Diagnosis("torch_rule", sentence),
            reason=sentence,
        )


def _furthest_first(element: ElementResult) -> float:
    """Sort key: the element furthest beyond its bound first (NaN furthest)."""
    return float(-np.nan_to_num(element.abs_error - element.tolerance, nan=np.inf))


def _unravel(flat: int, shape: tuple[int, ...]) -> Index:
    """The index of element ``flat`` (row-major) of an array of ``shape``."""
    return tuple(int(i) for i in np.unravel_index(flat, shape))
