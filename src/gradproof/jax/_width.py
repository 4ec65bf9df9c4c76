"""Whether ``f`` computes in float64 throughout, read from its program (its jaxpr).

gradproof.jax evaluates ``f`` in float64, float32 leaves included (at their float64
values). The engine takes leaves below float64 as a sign that the loss may compute
partly in their precision (a float32 model plus a float64 L2 term) and measures the
noise at the check's own step scale too, where such a part shows; but where the
parameters vary on a scale far below 1 (``sin(1e3 * p)`` at ``p ~ 1e-3``) that
measurement reads the smooth function's own curvature as float32 rounding, and
correct gradients go inconclusive. So the blocks are handed over in float64 where
``f``'s program shows no floating-point operation below float64 on a value that
depends on the parameters: neither in ``f`` nor in ``jax.grad(f)`` (a ``custom_vjp``'s
backward in float32). A program that casts to float32 (``x.astype(jnp.float32)``), or
that JAX cannot trace, keeps the leaves' own dtypes, and is judged as before.
Cost: one trace of ``f`` and one of ``jax.grad(f)``, no evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradproof._engine.noise import DTYPES_NOTE, dtypes_note

Scalar = Callable[[list[Any]], Any]


def below_float64(dtype: Any) -> bool:
    """Whether ``dtype`` is a floating or complex dtype with parts narrower than float64.

    >>> below_float64(np.float32), below_float64(np.complex128), below_float64(np.int32)
    (True, False, False)
    """
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return bool(jnp.finfo(dtype).bits < 64)
    return bool(jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 64)


def computes_in_float64(of_blocks: Scalar, point: list[Any]) -> bool:
    """Whether neither ``of_blocks`` nor its gradient computes anything that depends on
    ``point`` in a floating dtype below float64 (False where JAX cannot trace them).

    >>> import jax.numpy as jnp
    >>> from gradproof.jax._x64 import float64
    >>> with float64():
    ...     wide = computes_in_float64(lambda v: jnp.sum(jnp.sin(v[0])), [jnp.ones(2)])
    ...     narrow = computes_in_float64(
    ...         lambda v: jnp.sum(jnp.sin(v[0].astype(jnp.float32))), [jnp.ones(2)])
    >>> wide, narrow
    (True, False)
    """
    try:
        programs = [jax.make_jaxpr(of_blocks)(point), jax.make_jaxpr(jax.grad(of_blocks))(point)]
    except Exception:  # any tracing failure: keep the leaves' dtypes
        return False
    return not any(_narrow(program.jaxpr, set(program.jaxpr.invars)) for program in programs)


def _narrow(jaxpr: Any, tainted: set[Any]) -> bool:
    """Whether an equation of ``jaxpr`` on a ``tainted`` value (one that depends on the
    parameters) gives a floating value below float64. An equation holding programs of its
    own (jit, scan, cond, custom rules) is searched with all their inputs tainted."""
    for eqn in jaxpr.eqns:
        if not any(_is_var(v) and v in tainted for v in eqn.invars):
            continue
        if any(below_float64(getattr(v.aval, "dtype", np.int8)) for v in eqn.outvars):
            return True
        if eqn.primitive.name == "reduce_precision" and eqn.params["mantissa_bits"] < 52:
            return True  # float64 values rounded to a narrower significand
        for inner in _programs(eqn.params):
            if _narrow(inner, set(inner.invars)):
                return True
        tainted.update(eqn.outvars)
    return False


def _is_var(v: Any) -> bool:
    """A variable, not a literal constant (literals depend on nothing)."""
    return not hasattr(v, "val")


def _programs(params: Any) -> Iterator[Any]:
    """The jaxprs among an equation's parameters (a closed one's inner jaxpr), in tuples too."""
    for value in params.values() if isinstance(params, dict) else params:
        if isinstance(value, (tuple, list)):
            yield from _programs(value)
        elif hasattr(value, "jaxpr") and hasattr(value.jaxpr, "eqns"):
            yield value.jaxpr  # a ClosedJaxpr
        elif hasattr(value, "eqns") and hasattr(value, "invars"):
            yield value


def precision_text(engine_text: str, dtypes: list[np.dtype[Any]]) -> str:
    """The engine's precision line, its dtypes those of the leaves as the user passed them
    (the engine was handed float64 blocks).

    >>> precision_text("float64", [np.dtype(np.float32), np.dtype(np.float64)])
    'float64; params of dtype float32 were checked in float64'
    """
    return engine_text.split(DTYPES_NOTE)[0] + dtypes_note(dtypes)
