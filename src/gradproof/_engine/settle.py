"""Smaller steps where the check's own step is too long for the loss.

The default step, ``eps^(1/3) * max(|θ_i|, 1)``, assumes the loss changes on the scale
of ``θ_i`` (or of 1, for small ``θ_i``). A loss that changes on a much shorter scale
(``exp(1e7 w)`` at ``w ~ 1e-8``, ``sin(x)`` at ``x ~ 1e6``, a Gaussian 1e-6 wide in
metres) has Richardson's central differences at ``h`` and ``h/2`` far apart: its error
estimate, which assumes they differ by their ``h^2`` term, holds nowhere near such a
step, and neither do the kink tests built on the one-sided differences. A verdict on
them would call a correct gradient wrong, or pass a wrong one "at a kink".

So a coordinate that Richardson's points did not clear, and whose two central
differences stand apart by more than ``SETTLED`` of the error it would be blamed for
(and by more than their noise), is judged again at steps ``SHRINK`` times smaller, and
again, up to ``LEVELS`` times, until its differences settle or the noise, growing as
the step shrinks, would swamp the next level. Its verdict is that of the last level:
cleared, wrong, or at a kink on estimates that have settled; where they never do, it is
neither cleared nor blamed (unclear). A kink within the step is moved out of it the same
way, so a gradient wrong just beside a ReLU kink is judged on the smooth side.

Only where the loss works in float64 and the check chooses its steps: a float32 loss
has no room below its step, and a step the user gives is theirs.
"""

from __future__ import annotations

import numpy as np

from gradproof._engine.context import Context
from gradproof._engine.judge import SAFETY, Judged, judge_elements
from gradproof._engine.precision import FLOAT64
from gradproof._engine.schemes import SCHEMES, Estimate, representable

SHRINK = 16.0  # each level's step, next to the one before
LEVELS = 5  # at most this many levels: steps down to 16^-5 (about 1e-6) of the first
SETTLED = 0.01  # central differences this close, next to the error blamed, have settled
# Where no smaller step is left, a verdict on estimates apart (or moved) by less than this
# share of the error blamed stands: it would not flip within them.
SHAKY = 0.25
WEAK = 0.01  # a pass whose error bound is this share of the derivative proves little
NOISE_ROOM = 0.01  # the next level's noise bound may reach this share of the derivative

SMALLER_STEPS_NOTE = (
    "{} coordinate(s) were judged again at steps up to 16^5 times smaller than the "
    "default: at the default step their central differences had not settled (a kink "
    "within the step, or a loss that changes on a scale far below max(|θ|, 1)); each "
    "verdict rests on estimates that agree between successive steps, or, where none did "
    "before the noise grew too large, the element is neither cleared nor blamed."
)
FIELDS = ("numerical", "tolerance", "wrong", "kink", "numeric_tolerance", "unclear")


def settle(
    ctx: Context,
    indices: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
    judged: Judged,
    near_minimum: np.ndarray,
) -> Judged:
    """``judged`` (Richardson's verdicts of ``indices`` from ``values`` at ``offsets``),
    with its unsettled coordinates judged again at smaller steps. ``near_minimum``: rows
    whose derivatives are ~0 next to the loss's change over the step, whose pass (judged
    on the noise found there) stands."""
    if not ctx.adaptive or ctx.level is not FLOAT64 or ctx.scheme.name != "richardson":
        return judged
    g, theta = ctx.g[indices], ctx.theta[indices]
    rows, level, before = _start(ctx, indices, values, offsets, judged, near_minimum)
    if rows.size == 0:
        return judged
    out = _arrays(judged)
    tried = np.zeros(indices.shape, dtype=bool)
    shaky = np.ones(indices.shape, dtype=bool)  # the last level's verdict could flip
    while rows.size:
        fits = (level[rows] <= LEVELS) & _room(offsets[rows], theta[rows], level[rows])
        _give_up(out, rows[~fits & shaky[rows]])  # unsettled, no smaller step left to try
        rows = rows[fits]
        if rows.size == 0 or not _affordable(ctx, 4 * rows.size):
            break  # a budget that cannot pay keeps the verdicts reached so far
        tried[rows] = True
        small = representable(theta[rows], offsets[rows] / SHRINK ** level[rows][:, None])
        est = _estimate(ctx, indices[rows], ctx.evaluate(indices[rows], small), small)
        part = _judged(ctx, indices[rows], est)
        for name, array in _arrays(part).items():
            out[name][rows] = array
        still = _unsettled(g[rows], est, part) | _moved(g[rows], est, before[rows])
        shaky[rows] = _unsettled(g[rows], est, part, SHAKY) | _moved(
            g[rows], est, before[rows], SHAKY
        )
        quiet = _quiet_enough(g[rows], est)
        _give_up(out, rows[still & ~quiet & shaky[rows]])
        before[rows] = est.value
        rows = rows[still & quiet]
        level[rows] += 1
    count = int(np.count_nonzero(tried))
    return Judged(**out, slope=judged.slope, refined=judged.refined, settled=count)


def _start(
    ctx: Context,
    indices: np.ndarray,
    values: np.ndarray,
    offsets: np.ndarray,
    judged: Judged,
    near_minimum: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows to judge at smaller steps, the level each starts at, and each one's
    estimate so far: unsettled rows from level 1; wrong rows whose estimate moves at the
    deepest level the noise allows, from that level."""
    g = ctx.g[indices]
    first = _estimate(ctx, indices, values, offsets)
    # a pass stands where its error bound is tight, and near a minimum (judged there on
    # the noise found along the coordinate)
    weak = judged.numeric > WEAK * np.maximum(np.abs(g), np.abs(first.value))
    unsettled = _unsettled(g, first, judged) & (_flagged(judged) | (weak & ~near_minimum))
    moved, depth, central = _moves_when_shrunk(
        ctx, indices, offsets, first, judged.wrong & ~unsettled
    )
    level = np.where(moved, depth, 1)
    before = np.where(moved, central, first.value)
    return np.flatnonzero(unsettled | moved), level, before


def _estimate(
    ctx: Context, indices: np.ndarray, values: np.ndarray, offsets: np.ndarray
) -> Estimate:
    noise = ctx.noise_at(values, indices)
    return SCHEMES["richardson"].combine(ctx.j0, values, offsets, noise)


def _judged(ctx: Context, indices: np.ndarray, est: Estimate) -> Judged:
    g = ctx.g[indices]
    return judge_elements(g, est, "richardson", ctx.rtol, ctx.grad_eps, ctx.grad_scale)


def _unsettled(g: np.ndarray, est: Estimate, judged: Judged, share: float = SETTLED) -> np.ndarray:
    """Coordinates whose central differences at h and h/2 stand apart beyond their noise
    and beyond ``share`` of what is judged: of the error blamed, where the coordinate
    is not cleared, and of the derivative's size, where it is (a pass on such estimates
    rests on an error bound as large as they are apart)."""
    assert est.smooth_gap is not None
    flagged = _flagged(judged)
    with np.errstate(invalid="ignore", over="ignore"):
        blamed = np.abs(g - est.value)
        size = np.maximum(np.abs(g), np.abs(est.value))
        judged_by = np.where(flagged, blamed, size)
        apart = (est.smooth_gap > share * judged_by) & (est.smooth_gap > SAFETY * est.roundoff)
    return np.asarray(apart & np.isfinite(est.value))


def _moves_when_shrunk(
    ctx: Context, indices: np.ndarray, offsets: np.ndarray, est: Estimate, wrong: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of the ``wrong`` coordinates, whose differences look settled, those whose central
    difference at the smallest step the noise allows (down to ``SHRINK**LEVELS`` times
    smaller) moves from their estimate beyond ``SETTLED`` of the error blamed and its
    noise: a step far longer than the loss's own scale (a period of sin at x ~ 1e8)
    averages the loss to ~0 at h and h/2 alike. Returns that mask, the level of that
    step and the central difference there, per coordinate. Cost: 2 evaluations per wrong
    coordinate, before it is blamed."""
    moved = np.zeros(wrong.shape, dtype=bool)
    depth = np.zeros(wrong.shape, dtype=np.int64)
    central = np.zeros(wrong.shape)
    rows = np.flatnonzero(wrong)
    depth[rows] = _deepest(ctx.g[indices[rows]], est, rows)
    rows = rows[(depth[rows] >= 1) & _room(offsets[rows], ctx.theta[indices[rows]], depth[rows])]
    if rows.size == 0 or not _affordable(ctx, 2 * rows.size):
        return moved, depth, central
    shorter = offsets[rows, :2] / SHRINK ** depth[rows][:, None]
    pair = representable(ctx.theta[indices[rows]], shorter)
    values = ctx.evaluate(indices[rows], pair)
    width = pair[:, 0] - pair[:, 1]
    with np.errstate(invalid="ignore", over="ignore"):
        central[rows] = (values[:, 0] - values[:, 1]) / width
        noise = 2 * ctx.noise_at(values, indices[rows]) / width + est.roundoff[rows]
        apart = np.abs(central[rows] - est.value[rows])
        blamed = np.abs(ctx.g[indices[rows]] - est.value[rows])
        moved[rows] = (apart > SETTLED * blamed) & (apart > SAFETY * noise)
    return moved, depth, central


def _deepest(g: np.ndarray, est: Estimate, rows: np.ndarray) -> np.ndarray:
    """The most levels (0 to ``LEVELS``) a row's step can shrink by with its noise bound,
    growing ``SHRINK`` times a level, kept within ``NOISE_ROOM`` of the derivative."""
    size = np.maximum(np.abs(g), np.abs(est.value[rows]))
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        room = NOISE_ROOM * size / (SAFETY * est.roundoff[rows])
        levels = np.floor(np.log(room) / np.log(SHRINK))
    levels[~np.isfinite(levels)] = 0
    return np.clip(levels, 0, LEVELS).astype(np.int64)


def _moved(g: np.ndarray, est: Estimate, before: np.ndarray, share: float = SETTLED) -> np.ndarray:
    """Coordinates whose estimate moved from the level before by more than ``share`` of
    the error blamed and its own noise: a gap that closed by chance far from the
    asymptotic regime is not taken for settled until the next level agrees."""
    with np.errstate(invalid="ignore", over="ignore"):
        moved = np.abs(est.value - before)
        return np.asarray(
            (moved > share * np.abs(g - est.value)) & (moved > SAFETY * 2 * est.roundoff)
        )


def _flagged(judged: Judged) -> np.ndarray:
    """Coordinates not cleared: wrong, at a kink, or unclear."""
    flagged = judged.wrong | judged.kink
    return flagged if judged.unclear is None else flagged | judged.unclear


def _quiet_enough(g: np.ndarray, est: Estimate) -> np.ndarray:
    """Whether a step ``SHRINK`` times smaller keeps the noise bound within ``NOISE_ROOM``
    of the derivative (the noise bound grows as the step shrinks)."""
    size = np.maximum(np.abs(g), np.abs(est.value))
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(SAFETY * est.roundoff * SHRINK <= NOISE_ROOM * size)


def _room(offsets: np.ndarray, theta: np.ndarray, level: int | np.ndarray) -> np.ndarray:
    """Rows whose offsets, ``SHRINK**level`` times smaller (a level per row, or one for
    all), are still nonzero, and the half steps still shorter, once made exact."""
    small = representable(theta, offsets / np.reshape(SHRINK ** np.asarray(level), (-1, 1)))
    nonzero = np.all(small != 0, axis=1)
    halves = np.abs(small[:, 2:]) < np.abs(small[:, :2])
    return np.asarray(nonzero & np.all(halves, axis=1))


def _affordable(ctx: Context, need: int) -> bool:
    """Whether the check's budget leaves room for ``need`` more evaluations."""
    return not ctx.budget.limited or ctx.budget.left(ctx.evaluator.evaluations, need)


def _arrays(judged: Judged) -> dict[str, np.ndarray]:
    """Copies of ``judged``'s element arrays (the numeric tolerance and unclear filled in)."""
    out = {name: np.array(getattr(judged, name), copy=True) for name in FIELDS[:4]}
    out["numeric_tolerance"] = np.array(judged.numeric, copy=True)
    unclear = judged.unclear
    out["unclear"] = np.zeros(out["wrong"].shape, bool) if unclear is None else unclear.copy()
    return out


def _give_up(out: dict[str, np.ndarray], rows: np.ndarray) -> None:
    """Rows not cleared on differences that never settled, by far: neither cleared nor
    blamed (a pass on them keeps its verdict, and its error bound says how little it
    proves)."""
    rows = rows[out["wrong"][rows] | out["kink"][rows] | out["unclear"][rows]]
    out["wrong"][rows] = False
    out["kink"][rows] = False
    out["unclear"][rows] = True


def allow_truncation(
    ctx: Context, indices: np.ndarray, values: np.ndarray, offsets: np.ndarray, judged: Judged
) -> Judged:
    """``judged`` (plain central differences at the user's ``eps``), with each wrong
    element's tolerance widened by its truncation error, measured: the central difference
    at ``eps/2`` as well (2 evaluations per wrong element), and
    ``(4/3)|D(eps) - D(eps/2)|``, D(eps)'s ``h^2`` term, allowed ``SAFETY`` times.

    The step is the user's, and so are the numbers the report shows (the notebook's
    differences, to the last digit); only whether an element is blamed changes: a
    correct tanh at ``eps=1e-2`` is off by its truncation, not wrong.
    """
    if ctx.adaptive or ctx.scheme.name != "central":
        return judged
    rows = np.flatnonzero(judged.wrong & ~judged.kink)
    if rows.size == 0 or not _affordable(ctx, 2 * rows.size):
        return judged
    half = offsets[rows] / 2
    again = ctx.evaluate(indices[rows], half)
    with np.errstate(invalid="ignore", over="ignore"):
        d_half = (again[:, 0] - again[:, 1]) / (half[:, 0] - half[:, 1])
        truncation = 4 / 3 * np.abs(judged.numerical[rows] - d_half)
    truncation[~np.isfinite(truncation)] = 0.0
    out = _arrays(judged)
    out["tolerance"][rows] += SAFETY * truncation
    out["numeric_tolerance"][rows] += SAFETY * truncation
    g = ctx.g[indices[rows]]
    with np.errstate(invalid="ignore"):
        out["wrong"][rows] = ~(np.abs(g - judged.numerical[rows]) <= out["tolerance"][rows])
    return Judged(**out, slope=judged.slope, refined=judged.refined, settled=judged.settled)
