"""`check`: compare a gradient with the loss's numerical derivative."""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Literal

import numpy as np

from gradproof._engine.budget import Budget
from gradproof._engine.coordinates import Context, round_robin, run_coordinates, stratified_order
from gradproof._engine.evaluate import Evaluator
from gradproof._engine.gradients import resolve_gradient
from gradproof._engine.judge import (
    Judged,
    apply_tol,
    blocks_of,
    global_signal,
    judge_block,
    overall_status,
    relative_difference,
    suspects,
    unchecked,
)
from gradproof._engine.noise import measure_noise
from gradproof._engine.parallel import Pool, validate_workers
from gradproof._engine.probe import SAMPLED, block_result, detectable, miss_bound, probe_blocks
from gradproof._engine.progress import Progress, validate_progress
from gradproof._engine.schemes import SCHEMES, Scheme
from gradproof._engine.tree import Layout, flatten
from gradproof._engine.validate import (
    MODES,
    validate_callable,
    validate_positive,
    validate_scheme,
    validate_seed,
)
from gradproof._errors import GradcheckError, NondeterministicLossError, invalid
from gradproof._report import BlockResult, Report

SchemeOption = Literal["auto", "central", "richardson", "complex"]
Mode = Literal["full", "sample", "probe"]
REPEATS = 3  # evaluations of the loss at the base point before the check
DEFAULT_SAMPLES = {"sample": 32, "probe": 10}


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
) -> Report:
    """Check ``grad`` against the numerical derivative of ``loss`` at ``params``.

    Args:
        loss: ``loss(params) -> scalar``.
        params: a number, a numpy array, or a nested dict/list/tuple of them.
            Each leaf is a block, named by its path (``"W1"``, ``"layers.0.W"``).
        grad: the gradient under test, the same structure as ``params`` (the
            seeds' ``dW1``-style keys are accepted) or a callable ``grad(params)``.
        eps: a fixed step for every coordinate. Given alone it selects the
            seeds' plain central differences; by default each coordinate gets a
            step scaled to its magnitude and the precision.
        tol: a bound on the seeds' relative difference over every checked
            coordinate, on top of the error model (None: the error model alone
            decides). As in the seeds, it judges the overall difference: where
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

    Returns:
        A frozen :class:`Report`.

    Raises:
        InvalidArgument: misuse (the message names the argument and the fix).
        NondeterministicLossError: the loss changes between identical calls.

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
    validate_callable("loss", loss, "pass a function loss(params) -> scalar")
    validate_positive("eps", eps, "pass a small step such as eps=1e-7, or leave eps=None")
    validate_positive("tol", tol, "pass a bound such as tol=2e-7, or leave tol=None")
    validate_positive("noise", noise, "pass the loss's noise level, or leave noise=None")
    validate_scheme(scheme)
    _validate_mode(mode, samples, seed, scheme)
    validate_workers(workers, executor)
    validate_progress(progress)
    limit = Budget.parse(budget)
    layout, theta = flatten(params)
    g, grad_eps = resolve_gradient(grad, params, layout)
    bar = Progress(progress)
    evaluator = Evaluator(loss, layout, theta, batched=batched, progress=bar)
    pool = None
    limit.reserved = 1  # for the closing determinism check
    try:
        if (workers is not None or executor is not None) and mode != "probe":
            # Before any evaluation: an unpicklable loss fails here, having cost nothing.
            pool = Pool(loss, layout, theta, batched, workers=workers, executor=executor)
        j0, spread = _base_value(evaluator, noise)
        precision, machine_eps = _precision(layout, evaluator)
        chosen = _choose_scheme(scheme, eps)
        measured = measure_noise(evaluator, j0, machine_eps)
        delta = _noise_level(j0, spread, measured, machine_eps, noise)
        evaluator.pool = pool
        ctx = Context(
            layout=layout,
            theta=theta,
            g=g,
            evaluator=evaluator,
            scheme=chosen,
            adaptive=scheme == "auto" and eps is None,
            eps=eps,
            j0=j0,
            delta=delta,
            machine_eps=machine_eps,
            budget=limit,
            seed=seed,
            grad_eps=grad_eps,
            evaluate=lambda i, o: _evaluate(evaluator, chosen, i, o),
        )
        if mode == "probe":
            outcome = _probe_mode(ctx, samples or DEFAULT_SAMPLES["probe"], tol, bar)
        else:
            per_block = None if mode == "full" else samples or DEFAULT_SAMPLES["sample"]
            outcome = _coordinate_mode(ctx, mode, per_block, tol, bar)
        _confirm_deterministic(evaluator, j0, spread, noise)
    finally:
        if pool is not None:
            pool.close()
        bar.close()
    blocks, difference, notes, coverage, miss, extra = outcome
    blocks = apply_tol(blocks, difference, tol)
    if limit.limited:
        extra["budget"] = limit.describe()
    return Report(
        status=overall_status(blocks, difference, tol),
        difference=difference,
        tol=tol,
        blocks={b.name: b for b in blocks},
        suspects=suspects(blocks),
        scheme=_scheme_name(ctx),
        eps=eps,
        precision=precision,
        evaluations=evaluator.evaluations,
        seconds=time.perf_counter() - started,
        mode=mode,
        notes=notes,
        coverage=coverage,
        miss_probability=miss,
        extra=extra,
    )


Outcome = tuple[list[BlockResult], float, tuple[str, ...], str, "float | None", dict[str, Any]]


def _coordinate_mode(
    ctx: Context, mode: str, per_block: int | None, tol: float | None, bar: Progress
) -> Outcome:
    orders = stratified_order(ctx.layout, per_block, ctx.seed)
    wanted = round_robin(orders)
    if mode == "full" and not ctx.budget.limited:
        wanted = np.sort(wanted)  # cache-friendly, and the seeds' order
    indices, judged = run_coordinates(ctx, wanted, bar)
    g, theta = ctx.g[indices], ctx.theta[indices]
    signal = global_signal(g, judged.numerical)
    blocks = []
    missed_one = 0.0
    for block, sl, positions in blocks_of(ctx.layout, indices):
        missed_one = max(missed_one, 1 - positions.size / block.size)
        if positions.size == 0:
            blocks.append(
                unchecked(block, "not checked: the budget ran out before this block was reached")
            )
            continue
        part = _slice_judged(judged, sl)
        blocks.append(judge_block(block, positions, g[sl], theta[sl], part, signal, None))
    difference = relative_difference(g, judged.numerical)
    extra: dict[str, Any] = dict(ctx.extra)
    if ctx.adaptive:
        extra["central_first"] = {"coordinates": int(indices.size), "refined": ctx.refined}
    total = ctx.theta.size
    complete = indices.size == total
    if complete:
        coverage = f"every coordinate: {total} of {total}"
        miss = None
    else:
        coverage = _partial_coverage(ctx, mode, indices.size, per_block, blocks)
        miss = missed_one
        extra["miss_probability_means"] = (
            "the largest chance, over blocks, that one wrong element was not among the "
            "checked coordinates (1 - checked/size); a bug touching a fraction f of a block "
            "is missed with probability about (1 - f)^checked"
        )
    extra["checked"] = {b.name: b.checked for b in blocks}
    return blocks, difference, _notes(judged, blocks), coverage, miss, extra


def _partial_coverage(
    ctx: Context, mode: str, done: int, per_block: int | None, blocks: list[BlockResult]
) -> str:
    total = ctx.theta.size
    what = (
        f"a stratified random sample of up to {per_block} coordinates per block (seed {ctx.seed})"
        if mode == "sample"
        else f"coordinates in stratified random order (seed {ctx.seed})"
    )
    stopped = (
        f"; the budget ({ctx.budget.describe()}) ran out first"
        if ctx.budget.limited
        and (mode == "full" or done < sum(min(per_block or 0, b.size) for b in blocks))
        else ""
    )
    per = ", ".join(f"{b.name} {b.checked}/{b.size}" for b in blocks[:8])
    more = f", and {len(blocks) - 8} more blocks" if len(blocks) > 8 else ""
    return (
        f"{done} of {total} coordinates: {what}{stopped}; not covered: {total - done} "
        f"coordinates ({per}{more})"
    )


def _probe_mode(ctx: Context, per_block: int, tol: float | None, bar: Progress) -> Outcome:
    found, rounds = probe_blocks(ctx, per_block, bar)
    a = np.array([p.analytic for e in found for p in e.probes])
    n = np.array([p.numerical for e in found for p in e.probes])
    signal = max(float(np.sqrt(np.mean(ctx.g**2))), 0.0)
    blocks = [block_result(ctx, entry, signal) for entry in found]
    difference = relative_difference(a, n)
    miss = miss_bound(rounds)
    thresholds = {e.block.name: detectable(e, ctx) for e in found}
    # Relative to the block's largest gradient element; a block whose gradient is all
    # zero is measured against the whole gradient's largest element instead.
    whole = float(np.max(np.abs(ctx.g), initial=0.0))
    relative = {
        e.block.name: thresholds[e.block.name]
        / max(float(np.max(np.abs(ctx.g[e.block.start : e.block.stop]))) or whole, 1e-300)
        for e in found
    }
    extra: dict[str, Any] = dict(ctx.extra)
    extra.update(
        rounds=rounds,
        requested_rounds=per_block,
        detectable_error=thresholds,
        detectable_relative=relative,
        localised={
            e.block.name: [list(b) for b in blocks[i].wrong_elements] for i, e in enumerate(found)
        },
        unresolved={e.block.name: [p.size for p in e.unresolved] for e in found},
        wrong_throughout={e.block.name: e.wide for e in found if e.wide},
    )
    worst = max(relative.values(), default=float("inf"))
    cut = (
        f"; the budget ({ctx.budget.describe()}) allowed {rounds} of {per_block}"
        if rounds < per_block
        else ""
    )
    coverage = (
        f"nothing: the budget ({ctx.budget.describe()}) ran out before the first round of "
        f"probes; no block was checked"
        if rounds == 0 and not ctx.extra.get("probes")
        else f"every coordinate, through {rounds} random ±1 directions per block "
        f"({ctx.extra.get('probes', 0)} probes with bisection, seed {ctx.seed}){cut}; a bug "
        f"with any element off by more than {worst:.1e} of its block's largest gradient "
        f"element (per block: extra['detectable_relative']) is missed with probability "
        f"≤ {miss:.1e}"
    )
    for entry in found:
        if entry.wide:
            coverage += (
                f"; {entry.block.name} is wrong throughout ({entry.wide}): not bisected, its "
                f"wrong elements are examples from {SAMPLED} sampled coordinates"
            )
        elif entry.unresolved:
            coverage += (
                f"; {entry.block.name}: {len(entry.unresolved)} failing part(s) not localised "
                "to single elements"
            )
    notes = []
    if any(b.status == "fail" for b in blocks):
        notes.append(
            "Suspects are ordered latest block first: backprop runs from the output back "
            "towards the input, so the latest failing block is where the first error arose."
        )
    return blocks, difference, tuple(notes), coverage, miss, extra


def _scheme_name(ctx: Context) -> str:
    """The scheme whose steps and error model judge the check.

    The default (``"auto"``) is Richardson's, run central-first: the report's
    ``extra["central_first"]`` says how many coordinates needed its extra points.
    """
    return ctx.scheme.name


def _validate_mode(mode: Any, samples: Any, seed: Any, scheme: Any) -> None:
    if mode not in MODES:
        raise invalid(
            "mode",
            mode,
            f"must be one of {list(MODES)}",
            "use 'full' (every coordinate), 'sample' (k coordinates per block) or 'probe' "
            "(random directions per block, then bisection to the wrong elements)",
        )
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
            raise invalid(
                "samples",
                samples,
                "must be a whole number >= 1",
                "pass samples=32 (coordinates per block in mode='sample', directions per "
                "block in mode='probe'), or leave samples=None for the default",
            )
        if mode == "full":
            raise invalid(
                "samples",
                samples,
                "has no meaning with mode='full', which checks every coordinate",
                "pass mode='sample' or mode='probe' with it, or drop `samples`",
            )
    validate_seed(seed)
    if mode == "probe" and scheme == "complex":
        raise invalid(
            "scheme",
            scheme,
            "is not available with mode='probe' (probes shift many coordinates at once)",
            "use scheme='richardson' (or 'auto') with mode='probe', or mode='full'",
        )


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
    report = check(loss, params, grad, **options)
    if not report.passed:
        raise GradcheckError(report)
    return report


def _choose_scheme(scheme: str, eps: float | None) -> Scheme:
    if scheme == "auto":
        return SCHEMES["central" if eps is not None else "richardson"]
    return SCHEMES[scheme]


def _base_value(evaluator: Evaluator, noise: float | None) -> tuple[float, float]:
    values = [evaluator.value() for _ in range(REPEATS)]
    j0 = values[0]
    spread = float(max(values) - min(values)) if not isinstance(j0, complex) else 0.0
    _raise_if_noisy(spread, j0, noise, values)
    return float(np.real(j0)), spread


def _raise_if_noisy(spread: float, j0: float, noise: float | None, values: list[Any]) -> None:
    allowed = noise if noise is not None else 32 * np.finfo(np.float64).eps * max(abs(j0), 1e-300)
    if spread > allowed:
        shown = ", ".join(f"{v:.17g}" for v in values)
        raise NondeterministicLossError(
            f"The loss returned different values for the same parameters ({shown}; spread "
            f"{spread:.3g}{'' if noise is None else f' > noise={noise:g}'}), so no finite "
            "difference of it can be trusted and no gradient is blamed. Likely causes: dropout "
            "left on, random sampling or data shuffling inside the loss, BatchNorm in training "
            "mode, non-deterministic GPU kernels. Fixes: set keep_prob=1 (or call "
            "model.eval()), fix the random seed inside the loss, or pass noise=<the spread you "
            "accept> to check a noisy loss."
        )


def _confirm_deterministic(
    evaluator: Evaluator, j0: float, spread: float, noise: float | None
) -> None:
    """Evaluate the base point once more after the check: noise can hide for a few calls."""
    again = float(np.real(evaluator.value()))
    _raise_if_noisy(max(spread, abs(again - j0)), j0, noise, [j0, again])


def _precision(layout: Layout, evaluator: Evaluator) -> tuple[str, float]:
    kinds = sorted({str(b.dtype) for b in layout.blocks if b.dtype != np.float64})
    out = evaluator.output_dtype or np.dtype(np.float64)
    if out.kind == "c":
        out = np.dtype(np.float64) if out == np.complex128 else np.dtype(np.float32)
    machine_eps = float(np.finfo(out).eps) if out.kind == "f" else float(np.finfo(np.float64).eps)
    if out.kind == "f" and out.itemsize < 8:
        text = f"{out} (the loss computes in {out}; steps and tolerances are set for it)"
    else:
        text = "float64"
    if kinds:
        text += f"; params of dtype {', '.join(kinds)} were checked in float64"
    return text, machine_eps


def _noise_level(
    j0: float, spread: float, measured: float, machine_eps: float, noise: float | None
) -> float:
    """A bound on the error in one loss value.

    The largest of: roundoff from |J| (one unit of ``eps * |J|``), twice the
    measured noise's standard deviation (:mod:`gradproof._engine.noise`), the spread
    of repeated calls, and the user's stated noise. The schemes' error bounds
    and the judge's safety factor multiply this further.
    """
    roundoff = machine_eps * max(abs(j0), np.finfo(np.float64).tiny)
    return max(roundoff, 2 * measured, spread, noise or 0.0)


def _evaluate(
    evaluator: Evaluator, scheme: Scheme, indices: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    if not scheme.is_complex:
        return evaluator.coordinates(indices, offsets)
    fix = "use scheme='richardson' (the default), which needs only real arithmetic"
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


def _slice_judged(judged: Judged, sl: np.ndarray) -> Judged:
    return Judged(
        judged.numerical[sl],
        judged.tolerance[sl],
        judged.wrong[sl],
        judged.kink[sl],
        judged.numeric[sl],
    )


def _notes(judged: Any, blocks: list[Any]) -> tuple[str, ...]:
    notes = []
    kinks = int(np.sum(judged.kink))
    if kinks:
        notes.append(
            f"{kinks} coordinate(s) sit near a kink (ReLU, max, abs): their one-sided "
            "differences disagree, and the gradient matches one side, so they are not counted "
            "as bugs; the numerical value shown for them is that side's."
        )
    if any(b.status == "fail" for b in blocks):
        notes.append(
            "Suspects are ordered latest block first: backprop runs from the output back "
            "towards the input, so the latest failing block is where the first error arose."
        )
    return tuple(notes)
