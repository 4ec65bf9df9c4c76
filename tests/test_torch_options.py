"""gradproof.torch.gradcheck takes every option of torch's gradcheck, and runs each one's check.

Oracles: each Function's correct rule is what autograd computes for its forward
(plain torch code), and torch's own gradcheck gives the verdict on the same
Function with the same option; the planted bugs have known shapes (a jvp 2×
too large, a backward that multiplies a None gradient, noise in the backward,
a backward vmap cannot run).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402
from gradproof.torch._common import JIT_DEPRECATION_WARNING  # noqa: E402

D = torch.float64


def _inputs(*shapes, seed=0, positive=False):
    gen = torch.Generator().manual_seed(seed)
    made = [torch.randn(*s, generator=gen, dtype=D) for s in shapes]
    if positive:
        made = [m.abs() + 0.5 for m in made]
    return tuple(m.requires_grad_(True) for m in made)


def _torch(fn, inputs, **options):
    """torch's own verdict: True, False, or the name of the exception it let through."""
    try:
        with warnings.catch_warnings():  # torch's forward mode warns about its own jit use
            warnings.filterwarnings("ignore", message=JIT_DEPRECATION_WARNING)
            return torch.autograd.gradcheck(fn, inputs, raise_exception=False, **options)
    except Exception as error:  # torch lets some errors through (a TypeError in a backward)
        return type(error).__name__


def cube_with_jvp(factor: float) -> type[torch.autograd.Function]:
    """x**3 with a right backward and a jvp ``factor`` times the right one."""

    class Cube(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return x**3

        @staticmethod
        def setup_context(ctx, inputs, output):
            (x,) = inputs
            ctx.save_for_backward(x)
            ctx.x = x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x**2 * g

        @staticmethod
        def jvp(ctx, t):
            return factor * 3 * ctx.x**2 * t

    return Cube


CubeJvp = cube_with_jvp(1.0)
CubeJvpDoubled = cube_with_jvp(2.0)


# ------------------------------------------------------------------- the signature


def test_every_keyword_of_torchs_gradcheck_is_a_keyword_here():
    theirs = inspect.signature(torch.autograd.gradcheck).parameters
    ours = inspect.signature(gt.gradcheck).parameters
    keywords = [n for n, p in theirs.items() if p.kind is p.KEYWORD_ONLY]
    assert len(keywords) >= 13
    missing = [n for n in keywords if n not in ours or ours[n].kind is not ours[n].KEYWORD_ONLY]
    assert missing == []


def test_every_keyword_at_torchs_default_gives_torchs_verdict():
    theirs = inspect.signature(torch.autograd.gradcheck).parameters
    defaults = {n: p.default for n, p in theirs.items() if p.kind is p.KEYWORD_ONLY}
    (x,) = _inputs((4,))
    assert gt.gradcheck(torch.sin, (x,), **defaults) is True
    wrong = {**defaults, "raise_exception": False}
    assert gt.gradcheck(CubeJvp.apply, (x,), **wrong) is True
    assert torch.autograd.gradcheck(CubeJvp.apply, (x,), **wrong) is True


# ------------------------------------------------------------ check_forward_ad


def test_a_jvp_twice_too_large_fails_the_forward_check_and_is_named():
    (x,) = _inputs((5,))
    assert gt.gradcheck(CubeJvpDoubled.apply, (x,)) is True  # the backward is right
    assert _torch(CubeJvpDoubled.apply, (x,), check_forward_ad=True) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(CubeJvpDoubled.apply, (x,), check_forward_ad=True)
    message, report = str(caught.value), caught.value.report
    assert "the forward-mode derivative (jvp) of `Cube.apply` disagrees" in message
    assert report.suspects == ("x",) and report.blocks["x"].diagnosis.kind == "scale"
    assert report.blocks["x"].scale == pytest.approx(2.0, rel=1e-6)
    assert "x[" in message


def test_a_right_jvp_passes_as_in_torch():
    (x,) = _inputs((5,))
    assert _torch(CubeJvp.apply, (x,), check_forward_ad=True) is True
    assert gt.gradcheck(CubeJvp.apply, (x,), check_forward_ad=True) is True
    assert gt.gradcheck(CubeJvp.apply, (x,), check_forward_ad=True, full_jacobian=True) is True


def test_torchs_rule_judges_the_jvps_jacobian_where_given():
    (x,) = _inputs((3,))
    bounds = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3, "check_forward_ad": True}
    assert gt.gradcheck(CubeJvp.apply, (x,), **bounds) is True
    with pytest.raises(gt.GradcheckError, match="torch's rule") as caught:
        gt.gradcheck(CubeJvpDoubled.apply, (x,), **bounds)
    assert "forward-mode derivative (jvp)" in str(caught.value)


def test_check_backward_ad_false_skips_the_backward():
    class WrongBackward(CubeJvp):
        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * 3 * x**2 * g

    (x,) = _inputs((4,))
    only_forward = {"check_forward_ad": True, "check_backward_ad": False}
    assert _torch(WrongBackward.apply, (x,), **only_forward) is True
    assert gt.gradcheck(WrongBackward.apply, (x,), **only_forward) is True
    assert (
        gt.gradcheck(WrongBackward.apply, (x,), check_forward_ad=True, raise_exception=False)
        is False
    )


def test_a_function_without_jvp_is_misuse_of_check_forward_ad():
    class NoJvp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            return 2 * g

    (x,) = _inputs((3,))
    with pytest.raises(gradproof.InvalidArgument, match=r"^`check_forward_ad`=True: .*jvp"):
        gt.gradcheck(NoJvp.apply, (x,), check_forward_ad=True)


# --------------------------------------------------------- check_undefined_grad


class TwoOutputsNoneUnsafe(torch.autograd.Function):
    """(2x, x**2) with set_materialize_grads(False), whose backward multiplies a None grad."""

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return 2 * x, x**2

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        return 2 * g1 + 2 * x * g2


class TwoOutputsNoneAsOnes(TwoOutputsNoneUnsafe):
    """The same, but reading a None grad as ones: it runs, and is wrong."""

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        g1 = torch.ones_like(x) if g1 is None else g1
        g2 = torch.ones_like(x) if g2 is None else g2
        return 2 * g1 + 2 * x * g2


class TwoOutputsNoneSafe(TwoOutputsNoneUnsafe):
    """The same, skipping a None grad: right."""

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        terms = [t for t in (None if g1 is None else 2 * g1, None if g2 is None else 2 * x * g2)]
        present = [t for t in terms if t is not None]
        return sum(present) if present else None


def test_a_backward_that_multiplies_a_none_gradient_fails():
    (x,) = _inputs((4,))
    assert _torch(TwoOutputsNoneUnsafe.apply, (x,)) == "TypeError"  # torch lets it through
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(TwoOutputsNoneUnsafe.apply, (x,))
    message = str(caught.value)
    assert "check_undefined_grad" in message and "raised TypeError" in message
    assert caught.value.report.suspects == ("x",)
    # with every output gradient given, the backward is right
    assert gt.gradcheck(TwoOutputsNoneUnsafe.apply, (x,), check_undefined_grad=False) is True


def test_a_backward_that_reads_none_as_ones_fails_naming_the_elements():
    (x,) = _inputs((4,))
    assert _torch(TwoOutputsNoneAsOnes.apply, (x,)) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(TwoOutputsNoneAsOnes.apply, (x,))
    report = caught.value.report
    assert report.blocks["x"].diagnosis.kind == "undefined_grad"
    assert len(report.blocks["x"].wrong_elements) == 4
    assert "x[" in str(caught.value) and "must be 0" in str(caught.value)


class TwoOutputsWrongWhenFirstIsNone(TwoOutputsNoneUnsafe):
    """Right with both gradients and with none; doubled when only the first is undefined."""

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        if g1 is None and g2 is None:
            return None
        if g1 is None:
            return 2 * (2 * x * g2)  # the planted bug
        return 2 * g1 + (0 if g2 is None else 2 * x * g2)


def test_one_undefined_output_gradient_is_checked_against_the_numerical_derivative():
    (x,) = _inputs((4,))
    # torch's Jacobian runs one backward per output, the other's gradient undefined: the
    # bug shows even without check_undefined_grad, in torch and here alike
    fn = TwoOutputsWrongWhenFirstIsNone.apply
    assert _torch(fn, (x,), check_undefined_grad=False) is False
    assert gt.gradcheck(fn, (x,), check_undefined_grad=False, raise_exception=False) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(fn, (x,))
    message, block = str(caught.value), caught.value.report.blocks["x"]
    assert "output 0's gradient undefined" in message and "2 of 4 checks failed" in message
    assert block.diagnosis.kind == "scale" and block.scale == pytest.approx(2.0, rel=1e-6)
    assert len(block.wrong_elements) == 4


class TwoOutputsSlightlyOff(torch.autograd.Function):
    """(x², 3x), the first output's gradient off by 1e-6 of its vector: inside atol=1e-5."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x, 3 * x

    @staticmethod
    def backward(ctx, g, h):
        (x,) = ctx.saved_tensors
        return 2 * g * x + 1e-6 * g + 3 * h


def test_torchs_rule_also_decides_the_undefined_and_batched_checks():
    (x,) = _inputs((3,))
    rule = {"atol": 1e-5}
    assert _torch(TwoOutputsSlightlyOff.apply, (x,), **rule) is True
    assert gt.gradcheck(TwoOutputsSlightlyOff.apply, (x,), **rule) is True
    assert gt.gradcheck(TwoOutputsSlightlyOff.apply, (x,), check_batched_grad=True, **rule)
    assert gt.gradcheck(TwoOutputsSlightlyOff.apply, (x,), raise_exception=False) is False
    # within the rule as well, a backward that doubles with an undefined gradient still fails
    assert (
        gt.gradcheck(TwoOutputsWrongWhenFirstIsNone.apply, (x,), **rule, raise_exception=False)
        is False
    )


def test_a_backward_that_handles_none_passes_as_in_torch():
    (x,) = _inputs((4,))
    assert _torch(TwoOutputsNoneSafe.apply, (x,)) is True
    assert gt.gradcheck(TwoOutputsNoneSafe.apply, (x,)) is True


class MulJvpNoneAsOnes(torch.autograd.Function):
    """x * y whose jvp reads an undefined tangent as ones."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.set_materialize_grads(False)
        ctx.x, ctx.y = x, y
        return x * y

    @staticmethod
    def backward(ctx, g):
        return (None, None) if g is None else (g * ctx.y, g * ctx.x)

    @staticmethod
    def jvp(ctx, tx, ty):
        tx = torch.ones_like(ctx.x) if tx is None else tx
        ty = torch.ones_like(ctx.y) if ty is None else ty
        return tx * ctx.y + ctx.x * ty


def test_an_undefined_tangent_read_as_ones_fails_the_forward_check():
    x, y = _inputs((3,), (3,))
    assert _torch(MulJvpNoneAsOnes.apply, (x, y), check_forward_ad=True) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(MulJvpNoneAsOnes.apply, (x, y), check_forward_ad=True)
    message = str(caught.value)
    assert "x's tangent undefined" in message and "output 0[" in message
    assert gt.gradcheck(
        MulJvpNoneAsOnes.apply, (x, y), check_forward_ad=True, check_undefined_grad=False
    )


# ------------------------------------------------------------------ nondet_tol


class NoisyBackward(torch.autograd.Function):
    """x**2 whose backward adds noise of relative size 1e-9."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g * (1 + 1e-9 * torch.randn_like(x))


def test_a_noisy_backward_is_reported_as_nondeterministic_not_as_wrong_elements():
    (x,) = _inputs((4,))
    assert _torch(NoisyBackward.apply, (x,)) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(NoisyBackward.apply, (x,))
    message, block = str(caught.value), caught.value.report.blocks["x"]
    assert "is not deterministic" in message and "nondet_tol=0" in message
    assert "numerical derivative of" not in message.splitlines()[0]
    assert block.diagnosis.kind == "nondeterministic"
    assert "run 2 vs run 1" in message


def test_nondet_tol_forgives_the_noise_as_in_torch():
    (x,) = _inputs((4,))
    assert _torch(NoisyBackward.apply, (x,), nondet_tol=1e-6) is True
    assert gt.gradcheck(NoisyBackward.apply, (x,), nondet_tol=1e-6) is True


def test_nondet_tol_does_not_forgive_a_wrong_backward():
    (x,) = _inputs((4,))
    with pytest.raises(gt.GradcheckError, match="disagrees"):
        gt.gradcheck(CubeJvpDoubled.apply, (x,), check_forward_ad=True, nondet_tol=1e-6)


# ---------------------------------------------------- check_batched_grad (vmap)


class NumpyBackward(torch.autograd.Function):
    """x**2 whose backward leaves torch for numpy: right, but vmap cannot run it."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.from_numpy(2 * x.detach().numpy() * g.detach().numpy())


def test_a_backward_vmap_cannot_run_fails_check_batched_grad_as_in_torch():
    (x,) = _inputs((3,))
    assert gt.gradcheck(NumpyBackward.apply, (x,)) is True
    assert _torch(NumpyBackward.apply, (x,), check_batched_grad=True) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(NumpyBackward.apply, (x,), check_batched_grad=True)
    assert "backward under vmap (check_batched_grad)" in str(caught.value)
    assert caught.value.report.suspects == ("x",)


def test_check_batched_grad_checks_each_row_numerically():
    x, y = _inputs((3, 2), (3, 2))
    assert _torch(torch.mul, (x, y), check_batched_grad=True) is True
    assert gt.gradcheck(torch.mul, (x, y), check_batched_grad=True) is True


def test_a_jvp_vmap_cannot_run_fails_check_batched_forward_grad_as_in_torch():
    class NumpyJvp(CubeJvp):
        @staticmethod
        def jvp(ctx, t):
            return torch.from_numpy(3 * ctx.x.detach().numpy() ** 2 * t.detach().numpy())

    (x,) = _inputs((3,))
    options = {"check_forward_ad": True, "check_batched_forward_grad": True}
    assert gt.gradcheck(NumpyJvp.apply, (x,), check_forward_ad=True) is True
    assert _torch(NumpyJvp.apply, (x,), **options) is False
    with pytest.raises(gt.GradcheckError, match=r"under vmap \(check_batched_forward_grad\)"):
        gt.gradcheck(NumpyJvp.apply, (x,), **options)
    assert _torch(CubeJvp.apply, (x,), **options) is True
    assert gt.gradcheck(CubeJvp.apply, (x,), **options) is True


# ------------------------------------------------------------ check_grad_dtypes


def test_check_grad_dtypes_passes_a_right_function_in_its_own_dtype():
    x = torch.randn(4, dtype=torch.float32, requires_grad=True)
    assert gt.gradcheck(torch.sin, (x,), check_grad_dtypes=True) is True
    assert gt.gradcheck(CubeJvp.apply, (x,), check_grad_dtypes=True, check_forward_ad=True)


def test_check_grad_dtypes_fails_a_tangent_of_another_dtype():
    class Float32Tangent(CubeJvp):
        @staticmethod
        def jvp(ctx, t):
            return (3 * ctx.x**2 * t).float()

    (x,) = _inputs((3,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(Float32Tangent.apply, (x,), check_forward_ad=True, check_grad_dtypes=True)
    assert "check_grad_dtypes" in str(caught.value)
    assert "torch.float32" in caught.value.report.blocks["x"].reason


# -------------------------------------------------------------- masked, sparse


@pytest.mark.parametrize("masked", [None, False, True])
def test_masked_is_accepted_on_dense_inputs_where_it_changes_nothing(masked):
    (x,) = _inputs((3,))
    assert gt.gradcheck(torch.sin, (x,), masked=masked) is True


@pytest.mark.parametrize(
    ("layout", "masked", "fix"),
    [
        ("sparse_coo", False, "x.to_dense()"),
        ("sparse_coo", True, "values()"),
        ("sparse_csr", None, "x.to_dense()"),
    ],
)
@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
def test_a_sparse_input_is_refused_naming_its_layout_and_the_alternative(layout, masked, fix):
    dense = torch.tensor([[0.0, 1.5], [2.0, 0.0]], dtype=D)
    sparse = dense.to_sparse() if layout == "sparse_coo" else dense.to_sparse_csr()
    sparse.requires_grad_(True)
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gt.gradcheck(lambda s: s.to_dense().sum(), (sparse,), masked=masked)
    message = str(caught.value)
    assert message.startswith(f"`inputs[0]`='a tensor of layout torch.{layout}'")
    assert fix in message


def test_a_sparse_output_is_refused_naming_its_layout():
    (x,) = _inputs((3,))
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gt.gradcheck(lambda x: (2 * x).to_sparse(), (x,))
    assert "output 0 of layout torch.sparse_coo" in str(caught.value)
    assert ".to_dense()" in str(caught.value)


def test_an_expanded_input_torch_refuses_is_checked_as_its_copy():
    e = torch.randn(1, dtype=D).expand(3).requires_grad_()
    with pytest.raises(RuntimeError, match="stride 0"):
        torch.autograd.gradcheck(lambda a: a * 2, (e,))
    assert gt.gradcheck(lambda a: a * torch.arange(3.0, dtype=D), (e,)) is True


def test_the_alternatives_the_error_names_work():
    x = torch.tensor([[0.0, 1.5], [2.0, 0.0]], dtype=D).to_sparse()
    dense = x.to_dense().detach().requires_grad_()
    assert gt.gradcheck(lambda d: (d * torch.arange(4.0, dtype=D).reshape(2, 2)).sum(), (dense,))
    v = x.coalesce().values().detach().requires_grad_()
    indices = x.coalesce().indices()

    def masked(values):
        made = torch.sparse_coo_tensor(indices, values, x.shape, check_invariants=True)
        return torch.sparse.sum(made * 3.0)

    assert torch.autograd.gradcheck(masked, (v,))
    assert gt.gradcheck(masked, (v,)) is True


# ------------------------------------------------------- autograd inside func


def test_a_func_that_calls_autograd_inside_is_checked():
    def gradient_of_cube_sum(x):  # torch.autograd.grad inside: needs inputs that require grad
        with torch.enable_grad():
            return torch.autograd.grad((x**3).sum(), x, create_graph=True)[0]

    (x,) = _inputs((4,))
    assert torch.autograd.gradcheck(gradient_of_cube_sum, (x,))
    assert gt.gradcheck(gradient_of_cube_sum, (x,)) is True
    assert gt.gradcheck(gradient_of_cube_sum, (x,), batched=False, full_jacobian=True) is True


def test_a_wrong_second_derivative_inside_func_fails():
    class CubeSecondWrong(torch.autograd.Function):  # its backward is not differentiable right
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x * x.detach() * g  # half the second derivative

    def gradient(x):
        with torch.enable_grad():
            return torch.autograd.grad(CubeSecondWrong.apply(x).sum(), x, create_graph=True)[0]

    (x,) = _inputs((4,))
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(gradient, (x,))
    assert caught.value.report.suspects == ("x",)
    assert caught.value.report.blocks["x"].scale == pytest.approx(0.5, rel=1e-6)
    assert not torch.autograd.gradcheck(gradient, (x,), raise_exception=False)


# --------------------------------------------------------------------- misuse


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"check_backward_ad": False}, "`check_backward_ad`=False"),
        ({"check_batched_grad": True, "check_backward_ad": False, "check_forward_ad": True},
         "`check_batched_grad`=True"),
        ({"check_batched_forward_grad": True}, "`check_batched_forward_grad`=True"),
        ({"nondet_tol": float("nan")}, "`nondet_tol`=nan"),
        ({"nondet_tol": True}, "`nondet_tol`=True"),
        ({"check_grad_dtypes": "yes"}, "`check_grad_dtypes`='yes'"),
        ({"masked": 1}, "`masked`=1"),
    ],
)  # fmt: skip
def test_torchs_options_misused_name_argument_and_fix(options, argument):
    (x,) = _inputs((2,))
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gt.gradcheck(torch.sin, (x,), **options)
    assert str(caught.value).startswith(argument) and "Fix:" in str(caught.value)


def test_the_checks_are_repeatable_and_leave_torchs_random_state_alone():
    (x,) = _inputs((4,))
    torch.manual_seed(5)
    state = torch.get_rng_state()
    options = {"check_forward_ad": True, "check_batched_grad": True, "raise_exception": False}
    first = [gt.gradcheck(f, (x,), **options) for f in (CubeJvp.apply, CubeJvpDoubled.apply)]
    assert first == [True, False]
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(x.detach().numpy(), _inputs((4,))[0].detach().numpy())
