"""gradproof for JAX: check ``jax.grad`` (and the ``custom_vjp``/``custom_jvp`` rules in it).

Install with ``pip install 'gradproof[jax]'``. ``import gradproof`` does not
import JAX; this subpackage does.

>>> import jax.numpy as jnp, gradproof.jax
>>> gradproof.jax.check(lambda p: jnp.sum(p["w"] ** 2), {"w": jnp.ones(2)}).passed
True
"""

from __future__ import annotations

try:
    import jax as _jax  # the real JAX: absolute import, not this subpackage
except ImportError as error:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "gradproof.jax needs JAX, which is not installed. "
        "Install it with: pip install 'gradproof[jax]'"
    ) from error

from gradproof.jax._check import Evaluation, assert_gradients_match, check

del _jax

__all__ = ["Evaluation", "assert_gradients_match", "check"]
