"""`gradcheck`: a drop-in for ``torch.autograd.gradcheck`` whose failure is gradproof's report.

This module is the torch-facing surface: the arguments, their checks, and the
verdict. The function becomes gradproof's loss in
:mod:`gradproof.torch._function_loss`, its outputs are weighted into scalars in
:mod:`gradproof.torch._reductions`, and torch's own tolerance rule, where
asked for, lives in :mod:`gradproof.torch._rule`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError

import gradproof
from gradproof._engine.validate import validate_callable, validate_seed
from gradproof._errors import invalid
from gradproof._report import Report
from gradproof.torch._common import (
    Precision,
    compute_dtype,
    fixed_randomness,
    to_numpy64,
    validate_precision,
)
from gradproof.torch._function_loss import CheckedInputs, FunctionLoss, WeightedLoss, function_name
from gradproof.torch._reductions import Reduction, reductions
from gradproof.torch._rule import TorchRule, rule_decides

TORCH_ONLY = {  # torch.autograd.gradcheck's other options, at their defaults (accepted as no-ops)
    "nondet_tol": 0.0,
    "check_undefined_grad": True,
    "check_grad_dtypes": False,
    "check_batched_grad": False,
    "check_batched_forward_grad": False,
    "check_forward_ad": False,
    "check_backward_ad": True,
    "masked": None,
}


class GradcheckError(gradproof.GradcheckError, TorchGradcheckError):
    """A wrong backward: gradproof's :class:`~gradproof.GradcheckError`, and torch's too.

    Code written for ``torch.autograd.gradcheck`` that catches its
    ``GradcheckError`` (a ``RuntimeError``) keeps working; ``error.report`` is
    gradproof's report and ``str(error)`` says which input and element are
    wrong, by how much, and what kind of bug it looks like.
    """

    __module__ = "gradproof.torch"  # where users import it from

    def __init__(self, report: Report, context: str = "") -> None:
        super().__init__(report)
        if context:
            self.args = (f"{context}\n{report}",)


def gradcheck(
    func: Callable[..., Any],
    inputs: torch.Tensor | Sequence[Any],
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    raise_exception: bool = True,
    fast_mode: bool = False,
    full_jacobian: bool = False,
    projections: int = 1,
    dtype: Precision = "float64",
    batched: bool = True,
    **options: Any,
) -> bool:
    """Check the backward of ``func`` (e.g. a custom ``autograd.Function``'s ``apply``).

    A drop-in for ``torch.autograd.gradcheck``: the same core arguments
    (``func``, ``inputs``, ``eps``, ``atol``, ``rtol``, ``raise_exception``,
    ``fast_mode``), ``True`` on success, and on failure a :class:`GradcheckError`
    (or ``False`` with ``raise_exception=False``) whose message is gradproof's
    report: which input, which element, how wrong, what kind of bug. Inputs
    that require grad are checked, each a block named after ``func``'s
    parameter (``x``, ``weight``; for ``MyFunction.apply``, those of its
    ``forward``) or ``input0``, ``input1``... Other inputs are passed through.

    **Defaults differ from torch's on purpose.** ``eps``, ``atol`` and ``rtol``
    default to ``None``, not torch's ``1e-6``, ``1e-5`` and ``1e-3``: ``None``
    means gradproof's error model judges every element against the error its
    own numerical derivative can have (scaled steps, Richardson), which
    catches bugs torch's fixed bounds let through (a backward off by a relative
    1e-6 fails here and passes torch) and never calls a correct gradient wrong
    because of the numerical derivative's noise (too noisy to judge is reported
    as inconclusive, which also fails the check). Giving ``atol`` or ``rtol``
    (the other then takes torch's default) selects torch's rule instead: an
    element of a Jacobian fails when ``|analytic - numerical| > atol + rtol *
    |numerical|``, with torch's numerical Jacobian (central differences of
    step ``eps``, default 1e-6) and torch's analytic one (one backward per
    output element), as torch's default mode checks it. That rule then decides
    the verdict, so ``gradcheck(f, x, eps=1e-6, atol=1e-5, rtol=1e-3)`` passes
    and fails as torch's does; gradproof's report still explains a failure.

    Several outputs, and outputs that are not scalars, are reduced to one scalar
    by a random Gaussian projection ``sum_k <v_k, out_k>``; its gradient is the
    backward applied to ``grad_outputs=v``. A wrong (linear) backward whose error
    at an element is ``r`` times that element's tolerance is missed with
    probability at most ``0.8 / r`` per projection (``(0.8 / r) ** projections``
    in all), which for ordinary bugs (``r`` of 1e3 and more) is below 1e-3.
    ``full_jacobian=True`` removes that chance: every output element is checked
    on its own (the function is evaluated once per point; the backward once per
    output element).

    The check runs on float64 copies of the inputs by default; ``dtype="native"``
    checks in the inputs' own dtype. The inputs, their ``requires_grad`` flags,
    ``.grad`` fields and torch's random state are unchanged afterwards, also
    when ``func`` raises.

    Args:
        func: ``func(*inputs) -> tensor or tuple of tensors``.
        inputs: a tensor or a tuple of them (and other arguments).
        eps: a fixed finite-difference step: gradproof then uses the plain
            central difference, as torch does. None (default): each element
            gets a step scaled to its magnitude and the precision (Richardson).
            With ``atol``/``rtol`` given, also the step of torch's numerical
            Jacobian (None there: torch's 1e-6).
        atol, rtol: None (default): gradproof's error model alone. Given
            (either; the other defaults to torch's 1e-5 or 1e-3): torch's rule
            ``|analytic - numerical| <= atol + rtol * |numerical|`` on every
            element of every Jacobian decides, as in torch. It forgives what
            the error model would fail inside the bound and fails what is
            beyond it (``atol=0, rtol=0`` fails any difference, noise included).
        raise_exception: raise :class:`GradcheckError` on failure (default), or
            return ``False``.
        fast_mode: use gradproof's ``mode="probe"`` where :func:`gradproof.check`
            offers it (a full check otherwise). torch's rule, where given, is
            still checked on the full Jacobians.
        full_jacobian: check every output element separately instead of a
            random projection.
        projections: how many random projections to check (each is a check of
            its own; the function is evaluated only for the first).
        dtype: ``"float64"`` (default) or ``"native"``.
        batched: evaluate many points per call with ``torch.func.vmap`` where
            ``func`` allows it (a Function needs ``generate_vmap_rule=True`` or a
            ``vmap`` staticmethod); one call per point otherwise.
        **options: passed on to :func:`gradproof.check` (``tol``, ``scheme``,
            ``noise``, ``mode``, ``seed``...). ``seed`` (default 0) is also the seed
            of the projections, and torch's generator is reset to it before
            every evaluation.
            torch's other options (``nondet_tol``, ``check_undefined_grad``...)
            are accepted at their default values, refused otherwise.

    Returns:
        ``True`` when every check passes; ``False`` on failure with
        ``raise_exception=False``.

    Raises:
        GradcheckError: the backward disagrees with the numerical derivative (or
            the derivative is too noisy to judge).
        InvalidArgument: misuse, named with its fix.

    >>> import torch, gradproof.torch
    >>> class Cube(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return 3 * x ** 2 * g * (1 + 1e-6)  # off by a relative 1e-6
    >>> x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    >>> gradproof.torch.gradcheck(Cube.apply, (x,), raise_exception=False)  # error model
    False
    >>> gradproof.torch.gradcheck(func=Cube.apply, inputs=(x,), eps=1e-6, atol=1e-5, rtol=1e-3)
    True
    >>> torch.autograd.gradcheck(func=Cube.apply, inputs=(x,))  # torch's rule, same verdict
    True
    """
    _validate_arguments(
        func,
        atol=atol,
        rtol=rtol,
        dtype=dtype,
        projections=projections,
        flags={
            "raise_exception": raise_exception,
            "fast_mode": fast_mode,
            "full_jacobian": full_jacobian,
            "batched": batched,
        },
        options=options,
    )
    values = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    checked = _checked_inputs(func, values)
    tensors = [values[i] for i in checked.positions]
    target = compute_dtype(dtype, tensors, "the inputs that require grad")
    if fast_mode:
        options.setdefault("mode", "probe")
    seed = int(options.get("seed", 0))
    rule = TorchRule.given(atol, rtol, eps)
    with fixed_randomness([v for v in values if isinstance(v, torch.Tensor)]):
        loss = FunctionLoss(func, values, checked, target, seed=seed, batched=batched)
        params = {n: to_numpy64(t) for n, t in zip(checked.names, tensors, strict=True)}
        plan = reductions(
            loss.outputs, full_jacobian=full_jacobian, projections=projections, seed=seed
        )
        failures = _failures(loss, params, plan, rule, {**options, "eps": eps, "batched": batched})
    if not failures:
        return True
    if not raise_exception:
        return False
    raise _error(func, failures, total=len(plan) + (rule is not None))


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """One check's report, and what it checked, in words."""

    context: str
    report: Report


def _failures(
    loss: FunctionLoss,
    params: dict[str, np.ndarray],
    plan: list[Reduction],
    rule: TorchRule | None,
    options: dict[str, Any],
) -> list[_Outcome]:
    """The checks that fail: gradproof's, one per reduction, then torch's rule where given."""
    outcomes = list(_run(loss, params, plan, options))
    failures = [o for o in outcomes if not o.report.passed]
    if rule is None:
        return failures
    broken = rule.check(loss, params, outcomes[0].report)
    if broken is None:  # the rule holds: it forgives the failures it decides
        return [o for o in failures if not rule_decides(o.report)]
    return [_Outcome(rule.describe(), broken), *failures]


def _run(
    loss: FunctionLoss,
    params: dict[str, np.ndarray],
    plan: list[Reduction],
    options: dict[str, Any],
) -> Iterator[_Outcome]:
    """One gradproof check per reduction; the later ones replay the first one's evaluations."""
    for number, reduction in enumerate(plan):
        grad = loss.gradient(reduction.weights)
        weighted = WeightedLoss(loss, reduction.weights, replay=number > 0)
        yield _Outcome(reduction.context, gradproof.check(weighted, params, grad, **options))


def _error(func: Callable[..., Any], failures: list[_Outcome], total: int) -> GradcheckError:
    """The error for the first failure, its report noting what was checked."""
    context, report = failures[0].context, failures[0].report
    more = f" ({len(failures)} of {total} checks failed; the first is shown)"
    verb = "disagrees with" if report.status == "fail" else "could not be judged against"
    return GradcheckError(
        dataclasses.replace(report, extra={**report.extra, "checked": context}),
        f"gradproof.torch.gradcheck: the backward of `{function_name(func)}` {verb} the "
        f"numerical derivative of {context}{more if total > 1 else ''}.",
    )


def _validate_arguments(
    func: Any,
    *,
    atol: Any,
    rtol: Any,
    dtype: Any,
    projections: Any,
    flags: dict[str, Any],
    options: dict[str, Any],
) -> None:
    """Every argument check of :func:`gradcheck`, in order; drops torch's no-op options."""
    _validate_torch_options(options)
    validate_seed(options.get("seed", 0))
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise invalid(name, flag, "must be True or False", f"pass {name}=True or False")
    _validate_projections(projections)
    validate_callable("func", func, "pass the function to check, e.g. MyFunction.apply")
    _validate_bound("atol", atol, "pass a bound such as atol=1e-5, or leave atol=None")
    _validate_bound("rtol", rtol, "pass a bound such as rtol=1e-3, or leave rtol=None")
    validate_precision(dtype)


def _validate_torch_options(options: dict[str, Any]) -> None:
    """torch's other options: dropped at their defaults, refused otherwise."""
    for name, default in TORCH_ONLY.items():
        if name in options and options[name] == default:
            del options[name]
        elif name in options:
            raise invalid(
                name,
                options[name],
                "is a torch.autograd.gradcheck option that gradproof.torch.gradcheck does not "
                "take (gradproof measures the loss's noise itself and checks backward only)",
                f"drop `{name}`; for a noisy function pass noise=<its spread>",
            )


def _validate_projections(projections: Any) -> None:
    if isinstance(projections, bool) or not isinstance(projections, int) or projections < 1:
        raise invalid(
            "projections",
            projections,
            "must be a whole number >= 1",
            "pass projections=1 (or more for a smaller miss probability)",
        )


def _validate_bound(argument: str, value: Any, fix: str) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise invalid(argument, value, "must be a finite number >= 0", fix)


def _checked_inputs(func: Callable[..., Any], values: tuple[Any, ...]) -> CheckedInputs:
    """The inputs that require grad, named after ``func``'s parameters."""
    checked = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor) and v.requires_grad]
    if not checked:
        raise invalid(
            "inputs",
            f"{len(values)} input(s), none with requires_grad=True",
            "must hold at least one tensor that requires grad: those are the inputs checked",
            "create the inputs to check with requires_grad=True",
        )
    for i in checked:
        if not values[i].is_floating_point():
            raise invalid(
                f"inputs[{i}]",
                f"a tensor of dtype {values[i].dtype}",
                "must be a real floating tensor to check its gradient",
                "pass float tensors (complex inputs are not supported)",
            )
    names = _input_names(func, len(values))
    return CheckedInputs(tuple(checked), tuple(names[i] for i in checked))


def _input_names(func: Callable[..., Any], count: int) -> list[str]:
    """``func``'s positional parameter names (``forward``'s for a Function's apply), or inputN.

    >>> _input_names(lambda x, weight: x, 2)
    ['x', 'weight']
    >>> _input_names(lambda *args: args, 2)
    ['input0', 'input1']
    """
    fallback = [f"input{i}" for i in range(count)]
    owner = _function_class(func)
    target = func if owner is None else owner.forward
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return fallback
    if owner is not None and owner.setup_context is torch.autograd.Function.setup_context:
        parameters = parameters[1:]  # forward(ctx, ...): ctx is not an input
    positional = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < count or any(p.kind == p.VAR_POSITIONAL for p in parameters[:count]):
        return fallback
    return positional[:count]


def _function_class(func: Callable[..., Any]) -> type[torch.autograd.Function] | None:
    """The ``autograd.Function`` subclass whose ``apply`` ``func`` is, or None."""
    owner = getattr(func, "__self__", None)
    is_function = isinstance(owner, type) and issubclass(owner, torch.autograd.Function)
    return owner if is_function and getattr(func, "__name__", "") == "apply" else None
