"""Calling the user's loss, with misuse told apart from the loss's own errors."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gradproof._errors import invalid

if TYPE_CHECKING:
    from gradproof._engine.evaluate import Evaluator

Loss = Callable[[Any], Any]


def call_loss(loss: Loss, structure: Any) -> Any:
    """``loss(structure)``, with misuse told apart from the loss's own errors.

    A loss that cannot take one argument, or that writes into the read-only
    parameters it is given, is misuse of ``loss`` (an InvalidArgument that says
    what to do); any other exception is the loss's own and propagates unchanged.
    """
    try:
        return loss(structure)
    except TypeError as error:
        if _takes_one_argument(loss):
            raise
        raise invalid(
            "loss",
            loss,
            f"must take one argument, the parameter structure, but calling it with one "
            f"raised TypeError: {error}",
            "wrap it, e.g. loss=lambda p: f(p['W'], p['b'], X, y), with the data in a closure",
        ) from error
    except ValueError as error:
        if "read-only" not in str(error):
            raise
        raise invalid(
            "loss",
            loss,
            "wrote into the parameters it was given: gradproof passes read-only views, so "
            f"that a check can change neither your arrays nor its own state ({error})",
            "copy before changing them inside the loss (w = p['W'].copy()), or compute "
            "without in-place operations (w = w + 1, not w += 1)",
        ) from error


def _takes_one_argument(loss: Loss) -> bool:
    """Whether ``loss`` accepts one positional argument (True where it cannot be told)."""
    try:
        inspect.signature(loss).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): assume it can
        return True
    return True


def evaluate_offsets(
    evaluator: Evaluator, is_complex: bool, indices: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """``evaluator.coordinates(indices, offsets)``, checking that complex steps survive.

    A complex step (``scheme="complex"``) needs a loss that computes with complex
    parameters and keeps the imaginary part of its value; one that does not is
    misuse of ``scheme``, reported as such rather than as a wrong gradient.
    """
    if not is_complex:
        return evaluator.coordinates(indices, offsets)
    fix = "use scheme='richardson' (the default), which needs only real arithmetic"
    if any(b.is_complex for b in evaluator.layout.blocks):
        raise invalid(
            "scheme",
            "complex",
            "cannot step complex parameters: the complex step needs the imaginary part for itself",
            fix,
        )
    try:
        with warnings.catch_warnings():
            # float(z) of a complex z drops the imaginary part with only a warning
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            values = evaluator.coordinates(indices, offsets)
    except (TypeError, np.exceptions.ComplexWarning) as error:
        raise invalid(
            "scheme",
            "complex",
            f"needs a loss that computes with complex parameters, but the loss raised "
            f"{type(error).__name__}: {error}",
            fix,
        ) from error
    if not np.any(values.imag):
        raise invalid(
            "scheme",
            "complex",
            "needs a loss whose value keeps the imaginary part (this loss returned real "
            "values for complex parameters: abs, max or a cast to float drops it)",
            fix,
        )
    return values


def refuse_complex_value(array: np.ndarray) -> None:
    """The loss's first value (at the base point, a real point) must be real."""
    if array.dtype.kind == "c":
        raise invalid(
            "loss",
            complex(array.reshape(-1)[0]),
            f"returned a complex number ({array.dtype}) at the base point, but gradproof checks "
            "the derivative of a real-valued loss (complex parameters are checked as pairs of "
            "real coordinates)",
            "return the real quantity you mean: np.real(z) (or z.real), or abs(z) ** 2 for a "
            "power; an FFT-based loss often forgets the np.real of its inverse transform",
        )
