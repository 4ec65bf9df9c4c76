"""``check_grads``' tolerance rule: it decides :func:`gradproof.jax.check` given ``atol``/``rtol``.

An element of the gradient fails when ``|analytic - numerical| > atol + rtol *
|numerical|``, ``numerical`` being the central difference of step ``eps``
(``check_grads``' default step, 1e-4, where ``eps`` is not given) and
``analytic`` JAX's gradient of the derivative being checked. The one of
``atol``, ``rtol`` not given takes ``check_grads``' default for float64, 1e-5.
A complex element is two coordinates, its real and its imaginary part, each
judged alone. Where the rule holds it forgives what gradproof's error model
failed; where it breaks, the report names the elements that break it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradproof._engine.blocks import WORST_SHOWN
from gradproof._errors import invalid
from gradproof._report import BlockResult, Diagnosis, ElementResult, Report

JAX_EPS = 1e-4  # check_grads' default step
JAX_TOL = 1e-5  # check_grads' default atol and rtol for float64 (and complex128)
ROWS = 1 << 22  # parameter values per batch of perturbed parameter sets (32 MiB in float64)

Loss = Callable[[Mapping[str, np.ndarray]], Any]


def coordinates(value: np.ndarray) -> np.ndarray:
    """A block's real coordinates: a complex block as (real, imaginary) pairs on a last axis.

    >>> coordinates(np.array([1 + 2j, 3 - 4j])).tolist()
    [[1.0, 2.0], [3.0, -4.0]]
    """
    if np.iscomplexobj(value):
        return np.stack([value.real, value.imag], axis=-1).astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def central_differences(
    loss: Loss, blocks: Mapping[str, np.ndarray], eps: float, *, batched: bool
) -> dict[str, np.ndarray]:
    """``(loss(x + eps·e_j) - loss(x - eps·e_j)) / (2·eps)`` for every real coordinate ``j``.

    >>> d = central_differences(lambda b: float(np.sum(np.abs(b["z"]) ** 2)),
    ...                         {"z": np.array([1 + 2j])}, 1e-4, batched=False)
    >>> np.round(d["z"], 6).tolist()  # 2x, 2y
    [[2.0, 4.0]]
    """
    total = sum(np.asarray(b).size for b in blocks.values()) or 1
    return {
        name: _block_differences(loss, blocks, name, eps, batched, max(1, ROWS // (2 * total)))
        for name in blocks
    }


def _block_differences(
    loss: Loss,
    blocks: Mapping[str, np.ndarray],
    name: str,
    eps: float,
    batched: bool,
    chunk: int,
) -> np.ndarray:
    shape = coordinates(blocks[name]).shape
    size = int(np.prod(shape, dtype=np.int64))
    out = np.empty(size)
    for start in range(0, size, chunk):
        columns = np.arange(start, min(size, start + chunk))
        rows = len(columns)
        stacked = {n: np.repeat(np.asarray(b)[None], 2 * rows, axis=0) for n, b in blocks.items()}
        flat = stacked[name].view(np.float64).reshape(2 * rows, -1)  # complex: (re, im) pairs
        flat[np.arange(rows), columns] += eps
        flat[np.arange(rows, 2 * rows), columns] -= eps
        if batched:
            values = np.asarray(loss(stacked), dtype=np.float64).reshape(-1)
        else:
            values = np.array(
                [float(loss({n: b[r] for n, b in stacked.items()})) for r in range(2 * rows)]
            )
        out[columns] = (values[:rows] - values[rows:]) / (2 * eps)
    return out.reshape(shape)


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        ok = False
    else:
        ok = math.isfinite(float(value)) and float(value) >= 0
    if not ok:
        raise invalid(
            name,
            value,
            "must be a non-negative finite number (gradproof.jax compares in float64, so "
            "one number, not check_grads' dict by dtype)",
            f"pass e.g. {name}=1e-5, check_grads' default for float64",
        )
    return float(value)


@dataclasses.dataclass(frozen=True)
class JaxRule:
    """``check_grads``' rule on each element: ``|analytic - numerical| <= atol + rtol*|numerical|``.

    >>> JaxRule.given(None, None, None) is None
    True
    >>> JaxRule.given(0.0, None, None)  # the one not given takes check_grads' default
    JaxRule(atol=0.0, rtol=1e-05, eps=0.0001)
    """

    atol: float
    rtol: float
    eps: float

    @classmethod
    def given(cls, atol: Any, rtol: Any, eps: float | None) -> JaxRule | None:
        """The rule where the user gave ``atol`` or ``rtol``; None where both are None."""
        a, r = _number("atol", atol), _number("rtol", rtol)
        if a is None and r is None:
            return None
        return cls(
            JAX_TOL if a is None else a,
            JAX_TOL if r is None else r,
            float(JAX_EPS if eps is None else eps),
        )

    def describe(self) -> str:
        return (
            f"check_grads' rule on each element: |analytic - numerical| <= atol + rtol * "
            f"|numerical| (atol={self.atol:g}, rtol={self.rtol:g}; numerical derivative by "
            f"central differences, eps={self.eps:g})"
        )

    def judge(
        self,
        report: Report,
        analytic: Mapping[str, np.ndarray],
        numerical: Mapping[str, np.ndarray],
    ) -> Report:
        """``report`` as the rule decides it, naming the elements that break it."""
        blocks = {
            name: self._block(block, analytic[name], numerical[name])
            for name, block in report.blocks.items()
        }
        failing = [n for n in blocks if blocks[n].status == "fail"]
        suspects = [n for n in report.suspects if n in failing]
        suspects += [n for n in reversed(failing) if n not in suspects]
        own_tol = report.tol is not None and report.difference > report.tol
        status = report.status
        if failing or own_tol:
            status = "fail"
        elif all(b.passed for b in blocks.values()):
            status = "pass"
        notes = (*report.notes, f"Judged by {self.describe()}.")
        evaluations = report.evaluations + 2 * sum(np.size(v) for v in numerical.values())
        rule = {"atol": self.atol, "rtol": self.rtol, "eps": self.eps}
        return dataclasses.replace(
            report,
            status=status,
            blocks=blocks,
            suspects=tuple(suspects),
            notes=notes,
            evaluations=evaluations,
            extra={**report.extra, "rule": rule},
        )

    def _block(
        self, block: BlockResult, analytic: np.ndarray, numerical: np.ndarray
    ) -> BlockResult:
        a, n = coordinates(analytic), coordinates(numerical)
        err, bound = np.abs(a - n), self.atol + self.rtol * np.abs(n)
        with np.errstate(invalid="ignore"):
            broken = np.argwhere(~(err <= bound))  # NaN breaks it
        if len(broken):
            indices = [tuple(int(i) for i in ix) for ix in broken]
            return self._broken(block, a, n, indices, np.iscomplexobj(analytic))
        if block.passed or not _decided(block):
            return block  # passed, or failed on the user's tol: the rule does not decide
        return dataclasses.replace(
            block,
            status="pass",
            wrong_elements=(),
            diagnosis=None,
            reason=f"within check_grads' rule (atol={self.atol:g}, rtol={self.rtol:g})",
        )

    def _broken(
        self,
        block: BlockResult,
        a: np.ndarray,
        n: np.ndarray,
        broken: list[tuple[int, ...]],
        is_complex: bool,
    ) -> BlockResult:
        """``block`` failed, naming the elements that break the rule, furthest beyond first."""
        rows = [
            self._element(block.name, ix, float(a[ix]), float(n[ix]), is_complex) for ix in broken
        ]
        rows.sort(key=lambda e: float(-np.nan_to_num(e.abs_error - e.tolerance, nan=np.inf)))
        sentence = (
            f"{block.name}: {len(broken)} element(s) beyond check_grads' bound atol + rtol * "
            f"|numerical| (atol={self.atol:g}, rtol={self.rtol:g}); gradproof's error model "
            f"alone: {block.status}"
        )
        return dataclasses.replace(
            block,
            status="fail",
            wrong_elements=tuple(broken),
            worst=tuple(rows[:WORST_SHOWN]),
            worst_index=rows[0].index,
            max_abs_error=max([0.0, *(e.abs_error for e in rows)]),
            diagnosis=block.diagnosis or Diagnosis("jax_rule", sentence),
            reason=sentence,
        )

    def _element(
        self, name: str, index: tuple[int, ...], a: float, n: float, is_complex: bool
    ) -> ElementResult:
        """One element beyond the rule's bound; of a complex block, which part it is."""
        err, size = abs(a - n), max(abs(a), abs(n))
        part = ("; the real part", "; the imaginary part")[index[-1]] if is_complex else ""
        return ElementResult(
            block=name,
            index=index,
            analytic=a,
            numerical=n,
            abs_error=err,
            rel_error=err / size if size > 0 else 0.0,
            tolerance=self.atol + self.rtol * abs(n),
            note=f"check_grads' rule{part}",
        )


def _decided(block: BlockResult) -> bool:
    """Whether the rule judges ``block`` in the error model's stead (wrong or unjudged)."""
    return block.status == "inconclusive" or (block.status == "fail" and bool(block.wrong_elements))
