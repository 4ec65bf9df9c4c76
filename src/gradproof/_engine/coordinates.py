"""The coordinate modes: ``"full"`` (every coordinate) and ``"sample"`` (k per block).

Both estimate each chosen coordinate's partial derivative by finite differences
and judge it with :mod:`gradproof._engine.judge`. With the default scheme (``"auto"``
and no ``eps``) a coordinate costs 2 evaluations, not Richardson's 4: the
central difference is tried first and judged at Richardson's tight tolerance;
only coordinates it cannot clear (a real bug, a kink, strong curvature) get
Richardson's two extra points, which reuse the central pair. A correct gradient
thus costs ~2N evaluations, and every coordinate that fails is judged on the
full Richardson estimate and error model.

Coordinates are visited in a seeded, stratified order (round-robin over blocks,
random within a block), so a check cut short by ``budget=`` has covered every
block evenly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from gradproof._engine.budget import Budget
from gradproof._engine.evaluate import Evaluator
from gradproof._engine.judge import Judged, judge_elements
from gradproof._engine.schemes import SCHEMES, Scheme, default_step
from gradproof._engine.tree import Layout

CHUNK_SECONDS = 0.5  # target duration of one chunk of evaluations between budget checks

# Judged's arrays, in field order (numeric: the tolerance owed to the numerical derivative)
JUDGED_FIELDS = ("numerical", "tolerance", "wrong", "kink", "numeric")


@dataclass
class Context:
    """Everything a mode needs, set up once by :func:`gradproof.check`."""

    layout: Layout
    theta: np.ndarray
    g: np.ndarray
    evaluator: Evaluator
    scheme: Scheme
    adaptive: bool
    eps: float | None
    j0: float
    delta: float
    machine_eps: float
    budget: Budget
    seed: int
    grad_eps: float
    evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray]
    refined: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rtol(self) -> float:
        """The judge's relative slack: tight for Richardson, loose for plain central."""
        if self.scheme.name == "central" and not self.adaptive:
            return max(1e-6, 1e3 * self.machine_eps)
        return max(1e-8, 100 * self.machine_eps)

    @cached_property
    def grad_scale(self) -> float:
        """The largest element of the gradient under test (the judge's scale)."""
        return float(np.max(np.abs(self.g), initial=0.0))

    @property
    def per_coordinate(self) -> int:
        """Evaluations one coordinate costs (before any refinement)."""
        return 2 if self.adaptive else self.scheme.evaluations_per_coordinate

    def steps(self, theta: np.ndarray) -> np.ndarray:
        """Per-coordinate steps: ``eps`` as given, or scaled to |theta| and the precision."""
        if self.eps is not None:
            return np.full(theta.shape, float(self.eps))
        base = default_step(self.scheme.name, self.machine_eps)
        if self.scheme.name == "complex":
            return np.full(theta.shape, base)
        return base * np.maximum(np.abs(theta), 1.0)


def judge_coordinates(ctx: Context, indices: np.ndarray) -> Judged:
    """Estimate and judge the partial derivatives at ``indices`` (sorted or not)."""
    theta = ctx.theta[indices]
    g = ctx.g[indices]
    offsets = ctx.scheme.offsets(theta, ctx.steps(theta), exact=ctx.eps is None)
    if not ctx.adaptive:
        values = ctx.evaluate(indices, offsets)
        estimate = ctx.scheme.combine(ctx.j0, values, offsets, ctx.delta)
        return judge_elements(g, estimate, ctx.scheme.name, ctx.rtol, ctx.grad_eps, ctx.grad_scale)
    central = SCHEMES["central"]
    pair = ctx.evaluate(indices, offsets[:, :2])
    first = central.combine(ctx.j0, pair, offsets[:, :2], ctx.delta)
    judged = judge_elements(g, first, "central", ctx.rtol, ctx.grad_eps, ctx.grad_scale)
    undecided = np.flatnonzero(judged.wrong | judged.kink)
    if undecided.size == 0:
        return judged
    ctx.refined += int(undecided.size)
    more = ctx.evaluate(indices[undecided], offsets[undecided, 2:])
    values = np.concatenate([pair[undecided], more], axis=1)
    estimate = ctx.scheme.combine(ctx.j0, values, offsets[undecided], ctx.delta)
    second = judge_elements(
        g[undecided], estimate, ctx.scheme.name, ctx.rtol, ctx.grad_eps, ctx.grad_scale
    )
    out = Judged(*(np.array(getattr(judged, f), copy=True) for f in JUDGED_FIELDS))
    for name in JUDGED_FIELDS:
        getattr(out, name)[undecided] = getattr(second, name)
    return out


def stratified_order(layout: Layout, per_block: int | None, seed: int) -> list[np.ndarray]:
    """For each block, its coordinates (absolute indices) in a seeded random order.

    ``per_block`` keeps the first k of each block (None: all of them).
    """
    rng = np.random.default_rng(seed)
    out = []
    for block in layout.blocks:
        order = block.start + rng.permutation(block.size)
        out.append(order if per_block is None else order[: min(per_block, block.size)])
    return out


def round_robin(orders: list[np.ndarray]) -> np.ndarray:
    """Interleave the blocks' orders one coordinate per block per round, so that any
    prefix covers every block, and small blocks (biases, often the buggy ones) fully first.

    >>> round_robin([np.array([0, 1, 2]), np.array([10])]).tolist()
    [0, 10, 1, 2]
    """
    if not orders:
        return np.zeros(0, dtype=np.int64)
    rank = np.concatenate([np.arange(o.size) for o in orders])
    which = np.concatenate([np.full(o.size, b) for b, o in enumerate(orders)])
    everything = np.concatenate(orders)
    return np.asarray(everything[np.lexsort((which, rank))], dtype=np.int64)


def run_coordinates(ctx: Context, wanted: np.ndarray, progress: Any) -> tuple[np.ndarray, Judged]:
    """Judge the coordinates ``wanted`` (in priority order) within the budget.

    Returns the coordinates actually judged (sorted) and their verdicts.
    """
    done: list[np.ndarray] = []
    parts: list[Judged] = []
    position = 0
    while position < wanted.size:
        size = _chunk_size(ctx, wanted.size - position)
        if size == 0:
            break
        if progress is not None:
            progress.total = (
                ctx.evaluator.evaluations + (wanted.size - position) * ctx.per_coordinate
            )
        chunk = wanted[position : position + size]
        parts.append(judge_coordinates(ctx, chunk))
        done.append(chunk)
        position += size
    if not done:
        empty = np.zeros(0)
        return np.zeros(0, dtype=np.int64), Judged(
            empty, empty, empty.astype(bool), empty.astype(bool), empty
        )
    indices = np.concatenate(done)
    order = np.argsort(indices, kind="stable")
    judged = Judged(*(np.concatenate([getattr(p, f) for p in parts])[order] for f in JUDGED_FIELDS))
    return indices[order], judged


def _chunk_size(ctx: Context, remaining: int) -> int:
    budget = ctx.budget
    if not budget.limited:
        return remaining
    cost = ctx.per_coordinate
    worst = ctx.scheme.evaluations_per_coordinate
    room = budget.room(ctx.evaluator.evaluations, ctx.evaluator.seconds_per_evaluation)
    if room is None:
        return remaining
    if budget.evaluations is not None:
        # Leave room for the refinement of every coordinate in the chunk.
        fits = room // worst
    else:
        fits = room // cost
    target = max(1, int(CHUNK_SECONDS / max(ctx.evaluator.seconds_per_evaluation * cost, 1e-9)))
    if budget.seconds is not None and not budget.left(ctx.evaluator.evaluations):
        return 0
    return int(max(0, min(remaining, fits, max(target, 1))))
