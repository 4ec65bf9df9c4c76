"""A function of tensors (e.g. ``MyFunction.apply``) as gradproof's scalar loss.

gradproof checks the gradient of a scalar loss of named float64 arrays.
:class:`FunctionLoss` evaluates ``func`` at such arrays, on private copies of
its inputs, and keeps the outputs of the first check, so that later checks
(more projections, or every output element) replay them instead of calling
``func`` again. :class:`WeightedLoss` is the scalar loss of one weighting of
the outputs (see :mod:`gradproof.torch._reductions`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradproof._errors import invalid
from gradproof.torch._cache import OutputCache, Staging, fresh_tensor
from gradproof.torch._common import (
    Reseed,
    as_pairs,
    cast,
    from_numpy,
    quiet_vmap_fallback,
    to_numpy64,
)
from gradproof.torch._forward_only import batchable, forwards_under_vmap
from gradproof.torch._function_resident import open_function_resident
from gradproof.torch._outputs import (
    Constant,
    agree,
    as_outputs,
    coordinates,
    floating,
    function_name,
    same,
    summed,
)
from gradproof.torch._pace import Pace
from gradproof.torch._reductions import unit_weights, weighted_sum
from gradproof.torch._vmap import nudged, vmap

JACOBIAN_ELEMENTS = 1 << 22  # values per batch of torch's numerical Jacobian (32 MiB of float64)


@dataclasses.dataclass(frozen=True)
class CheckedInputs:
    """The inputs of ``func`` that are checked: their positions, and their block names."""

    positions: tuple[int, ...]
    names: tuple[str, ...]


class FunctionLoss:
    """``func`` at points of its checked inputs, on copies: outputs, backward and Jacobians.

    The first check evaluates ``func`` for real; later checks (more projections,
    or every output element) replay its outputs at the same points.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        values: tuple[Any, ...],
        inputs: CheckedInputs,
        dtype: torch.dtype,
        *,
        seed: int,
        batched: bool,
    ) -> None:
        self.func = func
        self.work = [cast(v, dtype, with_complex=True) for v in values]
        self.checked = inputs.positions
        self.names = inputs.names
        self.reseed = Reseed(seed, [v for v in self.work if isinstance(v, torch.Tensor)])
        self.use_vmap = batched  # unbatched: one call per point
        self.vmap_tried = False  # whether vmap's rows were compared with single calls yet
        self.needs_grad = False  # func calls autograd itself: evaluated with grad enabled
        self.pace = Pace()  # whether batches under vmap pay, against single calls
        self.cache = OutputCache()
        self.staging = Staging()
        self.lock = threading.RLock()
        self.kept, self.graph = self._trace()
        self.outputs = [o.detach() for o in self.graph]
        self.needs_grad = not self._same_without_grad()

    def _trace(self) -> tuple[list[int], list[torch.Tensor]]:
        """``func`` at the base point, with autograd's graph: the outputs that can be checked.

        Those are the floating tensors that depend on the inputs that require
        grad; returned with their positions among ``func``'s outputs.
        """
        for i in self.checked:
            self.work[i].requires_grad_(True)
        with torch.enable_grad():
            self.reseed()
            raw = as_outputs(self.func(*self.work))
        kept = [
            k
            for k, o in enumerate(raw)
            if isinstance(o, torch.Tensor) and o.is_floating_point() and o.requires_grad
        ]
        if not kept and not isinstance(self.func, Constant) and floating(raw):
            # no output depends on the inputs: as in torch, the numerical derivative
            # must then be zero, which the outputs, anchored to a zero leaf, let it check
            self.func = Constant(self.func)
            return self._trace()
        if not kept:
            raise invalid(
                "func",
                function_name(self.func),
                "returned no floating tensor that depends on the inputs that require grad",
                "return the tensors computed from the inputs (not detached ones)",
            )
        for k in kept:
            if raw[k].layout != torch.strided:
                raise invalid(
                    "func",
                    function_name(self.func),
                    f"returned output {k} of layout {raw[k].layout}; outputs are checked "
                    "element by element, as dense tensors",
                    "call .to_dense() on that output (inside a lambda around func), as torch asks",
                )
        return kept, [raw[k] for k in kept]

    def _same_without_grad(self) -> bool:
        """Whether ``func`` gives the same outputs at the base point without autograd.

        gradproof evaluates under ``torch.no_grad`` on inputs that do not require
        grad, which is quicker; torch's gradcheck evaluates with grad enabled. Code
        that branches on ``torch.is_grad_enabled()`` or ``x.requires_grad`` (a fast
        inference path, a Function used only in training) would then have another
        function differentiated: where the outputs differ beyond a few ulps (or
        ``func`` raises, running autograd itself), every evaluation is made as
        torch makes it, with grad enabled and the inputs requiring grad.
        """
        args = list(self.work)
        for i in self.checked:
            args[i] = self.work[i].detach()
        try:
            with torch.no_grad():
                plain = self.pace.timed(lambda: self.call(args))
        except RuntimeError:  # func runs autograd itself (torch.autograd.grad inside)
            return False
        return all(agree(a, b) for a, b in zip(plain, self.outputs, strict=True))

    @property
    def inputs(self) -> list[torch.Tensor]:
        """The checked inputs' working copies, at the base point (the leaves of the graph)."""
        return [self.work[i] for i in self.checked]

    def backward(self, weights: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor | None, ...]:
        """The backward applied to ``grad_outputs=weights``, at the base point (tensors).

        Of several outputs, as torch's Jacobian takes it: one backward per output
        whose weight is not zero, with only that output (the others' gradients
        undefined, None where ``ctx.set_materialize_grads(False)``), summed. A
        backward that reads an undefined gradient as anything but zero then fails,
        as in torch, whatever ``check_undefined_grad``. One that raises on it is
        run with every output's gradient given: that raise is
        ``check_undefined_grad``'s finding (torch lets the error through).
        """
        used = [k for k, w in enumerate(weights) if bool(w.any())] if len(weights) > 1 else []
        everything = list(range(len(weights)))
        roots: list[int | list[int]] = [*used] if used else [everything]
        try:
            parts = [self._backward(k, weights) for k in roots]
        except Exception:  # raises on None: check_undefined_grad reports it, not this
            return self._backward(everything, weights)
        return tuple(summed(grads) for grads in zip(*parts, strict=True))

    def _backward(
        self, roots: list[int] | int, weights: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor | None, ...]:
        """The backward from output ``roots`` (or outputs) alone, weighted by its ``weights``."""
        roots = [roots] if isinstance(roots, int) else roots
        return torch.autograd.grad(
            [self.graph[k] for k in roots],
            self.inputs,
            grad_outputs=[weights[k] for k in roots],
            retain_graph=True,
            allow_unused=True,
        )

    def gradient(self, weights: tuple[torch.Tensor, ...]) -> dict[str, np.ndarray]:
        """The backward applied to ``grad_outputs=weights``, at the base point, by name."""
        return self.as_arrays(self.backward(weights))

    def as_arrays(self, grads: Sequence[torch.Tensor | None]) -> dict[str, np.ndarray]:
        """Gradients of the checked inputs as float64 (complex: complex128) arrays by name.

        None (no gradient) is zeros.
        """
        return {
            n: _zeros(t) if g is None else to_numpy64(g)
            for n, t, g in zip(self.names, self.inputs, grads, strict=True)
        }

    def analytic_jacobians(self) -> list[dict[str, np.ndarray]]:
        """torch's analytic Jacobians, one backward per output element: (out size, input size)."""
        return [self._analytic_jacobian(k) for k in range(len(self.outputs))]

    def _analytic_jacobian(self, k: int) -> dict[str, np.ndarray]:
        """Output ``k``'s Jacobian in every checked input, by name: one backward per row.

        A complex input has two columns per element, its real and its imaginary
        part (the layout of its block in gradproof's report).
        """
        rows = [
            self.gradient(unit_weights(self.outputs, k, flat))
            for flat in range(self.outputs[k].numel())
        ]
        return {
            n: np.array([as_pairs(r[n]).ravel() for r in rows]).reshape(
                len(rows), coordinates(self.work[i])
            )
            for n, i in zip(self.names, self.checked, strict=True)
        }

    def numerical_jacobians(
        self, params: dict[str, np.ndarray], name: str, eps: float
    ) -> list[np.ndarray]:
        """torch's numerical Jacobians in input ``name``, by central differences of step ``eps``.

        ``(out(x + eps e_j) - out(x - eps e_j)) / (2 eps)``: one (output size, input size)
        array per output, computed in batches of bounded memory. A complex input
        is stepped in its real and its imaginary part, two columns per element.
        """
        size = as_pairs(params[name]).size
        chunk = max(1, JACOBIAN_ELEMENTS // (2 * (size + sum(o.numel() for o in self.outputs))))
        columns: list[list[np.ndarray]] = [[] for _ in self.outputs]
        for start in range(0, size, chunk):
            cols = np.arange(start, min(size, start + chunk))
            plus, minus = (self._moved(params, name, cols, step) for step in (eps, -eps))
            for k, (p, m) in enumerate(zip(plus, minus, strict=True)):
                columns[k].append((p - m) / (2 * eps))
        return [
            np.concatenate(c).T if c else np.zeros((o.numel(), 0))
            for c, o in zip(columns, self.outputs, strict=True)
        ]

    def _moved(
        self, params: dict[str, np.ndarray], name: str, cols: np.ndarray, step: float
    ) -> list[np.ndarray]:
        """Every output, with element ``cols[r]`` of ``name`` moved by ``step``, in row ``r``."""
        point = {n: np.repeat(params[n][None], len(cols), axis=0) for n in self.names}
        flat = point[name].reshape(len(cols), -1)  # a view: the point is contiguous
        if np.iscomplexobj(flat):
            flat = flat.view(np.float64)  # (real, imaginary) pairs, interleaved
        flat[np.arange(len(cols)), cols] += step
        with self.lock:
            outputs = self._evaluate(point)
        return [to_numpy64(o).reshape(len(cols), -1) for o in outputs]

    def is_batch(self, point: dict[str, np.ndarray]) -> bool:
        """Whether ``point`` is a batch of points: one more axis than the inputs."""
        return bool(np.ndim(point[self.names[0]]) == self.work[self.checked[0]].dim() + 1)

    def evaluate(self, point: dict[str, np.ndarray], *, replay: bool) -> list[torch.Tensor]:
        """The outputs at ``point``; with ``replay``, those an earlier check kept, where kept."""
        with self.lock:  # one evaluation at a time: the generator and the cache are shared
            if replay and self.cache.entries:
                kept = self.cache.get(self.cache.key(point, self.names, self.is_batch(point)))
                if kept is not None:
                    return kept
            outputs = self._evaluate(point)
            if not replay and self.cache.has_room():
                self.cache.add(self.cache.key(point, self.names, self.is_batch(point)), outputs)
            return outputs

    def __getstate__(self) -> dict[str, Any]:  # workers=n sends the loss to other processes
        skip = ("lock", "graph", "cache", "staging")  # the graph only serves the parent's backward
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(
            state, lock=threading.RLock(), graph=[], cache=OutputCache(), staging=Staging()
        )

    def _evaluate(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        if self.is_batch(point):
            return self._evaluate_batch(point)
        args = list(self.work)
        if not self.needs_grad:
            for i, name in zip(self.checked, self.names, strict=True):
                args[i] = self.staging.put(i, point[name], self.work[i])
            try:
                with torch.no_grad():
                    return self.staging.unaliased(self.call(args))
            except RuntimeError:
                # func may run autograd itself (torch.autograd.grad, .backward()), which
                # needs inputs that require grad: it is retried, and from now on run, so.
                self.needs_grad = True
        for i, name in zip(self.checked, self.names, strict=True):
            args[i] = from_numpy(point[name], self.work[i]).requires_grad_(True)
        with torch.enable_grad():
            return self.call(args)

    def call(self, args: list[Any]) -> list[torch.Tensor]:
        """``func``'s checked outputs at ``args`` (the generator reset first), detached."""
        self.reseed()
        raw = as_outputs(self.func(*args))
        return [raw[k].detach() for k in self.kept]

    def _evaluate_batch(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        count = len(point[self.names[0]])
        if self.use_vmap:
            try:
                out, self.use_vmap = self.pace.batched(lambda: self._vmapped(point), count)
                return out  # later batches one call per point, where this was slower
            except Exception:  # vmap cannot run func; the loop can (or raises itself)
                self.use_vmap = False
        rows = [self._evaluate({n: point[n][k] for n in self.names}) for k in range(count)]
        return [torch.stack([row[j] for row in rows]) for j in range(len(self.kept))]

    def vmap_works(self, params: dict[str, np.ndarray]) -> bool:
        """Whether ``func`` runs under vmap, and right (see :meth:`tried_batch`); where it
        does not (a forward vmap cannot run, a wrong vmap rule), one call per point."""
        if self.use_vmap and not self.vmap_tried:
            self.tried_batch({n: params[n][None] for n in self.names})
        return self.use_vmap

    def tried_batch(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        """The outputs at the rows of ``point`` (its first row the base point), in one call
        under vmap where vmap runs ``func`` right. The first time, a row nudged from the base
        point (:func:`nudged`) rides along; it and the base row are compared with ``func``
        called on its own (the traced outputs, and one call), which settles vmap's use."""
        with self.lock:
            if not self.use_vmap or self.vmap_tried:
                return self._evaluate(point)
            self.vmap_tried, n = True, len(point[self.names[0]])
            trial = {k: np.concatenate([v, nudged(v[:1])]) for k, v in point.items()}
            try:
                batch = self._vmapped(trial)
            except Exception:  # vmap cannot run func: one call per point
                self.use_vmap = False
                return self._evaluate(point)
            single = self._evaluate({k: v[n] for k, v in trial.items()})  # raises: the user's
            self.use_vmap = all(
                same(b[0], o) and same(b[n], one)
                for b, o, one in zip(batch, self.outputs, single, strict=True)
            )
            return [b[:n] for b in batch] if self.use_vmap else self._evaluate(point)

    def _vmapped(self, point: dict[str, np.ndarray]) -> list[torch.Tensor]:
        stacked = [
            fresh_tensor(point[n], self.work[i])
            for i, n in zip(self.checked, self.names, strict=True)
        ]
        return self.vmapped(stacked)

    def vmapped(self, stacked: list[torch.Tensor]) -> list[torch.Tensor]:
        """The outputs at every row of ``stacked`` (the checked inputs, each with a leading
        axis of points), in one call under vmap; raises where vmap cannot run ``func``."""
        func = batchable(self.func)

        def one(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
            args = list(self.work)
            for i, v in zip(self.checked, values, strict=True):
                args[i] = v
            raw = as_outputs(func(*args))
            return tuple(raw[k] for k in self.kept)

        if self.needs_grad:  # evaluated as torch evaluates func: see _same_without_grad
            stacked = [s.detach().requires_grad_(True) for s in stacked]
        with torch.set_grad_enabled(self.needs_grad), quiet_vmap_fallback(), forwards_under_vmap():
            self.reseed()
            return [o.detach() for o in vmap(one)(*stacked)]


@dataclasses.dataclass(frozen=True, eq=False)
class WeightedLoss:
    """``loss(point) = sum_k <weights_k, func(point)_k>``: the scalar loss gradproof checks.

    One value per point, or per row of a batch of points. With ``replay``, the
    outputs an earlier check evaluated are reused instead of calling ``func``.
    """

    function: FunctionLoss
    weights: tuple[torch.Tensor, ...]
    replay: bool

    def __call__(self, point: dict[str, np.ndarray]) -> torch.Tensor:
        outputs = self.function.evaluate(point, replay=self.replay)
        return weighted_sum(outputs, self.weights, self.function.is_batch(point))

    def __gradproof_resident__(self, spans: Any, theta: np.ndarray, batched: bool) -> Any:
        """Evaluations made where the inputs live, on private copies shifted in place
        (:mod:`gradproof.torch._function_resident`); None where outputs are kept for a
        later check to replay, or ``func`` runs autograd itself."""
        return open_function_resident(self, spans, theta, batched)


def _zeros(tensor: torch.Tensor) -> np.ndarray:
    """A zero gradient for ``tensor``: complex128 where it is complex, float64 otherwise."""
    return np.zeros(tuple(tensor.shape), dtype=np.complex128 if tensor.is_complex() else None)
