"""``f``'s output as the real scalar that is differentiated, as ``check_grads`` takes any output.

A real scalar output is checked as it is. Any other output (an array, a
complex number, a pytree of them) is checked through a seeded random
projection ``Re(Σ conj(v)·f(params))``, one random ``v`` per output leaf
(complex where the leaf is): ``jax.grad`` of it runs every ``custom_vjp`` rule
with ``v`` as the cotangent, as ``check_grads`` checks a VJP with one random
cotangent, and a wrong rule changes it for all but a measure-zero set of ``v``.
For a complex output this checks the real and the imaginary part together:
``Re(conj(v)·f) = Re v·Re f + Im v·Im f``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradproof._errors import invalid
from gradproof.jax._misuse import validate_finite_output

Scalar = Callable[[list[Any]], Any]


def scalar(of_blocks: Scalar, point: list[Any], seed: int) -> tuple[Scalar, str]:
    """``of_blocks`` as a real scalar function, and a sentence where it was projected.

    >>> import jax.numpy as jnp
    >>> h, note = scalar(lambda v: v[0] * (1 + 1j), [jnp.ones(3)], 0)
    >>> float(h([jnp.ones(3)])) != 0.0, note.startswith("f's output (shape (3,), complex")
    (True, True)
    """
    leaves = _leaves(of_blocks(point))  # eagerly: no compilation spent on a bad output
    validate_finite_output(leaves)
    if len(leaves) == 1 and np.shape(leaves[0]) == () and not jnp.iscomplexobj(leaves[0]):
        return of_blocks, ""
    rng = np.random.default_rng((seed, 1))
    directions = [_direction(rng, leaf) for leaf in leaves]

    def projected(values: list[Any]) -> Any:
        outs = jax.tree_util.tree_leaves(of_blocks(values))
        return sum(jnp.real(jnp.vdot(v, out)) for v, out in zip(directions, outs, strict=True))

    shown = ", ".join(f"shape {np.shape(leaf)}, {jnp.asarray(leaf).dtype}" for leaf in leaves[:3])
    more = f" and {len(leaves) - 3} more leaves" if len(leaves) > 3 else ""
    note = (
        f"f's output ({shown}{more}) is not a real scalar: it was checked through "
        "Re(Σ conj(v)·f(params)), v a seeded random array (complex for a complex output), "
        "as check_grads checks a VJP with one random cotangent."
    )
    return projected, note


def _leaves(out: Any) -> list[Any]:
    """The output's leaves, each a float or complex array; else the InvalidArgument."""
    leaves = jax.tree_util.tree_leaves(out)
    if not leaves:
        shown = "returned None" if out is None else f"returned no array ({out!r})"
        raise invalid(
            "f",
            f"a function that {shown}",
            "must return the loss: a float scalar, or floating-point or complex arrays",
            "return the value, e.g. `return jnp.sum(...)` (a function without a return "
            "statement returns None)",
        )
    kinds = [getattr(leaf, "dtype", np.asarray(leaf).dtype) for leaf in leaves]
    if not all(
        jnp.issubdtype(k, jnp.floating) or jnp.issubdtype(k, jnp.complexfloating) for k in kinds
    ):
        raise invalid(
            "f",
            f"an output of dtype {[str(k) for k in kinds]}",
            "must return floating-point or complex arrays: only those are differentiated",
            "return the float result itself, e.g. jnp.sum(...), not a count or a mask",
        )
    return leaves


def _direction(rng: np.random.Generator, leaf: Any) -> Any:
    v = rng.standard_normal(np.shape(leaf))
    if jnp.iscomplexobj(leaf):
        v = v + 1j * rng.standard_normal(np.shape(leaf))
    return jnp.asarray(v)
