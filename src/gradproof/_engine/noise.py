"""Measure the noise in the loss's values (roundoff, cancellation) from its own differences.

An a-priori roundoff bound (a few units of ``eps * |J|``) is too optimistic for
real losses: ``log(1 - sigmoid(z))`` near z >> 0 loses digits to cancellation,
and sums over many examples accumulate rounding. This module measures the
noise instead, with a difference table along random directions (after Moré
and Wild's ECnoise): high-order differences of a smooth function at a tiny
spacing vanish, so what remains is noise, with a known amplification.

Cost: ``2 * POINTS`` loss evaluations for the whole check.
"""

from __future__ import annotations

from math import comb
from statistics import median

import numpy as np

from gradproof._engine.evaluate import Evaluator

POINTS = 8
ORDERS = (3, 4, 5, 6)


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
