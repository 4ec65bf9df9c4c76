"""The checks `gradcheck` runs, in order: the backward's, then the jvp's, each with torch's extras.

Each reduction of the outputs (:mod:`gradproof.torch._reductions`) is one
scalar loss; its derivative from the backward (or the jvp) is checked against
gradproof's numerical one. torch's rule (``atol``/``rtol``), where given,
judges the full Jacobians; torch's other options add the checks of
:mod:`gradproof.torch._extra`. Every stage returns a :class:`Tally`: the
checks it ran, and the failures among them.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

import gradproof
from gradproof._engine.screen import clears
from gradproof._report import Report
from gradproof.torch._extra import (
    batched_backward,
    grad_types,
    reentrancy,
    undefined_backward,
    undefined_forward,
    within_nondet_tol,
)
from gradproof.torch._findings import Outcome, raised_report
from gradproof.torch._forward import Jacobians, forward_gradient, forward_jacobians
from gradproof.torch._function_loss import FunctionLoss, WeightedLoss
from gradproof.torch._options import TorchOptions
from gradproof.torch._reductions import Reduction, weighted_sum
from gradproof.torch._rule import TorchRule, rule_decides

BACKWARD = "backward"
FORWARD = "forward-mode derivative (jvp)"


@dataclasses.dataclass
class Tally:
    """The checks a stage ran, and the failures among them."""

    total: int = 0
    failures: list[Outcome] = dataclasses.field(default_factory=list)

    def add(self, outcome: Outcome | None) -> None:
        """Count ``outcome`` (None: a check that passed without a report)."""
        self.total += 1
        if outcome is not None and not outcome.report.passed:
            self.failures.append(outcome)

    def extend(self, other: Tally) -> None:
        self.total += other.total
        self.failures.extend(other.failures)


class Run:
    """One `gradcheck`: the function traced, what to check, and how to judge it."""

    def __init__(
        self,
        loss: FunctionLoss,
        params: dict[str, np.ndarray],
        plan: list[Reduction],
        *,
        rule: TorchRule | None,
        options: TorchOptions,
        engine: Callable[[], dict[str, Any]],
        seed: int,
        forward_option: str = "check_forward_ad",
        screens: bool = False,
    ) -> None:
        self.loss, self.params, self.plan = loss, params, plan
        self.rule, self.options, self.seed = rule, options, seed
        self._engine = engine  # gradproof.check's options, made when the first check needs them
        self.forward_option = forward_option  # as the user named it, for misuse errors
        self.shapes = {n: tuple(a.shape) for n, a in params.items()}
        self.evaluated = False  # the first check evaluates func; the later ones replay it
        # fast_mode: a backward the screen clears (gradproof._engine.screen) needs no check
        self.screens = screens and not any(np.iscomplexobj(a) for a in params.values())

    def screened(self, weights: tuple[torch.Tensor, ...], grad: dict[str, np.ndarray]) -> bool:
        """Whether fast mode's screen clears ``grad`` on every input: a few random
        directional derivatives per input, all evaluated in one call."""
        if not self.screens or any(o.is_complex() for o in self.loss.outputs):
            return False
        names, spans, theta = self._flat
        g = np.concatenate([np.asarray(grad[n], dtype=np.float64).ravel() for n in names])

        def values(points: np.ndarray) -> np.ndarray:
            batch = {
                n: points[:, span].reshape(len(points), *self.shapes[n])
                for n, span in zip(names, spans, strict=True)
            }
            outputs = self.loss.tried_batch(batch)  # vmap's rows tried the first time
            return weighted_sum(outputs, weights, True).detach().cpu().numpy()

        def magnitude() -> float:
            terms = zip(self.loss.outputs, weights, strict=True)
            return float(sum(float((o.abs() * w.abs()).sum()) for o, w in terms))

        return clears(values, theta, g, spans, seed=self.seed, magnitude=magnitude)

    @functools.cached_property
    def _flat(self) -> tuple[list[str], list[slice], np.ndarray]:
        """The inputs with elements, their spans in one vector, and that vector."""
        names = [n for n in self.params if self.params[n].size]
        stops = itertools.accumulate((self.params[n].size for n in names), initial=0)
        spans = [slice(lo, hi) for lo, hi in itertools.pairwise(stops)]
        theta = np.concatenate([self.params[n].ravel() for n in names])
        return names, spans, theta

    def check(self, weights: tuple[torch.Tensor, ...], grad: dict[str, np.ndarray]) -> Report:
        """gradproof's check of ``grad`` against the derivative of ``sum_k <w_k, out_k>``."""
        weighted = WeightedLoss(self.loss, weights, replay=self.evaluated)
        self.evaluated = True
        return gradproof.check(weighted, self.params, grad, **self.engine)

    @functools.cached_property
    def engine(self) -> dict[str, Any]:
        """gradproof.check's options (whether func runs under vmap is tried here, once)."""
        return self._engine()

    def tally(self, values: tuple[Any, ...]) -> Tally:
        """Every check the options ask for: the backward's, then the jvp's."""
        tally = Tally()
        if self.options.check_grad_dtypes:  # first: a gradient of the wrong dtype is off anyway
            tally.add(grad_types(self.loss, values, forward=self.options.check_forward_ad))
        if self.options.check_backward_ad:
            tally.extend(backward_stage(self))
        if self.options.check_forward_ad:
            tally.extend(forward_stage(self))
        return tally


def backward_stage(run: Run) -> Tally:
    """The backward on every reduction (run twice: ``nondet_tol``), torch's rule, the extras."""
    tally = Tally()
    outcomes: list[Outcome | None] = []
    for reduction in run.plan:
        grad, nondeterministic = reentrancy(run.loss, reduction, run.options.nondet_tol)
        if nondeterministic is not None:  # not judged as wrong elements: it is noise
            tally.add(nondeterministic)
            return tally
        if run.screened(reduction.weights, grad):  # fast_mode: cleared, a pass
            outcomes.append(None)
            continue
        report = within_nondet_tol(run.check(reduction.weights, grad), run.options.nondet_tol)
        outcomes.append(Outcome(BACKWARD, reduction.context, report))
    judged = _judged(run, outcomes, None)
    check = ruled(run)
    if run.options.check_undefined_grad:
        # first: a backward that misreads an undefined gradient fails the projections
        # too (one backward per output, as torch's Jacobian), and this names the cause
        for outcome in undefined_backward(run.loss, run.seed, screened(run, check)):
            tally.add(outcome)
    tally.extend(judged)
    if run.options.check_batched_grad:
        for outcome in batched_backward(run.loss, run.seed, check):
            tally.add(outcome)
    return tally


def ruled(run: Run) -> Any:
    """``run.check``, with torch's rule deciding its failures where ``atol``/``rtol`` is given."""
    rule = run.rule
    if rule is None:
        return run.check

    def check(weights: tuple[torch.Tensor, ...], grad: dict[str, np.ndarray]) -> Report:
        report = run.check(weights, grad)
        if report.passed or not rule_decides(report):
            return report
        if rule.holds_projected(run.loss, run.params, weights, grad):
            return rule.forgive(report)
        return report

    return check


def screened(run: Run, check: Any) -> Any:
    """``check``, giving None (a pass) where fast mode's screen clears the gradient."""

    def first_screened(weights: tuple[torch.Tensor, ...], grad: dict[str, np.ndarray]) -> Any:
        return None if run.screened(weights, grad) else check(weights, grad)

    return first_screened


def forward_stage(run: Run) -> Tally:
    """The jvp on every reduction, torch's rule on its Jacobians, and under vmap where asked."""
    jacobians = forward_jacobians(run.loss, batched=False, option=run.forward_option)
    outcomes = [
        Outcome(
            FORWARD,
            reduction.context,
            run.check(
                reduction.weights, forward_gradient(jacobians, reduction.weights, run.params)
            ),
        )
        for reduction in run.plan
    ]
    tally = _judged(run, outcomes, jacobians)
    if run.options.check_undefined_grad:
        tally.add(undefined_forward(run.loss))
    if run.options.check_batched_forward_grad:
        tally.add(_batched_forward(run))
    return tally


def _batched_forward(run: Run) -> Outcome:
    """The jvp under vmap (one call per chunk of unit tangents) on the first reduction."""
    what = "forward-mode derivative under vmap (check_batched_forward_grad)"
    try:
        jacobians = forward_jacobians(run.loss, batched=True, option=run.forward_option)
    except Exception as error:  # torch reports this as a failed check, not as misuse
        sentence = f"the jvp under vmap raised {type(error).__name__}: {error}"
        report = raised_report(run.shapes, kind="raised", sentence=sentence)
        return Outcome(what, f"raised {type(error).__name__}: {error}", report, numerical=False)
    reduction = run.plan[0]
    grad = forward_gradient(jacobians, reduction.weights, run.params)
    return Outcome(what, reduction.context, ruled(run)(reduction.weights, grad))


def _judged(run: Run, outcomes: Sequence[Outcome | None], analytic: Jacobians | None) -> Tally:
    """The reductions' failures (None: one the screen cleared), with torch's rule deciding
    where it is given (the screen runs only where it is not)."""
    tally = Tally(total=len(outcomes) + (run.rule is not None))
    failures = [o for o in outcomes if o is not None and not o.report.passed]
    first = outcomes[0] if outcomes else None
    if run.rule is None or first is None:
        tally.failures = failures
        return tally
    broken = run.rule.check(run.loss, run.params, first.report, analytic)
    if broken is None:  # the rule holds: it forgives the failures it decides
        tally.failures = [o for o in failures if not rule_decides(o.report)]
    else:
        tally.failures = [Outcome(first.what, run.rule.describe(), broken), *failures]
    return tally
