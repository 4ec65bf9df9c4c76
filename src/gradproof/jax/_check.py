"""`check`: compare ``jax.grad(f)`` with the numerical derivative of ``f``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

import gradproof
from gradproof._engine.resident import Span
from gradproof._engine.validate import validate_callable, validate_passed_on
from gradproof._errors import GradcheckError, invalid
from gradproof._report import Report
from gradproof.jax._misuse import (
    complex_cotangent,
    untraceable,
    validate_finite_gradient,
    validate_signature,
)
from gradproof.jax._orders import (
    DIFFERENTIATE,
    Derivative,
    derivatives,
    primal_mismatch,
    validate,
)
from gradproof.jax._outputs import scalar
from gradproof.jax._purity import raise_if_impure
from gradproof.jax._resident import open_jax_resident, pieces
from gradproof.jax._rule import JaxRule, central_differences
from gradproof.jax._tree import Pytree, split
from gradproof.jax._width import below_float64, computes_in_float64, precision_text
from gradproof.jax._x64 import float64

Evaluation = Literal["auto", "vmap", "map", "jit", "eager"]
EVALUATIONS = ("auto", "vmap", "map", "jit", "eager")
BATCHED = ("vmap", "map")
# The batch sizes compiled: every size compiles anew (about half a second each for an
# MLP on CPU), so batches go in pieces of these sizes, the last one padded. A compiled
# loop (map) gains little from long pieces; vmap on an accelerator gains more.
PIECES = {"map": (64, 4), "vmap": (1024, 64, 4)}
# What tracing a function that is not pure jax.numpy raises (bool/int/array conversions).
UNTRACEABLE = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
)
RESERVED = {
    "batched": "gradproof.jax chooses it from `evaluation`; pass evaluation='vmap', 'map' or 'jit'",
    "grad": "gradproof.jax checks jax.grad(f), which runs your custom_vjp/custom_jvp rules; "
    "to check a gradient of your own, call gradproof.check",
}


def check(
    f: Callable[[Any], Any],
    params: Any,
    *,
    order: int = 1,
    modes: tuple[str, ...] = ("rev",),
    atol: float | None = None,
    rtol: float | None = None,
    eps: float | None = None,
    evaluation: Evaluation = "auto",
    **options: Any,
) -> Report:
    """Check ``jax.grad(f)`` at ``params`` against the numerical derivative of ``f``.

    ``jax.grad`` runs every ``custom_vjp`` and ``custom_jvp`` rule inside ``f``,
    so a wrong rule shows as a wrong block, named by its key path, with the kind
    of bug it looks like. Everything runs in float64 (JAX's 64-bit mode is
    switched on for the check and restored afterwards, also on error); float32
    parameters are checked at their float64 values. ``params`` is never modified.

    Complex leaves are checked as ``check_grads`` checks them, as pairs of real
    coordinates (``"z"``'s element ``[2, 1]`` is the imaginary part of ``z[2]``).
    ``jax.grad`` of a real ``f`` returns ``∂f/∂x − i·∂f/∂y`` for ``z = x + iy``
    (JAX's convention); gradproof conjugates it to ``∂f/∂x + i·∂f/∂y`` (torch's,
    which :func:`gradproof.check` takes), so a rule that forgets a ``conj()``
    fails with the diagnosis ``"conjugate"``.

    Args:
        f: ``f(params)``, written with ``jax.numpy``. A real scalar output is
            differentiated as it is; any other output (an array, complex, a
            pytree of them) through a seeded random projection
            ``Re(Σ conj(v)·f(params))``, as ``check_grads`` checks one random
            cotangent; a note in the report says so.
        params: a pytree: dicts, lists, tuples, registered dataclasses or
            equinox-style modules. Each floating-point or complex leaf is a
            block, named by its path (``"layers.0.W"``, ``"encoder.weight"``);
            other leaves (integer arrays, Python ints, functions) are held fixed.
        order: the highest derivative checked, 1 to 3, as in ``check_grads``:
            order 2 checks Hessian-vector products (the derivative of the
            gradient along a random direction), so a rule whose derivative is
            right but not differentiable (a ``stop_gradient`` inside) fails.
        modes: ``("rev",)`` checks ``jax.grad`` (your ``custom_vjp`` rules),
            ``("fwd",)`` forward mode, ``jax.jvp`` along every coordinate (your
            ``custom_jvp`` rules), or both. Each checks, too, that a custom
            rule's primal output equals ``f``.
        atol, rtol: ``check_grads``' rule, where either is given: an element
            fails when ``|analytic - numerical| > atol + rtol * |numerical|``,
            ``numerical`` by central differences of step ``eps`` (1e-4, as in
            ``check_grads``, where ``eps`` is not given); the one not given is
            1e-5, ``check_grads``' default for float64. The rule then decides
            the verdict, and the report names the elements that break it.
            Default (both None): gradproof's error model judges each element.
        eps: a fixed finite-difference step (see :func:`gradproof.check`);
            default: a step scaled to each coordinate.
        evaluation: how ``f`` is evaluated at the perturbed parameters.
            ``"vmap"``: ``jax.jit(jax.vmap(f))`` over many parameter sets per
            call (best on GPU and TPU); ``"map"``: ``jax.jit`` of
            ``jax.lax.map(f)``, a compiled loop over many parameter sets per
            call (best on CPU, where a vmapped matmul with a different weight
            matrix per set runs slower than a loop); ``"auto"`` (default):
            ``"map"`` on the CPU backend, ``"vmap"`` on others; ``"jit"``:
            ``jax.jit(f)``, one parameter set per call; ``"eager"``: ``f``
            itself, one set per call, for functions ``jax.jit`` cannot trace.
        **options: the other options of :func:`gradproof.check`: ``tol``,
            ``scheme``, ``noise``, ``mode`` (``"full"``, ``"sample"``,
            ``"probe"``), ``samples``, ``seed``, ``budget``, ``progress``.

    Returns:
        A frozen :class:`gradproof.Report`.

    Raises:
        InvalidArgument: misuse (the message names the argument and the fix).

    >>> import jax, jax.numpy as jnp, gradproof.jax
    >>> @jax.custom_vjp
    ... def square(x):
    ...     return x ** 2
    >>> square.defvjp(lambda x: (x ** 2, x), lambda x, g: (g * x,))  # forgot the 2
    >>> report = gradproof.jax.check(lambda p: jnp.sum(square(p["w"])),
    ...                              {"w": jnp.array([1.0, 2.0, 3.0])})
    >>> report.status, report.suspects, report.blocks["w"].diagnosis.kind
    ('fail', ('w',), 'scale')
    >>> gradproof.jax.check(lambda p: jnp.sum(square(p["w"])), {"w": jnp.ones(3)},
    ...                     atol=1e-5).blocks["w"].reason[:44]
    "w: 3 element(s) beyond check_grads' bound at"
    """
    validate_callable("f", f, "pass a function f(params) written with jax.numpy")
    validate_signature(f, params)
    _validate_options(evaluation, options)
    chosen_modes = validate(order, modes)
    rule = JaxRule.given(atol, rtol, eps)
    tree = split(params)
    chosen = evaluation
    if evaluation == "auto":
        chosen = "map" if jax.default_backend() == "cpu" else "vmap"
    options = {**options, "eps": eps}
    seed = int(options.get("seed", 0) or 0)
    with float64():
        point = _point(tree)
        of_blocks, projected = scalar(_of_blocks(f, tree), point, seed)
        try:
            mismatch = primal_mismatch(of_blocks, point, chosen_modes)
        except UNTRACEABLE as error:
            raise untraceable(error) from error
        if mismatch:  # an f that is not one function differs from itself between traces
            raise_if_impure(of_blocks, point, options.get("noise"))
        wide = _wide(of_blocks, point, tree)
        reports = []
        for derivative in derivatives(of_blocks, point, order, chosen_modes, seed):
            problem = _Problem(
                derivative.h,
                tree,
                chosen,
                requested=evaluation,
                mode=derivative.mode,
                wide=wide,
                label=_label(derivative),
            )
            report = problem.check(rule, options)
            reports.append((derivative, report))
            if not report.passed:
                if not mismatch:  # with a mismatch, f's purity was confirmed above
                    raise_if_impure(of_blocks, point, options.get("noise"))
                break
    report = _combined(reports, mismatch)
    if projected:
        report = dataclasses.replace(report, notes=(*report.notes, projected))
    return _with_notes(report, tree)


def _wide(of_blocks: Callable[[list[Any]], Any], point: list[Any], tree: Pytree) -> bool:
    """Whether leaves below float64 go to the engine in float64: ``f`` computes in float64
    throughout (:mod:`gradproof.jax._width`), so nothing is judged at their precision."""
    narrow = any(below_float64(b.dtype) for b in tree.blocks().values())
    return narrow and computes_in_float64(of_blocks, point)


def _label(derivative: Derivative) -> str:
    """How an error names the derivative checked: ``jax.grad(f)`` at order 1 in reverse mode."""
    if derivative.order == 1:
        return "jax.grad(f)" if derivative.mode == "rev" else "jax.jvp of f (forward mode)"
    return derivative.label


def _of_blocks(f: Callable[[Any], Any], tree: Pytree) -> Callable[[list[Any]], Any]:
    """``f`` as a function of the checked blocks, in order (the other leaves held fixed)."""

    def of_blocks(values: list[Any]) -> Any:
        return f(tree.rebuild(values))

    return of_blocks


def _combined(reports: list[tuple[Derivative, Report]], mismatch: str) -> Report:
    """The first report that did not pass (or the last), saying which derivative it checked."""
    derivative, report = reports[-1]
    checked = {d.label: r.status for d, r in reports}
    notes = list(report.notes)
    if len(checked) > 1 or derivative.order > 1 or derivative.mode != "rev":
        notes.append(f"This report checks {derivative.label}.")
    extra = {**report.extra, "derivatives": checked}
    if mismatch:
        notes.append(mismatch)
        return dataclasses.replace(
            report, status="fail", notes=tuple(notes), extra={**extra, "primal": mismatch}
        )
    return dataclasses.replace(report, notes=tuple(notes), extra=extra)


def assert_gradients_match(f: Callable[[Any], Any], params: Any, **options: Any) -> Report:
    """Like :func:`check`, but raise :class:`gradproof.GradcheckError` unless it passes.

    >>> import jax.numpy as jnp, gradproof.jax
    >>> gradproof.jax.assert_gradients_match(lambda p: jnp.sum(jnp.sin(p)),
    ...                                      jnp.zeros(3)).passed
    True
    """
    report = check(f, params, **options)
    if not report.passed:
        raise GradcheckError(report)
    return report


class _Problem:
    """``f`` as gradproof sees it: a loss of named float64 blocks (the object is the loss),
    its JAX gradient, and the loss's evaluation on the parameters' device
    (:mod:`gradproof.jax._resident`)."""

    def __init__(
        self,
        of_blocks: Callable[[list[Any]], Any],
        tree: Pytree,
        evaluation: str,
        *,
        requested: str,
        mode: str = "rev",
        wide: bool = False,
        label: str = "jax.grad(f)",
    ) -> None:
        self.tree, self.wide, self.label = tree, wide, label
        self.names, self.leaves = tree.block_names, [tree.leaves[i] for i in tree.checked]
        self.ndims = [np.ndim(leaf) for leaf in self.leaves]
        self.differentiate = DIFFERENTIATE[mode]
        self.of_blocks = of_blocks
        self.single = of_blocks if evaluation == "eager" else jax.jit(of_blocks)
        if evaluation == "map":
            self.batch = jax.jit(lambda values: jax.lax.map(of_blocks, values))
        else:
            self.batch = jax.jit(jax.vmap(of_blocks))
        self.requested, self.evaluation = requested, evaluation
        self.pieces = PIECES.get(evaluation, (1,))

    def check(self, rule: JaxRule | None, options: dict[str, Any]) -> Report:
        """gradproof's check of this derivative; ``check_grads``' rule decides where given."""
        gradient = self.gradient()
        blocks = self.tree.blocks()
        batched = self.evaluation in BATCHED
        given = _float64(blocks) if self.wide else blocks
        report = gradproof.check(self, given, gradient, batched=batched, **options)
        if self.wide:
            dtypes = [b.dtype for b in blocks.values()]
            report = dataclasses.replace(report, precision=precision_text(report.precision, dtypes))
        if rule is None:
            return report
        numerical = central_differences(self.loss, _float64(blocks), rule.eps, batched=batched)
        return rule.judge(report, gradient, numerical)

    def gradient(self) -> dict[str, np.ndarray]:
        """JAX's gradient at the float64 parameters, by block name (``∂/∂x + i·∂/∂y``)."""
        point = _point(self.tree)
        try:
            grads = self.differentiate(self.of_blocks)(point)
        except UNTRACEABLE as error:
            raise untraceable(error) from error
        out = {}
        for name, g, value in zip(self.tree.block_names, grads, point, strict=True):
            if np.iscomplexobj(g) and not np.iscomplexobj(value):
                raise complex_cotangent(name, np.asarray(g))
            validate_finite_gradient(self.label, name, g)
            out[name] = np.asarray(g, dtype=np.complex128 if np.iscomplexobj(g) else np.float64)
        return out

    def __call__(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """The loss: :meth:`loss`."""
        return self.loss(blocks)

    def __gradproof_resident__(
        self, spans: tuple[Span, ...], theta: np.ndarray, batched: bool
    ) -> Any:
        """The loss evaluated at points made on the parameters' device, or None where that
        does not pay (:func:`gradproof.jax._resident.open_jax_resident`)."""
        return open_jax_resident(self, spans, theta, batched)

    def loss(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        """f at one parameter set, or at a batch of them (a leading axis on every block)."""
        return self.traced(lambda: self._loss(blocks))

    def traced(self, call: Callable[[], Any]) -> Any:
        """``call()``, which calls the compiled ``f``; tracing it failing is misuse of
        ``evaluation`` (said so, with the fix)."""
        try:
            return call()
        except UNTRACEABLE as error:
            raise invalid(
                "evaluation",
                self.requested,
                f"needs f to be traceable by jax.jit, but tracing it raised "
                f"{type(error).__name__} (Python control flow on array values?)",
                "use jax.lax.cond/jnp.where in f, or pass evaluation='eager'",
            ) from error

    def _loss(self, blocks: Mapping[str, np.ndarray]) -> np.ndarray:
        values = [blocks[name] for name in self.tree.block_names]
        batched = np.ndim(values[0]) > self.ndims[0]
        # Contiguous numpy arrays go to the CPU device without a copy (jnp.asarray
        # would copy each one); the result is read back before the caller moves on.
        arrays = [np.ascontiguousarray(v) for v in values]
        with float64():  # again here: the setting is per thread, and workers may be threads
            if not batched:
                return np.asarray(self.single(arrays))
            # Batches go in pieces of a few sizes (PIECES), the last one padded with
            # copies of the last row: a few compilations per check, at most 3 rows wasted.
            n, results, start = len(arrays[0]), [], 0
            for size in pieces(n, self.pieces):
                stop = start + size
                if stop <= n:
                    chunk = [a[start:stop] for a in arrays]
                else:
                    chunk = [
                        np.concatenate([a[start:], np.repeat(a[-1:], stop - n, 0)]) for a in arrays
                    ]
                results.append(self.batch(chunk))
                start = stop
            return np.concatenate([np.asarray(r) for r in results])[:n]


def _float64(blocks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The blocks in float64 (complex128 for complex ones), where the check computes."""
    return {
        name: np.asarray(b, dtype=np.complex128 if np.iscomplexobj(b) else np.float64)
        for name, b in blocks.items()
    }


def _point(tree: Pytree) -> list[Any]:
    """The checked blocks as JAX float64 (complex128) arrays, in order."""
    return [jnp.asarray(b) for b in _float64(tree.blocks()).values()]


def _validate_options(evaluation: Any, options: dict[str, Any]) -> None:
    if evaluation not in EVALUATIONS:
        raise invalid(
            "evaluation",
            evaluation,
            f"must be one of {list(EVALUATIONS)}",
            "use 'auto' (the default), 'vmap' (jax.jit(jax.vmap(f))), 'map' (a compiled "
            "loop, best on CPU), 'jit', or 'eager' for a function that jax.jit cannot trace",
        )
    for name, fix in RESERVED.items():
        if name in options:
            raise invalid(name, options[name], "is not an option of gradproof.jax.check", fix)
    validate_passed_on(check, options, to=gradproof.check, own={"eps", *RESERVED})


def _with_notes(report: Report, tree: Pytree) -> Report:
    fixed = tree.fixed_names
    if not fixed:
        return report
    shown = ", ".join(fixed[:8]) + (f" and {len(fixed) - 8} more" if len(fixed) > 8 else "")
    note = f"Held fixed, not being floating point (so not checked): {shown}."
    return dataclasses.replace(report, notes=(*report.notes, note))
