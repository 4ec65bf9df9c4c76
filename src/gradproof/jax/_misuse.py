"""What :func:`gradproof.jax.check` refuses, each as an error naming ``f`` or ``params``.

An ``f`` written for ``check_grads`` (``f(x, y)``, several positional arguments), an
``f`` that JAX cannot trace, one that is not finite at the parameters given (the base
point), or whose JAX derivative is not finite there: each is said in words about
``f``, ``params`` and ``jax.grad(f)``, with the fix, before the engine runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradproof._errors import InvalidArgument, invalid

POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def validate_signature(f: Callable[..., Any], params: Any) -> None:
    """Refuse an ``f`` that cannot be called as ``f(params)``: one needing more positional
    arguments than one (``check_grads``' ``f(x, y)``), or a keyword-only one without default.

    >>> validate_signature(lambda p: p, (1.0, 2.0))  # one argument: fine
    >>> try:
    ...     validate_signature(lambda x, y: x * y, (1.0, 2.0))
    ... except ValueError as error:
    ...     print(str(error)[:60])
    `f`='a function of 2 positional arguments (x, y)': gradproof
    """
    try:
        signature = inspect.signature(f)
    except (TypeError, ValueError):  # a builtin or an object without one: let the call tell
        return
    needed = [
        p.name
        for p in signature.parameters.values()
        if p.kind in POSITIONAL and p.default is inspect.Parameter.empty
    ]
    keywords = [
        p.name
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    if len(needed) > 1:
        raise _several(needed, params)
    if keywords:
        raise invalid(
            "f",
            f"a function with required keyword-only argument(s) {', '.join(keywords)}",
            "is called as f(params), with the parameters' pytree only",
            f"bind them first: functools.partial(f, {keywords[0]}=...)",
        )


def _several(needed: list[str], params: Any) -> InvalidArgument:
    """``f`` takes several positional arguments, as ``check_grads`` calls it: the fix
    packs them into one pytree (the tuple of arguments, where ``params`` is one)."""
    names = ", ".join(needed)
    packed = isinstance(params, (tuple, list)) and len(params) == len(needed)
    if packed:
        fix = (
            f"check the tuple of arguments as one pytree: gradproof.jax.check(lambda a: "
            f"f(*a), ({names}))"
        )
    else:
        fix = (
            f"pass one pytree holding every argument, e.g. gradproof.jax.check(lambda a: "
            f"f(*a), ({names})), or bind the arguments not checked (functools.partial)"
        )
    return invalid(
        "f",
        f"a function of {len(needed)} positional arguments ({names})",
        "gradproof.jax.check calls f(params) with one pytree of parameters, not "
        "f(*args) as jax.test_util.check_grads does",
        fix,
    )


def untraceable(error: Exception) -> InvalidArgument:
    """The InvalidArgument for an ``f`` that JAX's differentiation cannot trace."""
    return invalid(
        "f",
        f"a function jax.grad cannot trace ({type(error).__name__})",
        "must be written with jax.numpy throughout: jax.grad traces it, and numpy "
        "calls, float() or int() on a traced value fail",
        "replace np.* with jnp.* and keep values as arrays inside f",
    )


def validate_finite_output(leaves: Sequence[Any]) -> None:
    """Refuse an ``f`` whose output (its leaves, at the base point) is not finite.

    >>> try:
    ...     validate_finite_output([np.array([1.0, np.nan])])
    ... except ValueError as error:
    ...     print(str(error)[:62])
    `f`='f(params) = nan at output element [1]': must be finite at
    """
    for number, leaf in enumerate(leaves):
        value = np.asarray(leaf)
        bad = np.argwhere(~np.isfinite(value))
        if len(bad):
            index = [int(i) for i in bad[0]]
            where = f" at output element {index}" if value.ndim else ""
            where += f" of leaf {number}" if len(leaves) > 1 else ""
            raise invalid(
                "f",
                f"f(params) = {value[tuple(index)]}{where}",
                "must be finite at the parameters given (the base point), where gradproof "
                "differentiates it",
                "check params where f is defined (log and sqrt of positive values, no "
                "division by zero), or clip or mask the arguments that leave f's domain",
            )


def validate_finite_gradient(label: str, name: str, gradient: Any) -> None:
    """Refuse a JAX derivative (``label``: ``jax.grad(f)`` or the one checked) that is not
    finite at the base point in block ``name``.

    >>> validate_finite_gradient("jax.grad(f)", "w", np.ones(2))  # finite: nothing
    """
    value = np.asarray(gradient)
    bad = np.argwhere(~np.isfinite(value))
    if not len(bad):
        return
    index = tuple(int(i) for i in bad[0])
    element = f"{name}{list(index)}" if index else name
    raise invalid(
        "f",
        f"{label} = {value[index]} at {element}",
        f"must have a finite derivative at the parameters given (the base point): {label} "
        "is compared there with the numerical derivative of f",
        "find the operation whose derivative is infinite there (sqrt or log at 0, a "
        "custom_vjp/custom_jvp rule dividing by zero; jax.config.update('jax_debug_nans', "
        "True) names it), or check f at parameters away from that point",
    )


def complex_cotangent(name: str, gradient: np.ndarray) -> InvalidArgument:
    """A custom rule in ``f`` gave the real leaf ``name`` a complex gradient: a bug in the rule."""
    return invalid(
        "f",
        f"a gradient of dtype {gradient.dtype} for the real leaf {name!r}",
        "must give a real leaf a real gradient: a custom_vjp/custom_jvp rule in f returned a "
        "complex cotangent for a real input (check_grads fails it as well)",
        f"return the real part (jnp.real) of {name!r}'s cotangent in the rule, or make the "
        "leaf complex if the function is meant to take complex values there",
    )
