"""`check`: compare a gradient with the loss's numerical derivative."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from gradproof._errors import GradcheckError, NondeterministicLossError, invalid
from gradproof._evaluate import Evaluator
from gradproof._gradients import resolve_gradient
from gradproof._judge import (
    Judged,
    blocks_of,
    global_signal,
    judge_block,
    judge_elements,
    overall_status,
    relative_difference,
    suspects,
)
from gradproof._noise import measure_noise
from gradproof._options import check_callable, check_positive, check_scheme
from gradproof._report import Report
from gradproof._schemes import SCHEMES, Scheme, default_step
from gradproof._tree import Layout, flatten

SchemeOption = Literal["auto", "central", "richardson", "complex"]
REPEATS = 3  # evaluations of the loss at the base point before the check


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
        tol: a bound on the seeds' relative difference, per block and overall,
            on top of the error model (None: the error model alone decides).
        scheme: ``"auto"``, ``"central"`` (2 evaluations per coordinate,
            O(h^2)), ``"richardson"`` (4, O(h^4), the default) or ``"complex"``
            (1, for losses that accept complex input).
        noise: the loss's own noise (absolute); a loss that varies more than
            this between identical calls raises NondeterministicLossError.
        batched: the loss takes a leading batch axis on every leaf and returns
            one value per parameter set.

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
    """
    started = time.perf_counter()
    check_callable("loss", loss, "pass a function loss(params) -> scalar")
    check_positive("eps", eps, "pass a small step such as eps=1e-7, or leave eps=None")
    check_positive("tol", tol, "pass a bound such as tol=2e-7, or leave tol=None")
    check_positive("noise", noise, "pass the loss's noise level, or leave noise=None")
    check_scheme(scheme)
    layout, theta = flatten(params)
    g, grad_eps = resolve_gradient(grad, params, layout)
    evaluator = Evaluator(loss, layout, theta, batched=batched)
    j0, spread = _base_value(evaluator, noise)
    precision, machine_eps = _precision(layout, evaluator)
    chosen = _choose_scheme(scheme, eps)
    measured = measure_noise(evaluator, j0, machine_eps)
    delta = _noise_level(j0, spread, measured, machine_eps, noise)
    indices = np.arange(theta.size)
    h = _steps(chosen, theta[indices], eps, machine_eps)
    offsets = chosen.offsets(theta[indices], h, exact=eps is None)
    values = _evaluate(evaluator, chosen, indices, offsets)
    _confirm_deterministic(evaluator, j0, spread, noise)
    estimate = chosen.combine(j0, values, offsets, delta)
    rtol = (
        max(1e-8, 100 * machine_eps) if chosen.name != "central" else max(1e-6, 1e3 * machine_eps)
    )
    judged = judge_elements(g[indices], estimate, chosen.name, rtol, grad_eps)
    report_blocks = []
    signal = global_signal(g[indices], judged.numerical)
    for block, sl, positions in blocks_of(layout, indices):
        if positions.size == 0:
            continue
        part = _slice_judged(judged, sl)
        report_blocks.append(
            judge_block(block, positions, g[indices][sl], theta[indices][sl], part, signal, tol)
        )
    difference = relative_difference(g[indices], judged.numerical)
    notes = _notes(layout, judged, report_blocks)
    return Report(
        status=overall_status(report_blocks, difference, tol),
        difference=difference,
        tol=tol,
        blocks={b.name: b for b in report_blocks},
        suspects=suspects(report_blocks),
        scheme=chosen.name,
        eps=eps,
        precision=precision,
        evaluations=evaluator.evaluations,
        seconds=time.perf_counter() - started,
        notes=notes,
        coverage=f"every coordinate: {indices.size} of {theta.size}",
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
    measured noise's standard deviation (:mod:`gradproof._noise`), the spread
    of repeated calls, and the user's stated noise. The schemes' error bounds
    and the judge's safety factor multiply this further.
    """
    roundoff = machine_eps * max(abs(j0), np.finfo(np.float64).tiny)
    return max(roundoff, 2 * measured, spread, noise or 0.0)


def _steps(scheme: Scheme, theta: np.ndarray, eps: float | None, machine_eps: float) -> np.ndarray:
    if eps is not None:
        return np.full(theta.shape, float(eps))
    base = default_step(scheme.name, machine_eps)
    if scheme.name == "complex":
        return np.full(theta.shape, base)
    return base * np.maximum(np.abs(theta), 1.0)


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
    return Judged(judged.numerical[sl], judged.tolerance[sl], judged.wrong[sl], judged.kink[sl])


def _notes(layout: Layout, judged: Any, blocks: list[Any]) -> tuple[str, ...]:
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
