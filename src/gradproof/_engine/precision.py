"""The precision the loss works in, measured from its values, not read from its return type.

A loss may compute in float32 and return a Python float, or cast the float64
parameters it is given to float16 inside: its return type then says float64
while its values resolve steps no finer than float32's (or float16's). Judged
with float64's steps and tolerances, such a loss fails correct gradients.

So the precision is measured. Along two random directions, the loss is
evaluated at :data:`~gradproof._engine.noise.POINTS` tiny steps, spaced a little
above one unit in the last place of a candidate precision, finest first
(:data:`LEVELS`). Where every value equals ``J(θ)`` the steps were below what
the loss resolves: the next, coarser candidate is tried. At the first spacing
the loss does resolve, the noise in its values is measured (high-order
differences, :func:`noise_from_table`), and the working precision is the finest
candidate whose epsilon accounts for that noise (a float64 loss merely flat at a
minimum keeps float64's), but no finer than the grid its values sit on: a float16
loss returns float16 numbers, whose steps can look as smooth as a staircase of ulps.
Cost: 16 evaluations per candidate tried; 16 for a loss that resolves float64 steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from math import comb, sqrt
from statistics import median
from typing import Any

import numpy as np

from gradproof._engine.evaluate import Evaluator
from gradproof._engine.shifts import CHUNK, Along, Recipe, Signs, scale_into

POINTS = 8  # steps along each direction
MOSTLY_STILL = 0.5  # a table with more values equal to J(θ) than this share is not resolved
ORDERS = (3, 4, 5, 6)  # orders of the differences that estimate the noise
DIRECTIONS = 2  # random directions; the smaller noise estimate counts
NOISE_IN_ULPS = 64.0  # noise up to this many units of a level's epsilon (times |J|) is its own
# Tables up to this size, of values within this limit, are differenced as Python floats:
# numpy sums fewer than 8 squares in order, and 2^6 times the limit cannot overflow.
SMALL_TABLE_SIZE = min(ORDERS) + 7
GAMMA = {k: comb(2 * k, k) for k in ORDERS}  # noise's variance amplification, k-th differences
SMALL_TABLE_LIMIT = 1e300
WHOLE = CHUNK  # a table direction over at most this many coordinates is computed whole, once
KEPT_SIGNS = 1 << 20  # signs kept for at most this many coordinates (128 KiB a direction)


@dataclass(frozen=True)
class Level:
    """A candidate working precision: its name, epsilon and significand bits."""

    name: str
    eps: float
    bits: int

    @property
    def spacing(self) -> float:
        """The noise table's relative spacing: clear of the rounding of θ at this precision,
        and small enough that the loss's smooth part stays out of high-order differences."""
        if self.bits >= 53:
            return 1e3 * self.eps
        if self.bits >= 24:
            return 64 * self.eps
        return 2 * self.eps


LEVELS = (
    Level("float64", 2.0**-52, 53),
    Level("float32", 2.0**-23, 24),
    Level("float16", 2.0**-10, 11),
    Level("bfloat16", 2.0**-7, 8),
)
FLOAT64 = LEVELS[0]


def level_of(eps: float) -> Level:
    """The finest candidate at least as coarse as ``eps``.

    >>> level_of(2.0**-23).name, level_of(1e-20).name
    ('float32', 'float64')
    """
    for level in LEVELS:
        if level.eps >= eps * (1 - 1e-9):
            return level
    return LEVELS[-1]


def round_to(x: np.ndarray, level: Level) -> np.ndarray:
    """``x`` rounded to ``level``'s significand (range and subnormals aside).

    >>> float(round_to(np.array(1 + 2.0**-30), LEVELS[1])) == 1.0
    True
    """
    if level.bits >= 53:
        return x
    mantissa, exponent = np.frexp(x)
    scale = 2.0**level.bits
    return np.ldexp(np.round(mantissa * scale) / scale, exponent)


@dataclass(frozen=True)
class Measured:
    """What the measurement found: the working precision and the noise in one value."""

    level: Level
    noise: float
    coarser: bool  # True: the loss resolves less than its return type says
    loudest: float = 0.0  # the noisiest table row's noise, where the quietest one is taken


def measure_precision(
    evaluator: Evaluator,
    j0: float,
    start: Level,
    seed: int = 0,
    flat: bool = False,
    first: np.ndarray | None = None,
) -> Measured:
    """Measure the working precision and noise, trying ``start`` and then coarser levels.

    ``flat``: the gradient under test is zero, so a loss that does not move at the
    finest steps (ceil, round, sign: piecewise constant) is what it predicts, and no
    coarser precision is tried. ``first``: the table at ``start``'s spacing, where it
    was already evaluated (:func:`base_and_table`).
    """
    theta = evaluator.theta
    if theta.size == 0:
        return Measured(start, 0.0, False)
    signs = _direction_signs(theta.size, seed)
    candidates = [level for level in LEVELS if level.eps >= start.eps][: 1 if flat else None]
    moved = None  # the coarsest level tried at which the loss moved at all, and its table
    for tried, level in enumerate(candidates):
        given = first if tried == 0 else None
        table = _table(evaluator, signs, level.spacing, level) if given is None else given
        # Most values unchanged: the steps are mostly below what the loss resolves (a few
        # inputs that round the other way move it): a coarser precision is tried.
        if np.count_nonzero(table == j0) > MOSTLY_STILL * table.size:
            moved = (level, table) if tried and np.any(table != j0) else moved
            continue
        noise = _table_noise(j0, table)
        if tried == 0:  # the loss resolves its return type's steps
            return Measured(start, noise, False, _table_noise(j0, table, max))
        found = _escalated(j0, table, noise, candidates)
        return Measured(found, noise, found.eps > start.eps)
    if moved is not None:  # mostly still at every level, not wholly: its values are coarse
        return Measured(moved[0], _table_noise(j0, moved[1], max), True)
    return Measured(start, 0.0, False)  # constant at every spacing: nothing to measure


def base_and_table(
    evaluator: Evaluator, start: Level, seed: int = 0
) -> tuple[list[float], np.ndarray]:
    """The base point once along each table direction (step 0: θ itself) and the table
    :func:`measure_precision` takes first (at ``start``), in one directions call, so that
    a batched loss is called once for both. Cost: ``DIRECTIONS * (POINTS + 1)`` evaluations.

    Returns the base point's values and the table (``first`` for ``measure_precision``).
    """
    signs = _direction_signs(evaluator.theta.size, seed)
    steps = np.arange(0.0, POINTS + 1)
    values = _table(evaluator, signs, start.spacing, start, steps=steps)
    return values[:, 0].tolist(), values[:, 1:]


def _direction_signs(size: int, seed: int) -> tuple[Signs, ...]:
    """The noise table's DIRECTIONS random ±1 directions, seeded (one bit per sign).

    Kept for the last few sizes and seeds up to ``KEPT_SIGNS`` coordinates (one bit per
    sign, so 1 MiB at most in all): a check draws them for every table it takes, and the
    next check of the same parameters draws the same ones (they are never written).
    """
    return _kept_signs(size, seed) if size <= KEPT_SIGNS else _drawn_signs(size, seed)


def _drawn_signs(size: int, seed: int) -> tuple[Signs, ...]:
    rng = np.random.default_rng(seed)
    return tuple(Signs.draw(rng, size) for _ in range(DIRECTIONS))


_kept_signs = lru_cache(maxsize=4)(_drawn_signs)


def _escalated(j0: float, table: np.ndarray, noise: float, candidates: list[Level]) -> Level:
    """The working precision of a loss that did not resolve its return type's steps.

    The finest candidate whose epsilon accounts for the measured noise (a float64
    loss merely flat at the finest spacing, at a minimum, keeps float64; a float64
    loss of inputs cast to float16 jumps by float16's steps), but no finer than the
    grid its values sit on (a float16 loss returns float16 numbers, which can first
    register at float32's spacing).
    """
    size = max(abs(j0), float(np.max(np.abs(table))))
    found = finest_explaining(noise, size, candidates)
    grid = _coarsest_representing(np.concatenate([[j0], table.ravel()]), candidates)
    return max(found, grid, key=lambda level: level.eps)


@dataclass(frozen=True)
class TableDirection(Along):
    """A noise-table direction ``v = s * (spacing * max(|θ|, 1))`` over one span, each
    point ``θ + k·v`` representable on ``grid``'s precision; computed a chunk at a time,
    never held whole."""

    theta: np.ndarray  # the span's base point
    signs: Signs
    spacing: float
    grid: Level

    def fill(self, start: int, out: np.ndarray) -> None:
        """Write ``v[start : start + out.size]`` into ``out``: the arithmetic of the whole-array
        expression, element by element, so the values are bit-for-bit the same."""
        theta, grid = self.theta[start : start + out.size], self.grid
        np.multiply(scale_into(theta, out), self.spacing, out=out)
        vectors = np.multiply(self.signs.chunk(start, out.size), out, out=out)
        if grid.bits < FLOAT64.bits:
            vectors = round_to(theta + vectors, grid) - theta
            out[...] = vectors

    def recipe(self) -> Recipe:
        """``s * (max(|θ|, 1) * spacing)``, rounded to the grid as :meth:`fill` rounds it."""
        return Recipe(self.signs, self.spacing, self.grid.bits)

    def shift(
        self, start: int, theta: np.ndarray, step: float, out: np.ndarray, scratch: np.ndarray
    ) -> None:
        """``out = θ + k·v`` for a chunk. At float64 and the table's integer steps k, the
        sign and k are applied in one multiplication by ±k: ``(s·v0)·k`` and ``(s·k)·v0``
        round alike (s = ±1), so the points are those of :meth:`fill`, in one pass fewer."""
        if self.grid.bits < FLOAT64.bits or step != round(step) or abs(step) > 127:
            super().shift(start, theta, step, out, scratch)
            return
        signs = self.signs.chunk(start, out.size)
        signs *= int(step)
        np.multiply(scale_into(theta, scratch), self.spacing, out=scratch)
        np.multiply(signs, scratch, out=scratch)
        np.add(theta, scratch, out=out)


def _table(
    evaluator: Evaluator,
    signs: Sequence[Signs],
    spacing: float,
    grid: Level = FLOAT64,
    where: str = "the noise measurement (tiny steps along random directions)",
    span: slice | None = None,
    steps: np.ndarray | None = None,
) -> np.ndarray:
    """J(θ + k·step) for k = 1..POINTS (or k in ``steps``) along each direction (nonzero
    only on ``span``, default every coordinate), a relative ``spacing`` apart, each step
    representable on ``grid``'s precision. Memory: the evaluator's work buffer and a chunk,
    and the directions themselves where they span at most ``WHOLE`` coordinates."""
    span = slice(0, evaluator.theta.size) if span is None else span
    theta = evaluator.theta[span]
    alongs = [_held(TableDirection(theta, s, spacing, grid)) for s in signs]
    steps = np.arange(1.0, POINTS + 1) if steps is None else steps
    return evaluator.directions(alongs, steps, where=where, eps_sets_steps=False, span=span)


def _held(direction: TableDirection) -> Along:
    """``direction``, computed whole once where its span is small (at most ``WHOLE``)."""
    if direction.theta.size > WHOLE:
        return direction
    direction.fill(0, vector := np.empty(direction.theta.size))
    return _Held(direction, vector)


@dataclass(frozen=True)
class _Held(Along):
    """A table direction computed whole: each point then costs one multiplication and one
    addition, ``θ + (v·k)``, the arithmetic of :meth:`Along.shift` on the direction's own
    values, so the points are the direction's, bit for bit; step 0 is θ itself, every bit.
    Its recipe is the direction's, so a device that builds it builds the same values."""

    direction: TableDirection
    vector: np.ndarray  # the direction's fill over its whole span

    def fill(self, start: int, out: np.ndarray) -> None:
        out[...] = self.vector[start : start + out.size]

    def recipe(self) -> Recipe:  # the direction's: a device builds the same values
        return self.direction.recipe()

    def shift(
        self, start: int, theta: np.ndarray, step: float, out: np.ndarray, scratch: np.ndarray
    ) -> None:
        if step == 0:
            out[...] = theta
            return
        np.multiply(self.vector[start : start + out.size], step, out=scratch)
        np.add(theta, scratch, out=out)


def _table_noise(j0: float, table: np.ndarray, pick: Any = min) -> float:
    """The noise in one value, from a table's rows (each after J(θ)): the quietest row's
    (``pick=max``: the noisiest's)."""
    return float(pick(noise_from_table(np.concatenate([[j0], row])) for row in table))


def noise_at_step(
    evaluator: Evaluator, j0: float, step: float, seed: int = 0
) -> tuple[float, float]:
    """The noise in J measured at a quarter of the check's relative ``step``, and the
    size of the values it was measured in (the largest |J| seen).

    A float64 loss that mixes in a float32 part (a float32 model plus a float64
    L2 term) moves smoothly at tiny steps, where its float32 part is still, and
    shows that part's rounding only at the scale the check steps at.
    Cost: ``DIRECTIONS * POINTS`` evaluations.
    """
    signs = _direction_signs(evaluator.theta.size, seed)
    where = "the noise measurement (steps along random directions)"
    table = _table(evaluator, signs, step / 4, where=where)
    return _table_noise(j0, table), max(abs(j0), float(np.max(np.abs(table))))


def block_noise(
    evaluator: Evaluator, j0: float, level: Level, spans: list[tuple[int, int]], seed: int = 0
) -> list[float]:
    """The noise in J along a direction confined to each span of coordinates (one block).

    A loss that jumps when one input moves (a ±1 label or a mask passed as a
    parameter) fills a direction through every block with its jumps; measured
    block by block, the jumps stay with the block that causes them.
    Cost: ``DIRECTIONS * POINTS`` evaluations per span.
    """
    rng = np.random.default_rng(seed)
    out = []
    for lo, hi in spans:
        signs = [Signs.draw(rng, hi - lo) for _ in range(DIRECTIONS)]
        table = _table(evaluator, signs, level.spacing, level, span=slice(lo, hi))
        out.append(_table_noise(j0, table))
    return out


def _coarsest_representing(values: np.ndarray, candidates: list[Level]) -> Level:
    """The coarsest candidate in which every value is exactly representable.

    A loss that computes in float16 and returns a Python float returns float16
    numbers: its values sit on float16's grid, however smooth their differences
    look (steps of one unit in the last place each, a staircase with no noise).
    """
    for level in reversed(candidates):
        if np.array_equal(round_to(values, level), values):
            return level
    return candidates[0]


def finest_explaining(noise: float, size: float, candidates: list[Level]) -> Level:
    """The finest candidate whose epsilon accounts for ``noise`` in values of ``size``."""
    for level in candidates:
        if noise <= NOISE_IN_ULPS * level.eps * max(size, np.finfo(np.float64).tiny):
            return level
    return candidates[-1]


def noise_from_table(values: np.ndarray) -> float:
    """Noise level from the k-th differences, k in ORDERS (median of the estimates).

    High-order differences of a smooth function at a tiny spacing vanish, so
    what remains is noise, amplified by a known factor (after Moré and Wild's
    ECnoise). Cost: no evaluations; the table's few values are differenced as
    Python floats where they are finite and far from overflow (the same
    operations, in the same order, as numpy's), and with numpy otherwise.
    """
    small = values.ndim == 1 and values.dtype == np.float64 and values.size <= SMALL_TABLE_SIZE
    listed = values.tolist() if small else None
    if listed is None or not all(abs(v) <= SMALL_TABLE_LIMIT for v in listed):
        return _noise_from_array(values)
    sigmas = []
    for k in range(1, max(ORDERS) + 1):
        listed = [b - a for a, b in pairwise(listed)]
        if k not in ORDERS:
            continue
        largest = max(map(abs, listed), default=0.0)  # scaled: no overflow at 1e200
        if largest == 0:
            sigmas.append(largest)
            continue
        total = 0.0  # summed in order, as numpy sums so few values (and not as fsum would)
        for d in listed:
            scaled = d / largest
            total += scaled * scaled
        sigmas.append(largest * sqrt(total / len(listed) / GAMMA[k]))
    # statistics.median, not np.median: numpy's imports numpy.ma on first use (~20 ms).
    return median(sigmas)


def _noise_from_array(values: np.ndarray) -> float:
    """:func:`noise_from_table` in numpy, for values that are not finite or could overflow."""
    sigmas = []
    for k in ORDERS:
        diffs = np.diff(values, n=k)
        gamma = comb(2 * k, k)  # variance amplification of k-th differences of white noise
        largest = float(np.max(np.abs(diffs), initial=0.0))  # scaled: no overflow at 1e200
        if largest == 0 or not np.isfinite(largest):
            sigmas.append(largest)
            continue
        sigmas.append(largest * float(np.sqrt(np.mean((diffs / largest) ** 2) / gamma)))
    return median(sigmas)
