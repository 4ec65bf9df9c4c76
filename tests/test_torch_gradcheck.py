"""gradproof.torch.gradcheck: custom autograd.Functions, right and wrong.

Oracles: each Function's forward is plain torch code, so its correct backward
is what autograd computes for that code (independent of the Function), and the
planted bugs have known shapes (×2 on one input, a transposed matmul gradient,
a missing term).
"""

from __future__ import annotations

import inspect

import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError  # noqa: E402

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402

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


def cube_off_by(relative: float) -> type[torch.autograd.Function]:
    """x**3 with a backward off by ``relative``."""

    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x**2 * (1 + relative)

    return Cube


CubeTiny = cube_off_by(1e-6)  # inside torch's default atol/rtol, not gradproof's error model
CubeSlight = cube_off_by(1e-8)  # torch fails it only at atol=rtol=0


class Variadic(torch.autograd.Function):
    """x * y, with forward(ctx, *args): its inputs have no names."""

    @staticmethod
    def forward(ctx, *args):
        ctx.save_for_backward(*args)
        return args[0] * args[1]

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g * y, g * x


class TinyAndDoubled(torch.autograd.Function):
    """x**3 + y**2 with x's gradient off by a relative 1e-6 and y's doubled."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x**3 + y**2

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return g * 3 * x**2 * (1 + 1e-6), g * 4 * y


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


def test_function_apply_inputs_are_named_after_forward():
    a, b = _inputs((3, 3), (3, 3))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(MatMulTransposed.apply, (a, b))  # forward(ctx, a, b): ctx skipped
    assert caught.value.report.suspects == ("a",)
    assert "MatMulTransposed.apply" in str(caught.value)
    x, y = _inputs((3,), (3,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(MulTwiceX.apply, (x, y))
    assert list(caught.value.report.blocks) == ["x", "y"]


def test_setup_context_functions_have_no_ctx_to_skip():
    x, y = _inputs((3,), (3,))
    with pytest.raises(gt.GradcheckError) as caught:  # tol=1e-30 fails it, to see the report
        gt.gradcheck(TwoOutputs.apply, (x, y), tol=1e-30)  # forward(x, y), with setup_context
    assert list(caught.value.report.blocks) == ["x", "y"]


def test_unnamed_inputs_fall_back_to_their_position():
    x, y = _inputs((3,), (3,))
    with pytest.raises(gt.GradcheckError) as caught:  # tol=1e-30 fails it, to see the report
        gt.gradcheck(Variadic.apply, (x, y), tol=1e-30)
    assert list(caught.value.report.blocks) == ["input0", "input1"]


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
    assert "output 0[0]" in message
    assert "3 of 4 checks failed" in message  # 3 output elements, and undefined grads
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
    assert caught.value.report.blocks["x"].scale == pytest.approx(1 + 1e-6, rel=1e-8)
    assert gt.gradcheck(CubeTiny.apply, (x,), atol=1e-5, rtol=1e-3) is True
    assert torch.autograd.gradcheck(CubeTiny.apply, (x,))  # torch does not see it either


def test_explicit_atol_and_rtol_also_fail_what_torch_fails():
    (x,) = _inputs((3,))
    assert not torch.autograd.gradcheck(
        CubeSlight.apply, (x,), atol=0, rtol=0, raise_exception=False
    )
    assert gt.gradcheck(CubeSlight.apply, (x,), atol=0, rtol=0, raise_exception=False) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(CubeSlight.apply, (x,), atol=0.0, rtol=0.0)
    report, message = caught.value.report, str(caught.value)
    assert report.status == "fail" and report.suspects == ("x",)
    assert len(report.blocks["x"].wrong_elements) == 3
    assert "torch's rule" in message and "(atol=0, rtol=0;" in message
    assert "x[0] (Jacobian of output 0[0])" in message  # an element of the Jacobian, named
    # left at None, a 1e-8 error is below what the numerical derivative can resolve here
    assert gt.gradcheck(CubeSlight.apply, (x,)) is True


def test_the_rule_is_checked_on_each_jacobian_element():
    a, b = _inputs((3, 3), (3, 3))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(MatMulTransposed.apply, (a, b), atol=1e-5, rtol=1e-3)
    block = caught.value.report.blocks["a"]
    # a transposed gradient is right on the diagonal only
    assert sorted(block.wrong_elements) == [(i, j) for i in range(3) for j in range(3) if i != j]
    assert all(e.note.startswith("Jacobian of output 0[") for e in block.worst)
    assert "2 of 3 checks failed" in str(caught.value)  # the projection fails too
    assert caught.value.report.blocks["b"].passed


def test_giving_one_bound_leaves_the_other_at_torchs_default():
    (x,) = _inputs((3,))
    # torch's gradcheck(atol=0) keeps rtol=1e-3, which forgives CubeTiny's 1e-6
    assert torch.autograd.gradcheck(CubeTiny.apply, (x,), atol=0.0)
    assert gt.gradcheck(CubeTiny.apply, (x,), atol=0.0) is True
    assert gt.gradcheck(CubeSlight.apply, (x,), rtol=0.0, raise_exception=False) is True
    assert not gt.gradcheck(CubeSlight.apply, (x,), atol=0.0, rtol=1e-12, raise_exception=False)


def test_the_rules_report_blames_only_what_breaks_the_rule():
    x, y = _inputs((3,), (3,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(TinyAndDoubled.apply, (x, y))
    assert caught.value.report.suspects == ("y", "x")  # the error model fails both
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(TinyAndDoubled.apply, (x, y), atol=1e-5, rtol=1e-3)
    report = caught.value.report
    assert report.suspects == ("y",) and report.blocks["x"].passed  # x is inside the bound
    assert report.blocks["y"].diagnosis.kind == "scale"  # the error model still explains y


def test_the_users_tol_stands_beside_the_rule():
    (x,) = _inputs((3,))
    assert gt.gradcheck(CubeTiny.apply, (x,), atol=1e-5, rtol=1e-3) is True
    with pytest.raises(gt.GradcheckError, match=r"tol 1\.0e-12"):
        gt.gradcheck(CubeTiny.apply, (x,), atol=1e-5, rtol=1e-3, tol=1e-12)


CASES = {  # name: (function, input shapes)
    "right": (two_outputs, [(3, 3), (3, 3)]),
    "doubled": (mul_twice, [(3, 3), (3, 3)]),
    "transposed": (matmul_transposed, [(3, 3), (3, 3)]),
    "off_1e-6": (CubeTiny.apply, [(3,)]),
    "off_1e-8": (CubeSlight.apply, [(3,)]),
}


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(("atol", "rtol"), [(1e-5, 1e-3), (0.0, 0.0), (1e-12, 1e-9)])
def test_torchs_values_give_torchs_verdict(case, atol, rtol, batched):
    fn, shapes = CASES[case]
    inputs = _inputs(*shapes)
    bounds = {"eps": 1e-6, "atol": atol, "rtol": rtol}
    expected = torch.autograd.gradcheck(fn, inputs, raise_exception=False, **bounds)
    got = gt.gradcheck(fn, inputs, raise_exception=False, batched=batched, **bounds)
    assert got is expected


def test_the_rule_judges_what_the_error_model_cannot():
    def flat(x):  # a slope of 1e-6 under a value of 1e4: mostly roundoff
        return 1e4 + 1e-6 * x

    (x,) = _inputs((3,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(flat, (x,))
    assert caught.value.report.status == "inconclusive"
    assert torch.autograd.gradcheck(flat, (x,))
    assert gt.gradcheck(flat, (x,), eps=1e-6, atol=1e-5, rtol=1e-3) is True


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
        ({"nondet_tol": -0.1}, "`nondet_tol`=-0.1"),
        ({"check_forward_ad": 1}, "`check_forward_ad`=1"),
        ({"masked": "no"}, "`masked`='no'"),
        ({"check_backward_ad": False}, "`check_backward_ad`=False"),
        ({"check_batched_forward_grad": True}, "`check_batched_forward_grad`=True"),
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


def test_fast_mode_probes_and_still_fails_the_wrong_backward():
    x, y = _inputs((32, 20), (32, 20))  # 1,280 coordinates: probing costs less than all
    assert gt.gradcheck(two_outputs, (x, y), fast_mode=True) is True
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(mul_twice, (x, y), fast_mode=True)
    assert caught.value.report.mode == "probe"


class _Center(torch.autograd.Function):
    """x - mean(x), with a vmap rule that is wrong: it takes the mean across the batch too."""

    @staticmethod
    def forward(x):
        return x - x.mean()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, g):
        return g - g.mean()

    @staticmethod
    def vmap(info, in_dims, x):
        return x - x.mean(), 0  # wrong: x.mean(-1, keepdim=True) under vmap


def test_a_wrong_vmap_rule_is_found_by_the_trial_and_not_used():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_Center.apply, (x,))
    assert gt.gradcheck(_Center.apply, (x,)) is True  # one call per point, as torch


class _SquareTwice(torch.autograd.Function):
    """x**2 with its gradient doubled, and a vmap rule torch generates."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x**2

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 4 * g * x


class _NumpyMulTwice(torch.autograd.Function):
    """x * y computed in numpy, which vmap cannot run, with the gradient of x doubled."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return torch.from_numpy(x.detach().numpy() * y.detach().numpy())

    @staticmethod
    def backward(ctx, g):
        x, y = ctx.saved_tensors
        return 2 * g * y, g * x


def test_fast_mode_probes_sooner_where_func_is_called_once_per_point():
    x, y = _inputs((40,), (40,))  # 80 coordinates
    with pytest.raises(gt.GradcheckError) as caught:  # vmap cannot run numpy
        gt.gradcheck(_NumpyMulTwice.apply, (x, y), fast_mode=True)
    assert caught.value.report.mode == "probe"
    with pytest.raises(gt.GradcheckError) as caught:  # under vmap: all 80 checked
        gt.gradcheck(
            _SquareTwice.apply, (torch.cat([x, y]).detach().requires_grad_(),), fast_mode=True
        )
    assert caught.value.report.mode == "full"


def test_fast_mode_checks_every_coordinate_where_that_costs_less_than_probing():
    x, y = _inputs((4,), (4,))  # 8 coordinates: fewer evaluations than one probe's set-up
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(mul_twice, (x, y), fast_mode=True)
    assert caught.value.report.mode == "full"
    with pytest.raises(gt.GradcheckError) as caught:  # the user's own mode is kept
        gt.gradcheck(mul_twice, (x, y), fast_mode=True, mode="probe")
    assert caught.value.report.mode == "probe"


def test_torchs_other_options_at_their_defaults_are_accepted():
    x, y = _inputs((2,), (2,))
    assert gt.gradcheck(two_outputs, (x, y), nondet_tol=0.0, check_undefined_grad=True) is True


def test_func_is_named_as_in_torch():
    ours = list(inspect.signature(gt.gradcheck).parameters)
    theirs = list(inspect.signature(torch.autograd.gradcheck).parameters)
    assert ours[:2] == theirs[:2] == ["func", "inputs"]
    core = {"eps", "atol", "rtol", "raise_exception", "fast_mode"}
    assert core <= set(ours) and core <= set(theirs)
    x, y = _inputs((3,), (3,))
    assert gt.gradcheck(func=two_outputs, inputs=(x, y)) is True
    with pytest.raises(gradproof.InvalidArgument, match=r"^`func`"):
        gt.gradcheck(func="two_outputs", inputs=(x, y))


def _calls(fn, **options):
    """How many times gradcheck calls ``fn`` (wrapped) on a passing check."""
    calls = []

    def counted(*args):
        calls.append(1)
        return fn(*args)

    assert gt.gradcheck(counted, _inputs((3,), (3,)), **options)
    return len(calls)


@pytest.mark.parametrize("options", [{}, {"batched": False}, {"atol": 1e-5, "rtol": 1e-3}])
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])  # the first call, halfway, the last
def test_state_is_restored_when_func_raises_halfway(options, where):
    total = _calls(two_outputs, **options)
    fail_at = max(1, round(where * total))
    calls = []

    def breaks(x, y):
        calls.append(1)
        if len(calls) >= fail_at:
            raise RuntimeError("func broke")
        return two_outputs(x, y)

    x, y = _inputs((3,), (3,))
    z = torch.ones(3, dtype=torch.float64)  # not checked
    x.grad = torch.full_like(x, 7.0)
    grad, values = x.grad, (x.detach().clone(), y.detach().clone())
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    with pytest.raises(RuntimeError, match="func broke"):
        gt.gradcheck(lambda x, y, z: breaks(x, y * z), (x, y, z), **options)
    assert len(calls) >= fail_at  # it broke where meant to (vmap may retry it once)
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(x.detach(), values[0]) and torch.equal(y.detach(), values[1])
    assert x.requires_grad and y.requires_grad and not z.requires_grad
    assert x.grad is grad and torch.equal(grad, torch.full_like(x, 7.0)) and y.grad is None


@pytest.mark.parametrize("fn", [two_outputs, mul_twice])
def test_an_existing_grad_is_left_alone(fn):
    x, y = _inputs((3,), (3,))
    x.grad = torch.full_like(x, 7.0)
    grad = x.grad
    gt.gradcheck(fn, (x, y), raise_exception=False)
    gt.gradcheck(fn, (x, y), raise_exception=False, atol=1e-5, rtol=1e-3)
    assert x.grad is grad and torch.equal(grad, torch.full_like(x, 7.0)) and y.grad is None


# Device safety: everything gradcheck builds (cotangents, weights, perturbed inputs) must
# live on the inputs' device. With torch's default device set to "meta", a tensor built
# without device= (torch.zeros(shape)) lands on "meta" and meets the CPU inputs, and torch
# raises "expected device cpu but got meta" as it raises for a CPU cotangent beside CUDA
# inputs: the CPU-only assumption that breaks on a GPU, caught on a machine without one.


def _two_outputs(x, w):
    return torch.sin(x) * w, (x**2).sum(0)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"projections": 3},
        {"full_jacobian": True},
        {"fast_mode": True},
        {"atol": 1e-5, "rtol": 1e-3},
        {"dtype": "native"},
        {"batched": False},
        {"check_forward_ad": True, "check_batched_forward_grad": True},
        {"check_batched_grad": True, "check_grad_dtypes": True},
        {"check_forward_ad": True, "atol": 1e-5, "rtol": 1e-3, "nondet_tol": 1e-12},
    ],
    ids=[
        "projection",
        "projections",
        "full_jacobian",
        "fast_mode",
        "torch_rule",
        "native",
        "loop",
        "forward",
        "batched_grad",
        "forward_rule",
    ],
)
def test_nothing_gradcheck_builds_lands_on_the_default_device(options):
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, dtype=torch.float64, requires_grad=True)
    with torch.device("meta"):
        assert gt.gradcheck(_two_outputs, (x, w), **options) is True
    assert x.device.type == w.device.type == "cpu"


def test_nothing_gradgradcheck_builds_lands_on_the_default_device():
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, dtype=torch.float64, requires_grad=True)
    with torch.device("meta"):
        assert gt.gradgradcheck(_two_outputs, (x, w), gen_non_contig_grad_outputs=True) is True
        assert gt.gradgradcheck(_two_outputs, (x, w), check_batched_grad=True) is True


def test_a_wrong_backward_fails_as_a_wrong_backward_on_any_default_device():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, dtype=torch.float64, requires_grad=True)
    with torch.device("meta"), pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(MulTwiceX.apply, (x, y))
    assert caught.value.report.suspects == ("x",)


@pytest.mark.parametrize("full_jacobian", [False, True])
def test_the_weights_of_every_reduction_have_the_outputs_device_and_dtype(full_jacobian):
    from gradproof.torch._reductions import reductions

    outputs = [
        torch.empty(2, 3, device="meta"),
        torch.empty((), dtype=torch.float64, device="meta"),
    ]
    plan = reductions(outputs, full_jacobian=full_jacobian, projections=2, seed=0)
    assert len(plan) == (7 if full_jacobian else 2)
    for reduction in plan:
        assert [(w.device.type, w.dtype) for w in reduction.weights] == [
            ("meta", torch.float32),
            ("meta", torch.float64),
        ]
