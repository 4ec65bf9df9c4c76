"""Pieces shared by :func:`check_module`, :func:`gradcheck` and the modules behind them.

Both build on :func:`gradproof.check`: the values under test become a dict of
float64 numpy arrays, the loss is a closure that writes a point into private
values, never the user's own tensors (``gradcheck``: copies of the inputs;
``check_module``: the user's own module, its parameters and buffers holding
private copies while borrowed, see :mod:`gradproof.torch._state`), and
autograd's gradient is computed once, at the base point.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import torch

from gradproof._errors import invalid

Precision = Literal["float64", "native"]
PRECISIONS = ("float64", "native")


def validate_precision(dtype: Any) -> None:
    """``dtype`` must be one of :data:`PRECISIONS`."""
    if dtype not in PRECISIONS:
        raise invalid(
            "dtype",
            dtype,
            f"must be one of {list(PRECISIONS)}",
            "use 'float64' (a float64 copy, the default and the most sensitive check) or "
            "'native' (the tensors' own dtype, to see what float32 training sees)",
        )


def compute_dtype(dtype: Precision, tensors: list[torch.Tensor], argument: str) -> torch.dtype:
    """The dtype the check computes in: float64, or the tensors' own (one dtype)."""
    if dtype == "float64":
        return torch.float64
    kinds = sorted({str(t.dtype) for t in tensors})
    if len(kinds) != 1:
        raise invalid(
            "dtype",
            "native",
            f"needs one dtype across {argument}, but they hold {kinds}",
            "convert them to one dtype, or check in float64 (dtype='float64')",
        )
    own = tensors[0].dtype
    if own == torch.bfloat16:
        # numpy has no bfloat16, so gradproof could not see the loss's precision
        # and would pick steps below bfloat16's resolution.
        raise invalid(
            "dtype",
            "native",
            f"cannot check {argument} of dtype torch.bfloat16 natively (numpy has no bfloat16, "
            "so steps and tolerances cannot be set for it)",
            "check in float64 (dtype='float64', the default), or convert to float32 first",
        )
    return own


def cast(value: Any, dtype: torch.dtype) -> Any:
    """A copy of ``value`` with every floating tensor detached and cast to ``dtype``.

    Tuples, lists and dicts are walked; integer tensors and other objects pass
    through unchanged (class labels stay integers).
    """
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return value.detach().to(dtype=dtype, copy=True)
        return value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(cast(v, dtype) for v in value)
    if isinstance(value, Mapping):
        return {k: cast(v, dtype) for k, v in value.items()}
    return value


def to_numpy64(tensor: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``tensor`` (any device, any float dtype).

    A ZeroTensor (the gradient some of torch's backwards return for a
    derivative known to be zero) becomes an array of zeros.
    """
    if tensor._is_zerotensor():
        return np.zeros(tuple(tensor.shape))
    return tensor.detach().to(device="cpu", dtype=torch.float64).numpy().copy()


def from_numpy(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A fresh tensor with ``array``'s values in ``like``'s dtype and device.

    ``torch.tensor`` copies, so the read-only views gradproof passes the loss
    are never shared with torch (which would warn about them).
    """
    return torch.tensor(array, dtype=like.dtype, device=like.device)


@contextlib.contextmanager
def fixed_randomness(tensors: list[torch.Tensor]) -> Iterator[None]:
    """Restore torch's random state afterwards, bit for bit, also on an exception."""
    devices = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        yield


# torch warns, once per operator, where vmap runs an operator without a batching rule
# one sample at a time; the result is right, and gradproof chose vmap, not the user.
VMAP_FALLBACK_WARNING = r"There is a performance drop because we have not yet implemented"


# torch's forward mode loads its decompositions with torch.jit.script on first use, which
# warns that torch.jit.script is deprecated: torch's own doing, met because gradproof chose
# forward mode (check_forward_ad).
JIT_DEPRECATION_WARNING = r"`torch.jit.script` is deprecated"


@contextlib.contextmanager
def quiet_forward_mode() -> Iterator[None]:
    """Hide the deprecation warning torch's forward mode raises on first use, and only it."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=JIT_DEPRECATION_WARNING, category=DeprecationWarning
        )
        yield


@contextlib.contextmanager
def quiet_vmap_fallback() -> Iterator[None]:
    """Hide torch's vmap "performance drop" warning, and only it, inside gradproof's vmap.

    Only gradproof's own ``vmap`` call runs inside: the user's own vmap calls
    still warn as torch decides.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=VMAP_FALLBACK_WARNING, category=UserWarning)
        yield


def scalar_loss(value: Any, argument: str) -> torch.Tensor:
    """The loss as a 0-d tensor, or InvalidArgument naming ``argument``."""
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    if value.numel() != 1:
        raise invalid(
            argument,
            f"a tensor of shape {tuple(value.shape)}",
            "must return a scalar loss",
            "reduce the output to one number, e.g. with .sum() or .mean()",
        )
    return value.reshape(())


def index_label(index: tuple[Any, ...]) -> str:
    """An element's index as a report writes it after a name; ``""`` for a scalar.

    >>> index_label((1, 2)), index_label(())
    ('[1, 2]', '')
    """
    return f"[{', '.join(str(int(i)) for i in index)}]" if index else ""


class Reseed:
    """Reset torch's generators to ``seed``: the same dropout mask at every evaluation.

    Cheaper than ``torch.manual_seed`` (which visits every accelerator backend),
    so it can run before each of many thousand evaluations.
    """

    def __init__(self, seed: int, tensors: list[torch.Tensor]) -> None:
        self.seed = seed
        self.devices = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})

    def __call__(self) -> None:
        torch.default_generator.manual_seed(self.seed)
        for device in self.devices:
            torch.cuda.default_generators[device].manual_seed(self.seed)
