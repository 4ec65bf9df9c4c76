"""``mode="probe"``: directional derivatives per block, and bisection to the wrong elements.

A probe of a set P of coordinates (inside one block) draws random signs s and
compares the gradient's directional derivative ``a = sum_i g_i u_i`` along
``u_i = s_i * max(|theta_i|, 1)`` with the loss's numerical one along u (the
scheme's formula on J(theta + t u), 4 evaluations with Richardson, 2 central).

Why per block: each block gets its own directions and its own tolerance, so a
small block is not swamped by a large one. Why ±1 signs: if some element's
error exceeds the probe's tolerance tau, then whatever the other errors are,
at most one of the two signs of that element can hide the bug (flipping it
moves the error by 2|e_i| > 2 tau), so one probe misses it with probability
<= 1/2, and m independent probes with probability <= 2^-m. A single wrong
element is never missed (|e . s| = |e_i|).

Localisation: a failing probe is split in two halves with the same signs; the
left half is probed and the right half's error follows by subtraction (it is
probed only when it looks wrong, and not at all where that error is far beyond
its tolerance: it is then wrong by subtraction alone), so a single wrong element
of an N-coordinate block is found in about log2 N probes, k of them in O(k log N). A block
whose probes all show the same ratio gradient/numerical (a scale bug), or
whose failing halves multiply past ``WIDE``, is wrong nearly everywhere: it
is not descended but checked on a sample of its coordinates instead, which
gives real element values and the judge's diagnosis.

This module searches; :mod:`gradproof._engine.probe_verdict` turns what the
search found into block verdicts and the mode's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np

from gradproof._engine.context import Context
from gradproof._engine.judge import Judged, judge_elements
from gradproof._engine.schemes import SCHEMES, default_step
from gradproof._engine.shifts import Direction, Signs
from gradproof._engine.tree import Block

WIDE = 16  # failing halves at one depth beyond which a block counts as wrong throughout
# A bisected part whose central difference shows its parent's error beyond this many times
# its own tolerance is wrong without Richardson's two more points (see _carries).
CARRIES = 4.0
SAME_RATIO = 1e-2  # ratios gradient/numerical this consistent (relative to |ratio - 1|): scale


@dataclass(frozen=True)
class Probe:
    """One directional comparison over the coordinates ``lo:hi`` (absolute, one block)."""

    lo: int
    hi: int
    analytic: float
    numerical: float
    tolerance: float
    wrong: bool
    signs: Signs | None = None  # kept only for failing probes, to bisect them
    kink: bool = False  # judged on one side of a kink (and cleared there)
    virtual: bool = False  # wrong by subtraction, never evaluated (see _by_subtraction)

    @property
    def size(self) -> int:
        return self.hi - self.lo

    @property
    def error(self) -> float:
        return self.analytic - self.numerical


class Prober:
    """Probes blocks of one check, counting what it spends.

    With the default scheme a probe is central-first, like a coordinate in
    :mod:`gradproof._engine.coordinates`: 2 evaluations, and Richardson's 2 more only when the
    central difference cannot clear it at Richardson's tolerance.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rng = np.random.default_rng(ctx.seed)
        base = ctx.eps if ctx.eps is not None else default_step(ctx.scheme.name, ctx.machine_eps)
        self.steps = np.real(np.array(ctx.scheme.multiples, dtype=np.complex128)) * base
        # What a probe may cost at most: central-first probes that need refining spend
        # Richardson's full set, so budgets reserve that, not the central pair alone.
        self.cost = self.steps.size
        self.typical = 2 if ctx.adaptive else self.steps.size  # for progress estimates
        self.probes = 0

    def affordable(self, count: int = 1) -> bool:
        return self.ctx.budget.left(self.ctx.evaluator.evaluations, self.cost * count)

    def signs(self, size: int) -> Signs:
        """``size`` random ±1, kept one bit each (a sixty-fourth of float64's memory), from
        one draw of the check's generator (:meth:`Signs.draw`)."""
        return Signs.draw(self.rng, size)

    def probe(
        self,
        lo: int,
        hi: int,
        signs: Signs | None = None,
        expect: tuple[float, float] | None = None,
    ) -> Probe:
        """Compare ``g . u`` with the loss's slope along a random ``u`` over ``lo:hi``.

        ``expect``: where bisection probes part of a failing probe, the error this part
        would carry if it held all of its parent's (and that error's tolerance). A part
        whose central difference shows that error, far beyond its own tolerance, is judged
        wrong on the central pair alone (:func:`_carries`); single elements always get
        Richardson's points, their numerical derivative being reported.
        """
        ctx = self.ctx
        signs = self.signs(hi - lo) if signs is None else signs
        direction = Direction(ctx.theta[lo:hi], signs, ctx.g[lo:hi])
        positions = slice(lo, hi)
        where = np.array([lo])  # the block holding this probe: its noise bound
        if ctx.adaptive:
            pair = ctx.evaluator.along(positions, direction, self.steps[:2])
            analytic = direction.analytic()
            a = np.array([analytic])
            estimate = SCHEMES["central"].combine(
                ctx.j0, pair[None, :], self.steps[None, :2], ctx.noise_at(pair[None, :], where)
            )
            judged = judge_elements(a, estimate, "central", ctx.rtol, ctx.grad_eps)
            if (judged.wrong[0] or judged.kink[0]) and not _carries(
                judged, analytic, expect, hi - lo
            ):
                more = ctx.evaluator.along(positions, direction, self.steps[2:])
                values = np.concatenate([pair, more])[None, :]
                noise = ctx.noise_at(values, where)
                estimate = ctx.scheme.combine(ctx.j0, values, self.steps[None, :], noise)
                judged = judge_elements(a, estimate, ctx.scheme.name, ctx.rtol, ctx.grad_eps)
        else:
            values = ctx.evaluator.along(positions, direction, self.steps)
            analytic = direction.analytic()
            a = np.array([analytic])
            noise = ctx.noise_at(values[None, :], where)
            estimate = ctx.scheme.combine(ctx.j0, values[None, :], self.steps[None, :], noise)
            judged = judge_elements(a, estimate, ctx.scheme.name, ctx.rtol, ctx.grad_eps)
        self.probes += 1
        wrong = bool(judged.wrong[0])
        return Probe(
            lo,
            hi,
            analytic,
            float(judged.numerical[0]),
            float(judged.tolerance[0]),
            wrong,
            signs if wrong else None,
            bool(judged.kink[0]),
        )


@dataclass
class BlockProbes:
    """What the probes found in one block."""

    block: Block
    probes: list[Probe]
    found: list[Probe]
    unresolved: list[Probe]
    wide: str = ""
    # Failing probes whose every part passed, some at a kink: several kinks crossed at
    # once (ReLU inputs at exactly 0, tied maxima) fail a probe that no part repeats.
    cleared: list[Probe] = field(default_factory=list)

    @property
    def failing(self) -> list[Probe]:
        return [p for p in self.probes if p.wrong and not any(p is c for c in self.cleared)]


@dataclass(frozen=True)
class ProbeRun:
    """The search's outcome: per-block findings, the rounds every passing block got,
    and the probes spent in all."""

    found: tuple[BlockProbes, ...]
    rounds: int
    probes: int


def probe_blocks(ctx: Context, per_block: int, progress: Any) -> ProbeRun:
    """Probe every block up to ``per_block`` times, round-robin, within the budget.

    A block whose probe fails is localised at once (the most informative work
    there is) and probed no further; the others get every round the budget
    allows.
    """
    prober = Prober(ctx)
    found = [BlockProbes(block, [], [], []) for block in ctx.layout.blocks]
    rounds = 0
    for _ in range(per_block):
        active = [e for e in found if not e.failing]
        if not active:
            break
        if progress is not None:
            progress.total = max(
                progress.total,
                progress.done + (per_block - rounds) * len(active) * prober.typical,
            )
        if not prober.affordable(len(active)):
            break
        for entry in active:
            entry.probes.append(prober.probe(entry.block.start, entry.block.stop))
            if entry.failing:
                _localise(prober, entry, progress)
        rounds += 1
    return ProbeRun(tuple(found), rounds, prober.probes)


def _localise(prober: Prober, entry: BlockProbes, progress: Any) -> None:
    """Bisect the block's first failing probe down to single elements, where affordable.

    Where every part of it passes and some passed at a kink, the probe is cleared:
    its failure came from crossing several kinks at once, not from the gradient.
    """
    if entry.block.size > WIDE and _scale_suspected(prober, entry):
        return
    for probe in list(entry.failing):
        before = (len(entry.found), len(entry.unresolved), len(entry.cleared))
        _bisect(prober, entry, probe, progress)
        after = (len(entry.found), len(entry.unresolved), len(entry.cleared))
        if entry.wide or after[:2] != before[:2] or after[2] == before[2]:
            return  # localised (or not localisable): the block fails on this probe
        entry.cleared.append(probe)


def _bisect(prober: Prober, entry: BlockProbes, first: Probe, progress: Any) -> None:
    frontier = [first]
    while frontier:
        if len(frontier) > WIDE:
            entry.wide = f"more than {WIDE} disjoint parts of the block are wrong"
            return
        if progress is not None:
            depth = int(np.ceil(np.log2(max(p.size for p in frontier)))) + 1
            progress.total = max(progress.total, progress.done + 3 * len(frontier) * depth)
        nxt: list[Probe] = []
        for node in frontier:
            if node.size == 1:
                entry.found.append(node)
                continue
            if not prober.affordable(2):
                entry.unresolved.append(node)
                continue
            nxt.extend(_split(prober, node, entry))
        frontier = nxt


def _scale_suspected(prober: Prober, entry: BlockProbes) -> bool:
    """Two more probes of a failing block; the same gradient/numerical ratio in all three
    means the whole block is scaled, which bisection need not descend."""
    block = entry.block
    if not prober.affordable(2):
        return False
    extra = [prober.probe(block.start, block.stop) for _ in range(2)]
    entry.probes.extend(extra)
    failing = entry.failing
    if len(failing) < 3 or not _same_ratio(failing):
        return False
    ratio = failing[0].analytic / failing[0].numerical
    entry.wide = f"{len(failing)} probes all show the ratio gradient/numerical {ratio:.4g}"
    return True


def _split(
    prober: Prober, node: Probe, entry: BlockProbes, left: Probe | None = None
) -> list[Probe]:
    """The failing halves of ``node``: the left half is probed with the node's signs (or
    ``left``, that probe already made), the right half's error follows by subtraction and
    is probed only if it matters."""
    assert node.signs is not None
    half = node.size // 2
    mid = node.lo + half
    if left is None:
        left = prober.probe(node.lo, mid, node.signs[:half], (node.error, node.tolerance))
    made = [left]
    right_error = node.error - left.error
    right_tolerance = node.tolerance + left.tolerance
    if node.size - half > 1 and abs(right_error) > CARRIES * right_tolerance:
        made.append(_by_subtraction(node, left))
    elif not left.wrong or abs(right_error) > right_tolerance:
        expect = (right_error, right_tolerance)
        made.append(prober.probe(mid, node.hi, node.signs[half:], expect))
    out = [p for p in made if p.wrong]
    if out:
        return out
    if node.virtual:  # the subtraction was wrong (kinks crossed at once): evaluate it
        return _materialised(prober, node, entry, made)
    # Neither half fails with these signs: try fresh signs once before giving up.
    fresh = [
        prober.probe(lo, hi) for lo, hi in ((node.lo, mid), (mid, node.hi)) if prober.affordable()
    ]
    out = [p for p in fresh if p.wrong]
    if not out:
        kinked = any(p.kink for p in made + fresh)
        (entry.cleared if kinked else entry.unresolved).append(node)
    return out


def _by_subtraction(node: Probe, left: Probe) -> Probe:
    """The right half of ``node``, wrong by subtraction with no evaluation of its own: the
    directional derivatives of the halves sum to the whole's (``u = u_left + u_right``), so
    its error is ``node.error - left.error``, within both their tolerances. Used where that
    error is beyond ``CARRIES`` times their sum, for a part of more than one element (a
    single element is always probed: its numerical derivative is reported)."""
    return Probe(
        left.hi,
        node.hi,
        node.analytic - left.analytic,
        node.numerical - left.numerical,
        node.tolerance + left.tolerance,
        True,
        node.signs[left.size :] if node.signs is not None else None,
        kink=left.kink or node.kink,  # a kink passed on the way: the error may be its doing
        virtual=True,
    )


def _materialised(
    prober: Prober, node: Probe, entry: BlockProbes, made: list[Probe]
) -> list[Probe]:
    """A part wrong by subtraction whose halves both passed: probed for real, then split
    as any failing part is; where it passes, cleared if a kink showed, else unresolved."""
    if not prober.affordable(3):  # this probe, and the split's two at most
        entry.unresolved.append(node)
        return []
    real = prober.probe(node.lo, node.hi, node.signs)
    if real.wrong:  # split again, its left half's probe (the same signs) kept
        return _split(prober, real, entry, made[0])
    kinked = real.kink or node.kink or any(p.kink for p in made)
    (entry.cleared if kinked else entry.unresolved).append(node)
    return []


def _carries(
    judged: Judged, analytic: float, expect: tuple[float, float] | None, size: int
) -> bool:
    """Whether a part's central verdict, wrong, may stand without Richardson's points: its
    error is its parent's (which was judged on them), within both tolerances, and beyond
    ``CARRIES`` times its own. Only the parent's whole error landing in this very part
    does that; a part near a kink, unclear, or of one element is refined as always."""
    if expect is None or size == 1 or not judged.wrong[0] or judged.kink[0]:
        return False
    if judged.unclear is not None and judged.unclear[0]:
        return False
    error, tolerance = analytic - float(judged.numerical[0]), float(judged.tolerance[0])
    return abs(error) > CARRIES * tolerance and abs(error - expect[0]) <= expect[1] + tolerance


def _same_ratio(probes: list[Probe]) -> bool:
    ratios = np.array([p.analytic / p.numerical if p.numerical else np.nan for p in probes])
    if not np.all(np.isfinite(ratios)):
        return False
    middle = median(ratios.tolist())  # statistics.median: np.median imports numpy.ma
    # The ratios must agree closely compared with their distance from 1: a single
    # wrong element moves each probe's ratio by a different amount.
    return bool(np.max(np.abs(ratios - middle)) <= SAME_RATIO * abs(middle - 1))
