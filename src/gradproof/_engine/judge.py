"""Turn numerical estimates into verdicts: per element, per block, overall.

Each element is judged against its own tolerance, built from the error model::

    tolerance_i = SAFETY * error_i + rtol * max(|g_i|, |n_i|) + atol

where ``error_i`` is the scheme's estimate of the numerical derivative's error
(truncation plus roundoff), ``rtol`` a small floor for what the error model
cannot see, and ``atol`` a floor relative to the largest gradient element.
An element beyond its tolerance whose one-sided differences disagree, and whose
analytic value matches one side, sits near a kink and is not a bug.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from gradproof._engine.diagnose import diagnose, scale_of
from gradproof._engine.schemes import Estimate
from gradproof._engine.tree import Block, Layout
from gradproof._report import BlockResult, ElementResult, Index, Status

SAFETY = 4.0
INCONCLUSIVE_RATIO = 0.1
KINK_SLACK = {"central": 1e-3, "richardson": 1e-3, "complex": 0.0}
WORST_SHOWN = 5
SAMPLE_SHOWN = 200  # (analytic, numerical) pairs kept per block for the scatter plot
GRAD_ROUNDING = 8.0  # units of the gradient's own epsilon allowed per element
SUSPECTS_NOTE = (
    "Suspects are ordered latest block first: backprop runs from the output back "
    "towards the input, so the latest failing block is where the first error arose."
)


@dataclass(frozen=True)
class Judged:
    """Element-level verdicts over the checked coordinates."""

    numerical: np.ndarray
    tolerance: np.ndarray
    wrong: np.ndarray
    kink: np.ndarray
    # The part of the tolerance owed to the numerical derivative alone (the rest
    # allows for a low-precision gradient's own rounding); None: all of it.
    numeric_tolerance: np.ndarray | None = None
    # Coordinates among these that central differences could not clear, so that
    # they were judged on Richardson's extra points (the default scheme only).
    refined: int = 0

    @property
    def numeric(self) -> np.ndarray:
        return self.tolerance if self.numeric_tolerance is None else self.numeric_tolerance


def relative_difference(g: np.ndarray, n: np.ndarray) -> float:
    """The notebook's ``||g - n||_2 / (||g||_2 + ||n||_2)``, 0 where both are 0."""
    denom = float(np.linalg.norm(g) + np.linalg.norm(n))
    return float(np.linalg.norm(g - n)) / denom if denom > 0 else 0.0


def judge_elements(
    g: np.ndarray,
    est: Estimate,
    scheme: str,
    rtol: float,
    grad_eps: float = 2.0**-52,
    scale: float | None = None,
) -> Judged:
    """Element-wise verdicts, with kink coordinates re-judged on one side.

    ``grad_eps`` is the machine epsilon the gradient under test was computed in:
    a float32 backprop's own rounding (relative to the element and, for sums
    that cancel, to the largest element of the whole gradient, ``scale``) is
    allowed for on top of the error model. ``scale`` defaults to the largest
    element among ``g`` and the estimates; pass the whole gradient's when
    judging a subset.
    """
    n = est.value.copy()
    if scale is None:
        scale = float(max(np.max(np.abs(n), initial=0.0), np.max(np.abs(g), initial=0.0)))
    atol = 1e-12 * scale + 1e-300
    tol = SAFETY * est.error + rtol * np.maximum(np.abs(g), np.abs(n)) + atol
    numeric = tol.copy()
    if grad_eps > 2.0**-52:
        tol += GRAD_ROUNDING * grad_eps * (np.abs(g) + scale)
    kink = np.zeros(n.shape, dtype=bool)
    for i in np.flatnonzero(_nonsmooth(g, est, KINK_SLACK[scheme], rtol)):
        side = _kink_side(g[i], est, int(i), KINK_SLACK[scheme], rtol)
        if side is not None:
            n[i], tol[i] = side
            numeric[i] = min(numeric[i], tol[i])
            kink[i] = True
    wrong = np.abs(g - n) > tol
    return Judged(n, tol, wrong, kink, numeric)


def _nonsmooth(g: np.ndarray, est: Estimate, slack: float, rtol: float) -> np.ndarray:
    """Coordinates with evidence of a kink within the step.

    The forward and backward differences disagree, or the central differences
    at h and h/2 do, by more than roundoff and a relative slack allow. For a
    smooth loss neither happens, so a small real bug is never excused as a kink.
    """
    fwd, bwd = est.forward, est.backward
    with np.errstate(invalid="ignore"):
        size = np.maximum(np.maximum(np.abs(fwd), np.abs(bwd)), np.abs(g))
        floor = max(slack, rtol) * size + SAFETY * 4 * est.roundoff
        evidence = np.abs(fwd - bwd) > floor
        if est.smooth_gap is not None:
            evidence |= est.smooth_gap > floor
    return evidence & np.isfinite(fwd) & np.isfinite(bwd)


def _kink_side(
    g: float, est: Estimate, i: int, slack: float, rtol: float
) -> tuple[float, float] | None:
    """The one-sided value (and its tolerance) that explains ``g`` near a kink, if any.

    ``g`` must match a side whose own estimate is informative (its error bound
    below 10% of its size): the side that stays clear of the kink.
    """
    fwd, bwd = est.forward[i], est.backward[i]
    size = max(abs(fwd), abs(bwd), abs(g))
    sides = sorted(((est.forward_error[i], fwd), (est.backward_error[i], bwd)), key=lambda t: t[0])
    for err, side in sides:  # the side clear of the kink has the smaller error bound
        if err > 0.1 * size:
            continue
        tol = SAFETY * err + max(slack, rtol) * size + 1e-300
        if abs(g - side) <= tol:
            return float(side), float(tol)
    return None


def judge_block(
    block: Block,
    positions: np.ndarray,
    g: np.ndarray,
    theta: np.ndarray,
    judged: Judged,
    global_signal: float,
    tol: float | None,
) -> BlockResult:
    """The verdict for one block from its checked positions (offsets into the block)."""
    n, t = judged.numerical, judged.tolerance

    def index(k: int) -> Index:  # only the elements the report names are unravelled
        return block.unravel(int(positions[k]))

    wrong = [index(k) for k in np.flatnonzero(judged.wrong).tolist()]
    kinks = tuple(index(k) for k in np.flatnonzero(judged.kink).tolist())
    err = np.abs(g - n)
    difference = relative_difference(g, n)
    status, reason = _block_status(g, n, judged.numeric, wrong, difference, tol, global_signal)
    full = positions.size == block.size
    diagnosis = None
    if status == "fail":
        shape = block.shape if full and block.shape else (positions.size,)
        diagnosis = diagnose(
            block.name, g.reshape(shape), n.reshape(shape), theta.reshape(shape), wrong
        )
    worst_k = int(np.argmax(err)) if err.size else 0
    return BlockResult(
        name=block.name,
        shape=block.shape,
        status=status,
        difference=difference,
        scale=scale_of(g, n),
        max_abs_error=float(err.max(initial=0.0)),
        worst_index=index(worst_k) if positions.size else (),
        checked=int(positions.size),
        wrong_elements=tuple(wrong),
        kinks=kinks,
        worst=_worst(block.name, index, g, n, t, judged.kink),
        reason=reason,
        diagnosis=diagnosis,
        sample=_sample(g, n),
    )


def _sample(g: np.ndarray, n: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Up to SAMPLE_SHOWN (analytic, numerical) pairs, evenly spaced over the block, for plots."""
    if g.size <= SAMPLE_SHOWN:
        return tuple(zip(g.ravel().tolist(), n.ravel().tolist(), strict=True))
    # dict.fromkeys, not np.unique: numpy's set routines import numpy.ma on first use (~20 ms).
    spaced = np.linspace(0, g.size - 1, SAMPLE_SHOWN).astype(np.int64).tolist()
    return tuple((float(g[k]), float(n[k])) for k in dict.fromkeys(spaced))


def _block_status(
    g: np.ndarray,
    n: np.ndarray,
    t: np.ndarray,
    wrong: list[Index],
    difference: float,
    tol: float | None,
    global_signal: float,
) -> tuple[Status, str]:
    if wrong:
        return "fail", f"{len(wrong)} element(s) beyond the error model"
    if tol is not None and difference > tol:
        return "fail", f"difference {difference:.3g} > tol {tol:.3g}"
    signal = max(rms(n), rms(g), 1e-3 * global_signal)
    noise = rms(t)
    if signal > 0 and noise > INCONCLUSIVE_RATIO * signal:
        return "inconclusive", (
            f"the numerical derivative is too noisy to judge: its error bound is "
            f"{noise / signal:.0%} of the gradient's size. Try float64 evaluation, a "
            f"larger eps, or a loss with less noise"
        )
    return "pass", ""


def rms(x: np.ndarray) -> float:
    """The root mean square of ``x`` (0 for an empty array)."""
    flat = x.ravel()
    return math.sqrt(float(np.dot(flat, flat)) / flat.size) if flat.size else 0.0


def _worst(
    name: str,
    index: Callable[[int], Index],
    g: np.ndarray,
    n: np.ndarray,
    t: np.ndarray,
    kink: np.ndarray,
) -> tuple[ElementResult, ...]:
    ratio = np.abs(g - n) / t
    order = np.argsort(-ratio, kind="stable")[:WORST_SHOWN]
    out = []
    for k in order:
        abs_err = float(abs(g[k] - n[k]))
        denom = max(abs(float(g[k])), abs(float(n[k])))
        out.append(
            ElementResult(
                block=name,
                index=index(int(k)),
                analytic=float(g[k]),
                numerical=float(n[k]),
                abs_error=abs_err,
                rel_error=abs_err / denom if denom > 0 else 0.0,
                tolerance=float(t[k]),
                note="near a kink" if kink[k] else "",
            )
        )
    return tuple(out)


def apply_tol(blocks: list[BlockResult], difference: float, tol: float | None) -> list[BlockResult]:
    """The notebook's rule on top of the error model: the overall difference against ``tol``.

    As in the Gradient Checking notebook, ``tol`` judges one number, the difference
    over every checked coordinate. Where that exceeds ``tol`` and the error model
    failed no block, the blocks whose own difference exceeds ``tol`` fail (at
    least one does when the overall one does); where the error model already
    names failing blocks, they explain the overall difference, and no other
    block is blamed for it.
    """
    if tol is None or difference <= tol or any(b.status == "fail" for b in blocks):
        return blocks
    return [
        replace(
            b,
            status="fail",
            reason=f"difference {b.difference:.3g} > tol {tol:.3g} (overall {difference:.3g})",
        )
        if b.status != "fail" and b.difference > tol
        else b
        for b in blocks
    ]


def unchecked(block: Block, reason: str) -> BlockResult:
    """An inconclusive result for a block no evaluation reached; ``reason`` says why."""
    return BlockResult(
        name=block.name,
        shape=block.shape,
        status="inconclusive",
        difference=0.0,
        scale=None,
        max_abs_error=0.0,
        worst_index=(),
        checked=0,
        reason=reason,
    )


def overall_status(blocks: list[BlockResult], difference: float, tol: float | None) -> Status:
    """Fail if any block fails (or the overall difference exceeds ``tol``)."""
    if any(b.status == "fail" for b in blocks) or (tol is not None and difference > tol):
        return "fail"
    if any(b.status == "inconclusive" for b in blocks):
        return "inconclusive"
    return "pass"


def suspects(blocks: list[BlockResult]) -> tuple[str, ...]:
    """Failing blocks, latest in structure order first.

    Backprop runs from the output towards the input, so a wrong block late in
    a forward-ordered structure is the earliest error in backprop's own order;
    blocks before it may only inherit its error.
    """
    return tuple(b.name for b in reversed(blocks) if b.status == "fail")


def global_signal(g: np.ndarray, n: np.ndarray) -> float:
    """The size of the whole checked gradient, below which a block's noise is judged."""
    return max(rms(g), rms(n))


def blocks_of(layout: Layout, indices: np.ndarray) -> list[tuple[Block, np.ndarray, np.ndarray]]:
    """For each block: the block, the slice of checked positions, their offsets in it."""
    out = []
    for block in layout.blocks:
        lo, hi = np.searchsorted(indices, [block.start, block.stop])
        out.append((block, np.arange(lo, hi), indices[lo:hi] - block.start))
    return out
