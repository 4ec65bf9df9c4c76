"""`gradproof.jax.check`'s points made where the parameters live, from what changed.

The engine's own way builds every point on the host, in one flat float64 vector, and
hands ``f`` numpy blocks: for parameters on a GPU, every point is copied host to device.
Here the base point is held on the parameters' device, in float64, and each point is
made there: a coordinate as ``theta.at[i].add(offset)``; a probe's or the noise table's
direction from its ±1 signs, sent once as packed bits and unpacked there, times
``max(|theta|, 1) * spacing`` (rounded to the recipe's grid where it has one), with
``g . u`` summed there where the recipe asks. The points are then given, as blocks, to
the very functions the host's way calls (``jit(f)``, ``jit(vmap(f))`` or
``jit(lax.map(f))``), in pieces of the same few sizes, so a point's value is the value
the host's way computes for it.

The points are the host's, bit for bit: ``theta_i + offset`` and ``theta_i + (u_i * step)``
in float64, each rounded on its own. XLA would fuse the multiplication and the addition
into one multiply-add (one rounding, not two: another number, now and then), so the
product passes through an operation the compiler cannot see through on its way
(:func:`_shifted_rows`). Compiled functions are shared by every check of the same
shapes; a check's first pays for compiling them (about 0.5 s on a CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from gradproof._engine.resident import Span
from gradproof._engine.shifts import CHUNK, Along, Recipe
from gradproof.jax._x64 import float64

# Points per compiled call: those of the host's way (the engine's evaluator puts at most
# ROW_CAP coordinates, and ROW_ELEMENTS point-coordinates, in one batched call), so that
# a vmapped ``f``, whose values can depend on the batch's size, sees the same batches.
ROW_CAP = 1024
ROW_ELEMENTS = 4_000_000
# From this many coordinates, fewer points than the smallest piece go one per call to
# ``jit(f)`` rather than padded to a piece: a padded row then costs more than compiling
# ``f`` once more.
SINGLE_FROM = 1 << 20
CPU_SMALL = 1 << 18  # coordinates below which the host builds a CPU check's points

# Zero, passed to the compiled functions as an argument: see _shifted_rows.
OPAQUE = np.uint64(0)
# (start, size, shape) of each block, in the order ``f`` takes them.
Parts = tuple[tuple[int, int, tuple[int, ...]], ...]


class Problem(Protocol):
    """What a resident evaluation calls: ``f`` of the blocks, compiled one point per call
    and many, the batch sizes it is compiled for, and how errors in tracing it read."""

    names: tuple[str, ...]
    leaves: list[Any]  # the checked leaves as the caller passed them
    evaluation: str
    single: Any  # jax.jit(f): the blocks of one point
    batch: Any  # jax.jit of vmap or lax.map of f: blocks with a leading axis of points
    pieces: tuple[int, ...]

    def traced(self, call: Callable[[], Any]) -> Any:
        """``call()``, a function that traces ``f`` failing as misuse of ``evaluation``."""
        raise NotImplementedError


def pays(platform: str, size: int) -> bool:
    """Whether making points on the device beats building them on the host.

    Off the CPU always: the host's way copies every point to the device. On the CPU from
    ``CPU_SMALL`` coordinates on. Measured on a 2-core CPU, one thread, a probe check of
    a tanh MLP, best of 3 with the device's functions compiled (``bench/jax_resident.py
    --always``): below, the host's way is as quick or quicker (0.26 s against 0.36 s at
    960 coordinates, 0.29 s against 0.31 s at 90,600), and a process's first check pays
    0.5-1 s more for compiling them; from 263,168 coordinates on the device's way is
    quicker, 1.3x there and at 1M, 3x at 9M (18 s against 56 s).
    """
    return platform != "cpu" or size >= CPU_SMALL


def open_jax_resident(
    problem: Problem, spans: Sequence[Span], theta: np.ndarray, batched: bool
) -> JaxResident | None:
    """The resident evaluation of ``problem``, or None where it declines: ``f`` run eagerly,
    a block it cannot place, or a check too small to gain (:func:`pays`)."""
    if problem.evaluation == "eager":
        return None
    by_name = {span.path[0]: span for span in spans if len(span.path) == 1}
    if set(by_name) != set(problem.names) or len(spans) != len(problem.names):
        return None
    parts = tuple((by_name[n].start, by_name[n].size, by_name[n].shape) for n in problem.names)
    device = _device(problem.leaves)
    if not pays(device.platform, int(theta.size)):
        return None
    return JaxResident(problem, parts, theta, batched, device)


def pieces(n: int, sizes: tuple[int, ...]) -> list[int]:
    """Batch sizes from ``sizes`` (largest first) covering ``n`` rows, greedily.

    >>> pieces(43, (64, 4)), pieces(150, (1024, 64, 4)), pieces(1, (64, 4))
    ([4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4], [64, 64, 4, 4, 4, 4, 4, 4], [4])
    """
    out = []
    while n > 0:
        size = next((s for s in sizes if s <= n), sizes[-1])
        out.append(size)
        n -= size
    return out


class JaxResident:
    """:class:`gradproof._engine.resident.Resident` for ``gradproof.jax.check``'s ``f``."""

    def __init__(
        self, problem: Problem, parts: Parts, theta: np.ndarray, batched: bool, device: Any
    ) -> None:
        self.problem = problem
        self.parts = parts
        self.size = int(theta.size)
        self.batched = batched
        self.device = device
        with float64():
            self.base_point = jax.device_put(np.asarray(theta, dtype=np.float64), device)
        self.grad: Any = None

    def gradient(self, g: np.ndarray) -> None:
        with float64():
            self.grad = jax.device_put(np.asarray(g, dtype=np.float64), self.device)

    def base(self) -> np.ndarray:
        def make(lo: int, hi: int, rows: int) -> list[Any]:
            zero = np.zeros(max(rows, 1))
            return _coordinate_rows(
                self.base_point, zero.astype(np.int64), zero, parts=self.parts, one=rows == 0
            )

        return self._evaluate(1, make, ROW_CAP)[0]

    def coordinates(self, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        n, k = offsets.shape
        index = np.repeat(np.asarray(indices, dtype=np.int64), k)
        offset = np.asarray(offsets, dtype=np.float64).ravel()

        def make(lo: int, hi: int, rows: int) -> list[Any]:
            at, by = _padded(index[lo:hi], rows), _padded(offset[lo:hi], rows)
            return _coordinate_rows(self.base_point, at, by, parts=self.parts, one=rows == 0)

        return self._evaluate(n * k, make, ROW_CAP).reshape(n, k)

    def directions(self, alongs: Sequence[Along], steps: np.ndarray, span: slice) -> np.ndarray:
        d, k = len(alongs), steps.shape[0]
        steps = np.asarray(steps, dtype=np.float64)
        recipes = [along.recipe() for along in alongs]
        with float64():
            made = [r for r in recipes if r is not None]
            if len(made) == d:
                us, dots = self._made(made, span)
            else:  # the host fills them all (a recipe's direction too: fill is the same)
                us, dots = jnp.stack([self._filled(along, span) for along in alongs]), None

        def make(lo: int, hi: int, rows: int) -> list[Any]:
            pairs = _padded(np.arange(lo, hi), rows)
            return _shifted_rows(
                self.base_point,
                us,
                pairs // k,
                steps[pairs % k],
                span.start,
                span.stop,
                OPAQUE,
                parts=self.parts,
                one=rows == 0,
            )

        values = self._evaluate(d * k, make, ROW_ELEMENTS)
        if dots is not None:
            for along, recipe, dot in zip(alongs, recipes, np.asarray(dots), strict=True):
                if recipe is not None and recipe.dot:
                    along.record_dot(float(dot))
        return values.reshape(d, k)

    # -- the directions --------------------------------------------------------------

    def _made(self, recipes: list[Recipe], span: slice) -> tuple[Any, Any]:
        """The recipes' directions over every coordinate (zero outside ``span``), built on
        the device from their signs (sent as one array of bits), and each one's ``g . u``
        where some recipe asks for it (else None)."""
        packed = np.zeros((len(recipes), self.size // 8 + 2), dtype=np.uint8)
        skips = np.empty(len(recipes), dtype=np.int64)
        for row, recipe in enumerate(recipes):
            signs = recipe.signs
            first, last = signs.offset // 8, -(-(signs.offset + signs.size) // 8)
            packed[row, : last - first] = signs.packed[first:last]
            skips[row] = signs.offset - 8 * first  # the bit its first sign is at
        dots = self.grad is not None and any(r.dot for r in recipes)
        us, dot = _recipe_directions(
            self.base_point,
            self.grad if dots else self.base_point,
            jax.device_put(packed, self.device),
            skips,
            np.array([r.spacing for r in recipes]),
            np.array([2.0 ** min(r.grid_bits, 53) for r in recipes]),
            span.start,
            span.stop,
            rounds=any(r.grid_bits < 53 for r in recipes),
            dots=dots,
        )
        return us, dot if dots else None

    def _filled(self, along: Along, span: slice) -> Any:
        """A direction only the host can fill: filled there a chunk at a time, each chunk
        sent to the device, and placed over the span."""
        n = span.stop - span.start
        chunks = []
        for start in range(0, n, CHUNK):
            host = np.empty(min(n, start + CHUNK) - start)
            along.fill(start, host)
            chunks.append(jax.device_put(host, self.device))
        values = jnp.concatenate(chunks) if chunks else jnp.zeros(0)
        return _placed(values, span.start, size=self.size)

    # -- evaluating ------------------------------------------------------------------

    def _evaluate(self, count: int, make: Callable[[int, int, int], list[Any]], cap: int) -> Any:
        """f at ``count`` points, point j made on the device by ``make``: ``make(lo, hi, rows)``
        gives the blocks of points ``lo:hi`` padded to ``rows`` (0: one point, unbatched)."""
        done: list[tuple[Any, int]] = []
        if count == 0:
            return np.empty(0)
        with float64():
            if not self.batched or (count < self.problem.pieces[-1] and self.size >= SINGLE_FROM):
                for j in range(count):
                    done.append((self._call(self.problem.single, make(j, j + 1, 0)), 1))
            else:
                per_call = max(1, min(cap, ROW_ELEMENTS // max(1, self.size)))
                for lo in range(0, count, per_call):
                    hi, start = min(count, lo + per_call), lo
                    for rows in pieces(hi - start, self.problem.pieces):
                        stop = min(hi, start + rows)
                        values = self._call(self.problem.batch, make(start, stop, rows))
                        done.append((values, stop - start))
                        start = stop
            host = jax.device_get([values for values, _ in done])
        return np.concatenate([np.ravel(v)[:n] for v, (_, n) in zip(host, done, strict=True)])

    def _call(self, function: Callable[[list[Any]], Any], blocks: list[Any]) -> Any:
        return self.problem.traced(lambda: function(blocks))


# -- compiled on the device: one function per shape, shared by every check ------------


def _split(rows: Any, parts: Parts, one: bool) -> list[Any]:
    """The blocks ``f`` takes, from (points x coordinates) rows (``one``: the first row's,
    without the leading axis)."""
    if one:
        return [rows[0, s : s + n].reshape(shape) for s, n, shape in parts]
    count = rows.shape[0]
    return [rows[:, s : s + n].reshape((count, *shape)) for s, n, shape in parts]


@partial(jax.jit, static_argnames=("parts", "one"))
def _coordinate_rows(base: Any, index: Any, offset: Any, *, parts: Parts, one: bool) -> Any:
    """Row r: theta with coordinate ``index[r]`` at ``theta_i + offset[r]`` (theta itself
    where the offset is 0)."""
    old = base[index]
    new = jnp.where(offset == 0, old, old + offset)
    rows = jnp.broadcast_to(base, (index.shape[0], base.shape[0]))
    return _split(rows.at[jnp.arange(index.shape[0]), index].set(new), parts, one)


@partial(jax.jit, static_argnames=("rounds", "dots"))
def _recipe_directions(
    base: Any,
    grad: Any,
    packed: Any,
    skips: Any,
    spacings: Any,
    grids: Any,
    lo: Any,
    hi: Any,
    *,
    rounds: bool,
    dots: bool,
) -> tuple[Any, Any]:
    """Row d: direction d over every coordinate, zero outside ``lo:hi``: the host's
    ``s * (max(|theta|, 1) * spacing)``, its signs from bit ``skips[d]`` of ``packed[d]``,
    rounded as ``round(theta + u) - theta`` at ``grids[d]`` (2 ** its bits) where ``rounds``
    (and the grid is below float64's); and each one's ``g . u`` where ``dots``."""
    n = base.shape[0]
    where = jnp.arange(n)
    # np.packbits order: the first sign is the top bit; bit 1 is +1
    bits = jax.vmap(jnp.unpackbits)(packed)
    at = jnp.clip(where[None, :] - lo + skips[:, None], 0, bits.shape[1] - 1)
    signs = jnp.take_along_axis(bits, at, axis=1).astype(jnp.float64) * 2.0 - 1.0
    u = signs * (jnp.maximum(jnp.abs(base), 1.0)[None, :] * spacings[:, None])
    if rounds:
        mantissa, exponent = jnp.frexp(base + u)
        grid = grids[:, None]
        rounded = jnp.ldexp(jnp.round(mantissa * grid) / grid, exponent) - base
        u = jnp.where(grid < 2.0**53, rounded, u)
    u = jnp.where((where >= lo) & (where < hi), u, 0.0)
    dot = jnp.sum(grad * u, axis=1) if dots else jnp.zeros(u.shape[0])
    return u, dot


@partial(jax.jit, static_argnames=("size",))
def _placed(values: Any, lo: Any, *, size: int) -> Any:
    """``values`` at coordinates ``lo : lo + len(values)`` of a vector of zeros."""
    return jax.lax.dynamic_update_slice(jnp.zeros(size), values, (lo,))


@partial(jax.jit, static_argnames=("parts", "one"))
def _shifted_rows(
    base: Any,
    us: Any,
    which: Any,
    steps: Any,
    lo: Any,
    hi: Any,
    opaque: Any,
    *,
    parts: Parts,
    one: bool,
) -> Any:
    """Row r: ``theta + (u * steps[r])`` over ``lo:hi``, u the direction ``us[which[r]]``
    (theta itself elsewhere, and where the step is 0), split into blocks.

    The product goes through an integer or with ``opaque`` (0, unknown to the compiler)
    on its way to the addition: rounded on its own, never fused into a multiply-add."""
    product = us[which] * steps[:, None]
    product = jax.lax.bitcast_convert_type(
        jax.lax.bitcast_convert_type(product, jnp.uint64) | opaque, jnp.float64
    )
    where = jnp.arange(base.shape[0])
    inside = (where >= lo) & (where < hi) & (steps != 0)[:, None]
    return _split(jnp.where(inside, base + product, base), parts, one)


def _padded(values: np.ndarray, rows: int) -> np.ndarray:
    """``values`` padded to ``rows`` with copies of its last one (0: as it is)."""
    if rows <= values.size:
        return values
    return np.concatenate([values, np.repeat(values[-1:], rows - values.size)])


def _device(leaves: list[Any]) -> Any:
    """The device the parameters are on: that of the JAX arrays among them, where they share
    one, else JAX's default device (where the host's way computes too)."""
    devices = {d for leaf in leaves if isinstance(leaf, jax.Array) for d in leaf.devices()}
    return devices.pop() if len(devices) == 1 else jax.devices()[0]
