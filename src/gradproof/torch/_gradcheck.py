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
from gradproof._errors import invalid
from gradproof._options import check_callable
from gradproof._report import Report
from gradproof.torch._common import (
    Precision,
    Reseed,
    cast,
    check_precision,
    compute_dtype,
    fixed_randomness,
    from_numpy,
    supports_mode,
    to_numpy64,
)

# P(|N(0, s^2)| <= t) <= sqrt(2/pi) t/s: the chance that one Gaussian projection
# hides an element error s of a wrong (linear) backward below its tolerance t.
MISS_FACTOR = math.sqrt(2 / math.pi)
CACHE_ELEMENTS = 1 << 24  # outputs kept for the second and later checks (128 MiB of float64)
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
    fn: Callable[..., Any],
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
    """Check the backward of ``fn`` (e.g. a custom ``autograd.Function``'s ``apply``).

    A drop-in for ``torch.autograd.gradcheck``: the same core arguments, ``True``
    on success, and on failure a :class:`GradcheckError` (or ``False`` with
    ``raise_exception=False``) whose message is gradproof's report: which input,
    which element, how wrong, what kind of bug. Inputs that require grad are
    checked, each a block named after ``fn``'s parameter (``x``, ``weight``) or
    ``input0``, ``input1``... Other inputs are passed through.

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
    ``.grad`` fields and torch's random state are unchanged afterwards.

    Args:
        fn: ``fn(*inputs) -> tensor or tuple of tensors``.
        inputs: a tensor or a tuple of them (and other arguments).
        eps: a fixed finite-difference step: gradproof then uses the plain
            central difference, as torch does. By default each element gets a
            step scaled to its magnitude and the precision (Richardson).
        atol, rtol: torch's element bound ``|analytic - numerical| <= atol +
            rtol * |numerical|``. Given, an element fails only when it is beyond
            both gradproof's error-model tolerance and this bound (judged on
            the worst elements the report shows). None: the error model alone.
        raise_exception: raise :class:`GradcheckError` on failure (default), or
            return ``False``.
        fast_mode: use gradproof's ``mode="probe"`` where :func:`gradproof.check`
            offers it (a full check otherwise).
        full_jacobian: check every output element separately instead of a
            random projection.
        projections: how many random projections to check (each is a check of
            its own; the function is evaluated only for the first).
        dtype: ``"float64"`` (default) or ``"native"``.
        batched: evaluate many points per call with ``torch.func.vmap`` where
            ``fn`` allows it (a Function needs ``generate_vmap_rule=True`` or a
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
    ...         return 3 * x ** 2 * g
    >>> x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    >>> gradproof.torch.gradcheck(Cube.apply, (x,))
    True
    """
    _check_options(options, projections, raise_exception, fast_mode, full_jacobian, batched)
    check_callable("fn", fn, "pass the function to check, e.g. MyFunction.apply")
    _check_bound("atol", atol, "pass a bound such as atol=1e-5, or leave atol=None")
    _check_bound("rtol", rtol, "pass a bound such as rtol=1e-3, or leave rtol=None")
    check_precision(dtype)
    values = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    checked = _checked_inputs(values)
    target = compute_dtype(dtype, [values[i] for i in checked], "the inputs that require grad")
    names = _input_names(fn, len(values))
    if fast_mode and supports_mode("probe"):
        options.setdefault("mode", "probe")
    seed = int(options.get("seed", 0) or 0)
    with fixed_randomness([v for v in values if isinstance(v, torch.Tensor)]):
        loss = _FunctionLoss(fn, values, checked, [names[i] for i in checked], target, seed)
        params = {names[i]: to_numpy64(values[i]) for i in checked}
        reductions = list(_reductions(loss, full_jacobian, projections, seed))
        failures = [
            (context, report)
            for context, report in _run(loss, params, reductions, eps, batched, options)
            if not _passes(report, atol, rtol)
        ]
    if not failures:
        return True
    if not raise_exception:
        return False
    context, report = failures[0]
    more = f" ({len(failures)} of {len(reductions)} checks failed; the first is shown)"
    verb = "disagrees with" if report.status == "fail" else "could not be judged against"
    raise GradcheckError(
        _with_extra(report, context),
        f"gradproof.torch.gradcheck: the backward of `{_name(fn)}` {verb} the numerical "
        f"derivative of {context}{more if len(reductions) > 1 else ''}.",
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


def _check_options(
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


def _check_bound(argument: str, value: Any, fix: str) -> None:
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


def _input_names(fn: Callable[..., Any], count: int) -> list[str]:
    fallback = [f"input{i}" for i in range(count)]
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return fallback
    positional = [
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < count or any(p.kind == p.VAR_POSITIONAL for p in parameters[:count]):
        return fallback
    return positional[:count]


def _name(fn: Callable[..., Any]) -> str:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):  # MyFunction.apply
        return f"{owner.__name__}.{fn.__name__}"
    return getattr(fn, "__qualname__", type(fn).__name__)


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
                index = np.unravel_index(flat, shape) if shape else ()
                label = f"[{', '.join(str(int(i)) for i in index)}]" if shape else ""
                yield f"output {k}{label}", weights
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


def _passes(report: Report, atol: float | None, rtol: float | None) -> bool:
    """gradproof's verdict, with elements inside torch's atol/rtol bound forgiven."""
    if report.passed:
        return True
    if report.status != "fail" or (atol is None and rtol is None):
        return False
    bound_a, bound_r = atol or 0.0, rtol or 0.0
    for block in report.blocks.values():
        if block.status == "inconclusive":
            return False
        if block.status != "fail":
            continue
        shown = [e for e in block.worst if e.abs_error > e.tolerance]
        if not shown or len(shown) < len(block.wrong_elements):
            return False  # failed on tol, or wrong elements the report does not show
        if any(e.abs_error > bound_a + bound_r * abs(e.numerical) for e in shown):
            return False
    return True


def _with_extra(report: Report, context: str) -> Report:
    return dataclasses.replace(report, extra={**report.extra, "checked": context})


class _FunctionLoss:
    """``loss(params)``: the weighted sum of ``fn``'s outputs at ``params``, on copies.

    The first check evaluates ``fn`` for real; later checks (more projections,
    or every output element) replay its outputs at the same points.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        values: tuple[Any, ...],
        checked: list[int],
        names: list[str],
        dtype: torch.dtype,
        seed: int,
    ) -> None:
        self.fn = fn
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
            raw = _as_outputs(fn(*self.work))
        self.kept = [
            k
            for k, o in enumerate(raw)
            if isinstance(o, torch.Tensor) and o.is_floating_point() and o.requires_grad
        ]
        if not self.kept:
            raise invalid(
                "fn",
                _name(fn),
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
            raw = _as_outputs(self.fn(*args))
        return [raw[k].detach() for k in self.kept]

    def _evaluate_batch(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        if self.use_vmap:
            try:
                return self._vmapped(point)
            except Exception:  # vmap cannot run fn; the loop can (or raises itself)
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
            raw = _as_outputs(self.fn(*args))
            return tuple(raw[k] for k in self.kept)

        with torch.no_grad():
            self.reseed()
            return [o.detach() for o in vmap(one)(*stacked)]


def _as_outputs(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)
