"""`gradcheck`'s evaluations where its inputs live: private copies shifted in place.

The drop-in's loss is a weighting of ``func``'s outputs (:class:`WeightedLoss`). Its
resident evaluation keeps a private copy of each checked input, on the input's device
and in the check's dtype, and lets :class:`~gradproof.torch._resident.TensorResident`
shift them in place: no point is built on the host, and many go in one vmapped call
where ``func`` runs under vmap. The other inputs are passed as they are.

It declines (the engine then builds points on the host, as before) where a later check
will replay this one's outputs (they are kept by host point) and where an input is
complex. A ``func`` that runs autograd itself (``gradgradcheck``'s, which takes the
gradient of the user's function) is evaluated in place too, with gradients enabled and
its copies requiring grad; that need is found at its first call, which is then made
again that way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gradproof._engine.resident import Span
from gradproof.torch._reductions import weighted_sum
from gradproof.torch._resident import TensorResident, open_tensor_resident, pays

if TYPE_CHECKING:
    from gradproof.torch._function_loss import FunctionLoss, WeightedLoss


def open_function_resident(
    weighted: WeightedLoss, spans: Sequence[Span], theta: np.ndarray, batched: bool
) -> TensorResident | None:
    """``weighted``'s resident evaluation, or None where it declines (see the module)."""
    function = weighted.function
    if function.cache.enabled:
        return None
    inputs = function.inputs
    if any(t.is_complex() for t in inputs):
        return None
    if not pays(inputs[0].device, theta.size, batched and function.use_vmap):
        return None  # decided before any copy is made: small checks pay nothing for it
    return open_tensor_resident(FunctionTarget(weighted), spans, theta, batched)


class FunctionTarget:
    """:class:`~gradproof.torch._resident.Target` for ``func``: the checked inputs' private
    copies, and ``func``'s weighted outputs at them."""

    def __init__(self, weighted: WeightedLoss) -> None:
        self.function: FunctionLoss = weighted.function
        self.weights = weighted.weights
        self.lock = self.function.lock
        self.dirty = False  # the host's way writes its own buffers, never these
        self.tensors = {
            name: self.function.work[i].detach().clone().requires_grad_(self.function.needs_grad)
            for name, i in zip(self.function.names, self.function.checked, strict=True)
        }

    @property
    def use_vmap(self) -> bool:
        return self.function.use_vmap

    @use_vmap.setter
    def use_vmap(self, value: bool) -> None:
        self.function.use_vmap = value

    def in_place(self) -> torch.Tensor:
        """The weighted outputs at the values the private copies hold now."""
        function = self.function
        args: list[Any] = list(function.work)
        for i, name in zip(function.checked, function.names, strict=True):
            args[i] = self.tensors[name]
        if not function.needs_grad:
            try:
                with torch.no_grad():
                    return weighted_sum(function.call(args), self.weights, batch=False)
            except RuntimeError:  # func runs autograd itself: from now on, with gradients
                function.needs_grad = True
        for tensor in self.tensors.values():
            tensor.requires_grad_(True)  # a leaf: written in place under no_grad, as before
        with torch.enable_grad():
            outputs = function.call(args)
        return weighted_sum(outputs, self.weights, batch=False)

    def vmapped(self, stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted outputs at every row of ``stacked``, in one call under vmap."""
        rows = [stacked[name] for name in self.function.names]
        return weighted_sum(self.function.vmapped(rows), self.weights, batch=True)
