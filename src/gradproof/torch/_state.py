"""Borrow the user's own module for a check, then give it back bit for bit.

:func:`check_module` checks the module the user trains, not a copy of it: a
``copy.deepcopy`` drops the hooks registered on parameters
(``weight.register_hook``), so a hook that doubles a gradient would pass, and it
cannot copy a module that holds a lock. Borrowing keeps every hook (tensor
hooks, forward and forward pre-hooks, full backward and backward pre-hooks),
``torch.nn.utils.parametrize`` parametrizations and tied weights exactly as the
user's ``loss.backward()`` sees them.

While borrowed, every parameter and buffer holds a private copy of its values
in the check's dtype (the same ``Parameter`` objects, their ``.data``
swapped), so evaluations never write the user's tensors; afterwards each gets
its own tensor back, with its ``.grad``, ``requires_grad`` flag, and every
module its train/eval flag, also when the loss raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import torch


@dataclasses.dataclass(frozen=True, eq=False)
class _Saved:
    """One tensor's own state: its values (the same storage), ``.grad`` and flag."""

    tensor: torch.Tensor
    data: torch.Tensor  # an alias of the user's storage, put back by `.data =`
    grad: torch.Tensor | None
    requires_grad: bool

    @classmethod
    def of(cls, tensor: torch.Tensor) -> _Saved:
        grad = tensor.grad if tensor.is_leaf else None  # a non-leaf's .grad only warns
        return cls(tensor, tensor.data, grad, tensor.requires_grad)

    def swap_in(self, dtype: torch.dtype) -> None:
        """Give the tensor a private copy of its values (floating ones cast to ``dtype``)."""
        if self.tensor.is_leaf:
            self.tensor.grad = None  # a gradient of the old dtype would not fit the new values
        target = dtype if self.data.is_floating_point() else self.data.dtype
        self.tensor.data = self.data.to(dtype=target, copy=True)

    def restore(self) -> None:
        """The user's own values, gradient and flag, as before the check."""
        if not self.tensor.is_leaf:
            self.tensor.data = self.data
            return
        self.tensor.grad = None  # first: the check's gradient has the check's dtype
        self.tensor.data = self.data
        self.tensor.grad = self.grad
        self.tensor.requires_grad_(self.requires_grad)


@contextlib.contextmanager
def borrowed(modules: list[torch.nn.Module], dtype: torch.dtype) -> Iterator[None]:
    """Lend ``modules`` to a check in ``dtype``; restore them afterwards, bit for bit.

    Parameters and buffers shared between modules (tied weights, a loss module
    that holds the model) are saved once. Floating values are cast to
    ``dtype``; others are copied as they are.

    >>> layer = torch.nn.Linear(2, 1)
    >>> weight, values = layer.weight, layer.weight.data
    >>> with borrowed([layer], torch.float64):
    ...     layer.weight.dtype, layer.weight is weight
    (torch.float64, True)
    >>> layer.weight.dtype, layer.weight.data.data_ptr() == values.data_ptr()
    (torch.float32, True)
    """
    members = [m for module in modules for m in module.modules()]
    modes = [(m, m.training) for m in members]
    saved = [_Saved.of(t) for t in _tensors(modules)]
    try:
        for entry in saved:
            entry.swap_in(dtype)
        yield
    finally:
        for entry in saved:
            entry.restore()
        for module, training in modes:
            module.training = training  # the attribute itself: .train() would recurse


def _tensors(modules: list[torch.nn.Module]) -> list[torch.Tensor]:
    """Every parameter and buffer of ``modules``, each once (tied ones are one tensor)."""
    seen: dict[int, torch.Tensor] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            seen.setdefault(id(tensor), tensor)
    return list(seen.values())
