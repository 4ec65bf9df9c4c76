"""Turn numerical estimates into element verdicts (blocks.py turns those into block verdicts).

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
from dataclasses import dataclass

import numpy as np

from gradproof._engine.schemes import Estimate

SAFETY = 4.0
KINK_SLACK = {"central": 1e-3, "richardson": 1e-3, "complex": 0.0}
LOPSIDED = 0.1  # a smooth gap this share of the sides' bend shows a kink on one side
GRAD_ROUNDING = 8.0  # units of the gradient's own epsilon allowed per element


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
    # The size the loss's derivatives reach over a move of θ's own size:
    # |J(θ+h) - J(θ)| / h² · max(|θ|, 1), a minimum's curvature times that size
    # (None where unknown). Near a minimum both the gradient and its estimate are
    # ~0, and noise is judged against this instead.
    slope: np.ndarray | None = None
    # Near a kink that this precision cannot resolve: neither cleared nor blamed.
    unclear: np.ndarray | None = None
    # Coordinates among these that central differences could not clear, so that
    # they were judged on Richardson's extra points (the default scheme only).
    refined: int = 0
    # Coordinates among these judged at smaller steps than the default (settle.py).
    settled: int = 0

    @property
    def numeric(self) -> np.ndarray:
        return self.tolerance if self.numeric_tolerance is None else self.numeric_tolerance

    # Built field by field: dataclasses.replace costs more than the arrays' slicing.
    def part(self, sl: slice) -> Judged:
        """The verdicts of the coordinates ``sl`` selects (views), the numeric tolerance
        filled in."""
        return Judged(
            numerical=self.numerical[sl],
            tolerance=self.tolerance[sl],
            wrong=self.wrong[sl],
            kink=self.kink[sl],
            numeric_tolerance=self.numeric[sl],
            slope=None if self.slope is None else self.slope[sl],
            unclear=None if self.unclear is None else self.unclear[sl],
            refined=self.refined,
            settled=self.settled,
        )

    def with_slope(self, slope: np.ndarray) -> Judged:
        """These verdicts with ``slope`` in place of their own."""
        return Judged(
            numerical=self.numerical,
            tolerance=self.tolerance,
            wrong=self.wrong,
            kink=self.kink,
            numeric_tolerance=self.numeric_tolerance,
            slope=slope,
            unclear=self.unclear,
            refined=self.refined,
            settled=self.settled,
        )


def relative_difference(
    g: np.ndarray, n: np.ndarray, squared: tuple[float, ...] | None = None
) -> float:
    """The notebook's ``||g - n||_2 / (||g||_2 + ||n||_2)``, 0 where both are 0.

    Computed without overflow at any scale (a gradient of 1e200 gives a
    difference near 1, not NaN); an infinite numerical derivative gives 1.
    ``squared``: :func:`squares` of ``g`` and ``n``, where the caller has them.

    >>> relative_difference(np.full(2, 1e200), np.ones(2))
    1.0
    """
    sg, sn, sd = (squared or squares(g, n))[:3]
    if math.isfinite(sg) and math.isfinite(sn) and math.isfinite(sd):
        denom = math.sqrt(sg) + math.sqrt(sn)
        return math.sqrt(sd) / denom if denom > 0 else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        denom = norm(g) + norm(n)
        if not math.isfinite(denom):  # an infinite or NaN estimate: as far apart as can be
            return 1.0
        value = norm(g - n) / denom if denom > 0 else 0.0
    return value if math.isfinite(value) else 1.0


def squares(g: np.ndarray, n: np.ndarray, *more: np.ndarray) -> tuple[float, ...]:
    """The sums of squares of ``g``, ``n``, ``g - n`` and each of ``more``, in one np.errstate.

    Each is what :func:`norm` and :func:`rms` take the root of (``x.dot(x)``, as
    ``np.linalg.norm`` computes it); inf or nan where one overflows or the array is
    not float64, and those then take their scaled path. One errstate for all of
    them: a block's verdict needs several, and entering one costs more than a dot.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return tuple(_square(x) for x in (g, n, g - n, *more))


def _square(x: np.ndarray) -> float:
    flat = x.ravel(order="K")
    return float(flat.dot(flat)) if flat.dtype == np.float64 else math.nan


def norm(x: np.ndarray, square: float = math.nan) -> float:
    """The 2-norm of ``x``, scaled so that huge elements do not overflow it.

    ``square``: ``x``'s sum of squares (:func:`squares`), where the caller has it.
    """
    if math.isfinite(square):
        return math.sqrt(square)
    with np.errstate(over="ignore", invalid="ignore"):
        plain = float(np.linalg.norm(x))
    if math.isfinite(plain) or x.size == 0:
        return plain
    largest = float(np.max(np.abs(x)))
    if not math.isfinite(largest) or largest == 0:
        return largest
    return largest * float(np.linalg.norm(x / largest))


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
        scale = _largest(g, n)
    tol = tolerance(g, n, est.error, rtol, scale)
    numeric = tol.copy()
    if grad_eps > 2.0**-52:
        tol += GRAD_ROUNDING * grad_eps * (np.abs(g) + scale)
    kink = np.zeros(n.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        disagree = ~(np.abs(g - n) <= tol)
    evidence = nonsmooth(g, est, KINK_SLACK[scheme], rtol)
    for i in evidence.nonzero()[0].tolist():
        side = _kink_side(g[i], est, i, KINK_SLACK[scheme], rtol)
        # A side replaces the estimate where it explains a disagreement, or judges more
        # tightly; where the estimate already matches g more tightly, a smooth loss's
        # curvature (one-sided differences apart by h·J'') is no kink.
        if side is not None and (disagree[i] or side[1] < tol[i]):
            n[i], tol[i] = side
            numeric[i] = min(numeric[i], tol[i])
            kink[i] = True
    # Where the precision is too coarse to tell a kink from noise (both sides uncertain),
    # an element that lies within a side's own error is neither cleared nor blamed (only
    # an element that still disagrees can be: where none does, nothing is unclear).
    unclear = disagree & ~kink
    if unclear.any():
        unclear &= _uncertain_side_matches(g, est, max(KINK_SLACK[scheme], rtol), evidence)
    # Non-finite anywhere (an overflowing estimate or tolerance) is never a pass.
    with np.errstate(invalid="ignore"):
        beyond = ~(np.abs(g - n) <= tol) | ~np.isfinite(n) | ~np.isfinite(tol)
    return Judged(n, tol, beyond & ~unclear, kink, numeric, unclear=unclear)


def tolerance(
    g: np.ndarray, n: np.ndarray, error: np.ndarray, rtol: float, scale: float | None = None
) -> np.ndarray:
    """The error model's tolerance of each element: ``SAFETY`` times the numerical
    derivative's error bound, ``rtol`` of the element, and a floor of 1e-12 of ``scale``
    (default: the largest of ``g`` and ``n``)."""
    if scale is None:
        scale = _largest(g, n)
    return SAFETY * error + rtol * np.maximum(np.abs(g), np.abs(n)) + (1e-12 * scale + 1e-300)


def _largest(g: np.ndarray, n: np.ndarray) -> float:
    return float(max(np.max(np.abs(n), initial=0.0), np.max(np.abs(g), initial=0.0)))


def _uncertain_side_matches(
    g: np.ndarray, est: Estimate, slack: float, nonsmooth: np.ndarray
) -> np.ndarray:
    """Elements near a kink, in a precision too coarse to tell: the noise alone could hide
    a kink, and ``g`` lies within the error bound of a one-sided estimate, where both
    sides are too uncertain to clear or blame it, or where the sides stand apart by more
    than either's own noise bound (``nonsmooth``: by more than the floor that shows a kink).

    Such an element can be neither cleared nor blamed: its block is inconclusive.
    Where the sides are uncertain from curvature rather than noise (float64 near a
    minimum), the noise is small and this never applies.
    """
    fwd, bwd = est.forward, est.backward
    with np.errstate(invalid="ignore", over="ignore"):
        size = np.maximum(np.maximum(np.abs(fwd), np.abs(bwd)), np.abs(g))
        noisy = SAFETY * 4 * est.roundoff > slack * size  # noise could hide a kink
        vague_f, vague_b = est.forward_error > 0.1 * size, est.backward_error > 0.1 * size
        near_f = np.abs(g - fwd) <= SAFETY * est.forward_error
        near_b = np.abs(g - bwd) <= SAFETY * est.backward_error
        # no informative side (one would have been matched, or g is wrong)
        both = vague_f & vague_b & (near_f | near_b)
        # the sides apart by more than either's own noise bound (a kink shown, or hinted at
        # below the floor that would prove one), and g within a side's uncertainty
        # (Richardson's sides only: a central pair's sides bound their noise, not their
        # truncation, and stand apart by h·J'' wherever the loss curves)
        apart = nonsmooth | (np.abs(fwd - bwd) > np.maximum(est.forward_error, est.backward_error))
        shown = apart & (near_f | near_b) & (est.smooth_gap is not None)
    return noisy & (both | shown) & np.isfinite(fwd) & np.isfinite(bwd)


def nonsmooth(g: np.ndarray, est: Estimate, slack: float, rtol: float) -> np.ndarray:
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
        if est.smooth_gap is not None:  # Richardson's one-sided estimates, each O(h^2)
            # A smooth loss's two agree to O(h^3) (their h^2 terms are equal), within
            # their bounds; a kink at the point itself parts them.
            bounds = SAFETY * (est.forward_error + est.backward_error) + rtol * size
            evidence |= np.abs(fwd - bwd) > bounds
        if est.smooth_gap is not None and est.bend is not None:
            evidence |= _lopsided(est, size, rtol)
    return evidence & np.isfinite(fwd) & np.isfinite(bwd)


def _lopsided(est: Estimate, size: np.ndarray, rtol: float) -> np.ndarray:
    """A kink on one side only, where the slope jump is below the relative slack.

    A smooth loss's central differences at h and h/2 differ by (h²/8)|J'''|, far below
    the sides' bend (h/4)|J''| (their ratio is h·J'''/2J''); a kink within one side's
    steps makes the gap as large as the bend. A gap beyond ``LOPSIDED`` times the bend,
    ``100·rtol`` of the derivative, and the noise is that evidence: in float64 it sees
    one sample's ReLU crossing zero in a batch of hundreds (a jump of 1e-4 or less).
    """
    assert est.smooth_gap is not None and est.bend is not None
    # the gap's own noise is at most ``roundoff`` (3δ/h: δ/h from D(h), 2δ/h from D(h/2))
    floor = np.maximum(LOPSIDED * est.bend, 100 * rtol * size) + SAFETY * est.roundoff
    return np.asarray(est.smooth_gap > floor)


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


def rms(x: np.ndarray, square: float = math.nan) -> float:
    """The root mean square of ``x`` (0 for an empty array), without overflow.

    ``square``: ``x``'s sum of squares (:func:`squares`), where the caller has it.
    """
    flat = x.ravel()
    if not flat.size:
        return 0.0
    if not math.isfinite(square):
        with np.errstate(over="ignore"):
            square = float(np.dot(flat, flat))
    if math.isfinite(square):
        return math.sqrt(square / flat.size)
    return norm(flat) / math.sqrt(flat.size)
