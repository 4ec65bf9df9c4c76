"""Whether ``f`` is one function: the same value at the same parameters in every trace.

JAX runs ``f``'s Python code once per trace (``jax.jit``, ``jax.vmap``, ``lax.map``,
``jax.grad``, ``jax.vjp``) and keeps what it computed then as a constant. A numpy or
Python random draw inside ``f`` (a dropout mask, sampled data), or Python state it reads
(a counter, a global changed between calls), is then fixed anew in each trace: the
compiled base point, each batch size, the gradient and the custom rules' primal check
each see another function, and their differences look like a wrong gradient or a wrong
rule. Eager calls run the Python code every time, so they show the draw as well.

Run where a comparison between traces found a difference (the primal check, or a
check that did not pass): ``f`` evaluated eagerly ``EAGER`` times and through
``TRACES`` separately compiled ``jax.jit`` traces at the base point. Within each kind
the values of a pure ``f`` agree to the bit on a CPU (the same operations, the same
program); values that differ beyond a few units of roundoff (or the user's ``noise``)
mean ``f`` is not one function, and no gradient or rule is blamed.
Cost: ``EAGER`` eager calls and ``TRACES`` compilations of ``f``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gradproof._errors import NondeterministicLossError

EAGER = 3  # eager calls of f: a coin-flip mask of 4 elements repeats 3 times in 1 of 256
TRACES = 2  # separately compiled jax.jit traces of f
ROUNDOFF = 32 * float(np.finfo(np.float64).eps)  # the engine's bound on repeated calls

Scalar = Callable[[list[Any]], Any]


def raise_if_impure(of_blocks: Scalar, point: list[Any], noise: Any = None) -> None:
    """Raise where ``of_blocks`` gives different values at ``point`` in separate evaluations.

    Raises:
        NondeterministicLossError: eager calls, or separately compiled traces, disagree.

    >>> import jax.numpy as jnp
    >>> raise_if_impure(lambda v: jnp.sum(v[0] ** 2), [jnp.ones(3)])  # pure: nothing
    >>> draws = iter(range(100))
    >>> try:
    ...     raise_if_impure(lambda v: jnp.sum(v[0]) * next(draws), [jnp.ones(3)])
    ... except NondeterministicLossError as error:
    ...     print(str(error)[:47])
    f returned different values at the same paramet
    """
    eager = [_value(of_blocks(point)) for _ in range(EAGER)]
    traced = _traced(of_blocks, point)
    allowed = _allowed(eager[0], noise)
    if _spread(eager) <= allowed and _spread(traced) <= allowed:
        return
    raise NondeterministicLossError(_message(eager, traced))


def _traced(of_blocks: Scalar, point: list[Any]) -> list[float]:
    """``of_blocks`` at ``point`` through ``TRACES`` fresh ``jax.jit`` traces (none where
    ``jax.jit`` cannot trace it: the eager calls then decide alone)."""
    values = []
    for _ in range(TRACES):
        # A new function each time: jax.jit caches traces by the function it wraps.
        fresh = jax.jit(lambda values: of_blocks(values))
        try:
            values.append(_value(fresh(point)))
        except jax.errors.JAXTypeError:
            return []
    return values


def _value(out: Any) -> float:
    return float(np.real(np.asarray(out)))


def _spread(values: list[float]) -> float:
    """How far apart ``values`` are (infinite where only some of them are NaN)."""
    if not values:
        return 0.0
    if all(np.isnan(values)):
        return 0.0
    if any(np.isnan(values)):
        return float("inf")
    return max(values) - min(values)


def _allowed(value: float, noise: Any) -> float:
    """How far values at the same point may differ: ``noise`` where the user gave one, else a
    few units of float64 roundoff of the value (a pure f repeats itself to the bit)."""
    if isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise > 0:
        return float(noise)
    return ROUNDOFF * max(abs(value), 1e-300) if np.isfinite(value) else 0.0


def _message(eager: list[float], traced: list[float]) -> str:
    shown = ", ".join(f"{v:.17g}" for v in eager)
    compiled = ", ".join(f"{v:.17g}" for v in traced)
    where = f"{len(eager)} eager calls gave {shown}"
    if traced:
        where += f"; {len(traced)} separately compiled jax.jit traces gave {compiled}"
    return (
        f"f returned different values at the same parameters ({where}), so jax.grad(f), "
        "the custom rules' primal check and the numerical derivative each saw another "
        "function, and no gradient or rule is blamed. Likely cause: a numpy or Python "
        "random draw inside f (np.random for a dropout mask or sampled data), or Python "
        "state it reads (a counter, a global): JAX runs f's Python code once per trace "
        "(jax.jit, jax.vmap, lax.map, jax.grad) and keeps that draw fixed in it, so every "
        "trace sees another one. Fix: draw with jax.random and a key passed in with the "
        "parameters or made outside f (jax.random.PRNGKey(0)), or draw the data once "
        "outside f and close over it."
    )
