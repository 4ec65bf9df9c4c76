"""The inputs `gradcheck` checks: those that require grad, named after ``func``'s parameters."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradproof._errors import invalid
from gradproof.torch._forward_only import function_class
from gradproof.torch._function_loss import CheckedInputs


def as_values(inputs: Any, argument: str = "inputs") -> tuple[Any, ...]:
    """``inputs`` as a tuple, as torch takes them: one tensor, or a sequence.

    A numpy array is refused (``tuple`` would split it into its rows).
    """
    if isinstance(inputs, np.ndarray):
        raise invalid(
            argument,
            f"a numpy array of shape {inputs.shape}",
            "must be a torch tensor or a tuple of them: gradproof.torch checks the inputs "
            "that are tensors with requires_grad=True",
            "pass (torch.tensor(x, dtype=torch.float64, requires_grad=True),), or use "
            "gradproof.check for a numpy loss",
        )
    return (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def checked_inputs(
    func: Callable[..., Any],
    values: tuple[Any, ...],
    *,
    masked: bool | None,
    names: Sequence[str] | None = None,
    skip_empty: bool = False,
) -> CheckedInputs:
    """The inputs that require grad, named after ``func``'s parameters (or ``names``).

    With ``skip_empty``, inputs with no element are left out (passed through),
    as torch's Jacobian has no column for them; the result may then be empty.
    """
    checked = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor) and v.requires_grad]
    if not checked and not any(isinstance(v, torch.Tensor) for v in values):
        raise invalid(
            "inputs",
            _kinds(values),
            "must hold torch tensors: gradproof.torch checks the inputs that are tensors "
            "with requires_grad=True, and these hold none",
            "pass torch.tensor(x, dtype=torch.float64, requires_grad=True) for each input "
            "to check (for numpy arrays and a numpy loss, use gradproof.check)",
        )
    if not checked:
        raise invalid(
            "inputs",
            f"{len(values)} input(s), none with requires_grad=True",
            "must hold at least one tensor that requires grad: those are the inputs checked",
            "create the inputs to check with requires_grad=True",
        )
    for i in checked:
        _validate_checked(i, values[i], masked)
    own = list(names) if names is not None else input_names(func, len(values))
    if skip_empty:
        checked = [i for i in checked if values[i].numel() > 0]
    return CheckedInputs(tuple(checked), tuple(own[i] for i in checked))


def _validate_checked(position: int, tensor: torch.Tensor, masked: bool | None) -> None:
    """A checked input must be a dense floating (real or complex) tensor."""
    if tensor.layout != torch.strided:
        raise invalid(
            f"inputs[{position}]",
            f"a tensor of layout {tensor.layout}",
            "gradproof.torch checks dense (strided) inputs only, element by element",
            _sparse_fix(tensor, masked),
        )
    if not (tensor.is_floating_point() or tensor.is_complex()):
        raise invalid(
            f"inputs[{position}]",
            f"a tensor of dtype {tensor.dtype}",
            "must be a floating (real or complex) tensor to check its gradient",
            "pass float or complex tensors",
        )


def _sparse_fix(tensor: torch.Tensor, masked: bool | None) -> str:
    """How to check a function of a sparse input, for torch's two semantics."""
    if masked:
        return (
            "check the gradient in the specified values (masked=True): pass v = "
            "x.coalesce().values().detach().requires_grad_() and build the sparse tensor "
            "inside func, torch.sparse_coo_tensor(x.coalesce().indices(), v, x.shape)"
        )
    return (
        "check the gradient in every element (masked=False): pass x.to_dense()"
        ".detach().requires_grad_() to a func written for dense tensors"
    )


def input_names(func: Callable[..., Any], count: int) -> list[str]:
    """``func``'s positional parameter names (``forward``'s for a Function's apply), or inputN.

    >>> input_names(lambda x, weight: x, 2)
    ['x', 'weight']
    >>> input_names(lambda *args: args, 2)
    ['input0', 'input1']
    """
    fallback = [f"input{i}" for i in range(count)]
    owner = function_class(func)
    target = func if owner is None else owner.forward
    if type(target) is types.BuiltinFunctionType and not getattr(target, "__text_signature__", 0):
        return fallback  # a builtin such as torch.sin: no signature to read (skip the raise)
    positional = _positional_names(target)
    if positional is None:
        return fallback
    if owner is not None and owner.setup_context is torch.autograd.Function.setup_context:
        positional = positional[1:]  # forward(ctx, ...): ctx is not an input
    return positional[:count] if len(positional) >= count else fallback


def _positional_names(target: Callable[..., Any]) -> list[str] | None:
    """The names of ``target``'s positional parameters, in order (None: unreadable).

    A plain function's are read off its code object (``inspect.signature`` costs
    tens of microseconds, a noticeable share of a small check); a wrapped one,
    one with a signature of its own, or any other callable, through ``inspect``.

    >>> _positional_names(lambda a, /, b, *rest, c: a)
    ['a', 'b']
    """
    if type(target) is types.FunctionType and not hasattr(target, "__wrapped__"):
        if not hasattr(target, "__signature__"):
            code = target.__code__
            return list(code.co_varnames[: code.co_argcount])
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = []
    for parameter in parameters:  # the positional ones come first
        if parameter.kind not in kinds:
            break
        names.append(parameter.name)
    return names


def _kinds(values: tuple[Any, ...]) -> str:
    """What ``values`` hold, by type, for a message: ``"3 input(s): ndarray, ndarray, float"``.

    >>> _kinds((1.0, "a"))
    '2 input(s): float, str'
    """
    names = ", ".join(type(v).__name__ for v in values[:4]) + (", ..." if len(values) > 4 else "")
    return f"{len(values)} input(s): {names}"
