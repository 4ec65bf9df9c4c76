"""Custom ``autograd.Function`` forwards run under vmap, for evaluations without autograd.

torch refuses to run an ``autograd.Function`` under ``torch.func.vmap`` unless it
has a vmap rule (a ``vmap`` staticmethod, or ``generate_vmap_rule=True`` with
``setup_context``): vmap must know how to batch its backward too. Most
hand-written Functions have none (every old-style ``forward(ctx, ...)`` Function),
so ``gradcheck`` would call ``func`` once per point.

An evaluation of ``func`` for a numerical derivative needs no backward: it runs
under ``torch.no_grad`` on inputs that do not require grad, where
``Function.apply`` only calls ``forward``. Within :func:`forwards_under_vmap`,
in the thread that entered it, a Function that has no vmap rule and is applied
under vmap has its ``forward`` called directly (old-style ones with a
:class:`_Context` that takes what a forward may hand it), so its torch operations
are batched as any others are. A forward vmap cannot run (``.item()``, numpy, a
compiled extension, data-dependent branches) raises there, and the caller falls
back to one call per point; a Function with a vmap rule of its own keeps it.

``func`` that is itself some Function's ``apply`` (``gradcheck(Square.apply, ...)``)
was bound before the patch: :func:`batchable` gives the patched one in its place.
The caller checks the rows against single calls of ``func`` (the full vmap trial
of :meth:`~gradproof.torch._function_loss.FunctionLoss.tried_batch`) before it
trusts them.

>>> class Square(torch.autograd.Function):
...     @staticmethod
...     def forward(ctx, x):
...         ctx.save_for_backward(x)
...         return x * x
>>> from gradproof.torch._vmap import vmap_rows
>>> with torch.no_grad(), forwards_under_vmap():
...     rows = vmap_rows(lambda x: (batchable(Square.apply)(x),), [torch.tensor([[1.0], [3.0]])])
>>> rows[0].ravel().tolist()
[1.0, 9.0]
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.autograd.function import _is_setup_context_defined

_BASE = torch.autograd.Function
_APPLY = _BASE.__dict__["apply"]  # the classmethod itself
_STATE = threading.local()  # .on: this thread is inside forwards_under_vmap
_LOCK = threading.Lock()
_ENTERED = [0]  # how many threads are inside (the patch stays while any is)


class _Context:
    """An old-style forward's ``ctx`` where nothing will be differentiated: it keeps what
    the forward saves and ignores the marks; anything else it is asked for raises."""

    def __init__(self, count: int) -> None:
        self.needs_input_grad = (False,) * count
        self.materialize_grads = True
        self.saved_tensors: tuple[Any, ...] = ()

    def save_for_backward(self, *tensors: Any) -> None:
        self.saved_tensors = tensors

    def save_for_forward(self, *tensors: Any) -> None:
        pass

    def mark_dirty(self, *tensors: Any) -> None:
        pass

    def mark_non_differentiable(self, *tensors: Any) -> None:
        pass

    def set_materialize_grads(self, value: bool) -> None:
        self.materialize_grads = value


def _has_vmap_rule(cls: type[torch.autograd.Function]) -> bool:
    if not _is_setup_context_defined(cls.setup_context):
        return False
    return bool(getattr(cls, "generate_vmap_rule", False)) or cls.vmap is not _BASE.vmap


def _apply(cls: type[torch.autograd.Function], *args: Any, **kwargs: Any) -> Any:
    under_vmap = getattr(_STATE, "on", False) and torch._C._are_functorch_transforms_active()
    if not under_vmap or torch.is_grad_enabled() or _has_vmap_rule(cls):
        return _APPLY.__func__(cls, *args, **kwargs)
    if _is_setup_context_defined(cls.setup_context):
        return cls.forward(*args, **kwargs)
    return cls.forward(_Context(len(args)), *args, **kwargs)


@contextlib.contextmanager
def forwards_under_vmap() -> Iterator[None]:
    """Within, in this thread, with grad disabled: a Function without a vmap rule that is
    applied under vmap runs its ``forward`` directly (batched as plain torch code is).
    ``torch.autograd.Function.apply`` is put back when the last thread leaves."""
    if getattr(_STATE, "on", False):
        yield  # already inside (a nested evaluation)
        return
    with _LOCK:
        if _ENTERED[0] == 0:
            _BASE.apply = classmethod(_apply)  # type: ignore[assignment, method-assign]
        _ENTERED[0] += 1
    _STATE.on = True
    try:
        yield
    finally:
        _STATE.on = False
        with _LOCK:
            _ENTERED[0] -= 1
            if _ENTERED[0] == 0:
                _BASE.apply = _APPLY  # type: ignore[method-assign]


def function_class(func: Callable[..., Any]) -> type[torch.autograd.Function] | None:
    """The ``autograd.Function`` subclass whose ``apply`` ``func`` is, or None."""
    owner = getattr(func, "__self__", None)
    is_function = isinstance(owner, type) and issubclass(owner, torch.autograd.Function)
    return owner if is_function and getattr(func, "__name__", "") == "apply" else None


def batchable(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func``, or where it is a Function's ``apply`` bound before :func:`forwards_under_vmap`
    patched it, that Function's apply as patched (the same outside that context)."""
    owner = function_class(func)
    return func if owner is None else functools.partial(_apply, owner)
