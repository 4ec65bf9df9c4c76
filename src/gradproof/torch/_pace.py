"""Whether evaluating ``func`` in batches under vmap pays, measured once per check.

vmap removes the per-call cost of Python and of small kernels, which is most of a small
function's time; a function whose time is its arithmetic (a large matrix product per
point, on a CPU) can take longer per point in batches than in single calls (its batched
temporaries leave the caches). :class:`Pace` keeps the fastest single call of ``func``
seen and, at the first batch of at least ``ROWS`` points, compares that batch's time per
point with it: where the batch is slower, the points after it are evaluated one call each.
A function whose single call takes under ``MIN_CALL`` is not judged: batches pay there.
Only speed changes: both ways give the same values (the vmap trial has checked that).

>>> pace = Pace()
>>> pace.timed(lambda: time.sleep(2 * MIN_CALL))
>>> pace.pays(seconds=10.0, rows=ROWS)  # 10 s for 16 points: slower than a single call
False
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

ROWS = 16  # the least batch whose time per point is judged (smaller ones are all set-up)
# A single call quicker than this is mostly fixed cost, which batches remove: not judged, so
# that a small check makes the same calls from run to run, whatever the machine's jitter.
MIN_CALL = 1e-4
T = TypeVar("T")


class Pace:
    """The fastest single call of ``func`` seen, and whether batches were judged yet."""

    def __init__(self) -> None:
        self.call = math.inf
        self.judged = False

    def timed(self, call: Callable[[], T]) -> T:
        """``call()``, its time kept where it is the fastest single call so far."""
        started = time.perf_counter()
        out = call()
        self.call = min(self.call, time.perf_counter() - started)
        return out

    def batched(self, call: Callable[[], T], rows: int) -> tuple[T, bool]:
        """``call()`` (a batch of ``rows`` points), and whether batches stay worth it."""
        started = time.perf_counter()
        out = call()
        return out, self.pays(time.perf_counter() - started, rows)

    def pays(self, seconds: float, rows: int) -> bool:
        """Whether batches stay worth it after one of ``rows`` points took ``seconds``:
        judged once, at the first batch of at least ``ROWS`` points."""
        if self.judged or rows < ROWS or self.call < MIN_CALL:
            return True
        self.judged = True
        return seconds / rows < self.call
