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

from dataclasses import replace
from typing import Any

import numpy as np

from gradproof._engine.blocks import SUSPECTS_NOTE, blocks_of, global_signal, judge_block, unchecked
from gradproof._engine.context import Context, ModeResult
from gradproof._engine.edges import within_domain
from gradproof._engine.judge import Judged, judge_elements, relative_difference, squares
from gradproof._engine.noise import raise_unrepeatable
from gradproof._engine.precision import POINTS, noise_from_table
from gradproof._engine.schemes import SCHEMES
from gradproof._engine.settle import SMALLER_STEPS_NOTE, allow_truncation, settle
from gradproof._engine.tree import Layout
from gradproof._report import BlockResult

# A coordinate whose derivatives are this small next to the loss's change over the step
# sits near a stationary point, where noise is measured where the loss is evaluated.
STATIONARY = 1e-3
JUMPY = 1e3  # a block this much noisier than the quietest one makes the loss jump
CHUNK_SECONDS = 0.5  # target duration of one chunk of evaluations between budget checks

# Judged's arrays (numeric_tolerance: the part of the tolerance owed to the numerical derivative)
JUDGED_FIELDS = (
    "numerical",
    "tolerance",
    "wrong",
    "kink",
    "numeric_tolerance",
    "slope",
    "unclear",
)


def judge_coordinates(ctx: Context, indices: np.ndarray) -> Judged:
    """Estimate and judge the partial derivatives at ``indices`` (sorted or not).

    Coordinates judged near a kink are evaluated once more: a kink must be
    reproducible, and a value that changes is nondeterminism, not a kink.
    """
    theta = ctx.theta[indices]
    g = ctx.g[indices]
    offsets = ctx.offsets(theta)
    if not ctx.adaptive:
        values = within_domain(ctx, indices, offsets)
        judged = _judge(ctx, indices, values, offsets, ctx.scheme.name)
        _confirm_kinks(ctx, indices, offsets, values, judged.kink)
        return allow_truncation(ctx, indices, values, offsets, judged)
    pair = within_domain(ctx, indices, offsets, stop=2)  # a row may shrink: see edges.py
    judged = _judge(ctx, indices, pair, offsets[:, :2], "central")
    undecided = (judged.wrong | judged.kink).nonzero()[0]
    if undecided.size == 0:
        return judged
    more = ctx.evaluate(indices[undecided], offsets[undecided, 2:])  # inside the pair
    values = np.concatenate([pair[undecided], more], axis=1)
    second = _judge(ctx, indices[undecided], values, offsets[undecided], ctx.scheme.name)
    second = _near_stationary(
        ctx, indices[undecided], g[undecided], values, offsets[undecided], second
    )
    _confirm_kinks(ctx, indices[undecided], offsets[undecided], values, second.kink)
    near_minimum = _stationary(ctx, g[undecided], values, offsets[undecided], second)
    second = settle(ctx, indices[undecided], values, offsets[undecided], second, near_minimum)
    merged = _arrays(judged)
    for name, part in _arrays(second).items():
        merged[name] = merged[name].copy()
        merged[name][undecided] = part
    return Judged(**merged, refined=int(undecided.size), settled=second.settled)


def _judge(
    ctx: Context,
    indices: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
    scheme: str,
    delta: np.ndarray | None = None,
) -> Judged:
    """Combine ``values`` with scheme ``scheme``'s formula and judge them against ``g``."""
    g, theta = ctx.g[indices], ctx.theta[indices]
    noise = ctx.noise_at(values, indices) if delta is None else delta
    estimate = SCHEMES[scheme].combine(ctx.j0, values, offsets, noise)
    judged = judge_elements(g, estimate, scheme, ctx.rtol, ctx.grad_eps, ctx.grad_scale)
    step = np.abs(offsets[:, 0])
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        reach = np.abs(np.real(values[:, 0]) - ctx.j0) / step**2 * np.maximum(np.abs(theta), 1.0)
    reach[~np.isfinite(reach)] = 0.0
    return judged.with_slope(reach)


def _confirm_kinks(
    ctx: Context, indices: np.ndarray, offsets: np.ndarray, values: np.ndarray, kink: np.ndarray
) -> None:
    """Evaluate the points of coordinates judged at a kink again; raise if they moved."""
    rows = np.flatnonzero(kink)
    if rows.size == 0:
        return
    again = ctx.evaluate(indices[rows], offsets[rows])
    moved = np.abs(again - values[rows]) > ctx.noise_at(values[rows], indices[rows])[:, None]
    if np.any(moved):
        row, col = np.argwhere(moved)[0]
        raise_unrepeatable(ctx, int(indices[rows][row]), values[rows][row, col], again[row, col])


def _near_stationary(
    ctx: Context,
    indices: np.ndarray,
    g: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
    judged: Judged,
) -> Judged:
    """Re-judge failing coordinates where the loss barely slopes, with noise measured there.

    Near a minimum the noise in J(θ ± h) grows with the distance from θ (a sum of
    squared residuals carries each residual's rounding times the residual), so
    the base point's noise understates it. Where a coordinate fails while both
    derivatives are tiny next to the loss's change over the step, the noise is
    measured at θ + h along that coordinate (``POINTS`` evaluations each).
    """
    small = _stationary(ctx, g, values, offsets, judged)
    unclear = np.zeros_like(small) if judged.unclear is None else judged.unclear
    rows = np.flatnonzero((judged.wrong | unclear) & ~judged.kink & small)
    if rows.size == 0:
        return judged
    delta = ctx.noise_at(values, indices)
    delta[rows] = np.maximum(delta[rows], noise_along(ctx, indices[rows], offsets[rows, 0]))
    return _judge(ctx, indices, values, offsets, ctx.scheme.name, delta)


def _stationary(
    ctx: Context, g: np.ndarray, values: np.ndarray, offsets: np.ndarray, judged: Judged
) -> np.ndarray:
    """Coordinates whose derivatives (the gradient's and the estimate) are tiny next to
    the loss's change over the step: near a stationary point."""
    with np.errstate(over="ignore", invalid="ignore"):
        secant = np.abs(values[:, 0] - ctx.j0) / np.abs(offsets[:, 0])
        return np.asarray(np.maximum(np.abs(g), np.abs(judged.numerical)) <= STATIONARY * secant)


def noise_along(ctx: Context, indices: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Twice the noise's standard deviation in J near θ + start·e_i, for each coordinate."""
    base = ctx.theta[indices] + start
    spacing = 1e3 * ctx.machine_eps * np.maximum(np.abs(base), 1.0)
    table = start[:, None] + spacing[:, None] * np.arange(POINTS + 1)
    values = ctx.evaluate(indices, table)
    return np.array([2 * noise_from_table(row) for row in values])


def _arrays(judged: Judged) -> dict[str, np.ndarray]:
    """``judged``'s element arrays by field name (the numeric tolerance filled in)."""
    out = {name: getattr(judged, name) for name in JUDGED_FIELDS}
    out["numeric_tolerance"] = judged.numeric
    if judged.slope is None:
        out["slope"] = np.zeros(judged.numerical.shape)
    if judged.unclear is None:
        out["unclear"] = np.zeros(judged.numerical.shape, dtype=bool)
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
    if len(parts) == 1 and bool((indices[1:] > indices[:-1]).all()):
        one = parts[0]
        return indices, Judged(**_arrays(one), refined=one.refined, settled=one.settled)
    order = np.argsort(indices, kind="stable")
    arrays = [_arrays(p) for p in parts]
    judged = Judged(
        **{f: np.concatenate([a[f] for a in arrays])[order] for f in JUDGED_FIELDS},
        refined=sum(p.refined for p in parts),
        settled=sum(p.settled for p in parts),
    )
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


def coordinate_mode(ctx: Context, mode: str, per_block: int | None, progress: Any) -> ModeResult:
    """Run ``mode="full"`` (``per_block=None``) or ``"sample"``, and judge every block."""
    if mode == "full" and not ctx.budget.limited:
        # Every coordinate, in order (cache-friendly, and the notebook's order): what the
        # stratified order sorts to, without drawing it.
        wanted = np.arange(ctx.theta.size, dtype=np.int64)
    else:
        wanted = round_robin(stratified_order(ctx.layout, per_block, ctx.seed))
    indices, judged = run_coordinates(ctx, wanted, progress)
    g, theta = ctx.g[indices], ctx.theta[indices]
    squared = squares(g, judged.numerical)
    signal = global_signal(g, judged.numerical, squared)
    blocks: list[BlockResult] = []
    for block, sl, positions in blocks_of(ctx.layout, indices):
        if positions.size == 0:
            why = "not checked: the budget ran out before this block was reached"
            blocks.append(unchecked(block, why))
            continue
        part = judged.part(sl)
        blocks.append(judge_block(block, positions, g[sl], theta[sl], part, signal, None))
    blocks = _name_jumpy_blocks(ctx, blocks)
    extra: dict[str, Any] = {}
    if ctx.adaptive:
        extra["central_first"] = {
            "coordinates": int(indices.size),
            "refined": judged.refined,
            "smaller_steps": judged.settled,
        }
    within = (np.abs(g) <= judged.numeric) & (np.abs(judged.numerical) <= judged.numeric)
    if indices.size and bool(within.all()):
        extra["near_zero"] = (
            "the gradient and its numerical estimate are both zero within the error bound "
            "(a stationary point, or a loss of ~0), so their relative difference means nothing "
            "and `tol` does not judge it"
        )
    coverage, miss = _coverage(ctx, mode, indices.size, per_block, blocks, extra)
    extra["checked"] = {b.name: b.checked for b in blocks}
    return ModeResult(
        blocks=tuple(blocks),
        difference=relative_difference(g, judged.numerical, squared),
        notes=_notes(judged, blocks),
        coverage=coverage,
        miss_probability=miss,
        extra=extra,
    )


def _name_jumpy_blocks(ctx: Context, blocks: list[BlockResult]) -> list[BlockResult]:
    """Say which inconclusive block makes the loss jump, where noise was measured per block.

    A block whose own noise is ``JUMPY`` times the quietest block's is most likely
    a discrete input (a ±1 label, a mask, an index) passed as a parameter: its
    finite differences jump, and the other blocks are judged on their own noise.
    """
    if ctx.block_delta is None:
        return blocks
    quiet = max(min(ctx.block_delta), np.finfo(np.float64).tiny)
    out = []
    for block, delta in zip(blocks, ctx.block_delta, strict=True):
        if block.status == "inconclusive" and delta > JUMPY * quiet:
            block = replace(
                block,
                reason=(
                    f"the loss jumps when {block.name} moves (noise {delta:.2g} in its "
                    f"values, against {quiet:.2g} for the quietest block): a label, mask or "
                    f"index passed as a parameter? Pass it to the loss through a closure "
                    f"instead of in `params`"
                ),
            )
        out.append(block)
    return out


def _coverage(
    ctx: Context,
    mode: str,
    done: int,
    per_block: int | None,
    blocks: list[BlockResult],
    extra: dict[str, Any],
) -> tuple[str, float | None]:
    """The coverage sentence and the miss probability (None when every coordinate was seen)."""
    total = ctx.theta.size
    if done == total:
        return f"every coordinate: {total} of {total}", None
    extra["miss_probability_means"] = (
        "the largest chance, over blocks, that one wrong element was not among the "
        "checked coordinates (1 - checked/size); a bug touching a fraction f of a block "
        "is missed with probability about (1 - f)^checked"
    )
    miss = max((1 - b.checked / max(_size(b), 1) for b in blocks), default=0.0)
    return _partial_coverage(ctx, mode, done, per_block, blocks), miss


def _size(block: BlockResult) -> int:
    return int(np.prod(block.shape, dtype=np.int64))


def _partial_coverage(
    ctx: Context, mode: str, done: int, per_block: int | None, blocks: list[BlockResult]
) -> str:
    total = ctx.theta.size
    what = (
        f"a stratified random sample of up to {per_block} coordinates per block (seed {ctx.seed})"
        if mode == "sample"
        else f"coordinates in stratified random order (seed {ctx.seed})"
    )
    stopped = (
        f"; the budget ({ctx.budget.describe()}) ran out first"
        if ctx.budget.limited
        and (mode == "full" or done < sum(min(per_block or 0, _size(b)) for b in blocks))
        else ""
    )
    per = ", ".join(f"{b.name} {b.checked}/{_size(b)}" for b in blocks[:8])
    more = f", and {len(blocks) - 8} more blocks" if len(blocks) > 8 else ""
    return (
        f"{done} of {total} coordinates: {what}{stopped}; not covered: {total - done} "
        f"coordinates ({per}{more})"
    )


def _notes(judged: Judged, blocks: list[BlockResult]) -> tuple[str, ...]:
    notes = []
    kinks = int(np.count_nonzero(judged.kink))
    if kinks:
        notes.append(
            f"{kinks} coordinate(s) sit near a kink (ReLU, max, abs): their one-sided "
            "differences disagree, and the gradient matches one side, so they are not counted "
            "as bugs; the numerical value shown for them is that side's."
        )
    if judged.settled:
        notes.append(SMALLER_STEPS_NOTE.format(judged.settled))
    if any(b.status == "fail" for b in blocks):
        notes.append(SUSPECTS_NOTE)
    return tuple(notes)
