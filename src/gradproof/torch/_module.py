"""`check_module`: autograd's gradient of every parameter of a module against the numerical one."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, vmap

import gradproof
from gradproof._engine.resident import Span
from gradproof._engine.validate import validate_callable, validate_passed_on, validate_seed
from gradproof._errors import invalid
from gradproof._report import Report
from gradproof.torch._batch import Wrt, batch_leaves, replaced, validate_wrt
from gradproof.torch._buffers import Buffers, freeze_power_iterations
from gradproof.torch._common import (
    Precision,
    Reseed,
    cast,
    compute_dtype,
    fixed_randomness,
    from_numpy,
    quiet_vmap_fallback,
    refuse_complex_scheme,
    scalar_loss,
    to_numpy64,
    validate_precision,
)
from gradproof.torch._resident import TensorResident, open_tensor_resident
from gradproof.torch._state import borrowed


class TrainingModeWarning(UserWarning):
    """The model is in training mode with dropout or BatchNorm layers."""


def check_module(
    model: torch.nn.Module,
    loss_fn: Callable[..., Any],
    *batch: Any,
    wrt: Wrt = "parameters",
    dtype: Precision = "float64",
    batched: bool = True,
    **options: Any,
) -> Report:
    """Check the gradient autograd computes for every parameter of ``model`` (or its inputs).

    The loss is ``loss_fn(model(inputs), *targets)`` for ``batch = (inputs,
    *targets)`` (``inputs`` a tuple for a model with several inputs). Every
    parameter with ``requires_grad=True`` is a block named as in
    ``model.named_parameters()`` (``"layer2.weight"``), its elements by index
    (``layer2.weight[3, 1]``); a hand-written ``autograd.Function`` or backward
    hook that is wrong shows up as the parameters it feeds. ``wrt="inputs"``
    checks the gradient of the loss in every floating tensor of ``batch``
    instead (a layer whose input gradient is wrong, though its weight gradient
    is right, fails here), each named by its place in ``batch``: ``batch[0]``,
    ``batch[0][1]`` for the second of a tuple of inputs, ``batch[0]['ids']``
    in a dict; ``wrt="all"`` checks both.

    The check runs on ``model`` itself, not a copy, so it checks the gradient
    the user's ``loss.backward()`` puts in ``.grad``: hooks on parameters
    (``weight.register_hook``), module forward, forward pre-, full backward
    and backward pre-hooks, ``torch.nn.utils.parametrize`` parametrizations
    (their originals are the blocks) and tied weights (one block, under its
    first name) all take part, and every hook runs at each evaluation (the
    post-accumulate-grad hooks once, in the one ``backward``: one that steps an
    optimizer, as optimizer-in-backward does, steps it). While
    it runs, the parameters and buffers hold private copies of their values;
    afterwards ``model`` (and a ``loss_fn`` module) has its own tensors back,
    bit for bit: values, buffers (BatchNorm running statistics),
    ``requires_grad`` flags, ``.grad`` fields, train/eval modes, and torch's
    random state, also when the loss raises. Torch's generator is reset to one
    seed before every evaluation, so dropout draws the same mask each time.

    Args:
        model: a ``torch.nn.Module``.
        loss_fn: ``loss_fn(output, *targets) -> scalar tensor`` (e.g.
            ``torch.nn.functional.mse_loss`` or a ``torch.nn.MSELoss()``).
        *batch: the model's input, then the targets. Floating tensors are cast
            to the check's dtype; integer tensors (class labels) are kept.
        wrt: ``"parameters"`` (default): the gradient in every parameter that
            requires grad. ``"inputs"``: in every floating tensor of ``batch``
            (the model's input and the targets). ``"all"``: both.
        dtype: ``"float64"`` (default): check in float64, whatever the
            model's dtype (bfloat16, float16, float32): the most sensitive check.
            ``"native"``: check in the model's own dtype; steps and tolerances
            are then set for that precision.
        batched: evaluate many perturbed parameter sets per call with
            ``torch.func.functional_call`` and ``vmap``; a model that vmap
            cannot run (dropout, in-place buffer updates, ``.item()``) falls
            back to one call per set.
        **options: passed on to :func:`gradproof.check` (``eps``, ``tol``,
            ``scheme``, ``noise``, and the speed options such as ``mode``).
            ``seed`` (default 0), where given, is also the value torch's generator
            is reset to before every evaluation.

    Returns:
        gradproof's frozen :class:`~gradproof.Report`.

    Raises:
        InvalidArgument: misuse, named with its fix.
        NondeterministicLossError: the loss changes between identical calls.

    Warns:
        TrainingModeWarning: the model is in training mode with dropout or
            BatchNorm; the check then verifies the training-mode gradient (one
            fixed dropout mask, batch statistics).

    >>> import torch, gradproof.torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> x, y = torch.randn(8, 3), torch.randn(8, 1)
    >>> report = gradproof.torch.check_module(model, torch.nn.functional.mse_loss, x, y)
    >>> report.passed, list(report.blocks)
    (True, ['0.weight', '0.bias', '2.weight', '2.bias'])
    """
    _validate_arguments(model, loss_fn, batch, batched)
    validate_precision(dtype)
    validate_wrt(wrt)
    own = dict(model.named_parameters())
    names = [name for name, p in own.items() if p.requires_grad] if wrt != "inputs" else []
    inputs = dict(batch_leaves(batch)) if wrt != "parameters" else {}
    _validate_blocks(model, wrt, names, inputs)
    checked = [*(own[n] for n in names), *inputs.values()]
    argument = "the model's parameters" if wrt == "parameters" else "the checked tensors"
    target = compute_dtype(dtype, checked, argument)
    validate_passed_on(check_module, options, to=gradproof.check, own={"batched"})
    validate_seed(options.get("seed", 0))
    refuse_complex_scheme(options)
    _warn_if_training(model)
    params = {name: to_numpy64(t) for name, t in [*((n, own[n]) for n in names), *inputs.items()]}
    lent = _lent(model, loss_fn)
    with fixed_randomness([*own.values(), *inputs.values()]), borrowed(lent, target):
        seed = int(options.get("seed", 0))
        loss = _ModuleLoss(model, loss_fn, batch, target, (names, list(inputs)), seed)
        try:
            grad = loss.gradient()
            return gradproof.check(loss, params, grad, batched=batched, **options)
        finally:
            loss.buffers.restore()  # a buffer the forward replaced goes back to its module


def _validate_blocks(
    model: torch.nn.Module, wrt: str, names: list[str], inputs: dict[str, torch.Tensor]
) -> None:
    """There must be something to check: a trainable parameter, or a floating input."""
    if wrt != "inputs" and not names and not (wrt == "all" and inputs):
        raise invalid(
            "model",
            type(model).__name__,
            "has no parameter with requires_grad=True, so there is no gradient to check",
            "pass a model with trainable parameters (or set requires_grad=True on those to "
            "check), or check the inputs' gradient with wrt='inputs'",
        )
    if wrt == "inputs" and not inputs:
        raise invalid(
            "wrt",
            wrt,
            "checks the gradient in the batch's floating tensors, but the batch holds none",
            "pass floating inputs (integer ones, such as token ids, have no gradient), or "
            "check the parameters with wrt='parameters'",
        )


def _validate_arguments(model: Any, loss_fn: Any, batch: tuple[Any, ...], batched: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise invalid(
            "model",
            model,
            "must be a torch.nn.Module",
            "pass the module; for a plain function of tensors use gradproof.torch.gradcheck",
        )
    validate_callable("loss_fn", loss_fn, "pass a function loss_fn(output, *targets) -> scalar")
    if not batch:
        raise invalid(
            "batch",
            (),
            "must hold at least the model's input",
            "call check_module(model, loss_fn, inputs, *targets)",
        )
    if not isinstance(batched, bool):
        raise invalid("batched", batched, "must be True or False", "pass batched=True or False")


def _warn_if_training(model: torch.nn.Module) -> None:
    kinds = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
    layers = [
        name or type(model).__name__
        for name, module in model.named_modules()
        if module.training and isinstance(module, kinds)
    ]
    if layers:
        warnings.warn(
            "the model is in training mode with dropout or BatchNorm layers "
            f"({', '.join(layers)}): the check verifies the training-mode gradient (one "
            "fixed dropout mask, batch statistics); call model.eval() first to check the "
            "inference-mode gradient",
            TrainingModeWarning,
            stacklevel=3,
        )


def _lent(model: torch.nn.Module, loss_fn: Any) -> list[torch.nn.Module]:
    """The modules a check lends itself: the model, and ``loss_fn`` where it is one."""
    return [model, *([loss_fn] if isinstance(loss_fn, torch.nn.Module) else [])]


class _ModuleLoss:
    """``loss(params)`` on the borrowed model; ``params`` maps names to arrays.

    The model is the user's own, lent by :func:`~gradproof.torch._state.borrowed`:
    its parameters hold private values, which each evaluation overwrites, as
    it overwrites the private copies of the batch's tensors that are checked.
    Leaves with one more axis than their tensor are a batch of points
    (gradproof's ``batched=True``): evaluated with vmap where it works.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[..., Any],
        batch: tuple[Any, ...],
        dtype: torch.dtype,
        checked: tuple[list[str], list[str]],
        seed: int,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.batch = cast(tuple(batch), dtype)  # private copies: the checked ones are written
        own = dict(model.named_parameters())
        inputs = dict(batch_leaves(self.batch))
        self.parameters = {n: own[n] for n in checked[0]}
        self.tensors = {**self.parameters, **{n: inputs[n] for n in checked[1]}}
        for name in checked[1]:
            self.tensors[name].requires_grad_(True)
        self.names = [*checked[0], *checked[1]]
        self.reseed = Reseed(seed, list(own.values()))
        self.lent = _lent(model, loss_fn)
        self.buffers = Buffers(self.lent)  # restored before every evaluation, as it was here
        self.needs_grad = False  # evaluated with grad enabled, as training does: see gradient
        self.use_vmap = True
        self.lock = threading.RLock()
        self.dirty = False  # a host-built point was written into the tensors (see _resident)

    @property
    def args(self) -> tuple[Any, ...]:
        return self.batch[0] if isinstance(self.batch[0], tuple) else (self.batch[0],)

    def __getstate__(self) -> dict[str, Any]:  # workers=n sends the loss to other processes
        return {k: v for k, v in self.__dict__.items() if k != "lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.lock = threading.RLock()

    def gradient(self) -> dict[str, np.ndarray]:
        """The gradient ``loss.backward()`` leaves in ``.grad``, at the base point.

        ``backward``, not ``autograd.grad``: every hook the user's training
        runs shapes it, down to the post-accumulate-grad hooks; ``inputs=``
        keeps it from accumulating into any other tensor.
        """
        tensors = [self.tensors[n] for n in self.names]
        with torch.enable_grad():
            self.buffers.restore()
            self.reseed()
            value = self._forward(self.model)
            value.backward(inputs=tensors)
        self.buffers.refresh(freeze_power_iterations(self.lent))
        self._choose_mode(value.detach())
        grads = {
            n: np.zeros(tuple(t.shape)) if t.grad is None else to_numpy64(t.grad)
            for n, t in zip(self.names, tensors, strict=True)
        }
        for tensor in tensors:
            tensor.grad = None  # the user's own .grad comes back when the model is returned
        return grads

    def __gradproof_resident__(
        self, spans: Sequence[Span], theta: np.ndarray, batched: bool
    ) -> TensorResident | None:
        """Evaluations made where the tensors live, no point built on the host (see
        :mod:`gradproof.torch._resident`)."""
        return open_tensor_resident(self, spans, theta, batched)

    def __call__(self, point: dict[str, np.ndarray]) -> torch.Tensor:
        first = self.names[0]
        if np.ndim(point[first]) == self.tensors[first].dim() + 1:
            return self._batch(point)
        with self.lock, torch.no_grad():  # one evaluation at a time: the model is shared
            self.dirty = True
            for name in self.names:
                self.tensors[name].copy_(from_numpy(point[name], self.tensors[name]))
            return self.in_place()

    def _choose_mode(self, traced: torch.Tensor) -> None:
        """Evaluate with grad enabled where the model gives another loss without it.

        gradproof evaluates under ``torch.no_grad``, which is quicker; a model that
        branches on ``torch.is_grad_enabled()`` (``nn.TransformerEncoder``'s fast
        path in eval mode) then computes another function than the one whose
        gradient is checked. Where the loss at the base point differs beyond a few
        ulps (or raises), every evaluation is made with grad enabled, as in training.
        """
        try:
            with torch.no_grad():
                plain = self.in_place()
            eps = torch.finfo(traced.dtype).eps if traced.is_floating_point() else 0.0
            same = bool(torch.isclose(plain, traced, rtol=4 * eps, atol=0.0, equal_nan=True))
        except RuntimeError:  # the model runs autograd itself
            same = False
        self.needs_grad = not same
        if self.needs_grad and self.use_vmap:
            self.use_vmap = self._vmap_agrees(traced)

    def _vmap_agrees(self, traced: torch.Tensor) -> bool:
        """Whether vmap, with grad enabled, gives the traced loss (two rows of the base
        point); inside vmap a tensor does not read as requiring grad, so it may not."""
        stacked = {n: torch.stack([t.detach()] * 2) for n, t in self.tensors.items()}
        try:
            rows = self.vmapped(stacked)
        except Exception:  # vmap cannot run the model: one call per point
            return False
        eps = torch.finfo(traced.dtype).eps if traced.is_floating_point() else 0.0
        return bool(torch.allclose(rows, traced.expand(2), rtol=4 * eps, atol=0.0))

    def in_place(self) -> torch.Tensor:
        """The loss at the values the tensors hold now (the buffers restored and the
        generator reset first); with grad enabled where the model needs it."""
        self.buffers.restore()
        self.reseed()
        if not self.needs_grad:
            return self._forward(self.model)
        with torch.enable_grad():
            return self._forward(self.model).detach()

    def _forward(self, model: Any) -> torch.Tensor:
        return scalar_loss(self.loss_fn(model(*self.args), *self.batch[1:]), "loss_fn")

    def _batch(self, point: dict[str, np.ndarray]) -> torch.Tensor:
        if self.use_vmap:
            try:
                return self._vmapped(point)
            except Exception:  # vmap cannot run this model; the loop can (or raises itself)
                self.use_vmap = False
        count = len(point[self.names[0]])
        return torch.stack([self({n: point[n][k] for n in self.names}) for k in range(count)])

    def _vmapped(self, point: dict[str, np.ndarray]) -> torch.Tensor:
        with self.lock:
            return self._vmapped_unlocked(point)

    def _vmapped_unlocked(self, point: dict[str, np.ndarray]) -> torch.Tensor:
        return self.vmapped({n: from_numpy(point[n], self.tensors[n]) for n in self.names})

    def vmapped(self, stacked: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss at every point of ``stacked`` (each tensor's values with a leading
        axis of points), in one call under vmap; raises where vmap cannot run the model."""

        def one(values: dict[str, torch.Tensor]) -> torch.Tensor:
            moved = {id(self.tensors[n]): v for n, v in values.items() if n not in self.parameters}
            batch = replaced(self.batch, moved)
            inputs = batch[0] if isinstance(batch[0], tuple) else (batch[0],)
            params = {n: v for n, v in values.items() if n in self.parameters}
            output = functional_call(self.model, params, inputs)
            return scalar_loss(self.loss_fn(output, *batch[1:]), "loss_fn")

        if self.needs_grad:
            stacked = {n: v.detach().requires_grad_(True) for n, v in stacked.items()}
        with torch.set_grad_enabled(self.needs_grad), quiet_vmap_fallback():
            self.buffers.restore()
            self.reseed()
            result: torch.Tensor = vmap(one)(stacked)
            return result.detach()
