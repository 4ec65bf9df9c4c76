"""The outputs of a function of tensors, as gradproof's torch checks read them.

:func:`as_outputs` makes ``func``'s value a tuple of real tensors (a complex
output as its real view); :class:`Constant` anchors outputs that depend on no
checked input to a zero leaf, so that their zero gradient is still checked;
:func:`same` and :func:`agree` say whether two evaluations of one output are
the same up to a kernel's rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def function_name(func: Callable[..., Any]) -> str:
    """``func`` as a message names it: ``MyFunction.apply``, or its qualified name."""
    owner = getattr(func, "__self__", None)
    if isinstance(owner, type):  # MyFunction.apply
        return f"{owner.__name__}.{func.__name__}"
    return getattr(func, "__qualname__", type(func).__name__)


class Constant:
    """``func`` whose floating outputs depend on no checked input, each plus a zero leaf
    that requires grad: the same values, and a graph in which every input's gradient is
    zero (None), which the numerical derivative must then match, as torch asks."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__qualname__ = function_name(func)

    def __call__(self, *args: Any) -> Any:
        value = self.func(*args)
        if isinstance(value, (tuple, list)):
            return tuple(anchored(o) for o in value)
        return anchored(value)


def anchored(value: Any) -> Any:
    """A floating (or complex) tensor plus a zero leaf that requires grad; else ``value``."""
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        return value
    if not (value.is_floating_point() or value.is_complex()):
        return value
    real = value.real.dtype if value.is_complex() else value.dtype
    anchor = torch.zeros((), dtype=real, device=value.device, requires_grad=True)
    with torch.enable_grad():
        return value + anchor


def agree(plain: torch.Tensor, traced: torch.Tensor) -> bool:
    """Whether an output without autograd is the traced one, within 4 ulps of its scale."""
    if plain.shape != traced.shape or plain.dtype != traced.dtype:
        return False
    if torch.equal(plain, traced):
        return True
    eps = torch.finfo(traced.dtype).eps
    finite = traced[traced.isfinite()]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    return bool(torch.allclose(plain, traced, rtol=4 * eps, atol=4 * eps * scale, equal_nan=True))


def summed(grads: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """The sum of one input's gradients from several backwards; None where all are None."""
    given = [g for g in grads if g is not None]
    if not given:
        return None
    total = given[0]
    for g in given[1:]:
        total = total + g
    return total


def floating(raw: tuple[Any, ...]) -> bool:
    """Whether ``raw`` holds a dense floating tensor (after :func:`as_outputs`)."""
    return any(
        isinstance(o, torch.Tensor) and o.is_floating_point() and o.layout == torch.strided
        for o in raw
    )


def coordinates(tensor: torch.Tensor) -> int:
    """How many real coordinates ``tensor`` has: two per element where it is complex."""
    return tensor.numel() * (2 if tensor.is_complex() else 1)


def same(batched: torch.Tensor, single: torch.Tensor) -> bool:
    """Whether a vmapped row is the unbatched call's output, up to the rounding of a batched
    kernel's other order of summation."""
    if batched.shape != single.shape or batched.dtype != single.dtype:
        return False
    if torch.equal(batched, single):  # the same values (NaN aside): close, at no more cost
        return True
    if batched.device.type == "cpu" and batched.dtype in (torch.float32, torch.float64):
        return _close(batched.numpy(), single.numpy())  # torch's allclose, in numpy: cheaper
    scale = float(single.abs().max()) if single.numel() and single.isfinite().all() else 1.0
    return bool(torch.allclose(batched, single, rtol=1e-6, atol=1e-9 * scale, equal_nan=True))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    """``torch.allclose(a, b, rtol=1e-6, atol=1e-9 * max|b|, equal_nan=True)``, computed as
    torch computes it (in the arrays' dtype), for real arrays of one dtype."""
    with np.errstate(invalid="ignore", over="ignore"):
        scale = float(np.abs(b).max()) if b.size and np.isfinite(b).all() else 1.0
        actual = np.abs(a - b)
        allowed = 1e-9 * scale + np.abs(1e-6 * b)
        close = (a == b) | (np.isnan(a) & np.isnan(b)) | (np.isfinite(actual) & (actual <= allowed))
    return bool(close.all())


def as_outputs(value: Any) -> tuple[Any, ...]:
    """``func``'s outputs as a tuple; a complex tensor as its real view (real, imaginary).

    As in torch, a complex output's Jacobian is that of its real and imaginary
    parts: ``torch.view_as_real`` is differentiable, so the backward is checked
    through it. A half-precision output (float16, bfloat16, which numpy cannot
    hold) is widened to float32, exactly and differentiably.
    """
    raw = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return tuple(_real_view(o) for o in raw)


def _real_view(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.is_complex() and value.layout == torch.strided:
        # view_as_real needs a last dimension of stride 1 (a transposed output has not)
        return torch.view_as_real(value.resolve_conj().contiguous())
    if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
        return value.to(torch.float32)
    return value
