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


def refuse_complex_scheme(options: Mapping[str, Any]) -> None:
    """``scheme="complex"`` is refused: the tensors the loss sees are real (or complex as
    given), so the complex step's imaginary part would be cast away before ``func`` runs."""
    scheme = options.get("scheme")
    if isinstance(scheme, str) and scheme == "complex":
        raise invalid(
            "scheme",
            scheme,
            "cannot run through gradproof.torch: the complex step needs complex parameters, "
            "and the points are written into real tensors of the inputs' dtype, which "
            "would drop their imaginary part",
            "leave scheme out (the default, scheme='richardson', needs only real "
            "arithmetic), or pass scheme='central'",
        )


def compute_dtype(dtype: Precision, tensors: list[torch.Tensor], argument: str) -> torch.dtype:
    """The dtype the check computes in: float64, or the tensors' own (one dtype)."""
    if dtype == "float64":
        return torch.float64
    kinds = sorted({str(real_of(t.dtype)) for t in tensors})
    if len(kinds) != 1:
        raise invalid(
            "dtype",
            "native",
            f"needs one dtype across {argument}, but they hold {kinds}",
            "convert them to one dtype, or check in float64 (dtype='float64')",
        )
    own = tensors[0].dtype
    if any(t.dtype.is_complex for t in tensors):
        return _complex_precision([t.dtype for t in tensors], argument)
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


def _complex_precision(dtypes: list[torch.dtype], argument: str) -> torch.dtype:
    """The real precision of complex ``argument`` checked natively: complex32 is refused."""
    if torch.complex32 in dtypes:
        raise invalid(
            "dtype",
            "native",
            f"cannot check {argument} of dtype torch.complex32 natively (numpy has no "
            "complex32, so steps and tolerances cannot be set for it)",
            "check in float64 (dtype='float64', the default), or convert to complex64 first",
        )
    return real_of(dtypes[0])


def cast(value: Any, dtype: torch.dtype, *, with_complex: bool = False) -> Any:
    """A copy of ``value`` with every floating tensor detached and cast to ``dtype``.

    Tuples, lists and dicts are walked; integer tensors and other objects pass
    through unchanged (class labels stay integers). ``with_complex``: complex
    tensors too, to the complex dtype of ``dtype``'s precision (float64:
    complex128); otherwise they pass through unchanged.
    """
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return value.detach().to(dtype=dtype, copy=True)
        if with_complex and value.is_complex():
            return value.detach().resolve_conj().to(dtype=complex_of(dtype), copy=True)
        return value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(cast(v, dtype, with_complex=with_complex) for v in value)
    if isinstance(value, Mapping):
        return {k: cast(v, dtype, with_complex=with_complex) for k, v in value.items()}
    return value


_COMPLEX_OF = {torch.float64: torch.complex128, torch.float32: torch.complex64}
_COMPLEX_OF[torch.float16] = torch.complex32


def complex_of(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype of a real precision (a complex dtype is its own).

    >>> complex_of(torch.float64), complex_of(torch.complex64)
    (torch.complex128, torch.complex64)
    """
    return dtype if dtype.is_complex else _COMPLEX_OF.get(dtype, torch.complex128)


def real_of(dtype: torch.dtype) -> torch.dtype:
    """The real precision of a dtype: a complex dtype's parts' (complex64: float32).

    >>> real_of(torch.complex64), real_of(torch.float16)
    (torch.float32, torch.float16)
    """
    parts = {complex_of(real): real for real in _COMPLEX_OF}
    return parts.get(dtype, torch.float64) if dtype.is_complex else dtype


def to_numpy64(tensor: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``tensor`` (any device, any float dtype); complex128 if complex.

    A ZeroTensor (the gradient some of torch's backwards return for a
    derivative known to be zero) becomes an array of zeros.
    """
    wide = torch.complex128 if tensor.is_complex() else torch.float64
    if tensor._is_zerotensor():
        return np.zeros(tuple(tensor.shape), dtype=np.complex128 if wide.is_complex else None)
    return tensor.detach().resolve_conj().resolve_neg().to(device="cpu", dtype=wide).numpy().copy()


def as_pairs(array: np.ndarray) -> np.ndarray:
    """A complex array as float64 (real, imaginary) pairs on a last axis; a real one as it is.

    The layout of a complex block in gradproof's reports (``z[2, 1]``: element
    2's imaginary part).

    >>> as_pairs(np.array([1 + 2j])).tolist(), as_pairs(np.array([3.0])).tolist()
    ([[1.0, 2.0]], [3.0])
    """
    if not np.iscomplexobj(array):
        return array
    pairs = np.ascontiguousarray(array, dtype=np.complex128).view(np.float64)
    return pairs.reshape(*np.shape(array), 2)


def from_numpy(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A fresh tensor with ``array``'s values in ``like``'s dtype and device.

    ``torch.tensor`` copies, so the read-only views gradproof passes the loss
    are never shared with torch (which would warn about them). A complex block's
    values may lie at an address torch cannot read complex numbers from (8
    bytes into gradproof's buffer, not 16, which numpy still calls aligned):
    complex values are copied into a fresh buffer first.
    """
    if np.iscomplexobj(array) or not array.flags.aligned:
        array = np.array(array, copy=True)  # a fresh buffer is aligned
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
