"""`check`: compare a gradient with the loss's numerical derivative.

The pipeline, one step per module: validate the options (``validate``), flatten
the parameters and the gradient (``tree``, ``gradients``), measure the loss at
the base point (``noise``), run a mode (``coordinates`` or ``probe``, which
evaluate through ``evaluate``/``parallel`` with a ``schemes`` formula and judge
with ``judge``/``diagnose``), then assemble the frozen :class:`~gradproof.Report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Literal

import numpy as np

from gradproof._engine.blocks import apply_tol, overall_status, suspects
from gradproof._engine.budget import Budget, Limits
from gradproof._engine.context import Context, ModeResult
from gradproof._engine.coordinates import coordinate_mode
from gradproof._engine.evaluate import Evaluator
from gradproof._engine.gradients import calls_gradient, params_precision, resolve_gradient
from gradproof._engine.noise import Baseline, confirm_deterministic, measure_baseline
from gradproof._engine.parallel import Pool, validate_workers
from gradproof._engine.probe_verdict import probe_mode
from gradproof._engine.progress import Progress, validate_progress
from gradproof._engine.schemes import SCHEMES, Scheme
from gradproof._engine.tree import Layout, flatten
from gradproof._engine.validate import (
    refuse_unknown_keywords,
    validate_batched,
    validate_callable,
    validate_mode,
    validate_passed_on,
    validate_positive,
    validate_scheme,
)
from gradproof._errors import GradcheckError
from gradproof._report import Report

SchemeOption = Literal["auto", "central", "richardson", "complex"]
Mode = Literal["full", "sample", "probe"]
DEFAULT_SAMPLES = {"sample": 32, "probe": 10}


@refuse_unknown_keywords
def check(
    loss: Callable[[Any], Any],
    params: Any,
    grad: Any,
    *,
    eps: float | None = None,
    tol: float | None = None,
    scheme: SchemeOption = "auto",
    noise: float | None = None,
    batched: bool = False,
    mode: Mode = "full",
    samples: int | None = None,
    seed: int = 0,
    budget: float | int | str | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
    timeout: float | None = None,
) -> Report:
    """Check ``grad`` against the numerical derivative of ``loss`` at ``params``.

    Args:
        loss: ``loss(params) -> scalar``.
        params: a number, a numpy array, or a nested dict/list/tuple of them.
            Each leaf is a block, named by its path (``"W1"``, ``"layers.0.W"``).
        grad: the gradient under test, the same structure as ``params`` (the
            notebook's ``dW1``-style keys are accepted) or a callable ``grad(params)``.
        eps: a fixed step for every coordinate. Given alone it selects the
            notebook's method, plain central differences; by default each coordinate gets a
            step scaled to its magnitude and the precision.
        tol: a bound on the notebook's relative difference over every checked
            coordinate, on top of the error model (None: the error model alone
            decides). As in the notebook, it judges the overall difference: where
            that exceeds ``tol``, the blocks whose own difference exceeds it fail.
        scheme: ``"auto"``, ``"central"`` (2 evaluations per coordinate,
            O(h^2)), ``"richardson"`` (4, O(h^4)) or ``"complex"`` (1, for
            losses that accept complex input). ``"auto"`` without ``eps`` tries
            the central pair first and adds Richardson's two points only where
            the central difference cannot clear a coordinate (see
            :mod:`gradproof._engine.coordinates`).
        noise: the loss's own noise (absolute); a loss that varies more than
            this between identical calls raises NondeterministicLossError.
        batched: the loss takes a leading batch axis on every leaf and returns
            one value per parameter set; evaluations go in chunks of bounded
            memory.
        mode: ``"full"`` (every coordinate), ``"sample"`` (``samples``
            coordinates per block, stratified and seeded) or ``"probe"``
            (``samples`` random ±1 directions per block, then bisection to the
            wrong elements; the report states the miss probability).
        samples: coordinates per block (sample mode, default 32) or directions
            per block (probe mode, default 10: miss probability <= 2^-10).
        seed: seeds every random choice, so a check is repeatable.
        budget: a limit: a float is seconds, an int loss evaluations, a string
            either ("30s", "2min", "5000"). The set-up (about 20 evaluations:
            the base value and the noise measurement) is always spent; then
            the check stops between pieces of work, and its report says what
            was and was not covered.
        workers: evaluate in this many local processes, started with ``spawn``
            and one BLAS thread each (the loss must be picklable; closures and
            lambdas need cloudpickle, which Dask brings). Applies to the
            coordinate modes; probe mode runs its probes in order, each
            depending on the last.
        executor: evaluate on any ``concurrent.futures.Executor`` instead (a
            ``ThreadPoolExecutor`` needs no pickling, but a thread-safe loss).
        progress: a bar on stderr (None: on a terminal, for checks longer than
            about a second; True: always; False: never).
        timeout: seconds one call of the loss may take (with ``batched=True``, one
            batch). A call on a worker is ended when it runs over; a call in this
            process cannot be interrupted, and raises once it returns. See
            docs/guarantees.md.

    Returns:
        A frozen :class:`Report`.

    Raises:
        InvalidArgument: misuse (the message names the argument and the fix).
        NondeterministicLossError: the loss changes between identical calls.
        WorkerError: a worker process died, or a call ran past ``timeout`` or far
            past the budget.

    >>> import numpy as np, gradproof
    >>> report = gradproof.check(lambda p: np.sum(p ** 2), np.array([1.0, -2.0]),
    ...                          lambda p: 2 * p)
    >>> report.passed, report.difference < 1e-9
    (True, True)
    >>> gradproof.check(lambda p: np.sum(p ** 2), np.ones(1000), lambda p: 2 * p,
    ...                 mode="probe").miss_probability < 1e-3
    True
    """
    started = time.perf_counter()
    _validate(loss, eps, tol, noise, scheme, batched, mode, samples, seed, workers, executor)
    validate_progress(progress)
    validate_positive("timeout", timeout, "pass seconds per call such as timeout=60.0, or None")
    limit = Budget.parse(budget, reserved=1)  # one evaluation for the closing determinism test
    layout, theta = flatten(params)
    bar = Progress(progress)
    pool = None
    try:
        limits = Limits(timeout=timeout, budget=limit)
        local = Evaluator(loss, layout, theta, batched=batched, progress=bar, limits=limits)
        # The loss before the gradient function runs: a backward that writes into data
        # the loss reads is caught by comparing it with the values after (noise.py).
        before = local.value() if calls_gradient(grad) else None
        g, grad_eps = resolve_gradient(grad, params, layout)
        local.know_gradient(g)
        if (workers is not None or executor is not None) and mode != "probe":
            # Before any step away from θ: an unpicklable loss fails here, having cost little.
            pool = Pool(loss, layout, theta, batched, workers=workers, executor=executor)
        evaluator = local.with_pool(pool)
        base = measure_baseline(evaluator, layout, noise, before, flat=not g.any())
        ctx = _context(layout, theta, g, grad_eps, evaluator, base, scheme, eps, limit, seed)
        outcome = _run_mode(ctx, mode, samples, bar)
        confirm_deterministic(evaluator, base, noise)
    finally:
        if pool is not None:
            pool.close()
        bar.close()
    return _report(ctx, outcome, base, mode, tol, time.perf_counter() - started)


def _validate(
    loss: Any,
    eps: Any,
    tol: Any,
    noise: Any,
    scheme: Any,
    batched: Any,
    mode: Any,
    samples: Any,
    seed: Any,
    workers: Any,
    executor: Any,
) -> None:
    """Every option of :func:`check` that can be checked before any work, in one place."""
    validate_callable("loss", loss, "pass a function loss(params) -> scalar")
    validate_positive("eps", eps, "pass a small step such as eps=1e-7, or leave eps=None")
    validate_positive("tol", tol, "pass a bound such as tol=2e-7, or leave tol=None")
    validate_positive("noise", noise, "pass the loss's noise level, or leave noise=None")
    validate_scheme(scheme)
    validate_batched(batched)
    validate_mode(mode, samples, seed, scheme)
    validate_workers(workers, executor)


def _context(
    layout: Layout,
    theta: np.ndarray,
    g: np.ndarray,
    grad_eps: float,
    evaluator: Evaluator,
    base: Baseline,
    scheme: str,
    eps: float | None,
    budget: Budget,
    seed: int,
) -> Context:
    return Context(
        layout=layout,
        theta=theta,
        g=g,
        evaluator=evaluator,
        scheme=_choose_scheme(scheme, eps),
        adaptive=scheme == "auto" and eps is None,
        eps=eps,
        j0=base.j0,
        delta=base.delta,
        level=base.level,
        budget=budget,
        seed=seed,
        grad_eps=max(grad_eps, base.level.eps, params_precision(layout)),
        block_delta=base.block_delta,
    )


def _run_mode(ctx: Context, mode: str, samples: int | None, progress: Progress) -> ModeResult:
    """Dispatch to the mode's module: coordinates (full, sample) or probe."""
    if mode == "probe":
        return probe_mode(ctx, samples or DEFAULT_SAMPLES["probe"], progress)
    per_block = None if mode == "full" else samples or DEFAULT_SAMPLES["sample"]
    return coordinate_mode(ctx, mode, per_block, progress)


def _report(
    ctx: Context, outcome: ModeResult, base: Baseline, mode: str, tol: float | None, seconds: float
) -> Report:
    """Apply ``tol`` on top of the error model and assemble the frozen report."""
    # Where the gradient and its estimate are both ~0, their relative difference is
    # noise over noise: the notebook's threshold does not judge it.
    tol_judges = None if "near_zero" in outcome.extra else tol
    blocks = apply_tol(list(outcome.blocks), outcome.difference, tol_judges)
    extra = dict(outcome.extra)
    if ctx.budget.limited:
        extra["budget"] = ctx.budget.describe()
    return Report(
        status=overall_status(blocks, outcome.difference, tol_judges),
        difference=outcome.difference,
        tol=tol,
        blocks={b.name: b for b in blocks},
        suspects=suspects(blocks),
        scheme=ctx.scheme.name,
        eps=ctx.eps,
        precision=base.precision,
        evaluations=ctx.evaluator.evaluations,
        seconds=seconds,
        mode=mode,
        notes=outcome.notes,
        coverage=outcome.coverage,
        miss_probability=outcome.miss_probability,
        extra=extra,
    )


def _choose_scheme(scheme: str, eps: float | None) -> Scheme:
    """``"auto"`` is Richardson's (run central-first), or the notebook's central with ``eps``."""
    if scheme == "auto":
        return SCHEMES["central" if eps is not None else "richardson"]
    return SCHEMES[scheme]


def assert_gradients_match(
    loss: Callable[[Any], Any], params: Any, grad: Any, **options: Any
) -> Report:
    """Like :func:`check`, but raise :class:`GradcheckError` unless the check passes.

    The error's message is the text report, so a failing test shows which
    block and element are wrong and what kind of bug it looks like.

    >>> import numpy as np, gradproof
    >>> gradproof.assert_gradients_match(lambda p: float(np.sum(p ** 3)),
    ...                                  np.ones(3), lambda p: 3 * p ** 2).passed
    True
    """
    validate_passed_on(assert_gradients_match, options, to=check, own=set())
    report = check(loss, params, grad, **options)
    if not report.passed:
        raise GradcheckError(report)
    return report
