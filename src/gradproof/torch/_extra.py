"""torch's extra checks, beside the derivatives themselves: each one an :class:`Outcome`.

- :func:`reentrancy` (always, as in torch; ``nondet_tol``): the backward run
  twice with the same vector must agree; one that does not is reported as
  nondeterministic, not as wrong elements.
- :func:`undefined_backward` / :func:`undefined_forward` (``check_undefined_grad``):
  undefined (``None``) output gradients, or input tangents, must act as zeros.
- :func:`batched_backward` (``check_batched_grad``): the backward under vmap,
  as torch's own check runs it, each row checked against the numerical derivative.
- :func:`grad_types` (``check_grad_dtypes``): gradients have their input's
  dtype and device, on the inputs as given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch._vmap_internals import _vmap as legacy_vmap

from gradproof._report import Report
from gradproof.torch._common import as_pairs, quiet_vmap_fallback
from gradproof.torch._findings import (
    Compared,
    Outcome,
    agrees,
    blocks_report,
    comparison_report,
    raised_report,
)
from gradproof.torch._forward import output_tangents, primals
from gradproof.torch._function_loss import FunctionLoss
from gradproof.torch._outputs import as_outputs
from gradproof.torch._reductions import Reduction, reductions

Check = Callable[[tuple[torch.Tensor, ...], dict[str, np.ndarray]], Report]
UNDEFINED = "check_undefined_grad"


def reentrancy(
    loss: FunctionLoss, reduction: Reduction, nondet_tol: float
) -> tuple[dict[str, np.ndarray], Outcome | None]:
    """The backward on ``reduction``, run twice: its gradient, and the finding where runs differ."""
    runs = loss.backward(reduction.weights), loss.backward(reduction.weights)
    first = loss.as_arrays(runs[0])
    if _equal(*runs):  # the same values: within any nondet_tol (no report to build)
        return first, None
    compared = Compared(
        _pairs(loss.as_arrays(runs[1])), _pairs(first), nondet_tol, "run 2 vs run 1"
    )
    if agrees(compared):  # the report is built for a failure only
        return first, None
    report = comparison_report(
        compared,
        kind="nondeterministic",
        finding="the backward's second run differs from its first",
        coverage=f"the backward run twice with the same grad_outputs (nondet_tol={nondet_tol:g})",
    )
    context = (
        f"is not deterministic: run twice on the same inputs and grad_outputs, it gives values "
        f"that differ by more than nondet_tol={nondet_tol:g}, so it is not judged against the "
        "numerical derivative (fix the randomness in the backward; where it is expected, as "
        "with atomic adds on a GPU, pass nondet_tol=<its size>)"
    )
    return first, Outcome("backward", context, report, numerical=False)


def within_nondet_tol(report: Report, nondet_tol: float) -> Report:
    """``report`` with each failing block whose largest error is within ``nondet_tol`` passed.

    A backward allowed to vary by ``nondet_tol`` between runs is allowed that
    much error against the numerical derivative too: noise within the bound the
    user set is not reported as wrong elements.
    """
    if nondet_tol <= 0 or report.passed:
        return report
    blocks = {
        name: dataclasses.replace(
            b,
            status="pass",
            wrong_elements=(),
            diagnosis=None,
            reason=f"within nondet_tol={nondet_tol:g} (largest error {b.max_abs_error:.3g})",
        )
        if b.status == "fail" and b.max_abs_error <= nondet_tol
        else b
        for name, b in report.blocks.items()
    }
    failing = tuple(n for n in report.suspects if blocks[n].status == "fail")
    still = failing or any(b.status == "inconclusive" for b in blocks.values())
    status = report.status if still else "pass"
    return dataclasses.replace(report, blocks=blocks, suspects=failing, status=status)


def undefined_backward(
    loss: FunctionLoss, seed: int, check: Callable[..., Report | None]
) -> list[Outcome | None]:
    """Undefined output gradients: all of them (zero gradients), then each alone (as zeros).

    None stands for a check that passed without a report.
    """
    outcomes: list[Outcome | None] = [_all_undefined(loss)]
    if len(loss.graph) > 1:
        weights = reductions(loss.outputs, full_jacobian=False, projections=1, seed=seed)[0].weights
        outcomes += [_one_undefined(loss, weights, k, check) for k in range(len(loss.graph))]
    return outcomes


def _all_undefined(loss: FunctionLoss) -> Outcome | None:
    """Every output's gradient undefined: the input gradients must be zero (or None).

    None where they are (no report is built for a check that passes).
    """
    what = f"backward ({UNDEFINED}: every output's gradient undefined)"
    undefined = torch._C._functions.UndefinedGrad  # torch's own gradcheck uses it
    try:
        grads = torch.autograd.grad(
            [_tensor(undefined()(o)) for o in loss.graph],
            loss.inputs,
            [torch.zeros_like(o) for o in loss.graph],
            retain_graph=True,
            allow_unused=True,
        )
    except Exception as error:  # the backward could not take None: a failed check
        return _raised(loss, what, error)
    if all(g is None for g in grads):
        return None  # no gradient at all: zero, as asked
    got = _pairs(loss.as_arrays(grads))
    compared = Compared(got, {n: np.zeros_like(g) for n, g in got.items()}, 0.0, "must be 0")
    if agrees(compared):
        return None
    report = comparison_report(
        compared,
        kind="undefined_grad",
        finding="is not zero although every output's gradient is undefined",
        coverage="the backward with every output's gradient undefined (None)",
    )
    context = "gives input gradients that are not zero, although every output gradient is None"
    return Outcome(what, context, report, numerical=False)


def _one_undefined(
    loss: FunctionLoss,
    weights: tuple[torch.Tensor, ...],
    k: int,
    check: Callable[..., Report | None],
) -> Outcome | None:
    """Output ``k``'s gradient undefined (left out of the backward): it must act as zero
    (``check`` gives None where fast mode's screen clears it)."""
    what = f"backward ({UNDEFINED}: output {k}'s gradient undefined, None in backward)"
    others = [j for j in range(len(loss.graph)) if j != k]
    try:
        grads = torch.autograd.grad(
            [loss.graph[j] for j in others],
            loss.inputs,
            [weights[j] for j in others],
            retain_graph=True,
            allow_unused=True,
        )
    except Exception as error:
        return _raised(loss, what, error)
    zeroed = tuple(torch.zeros_like(w) if j == k else w for j, w in enumerate(weights))
    context = f"the other outputs, projected on a random vector (output {k}'s weight zero)"
    report = check(zeroed, loss.as_arrays(grads))
    return None if report is None else Outcome(what, context, report)


def undefined_forward(loss: FunctionLoss) -> Outcome | None:
    """Each input's tangent undefined (a plain tensor) must act as a zero tangent.

    The other inputs carry random tangents; the outputs' tangents are compared
    exactly (None where the output has none either way). None where all agree.
    """
    args = primals(loss)
    gen = torch.Generator(device=loss.inputs[0].device).manual_seed(0)
    tangents = {
        i: torch.randn(args[i].shape, generator=gen, dtype=args[i].dtype, device=args[i].device)
        for i in loss.checked
    }
    for position, name in zip(loss.checked, loss.names, strict=True):
        what = f"forward-mode derivative (jvp; {UNDEFINED}: {name}'s tangent undefined)"
        zero = {**tangents, position: torch.zeros_like(args[position])}
        plain = {i: t for i, t in tangents.items() if i != position}
        try:
            compared = _tangents_compared(loss, args, zero, plain, name)
        except Exception as error:
            return _raised(loss, what, error)
        report = comparison_report(
            compared,
            kind="undefined_grad",
            finding=f"differs with {name}'s tangent undefined from with it zero",
            coverage=f"the jvp with {name}'s tangent undefined (a plain tensor), and zero",
        )
        if not report.passed:
            context = f"gives different output tangents with {name}'s tangent undefined than zero"
            return Outcome(what, context, report, numerical=False)
    return None


def _tangents_compared(
    loss: FunctionLoss,
    args: list[Any],
    zero: dict[int, torch.Tensor],
    plain: dict[int, torch.Tensor],
    name: str,
) -> Compared:
    """The output tangents, an input's tangent undefined (got) against zero (expected)."""
    got, expected = {}, {}
    pairs = zip(output_tangents(loss, args, plain), output_tangents(loss, args, zero), strict=True)
    for k, ((_, undefined), (_, zeroed)) in enumerate(pairs):
        if undefined is not None and zeroed is not None:
            got[f"output {k}"] = undefined.numpy(force=True).astype(np.float64)
            expected[f"output {k}"] = zeroed.numpy(force=True).astype(np.float64)
    return Compared(got, expected, 0.0, f"{name} undefined vs zero")


def batched_backward(loss: FunctionLoss, seed: int, check: Check) -> list[Outcome]:
    """The backward under vmap on two random vectors at once; each row checked numerically."""
    what = "backward under vmap (check_batched_grad)"
    plan = reductions(loss.outputs, full_jacobian=False, projections=2, seed=seed + 1)
    stacked = tuple(torch.stack([r.weights[k] for r in plan]) for k in range(len(loss.outputs)))

    def vjp(*vectors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        grads = torch.autograd.grad(
            loss.graph, loss.inputs, vectors, retain_graph=True, allow_unused=True
        )
        return tuple(
            torch.zeros((), dtype=x.dtype, device=x.device).expand(x.shape) if g is None else g
            for x, g in zip(loss.inputs, grads, strict=True)
        )

    try:
        with quiet_vmap_fallback():
            rows = legacy_vmap(vjp)(*stacked)  # as torch's own check_batched_grad runs it
    except Exception as error:  # torch reports this as a failed check
        return [_raised(loss, what, error)]
    return [
        Outcome(
            what,
            f"{r.context}, as row {b + 1} of one vmap'd backward",
            check(r.weights, loss.as_arrays([g[b] for g in rows])),
        )
        for b, r in enumerate(plan)
    ]


def grad_types(loss: FunctionLoss, values: tuple[Any, ...], *, forward: bool) -> Outcome:
    """On the inputs as given (their dtype, their device): each gradient's dtype and device."""
    copies = [v.detach().clone() if isinstance(v, torch.Tensor) else v for v in values]
    args = primals(loss, copies)  # the inputs' own dtype and device, never their storage
    inputs = [args[i] for i in loss.checked]
    with torch.enable_grad():
        loss.reseed()
        raw = as_outputs(loss.func(*args))
        kept = [raw[k] for k in loss.kept]
        ones = [torch.ones_like(o) for o in kept]
        grads = torch.autograd.grad(kept, inputs, ones, allow_unused=True)
    wrong = {
        name: f"its gradient is {g.dtype} on {g.device}, the input {x.dtype} on {x.device}"
        for name, x, g in zip(loss.names, inputs, grads, strict=True)
        if g is not None and (g.dtype, g.device) != (x.dtype, x.device)
    }
    if forward:
        wrong.update(_tangent_types(loss, args))
    shapes = {n: tuple(x.shape) for n, x in zip(loss.names, inputs, strict=True)}
    report = blocks_report(
        shapes,
        wrong,
        kind="dtype",
        coverage="the gradients' dtype and device against the inputs', on the inputs as given",
    )
    what = "backward (and jvp)" if forward else "backward"
    context = (
        "gives derivatives whose dtype or device differ from their tensor's (check_grad_dtypes)"
    )
    return Outcome(what, context, report, numerical=False)


def _tangent_types(loss: FunctionLoss, args: list[Any]) -> dict[str, str]:
    """Inputs whose unit tangent gives an output tangent of another dtype or device."""
    wrong = {}
    for i, name in zip(loss.checked, loss.names, strict=True):
        pairs = output_tangents(loss, args, {i: torch.ones_like(args[i])})
        for k, (out, tangent) in enumerate(pairs):
            if tangent is not None and (tangent.dtype, tangent.device) != (out.dtype, out.device):
                wrong[name] = (
                    f"its tangent gives output {k} a tangent of {tangent.dtype} on "
                    f"{tangent.device}, the output being {out.dtype} on {out.device}"
                )
    return wrong


def _equal(first: Sequence[torch.Tensor | None], second: Sequence[torch.Tensor | None]) -> bool:
    """Whether two runs of the backward gave the same gradients: no gradient both times, or
    equal values (NaN is not equal to itself). False also where it cannot tell cheaply."""
    return all(_same_tensor(a, b) for a, b in zip(first, second, strict=True))


def _same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    plain = not (a._is_zerotensor() or b._is_zerotensor())
    return plain and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


def _pairs(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Complex gradients as (real, imaginary) pairs, compared part by part; real ones as given."""
    return {name: as_pairs(a) for name, a in arrays.items()}


def _tensor(value: Any) -> torch.Tensor:
    """``UndefinedGrad()(o)``'s result: a tensor (typed as a list of them)."""
    return value[0] if isinstance(value, (list, tuple)) else value


def _raised(loss: FunctionLoss, what: str, error: Exception) -> Outcome:
    """A check whose call raised: failed, naming the exception."""
    shapes = {n: tuple(loss.work[i].shape) for i, n in zip(loss.checked, loss.names, strict=True)}
    sentence = f"no gradient: the {what.split(' (')[0]} raised {type(error).__name__}: {error}"
    report = raised_report(shapes, kind="raised", sentence=sentence)
    return Outcome(what, f"raised {type(error).__name__}: {error}", report, numerical=False)
