"""The loss at the base point: its value, its determinism, its precision and its noise.

Before any step away from the parameters, :func:`measure_baseline` evaluates the
loss a few times at the base point (a loss that changes between identical calls
raises :class:`~gradproof.NondeterministicLossError`: no gradient is blamed for
it), measures the precision the loss works in and the noise in its values
(:mod:`gradproof._engine.precision`); :func:`confirm_deterministic` looks once
more after the check.

An a-priori roundoff bound (a few units of ``eps * |J|``) is too optimistic for
real losses: ``log(1 - sigmoid(z))`` near z >> 0 loses digits to cancellation,
and sums over many examples accumulate rounding. This module measures the
noise instead, with a difference table along random directions (after Moré
and Wild's ECnoise): high-order differences of a smooth function at a tiny
spacing vanish, so what remains is noise, with a known amplification.

Cost: ``REPEATS`` evaluations, then ``2 * POINTS`` per precision tried (one,
for a loss that resolves float64 steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from gradproof._engine.evaluate import Evaluator
from gradproof._engine.precision import (
    DIRECTIONS,
    FLOAT64,
    LEVELS,
    Level,
    Measured,
    base_and_table,
    block_noise,
    finest_explaining,
    level_of,
    measure_precision,
    noise_at_step,
)
from gradproof._engine.tree import Layout, float_eps
from gradproof._errors import NondeterministicLossError

REPEATS = 3  # evaluations of the loss at the base point before the check
MORE = 4  # more of them, where the repeats differed, to tell why (a drift, a draw)
LARGE_NOISE = 1e4  # noise beyond this many units of roundoff of |J| is measured block by block
MAX_BLOCKS = 256  # ... where there are at most this many blocks (16 evaluations each)
EPS64 = float(np.finfo(np.float64).eps)  # looked up once: np.finfo costs microseconds a call
TINY64 = float(np.finfo(np.float64).tiny)
DISAGREE = 16.0  # noise in two directions this far apart: one of them missed something
FLOAT64_DTYPE = np.dtype(np.float64)
DTYPES_NOTE = "; params of dtype"  # where the precision line names the params' dtypes


@dataclass(frozen=True)
class Baseline:
    """The loss at the base point, as the check's error model needs it.

    Attributes:
        j0: the loss's value there (its real part).
        spread: how much repeated calls differed (0 for a deterministic loss).
        delta: a bound on the error in one loss value (see :func:`noise_level`).
        precision: the precision the check ran in, in words, for the report.
        level: the precision the loss works in, measured.
    """

    j0: float
    spread: float
    delta: float
    precision: str
    level: Level
    # Each block's own bound where the loss's noise was measured block by block (it
    # looked large through all of them together); None: ``delta`` holds for every block.
    block_delta: tuple[float, ...] | None = None


def measure_baseline(
    evaluator: Evaluator,
    layout: Layout,
    noise: float | None,
    before: float | None = None,
    flat: bool = False,
) -> Baseline:
    """Evaluate the base point ``REPEATS`` times, then measure the noise (``2 * POINTS``).

    ``before`` is the loss's value taken before the gradient function ran (None
    where the gradient was given as values): it counts as the first repeat. For a
    batched loss the last repeats go into the noise table's call (:func:`_folds`).
    ``flat``: the gradient under test is zero everywhere, so a loss that does not
    move at tiny steps agrees with it, and says nothing of a coarser precision.

    Raises:
        NondeterministicLossError: the repeated values differ by more than
            roundoff (or than ``noise``, where given), or calling the gradient
            function changed the loss.
    """
    values = [] if before is None else [before]
    values.append(evaluator.value())
    start = _output_level(evaluator)
    first = None
    if _folds(evaluator, REPEATS - len(values)):
        repeats, first = base_and_table(evaluator, start)
        values += repeats
    values += [evaluator.value() for _ in range(REPEATS - len(values))]
    if before is not None:
        _raise_if_grad_changed_loss(values, noise, evaluator.value)
    spread = float(max(values) - min(values)) if not isinstance(values[0], complex) else 0.0
    j0 = float(np.real(values[0]))
    _raise_if_noisy(spread, j0, noise, values, evaluator.value)
    measured = measure_precision(evaluator, j0, start, flat=flat, first=first)
    measured = _at_step(evaluator, layout, j0, measured, flat)
    delta = noise_level(j0, spread, measured.noise, measured.level.eps, noise)
    per_block = _per_block(evaluator, layout, j0, measured, spread, noise)
    text = _precision_text(layout, measured)
    return Baseline(j0, spread, delta, text, measured.level, per_block)


def _folds(evaluator: Evaluator, repeats: int) -> bool:
    """Whether the ``repeats`` evaluations of the base point still owed go into the noise
    table's call: a batched loss evaluated here, on the host, owing one per table direction.

    The first evaluation stays a call of its own (it finds the loss's return type, and an
    error there names the base point), so the repeats still compare different calls.
    """
    return (
        evaluator.batched
        and evaluator.theta.size > 0
        and repeats == DIRECTIONS
        and evaluator.resident is None
    )


def _at_step(
    evaluator: Evaluator, layout: Layout, j0: float, measured: Measured, flat: bool
) -> Measured:
    """The noise at the check's own step scale too, where tiny steps may have missed it
    (cost: one more table, ``2 * POINTS`` evaluations).

    - Parameters below float64, a loss measured as float64: a float32 part (a float32
      model plus a float64 L2 term) stays still at tiny steps; what is found may set a
      coarser precision.
    - Float64 parameters whose table rows disagree (one direction quiet, the other
      noisy, by more than ``DISAGREE``, and beyond J's own rounding): rounding that a
      cancellation amplifies (``log(1 - a)``, a sigmoid's ``a`` near 1) shows along some
      directions only. The quietest row would hide it, the noisiest may hold a kink: the
      step-scale table decides, within the two, and the steps stay float64's.
    """
    if flat or measured.level is not FLOAT64 or evaluator.theta.size == 0:
        return measured
    low = any((float_eps(b.dtype) or 0.0) > FLOAT64.eps for b in layout.blocks)
    quiet = max(measured.noise, FLOAT64.eps * abs(j0), TINY64)  # noise within roundoff is none
    if not low and measured.loudest <= DISAGREE * quiet:
        return measured
    step = FLOAT64.eps ** (1 / 3)  # the relative step central and Richardson take in float64
    found, size = noise_at_step(evaluator, j0, step)
    if not low:
        noise = max(measured.noise, min(measured.loudest, found))
        return Measured(measured.level, noise, measured.coarser)
    level = finest_explaining(found, size, list(LEVELS))
    return Measured(level, max(measured.noise, found), level is not FLOAT64)


def _per_block(
    evaluator: Evaluator,
    layout: Layout,
    j0: float,
    measured: Measured,
    spread: float,
    noise: float | None,
) -> tuple[float, ...] | None:
    """Each block's own noise bound, measured where the noise through all blocks looks large.

    "Large": beyond ``LARGE_NOISE`` units of roundoff of |J|. The user's stated
    ``noise`` and the repeated calls' spread still apply to every block.
    """
    eps = measured.level.eps
    if noise is not None or len(layout.blocks) < 2 or len(layout.blocks) > MAX_BLOCKS:
        return None
    if measured.noise <= LARGE_NOISE * eps * max(abs(j0), TINY64):
        return None
    spans = [(b.start, b.stop) for b in layout.blocks]
    found = block_noise(evaluator, j0, measured.level, spans)
    return tuple(noise_level(j0, spread, n, eps, None) for n in found)


def confirm_deterministic(evaluator: Evaluator, base: Baseline, noise: float | None) -> None:
    """Evaluate the base point once more after the check: noise can hide for a few calls."""
    again = float(np.real(evaluator.value()))
    spread = max(base.spread, abs(again - base.j0))
    _raise_if_noisy(spread, base.j0, noise, [base.j0, again], evaluator.value)


def noise_level(
    j0: float, spread: float, measured: float, machine_eps: float, noise: float | None
) -> float:
    """A bound on the error in one loss value.

    The largest of: roundoff from |J| (one unit of ``eps * |J|``), twice the
    measured noise's standard deviation (:func:`measure_noise`), the spread
    of repeated calls, and the user's stated noise. The schemes' error bounds
    and the judge's safety factor multiply this further.
    """
    roundoff = machine_eps * max(abs(j0), TINY64)
    return max(roundoff, 2 * measured, spread, noise or 0.0)


def _raise_if_grad_changed_loss(
    values: list[Any], noise: float | None, again: Callable[[], Any]
) -> None:
    """The value before ``grad(params)`` differs while those after it agree, and ``MORE``
    evaluations still agree with them (a noisy loss can agree a few times): ``grad`` did it."""
    before, *after = (float(np.real(v)) for v in values)
    allowed = _allowed(after[0], noise)
    if abs(before - after[0]) <= allowed or max(after) - min(after) > allowed:
        return
    after += [float(np.real(again())) for _ in range(MORE)]
    if max(after) - min(after) <= allowed:
        raise NondeterministicLossError(
            f"Calling the gradient function changed the loss: it was {before:.17g} before "
            f"grad(params) ran and {after[0]:.17g} after, at the same parameters, so the "
            "gradient would be compared with a different function. Likely cause: the backward "
            "writes into data the loss reads (an in-place += on a cached array, or on an "
            "argument such as dnext_c or dout). Fix: copy those arrays in the backward "
            "(dnext_c = dnext_c.copy()) or pass the gradient as values, grad=grad_fn(params)."
        )


def raise_unrepeatable(ctx: Any, index: int, first: float, again: float) -> None:
    """A point judged at a kink gave a different value when evaluated again: no kink."""
    block = ctx.layout.block_of(index)
    where = f"{block.name}{list(block.unravel(index - block.start))}"
    raise NondeterministicLossError(
        f"The loss returned different values at the same shifted parameters ({where}: "
        f"{first:.17g}, then {again:.17g}), so what looked like a kink there is not "
        "reproducible and no gradient is blamed. Likely causes: a random draw, a counter or a "
        "cache inside the loss, or non-deterministic kernels. Fix: make the loss "
        "deterministic, or pass noise=<the spread you accept>."
    )


def _allowed(j0: float, noise: float | None) -> float:
    """How far repeated values may differ: ``noise``, or a few units of roundoff of |J|."""
    return noise if noise is not None else 32 * EPS64 * max(abs(j0), 1e-300)


def _raise_if_noisy(
    spread: float, j0: float, noise: float | None, values: list[Any], again: Callable[[], Any]
) -> None:
    """Raise where the repeated values differ beyond roundoff (or ``noise``), naming the
    likely causes, told apart on ``MORE`` evaluations made then."""
    if spread > _allowed(j0, noise):
        values = [*values, *(again() for _ in range(MORE))]
        real = [float(np.real(v)) for v in values]
        spread = max(spread, max(real) - min(real))
        shown = ", ".join(f"{v:.17g}" for v in values)
        raise NondeterministicLossError(
            f"The loss returned different values for the same parameters ({shown}; spread "
            f"{spread:.3g}{'' if noise is None else f' > noise={noise:g}'}), so no finite "
            f"difference of it can be trusted and no gradient is blamed. {_likely(values, j0)}"
        )


# Repeated values within this many units of roundoff of |J| (in the precision the values
# are numbers of) differ by the order of a sum, not by a random draw.
ORDER_ONLY = 1000


def _likely(values: list[Any], j0: float) -> str:
    """The likely causes and fixes, read from how the repeated values differ: by a few
    units of roundoff (the order of a sum), steadily one way (state the loss updates), or
    scattered (a random draw)."""
    real = [float(np.real(v)) for v in values]
    spread = max(real) - min(real)
    steps = [b - a for a, b in pairwise(real)]
    single = all(float(np.float32(v)) == v for v in real)  # float32 values, returned as floats
    eps = float(np.finfo(np.float32 if single else np.float64).eps)
    if spread <= ORDER_ONLY * eps * max(abs(j0), TINY64):
        return (
            "The values differ by a few units of roundoff only: the order of a sum changes "
            "between calls. Likely causes: non-deterministic GPU kernels (atomic adds, "
            "index_add, scatter), a multithreaded reduction, summing over a set or dict whose "
            "order changes. Fixes: torch.use_deterministic_algorithms(True) (with "
            "CUBLAS_WORKSPACE_CONFIG=:4096:8), a fixed summation order, or pass noise=<the "
            "spread you accept>."
        )
    if len(steps) >= 2 and (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
        return (
            "The value moves the same way at every call: the loss changes state as it runs. "
            "Likely causes: a counter, a cache or a running average the loss updates, an "
            "in-place update of a parameter or an input (x += ..., W -= lr * dW), BatchNorm "
            "running statistics read back, a schedule that advances per call. Fixes: compute "
            "the loss without side effects (copy what it updates), or call model.eval()."
        )
    return (
        "Likely causes: dropout left on, random sampling or data shuffling inside the loss, "
        "BatchNorm in training mode, non-deterministic GPU kernels. Fixes: set keep_prob=1 "
        "(or call model.eval()), fix the random seed inside the loss, or pass noise=<the "
        "spread you accept> to check a noisy loss."
    )


def _output_level(evaluator: Evaluator) -> Level:
    """The precision the loss's return type claims (a complex64 value: float32's)."""
    out = evaluator.output_dtype or np.dtype(np.float64)
    if out.kind == "c":
        out = np.dtype(np.float64) if out == np.complex128 else np.dtype(np.float32)
    return level_of(float(np.finfo(out).eps)) if out.kind == "f" else FLOAT64


def _precision_text(layout: Layout, measured: Measured) -> str:
    """The report's precision line: what the loss works in, and how that was found."""
    name = measured.level.name
    if measured.coarser:
        text = (
            f"{name} (measured: the loss resolves steps no finer than about {name}'s "
            "precision; steps and tolerances are set for it)"
        )
    elif measured.level is not FLOAT64:
        text = f"{name} (the loss computes in {name}; steps and tolerances are set for it)"
    else:
        text = "float64"
    # Each distinct dtype once, float64 left out before any is named (str of a dtype is slow)
    return text + dtypes_note({b.dtype for b in layout.blocks if b.dtype != FLOAT64_DTYPE})


def dtypes_note(dtypes: Iterable[np.dtype[Any]]) -> str:
    """What the precision line adds about params not in float64 ("" where all are).

    >>> dtypes_note([np.dtype(np.float32), np.dtype(np.float64)])
    '; params of dtype float32 were checked in float64'
    """
    dtypes = list(dtypes)
    text = ""
    real = sorted({str(d) for d in dtypes if d.kind != "c"} - {"float64"})
    if real:
        text += f"{DTYPES_NOTE} {', '.join(real)} were checked in float64"
    complex_kinds = sorted({str(d) for d in dtypes if d.kind == "c"})
    if complex_kinds:
        text += (
            f"{DTYPES_NOTE} {', '.join(complex_kinds)} were checked as their real and "
            "imaginary parts, in float64"
        )
    return text


def measure_noise(evaluator: Evaluator, j0: float, machine_eps: float, seed: int = 0) -> float:
    """Standard deviation of the noise in one loss value near the base point.

    Measured at the precision ``machine_eps`` and, where the loss does not resolve
    steps that fine, at the first coarser precision it does
    (:func:`gradproof._engine.precision.measure_precision`).
    """
    return measure_precision(evaluator, j0, level_of(machine_eps), seed).noise
