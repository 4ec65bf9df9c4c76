"""Match the gradient under test to the parameter layout."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradproof._engine.tree import Layout, flatten, float_eps
from gradproof._errors import invalid


def resolve_gradient(grad: Any, params: Any, layout: Layout) -> tuple[np.ndarray, float]:
    """The gradient under test as one float64 vector in the layout's order, and its precision.

    The precision is the machine epsilon of the least precise float block of the
    gradient (float64's for Python numbers and integer arrays): a gradient computed
    in float32 carries float32 rounding, which the judge must not call a bug.

    ``grad`` is the same structure as ``params`` or a callable returning it. The
    Gradient Checking notebook's convention is accepted too: a dict whose keys
    are ``"d" + name`` for the parameters' names, where any other keys (``dZ1``,
    ``dA1``) are ignored.

    Raises:
        InvalidArgument: missing, extra or misshapen blocks, NaN or inf.
    """
    if calls_gradient(grad):
        grad = _call_gradient(grad, params)
    elif not _is_structure(grad):
        raise invalid(
            "grad",
            grad,
            "must be the gradient (the same structure as `params`) or a callable grad(params)",
            "pass the dict/array your backprop returns, or the backprop function itself",
        )
    grad = _from_notebook_convention(grad, params)
    glayout, gflat = flatten(grad, argument="grad")
    gflat = _match_blocks(layout, glayout, gflat)
    if not np.all(np.isfinite(gflat)):
        bad = int(np.flatnonzero(~np.isfinite(gflat))[0])
        block = layout.block_of(bad)
        index = block.unravel(bad - block.start)
        raise invalid(
            "grad",
            f"{block.name}{list(index)} = {gflat[bad]}",
            "the gradient under test must be finite (no NaN or inf)",
            "find where backprop produces the NaN/inf (log of 0, division by 0, overflow)",
        )
    return gflat, max(_precision(glayout), rounded_to(gflat))


# Values sampled to tell a float32-rounded gradient: a float64 one passes for float32 by
# chance with probability 2^-29 per value.
ROUNDING_SAMPLE = 1 << 16


def rounded_to(g: np.ndarray) -> float:
    """float32's epsilon where a float64 gradient carries float32's rounding, else float64's.

    A backward that accumulates in a float32 buffer (``torch.zeros`` without ``dtype=``)
    and hands its result back as float64 gives values that are all float32 numbers.
    Seen where every sampled value is one and some value needs more than half
    precision's 11 significant bits (dyadic values such as 0.5 or 3.25, the gradients
    of simple test losses, are no sign of rounding).

    >>> rounded_to(np.float32([0.1, 1 / 3]).astype(np.float64))  # float32's epsilon, 2^-23
    1.1920928955078125e-07
    >>> rounded_to(np.array([0.1, 1 / 3])), rounded_to(np.array([0.5, 3.25, 1.0]))
    (2.220446049250313e-16, 2.220446049250313e-16)
    """
    sample = g[:: max(1, g.size // ROUNDING_SAMPLE)]
    with np.errstate(over="ignore", invalid="ignore"):
        exact = bool(np.all(sample.astype(np.float32).astype(np.float64) == sample))
        fraction = np.frexp(sample)[0] * 2.0**11
    if exact and bool(np.any(fraction != np.round(fraction))):
        return float(np.finfo(np.float32).eps)
    return float(np.finfo(np.float64).eps)


def params_precision(layout: Layout) -> float:
    """The epsilon of the least precise float block of the parameters.

    A backward run on float32 parameters rounds in float32 even where it
    accumulates into a float64 buffer (conv, RNN and LSTM backwards often do):
    the gradient's dtype alone understates its rounding.
    """
    return _precision(layout)


def _precision(glayout: Layout) -> float:
    found = [float_eps(b.dtype) for b in glayout.blocks]
    return max((e for e in found if e is not None), default=float(np.finfo(np.float64).eps))


def calls_gradient(grad: Any) -> bool:
    """Whether ``grad`` is a function to call, rather than the gradient's values."""
    return callable(grad) and not isinstance(grad, (np.ndarray, Mapping, list, tuple))


def _is_structure(grad: Any) -> bool:
    import numbers

    return isinstance(grad, (np.ndarray, Mapping, list, tuple, numbers.Real)) or hasattr(
        grad, "__array__"
    )


def _call_gradient(grad: Callable[[Any], Any], params: Any) -> Any:
    # The callable gets its own copy so that a backprop writing in place cannot
    # change the caller's parameters.
    out = grad(copy.deepcopy(params))
    if out is None:
        raise invalid(
            "grad",
            grad,
            "returned None: a gradient function must return the gradient, the same "
            "structure as `params`",
            "end it with `return grads` (a backward that fills arrays in place must still "
            "return them), or pass the gradient's values instead of the function",
        )
    return out


def _from_notebook_convention(grad: Any, params: Any) -> Any:
    if not (isinstance(grad, Mapping) and isinstance(params, Mapping)):
        return grad
    if set(params).issubset(grad):
        return grad
    renamed = {f"d{k}": k for k in params if isinstance(k, str)}
    if renamed and set(renamed).issubset(grad):
        return {renamed_key: grad[f"d{renamed_key}"] for renamed_key in params}
    present = [key for key in renamed if key in grad]
    if present and not any(k in grad for k in params):  # the notebook's convention, a key short
        missing = [key for key in renamed if key not in grad]
        raise invalid(
            "grad",
            f"a dict with keys {sorted(map(str, grad))}",
            "follows the Gradient Checking notebook's convention ('d' + parameter name) "
            f"but has no {missing}",
            f"return {', '.join(repr(k) for k in missing)} from backprop as well",
        )
    return grad


def _match_blocks(layout: Layout, glayout: Layout, gflat: np.ndarray) -> np.ndarray:
    """Check names and shapes; return the gradient vector in the layout's order."""
    names = [b.name for b in layout.blocks]
    gnames = [b.name for b in glayout.blocks]
    paths = [b.path for b in layout.blocks]
    gpaths = [b.path for b in glayout.blocks]
    missing = [b.name for b in layout.blocks if b.path not in gpaths]
    extra = [b.name for b in glayout.blocks if b.path not in paths]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing block(s) {missing}")
        if extra:
            parts.append(f"extra block(s) {extra}")
        raise invalid(
            "grad",
            f"blocks {gnames}",
            f"must have the same blocks as `params` {names}, but has " + " and ".join(parts),
            "return one gradient per parameter, under the parameter's own name "
            "(or 'd' + name, as in the Gradient Checking notebook's backprop)",
        )
    by_path = {b.path: b for b in glayout.blocks}  # paths tell 0 from "0", "a.b" from a.b
    pieces = []
    for block in layout.blocks:
        gblock = by_path[block.path]
        if block.is_complex != gblock.is_complex:
            raise _complex_mismatch(block, gblock)
        same = gblock.shape == block.shape or (block.size == 1 and gblock.size == 1)
        if not same:
            raise invalid(
                f"grad block '{block.name}'",
                f"shape {gblock.shape}",
                f"must have the shape of parameter '{block.name}', {block.shape}",
                "return a gradient of the parameter's own shape "
                "(check for a missing sum over the batch axis, or a transpose)",
            )
        pieces.append(gflat[gblock.start : gblock.stop])
    if all(by_path[b.path].start == b.start for b in layout.blocks) and gflat.size == sum(
        b.stop - b.start for b in layout.blocks
    ):
        return gflat  # already in the layout's order: no second full-size copy
    return np.concatenate(pieces)


def _complex_mismatch(block: Any, gblock: Any) -> Exception:
    """A complex parameter with a real gradient, or the other way round."""
    if block.is_complex:
        return invalid(
            f"grad block '{block.name}'",
            f"a real array of shape {gblock.shape}",
            f"must be complex like parameter '{block.name}': for a real loss, its gradient "
            "is dL/d(Re z) + i·dL/d(Im z), what torch's .grad holds",
            "return a complex gradient (for L = |z|², 2·z; not the conjugate, not dL/dz)",
        )
    return invalid(
        f"grad block '{block.name}'",
        f"a complex array of shape {gblock.shape[:-1]}",
        f"must be real like parameter '{block.name}'",
        "return the real part of the gradient, or make the parameter complex",
    )
