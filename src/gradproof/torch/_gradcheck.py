"""`gradcheck`: a drop-in for ``torch.autograd.gradcheck`` whose failure is gradproof's report.

This module is the torch-facing surface: the arguments and their checks. The
checks themselves run in :mod:`gradproof.torch._verdict` (shared with
`gradgradcheck`): the function becomes gradproof's loss in
:mod:`gradproof.torch._function_loss`, its outputs are weighted into scalars in
:mod:`gradproof.torch._reductions`, each of torch's options adds its check
(:mod:`gradproof.torch._stages`, :mod:`gradproof.torch._extra`), and torch's
own tolerance rule, where asked for, lives in :mod:`gradproof.torch._rule`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gradproof._engine.check import check
from gradproof._engine.validate import validate_callable, validate_passed_on, validate_seed
from gradproof._errors import invalid
from gradproof.torch._common import Precision, refuse_complex_scheme, validate_precision
from gradproof.torch._inputs import as_values, checked_inputs
from gradproof.torch._options import TorchOptions, validate_flag
from gradproof.torch._outputs import function_name
from gradproof.torch._rule import TorchRule
from gradproof.torch._verdict import Config, Subject, verdict


def gradcheck(
    func: Callable[..., Any],
    inputs: torch.Tensor | Sequence[Any],
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_batched_forward_grad: bool = False,
    check_forward_ad: bool = False,
    check_backward_ad: bool = True,
    fast_mode: bool = False,
    masked: bool | None = None,
    full_jacobian: bool = False,
    projections: int = 1,
    dtype: Precision = "float64",
    batched: bool = True,
    **options: Any,
) -> bool:
    """Check the backward of ``func`` (e.g. a custom ``autograd.Function``'s ``apply``).

    A drop-in for ``torch.autograd.gradcheck``: every argument of torch's
    (each option runs its check, as in torch; docs/parity.md maps them),
    ``True`` on success, and on failure a :class:`GradcheckError` (or
    ``False`` with ``raise_exception=False``) whose message is gradproof's
    report: which input, which element, how wrong, what kind of bug. Inputs
    that require grad are checked, each a block named after ``func``'s
    parameter (``x``, ``weight``; for ``MyFunction.apply``, those of its
    ``forward``) or ``input0``, ``input1``... Other inputs are passed through.
    ``func`` may run autograd itself (``torch.autograd.grad`` inside): it is
    then evaluated with its inputs requiring grad.

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
        nondet_tol: the backward is run twice on each vector (always, as in
            torch); runs that differ by more than this fail as a
            nondeterministic backward, not as wrong elements. Within it, a
            block whose largest error is at most ``nondet_tol`` passes.
        check_undefined_grad: (default True, as in torch) the backward with
            every output's gradient undefined (``None``, for a Function with
            ``ctx.set_materialize_grads(False)``) must give zero gradients, and,
            for several outputs, with each one's undefined it must act as a zero
            (checked against the numerical derivative); a backward that raises
            on ``None`` fails. With ``check_forward_ad``, an undefined input
            tangent must act as a zero one too.
        check_grad_dtypes: the gradients (and, with ``check_forward_ad``, the
            output tangents) have their tensor's dtype and device, on the inputs
            as given.
        check_batched_grad: the backward under vmap, on two random vectors at
            once (as torch runs it), each row checked against the numerical
            derivative; a backward vmap cannot run fails.
        check_batched_forward_grad: the jvp under vmap, on unit tangents; needs
            ``check_forward_ad``.
        check_forward_ad: check the forward mode too: the jvp (a Function's
            ``jvp``, through ``torch.autograd.forward_ad``, one per input
            element) against the same numerical derivatives as the backward.
        check_backward_ad: check the backward (default True); False with
            ``check_forward_ad=True`` checks the jvp alone.
        fast_mode: screen first: two random directional derivatives per input
            (all their points in one call of ``func``), judged by the error
            model; a backward the screen clears passes with no further check (a
            wrong element ``r`` times the screen's tolerance is missed with
            probability at most ``(0.8 / r) ** 2`` per input). What it cannot clear
            (a wrong element, unforeseen noise, a kink, a huge input) gets the full check,
            whose verdict and report stand: gradproof's ``mode="probe"`` where
            the checked inputs hold more than 1,024 real coordinates (32 where
            ``func`` cannot run under vmap), every coordinate below that. Complex
            inputs, torch's rule (still checked on the full Jacobians) and
            gradproof.check's options (``tol``, ``eps``...) skip the screen.
        masked: None, False or True: as in torch, it matters for sparse inputs
            only, which gradproof refuses naming their layout and the dense
            (``to_dense()``) or values-only alternative for that ``masked``.
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

    Returns:
        ``True`` when every check passes; ``False`` on failure with
        ``raise_exception=False``.

    Raises:
        GradcheckError: the backward (or jvp) disagrees with the numerical
            derivative, or the derivative is too noisy to judge, or one of the
            checks the options ask for fails; the first failure is shown.
        InvalidArgument: misuse, named with its fix (a sparse input; a
            combination torch refuses; ``check_forward_ad`` on a Function
            without ``jvp``).

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
    torch_options = TorchOptions(
        nondet_tol=nondet_tol,
        check_undefined_grad=check_undefined_grad,
        check_grad_dtypes=check_grad_dtypes,
        check_batched_grad=check_batched_grad,
        check_batched_forward_grad=check_batched_forward_grad,
        check_forward_ad=check_forward_ad,
        check_backward_ad=check_backward_ad,
        masked=masked,
    )
    config = make_config(
        func,
        torch_options,
        eps=eps,
        atol=atol,
        rtol=rtol,
        flags={
            "raise_exception": raise_exception,
            "fast_mode": fast_mode,
            "full_jacobian": full_jacobian,
            "batched": batched,
        },
        dtype=dtype,
        projections=projections,
        options=options,
        where=gradcheck,
    )
    values = as_values(inputs)
    checked = checked_inputs(func, values, masked=masked, skip_empty=True)
    if not checked.positions:
        return True  # every checked input is empty: nothing to check, as in torch
    subject = Subject("gradproof.torch.gradcheck", function_name(func))
    return verdict(func, values, checked, config, raise_exception=raise_exception, subject=subject)


def make_config(
    func: Any,
    torch_options: TorchOptions,
    *,
    eps: Any,
    atol: Any,
    rtol: Any,
    flags: dict[str, Any],
    dtype: Any,
    projections: Any,
    options: dict[str, Any],
    where: Callable[..., Any],
    also: tuple[str, ...] = (),
) -> Config:
    """Every argument check of `gradcheck` (and `gradgradcheck`), in order; the checks' set-up.

    ``where``: the drop-in called, named in a misuse error; ``also``: its own arguments
    that come through ``options``."""
    validate_passed_on(where, options, to=check, own={"eps", "batched"}, also=also)
    validate_seed(options.get("seed", 0))
    refuse_complex_scheme(options)
    for name, flag in flags.items():
        validate_flag(name, flag)
    _validate_projections(projections)
    validate_callable("func", func, "pass the function to check, e.g. MyFunction.apply")
    _validate_bound("atol", atol, "pass a bound such as atol=1e-5, or leave atol=None")
    _validate_bound("rtol", rtol, "pass a bound such as rtol=1e-3, or leave rtol=None")
    validate_precision(dtype)
    engine = {**options, "eps": eps}
    return Config(
        options=torch_options,
        rule=TorchRule.given(atol, rtol, eps),
        dtype=dtype,
        full_jacobian=flags.get("full_jacobian", False),
        projections=projections,
        batched=flags["batched"],
        engine=engine,
        fast_mode=bool(flags["fast_mode"]) and "mode" not in options,
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
