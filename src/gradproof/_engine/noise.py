"""The loss at the base point: its value, its determinism, its precision and its noise.

Before any step away from the parameters, :func:`measure_baseline` evaluates the
loss a few times at the base point (a loss that changes between identical calls
raises :class:`~gradproof.NondeterministicLossError`: no gradient is blamed for
it), reads the precision the loss computes in, and measures the noise in its
values; :func:`confirm_deterministic` looks once more after the check.

The noise is measured (roundoff, cancellation) from the loss's own differences.

An a-priori roundoff bound (a few units of ``eps * |J|``) is too optimistic for
real losses: ``log(1 - sigmoid(z))`` near z >> 0 loses digits to cancellation,
and sums over many examples accumulate rounding. This module measures the
noise instead, with a difference table along random directions (after Moré
and Wild's ECnoise): high-order differences of a smooth function at a tiny
spacing vanish, so what remains is noise, with a known amplification.

Cost: ``2 * POINTS`` loss evaluations for the whole check.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from statistics import median
from typing import Any

import numpy as np

from gradproof._engine.evaluate import Evaluator
from gradproof._engine.tree import Layout
from gradproof._errors import NondeterministicLossError

POINTS = 8
ORDERS = (3, 4, 5, 6)
REPEATS = 3  # evaluations of the loss at the base point before the check


@dataclass(frozen=True)
class Baseline:
    """The loss at the base point, as the check's error model needs it.

    Attributes:
        j0: the loss's value there (its real part).
        spread: how much repeated calls differed (0 for a deterministic loss).
        delta: a bound on the error in one loss value (see :func:`noise_level`).
        precision: the precision the check ran in, in words, for the report.
        machine_eps: the epsilon of the dtype the loss computes in.
    """

    j0: float
    spread: float
    delta: float
    precision: str
    machine_eps: float


def measure_baseline(evaluator: Evaluator, layout: Layout, noise: float | None) -> Baseline:
    """Evaluate the base point ``REPEATS`` times, then measure the noise (``2 * POINTS``).

    Raises:
        NondeterministicLossError: the repeated values differ by more than
            roundoff (or than ``noise``, where given).
    """
    values = [evaluator.value() for _ in range(REPEATS)]
    spread = float(max(values) - min(values)) if not isinstance(values[0], complex) else 0.0
    j0 = float(np.real(values[0]))
    _raise_if_noisy(spread, j0, noise, values)
    precision, machine_eps = _precision(layout, evaluator)
    measured = measure_noise(evaluator, j0, machine_eps)
    delta = noise_level(j0, spread, measured, machine_eps, noise)
    return Baseline(j0, spread, delta, precision, machine_eps)


def confirm_deterministic(evaluator: Evaluator, base: Baseline, noise: float | None) -> None:
    """Evaluate the base point once more after the check: noise can hide for a few calls."""
    again = float(np.real(evaluator.value()))
    _raise_if_noisy(max(base.spread, abs(again - base.j0)), base.j0, noise, [base.j0, again])


def noise_level(
    j0: float, spread: float, measured: float, machine_eps: float, noise: float | None
) -> float:
    """A bound on the error in one loss value.

    The largest of: roundoff from |J| (one unit of ``eps * |J|``), twice the
    measured noise's standard deviation (:func:`measure_noise`), the spread
    of repeated calls, and the user's stated noise. The schemes' error bounds
    and the judge's safety factor multiply this further.
    """
    roundoff = machine_eps * max(abs(j0), np.finfo(np.float64).tiny)
    return max(roundoff, 2 * measured, spread, noise or 0.0)


def _raise_if_noisy(spread: float, j0: float, noise: float | None, values: list[Any]) -> None:
    allowed = noise if noise is not None else 32 * np.finfo(np.float64).eps * max(abs(j0), 1e-300)
    if spread > allowed:
        shown = ", ".join(f"{v:.17g}" for v in values)
        raise NondeterministicLossError(
            f"The loss returned different values for the same parameters ({shown}; spread "
            f"{spread:.3g}{'' if noise is None else f' > noise={noise:g}'}), so no finite "
            "difference of it can be trusted and no gradient is blamed. Likely causes: dropout "
            "left on, random sampling or data shuffling inside the loss, BatchNorm in training "
            "mode, non-deterministic GPU kernels. Fixes: set keep_prob=1 (or call "
            "model.eval()), fix the random seed inside the loss, or pass noise=<the spread you "
            "accept> to check a noisy loss."
        )


def _precision(layout: Layout, evaluator: Evaluator) -> tuple[str, float]:
    """The report's precision line, and the epsilon of the dtype the loss computes in."""
    kinds = sorted({str(b.dtype) for b in layout.blocks if b.dtype != np.float64})
    out = evaluator.output_dtype or np.dtype(np.float64)
    if out.kind == "c":
        out = np.dtype(np.float64) if out == np.complex128 else np.dtype(np.float32)
    machine_eps = float(np.finfo(out).eps) if out.kind == "f" else float(np.finfo(np.float64).eps)
    if out.kind == "f" and out.itemsize < 8:
        text = f"{out} (the loss computes in {out}; steps and tolerances are set for it)"
    else:
        text = "float64"
    if kinds:
        text += f"; params of dtype {', '.join(kinds)} were checked in float64"
    return text, machine_eps


def measure_noise(evaluator: Evaluator, j0: float, machine_eps: float, seed: int = 0) -> float:
    """Standard deviation of the noise in one loss value near the base point.

    Takes the smaller of two random directions, so that one direction crossing
    a kink (which inflates its differences) does not inflate the estimate.
    """
    theta = evaluator.theta
    if theta.size == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    # A tiny spacing (a thousand units in the last place) keeps the smooth part of
    # the loss out of the differences and makes crossing a kink unlikely, while the
    # points are far enough apart for their rounding errors to be independent.
    spacing = 1e3 * machine_eps
    steps = spacing * np.arange(1, POINTS + 1)
    magnitude = np.maximum(np.abs(theta), 1.0)
    directions = np.stack([rng.choice([-1.0, 1.0], size=theta.size) * magnitude for _ in range(2)])
    # One call: a batched loss sees one batch.
    table = evaluator.directions(
        directions,
        steps,
        where="the noise measurement (tiny steps along random directions)",
        eps_sets_steps=False,
    )
    return min(_noise_from_table(np.concatenate([[j0], values])) for values in table)


def _noise_from_table(values: np.ndarray) -> float:
    """Noise level from the k-th differences, k in ORDERS (median of the estimates)."""
    sigmas = []
    for k in ORDERS:
        diffs = np.diff(values, n=k)
        gamma = comb(2 * k, k)  # variance amplification of k-th differences of white noise
        sigmas.append(float(np.sqrt(np.mean(diffs**2) / gamma)))
    # statistics.median, not np.median: numpy's imports numpy.ma on first use (~20 ms).
    return median(sigmas)
