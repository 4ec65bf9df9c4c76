"""gradproof.torch.gradcheck: custom autograd.Functions, right and wrong.

Oracles: each Function's forward is plain torch code, so its correct backward
is what autograd computes for that code (independent of the Function), and the
planted bugs have known shapes (×2 on one input, a transposed matmul gradient,
a missing term).
"""

from __future__ import annotations

import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError  # noqa: E402

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402
from gradproof.torch._common import supports_mode  # noqa: E402

SCALE_RTOL = 1e-6  # a planted ×2 is recovered to this relative accuracy


class MulTwiceX(torch.autograd.Function):
    """x * y with the gradient of x doubled."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return 2 * g * y, g * x


class MatMulTransposed(torch.autograd.Function):
    """a @ b with the gradient of a transposed: (g @ b.T).T instead of g @ b.T."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return (g @ b.T).T, a.T @ g


class XSinMissingTerm(torch.autograd.Function):
    """x * sin(x) whose backward forgets the x cos(x) term."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sin(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sin(x)


class TwoOutputs(torch.autograd.Function):
    """(x * y, sum(x) + y**2): two inputs, two outputs, one of them a vector, right."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, y):
        return x * y, x.sum() + y**2

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g1, g2):
        x, y = ctx.saved_tensors
        gx = g1 * y + g2.sum() * torch.ones_like(x)
        gy = g1 * x + 2 * y * g2
        return gx, gy


class CubeTiny(torch.autograd.Function):
    """x**3 with a backward off by a relative 1e-6: inside torch's atol/rtol, not gradproof's."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x**2 * (1 + 1e-6)


def mul_twice(x, y):
    return MulTwiceX.apply(x, y)


def matmul_transposed(a, b):
    return MatMulTransposed.apply(a, b)


def xsin(x):
    return XSinMissingTerm.apply(x)


def two_outputs(x, y):
    return TwoOutputs.apply(x, y)


def _inputs(*shapes, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=gen, dtype=dtype, requires_grad=True) for s in shapes)


def test_doubled_input_gradient_is_named_with_its_factor():
    x, y = _inputs((3, 4), (3, 4))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(mul_twice, (x, y))
    report = caught.value.report
    assert report.suspects == ("x",)
    assert report.blocks["y"].passed
    block = report.blocks["x"]
    assert block.diagnosis is not None and block.diagnosis.kind == "scale"
    assert block.scale == pytest.approx(2.0, rel=SCALE_RTOL)
    assert len(block.wrong_elements) == 12
    message = str(caught.value)
    assert "backward of `mul_twice`" in message and "x[" in message and "2.00×" in message
    assert "0.80/r" in message  # the miss probability of the projection is stated


def test_the_error_is_both_gradproofs_and_torchs():
    x, y = _inputs((2,), (2,))
    with pytest.raises(gradproof.GradcheckError):
        gt.gradcheck(mul_twice, (x, y))
    with pytest.raises(TorchGradcheckError):  # code written for torch's gradcheck still works
        gt.gradcheck(mul_twice, (x, y))
    assert gt.gradcheck(mul_twice, (x, y), raise_exception=False) is False


def test_transposed_matmul_gradient_is_named_as_a_transpose():
    a, b = _inputs((4, 4), (4, 4))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(matmul_transposed, (a, b))
    report = caught.value.report
    assert report.suspects == ("a",)
    assert report.blocks["b"].passed
    assert report.blocks["a"].diagnosis.kind == "transposed"


def test_function_apply_inputs_are_named_by_position():
    a, b = _inputs((3, 3), (3, 3))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(MatMulTransposed.apply, (a, b))
    assert caught.value.report.suspects == ("input0",)
    assert "MatMulTransposed.apply" in str(caught.value)


def test_missing_term_is_caught_at_every_element():
    (x,) = _inputs((6,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(xsin, (x,))
    block = caught.value.report.blocks["x"]
    assert block.status == "fail"
    # The missing term x cos(x) is nonzero at every element of a random x.
    assert len(block.wrong_elements) == 6


def test_full_jacobian_names_the_output_element():
    x, y = _inputs((3,), (3,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(mul_twice, (x, y), full_jacobian=True)
    message = str(caught.value)
    assert "output 0[0]" in message and "3 of 3 checks failed" in message
    # output element 0 depends on x[0] only: the other elements of x are right there
    assert caught.value.report.blocks["x"].wrong_elements == ((0,),)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("precision", ["float64", "native"])
def test_correct_function_with_two_outputs_passes(dtype, precision):
    x, y = _inputs((5,), (5,), dtype=dtype)
    assert gt.gradcheck(two_outputs, (x, y), dtype=precision) is True
    assert gt.gradcheck(two_outputs, (x, y), dtype=precision, full_jacobian=True) is True


def test_torch_agrees_on_the_correct_and_the_wrong_function():
    x, y = _inputs((5,), (5,))
    assert torch.autograd.gradcheck(two_outputs, (x, y))
    assert not torch.autograd.gradcheck(mul_twice, (x, y), raise_exception=False)


def test_vmap_and_loop_give_the_same_verdict_and_numbers():
    x, y = _inputs((4,), (4,))
    for fn in (two_outputs, mul_twice):
        results = []
        for batched in (True, False):
            try:
                results.append(gt.gradcheck(fn, (x, y), batched=batched))
            except gt.GradcheckError as error:
                results.append(error.report.difference)
        assert type(results[0]) is type(results[1])
        if isinstance(results[0], float):
            assert results[0] == pytest.approx(results[1], rel=1e-6)


def test_more_projections_reuse_the_function_evaluations():
    calls = []

    def counted(x, y):
        calls.append(1)
        return two_outputs(x, y)

    x, y = _inputs((4,), (4,))
    assert gt.gradcheck(counted, (x, y), projections=1, batched=False)
    one = len(calls)
    calls.clear()
    assert gt.gradcheck(counted, (x, y), projections=3, batched=False)
    assert len(calls) == one


def test_atol_and_rtol_forgive_what_torch_would_forgive():
    (x,) = _inputs((3,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(CubeTiny.apply, (x,))
    assert caught.value.report.blocks["input0"].scale == pytest.approx(1 + 1e-6, rel=1e-8)
    assert gt.gradcheck(CubeTiny.apply, (x,), atol=1e-5, rtol=1e-3) is True
    assert torch.autograd.gradcheck(CubeTiny.apply, (x,))  # torch does not see it either


def test_random_functions_are_checked_with_one_fixed_draw_and_state_is_kept():
    class Mask(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            mask = (torch.rand_like(x) > 0.5).to(x.dtype)
            ctx.save_for_backward(mask)
            return x * mask * 2

        @staticmethod
        def backward(ctx, g):
            (mask,) = ctx.saved_tensors
            return g * mask * 2

    (x,) = _inputs((8,))
    before = x.detach().clone()
    rng = torch.get_rng_state()
    assert gt.gradcheck(Mask.apply, (x,)) is True
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(x.detach(), before) and x.grad is None and x.requires_grad


def test_inputs_that_do_not_require_grad_pass_through():
    x, y = _inputs((3,), (3,))
    y = y.detach()  # a constant: not checked
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(mul_twice, (x, y))
    assert list(caught.value.report.blocks) == ["x"]


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"projections": 0}, "`projections`=0"),
        ({"dtype": "half"}, "`dtype`='half'"),
        ({"nondet_tol": 0.1}, "`nondet_tol`=0.1"),
        ({"atol": -1.0}, "`atol`=-1.0"),
        ({"fast_mode": "yes"}, "`fast_mode`='yes'"),
    ],
)
def test_bad_options_name_argument_and_fix(options, argument):
    x, y = _inputs((2,), (2,))
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gt.gradcheck(two_outputs, (x, y), **options)
    assert str(caught.value).startswith(argument) and "Fix:" in str(caught.value)


def test_no_input_requiring_grad_is_misuse():
    with pytest.raises(gradproof.InvalidArgument, match="requires_grad=True"):
        gt.gradcheck(torch.sin, (torch.ones(3),))


def test_bfloat16_natively_is_refused_but_checked_in_float64():
    x = torch.randn(4, dtype=torch.bfloat16, requires_grad=True)
    with pytest.raises(gradproof.InvalidArgument, match="bfloat16"):
        gt.gradcheck(torch.sin, (x,), dtype="native")
    assert gt.gradcheck(torch.sin, (x,)) is True


@pytest.mark.skipif(not supports_mode("probe"), reason="gradproof.check has no mode='probe' yet")
def test_fast_mode_probes_and_still_fails_the_wrong_backward():
    x, y = _inputs((4,), (4,))
    assert gt.gradcheck(two_outputs, (x, y), fast_mode=True) is True
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(mul_twice, (x, y), fast_mode=True)
    assert caught.value.report.mode == "probe"


def test_torchs_other_options_at_their_defaults_are_accepted():
    x, y = _inputs((2,), (2,))
    assert gt.gradcheck(two_outputs, (x, y), nondet_tol=0.0, check_undefined_grad=True) is True
