"""Higher orders and forward mode for :func:`gradproof.jax.check`, as ``check_grads`` has them.

The k-th derivative is checked through a scalar function whose gradient it is:
``h_1 = f`` and ``h_k(x) = <D h_{k-1}(x), u_{k-1}>`` for a fixed random direction
``u_{k-1}``, where ``D`` is JAX's gradient in the mode being checked
(``jax.grad`` for ``"rev"``, ``jax.jvp`` per coordinate for ``"fwd"``; see
:mod:`gradproof.jax._gradients` for complex blocks, whose directions are
complex and whose ``<., .>`` is the real inner product). The gradient of
``h_k`` is then the k-th derivative contracted with ``u_1 ... u_{k-1}``: a
Hessian-vector product at order 2. Each ``h_k`` is evaluated with JAX's own
(lower-order) derivatives and differentiated numerically by gradproof, so a
``custom_jvp`` rule with a ``stop_gradient`` inside, right at order 1, fails at
order 2 in the block it breaks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradproof._errors import invalid
from gradproof.jax._gradients import forward, reverse

MODES = ("fwd", "rev")
ORDERS = (1, 2, 3)
DIFFERENTIATE: dict[str, Callable[..., Any]] = {
    "rev": reverse,
    "fwd": forward,
}
WORDS = {"rev": "reverse mode (jax.grad)", "fwd": "forward mode (jax.jvp)"}

Scalar = Callable[[list[Any]], Any]  # a function of the checked blocks, in order


@dataclass(frozen=True)
class Derivative:
    """One check: the k-th derivative in one mode, through the scalar ``h``."""

    order: int
    mode: str
    h: Scalar

    @property
    def label(self) -> str:
        nth = {1: "first", 2: "second", 3: "third"}[self.order]
        return f"the {nth} derivative in {WORDS[self.mode]}"


def validate(order: Any, modes: Any) -> tuple[str, ...]:
    """``order`` in 1..3 and ``modes`` a non-empty collection of "fwd"/"rev"; the modes."""
    if isinstance(order, bool) or order not in ORDERS:
        raise invalid(
            "order",
            order,
            f"must be one of {list(ORDERS)}",
            "pass order=1 (the gradient), 2 (also Hessian-vector products) or 3",
        )
    chosen = (modes,) if isinstance(modes, str) else tuple(modes or ())
    if not chosen or any(m not in MODES for m in chosen):
        raise invalid(
            "modes",
            modes,
            f"must be a non-empty tuple of {list(MODES)}",
            'pass modes=("rev",) (jax.grad, the default), ("fwd",) or ("fwd", "rev")',
        )
    return tuple(dict.fromkeys(chosen))


def derivatives(
    of_blocks: Scalar, point: list[Any], order: int, modes: tuple[str, ...], seed: int
) -> Iterator[Derivative]:
    """Every (order, mode) to check, lowest order first, with its scalar function."""
    for mode in modes:
        h = of_blocks
        for k in range(1, order + 1):
            yield Derivative(k, mode, h)
            h = _contracted(h, DIFFERENTIATE[mode], _direction(point, seed + k))


def _contracted(h: Scalar, differentiate: Callable[..., Any], u: list[Any]) -> Scalar:
    """``x -> <D h(x), u>``: a scalar whose gradient is the next derivative along ``u``.

    ``Re(vdot(g, u))`` is the derivative along ``u``, complex blocks included.
    """
    gradient = differentiate(h)

    def next_h(values: list[Any]) -> Any:
        parts = gradient(values)
        return sum(jnp.vdot(p, d).real for p, d in zip(parts, u, strict=True))

    return next_h


def _direction(point: list[Any], seed: int) -> list[Any]:
    """A seeded random direction, one array per block, in float64 (complex128 for complex)."""
    rng = np.random.default_rng(seed)
    out = []
    for p in point:
        u = rng.standard_normal(np.shape(p))
        if np.iscomplexobj(p):
            u = u + 1j * rng.standard_normal(np.shape(p))
        out.append(jnp.asarray(u))
    return out


def primal_mismatch(of_blocks: Scalar, point: list[Any], modes: tuple[str, ...]) -> str:
    """A sentence where a custom rule's primal output differs from ``f``'s own value.

    ``jax.vjp`` and ``jax.jvp`` return the primal output of a ``custom_vjp``'s
    ``fwd`` (or a ``custom_jvp``'s rule), which must equal ``f`` itself; a
    ``fwd`` computing something else trains on a function it does not report.
    """
    plain = float(of_blocks(point))
    for mode in modes:
        if mode == "rev":
            out = float(jax.vjp(of_blocks, point)[0])
        else:
            out = float(jax.jvp(of_blocks, (point,), ([jnp.zeros_like(p) for p in point],))[0])
        if abs(out - plain) > 1e-10 * max(abs(plain), abs(out), 1e-300):
            how = "jax.vjp (a custom_vjp's fwd)" if mode == "rev" else "jax.jvp (a custom rule)"
            return (
                f"The primal output of {how} is {out:.17g}, but f itself returns {plain:.17g}: "
                "the rule computes a different function than f. Make fwd (or the jvp rule) "
                "return f's own output."
            )
    return ""
