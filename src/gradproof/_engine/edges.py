"""Coordinates at the edge of the loss's domain: their steps shrunk until the loss is finite.

A parameter just inside its loss's domain (``sqrt`` of 1e-10, ``log`` of a probability
near 0) can leave it at the step the check chose: the loss is finite at θ but NaN or
infinite at θ - h. The derivative at θ is still defined, and a smaller step measures
it. :func:`within_domain` evaluates a set of coordinates with non-finite values
allowed; the rows (coordinates) where any value is not finite get every offset
divided by ``FACTOR`` and are evaluated again, up to ``SHRINKS`` times. Only those
coordinates pay; the rest keep their steps. A coordinate still not finite at the
smallest step (or where a smaller one would no longer move the point) is evaluated once
more the strict way, so that the loss's error names it and its point, as before.
Richardson's extra points lie inside the central pair (at ±h/2), so the pair's steps are
the ones that meet the edge; the coordinate modes of this process use this, not
workers (``workers=``, ``executor=``), which refuse the loss as before.

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
from gradproof._engine.schemes import representable

FACTOR = 16.0  # each shrink: a power of two, so a step's bits are kept
SHRINKS = 8  # at most 16**8 (4e9) times smaller than the step the check chose


def within_domain(
    ctx: Context, indices: np.ndarray, offsets: np.ndarray, stop: int | None = None
) -> np.ndarray:
    """J at ``offsets[:, :stop]`` of ``indices``, steps shrunk where J is not finite.

    ``offsets`` (one row per coordinate) is changed in place, every column of a row
    that shrinks: later evaluations of that coordinate use its smaller steps.
    """
    # numpy's warnings of a value outside the domain (sqrt of a negative, log of 0) are
    # what this handles: not the user's to see
    with ctx.evaluator.allowing_nonfinite(), np.errstate(invalid="ignore", divide="ignore"):
        values = ctx.evaluate(indices, offsets[:, :stop])
        for _ in range(SHRINKS):
            bad = _not_finite(values)
            smaller = _shrunk(ctx.theta[indices[bad]], offsets[bad])
            moves = np.all(smaller != 0, axis=1)  # a step that still leaves θ
            bad, smaller = bad[moves], smaller[moves]
            if bad.size == 0:
                break
            offsets[bad] = smaller
            values[bad] = ctx.evaluate(indices[bad], smaller[:, :stop])
    bad = _not_finite(values)
    if bad.size:  # the loss's own error, at the smallest step, names the point
        values[bad] = ctx.evaluate(indices[bad], offsets[bad][:, :stop])
    return values


def _not_finite(values: np.ndarray) -> np.ndarray:
    """The rows of ``values`` holding a NaN or an infinity."""
    return np.flatnonzero(~np.isfinite(values).all(axis=1))


def _shrunk(theta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``offsets / FACTOR``, real ones made exact in float64 at their coordinate (as the
    check's own steps are)."""
    small = offsets / FACTOR
    return small if np.iscomplexobj(small) else representable(theta, small)
