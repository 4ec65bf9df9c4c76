"""`gradgradcheck`: a drop-in for ``torch.autograd.gradgradcheck``, failing with gradproof's report.

As in torch, the second derivative is checked as the first derivative of the
backward: `gradcheck` of ``(inputs, grad_outputs) -> torch.autograd.grad(
func(*inputs), inputs, grad_outputs, create_graph=True)``. Its blocks are
``func``'s inputs (named as `gradcheck` names them) and the grad_outputs
(``grad_output``, or ``grad_output0``, ``grad_output1``...).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from gradproof._engine.validate import validate_callable
from gradproof._errors import invalid
from gradproof.torch._common import Reseed, fixed_randomness, real_of
from gradproof.torch._gradcheck import make_config
from gradproof.torch._inputs import as_values, checked_inputs, input_names
from gradproof.torch._options import TorchOptions, validate_flag
from gradproof.torch._outputs import function_name
from gradproof.torch._verdict import Subject, verdict

# gradcheck's own arguments that gradgradcheck takes through ``**options``.
OWN = ("full_jacobian", "projections", "dtype", "batched")


def gradgradcheck(
    func: Callable[..., Any],
    inputs: torch.Tensor | Sequence[Any],
    grad_outputs: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
    *,
    eps: float | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    gen_non_contig_grad_outputs: bool = False,
    raise_exception: bool = True,
    nondet_tol: float = 0.0,
    check_undefined_grad: bool = True,
    check_grad_dtypes: bool = False,
    check_batched_grad: bool = False,
    check_fwd_over_rev: bool = False,
    check_rev_over_rev: bool = True,
    fast_mode: bool = False,
    masked: bool = False,
    **options: Any,
) -> bool:
    """Check the second derivative of ``func``: the backward of its backward.

    A drop-in for ``torch.autograd.gradgradcheck``, with the same arguments,
    ``True`` on success, and on failure a :class:`~gradproof.torch.GradcheckError`
    (or ``False`` with ``raise_exception=False``) whose message is gradproof's
    report, naming the input (or grad_output) and the element whose second
    derivative is wrong. As in torch, it is :func:`~gradproof.torch.gradcheck`
    of the function ``(inputs, grad_outputs) -> torch.autograd.grad(func(*inputs),
    inputs, grad_outputs, create_graph=True)``, so a backward written with
    operations autograd can differentiate passes, and one that detaches what
    depends on the input (``torch.sigmoid(x).detach()``) fails, though its first
    derivative is right.

    Args:
        func: ``func(*inputs) -> tensor or tuple of tensors``.
        inputs: a tensor or a tuple of them; those that require grad are checked.
        grad_outputs: the vectors the backward is applied to, one per output
            of ``func`` that requires grad. None (default): drawn uniformly
            from [-1, 1) with a generator started at ``seed`` (default 0), as
            torch draws them but repeatable, each requiring grad (so the
            backward's derivative in them is checked too).
        eps, atol, rtol, fast_mode: as in :func:`~gradproof.torch.gradcheck`
            (None: gradproof's error model; ``atol``/``rtol`` given: torch's rule).
        gen_non_contig_grad_outputs: pass non-contiguous grad_outputs to the
            backward (a strided view of each), to test a backward that assumes
            contiguous gradients.
        raise_exception, nondet_tol, check_undefined_grad, check_grad_dtypes,
            check_batched_grad, masked: as in :func:`~gradproof.torch.gradcheck`,
            applied to the backward function.
        check_fwd_over_rev: check the backward's forward-mode derivative too
            (`gradcheck`'s ``check_forward_ad`` on it).
        check_rev_over_rev: check its reverse-mode derivative (default; torch's
            ``check_backward_ad`` on it).
        **options: :func:`~gradproof.torch.gradcheck`'s own (``full_jacobian``,
            ``projections``, ``dtype``, ``batched``) and :func:`gradproof.check`'s.

    Returns:
        ``True`` when every check passes; ``False`` on failure with
        ``raise_exception=False``.

    Raises:
        GradcheckError: a wrong (or unjudgeable) second derivative.
        InvalidArgument: misuse, named with its fix.

    >>> import torch, gradproof.torch
    >>> x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    >>> gradproof.torch.gradgradcheck(torch.tanh, (x,))
    True
    """
    _validate(func, check_fwd_over_rev, check_rev_over_rev, check_undefined_grad,
              check_batched_grad, gen_non_contig_grad_outputs)  # fmt: skip
    torch_options = TorchOptions(
        nondet_tol=nondet_tol,
        check_undefined_grad=check_undefined_grad,
        check_grad_dtypes=check_grad_dtypes,
        check_batched_grad=check_batched_grad,
        check_forward_ad=check_fwd_over_rev,
        check_backward_ad=check_rev_over_rev,
        masked=masked,
    )
    own = {k: options.pop(k) for k in OWN if k in options}
    config = make_config(
        func,
        torch_options,
        eps=eps,
        atol=atol,
        rtol=rtol,
        flags={
            "raise_exception": raise_exception,
            "fast_mode": fast_mode,
            "full_jacobian": own.get("full_jacobian", False),
            "batched": own.get("batched", True),
        },
        dtype=own.get("dtype", "float64"),
        projections=own.get("projections", 1),
        options=options,
        where=gradgradcheck,
        also=OWN,
    )
    values = as_values(inputs)
    first = checked_inputs(func, values, masked=masked)
    vectors = _grad_outputs(func, values, grad_outputs, int(options.get("seed", 0)))
    backward = BackwardOf(func, len(values), first.positions, gen_non_contig_grad_outputs)
    names = [*input_names(func, len(values)), *_vector_names(len(vectors))]
    checked = checked_inputs(
        backward, (*values, *vectors), masked=masked, names=names, skip_empty=True
    )
    if not checked.positions:
        return True  # every checked input is empty: nothing to check, as in torch
    subject = Subject(
        "gradproof.torch.gradgradcheck",
        function_name(func),
        suffix="'s backward",
        owner="backward's ",
        forward_option="check_fwd_over_rev",
    )
    return verdict(
        backward,
        (*values, *vectors),
        checked,
        config,
        raise_exception=raise_exception,
        subject=subject,
    )


class BackwardOf:
    """``(inputs, grad_outputs) -> torch.autograd.grad(func(*inputs), inputs, grad_outputs)``.

    With ``create_graph=True``, so that its own derivative is the second
    derivative of ``func``; inputs that do not require grad (fresh copies) are
    made leaves that do. Gradients autograd leaves undefined are zeros.
    """

    def __init__(
        self,
        func: Callable[..., Any],
        count: int,
        positions: tuple[int, ...],
        non_contiguous: bool,
    ) -> None:
        self.func = func
        self.count = count
        self.positions = positions
        self.non_contiguous = non_contiguous
        self.__qualname__ = f"backward of {function_name(func)}"

    def __call__(self, *args: Any) -> tuple[torch.Tensor, ...]:
        inputs, vectors = list(args[: self.count]), list(args[self.count :])
        with torch.enable_grad():
            for i in self.positions:
                if not inputs[i].requires_grad:
                    inputs[i] = inputs[i].detach().requires_grad_(True)
            outputs = _differentiable(self.func(*inputs))
            if self.non_contiguous:
                vectors = [v if v is None else _strided(v) for v in vectors]
            diff = [inputs[i] for i in self.positions]
            grads = torch.autograd.grad(
                outputs, diff, vectors, create_graph=True, allow_unused=True
            )
            found = tuple(
                torch.zeros_like(x) if g is None else g for x, g in zip(diff, grads, strict=True)
            )
            return _anchored(found) if not any(g.requires_grad for g in found) else found


def _anchored(grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Gradients that depend on no input, made outputs autograd differentiates: as zero.

    A backward constant in the inputs and the grad_outputs (``zero_``, ``fill``) has
    a second derivative that is zero by autograd; as in torch, the check then
    asks the numerical derivative to be zero too. Adding a zero leaf that
    requires grad keeps the values and gives autograd a graph with no input in it.
    """
    anchor = torch.zeros((), dtype=real_of(grads[0].dtype), device=grads[0].device)
    anchor.requires_grad_(True)
    return tuple(g + anchor for g in grads)


def _differentiable(value: Any) -> list[torch.Tensor]:
    """``func``'s outputs that require grad, as torch's gradgradcheck takes them."""
    raw = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return [o for o in raw if isinstance(o, torch.Tensor) and o.requires_grad]


def _strided(tensor: torch.Tensor) -> torch.Tensor:
    """A non-contiguous tensor with ``tensor``'s values (every other element of a buffer)."""
    if tensor.dim() == 0:
        return tensor
    return torch.stack([tensor, torch.zeros_like(tensor)], dim=-1)[..., 0]


def _grad_outputs(
    func: Callable[..., Any], values: tuple[Any, ...], given: Any, seed: int
) -> tuple[Any, ...]:
    """The grad_outputs: those given, or drawn from [-1, 1) at ``seed``, requiring grad."""
    if given is not None:
        return as_values(given, "grad_outputs")
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    with fixed_randomness(tensors), torch.enable_grad():
        work = [
            v.detach().clone().requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor) else v
            for v in values
        ]
        Reseed(seed, tensors)()
        outputs = _differentiable(func(*work))
    rng = np.random.default_rng(seed)
    return tuple(_uniform(rng, o) for o in outputs)


def _uniform(rng: np.random.Generator, output: torch.Tensor) -> torch.Tensor:
    """A grad_output for ``output``, drawn from [-1, 1), requiring grad.

    For a complex output, a complex one: its real and imaginary parts each
    from [-1, 1), as torch's ``make_tensor`` draws them.
    """
    shape = tuple(output.shape)
    values = rng.uniform(-1.0, 1.0, shape)
    if output.is_complex():
        values = values + 1j * rng.uniform(-1.0, 1.0, shape)
    dtype = output.dtype if output.is_floating_point() or output.is_complex() else torch.float64
    dense = torch.empty(shape, dtype=dtype, device=output.device)  # torch.tensor: empty strides 0
    return dense.copy_(torch.from_numpy(np.asarray(values))).requires_grad_(True)


def _vector_names(count: int) -> list[str]:
    """The grad_outputs' block names.

    >>> _vector_names(1), _vector_names(2)
    (['grad_output'], ['grad_output0', 'grad_output1'])
    """
    return ["grad_output"] if count == 1 else [f"grad_output{k}" for k in range(count)]


def _validate(
    func: Any,
    fwd_over_rev: Any,
    rev_over_rev: Any,
    undefined: Any,
    batched: Any,
    non_contiguous: Any,
) -> None:
    """gradgradcheck's own options, and the combinations torch refuses, by their names here."""
    validate_callable("func", func, "pass the function to check, e.g. MyFunction.apply")
    for name, flag in [
        ("check_fwd_over_rev", fwd_over_rev),
        ("check_rev_over_rev", rev_over_rev),
        ("gen_non_contig_grad_outputs", non_contiguous),
    ]:
        validate_flag(name, flag)
    if not (fwd_over_rev or rev_over_rev):
        raise invalid(
            "check_rev_over_rev",
            False,
            "with check_fwd_over_rev=False too, nothing would be checked",
            "leave check_rev_over_rev=True, or pass check_fwd_over_rev=True",
        )
    for name, value in [("check_undefined_grad", undefined), ("check_batched_grad", batched)]:
        if value is True and not rev_over_rev:
            raise invalid(
                name,
                True,
                "checks the backward's backward, which check_rev_over_rev=False skips",
                f"pass {name}=False, or leave check_rev_over_rev=True",
            )
