"""Shifted points for :class:`~gradproof._engine.evaluate.Evaluator`, a chunk at a time.

A direction over a span of the parameters is given as an :class:`Along`, whose
``fill(start, out)`` writes the direction's values for the span's coordinates
``start : start + out.size`` into ``out``. The point ``theta + step * u`` is then
written straight into the evaluator's work buffer one chunk at a time, so no
temporary of the span's size is made, however large the block.

Random directions take their ±1 signs from :class:`Signs`: the generator's random
bytes, eight signs to a byte (a sixty-fourth of the parameters' float64 bytes),
unpacked a chunk at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Coordinates per pass: temporaries of this size stay in cache, and the loop over
# chunks costs nothing next to the arithmetic (0.5 MiB of float64).
CHUNK = 1 << 16


@dataclass(frozen=True)
class Signs:
    """``size`` random ±1 signs from bit ``offset`` on of ``packed`` (bit 1: +1, bit 0: -1;
    ``np.packbits`` order). Slicing gives a view of the same bits, never a copy."""

    packed: np.ndarray  # uint8
    offset: int
    size: int

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> Signs:
        """``size`` fair signs: the bits of ``rng.bytes(ceil(size / 8))``, in ``np.packbits``
        order (bit 1: +1). One generator byte per eight signs, drawn in one call."""
        return cls(np.frombuffer(rng.bytes(-(-size // 8)), dtype=np.uint8), 0, size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> Signs:
        start, stop, step = key.indices(self.size)
        if step != 1:
            raise ValueError("signs are sliced with step 1 only")
        return Signs(self.packed, self.offset + start, max(stop - start, 0))

    def first(self) -> float:
        """The first sign, as a float."""
        out = np.empty(1, dtype=np.int8)
        self.into(0, out)
        return float(out[0])

    def into(self, start: int, out: np.ndarray) -> None:
        """Write signs ``start : start + out.size`` into ``out`` (int8, or any signed type)."""
        lo = self.offset + start
        first, skip = divmod(lo, 8)
        bits = np.unpackbits(self.packed[first : -(-(lo + out.size) // 8)], count=skip + out.size)
        np.multiply(bits[skip:], 2, out=out, casting="unsafe")
        out -= 1

    def chunk(self, start: int, size: int) -> np.ndarray:
        """Signs ``start : start + size``, as int8 ±1."""
        out = np.empty(size, dtype=np.int8)
        self.into(start, out)
        return out

    def array(self) -> np.ndarray:
        """Every sign, as int8 ±1 (for tests and small spans)."""
        return self.chunk(0, self.size)


def scale_into(theta: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = max(|theta|, 1)``: the size of a random direction's step at each coordinate
    (relative to theta, and never below 1)."""
    np.abs(theta, out=out)
    return np.maximum(out, 1.0, out=out)


@dataclass(frozen=True)
class Recipe:
    """How a device builds a random direction without the host: over its span,
    ``u = s * (max(|theta|, 1) * spacing)`` in float64 (s: the ±1 ``signs``), and where
    ``grid_bits`` < 53, ``u = round(theta + u) - theta`` at that many significand bits.
    ``dot``: the direction wants ``g . u`` back (:meth:`Along.record_dot`)."""

    signs: Signs
    spacing: float = 1.0
    grid_bits: int = 53
    dot: bool = False


class Along:
    """A direction over a span of the parameters, computed a chunk at a time.

    ``fill(start, out)`` writes the direction's values for the span's coordinates
    ``start : start + out.size``; ``shift`` writes the shifted point there. A subclass
    may override ``shift`` to take fewer passes, as long as its points are the same, bit
    for bit. One whose values follow a :class:`Recipe` says so in :meth:`recipe`, so
    that a loss holding the parameters on a device can build it there.
    """

    def fill(self, start: int, out: np.ndarray) -> None:
        raise NotImplementedError

    def recipe(self) -> Recipe | None:
        """How to build this direction from its signs (None: only :meth:`fill` can)."""
        return None

    def record_dot(self, value: float) -> None:
        """Take ``g . u``, summed where the direction was built (see :class:`Recipe`)."""

    def shift(
        self, start: int, theta: np.ndarray, step: float, out: np.ndarray, scratch: np.ndarray
    ) -> None:
        """``out = theta + step * u[start : start + out.size]`` (``theta``: the same span of
        the base point; ``scratch``: a buffer of the same size), as ``theta + (u * step)``."""
        self.fill(start, scratch)
        np.multiply(scratch, step, out=scratch)
        np.add(theta, scratch, out=out)


@dataclass(frozen=True)
class Values(Along):
    """A direction given as an array over its span."""

    values: np.ndarray

    def fill(self, start: int, out: np.ndarray) -> None:
        out[...] = self.values[start : start + out.size]


def as_along(direction: np.ndarray | Along) -> Along:
    """``direction`` as an :class:`Along`: an array is wrapped, an ``Along`` kept."""
    return Values(direction) if isinstance(direction, np.ndarray) else direction


def shift_span(work: np.ndarray, theta: np.ndarray, span: slice, along: Along, step: float) -> None:
    """``work[span] = theta[span] + step * u``, a chunk at a time (u from ``along``).

    Each element is computed as ``theta_i + (u_i * step)``, the same arithmetic as
    the whole-array expression, so the points are bit-for-bit those it would give.
    Cost: one pass over the span; memory: one chunk.
    """
    lo, hi = span.start, span.stop
    scratch = np.empty(min(CHUNK, hi - lo))
    for start in range(lo, hi, CHUNK):
        stop = min(hi, start + CHUNK)
        part = scratch[: stop - start]
        along.shift(start - lo, theta[start:stop], step, work[start:stop], part)


@dataclass(eq=False)
class Direction(Along):
    """A probe's direction ``u_i = s_i * max(|theta_i|, 1)`` over one span, never held
    whole: it is computed a chunk at a time where it is needed.

    Given the gradient over the span, the first pass that shifts a point along it sums
    ``g . u`` as it goes (:meth:`analytic`), so the directional derivative costs no
    pass of its own.
    """

    theta: np.ndarray  # the span's base point
    signs: Signs  # its ±1 signs, packed
    g: np.ndarray | None = None  # the gradient over the span
    _summed: int = field(default=0, init=False, repr=False)  # g . u summed up to here
    _total: float = field(default=0.0, init=False, repr=False)

    def fill(self, start: int, out: np.ndarray) -> None:
        """Write ``u[start : start + out.size]`` into ``out``."""
        scale = scale_into(self.theta[start : start + out.size], out)
        np.multiply(self.signs.chunk(start, out.size), scale, out=out)

    def shift(
        self, start: int, theta: np.ndarray, step: float, out: np.ndarray, scratch: np.ndarray
    ) -> None:
        """``out = theta + step * u`` for a chunk, summing ``g . u`` on the first pass."""
        self.fill(start, scratch)
        if self.g is not None and start == self._summed:  # chunks come in order from 0
            self._total += float(np.dot(self.g[start : start + scratch.size], scratch))
            self._summed += scratch.size
        np.multiply(scratch, step, out=scratch)
        np.add(scratch, theta, out=out)  # theta + (u * step), as Along.shift, bit for bit

    def recipe(self) -> Recipe:
        """``s * max(|theta|, 1)``, wanting ``g . u`` back until it has it."""
        return Recipe(self.signs, dot=self.g is not None and self._summed != self.g.size)

    def record_dot(self, value: float) -> None:
        """``g . u`` as summed on the device that built the direction."""
        assert self.g is not None
        self._total, self._summed = value, self.g.size

    def analytic(self) -> float:
        """``g . u``: summed by the first pass, or by a pass of its own where none ran
        (the same chunks in the same order: the same value, bit for bit)."""
        assert self.g is not None
        return self._total if self._summed == self.g.size else self.dot(self.g)

    def dot(self, g: np.ndarray) -> float:
        """``g . u``, summed per chunk (bit-for-bit ``np.dot`` for a span of one chunk)."""
        buffer = np.empty(min(CHUNK, g.size))
        total = 0.0
        for start in range(0, g.size, CHUNK):
            part = buffer[: min(g.size, start + CHUNK) - start]
            self.fill(start, part)
            total += float(np.dot(g[start : start + part.size], part))
        return total
