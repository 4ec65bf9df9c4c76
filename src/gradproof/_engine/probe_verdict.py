"""``mode="probe"``, second half: from what the probes found to block verdicts.

A block whose probes all pass passes, with the miss probability the rounds
allow (``<= 2^-rounds``); a failing block names the elements bisection reached,
or, when wrong throughout, is judged on a seeded sample of its coordinates.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from gradproof._engine.blocks import (
    INCONCLUSIVE_RATIO,
    SUSPECTS_NOTE,
    WORST_SHOWN,
    blocks_of,
    judge_block,
    share,
    unchecked,
)
from gradproof._engine.context import Context, ModeResult
from gradproof._engine.coordinates import judge_coordinates
from gradproof._engine.diagnose import listed, scale_of
from gradproof._engine.judge import relative_difference, rms
from gradproof._engine.probe import BlockProbes, Probe, ProbeRun, probe_blocks
from gradproof._engine.tree import Block
from gradproof._report import BlockResult, Diagnosis, ElementResult, Index, Status

SAMPLED = 32  # coordinates checked in a block that is wrong throughout


def probe_mode(ctx: Context, per_block: int, progress: Any) -> ModeResult:
    """Run ``mode="probe"`` with ``per_block`` rounds of directions, and judge every block."""
    run = probe_blocks(ctx, per_block, progress)
    a = np.array([p.analytic for e in run.found for p in e.probes])
    n = np.array([p.numerical for e in run.found for p in e.probes])
    # rms(g) and max|g| without g-sized temporaries (g**2, abs(g)): the probe's memory
    # is the parameters' own, however large they are
    signal = float(np.linalg.norm(ctx.g)) / math.sqrt(max(ctx.g.size, 1))
    blocks = tuple(block_result(ctx, entry, signal) for entry in run.found)
    thresholds = {e.block.name: detectable(e) for e in run.found}
    relative = _relative_thresholds(ctx, run, thresholds)
    blocks = tuple(
        replace(b, detectable=relative[b.name] if math.isfinite(relative[b.name]) else None)
        if b.checked
        else b
        for b in blocks
    )
    extra: dict[str, Any] = {
        "probes": run.probes,
        "rounds": run.rounds,
        "requested_rounds": per_block,
        "detectable_error": thresholds,
        "detectable_relative": relative,
        "localised": {
            e.block.name: [list(i) for i in b.wrong_elements]
            for e, b in zip(run.found, blocks, strict=True)
        },
        "unresolved": {e.block.name: [p.size for p in e.unresolved] for e in run.found},
        "wrong_throughout": {e.block.name: e.wide for e in run.found if e.wide},
    }
    notes = (SUSPECTS_NOTE,) if any(b.status == "fail" for b in blocks) else ()
    return ModeResult(
        blocks=blocks,
        difference=relative_difference(a, n),
        notes=notes,
        coverage=_coverage(ctx, run, per_block, max(relative.values(), default=float("inf"))),
        miss_probability=miss_bound(run.rounds),
        extra=extra,
    )


def _relative_thresholds(
    ctx: Context, run: ProbeRun, thresholds: dict[str, float]
) -> dict[str, float]:
    """Each block's detectable error relative to its largest gradient element; a block whose
    gradient is all zero is measured against the whole gradient's largest element instead."""
    whole = _largest(ctx.g)
    out = {}
    for e in run.found:
        largest = _largest(ctx.g[e.block.start : e.block.stop])
        out[e.block.name] = thresholds[e.block.name] / max(largest or whole, 1e-300)
    return out


def _largest(g: np.ndarray) -> float:
    """max |g_i| (0 for none), from two reductions: no temporary the size of ``g``."""
    return max(float(np.max(g, initial=0.0)), -float(np.min(g, initial=0.0)))


def _coverage(ctx: Context, run: ProbeRun, per_block: int, worst: float) -> str:
    """What the probes covered, in words: rounds, probes, the detectable size, the miss bound."""
    budget = ctx.budget.describe()
    if run.rounds == 0 and not run.probes:
        return (
            f"nothing: the budget ({budget}) ran out before the first round of probes; "
            "no block was checked"
        )
    cut = f"; the budget ({budget}) allowed {run.rounds} of {per_block}"
    text = (
        f"every coordinate, through {run.rounds} random ±1 directions per block "
        f"({run.probes} probes with bisection, seed {ctx.seed})"
        f"{cut if run.rounds < per_block else ''}; a bug with any element off by more than "
        f"{worst:.1e} of its block's largest gradient element (per block: "
        f"extra['detectable_relative']) is missed with probability ≤ {miss_bound(run.rounds):.1e}"
    )
    for entry in run.found:
        if entry.wide:
            text += (
                f"; {entry.block.name} is wrong throughout ({entry.wide}): not bisected, its "
                f"wrong elements are examples from {SAMPLED} sampled coordinates"
            )
        elif entry.unresolved:
            text += (
                f"; {entry.block.name}: {len(entry.unresolved)} failing part(s) not localised "
                "to single elements"
            )
    return text


def block_result(ctx: Context, entry: BlockProbes, signal: float) -> BlockResult:
    """The verdict for one probed block."""
    block = entry.block
    if entry.wide and _affordable_sample(ctx, block) > 0:
        return _sampled_block(ctx, entry, signal)
    if not entry.probes:
        return unchecked(block, "not checked: the budget ran out before this block's first probe")
    a = np.array([p.analytic for p in entry.probes])
    n = np.array([p.numerical for p in entry.probes])
    t = np.array([p.tolerance for p in entry.probes])
    elements = [_element(ctx, block, p) for p in entry.found]
    wrong = tuple(e.index for e in elements)
    status: Status
    size = max(rms(a), rms(n), 1e-3 * signal)
    if entry.failing:
        status, reason = "fail", _fail_reason(entry, wrong)
    elif entry.probes and size > 0 and rms(t) > INCONCLUSIVE_RATIO * size:
        status, reason = (
            "inconclusive",
            (
                f"the directional derivatives are too noisy to judge: their error bound is "
                f"{share(rms(t), size)} their size. Try float64 evaluation or mode='full'"
            ),
        )
    else:
        status, reason = "pass", _cleared_reason(entry)
    worst = sorted(elements, key=lambda e: -e.abs_error / max(e.tolerance, 1e-300))
    diagnosis = None
    if status == "fail":
        diagnosis = _diagnosis(block.name, wrong, entry, ctx.budget.limited)
    return BlockResult(
        name=block.name,
        shape=block.shape,
        status=status,
        difference=relative_difference(a, n),
        scale=scale_of(a, n),
        max_abs_error=max(
            [e.abs_error for e in elements], default=float(np.max(np.abs(a - n), initial=0.0))
        ),
        worst_index=worst[0].index if worst else (),
        checked=block.size if entry.probes else 0,
        wrong_elements=wrong,
        worst=tuple(worst[:WORST_SHOWN]),
        diagnosis=diagnosis,
        reason=reason,
    )


def _cleared_reason(entry: BlockProbes) -> str:
    """Why a passing block had failing probes: each crossed several kinks at once."""
    if not entry.cleared:
        return ""
    return (
        f"{len(entry.cleared)} probe(s) crossed several kinks at once (ReLU, max, abs); "
        "bisected, every part passed, some on one side of its kink"
    )


def _fail_reason(entry: BlockProbes, wrong: tuple[Index, ...]) -> str:
    parts = [f"{len(entry.failing)} of {len(entry.probes)} probes beyond the error model"]
    if wrong:
        parts.append(f"bisection found {len(wrong)} wrong element(s)")
    if entry.unresolved:
        spans = ", ".join(f"{p.size} coordinates" for p in entry.unresolved[:3])
        parts.append(f"not localised further: {spans}")
    return "; ".join(parts)


def _diagnosis(
    name: str, wrong: tuple[Index, ...], entry: BlockProbes, limited: bool = True
) -> Diagnosis:
    """What a failing probed block looks like; the advice names the budget only if one was set.

    The rest of the block "matches its probes" only where bisection localised every failing
    probe; where it stopped early, the sentence says the block is wrong beyond the elements named.
    """
    if wrong and entry.unresolved:
        spans = ", ".join(str(p.size) for p in entry.unresolved[:3])
        spans += ", ..." if len(entry.unresolved) > 3 else ""
        rerun = "rerun with a larger budget or mode='full'" if limited else "rerun with mode='full'"
        return Diagnosis(
            "elements",
            f"{name}: {len(wrong)} element(s) wrong ({listed(wrong)}), and more beyond them: "
            f"bisection stopped at {len(entry.unresolved)} failing part(s) ({spans} coordinates), "
            f"not localised further — {rerun} to see every wrong element",
        )
    if wrong:
        return Diagnosis(
            "elements",
            f"{name}: {len(wrong)} element(s) wrong ({listed(wrong)}), the rest match their "
            "probes — look for an indexing or slicing bug, or a special case at these positions",
        )
    if entry.wide:
        why = f"the block is wrong throughout ({entry.wide}), and its sampled elements"
        rerun = "mode='full' shows every element"
    elif limited:
        why = "bisection could not isolate single elements within the budget"
        rerun = "rerun with a larger budget or mode='full'"
    else:
        why = "bisection could not isolate single elements"
        rerun = "rerun with mode='full' to judge every element"
    if entry.wide:
        why += " did not show it"
    return Diagnosis(
        "general", f"{name}: the block's directional derivatives disagree, but {why} — {rerun}"
    )


def _element(ctx: Context, block: Block, probe: Probe) -> ElementResult:
    i = probe.lo
    sign = 1.0 if probe.signs is None else probe.signs.first()
    u = sign * max(abs(float(ctx.theta[i])), 1.0)
    g, n = float(ctx.g[i]), probe.numerical / u
    error = abs(g - n)
    denom = max(abs(g), abs(n))
    return ElementResult(
        block=block.name,
        index=block.unravel(i - block.start),
        analytic=g,
        numerical=n,
        abs_error=error,
        rel_error=error / denom if denom > 0 else 0.0,
        tolerance=probe.tolerance / abs(u),
    )


def _affordable_sample(ctx: Context, block: Block) -> int:
    """How many of a wrong-throughout block's coordinates to judge: SAMPLED, or what the
    budget has left room for (at a coordinate's most, Richardson's 4 evaluations)."""
    count = min(SAMPLED, block.size)
    cost = len(ctx.scheme.multiples)
    while count > 0 and not ctx.budget.left(ctx.evaluator.evaluations, cost * count):
        count //= 2
    return count


def _sampled_block(ctx: Context, entry: BlockProbes, signal: float) -> BlockResult:
    """A block wrong nearly everywhere: judge a seeded sample of its coordinates instead."""
    block = entry.block
    rng = np.random.default_rng(ctx.seed + 1)
    count = _affordable_sample(ctx, block)
    chosen = np.sort(block.start + rng.choice(block.size, count, replace=False))
    judged = judge_coordinates(ctx, chosen)
    ((_, sl, positions),) = [b for b in blocks_of(ctx.layout, chosen) if b[0] is block]
    result = judge_block(block, positions, ctx.g[chosen], ctx.theta[chosen], judged, signal, None)
    if result.status != "fail":  # the sample missed what the probes saw
        result = replace(
            result, status="fail", diagnosis=_diagnosis(block.name, (), entry, ctx.budget.limited)
        )
    elif result.diagnosis is not None and result.diagnosis.kind == "elements":
        result = replace(result, diagnosis=_sampled_elements(block, entry, result))
    return replace(
        result,
        checked=block.size,
        reason=(
            f"wrong throughout ({entry.wide}); not bisected: {result.checked} sampled "
            f"coordinates judged, {len(result.wrong_elements)} of them wrong"
        ),
    )


def _sampled_elements(block: Block, entry: BlockProbes, sampled: BlockResult) -> Diagnosis:
    """A block wrong throughout whose sample shows a few wrong elements: examples, not all."""
    wrong, checked = sampled.wrong_elements, sampled.checked
    example = "an example" if len(wrong) == 1 else "examples"
    return Diagnosis(
        "elements",
        f"{block.name}: wrong throughout ({entry.wide}), so not bisected; {len(wrong)} of "
        f"{checked} sampled elements wrong ({listed(wrong)}), {example} only: the block is wrong "
        f"elsewhere too, and its other {block.size - checked} elements were not checked one by one "
        "— look for a bug that touches a whole row, column or slice; mode='full' shows every "
        "wrong element",
    )


def miss_bound(rounds: int) -> float:
    """P(a bug with an element error above a probe's tolerance goes unseen) <= 2^-rounds."""
    return float(0.5**rounds) if rounds else 1.0


def detectable(entry: BlockProbes) -> float:
    """The largest probe tolerance of the block: element errors above it are caught."""
    return max((p.tolerance for p in entry.probes), default=float("inf"))
