"""JAX's gradient of a real scalar, in both modes, in the convention :func:`gradproof.check` takes.

For a real function ``L`` of complex ``z = x + iy``, gradproof (like torch's
``.grad``) expects ``g = ∂L/∂x + i·∂L/∂y``. ``jax.grad`` returns the conjugate,
``∂L/∂x − i·∂L/∂y`` (JAX's convention: the cotangent of ``z``), so the reverse
gradient here conjugates a complex leaf's gradient; a real leaf's is unchanged.
``jax.jacfwd`` refuses complex inputs, so the forward gradient is built from
``jax.jvp`` along every real coordinate: ``∂L/∂x_j`` along the unit ``e_j`` and
``∂L/∂y_j`` along ``i·e_j``. Either way a ``custom_vjp`` rule that forgets a
``conj()`` gives the conjugate of the right gradient, and fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Scalar = Callable[[list[Any]], Any]  # a real scalar function of the checked blocks, in order
Gradient = Callable[[list[Any]], list[Any]]


def reverse(h: Scalar) -> Gradient:
    """``jax.grad(h)``, its complex blocks conjugated to ``∂h/∂x + i·∂h/∂y``.

    >>> import jax.numpy as jnp
    >>> g = reverse(lambda v: jnp.sum(jnp.abs(v[0]) ** 2) + jnp.sum(v[1] ** 2))
    >>> [complex(c) for c in g([jnp.array([1 + 2j]), jnp.array([3.0])])[0]]  # 2z, not 2 conj(z)
    [(2+4j)]
    """
    gradient = jax.grad(h)

    def conjugated(values: list[Any]) -> list[Any]:
        return [jnp.conj(g) if jnp.iscomplexobj(g) else g for g in gradient(values)]

    return conjugated


def forward(h: Scalar) -> Gradient:
    """The same gradient as :func:`reverse`, by ``jax.jvp`` along every real coordinate.

    >>> import jax.numpy as jnp
    >>> g = forward(lambda v: jnp.sum(jnp.abs(v[0]) ** 2) + jnp.sum(v[1] ** 2))
    >>> [complex(c) for c in g([jnp.array([1 + 2j]), jnp.array([3.0])])[0]]
    [(2+4j)]
    """

    def gradient(values: list[Any]) -> list[Any]:
        return [_block(h, values, i) for i in range(len(values))]

    return gradient


def _block(h: Scalar, values: list[Any], i: int) -> Any:
    """Block ``i`` of the gradient of ``h``: one ``jax.jvp`` per real coordinate, vmapped."""
    value = jnp.asarray(values[i])
    zeros = [jnp.zeros_like(v) for v in values]

    def along(unit: Any) -> Any:
        tangents = [*zeros[:i], unit, *zeros[i + 1 :]]
        return jax.jvp(h, (values,), (tangents,))[1]

    units = jnp.eye(value.size, dtype=value.dtype).reshape((value.size, *value.shape))
    real = jax.vmap(along)(units).reshape(value.shape)
    if not jnp.iscomplexobj(value):
        return real
    return real + 1j * jax.vmap(along)(1j * units).reshape(value.shape)
