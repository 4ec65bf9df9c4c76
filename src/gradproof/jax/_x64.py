"""Float64 in JAX for the length of a check, and the previous setting back afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax


@contextlib.contextmanager
def float64() -> Iterator[None]:
    """Enable JAX's 64-bit types in this thread; restore the previous setting on exit.

    The setting is JAX's thread-local ``jax_enable_x64`` override, so it is put
    back also when the body raises, and a global ``jax_enable_x64=True`` is left
    alone. JAX >= 0.6 spells it ``jax.enable_x64(True)``; older releases
    ``jax.experimental.enable_x64()``.

    >>> import jax.numpy as jnp
    >>> before = jnp.zeros(()).dtype
    >>> with float64():
    ...     print(jnp.zeros(()).dtype)
    float64
    >>> jnp.zeros(()).dtype == before
    True
    """
    scoped = getattr(jax, "enable_x64", None)
    if scoped is not None:
        with scoped(True):
            yield
        return
    from jax.experimental import enable_x64  # type: ignore[attr-defined]  # jax < 0.6

    with enable_x64():
        yield
