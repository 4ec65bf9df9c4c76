"""From a function and its inputs to `gradcheck`'s verdict: True, False, or a GradcheckError.

Shared by :func:`~gradproof.torch.gradcheck` and
:func:`~gradproof.torch.gradgradcheck` (which checks the function
``(inputs, grad_outputs) -> backward``): the function is traced on copies,
every check the options ask for runs (:mod:`gradproof.torch._stages`), and the
first failure becomes the error, its message naming what was checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError

import gradproof
from gradproof._report import Report
from gradproof.torch._common import (
    Precision,
    as_pairs,
    compute_dtype,
    fixed_randomness,
    to_numpy64,
)
from gradproof.torch._function_loss import CheckedInputs, FunctionLoss
from gradproof.torch._options import TorchOptions
from gradproof.torch._reductions import reductions
from gradproof.torch._rule import TorchRule
from gradproof.torch._stages import Run, Tally


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


@dataclasses.dataclass(frozen=True)
class Subject:
    """Whose derivative is checked, as the error message names it.

    >>> Subject("gradproof.torch.gradgradcheck", "Gelu.apply", "'s backward").phrase("jvp")
    "the jvp of `Gelu.apply`'s backward"
    """

    tool: str
    name: str
    suffix: str = ""
    owner: str = ""  # whose outputs the reductions weight: "" (func's), "backward's "
    forward_option: str = "check_forward_ad"  # the option that asks for the jvp's check

    def phrase(self, what: str) -> str:
        return f"the {what} of `{self.name}`{self.suffix}"


@dataclasses.dataclass(frozen=True)
class Config:
    """How to check: torch's options, the tolerance rule, and gradproof's own options."""

    options: TorchOptions
    rule: TorchRule | None
    dtype: Precision
    full_jacobian: bool
    projections: int
    batched: bool
    engine: dict[str, Any]  # gradproof.check's options (eps, mode, seed, tol...)
    fast_mode: bool = False  # probe mode, where the inputs are large enough to gain by it


def verdict(
    func: Callable[..., Any],
    values: tuple[Any, ...],
    checked: CheckedInputs,
    config: Config,
    *,
    raise_exception: bool,
    subject: Subject,
) -> bool:
    """True where every check passes; else False, or the first failure raised."""
    tensors = [values[i] for i in checked.positions]
    target = compute_dtype(config.dtype, tensors, "the inputs that require grad")
    seed = int(config.engine.get("seed", 0))
    with fixed_randomness([v for v in values if isinstance(v, torch.Tensor)]):
        loss = FunctionLoss(func, values, checked, target, seed=seed, batched=config.batched)
        params = {n: to_numpy64(t) for n, t in zip(checked.names, tensors, strict=True)}
        plan = reductions(
            loss.outputs,
            full_jacobian=config.full_jacobian,
            projections=config.projections,
            seed=seed,
            owner=subject.owner,
        )

        def engine() -> dict[str, Any]:  # at the first full check: a screen may clear them all
            batched = config.batched and loss.vmap_works(params)
            return {**config.engine, "batched": batched, **_fast_mode(config, params, batched)}

        run = Run(
            loss,
            params,
            plan,
            rule=config.rule,
            options=config.options,
            engine=engine,
            seed=seed,
            forward_option=subject.forward_option,
            screens=_screens(config),
        )
        loss.cache.enabled = _replays(config, plan, loss)
        tally = run.tally(values)
    if not tally.failures:
        return True
    if not raise_exception:
        return False
    raise error(subject, tally)


def error(subject: Subject, tally: Tally) -> GradcheckError:
    """The error for the first failure, its report noting what was checked."""
    first = tally.failures[0]
    report = first.report
    more = f" ({len(tally.failures)} of {tally.total} checks failed; the first is shown)"
    if first.numerical:
        verb = "disagrees with" if report.status == "fail" else "could not be judged against"
        claim = f"{verb} the numerical derivative of {first.context}"
    else:
        claim = first.context
    return GradcheckError(
        dataclasses.replace(report, extra={**report.extra, "checked": first.context}),
        f"{subject.tool}: {subject.phrase(first.what)} {claim}{more if tally.total > 1 else ''}.",
    )


# Below this many real coordinates, every coordinate costs less than gradproof's probes
# (their directions, bisection and fixed set-up): fast_mode checks them all, so it is never
# slower than the default. Evaluated under vmap, all the coordinates take a few calls, and
# probing wins from about 700 coordinates on (op_db samples by bench/fastmode.py, and a
# tanh/clamp function from 256 to 8,192 coordinates); one call per point, a probe check's
# ~40 calls are fewer than 2N from a few dozen coordinates on.
FAST_MODE_FULL_UP_TO = {True: 1024, False: 32}


def _fast_mode(config: Config, params: dict[str, Any], batched: bool) -> dict[str, Any]:
    """``{"mode": "probe"}`` where ``fast_mode`` asks for speed and probing gives it."""
    size = sum(as_pairs(a).size for a in params.values())  # real coordinates
    return {"mode": "probe"} if config.fast_mode and size > FAST_MODE_FULL_UP_TO[batched] else {}


# gradproof.check's options that leave fast mode's screen in place: any other (tol, eps,
# scheme, noise...) asks for the full check's own judgement
SCREEN_KEEPS = frozenset({"seed", "progress"})


def _screens(config: Config) -> bool:
    """Whether fast mode screens first: asked for, with gradproof's error model (no torch
    rule) and no option of the full check's given."""
    given = {k for k, v in config.engine.items() if v is not None}
    return config.fast_mode and config.rule is None and given <= SCREEN_KEEPS


def _replays(config: Config, plan: list[Any], loss: FunctionLoss) -> bool:
    """Whether a second numerical check will replay the first one's points: more than one
    reduction or output, or a check of the batched backward or the jvp. Where none will,
    the outputs are not kept (keying them costs a pass over every point)."""
    options = config.options
    several = len(plan) > 1 or len(loss.graph) > 1
    return several or options.check_batched_grad or options.check_forward_ad
