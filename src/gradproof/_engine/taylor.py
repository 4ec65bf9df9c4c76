"""Verdicts that need no tolerance: the Taylor test and the step-size sweep."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradproof._engine.evaluate import Evaluator
from gradproof._engine.gradients import resolve_gradient
from gradproof._engine.noise import measure_noise
from gradproof._engine.tree import flatten
from gradproof._engine.validate import validate_callable, validate_positive, validate_seed
from gradproof._errors import invalid
from gradproof._report import Status, SweepResult, TaylorResult

LADDER = 13  # steps, each a factor sqrt(10) below the previous


def taylor_test(
    loss: Callable[[Any], Any],
    params: Any,
    grad: Any,
    *,
    seed: int = 0,
    largest_step: float | None = None,
) -> TaylorResult:
    """Fit the order at which ``J(θ+hv) − J(θ) − h g·v`` vanishes along a random ``v``.

    Cost: ``LADDER + 1`` loss evaluations plus 16 to measure the loss's noise.
    The verdict needs no tolerance: order ≥ 1.8 passes, order ≤ 1.2 fails, in
    between (or too few steps above the noise) is inconclusive.

    >>> import numpy as np, gradproof
    >>> f = lambda x: float(np.sum(np.exp(x)))
    >>> gradproof.taylor_test(f, np.zeros(3), lambda x: np.exp(x)).status
    'pass'
    >>> gradproof.taylor_test(f, np.zeros(3), lambda x: 2 * np.exp(x)).status
    'fail'
    """
    validate_callable("loss", loss, "pass a function loss(params) -> scalar")
    validate_positive(
        "largest_step", largest_step, "pass the largest step h of the ladder, e.g. 0.1, or None"
    )
    validate_seed(seed)
    layout, theta = flatten(params)
    g, _ = resolve_gradient(grad, params, layout)
    evaluator = Evaluator(loss, layout, theta)
    j0 = float(evaluator.value())
    noise = 3 * measure_noise(evaluator, j0, float(np.finfo(np.float64).eps), seed)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(theta.size)
    v /= np.linalg.norm(v)
    h0 = largest_step or 0.1 * max(float(np.sqrt(np.mean(theta**2))), 1.0)
    steps = h0 * 10.0 ** (-0.5 * np.arange(LADDER))
    values = evaluator.directions(v[None, :], steps)[0]
    slope = float(np.dot(g, v))
    residuals = np.abs(values - j0 - steps * slope)
    zeroth = np.abs(values - j0)
    # Roundoff in the values themselves bounds the floor from below.
    roundoff = 4 * np.finfo(np.float64).eps * float(np.max(np.abs(values), initial=abs(j0)))
    noise = max(noise, roundoff)
    order, status, text = _verdict(steps, residuals, noise)
    return TaylorResult(
        tuple(steps.tolist()),
        tuple(residuals.tolist()),
        tuple(zeroth.tolist()),
        order,
        noise,
        status,
        text,
    )


def _verdict(
    steps: np.ndarray, residuals: np.ndarray, noise: float
) -> tuple[float | None, Status, str]:
    above = residuals > 100 * max(noise, 1e-300)
    if not above.any():
        return (
            None,
            "pass",
            (
                "the residual stays at the noise level at every step: the loss is linear along "
                "the test direction and the gradient reproduces it"
            ),
        )
    # The smallest steps still clear of the noise show the asymptotic order.
    usable = np.flatnonzero(above)
    if usable.size < 3:
        return (
            None,
            "inconclusive",
            (
                "fewer than three steps have a residual above the noise; try a larger "
                "largest_step or a loss with less noise"
            ),
        )
    tail = usable[-4:]
    order = float(np.polyfit(np.log(steps[tail]), np.log(residuals[tail]), 1)[0])
    if order >= 1.8:
        return order, "pass", f"the residual falls like h^{order:.2f}: the gradient is right"
    if order <= 1.2:
        return (
            order,
            "fail",
            (
                f"the residual falls like h^{order:.2f}, not h^2: the gradient is wrong "
                "along the test direction"
            ),
        )
    return order, "inconclusive", f"the fitted order {order:.2f} is neither 1 nor 2"


def sweep(
    loss: Callable[[Any], Any],
    params: Any,
    grad: Any,
    *,
    eps: Sequence[float] | None = None,
) -> SweepResult:
    """The notebook's relative difference for plain central differences over a range of ε.

    Cost: ``2 N`` loss evaluations per ε (13 values by default, 1e-1 to 1e-13).

    >>> import numpy as np, gradproof
    >>> result = gradproof.sweep(lambda x: float(np.sum(np.sin(x))), np.ones(2), np.cos)
    >>> 1e-7 < result.best_eps < 1e-3
    True
    """
    from gradproof._engine.check import check

    grid = np.logspace(-1, -13, 13) if eps is None else _eps_grid(eps)
    differences = [
        check(loss, params, grad, eps=float(e), scheme="central").difference for e in grid
    ]
    best = int(np.argmin(differences))
    return SweepResult(
        tuple(grid.tolist()), tuple(differences), float(grid[best]), float(differences[best])
    )


def _eps_grid(eps: Any) -> np.ndarray:
    """The user's steps as a float array: at least one, each finite and > 0."""
    try:
        grid = np.asarray(eps, dtype=float).ravel()
    except (TypeError, ValueError):
        grid = np.zeros(0)
    if grid.size == 0 or not np.all(np.isfinite(grid)) or not np.all(grid > 0):
        raise invalid(
            "eps",
            eps,
            "must be a sequence of at least one step, each finite and > 0",
            "pass steps such as eps=np.logspace(-1, -13, 13), or leave eps=None",
        )
    return grid
