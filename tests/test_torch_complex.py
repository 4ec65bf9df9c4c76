"""Complex numbers in gradproof.torch.gradcheck and gradgradcheck, with torch's semantics.

A complex input is checked as its real and imaginary parts: the backward must
return torch's gradient ``dL/d(Re z) + i dL/d(Im z)`` of the real loss
``L = Re(sum conj(v) out)``, as torch's own checker expects.

Oracles: closed-form derivatives (the backward of ``z * w`` is ``g conj(w)``,
of ``|z|`` is ``g z / |z|``, of ``exp(z)`` is ``g conj(exp(z))``, of
``fft(z)`` is ``n ifft(g)``, of ``A @ z`` is ``A^H g``), and torch's own
``gradcheck``/``gradgradcheck`` on the same pairs: wherever torch is right
(passes the right Function, fails the planted bug), gradproof must be too. Each
case plants one bug: a conj() missing, a factor 2, the imaginary part's sign.
Floats are compared with a stated relative tolerance (``RTOL``).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402
from gradproof.torch._common import JIT_DEPRECATION_WARNING  # noqa: E402

C, R = torch.complex128, torch.float64
RTOL = 1e-9  # relative tolerance of float comparisons in complex128


def _complex(*shapes, seed=0, dtype=C):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=gen, dtype=dtype).requires_grad_(True) for s in shapes)


def _torch(check, fn, inputs, **options):
    """torch's own verdict: True, False, or the name of the exception it let through."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=JIT_DEPRECATION_WARNING)
            warnings.filterwarnings("ignore", message="Input #")  # complex64: not double
            return check(fn, inputs, raise_exception=False, **options)
    except Exception as error:
        return type(error).__name__


def _named(error, name):
    """The report names ``name`` as a suspect and one of its elements, ``name[i, part]``."""
    assert name in error.report.suspects, (name, error.report.suspects)
    return re.search(rf"^{re.escape(name)}\[[\d, ]+\]", str(error), flags=re.M)


# --- Functions with closed-form backwards, each right or with one planted bug ---------


def mul_function(bug=None):
    """``z * w``: backward ``g conj(w)``, ``g conj(z)``; ``bug="conj"`` forgets conj on z's."""

    class Mul(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(z, w):
            return z * w

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)
            ctx.z, ctx.w = inputs

        @staticmethod
        def backward(ctx, g):
            z, w = ctx.saved_tensors
            gz = g * (w if bug == "conj" else w.conj())
            return (2 * gz if bug == "double" else gz), g * z.conj()

        @staticmethod
        def jvp(ctx, tz, tw):
            z, w = ctx.z, ctx.w
            return tz * (w.conj() if bug == "jvp" else w) + z * tw

    return Mul


def abs_function(bug=None):
    """``|z|`` (complex in, real out): backward ``g z/|z|``; ``bug="imag_sign"`` conjugates it."""

    class Abs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z.abs()

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            unit = z / z.abs()
            return g * (unit.conj() if bug == "imag_sign" else unit)

    return Abs


def expi_function(bug=None):
    """``exp(i x)`` (real in, complex out): backward ``Re(g conj(i exp(i x)))``."""

    class ExpI(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.exp(1j * x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            derivative = 1j * torch.exp(1j * x)
            return (g * (derivative if bug == "conj" else derivative.conj())).real

    return ExpI


def fft_function(bug=None):
    """``fft(z)``: backward ``n ifft(g)`` (the adjoint of the DFT); ``bug="fft"`` uses fft(g)."""

    class Fft(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            return torch.fft.fft(z)

        @staticmethod
        def backward(ctx, g):
            if bug == "fft":
                return torch.fft.fft(g)
            return g.shape[-1] * torch.fft.ifft(g)

    return Fft


def matvec_function(bug=None):
    """``A @ z``: backward ``A^H g`` and ``g z^H``; ``bug="transpose"`` uses ``A^T g``."""

    class MatVec(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, z):
            ctx.save_for_backward(a, z)
            return a @ z

        @staticmethod
        def backward(ctx, g):
            a, z = ctx.saved_tensors
            adjoint = a.T if bug == "transpose" else a.mH
            return torch.outer(g, z.conj()), adjoint @ g

    return MatVec


# case: (name, Function factory, bug, input shapes and dtypes, the input the bug hits)
CASES = [
    ("mul", mul_function, "conj", [((3,), C), ((3,), C)], "z"),
    ("mul_double", mul_function, "double", [((2, 2), C), ((2, 2), C)], "z"),
    ("abs", abs_function, "imag_sign", [((4,), C)], "z"),
    ("expi", expi_function, "conj", [((4,), R)], "x"),
    ("fft", fft_function, "fft", [((5,), C)], "z"),
    ("matvec", matvec_function, "transpose", [((3, 3), C), ((3,), C)], "z"),
]


def _inputs(shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=gen, dtype=d).requires_grad_(True) for s, d in shapes)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_a_right_complex_function_passes_both(case):
    _, factory, _, shapes, _ = case
    fn, inputs = factory().apply, _inputs(shapes)
    assert _torch(torch.autograd.gradcheck, fn, inputs) is True
    assert gt.gradcheck(fn, inputs) is True


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_a_planted_complex_bug_fails_both_naming_input_and_element(case):
    _, factory, bug, shapes, name = case
    fn, inputs = factory(bug).apply, _inputs(shapes)
    assert _torch(torch.autograd.gradcheck, fn, inputs) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(fn, inputs)
    assert _named(caught.value, name), str(caught.value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_torchs_rule_on_complex_inputs_gives_torchs_verdict(case):
    _, factory, bug, shapes, name = case
    inputs = _inputs(shapes)
    assert gt.gradcheck(factory().apply, inputs, atol=1e-5, rtol=1e-3) is True
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(factory(bug).apply, inputs, atol=1e-5, rtol=1e-3)
    assert "torch's rule" in str(caught.value)
    assert _named(caught.value, name), str(caught.value)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_fast_mode_on_complex_inputs_passes_the_right_and_fails_the_bug(case):
    _, factory, bug, shapes, name = case
    inputs = _inputs(shapes)
    assert _torch(torch.autograd.gradcheck, factory().apply, inputs, fast_mode=True) is True
    assert _torch(torch.autograd.gradcheck, factory(bug).apply, inputs, fast_mode=True) is False
    assert gt.gradcheck(factory().apply, inputs, fast_mode=True) is True
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(factory(bug).apply, inputs, fast_mode=True)
    assert name in caught.value.report.suspects


def test_a_missing_conj_is_diagnosed_as_a_conjugate():
    # Re(z * w) with w fixed: a real output, so the gradient g conj(w) and the bug g w
    # are exact conjugates of each other
    (w,) = _complex((3,), seed=1)
    w = w.detach()

    class ReMul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            return (z * w).real

        @staticmethod
        def backward(ctx, g):
            return g * w  # the conj() of w is missing

    (z,) = _complex((3,))
    assert _torch(torch.autograd.gradcheck, ReMul.apply, (z,)) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(ReMul.apply, (z,))
    block = caught.value.report.blocks["z"]
    assert block.diagnosis.kind == "conjugate"
    assert block.shape == (3, 2)  # (real, imaginary) per element
    assert all(part == 1 for _, part in block.wrong_elements)  # only imaginary parts differ
    assert "conj" in str(caught.value)


def test_the_backward_gradproof_checks_is_torchs_complex_gradient():
    # the closed form of d/dz of L = Re(sum conj(v) z w) is v conj(w): gradproof's analytic
    # gradient is the backward applied to v, as a complex array
    from gradproof.torch._function_loss import CheckedInputs, FunctionLoss

    z, w = _complex((3,), (3,))
    loss = FunctionLoss(
        mul_function().apply, (z, w), CheckedInputs((0, 1), ("z", "w")), R, seed=0, batched=True
    )
    v = torch.randn(3, 2, dtype=R, generator=torch.Generator().manual_seed(3))
    grad = loss.gradient((v,))
    expected = (torch.view_as_complex(v) * w.detach().conj()).numpy()
    assert np.iscomplexobj(grad["z"])
    np.testing.assert_allclose(grad["z"], expected, rtol=RTOL)


def test_complex64_inputs_are_checked_in_complex128_and_natively():
    inputs = _inputs([((3,), torch.complex64), ((3,), torch.complex64)])
    assert gt.gradcheck(mul_function().apply, inputs) is True
    assert gt.gradcheck(mul_function().apply, inputs, dtype="native") is True
    for dtype in ("float64", "native"):
        with pytest.raises(gt.GradcheckError) as caught:
            gt.gradcheck(mul_function("conj").apply, inputs, dtype=dtype)
        assert _named(caught.value, "z")


def test_complex64_and_float32_mix_natively_in_one_precision():
    (z,) = _inputs([((3,), torch.complex64)])
    (x,) = _inputs([((3,), torch.float32)], seed=1)
    assert gt.gradcheck(lambda z, x: z * x, (z, x), dtype="native") is True


def test_complex32_is_refused_natively_naming_the_fix():
    with warnings.catch_warnings():  # torch: "ComplexHalf support is experimental"
        warnings.simplefilter("ignore")
        z = torch.randn(3, dtype=C).to(torch.complex32).requires_grad_(True)
    with pytest.raises(gradproof.InvalidArgument, match=r"complex32.*complex64"):
        gt.gradcheck(lambda z: z * 2, (z,), dtype="native")


def test_a_complex_input_is_left_as_it_was():
    z, w = _complex((3,), (3,))
    before = z.detach().clone()
    assert gt.gradcheck(torch.mul, (z, w)) is True
    assert torch.equal(z.detach(), before) and z.requires_grad and z.grad is None


@pytest.mark.parametrize(
    "fn",
    [torch.exp, torch.abs, torch.fft.fft, torch.sin, lambda z: z * z.conj(), torch.sgn],
    ids=["exp", "abs", "fft", "sin", "abs2", "sgn"],
)
@pytest.mark.parametrize("batched", [True, False])
def test_torchs_own_complex_ops_pass_both(fn, batched):
    (z,) = _complex((4,), seed=2)
    assert _torch(torch.autograd.gradcheck, fn, (z,)) is True
    assert gt.gradcheck(fn, (z,), batched=batched) is True


def test_complex_matmul_passes_with_full_jacobian_and_every_option():
    a, b = _complex((2, 3), (3, 2))
    options = {"check_forward_ad": True, "check_batched_grad": True, "check_grad_dtypes": True}
    assert _torch(torch.autograd.gradcheck, torch.matmul, (a, b), **options) is True
    assert gt.gradcheck(torch.matmul, (a, b), full_jacobian=True, **options) is True


@pytest.mark.parametrize(
    "fn",
    [lambda a: a.T * 2, lambda a: (a * 2, a[:0] * 3), lambda a: a.sum()],
    ids=["transposed", "empty", "scalar"],
)
def test_transposed_empty_and_scalar_complex_outputs_are_checked(fn):
    # a transposed output's last dimension has stride 2, an empty output's projection has
    # no element: both are real-viewed as torch needs; a 0-d output is one complex number
    (a,) = _complex((2, 3))
    assert _torch(torch.autograd.gradcheck, fn, (a,)) is True
    assert gt.gradcheck(fn, (a,)) is True
    assert gt.gradcheck(fn, (a,), atol=1e-5, check_batched_grad=True) is True


# --- torch's options on complex inputs --------------------------------------------------


def test_check_forward_ad_fails_a_wrong_complex_jvp_as_torch_does():
    z, w = _complex((3,), (3,))
    right, wrong = mul_function().apply, mul_function("jvp").apply
    assert _torch(torch.autograd.gradcheck, right, (z, w), check_forward_ad=True) is True
    assert _torch(torch.autograd.gradcheck, wrong, (z, w), check_forward_ad=True) is False
    assert gt.gradcheck(right, (z, w), check_forward_ad=True) is True
    with pytest.raises(gt.GradcheckError, match="jvp") as caught:
        gt.gradcheck(wrong, (z, w), check_forward_ad=True)
    assert _named(caught.value, "z")
    options = {"check_forward_ad": True, "check_batched_forward_grad": True}
    assert gt.gradcheck(right, (z, w), **options) is True


def test_a_complex_jvp_is_judged_by_torchs_rule_where_given():
    z, w = _complex((3,), (3,))
    options = {"check_forward_ad": True, "check_backward_ad": False, "atol": 1e-5}
    assert gt.gradcheck(mul_function().apply, (z, w), **options) is True
    assert (
        gt.gradcheck(mul_function("jvp").apply, (z, w), raise_exception=False, **options) is False
    )


def _undefined(as_ones):
    """Two outputs; the backward reads an undefined (None) gradient as zeros, or as ones."""

    class Pair(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.set_materialize_grads(False)
            ctx.save_for_backward(z)
            return z * 2, z * z

        @staticmethod
        def backward(ctx, g1, g2):
            (z,) = ctx.saved_tensors
            fill = torch.ones_like if as_ones else torch.zeros_like
            g1 = fill(z) if g1 is None else g1
            g2 = fill(z) if g2 is None else g2
            return 2 * g1 + 2 * z.conj() * g2

    return Pair


def test_check_undefined_grad_fails_a_none_read_as_ones_on_complex_inputs():
    (z,) = _complex((3,))
    right, wrong = _undefined(False).apply, _undefined(True).apply
    assert _torch(torch.autograd.gradcheck, right, (z,)) is True
    assert _torch(torch.autograd.gradcheck, wrong, (z,)) is False
    assert gt.gradcheck(right, (z,)) is True
    with pytest.raises(gt.GradcheckError, match="undefined") as caught:
        gt.gradcheck(wrong, (z,))
    assert "z" in caught.value.report.suspects


def test_check_batched_grad_fails_a_complex_backward_vmap_cannot_run():
    class Numpyish(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z * z

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            product = 2 * z.conj().resolve_conj().numpy() * g.resolve_conj().numpy()
            return torch.tensor(product)  # vmap cannot run numpy

    (z,) = _complex((3,))
    assert _torch(torch.autograd.gradcheck, Numpyish.apply, (z,)) is True
    assert _torch(torch.autograd.gradcheck, Numpyish.apply, (z,), check_batched_grad=True) is False
    assert gt.gradcheck(Numpyish.apply, (z,)) is True
    with pytest.raises(gt.GradcheckError, match="vmap"):
        gt.gradcheck(Numpyish.apply, (z,), check_batched_grad=True)
    assert gt.gradcheck(torch.mul, _complex((3,), (3,)), check_batched_grad=True) is True


def _noisy():
    class Noisy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z * z

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            noise = 1e-9 * torch.randn(z.shape, dtype=z.dtype)  # zero where g is zero
            return 2 * z.conj() * g * (1 + noise)

    return Noisy


def test_a_noisy_complex_backward_is_nondeterministic_and_nondet_tol_forgives_it():
    (z,) = _complex((3,))
    fn = _noisy().apply
    assert _torch(torch.autograd.gradcheck, fn, (z,)) is False
    assert _torch(torch.autograd.gradcheck, fn, (z,), nondet_tol=1e-6) is True
    with pytest.raises(gt.GradcheckError, match="not deterministic") as caught:
        gt.gradcheck(fn, (z,))
    assert caught.value.report.blocks["z"].shape == (3, 2)
    assert gt.gradcheck(fn, (z,), nondet_tol=1e-6) is True


def test_check_grad_dtypes_passes_complex_gradients_of_their_inputs_dtype():
    z, w = _complex((3,), (3,))
    assert _torch(torch.autograd.gradcheck, torch.mul, (z, w), check_grad_dtypes=True) is True
    assert gt.gradcheck(torch.mul, (z, w), check_grad_dtypes=True, check_forward_ad=True) is True


def test_a_complex_constant_passes_through_and_is_not_checked():
    z = _complex((3,))[0]
    a = torch.randn(3, dtype=torch.complex64)  # does not require grad
    assert gt.gradcheck(lambda z, a: z * a, (z, a)) is True


# --- gradgradcheck ----------------------------------------------------------------------


def _second(kind):
    """``z * z`` whose backward is right (``2 g conj(z)``), or detached from z."""

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z * z

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            held = z.detach() if kind == "detached" else z
            return 2 * g * held.conj()

    return Square


def test_gradgradcheck_on_complex_in_and_out_agrees_with_torch():
    (z,) = _complex((3,))
    right, detached = _second("right").apply, _second("detached").apply
    assert _torch(torch.autograd.gradgradcheck, right, (z,)) is True
    assert _torch(torch.autograd.gradgradcheck, detached, (z,)) is False
    assert gt.gradcheck(detached, (z,)) is True  # its first derivative is right
    assert gt.gradgradcheck(right, (z,)) is True
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradgradcheck(detached, (z,))
    assert _named(caught.value, "z")


@pytest.mark.parametrize(
    "fn, dtype",
    [
        (lambda x: torch.exp(1j * x), R),  # real in, complex out
        (lambda z: torch.abs(z), C),  # complex in, real out
        (lambda z, w: z * w * z, C),  # complex in and out
        (lambda z: torch.fft.fft(z), C),
        (lambda z, w: (z * w).sum(), C),  # a complex scalar: a 0-d complex grad_output
    ],
    ids=["expi", "abs", "zwz", "fft", "scalar"],
)
def test_gradgradcheck_of_complex_functions_passes_as_in_torch(fn, dtype):
    inputs = _inputs([((3,), dtype)] * fn.__code__.co_argcount)
    assert _torch(torch.autograd.gradgradcheck, fn, inputs) is True
    assert gt.gradgradcheck(fn, inputs) is True
    assert gt.gradgradcheck(fn, inputs, check_fwd_over_rev=True, atol=1e-5) is True


def test_gradgradcheck_draws_complex_grad_outputs_for_complex_outputs():
    from gradproof.torch._gradgradcheck import _grad_outputs

    (x,) = _inputs([((4,), R)])
    state = torch.get_rng_state()
    first = _grad_outputs(lambda x: torch.exp(1j * x), (x,), None, 0)
    again = _grad_outputs(lambda x: torch.exp(1j * x), (x,), None, 0)
    assert torch.equal(torch.get_rng_state(), state)
    (v,) = first
    assert v.dtype == C and v.requires_grad and torch.equal(v, again[0])
    assert v.real.abs().max() < 1 and v.imag.abs().max() < 1 and v.imag.abs().max() > 0


def test_gradgradcheck_fails_a_detached_backward_of_a_complex_output():
    class ExpIDetached(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.exp(1j * x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return (g * (1j * torch.exp(1j * x.detach())).conj()).real

    (x,) = _inputs([((3,), R)])
    assert _torch(torch.autograd.gradgradcheck, ExpIDetached.apply, (x,)) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradgradcheck(ExpIDetached.apply, (x,))
    assert _named(caught.value, "x")


def _fully_detached():
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z * z

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            return (2 * g * z.conj()).detach()  # right, but depends on nothing autograd sees

    return Square


@pytest.mark.parametrize("dtype", [R, C], ids=["float64", "complex128"])
def test_a_backward_constant_in_everything_passes_gradgradcheck_where_it_is_zero(dtype):
    # zero_'s backward is zero whatever the inputs: no output of it depends on them, so its
    # second derivative is zero, and, as in torch, the numerical one must be zero too
    (z,) = _inputs([((3,), dtype)])
    assert _torch(torch.autograd.gradgradcheck, lambda z: z.clone().zero_(), (z,)) is True
    assert gt.gradgradcheck(lambda z: z.clone().zero_(), (z,)) is True
    detached = _fully_detached().apply
    assert _torch(torch.autograd.gradgradcheck, detached, (z,)) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradgradcheck(detached, (z,))
    assert _named(caught.value, "z") and _named(caught.value, "grad_output")
