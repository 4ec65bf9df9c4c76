"""Evaluate the user's loss at perturbed parameters, safely and in bulk.

The :class:`Evaluator` owns a private float copy of the parameters. Each
evaluation shifts a few of its coordinates, builds a fresh structure of
read-only views (so a loss cannot write into the check's state, let alone the
caller's arrays), calls the loss and puts the coordinates back, also when the
loss raises.

Each call is timed: here, one that ran past ``timeout=`` or far past the budget
raises :class:`WorkerError` once it returns (Python cannot portably interrupt code
in the same thread); on a worker, the parent watches it run (``parallel.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from gradproof._engine.budget import SERIAL_FIX, Limits
from gradproof._engine.calls import Loss, call_loss, refuse_complex_value
from gradproof._engine.resident import Declined, open_resident
from gradproof._engine.shifts import Along, as_along, shift_span
from gradproof._engine.tree import Layout
from gradproof._errors import WorkerError, invalid

# Parameter sets per batched call: a bound on the loss's own memory for the batch
# (its activations grow with K), and small enough to stay in cache.
ROW_CAP = 1024


def worker_error(
    layout: Layout, what: str, cause: str, points: list[Any], fix: str, shown: int = 4
) -> WorkerError:
    """A WorkerError that reads: <what>, at <the first ``shown`` points>. Fix: <fix>."""
    named = [_describe(layout, point) for point in points[:shown]]
    if len(points) > shown:
        named.append(f"{len(points) - shown} more")
    where = ", ".join(named) if named else "points it was given"
    coordinates = tuple(_coordinate(layout, int(p[0])) for p in points if isinstance(p, tuple))
    return WorkerError(f"{what}, at {where}. Fix: {fix}.", cause, coordinates)


@dataclass
class Evaluator:
    """Counts and performs loss evaluations around a base point ``theta``."""

    loss: Loss
    layout: Layout
    theta: np.ndarray
    batched: bool = False
    chunk_elements: int = 4_000_000
    evaluations: int = 0
    started: float = field(default_factory=time.perf_counter)
    output_dtype: np.dtype[Any] | None = None
    pool: Any = None  # a gradproof._engine.parallel.Pool, or None: evaluate here
    progress: Any = None  # a gradproof._engine.progress.Progress, or None
    seconds: float = 0.0  # time spent inside the loss, for budgets and chunk sizes
    limits: Limits = field(default_factory=Limits)  # how long one call of the loss may run
    watch: Any = None  # on a worker process: told what is being evaluated (budget.Watch)
    # The loss's own way to evaluate shifted points where it holds them (resident.py):
    # opened with the evaluator; None: every point is built here, on the host
    resident: Any = None
    # True inside allowing_nonfinite(): a non-finite value is returned (NaN), not raised
    lenient: bool = False
    # The work buffer of directions() and coordinates(): theta, except inside a call
    _work: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.resident is None:
            self.resident = open_resident(self.loss, self.layout, self.theta, self.batched)

    @contextmanager
    def allowing_nonfinite(self) -> Iterator[None]:
        """Within: a non-finite loss value is returned as NaN instead of raising (see
        ``edges.within_domain``, which shrinks those coordinates' steps); in this process
        only, not on workers (``workers=``, ``executor=``), whose evaluators raise."""
        before, self.lenient = self.lenient, True
        try:
            yield
        finally:
            self.lenient = before

    def know_gradient(self, g: np.ndarray) -> None:
        """Tell the loss's resident evaluation the gradient under test (for ``g . u``)."""
        if self.resident is not None:
            self.resident.gradient(g)

    def with_pool(self, pool: Any) -> Evaluator:
        """This evaluator (its counts and timings kept) sending coordinates to ``pool``."""
        return self if pool is None else replace(self, pool=pool)

    @property
    def seconds_per_evaluation(self) -> float:
        return self.seconds / self.evaluations if self.evaluations else 0.0

    def value(self, flat: np.ndarray | None = None) -> float:
        """J at ``flat`` (default: the base point), as a Python float."""
        if flat is None and self.resident is not None:
            where = "the base point"
            try:
                return self._scalar(self._timed(self.resident.base, where, 1), where)
            except Declined:
                self.resident = None  # this point and every later one built here
        point = self.theta if flat is None else flat
        return self._call(point, where="the base point")

    def coordinates(self, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """J(theta + offsets[i, k] e_indices[i]) for every i, k; shape (n, k).

        ``offsets`` may be complex (complex-step differentiation).
        """
        n, k = offsets.shape
        out = np.empty((n, k), dtype=np.complex128 if np.iscomplexobj(offsets) else np.float64)
        if self.pool is not None and n > 0:  # even one: a crash or hang there is isolated
            started = time.perf_counter()
            values = self.pool.coordinates(
                indices,
                offsets,
                self._advance,
                self.progress,
                limits=self.limits,
                typical=self.seconds_per_evaluation,
            )
            self.seconds += time.perf_counter() - started
            self._note_dtype(values)
            out[...] = values
            return out
        if self.resident is not None and out.dtype == np.float64:
            try:
                return self._resident_coordinates(indices, offsets, out)
            except Declined:
                self.resident = None
        if self.batched:
            return self._coordinates_batched(indices, offsets, out)
        # Real offsets shift the work buffer; complex ones a complex copy of theta.
        work = self._buffer() if out.dtype == np.float64 else self.theta.astype(out.dtype)
        for row, index in enumerate(indices):
            original = work[index]
            try:
                for col in range(k):
                    work[index] = original + offsets[row, col]
                    out[row, col] = self._call(work, where=(int(index), offsets[row, col]))
            finally:
                work[index] = original
        return out

    def directions(
        self,
        vectors: np.ndarray | Sequence[np.ndarray | Along],
        steps: np.ndarray,
        where: str = "a probe direction",
        eps_sets_steps: bool = True,
        span: slice | None = None,
    ) -> np.ndarray:
        """J(theta + steps[k] * vectors[d]) for every direction d and step k; shape (d, k).

        Each direction is nonzero only on ``span`` (default: all), given there as an
        array or a ``shifts.Along`` computed a chunk at a time. No full-size memory per
        call: each point is written a chunk at a time into one work buffer (a copy of
        theta, made once), whose span is put back after, also when the loss raises.
        ``where`` names these points in an error about the loss's value there;
        ``eps_sets_steps=False``: that error does not suggest a smaller ``eps``.
        """
        span = slice(0, self.theta.size) if span is None else span
        alongs = [as_along(v) for v in vectors]
        if self.resident is not None:
            count, resident = len(alongs) * steps.shape[0], self.resident
            try:
                values = self._timed(lambda: resident.directions(alongs, steps, span), where, count)
                return self._finite_values(values, lambda bad: where, eps_sets_steps)
            except Declined:
                self.resident = None
        if self.batched:
            return self._directions_batched(alongs, steps, span)
        out = np.empty((len(alongs), steps.shape[0]))
        work = self._buffer()
        try:
            for row, along in enumerate(alongs):
                for col, step in enumerate(steps):
                    shift_span(work, self.theta, span, along, step)
                    out[row, col] = self._call(work, where, eps_sets_steps)
        finally:
            work[span] = self.theta[span]
        return out

    def along(self, span: slice, direction: np.ndarray | Along, steps: np.ndarray) -> np.ndarray:
        """J(theta + steps[k] * u) for a direction u nonzero only on ``span``; shape (k,).

        ``direction`` is u on the span: an array, or an ``Along`` that computes it a
        chunk at a time (see :meth:`directions`).
        """
        return self.directions([direction], steps, span=span)[0]

    def _resident_coordinates(
        self, indices: np.ndarray, offsets: np.ndarray, out: np.ndarray
    ) -> np.ndarray:
        """:meth:`coordinates` through the loss's resident evaluation, a few coordinates
        per call (so that progress, the watch and the budget follow along)."""
        n, k = offsets.shape
        points = min(ROW_CAP, self.chunk_elements // max(1, self.theta.size)) if self.batched else 0
        rows = max(1, max(points, 64) // max(k, 1))
        for lo in range(0, n, rows):
            part = slice(lo, min(n, lo + rows))
            count = (part.stop - lo) * k
            where = (int(indices[lo]), offsets[lo, 0], count)
            these, shifts = indices[part], offsets[part]
            values = self._timed(partial(self.resident.coordinates, these, shifts), where, count)
            place = partial(_place_in, these, shifts)
            out[part] = self._finite_values(values, place).reshape(part.stop - lo, k)
        return out

    def _finite_values(
        self, values: Any, place_of: Callable[[int], Any], eps_sets_steps: bool = True
    ) -> np.ndarray:
        """``values`` as an array, its dtype noted; the first non-finite one, if any, is
        reported at ``place_of(its flat position)`` (see :meth:`_scalar`)."""
        array = np.asarray(_to_numpy(values))
        self._note_dtype(array)
        if not self.lenient and not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array.ravel()))[0])
            self._scalar(array.ravel()[bad], place_of(bad), eps_sets_steps)
        return array

    def _buffer(self) -> np.ndarray:
        """The work buffer: equal to theta except inside a call (made on first use)."""
        self._work = self.theta.copy() if self._work is None else self._work
        return self._work

    def _directions_batched(
        self, alongs: list[Along], steps: np.ndarray, span: slice
    ) -> np.ndarray:
        """:meth:`directions` for a batched loss: points in chunks of rows, each row theta
        with its span shifted in place (one buffer of rows, filled with theta once)."""
        out = np.empty((len(alongs), steps.shape[0]))
        pairs = [(row, col) for row in range(len(alongs)) for col in range(steps.shape[0])]
        rows_per_chunk = max(1, self.chunk_elements // max(1, self.theta.size))
        points = np.empty((min(rows_per_chunk, len(pairs)), self.theta.size))
        points[...] = self.theta
        for lo in range(0, len(pairs), rows_per_chunk):
            chunk = pairs[lo : lo + rows_per_chunk]
            for r, (row, col) in enumerate(chunk):
                shift_span(points[r], self.theta, span, alongs[row], steps[col])
            values = self._call_batch(points[: len(chunk)])
            for r, (row, col) in enumerate(chunk):
                out[row, col] = values[r]
        return out

    def _coordinates_batched(
        self, indices: np.ndarray, offsets: np.ndarray, out: np.ndarray
    ) -> np.ndarray:
        n, k = offsets.shape
        flat_index = np.repeat(indices, k)
        flat_offset = offsets.ravel()
        rows_per_chunk = max(
            1, min(flat_index.size, ROW_CAP, self.chunk_elements // max(1, self.theta.size))
        )
        results = np.empty(flat_index.size, dtype=out.dtype)
        # One buffer of rows_per_chunk copies of theta, filled once: each chunk
        # shifts one coordinate per row and puts it back afterwards, so memory is
        # O(chunk) and no chunk pays for copying theta again.
        points = np.empty((rows_per_chunk, self.theta.size), dtype=out.dtype)
        points[...] = self.theta
        for lo in range(0, flat_index.size, rows_per_chunk):
            hi = min(flat_index.size, lo + rows_per_chunk)
            rows = np.arange(hi - lo)
            cols = flat_index[lo:hi]
            points[rows, cols] += flat_offset[lo:hi]
            try:
                where = (int(cols[0]), flat_offset[lo], hi - lo)
                results[lo:hi] = self._call_batch(points[: hi - lo], where)
            finally:
                points[rows, cols] = self.theta[cols]
        return results.reshape(n, k)

    def _call(self, flat: np.ndarray, where: Any, eps_sets_steps: bool = True) -> Any:
        if self.batched:  # a batched loss takes every point with a leading axis
            return self._scalar(self._call_batch(flat[None, :], where)[0], where, eps_sets_steps)
        structure = self.layout.build(flat)
        value = self._timed(lambda: call_loss(self.loss, structure), where, 1)
        return self._scalar(value, where, eps_sets_steps)

    def _timed(self, call: Callable[[], Any], where: Any, count: int) -> Any:
        """``call()``, evaluating the loss at ``count`` points, timed, counted and watched."""
        typical = self.seconds_per_evaluation
        if self.watch is not None:
            self.watch.begin(where, count)
        started = time.perf_counter()
        try:
            value = call()
        finally:
            if self.watch is not None:
                self.watch.end()
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self._advance(count)
        cause = self.limits.overrun(elapsed, typical * count)
        if cause is not None:  # too late to stop it, but not to say so
            what = f"The loss {cause}, in this process (where a call cannot be interrupted)"
            kind = "timeout" if "timeout" in cause else "budget"
            raise worker_error(self.layout, what, kind, [where], SERIAL_FIX)
        return value

    def _advance(self, evaluations: int, chunk: bool = False) -> None:
        self.evaluations += evaluations
        if self.progress is not None:
            self.progress.advance(evaluations, chunk=chunk)

    def _note_dtype(self, values: np.ndarray) -> None:
        if self.output_dtype is None:
            self.output_dtype = values.dtype if values.dtype.kind in "fc" else np.dtype(np.float64)

    def _call_batch(self, points: np.ndarray, where: Any = "a batched evaluation") -> np.ndarray:
        structure = self.layout.build(points, batch=points.shape[0])
        value = self._timed(lambda: call_loss(self.loss, structure), where, points.shape[0])
        values = np.asarray(_to_numpy(value))
        if values.shape != (points.shape[0],):
            raise invalid(
                "loss",
                f"an array of shape {values.shape}",
                f"with batched=True the loss must return one value per parameter set, "
                f"shape ({points.shape[0]},)",
                "reduce over every axis but the leading batch axis, or drop batched=True",
            )
        return self._finite_values(values, lambda bad: "a batched evaluation")

    def _scalar(self, value: Any, where: Any, eps_sets_steps: bool = True) -> Any:
        array = np.asarray(_to_numpy(value))
        if array.size != 1 or array.dtype.kind not in "iufc":
            raise invalid(
                "loss",
                f"{type(value).__name__} of shape {array.shape} and dtype {array.dtype}",
                "must return a scalar: a float, a 0-d array or an array of size 1",
                "reduce the output to one number, e.g. with .sum() or .mean()",
            )
        if self.output_dtype is None:
            refuse_complex_value(array)
            self.output_dtype = array.dtype if array.dtype.kind in "fc" else np.dtype(np.float64)
        scalar = array.reshape(()).item()
        if not _finite(scalar):
            if self.lenient:  # inside allowing_nonfinite(): the caller deals with it
                return math.nan
            raise invalid(
                "loss",
                scalar,
                f"returned a non-finite value at {_describe(self.layout, where)}",
                "keep the loss finite near these parameters (clip log arguments, "
                "avoid division by zero)"
                + (" or choose a smaller step `eps`" if eps_sets_steps else ""),
            )
        return scalar


def _place_in(indices: np.ndarray, offsets: np.ndarray, flat: int) -> tuple[int, Any]:
    """The coordinate and offset of value ``flat`` of ``coordinates(indices, offsets)``."""
    row, col = divmod(flat, offsets.shape[1])
    return int(indices[row]), offsets[row, col]


def _finite(value: Any) -> bool:
    if isinstance(value, complex):
        return math.isfinite(value.real) and math.isfinite(value.imag)
    return math.isfinite(value)


def _to_numpy(value: Any) -> Any:
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor: leave the graph, then go to numpy
        return detach().cpu().numpy()
    return value


def _coordinate(layout: Layout, index: int) -> tuple[str, tuple[int, ...]]:
    block = layout.block_of(index)
    return block.name, tuple(block.unravel(index - block.start))


def _describe(layout: Layout, where: Any) -> str:
    """A point in words (``W[1, 0] shifted by 1e-06``; ``W[1, 0]`` for a coordinate)."""
    if isinstance(where, tuple):
        index, *rest = where  # (index, [offset, [count]])
        name, element = _coordinate(layout, int(index))
        text = f"{name}{list(element)}" + (f" shifted by {rest[0]:+.3g}" if rest else "")
        if len(rest) > 1 and rest[1] > 1:
            text += f" (the first of a batch of {rest[1]} points)"
        return text
    return str(where)
