"""A borrowed module's buffers, put back to their checked values before every evaluation.

A forward may update buffers in place: spectral norm's power iteration (``_u``,
``_v``, in training mode), BatchNorm's running statistics and its count. Where the
output depends on them (spectral norm does), every evaluation would see other
values: the loss would drift from call to call, and the numerical derivative
would be that of a moving function. As torch's generator is reseeded before each
evaluation, the buffers are restored: the small ones (up to ``SMALL`` elements, such as
running statistics, which kernels update without bumping a version counter) copied
back in one ``_foreach_copy_``; the large ones (masks, caches) only where their version
counter moved. A buffer the forward replaced by another tensor is put back in its
module.

Spectral norm in training mode is a case apart: its forward runs a power iteration
under ``no_grad`` and divides by ``sigma = u . W v``, so autograd's gradient treats the
iterated ``u`` and ``v`` as constants. Restored to their values before it, the
iteration would run again at each point, from the same ``u``, and the numerical
derivative would follow ``u(W)`` too: another function. After the gradient's
forward, :func:`freeze_power_iterations` stops the iteration (the module's
``training`` flag, which :func:`~gradproof.torch._state.borrowed` gives back) and keeps
its ``u`` and ``v``: each point then sees the function whose gradient autograd gave.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn.utils.parametrizations import _SpectralNorm

SMALL = 1 << 16  # elements up to which a buffer is copied back at every evaluation


@dataclasses.dataclass(eq=False)
class _Entry:
    """One buffer: its module, name, tensor, checked values and last seen version."""

    module: torch.nn.Module
    name: str
    tensor: torch.Tensor
    values: torch.Tensor
    version: int


class Buffers:
    """Every buffer of ``modules`` (each registration once), as it was when this was made.

    >>> layer = torch.nn.BatchNorm1d(2)
    >>> buffers = Buffers([layer])
    >>> _ = layer(torch.randn(4, 2))  # training mode: the running statistics move
    >>> buffers.restore()
    >>> float(layer.running_mean.abs().sum()), int(layer.num_batches_tracked)
    (0.0, 0)
    """

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.entries: list[_Entry] = []
        seen: set[tuple[int, str]] = set()
        for root in modules:
            for prefix, module in root.named_modules(remove_duplicate=False):
                for name, tensor in module._buffers.items():
                    if tensor is None or (id(module), name) in seen:
                        continue
                    seen.add((id(module), name))
                    label = f"{prefix}.{name}" if prefix else name
                    values = tensor.detach().clone()
                    self.entries.append(_Entry(module, label, tensor, values, tensor._version))

    def restore(self) -> None:
        """Put back every buffer as it was recorded (see the module)."""
        small: list[_Entry] = []
        for entry in self.entries:
            key = entry.name.rsplit(".", 1)[-1]
            if entry.module._buffers.get(key) is not entry.tensor:
                entry.module._buffers[key] = entry.tensor  # replaced by another tensor
            if entry.tensor.numel() <= SMALL:
                small.append(entry)
            elif entry.tensor._version != entry.version:
                with torch.no_grad():
                    entry.tensor.copy_(entry.values)
                entry.version = entry.tensor._version
        if small:
            with torch.no_grad():
                torch._foreach_copy_([e.tensor for e in small], [e.values for e in small])

    def refresh(self, modules: list[torch.nn.Module]) -> None:
        """Record the current values of the buffers of ``modules`` (not their children)."""
        owners = {id(m) for m in modules}
        for entry in self.entries:
            if id(entry.module) in owners:
                entry.values = entry.tensor.detach().clone()
                entry.version = entry.tensor._version


def freeze_power_iterations(modules: list[torch.nn.Module]) -> list[torch.nn.Module]:
    """Stop spectral norm's power iteration where it runs (training mode); those modules.

    ``torch.nn.utils.parametrizations.spectral_norm``'s parametrization, and the module
    that ``torch.nn.utils.spectral_norm``'s hook is registered on (its own flag only,
    which decides the iteration; its children keep theirs).
    """
    frozen = []
    for root in modules:
        for module in root.modules():
            hooked = any(
                type(hook).__name__ == "SpectralNorm" for hook in module._forward_pre_hooks.values()
            )
            if module.training and (isinstance(module, _SpectralNorm) or hooked):
                module.training = False  # the attribute: .eval() would recurse
                frozen.append(module)
    return frozen
