"""`gradcheck`: a drop-in for ``torch.autograd.gradcheck`` whose failure is gradproof's report."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import operator
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError
from torch.func import vmap

import gradproof
from gradproof._engine.judge import WORST_SHOWN
from gradproof._engine.validate import validate_callable
from gradproof._errors import invalid
from gradproof._report import BlockResult, Diagnosis, ElementResult, Index, Report
from gradproof.torch._common import (
    Precision,
    Reseed,
    cast,
    compute_dtype,
    fixed_randomness,
    from_numpy,
    to_numpy64,
    validate_precision,
)

# P(|N(0, s^2)| <= t) <= sqrt(2/pi) t/s: the chance that one Gaussian projection
# hides an element error s of a wrong (linear) backward below its tolerance t.
MISS_FACTOR = math.sqrt(2 / math.pi)
CACHE_ELEMENTS = 1 << 24  # outputs kept for the second and later checks (128 MiB of float64)
JACOBIAN_ELEMENTS = 1 << 22  # values per batch of torch's numerical Jacobian (32 MiB of float64)
TORCH_EPS, TORCH_ATOL, TORCH_RTOL = 1e-6, 1e-5, 1e-3  # torch.autograd.gradcheck's defaults
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

    def __init__(self, report: Report, context: str = "") -> None:
        super().__init__(report)
        if context:
            self.args = (f"{context}\n{report}",)


GradcheckError.__module__ = "gradproof.torch"


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
            ``noise``, ``mode``, ``seed``...). ``seed`` (default 0) also seeds the
            projections and torch's generator before every evaluation.
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
    _validate_options(options, projections, raise_exception, fast_mode, full_jacobian, batched)
    validate_callable("func", func, "pass the function to check, e.g. MyFunction.apply")
    _validate_bound("atol", atol, "pass a bound such as atol=1e-5, or leave atol=None")
    _validate_bound("rtol", rtol, "pass a bound such as rtol=1e-3, or leave rtol=None")
    validate_precision(dtype)
    values = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    checked = _checked_inputs(values)
    target = compute_dtype(dtype, [values[i] for i in checked], "the inputs that require grad")
    names = _input_names(func, len(values))
    if fast_mode:
        options.setdefault("mode", "probe")
    seed = int(options.get("seed", 0) or 0)
    rule = _TorchRule.given(atol, rtol, eps)
    with fixed_randomness([v for v in values if isinstance(v, torch.Tensor)]):
        loss = _FunctionLoss(func, values, checked, [names[i] for i in checked], target, seed)
        params = {names[i]: to_numpy64(values[i]) for i in checked}
        reductions = list(_reductions(loss, full_jacobian, projections, seed))
        reports = list(_run(loss, params, reductions, eps, batched, options))
        failures = [(c, r) for c, r in reports if not r.passed]
        if rule is not None:
            broken = rule.check(loss, params, reports[0][1], batched)
            if broken is None:  # the rule holds: it forgives the failures it decides
                failures = [(c, r) for c, r in failures if not _rule_decides(r)]
            else:
                failures.insert(0, (rule.describe(), broken))
    if not failures:
        return True
    if not raise_exception:
        return False
    context, report = failures[0]
    total = len(reductions) + (rule is not None)
    more = f" ({len(failures)} of {total} checks failed; the first is shown)"
    verb = "disagrees with" if report.status == "fail" else "could not be judged against"
    raise GradcheckError(
        _with_extra(report, context),
        f"gradproof.torch.gradcheck: the backward of `{_name(func)}` {verb} the numerical "
        f"derivative of {context}{more if total > 1 else ''}.",
    )


def _run(
    loss: _FunctionLoss,
    params: dict[str, np.ndarray],
    reductions: list[tuple[str, list[torch.Tensor]]],
    eps: float | None,
    batched: bool,
    options: dict[str, Any],
) -> Iterator[tuple[str, Report]]:
    """One gradproof check per reduction; the later ones replay the first one's evaluations."""
    for context, weights in reductions:
        grad = loss.gradient(weights)
        loss.weights = weights
        yield context, gradproof.check(loss, params, grad, eps=eps, batched=batched, **options)
        loss.replaying = True


def _validate_options(
    options: dict[str, Any],
    projections: Any,
    raise_exception: Any,
    fast_mode: Any,
    full_jacobian: Any,
    batched: Any,
) -> None:
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
    flags = {
        "raise_exception": raise_exception,
        "fast_mode": fast_mode,
        "full_jacobian": full_jacobian,
        "batched": batched,
    }
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise invalid(name, flag, "must be True or False", f"pass {name}=True or False")
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


def _checked_inputs(values: tuple[Any, ...]) -> list[int]:
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
    return checked


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


def _name(func: Callable[..., Any]) -> str:
    owner = getattr(func, "__self__", None)
    if isinstance(owner, type):  # MyFunction.apply
        return f"{owner.__name__}.{func.__name__}"
    return getattr(func, "__qualname__", type(func).__name__)


def _reductions(
    loss: _FunctionLoss, full_jacobian: bool, projections: int, seed: int
) -> Iterator[tuple[str, list[torch.Tensor]]]:
    """(what is checked, in words; one weight tensor per output) for every check."""
    shapes = [tuple(o.shape) for o in loss.outputs]
    like = loss.outputs
    if full_jacobian:
        for k, shape in enumerate(shapes):
            for flat in range(int(np.prod(shape, dtype=np.int64))):
                weights = [torch.zeros_like(o) for o in like]
                weights[k].view(-1)[flat] = 1
                yield f"output {k}{_index_label(np.unravel_index(flat, shape))}", weights
        return
    rng = np.random.default_rng(seed)
    outputs = "the output" if len(shapes) == 1 else f"the {len(shapes)} outputs"
    for p in range(projections):
        weights = [
            torch.tensor(rng.standard_normal(s), dtype=o.dtype)
            for s, o in zip(shapes, like, strict=True)
        ]
        yield (
            (
                f"{outputs} projected on random vector {p + 1} of {projections} (seed {seed}; an "
                f"element error r times its tolerance is missed with probability at most "
                f"{MISS_FACTOR:.2f}/r per projection; full_jacobian=True checks every output "
                "element)"
            ),
            weights,
        )


def _rule_decides(report: Report) -> bool:
    """Whether torch's rule, where given, decides ``report``'s failure in gradproof's stead.

    It decides the elements the error model failed and the blocks it could not
    judge; a failure on the user's own ``tol`` stands.
    """
    if report.tol is not None and report.difference > report.tol:
        return False
    return all(b.passed or _decided(b) for b in report.blocks.values())


def _decided(block: BlockResult) -> bool:
    """Whether torch's rule judges ``block`` in the error model's stead (wrong or unjudged)."""
    return block.status == "inconclusive" or (block.status == "fail" and bool(block.wrong_elements))


@dataclasses.dataclass(frozen=True)
class _Breaks:
    """The Jacobian elements of one input that break torch's rule."""

    count: int
    columns: tuple[Index, ...]  # the input's elements in a breaking Jacobian column
    worst: tuple[ElementResult, ...]
    largest: float  # the largest |analytic - numerical| among them


@dataclasses.dataclass(frozen=True)
class _TorchRule:
    """torch's rule on each Jacobian element: ``|analytic - numerical| <= atol + rtol*|numerical|``.

    >>> _TorchRule.given(None, None, None) is None
    True
    >>> _TorchRule.given(0.0, None, None)  # the one not given takes torch's default
    _TorchRule(atol=0.0, rtol=0.001, eps=1e-06)
    """

    atol: float
    rtol: float
    eps: float

    @classmethod
    def given(cls, atol: float | None, rtol: float | None, eps: float | None) -> _TorchRule | None:
        """The rule where the user gave ``atol`` or ``rtol``; None where both are None."""
        if atol is None and rtol is None:
            return None
        return cls(
            float(TORCH_ATOL if atol is None else atol),
            float(TORCH_RTOL if rtol is None else rtol),
            float(TORCH_EPS if eps is None else eps),
        )

    def describe(self) -> str:
        return (
            "the outputs, by torch's rule on each Jacobian element: |analytic - numerical| <= "
            f"atol + rtol * |numerical| (atol={self.atol:g}, rtol={self.rtol:g}; numerical "
            f"Jacobian by central differences, eps={self.eps:g})"
        )

    def check(
        self, loss: _FunctionLoss, params: dict[str, np.ndarray], report: Report, batched: bool
    ) -> Report | None:
        """None where the rule holds; else ``report``, naming the elements that break it."""
        analytic = loss.analytic_jacobians()
        found: dict[str, _Breaks] = {}
        for name in loss.names:
            numerical = loss.numerical_jacobians(params, name, self.eps, batched)
            pairs = [(a[name], n) for a, n in zip(analytic, numerical, strict=True)]
            breaks = self._breaks(name, params[name].shape, pairs, loss.outputs)
            if breaks is not None:
                found[name] = breaks
        if not found:
            return None
        blocks = {
            name: self._block(block, found.get(name)) for name, block in report.blocks.items()
        }
        failing = tuple(n for n in reversed(list(blocks)) if blocks[n].status == "fail")
        return dataclasses.replace(report, status="fail", blocks=blocks, suspects=failing)

    def _breaks(
        self,
        name: str,
        shape: tuple[int, ...],
        pairs: list[tuple[np.ndarray, np.ndarray]],
        outputs: list[torch.Tensor],
    ) -> _Breaks | None:
        """The elements of input ``name``'s Jacobians (analytic, numerical) that break the rule."""
        count, largest = 0, 0.0
        columns: set[int] = set()
        candidates: list[ElementResult] = []
        for k, (a, n) in enumerate(pairs):
            err, bound = np.abs(a - n), self.atol + self.rtol * np.abs(n)
            with np.errstate(invalid="ignore"):
                rows, cols = np.nonzero(~(err <= bound))  # NaN breaks it, as in torch.allclose
            count += rows.size
            columns.update(cols.tolist())
            largest = max(largest, float(np.max(err[rows, cols], initial=0.0)))
            excess = np.nan_to_num(err[rows, cols] - bound[rows, cols], nan=np.inf)
            for r in np.argsort(-excess, kind="stable")[:WORST_SHOWN]:
                i, j = int(rows[r]), int(cols[r])
                where = _index_label(np.unravel_index(i, tuple(outputs[k].shape)))
                candidates.append(
                    _element(name, shape, j, a[i, j], n[i, j], bound[i, j], f"output {k}{where}")
                )
        if not count:
            return None
        candidates.sort(key=lambda e: -np.nan_to_num(e.abs_error - e.tolerance, nan=np.inf))
        unravel = [tuple(int(i) for i in np.unravel_index(j, shape)) for j in sorted(columns)]
        return _Breaks(count, tuple(unravel), tuple(candidates[:WORST_SHOWN]), largest)

    def _block(self, block: BlockResult, breaks: _Breaks | None) -> BlockResult:
        if breaks is None:
            if block.passed or not _decided(block):
                return block  # passed, or failed on the user's tol: the rule does not decide
            return dataclasses.replace(
                block,
                status="pass",
                wrong_elements=(),
                diagnosis=None,
                reason=f"within torch's rule (atol={self.atol:g}, rtol={self.rtol:g})",
            )
        sentence = (
            f"{block.name}: {breaks.count} Jacobian element(s) beyond torch's bound atol + rtol * "
            f"|numerical| (atol={self.atol:g}, rtol={self.rtol:g}); gradproof's error model "
            f"alone: {block.status}"
        )
        return dataclasses.replace(
            block,
            status="fail",
            wrong_elements=breaks.columns,
            worst=breaks.worst,
            worst_index=breaks.worst[0].index,
            max_abs_error=breaks.largest,
            diagnosis=block.diagnosis or Diagnosis("torch_rule", sentence),
            reason=sentence,
        )


def _element(
    name: str, shape: tuple[int, ...], j: int, a: float, n: float, bound: float, output: str
) -> ElementResult:
    """Jacobian element (``output``, ``name``[j]) as a report row; the note names the output."""
    err = abs(float(a) - float(n))
    size = max(abs(float(a)), abs(float(n)))
    return ElementResult(
        block=name,
        index=tuple(int(i) for i in np.unravel_index(j, shape)),
        analytic=float(a),
        numerical=float(n),
        abs_error=err,
        rel_error=err / size if size > 0 else 0.0,
        tolerance=float(bound),
        note=f"Jacobian of {output}",
    )


def _index_label(index: tuple[Any, ...]) -> str:
    """``"[1, 2]"``; ``""`` for a scalar."""
    return f"[{', '.join(str(int(i)) for i in index)}]" if index else ""


def _with_extra(report: Report, context: str) -> Report:
    return dataclasses.replace(report, extra={**report.extra, "checked": context})


class _FunctionLoss:
    """``loss(params)``: the weighted sum of ``func``'s outputs at ``params``, on copies.

    The first check evaluates ``func`` for real; later checks (more projections,
    or every output element) replay its outputs at the same points.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        values: tuple[Any, ...],
        checked: list[int],
        names: list[str],
        dtype: torch.dtype,
        seed: int,
    ) -> None:
        self.func = func
        self.work = [cast(v, dtype) for v in values]
        self.checked = checked
        self.names = names
        self.reseed = Reseed(seed, [v for v in self.work if isinstance(v, torch.Tensor)])
        self.use_vmap = True
        self.replaying = False
        self.cache: dict[bytes, list[torch.Tensor]] = {}
        self.cached_elements = 0
        self.weights: list[torch.Tensor] = []
        self.lock = threading.RLock()
        for i in checked:
            self.work[i].requires_grad_(True)
        with torch.enable_grad():
            self.reseed()
            raw = _as_outputs(func(*self.work))
        self.kept = [
            k
            for k, o in enumerate(raw)
            if isinstance(o, torch.Tensor) and o.is_floating_point() and o.requires_grad
        ]
        if not self.kept:
            raise invalid(
                "func",
                _name(func),
                "returned no floating tensor that depends on the inputs that require grad",
                "return the tensors computed from the inputs (not detached ones)",
            )
        self.graph = [raw[k] for k in self.kept]
        self.outputs = [o.detach() for o in self.graph]

    def gradient(self, weights: list[torch.Tensor]) -> dict[str, np.ndarray]:
        """The backward applied to ``grad_outputs=weights``, at the base point."""
        inputs = [self.work[i] for i in self.checked]
        grads = torch.autograd.grad(
            self.graph, inputs, grad_outputs=weights, retain_graph=True, allow_unused=True
        )
        return {
            n: np.zeros(tuple(t.shape)) if g is None else to_numpy64(g)
            for n, t, g in zip(self.names, inputs, grads, strict=True)
        }

    def analytic_jacobians(self) -> list[dict[str, np.ndarray]]:
        """torch's analytic Jacobians, one backward per output element: (out size, input size)."""
        jacobians = []
        for k, out in enumerate(self.outputs):
            rows = []
            for flat in range(out.numel()):
                weights = [torch.zeros_like(o) for o in self.outputs]
                weights[k].view(-1)[flat] = 1
                rows.append(self.gradient(weights))
            jacobians.append(
                {
                    n: np.array([r[n].ravel() for r in rows]).reshape(
                        len(rows), self.work[i].numel()
                    )
                    for n, i in zip(self.names, self.checked, strict=True)
                }
            )
        return jacobians

    def numerical_jacobians(
        self, params: dict[str, np.ndarray], name: str, eps: float, batched: bool
    ) -> list[np.ndarray]:
        """torch's numerical Jacobians in input ``name``, by central differences of step ``eps``.

        ``(out(x + eps e_j) - out(x - eps e_j)) / (2 eps)``: one (output size, input size)
        array per output, computed in batches of bounded memory.
        """
        size = params[name].size
        chunk = max(1, JACOBIAN_ELEMENTS // (2 * (size + sum(o.numel() for o in self.outputs))))
        columns: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, size, chunk):
            cols = np.arange(start, min(size, start + chunk))
            plus, minus = (self._moved(params, name, cols, step, batched) for step in (eps, -eps))
            for k, (p, m) in enumerate(zip(plus, minus, strict=True)):
                columns[k].append((p - m) / (2 * eps))
        return [
            np.concatenate(c).T if c else np.zeros((o.numel(), 0))
            for c, o in zip(columns, self.outputs, strict=True)
        ]

    def _moved(
        self, params: dict[str, np.ndarray], name: str, cols: np.ndarray, step: float, batched: bool
    ) -> list[np.ndarray]:
        """Every output, with element ``cols[r]`` of ``name`` moved by ``step``, in row ``r``."""
        point = {n: np.repeat(params[n][None], len(cols), axis=0) for n in self.names}
        point[name].reshape(len(cols), -1)[np.arange(len(cols)), cols] += step
        self.use_vmap = self.use_vmap and batched  # unbatched: one call per point
        with self.lock:
            outputs = self._evaluate(point)
        return [to_numpy64(o).reshape(len(cols), -1) for o in outputs]

    def __getstate__(self) -> dict[str, Any]:  # workers=n sends the loss to other processes
        skip = ("lock", "graph", "cache")  # the graph only serves the parent's backward
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, lock=threading.RLock(), graph=[], cache={})

    def __call__(self, point: dict[str, np.ndarray]) -> torch.Tensor:
        with self.lock:  # one evaluation at a time: the generator and the cache are shared
            outputs = self._outputs(point)
        batch = np.ndim(point[self.names[0]]) == self.work[self.checked[0]].dim() + 1
        terms = [
            (out * w).reshape(len(out), -1).sum(1) if batch else (out * w).sum()
            for out, w in zip(outputs, self.weights, strict=True)
        ]
        return functools.reduce(operator.add, terms)

    def _outputs(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        key = hashlib.blake2b(
            b"".join(np.ascontiguousarray(point[n]).tobytes() for n in self.names), digest_size=16
        ).digest()
        if self.replaying and key in self.cache:
            return self.cache[key]
        outputs = self._evaluate(point)
        size = sum(o.numel() for o in outputs)
        if not self.replaying and self.cached_elements + size <= CACHE_ELEMENTS:
            self.cache[key] = outputs
            self.cached_elements += size
        return outputs

    def _evaluate(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        first = self.work[self.checked[0]]
        if np.ndim(point[self.names[0]]) == first.dim() + 1:
            return self._evaluate_batch(point)
        args = list(self.work)
        for i, name in zip(self.checked, self.names, strict=True):
            args[i] = from_numpy(point[name], self.work[i])
        with torch.no_grad():
            self.reseed()
            raw = _as_outputs(self.func(*args))
        return [raw[k].detach() for k in self.kept]

    def _evaluate_batch(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        if self.use_vmap:
            try:
                return self._vmapped(point)
            except Exception:  # vmap cannot run func; the loop can (or raises itself)
                self.use_vmap = False
        count = len(point[self.names[0]])
        rows = [self._evaluate({n: point[n][k] for n in self.names}) for k in range(count)]
        return [torch.stack([row[j] for row in rows]) for j in range(len(self.kept))]

    def _vmapped(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        stacked = [
            from_numpy(point[n], self.work[i])
            for i, n in zip(self.checked, self.names, strict=True)
        ]

        def one(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            args = list(self.work)
            for i, v in zip(self.checked, values, strict=True):
                args[i] = v
            raw = _as_outputs(self.func(*args))
            return tuple(raw[k] for k in self.kept)

        with torch.no_grad():
            self.reseed()
            return [o.detach() for o in vmap(one)(*stacked)]


def _as_outputs(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
