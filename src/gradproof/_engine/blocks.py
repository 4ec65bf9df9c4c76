"""Block and overall verdicts, from the element verdicts of :mod:`gradproof._engine.judge`.

A block fails where any element is beyond its tolerance (or, with ``tol``, where
its difference exceeds it); it is inconclusive where the error bound is large
next to the gradient's size; the check fails where any block fails. Suspects
are the failing blocks, latest first.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gradproof._engine.diagnose import diagnose, scale_of
from gradproof._engine.judge import Judged, relative_difference, rms, squares
from gradproof._engine.tree import Block, Layout
from gradproof._report import BlockResult, ElementResult, Index, Status

INCONCLUSIVE_RATIO = 0.1
WORST_SHOWN = 5
SAMPLE_SHOWN = 200  # (analytic, numerical) pairs kept per block for the scatter plot
SLOPE_FLOOR = 1e-6  # of the derivatives' reach (Judged.slope): the least signal judged against
SUSPECTS_NOTE = (
    "Suspects are ordered latest block first: backprop runs from the output back "
    "towards the input, so the latest failing block is where the first error arose."
)


def judge_block(
    block: Block,
    positions: np.ndarray,
    g: np.ndarray,
    theta: np.ndarray,
    judged: Judged,
    global_signal: float,
    tol: float | None,
) -> BlockResult:
    """The verdict for one block from its checked positions (offsets into the block)."""
    n, t = judged.numerical, judged.tolerance

    def index(k: int) -> Index:  # only the elements the report names are unravelled
        return block.unravel(int(positions[k]))

    # Array methods rather than numpy's functions throughout: a block holds a few
    # elements, where the functions' dispatch costs more than the arithmetic.
    wrong = [index(k) for k in judged.wrong.ravel().nonzero()[0].tolist()]
    unclear = 0 if judged.unclear is None else int(np.count_nonzero(judged.unclear))
    kinks = tuple(index(k) for k in judged.kink.ravel().nonzero()[0].tolist())
    err = np.abs(g - n)
    slope = judged.slope if judged.slope is not None else np.zeros(0)
    squared = squares(g, n, judged.numeric, slope)  # every norm and rms below, at once
    difference = relative_difference(g, n, squared)
    floor = max(
        1e-3 * global_signal,
        SLOPE_FLOOR * rms(slope, squared[4]) if judged.slope is not None else 0.0,
    )
    signal = max(rms(n, squared[1]), rms(g, squared[0]), floor)
    status, reason = _block_status(wrong, difference, tol, signal, rms(judged.numeric, squared[3]))
    if status == "pass" and unclear:
        status, reason = (
            "inconclusive",
            (
                f"{unclear} element(s) sit near a kink that the loss's precision cannot resolve: "
                "both one-sided differences are too uncertain to clear or blame them (or, at "
                "smaller steps, their estimates never settled before the noise grew too large). "
                "Try float64 evaluation, parameters away from the kink, or eps= a step on the "
                "loss's own scale"
            ),
        )
    full = positions.size == block.size
    diagnosis = None
    if status == "fail":
        shape = block.shape if full and block.shape else (positions.size,)
        diagnosis = diagnose(
            block.name,
            g.reshape(shape),
            n.reshape(shape),
            theta.reshape(shape),
            wrong,
            tolerance=t.reshape(shape),
            is_complex=block.is_complex and full,
            size=block.size,
        )
    worst_k = int(err.argmax()) if err.size else 0
    return BlockResult(
        name=block.name,
        shape=block.shape,
        status=status,
        difference=difference,
        scale=scale_of(g, n),
        max_abs_error=float(err[worst_k]) if err.size else 0.0,
        worst_index=index(worst_k) if positions.size else (),
        checked=int(positions.size),
        wrong_elements=tuple(wrong),
        kinks=kinks,
        worst=_worst(block, positions, g, n, t, judged.kink, err),
        reason=reason,
        diagnosis=diagnosis,
        sample=_sample(g, n),
        detectable=detectable(t, g),
    )


def _sample(g: np.ndarray, n: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Up to SAMPLE_SHOWN (analytic, numerical) pairs, evenly spaced over the block, for plots."""
    if g.size <= SAMPLE_SHOWN:
        return tuple(zip(g.ravel().tolist(), n.ravel().tolist(), strict=True))
    # dict.fromkeys, not np.unique: numpy's set routines import numpy.ma on first use (~20 ms).
    spaced = np.linspace(0, g.size - 1, SAMPLE_SHOWN).astype(np.int64).tolist()
    return tuple((float(g[k]), float(n[k])) for k in dict.fromkeys(spaced))


def _block_status(
    wrong: list[Index],
    difference: float,
    tol: float | None,
    signal: float,
    noise: float,
) -> tuple[Status, str]:
    """Fail, pass, or inconclusive where the error bound (rms ``noise``) is large next to
    the ``signal``.

    The signal is the larger rms of the gradient and its estimate, but at least a
    floor: a thousandth of the whole gradient's size, and a millionth of the
    size the loss's derivatives reach nearby (``Judged.slope``), so that a block
    whose derivatives are ~0 (at a minimum) is judged against the loss's scale,
    not against its noise.
    """
    if wrong:
        return "fail", f"{len(wrong)} element(s) beyond the error model"
    if tol is not None and difference > tol:
        return "fail", f"difference {difference:.3g} > tol {tol:.3g}"
    if signal > 0 and noise > INCONCLUSIVE_RATIO * signal:
        return "inconclusive", (
            f"the numerical derivative is too noisy to judge: its error bound is "
            f"{share(noise, signal)} the gradient's size. Try float64 evaluation, a "
            f"larger eps, or a loss with less noise"
        )
    return "pass", ""


def detectable(tolerance: np.ndarray, g: np.ndarray) -> float | None:
    """The largest tolerance as a share of the largest gradient element: an element
    off by more than this fails (None where the gradient is all zero).

    >>> detectable(np.array([1e-9, 4e-9]), np.array([2.0, -0.5]))
    2e-09
    """
    largest = float(np.abs(g).max()) if g.size else 0.0
    if largest == 0 or not tolerance.size:
        return None
    return float(tolerance.max()) / largest


def share(part: float, whole: float) -> str:
    """``"21% of"``, or ``"about 3e+05 times"`` where a percentage would run to many digits.

    >>> share(0.21, 1.0), share(3e5, 1.0)
    ('21% of', 'about 3e+05 times')
    """
    ratio = part / whole
    return f"{ratio:.0%} of" if ratio < 100 else f"about {ratio:.0e} times"


def _worst(
    block: Block,
    positions: np.ndarray,
    g: np.ndarray,
    n: np.ndarray,
    t: np.ndarray,
    kink: np.ndarray,
    err: np.ndarray,
) -> tuple[ElementResult, ...]:
    """The WORST_SHOWN elements furthest beyond their tolerance (``err``: |g - n|), at
    ``positions`` (offsets into ``block``)."""
    order = (-(err / t)).argsort(kind="stable")[:WORST_SHOWN]
    out = []
    # As Python floats: the same values as numpy's scalars, at a fraction of their cost.
    picked = zip(
        positions[order].tolist(),
        g[order].tolist(),
        n[order].tolist(),
        t[order].tolist(),
        kink[order].tolist(),
        strict=True,
    )
    for position, gk, nk, tk, at_kink in picked:
        abs_err = abs(gk - nk)
        denom = max(abs(gk), abs(nk))
        out.append(
            ElementResult(
                block=block.name,
                index=block.unravel(position),
                analytic=gk,
                numerical=nk,
                abs_error=abs_err,
                rel_error=abs_err / denom if denom > 0 else 0.0,
                tolerance=tk,
                note="near a kink" if at_kink else "",
            )
        )
    return tuple(out)


def apply_tol(blocks: list[BlockResult], difference: float, tol: float | None) -> list[BlockResult]:
    """The notebook's rule on top of the error model: the overall difference against ``tol``.

    As in the Gradient Checking notebook, ``tol`` judges one number, the difference
    over every checked coordinate. Where that exceeds ``tol`` and the error model
    failed no block, the blocks whose own difference exceeds ``tol`` fail (at
    least one does when the overall one does); where the error model already
    names failing blocks, they explain the overall difference, and no other
    block is blamed for it.
    """
    if tol is None or difference <= tol or any(b.status == "fail" for b in blocks):
        return blocks
    return [
        replace(
            b,
            status="fail",
            reason=f"difference {b.difference:.3g} > tol {tol:.3g} (overall {difference:.3g})",
        )
        if b.status != "fail" and b.difference > tol
        else b
        for b in blocks
    ]


def unchecked(block: Block, reason: str) -> BlockResult:
    """An inconclusive result for a block no evaluation reached; ``reason`` says why."""
    return BlockResult(
        name=block.name,
        shape=block.shape,
        status="inconclusive",
        difference=0.0,
        scale=None,
        max_abs_error=0.0,
        worst_index=(),
        checked=0,
        reason=reason,
    )


def overall_status(blocks: list[BlockResult], difference: float, tol: float | None) -> Status:
    """Fail if any block fails (or the overall difference exceeds ``tol``)."""
    if any(b.status == "fail" for b in blocks) or (tol is not None and difference > tol):
        return "fail"
    if any(b.status == "inconclusive" for b in blocks):
        return "inconclusive"
    return "pass"


def suspects(blocks: list[BlockResult]) -> tuple[str, ...]:
    """Failing blocks, latest in structure order first.

    Backprop runs from the output towards the input, so a wrong block late in
    a forward-ordered structure is the earliest error in backprop's own order;
    blocks before it may only inherit its error.
    """
    return tuple(b.name for b in reversed(blocks) if b.status == "fail")


def global_signal(g: np.ndarray, n: np.ndarray, squared: tuple[float, ...] = ()) -> float:
    """The size of the whole checked gradient, below which a block's noise is judged.

    ``squared``: :func:`~gradproof._engine.judge.squares` of ``g`` and ``n``, where known.
    """
    sg, sn = squared[:2] if squared else (float("nan"),) * 2
    return max(rms(g, sg), rms(n, sn))


def blocks_of(layout: Layout, indices: np.ndarray) -> list[tuple[Block, slice, np.ndarray]]:
    """For each block: the block, the slice of ``indices`` (sorted) that falls in it, and
    those coordinates' offsets in the block. A slice, not an index array: what it takes
    from the judged arrays is a view, not a copy."""
    edges = [block.start for block in layout.blocks] + [block.stop for block in layout.blocks]
    found = np.searchsorted(indices, edges).tolist()  # one search for every block's bounds
    out = []
    count = len(layout.blocks)
    for block, lo, hi in zip(layout.blocks, found[:count], found[count:], strict=True):
        out.append((block, slice(lo, hi), indices[lo:hi] - block.start))
    return out
