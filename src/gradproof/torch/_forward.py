"""Forward mode: ``func``'s Jacobians from its jvp (``torch.autograd.forward_ad``), by column.

A Jacobian column is the outputs' tangent for a unit tangent on one input
element, so the forward-mode derivative of the scalar loss
``sum_k <w_k, out_k>`` (what `gradcheck` compares with the numerical one) is
``sum_k w_k . J_k``: the same check as the backward's, with the jvp under test.
One jvp per input element (as torch's own forward-mode check), or one vmap'd
call per chunk of unit tangents (``check_batched_forward_grad``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.autograd.forward_ad as fwad
from torch._vmap_internals import _vmap as vmap  # torch's own forward-AD check uses it

from gradproof._errors import invalid
from gradproof.torch._common import quiet_forward_mode, quiet_vmap_fallback, to_numpy64
from gradproof.torch._outputs import as_outputs, coordinates

if TYPE_CHECKING:
    from gradproof.torch._function_loss import FunctionLoss

Jacobians = list[dict[str, np.ndarray]]  # per output: input name -> (output size, input size)
TANGENT_ELEMENTS = 1 << 22  # unit tangents and their output tangents per vmap'd call


def forward_jacobians(
    loss: FunctionLoss, *, batched: bool, option: str = "check_forward_ad"
) -> Jacobians:
    """Every output's Jacobian in every checked input, from ``func``'s jvp.

    Raises:
        InvalidArgument: ``func`` has no forward-mode rule (a Function without ``jvp``).
    """
    columns: dict[str, list[np.ndarray]] = {}  # name -> per output (output size, input size)
    for position, name in zip(loss.checked, loss.names, strict=True):
        tangent = _Tangent(loss, position)
        try:
            columns[name] = tangent.batched() if batched else tangent.looped()
        except NotImplementedError as error:
            raise invalid(
                option,
                True,
                f"checks the jvp, but func has no forward-mode rule ({error})",
                f"define a jvp staticmethod on the autograd.Function, or leave {option}=False",
            ) from error
    return [{n: columns[n][k] for n in loss.names} for k in range(len(loss.outputs))]


def forward_gradient(
    jacobians: Jacobians, weights: tuple[torch.Tensor, ...], params: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The forward-mode derivative of ``sum_k <w_k, out_k>``: ``sum_k w_k . J_k``, by name.

    Shaped as ``params``; for a complex input, whose Jacobian has a column for
    each element's real and imaginary part, the complex gradient
    ``dL/d(Re z) + i dL/d(Im z)``.

    >>> jac = [{"x": np.array([[1.0, 0.0], [0.0, 3.0]])}]
    >>> forward_gradient(jac, (torch.tensor([1.0, 2.0]),), {"x": np.zeros(2)})["x"].tolist()
    [1.0, 6.0]
    >>> forward_gradient(jac, (torch.tensor([1.0, 2.0]),), {"x": np.zeros(1, complex)})["x"]
    array([1.+6.j])
    """
    flat = [to_numpy64(w).ravel() for w in weights]
    found = {}
    for name, like in params.items():
        total = np.sum([f @ j[name] for f, j in zip(flat, jacobians, strict=True)], axis=0)
        total = np.asarray(total, dtype=np.float64)
        if np.iscomplexobj(like):
            total = np.ascontiguousarray(total).view(np.complex128)
        found[name] = total.reshape(like.shape)
    return found


def primals(loss: FunctionLoss, values: list[Any] | None = None) -> list[Any]:
    """``func``'s arguments for a jvp: detached, the checked ones requiring grad.

    They require grad so that a func that runs autograd inside (a backward, for
    gradgradcheck's forward-over-reverse check) can; their tangents survive.
    """
    with torch.enable_grad():
        return [
            v.detach().requires_grad_(i in loss.checked) if isinstance(v, torch.Tensor) else v
            for i, v in enumerate(loss.work if values is None else values)
        ]


def output_tangents(
    loss: FunctionLoss, args: list[Any], tangents: Mapping[int, torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Each kept output and its tangent (None: none), with ``tangents`` on those inputs."""
    with quiet_forward_mode(), torch.enable_grad(), fwad.dual_level():
        duals = list(args)
        for position, tangent in tangents.items():
            duals[position] = fwad.make_dual(args[position], tangent)
        loss.reseed()
        raw = as_outputs(loss.func(*duals))
        found = []
        for k in loss.kept:
            primal, tangent = fwad.unpack_dual(raw[k])
            found.append((primal, None if tangent is None else tangent.clone()))
        return found


class _Tangent:
    """The jvp of ``func`` along tangents on one input, the others held fixed."""

    def __init__(self, loss: FunctionLoss, position: int) -> None:
        self.loss = loss
        self.position = position
        self.primals = primals(loss)
        # the other checked inputs carry zero tangents, as in torch's forward-mode check (an
        # undefined tangent is check_undefined_grad's to test)
        self.zeros = {i: torch.zeros_like(self.primals[i]) for i in loss.checked}
        self.like = loss.work[position]
        self.size = coordinates(self.like)  # a complex input: its real and imaginary parts
        self.shape = tuple(self.like.shape)

    def __call__(self, tangent: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The tangent of every kept output (zeros where it has none)."""
        tangents = {**self.zeros, self.position: tangent}
        pairs = output_tangents(self.loss, self.primals, tangents)
        return tuple(torch.zeros_like(p) if t is None else t for p, t in pairs)

    def units(self, rows: torch.Tensor) -> torch.Tensor:
        """The unit tangents of coordinates ``rows``, one per row, shaped as the input.

        A complex input's coordinate ``2j`` is element ``j``'s real part (tangent
        1), ``2j + 1`` its imaginary part (tangent i), as torch's check steps them.
        """
        like = self.like
        count = like.numel()
        units = torch.zeros((len(rows), count), dtype=like.dtype, device=like.device)
        at = torch.arange(len(rows), device=like.device)
        if like.is_complex():
            ones = torch.ones(len(rows), dtype=like.dtype, device=like.device)
            units[at, rows // 2] = torch.where(rows % 2 == 0, ones, ones * 1j)
        else:
            units[at, rows] = 1
        return units.reshape(len(rows), *self.shape)

    def looped(self) -> list[np.ndarray]:
        """One jvp per input coordinate: per output, (output size, input coordinates)."""
        cols: list[list[np.ndarray]] = [[] for _ in self.loss.kept]
        for j in range(self.size):
            unit = self.units(torch.tensor([j], device=self.like.device))[0]
            for k, out in enumerate(self(unit)):
                cols[k].append(to_numpy64(out).ravel())
        return [_stack(c, o) for c, o in zip(cols, self.loss.outputs, strict=True)]

    def batched(self) -> list[np.ndarray]:
        """The same columns from one vmap'd jvp per chunk of unit tangents."""
        width = self.size + sum(o.numel() for o in self.loss.outputs)
        chunk = max(1, TANGENT_ELEMENTS // max(1, width))
        cols: list[list[np.ndarray]] = [[] for _ in self.loss.kept]
        for start in range(0, self.size, chunk):
            rows = torch.arange(start, min(self.size, start + chunk), device=self.like.device)
            with quiet_vmap_fallback():
                outs = vmap(self)(self.units(rows))
            for k, out in enumerate(outs):
                cols[k].extend(to_numpy64(out).reshape(len(rows), -1))
        return [_stack(c, o) for c, o in zip(cols, self.loss.outputs, strict=True)]


def _stack(columns: list[np.ndarray], output: torch.Tensor) -> np.ndarray:
    """Columns (one per input element) as an (output size, input size) Jacobian."""
    if not columns:
        return np.zeros((output.numel(), 0))
    return np.stack(columns, axis=1)
