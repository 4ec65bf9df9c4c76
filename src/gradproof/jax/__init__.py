"""gradproof for JAX: check ``jax.grad`` (and the ``custom_vjp``/``custom_jvp`` rules in it).

Install with ``pip install 'gradproof[jax]'``. ``import gradproof`` does not
import JAX; this subpackage does.

>>> import jax.numpy as jnp, gradproof.jax
>>> gradproof.jax.check(lambda p: jnp.sum(p["w"] ** 2), {"w": jnp.ones(2)}).passed
True
"""

from __future__ import annotations

from gradproof._extras import require

require("jax")  # ImportError with the install command where jax is missing

from gradproof.jax._check import Evaluation, assert_gradients_match, check

__all__ = ["Evaluation", "assert_gradients_match", "check"]
