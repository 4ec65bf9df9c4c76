"""Shifted points for :class:`~gradproof._engine.evaluate.Evaluator`, a chunk at a time.

A direction over a span of the parameters is given as a *fill*: a function
``fill(start, out)`` that writes the direction's values for the span's coordinates
``start : start + out.size`` into ``out``. The point ``theta + step * u`` is then
written straight into the evaluator's work buffer one chunk at a time, so no
temporary of the span's size is made, however large the block.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Coordinates per pass: temporaries of this size stay in cache, and the loop over
# chunks costs nothing next to the arithmetic (0.5 MiB of float64).
CHUNK = 1 << 16

Fill = Callable[[int, np.ndarray], None]


def as_fill(direction: np.ndarray | Fill) -> Fill:
    """``direction`` as a fill: an array's slices are copied out, a fill is kept."""
    if not isinstance(direction, np.ndarray):
        return direction
    values = direction

    def fill(start: int, out: np.ndarray) -> None:
        out[...] = values[start : start + out.size]

    return fill


def shift_span(work: np.ndarray, theta: np.ndarray, span: slice, fill: Fill, step: float) -> None:
    """``work[span] = theta[span] + step * u``, a chunk at a time (u from ``fill``).

    Each element is computed as ``theta_i + (u_i * step)``, the same arithmetic as
    the whole-array expression, so the points are bit-for-bit those it would give.
    Cost: one pass over the span; memory: one chunk.
    """
    lo, hi = span.start, span.stop
    buffer = np.empty(min(CHUNK, hi - lo))
    for start in range(lo, hi, CHUNK):
        stop = min(hi, start + CHUNK)
        part = buffer[: stop - start]
        fill(start - lo, part)
        np.multiply(part, step, out=part)
        np.add(theta[start:stop], part, out=work[start:stop])


def spread(size: int, span: slice, fill: Fill) -> np.ndarray:
    """The direction as a full-size vector, zero outside ``span`` (for a batched loss,
    which takes whole points anyway)."""
    full = np.zeros(size)
    lo, hi = span.start, span.stop
    for start in range(lo, hi, CHUNK):
        fill(start - lo, full[start : min(hi, start + CHUNK)])
    return full
