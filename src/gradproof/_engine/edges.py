"""Coordinates at the edge of the loss's domain: their steps shrunk until the loss is finite.

A parameter just inside its loss's domain (``sqrt`` of 1e-10, ``log`` of a probability
near 0) can leave it at the step the check chose: the loss is finite at θ but NaN or
infinite at θ - h. The derivative at θ is still defined, and a smaller step measures
it. :func:`within_domain` evaluates a set of coordinates with non-finite values
allowed; the rows (coordinates) where any value is not finite get every offset
divided by ``FACTOR`` and are evaluated again, up to ``SHRINKS`` times. Only those
coordinates pay; the rest keep their steps. A coordinate still not finite at the
smallest step is evaluated once more the strict way, so that the loss's error names
it and its point, as before.

The error model judges the estimate at the smaller step as any other: its roundoff
bound grows as the step shrinks, so an element that cannot be told apart is
inconclusive, not wrong.

>>> import numpy as np, gradproof
>>> report = gradproof.check(lambda p: float(np.sum(np.sqrt(p))), np.array([1e-10, 4.0]),
...                          lambda p: 0.5 / np.sqrt(p))
>>> report.passed
True
"""

from __future__ import annotations

import numpy as np

from gradproof._engine.context import Context

FACTOR = 16.0  # each shrink: a power of two, so a step's bits are kept
SHRINKS = 8  # at most 16**8 (4e9) times smaller than the step the check chose


def within_domain(
    ctx: Context,
    indices: np.ndarray,
    offsets: np.ndarray,
    start: int = 0,
    stop: int | None = None,
    known: np.ndarray | None = None,
) -> np.ndarray:
    """J at ``offsets[:, start:stop]`` of ``indices``, steps shrunk where J is not finite.

    ``offsets`` (one row per coordinate) is changed in place, every column of a row
    that shrinks: later evaluations of that coordinate use its smaller steps. ``known``: the
    values already made at ``offsets[:, :start]`` (a central pair before
    Richardson's outer points); the result then holds every column, and a row
    that shrinks is evaluated again in full.
    """
    evaluator = ctx.evaluator
    evaluator.lenient = True
    try:
        # numpy's warnings of a value outside the domain (sqrt of a negative, log of 0)
        # are what this handles: not the user's to see
        with np.errstate(invalid="ignore", divide="ignore"):
            values, first = _shrinking(ctx, indices, offsets, start, stop, known)
    finally:
        evaluator.lenient = False
    bad = _not_finite(values)
    if bad.size:  # the loss's own error, at the smallest step, names the point
        values[bad] = ctx.evaluate(indices[bad], offsets[bad][:, first:stop])
    return values


def _shrinking(
    ctx: Context,
    indices: np.ndarray,
    offsets: np.ndarray,
    start: int,
    stop: int | None,
    known: np.ndarray | None,
) -> tuple[np.ndarray, int]:
    """The values of :func:`within_domain`, non-finite ones allowed, and the first column
    they hold (``start``, or 0 with ``known``)."""
    values = ctx.evaluate(indices, offsets[:, start:stop])
    first = start
    if known is not None:
        values, first = np.concatenate([known, values], axis=1), 0
    for _ in range(SHRINKS):
        bad = _not_finite(values)
        if bad.size == 0:
            break
        offsets[bad] = _shrunk(ctx.theta[indices[bad]], offsets[bad])
        values[bad] = ctx.evaluate(indices[bad], offsets[bad][:, first:stop])
    return values, first


def _not_finite(values: np.ndarray) -> np.ndarray:
    """The rows of ``values`` holding a NaN or an infinity."""
    return np.flatnonzero(~np.isfinite(values).all(axis=1))


def _shrunk(theta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``offsets / FACTOR``, each made exact in float64 at its coordinate (as the check's
    own steps are), where that leaves it nonzero."""
    small = offsets / FACTOR
    if np.iscomplexobj(small):
        return small
    exact = (theta[:, None] + small) - theta[:, None]
    return np.where(exact != 0, exact, small)
