"""gradproof.torch.gradgradcheck: the second derivative as torch checks it, in gradproof's report.

Oracles: torch's own gradgradcheck on the same Function; a GELU (x sigmoid(1.702 x))
whose backward is right to first order, either written with differentiable
operations (right second derivative) or with a detached sigmoid (wrong second
derivative, right first one).
"""

from __future__ import annotations

import inspect

import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError  # noqa: E402

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402
from gradproof.torch._common import JIT_DEPRECATION_WARNING  # noqa: E402

D = torch.float64
K = 1.702  # GELU's sigmoid approximation: x * sigmoid(K x)


class Gelu(torch.autograd.Function):
    """x * sigmoid(K x), its backward written with differentiable operations."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(K * x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(K * x)
        return g * (s + K * x * s * (1 - s))


class GeluDetached(Gelu):
    """The same, with the sigmoid detached: right first derivative, wrong second."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(K * x).detach()
        return g * (s + K * x * s * (1 - s))


def _inputs(*shapes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*s, generator=gen, dtype=D, requires_grad=True) for s in shapes)


def test_the_signature_is_torchs():
    ours = inspect.signature(gt.gradgradcheck).parameters
    theirs = inspect.signature(torch.autograd.gradgradcheck).parameters
    assert list(ours)[:3] == list(theirs)[:3] == ["func", "inputs", "grad_outputs"]
    for name, parameter in theirs.items():
        assert name in ours, name
        assert ours[name].kind is parameter.kind, name
    pinned = ["eps", "atol", "rtol", "gen_non_contig_grad_outputs", "raise_exception",
              "nondet_tol", "check_undefined_grad", "check_grad_dtypes", "check_batched_grad",
              "check_fwd_over_rev", "check_rev_over_rev", "fast_mode", "masked"]  # fmt: skip
    assert [n for n in ours if ours[n].kind is inspect.Parameter.KEYWORD_ONLY] == pinned
    assert "gradgradcheck" in gt.__all__


def test_a_detached_sigmoid_passes_gradcheck_but_fails_gradgradcheck_as_in_torch():
    (x,) = _inputs((6,))
    assert torch.autograd.gradcheck(GeluDetached.apply, (x,))
    assert gt.gradcheck(GeluDetached.apply, (x,)) is True
    assert not torch.autograd.gradgradcheck(GeluDetached.apply, (x,), raise_exception=False)
    assert gt.gradgradcheck(GeluDetached.apply, (x,), raise_exception=False) is False
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradgradcheck(GeluDetached.apply, (x,))
    message, report = str(caught.value), caught.value.report
    assert message.startswith(
        "gradproof.torch.gradgradcheck: the backward of `GeluDetached.apply`'s backward "
        "disagrees with the numerical derivative of the backward's output"
    )
    assert report.suspects == ("x",)
    assert report.blocks["grad_output"].passed  # the first derivative is right
    assert len(report.blocks["x"].wrong_elements) == 6
    assert "x[" in message


def test_a_right_double_backward_passes_as_in_torch():
    (x,) = _inputs((6,))
    assert torch.autograd.gradgradcheck(Gelu.apply, (x,))
    assert gt.gradgradcheck(Gelu.apply, (x,)) is True
    assert gt.gradgradcheck(Gelu.apply, (x,), full_jacobian=True, batched=False) is True


def test_the_error_is_torchs_too_and_raise_exception_false_returns_false():
    (x,) = _inputs((3,))
    with pytest.raises(TorchGradcheckError):
        gt.gradgradcheck(GeluDetached.apply, (x,))
    with pytest.raises(gradproof.GradcheckError):
        gt.gradgradcheck(GeluDetached.apply, (x,))


def test_several_inputs_and_outputs_are_named():
    def two(a, b):
        return a * b.sin(), (a**2).sum() * b

    a, b = _inputs((3,), (3,))
    assert torch.autograd.gradgradcheck(two, (a, b))
    assert gt.gradgradcheck(two, (a, b)) is True
    with pytest.raises(gt.GradcheckError) as caught:  # tol=1e-30 fails it, to see the blocks
        gt.gradgradcheck(two, (a, b), tol=1e-30)
    assert list(caught.value.report.blocks) == ["a", "b", "grad_output0", "grad_output1"]


def test_given_grad_outputs_are_used_and_checked_only_where_they_require_grad():
    (x,) = _inputs((4,))
    ones = torch.ones(4, dtype=D)
    assert torch.autograd.gradgradcheck(Gelu.apply, (x,), (ones,))
    assert gt.gradgradcheck(Gelu.apply, (x,), ones) is True
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradgradcheck(GeluDetached.apply, (x,), (ones,))
    assert list(caught.value.report.blocks) == ["x"]
    v = torch.full((4,), 0.5, dtype=D, requires_grad=True)
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradgradcheck(GeluDetached.apply, (x,), (v,))
    assert list(caught.value.report.blocks) == ["x", "grad_output"]


def test_random_grad_outputs_are_seeded_and_torchs_state_kept():
    (x,) = _inputs((4,))
    torch.manual_seed(3)
    state = torch.get_rng_state()
    first = [gt.gradgradcheck(GeluDetached.apply, (x,), raise_exception=False, seed=s)
             for s in (0, 0, 1)]  # fmt: skip
    assert first == [False, False, False]
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(gt.GradcheckError) as one:
        gt.gradgradcheck(GeluDetached.apply, (x,), seed=7)
    with pytest.raises(gt.GradcheckError) as two:
        gt.gradgradcheck(GeluDetached.apply, (x,), seed=7)
    assert one.value.report.difference == two.value.report.difference


def test_non_contiguous_grad_outputs_reach_the_backward():
    seen = []

    class Recording(Gelu):
        @staticmethod
        def backward(ctx, g):
            seen.append(g.is_contiguous())
            return Gelu.backward(ctx, g)

    (x,) = _inputs((4,))
    assert gt.gradgradcheck(Recording.apply, (x,), gen_non_contig_grad_outputs=True) is True
    assert seen and not any(seen)
    seen.clear()
    assert gt.gradgradcheck(Recording.apply, (x,)) is True
    assert seen and all(seen)


@pytest.mark.filterwarnings(f"ignore:{JIT_DEPRECATION_WARNING}:DeprecationWarning")
def test_forward_over_reverse_is_checked_where_asked():
    (x,) = _inputs((4,))
    assert torch.autograd.gradgradcheck(torch.tanh, (x,), check_fwd_over_rev=True)
    assert gt.gradgradcheck(torch.tanh, (x,), check_fwd_over_rev=True) is True
    only_forward = {"check_fwd_over_rev": True, "check_rev_over_rev": False,
                    "check_undefined_grad": False}  # fmt: skip
    assert gt.gradgradcheck(torch.tanh, (x,), **only_forward) is True
    with pytest.raises(gradproof.InvalidArgument, match=r"^`check_fwd_over_rev`=True: .*jvp"):
        gt.gradgradcheck(Gelu.apply, (x,), check_fwd_over_rev=True)  # a Function without jvp


def test_torchs_rule_and_options_pass_through():
    (x,) = _inputs((4,))
    bounds = {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}
    assert gt.gradgradcheck(Gelu.apply, (x,), **bounds) is True
    assert gt.gradgradcheck(GeluDetached.apply, (x,), raise_exception=False, **bounds) is False
    assert gt.gradgradcheck(Gelu.apply, (x,), check_batched_grad=True, nondet_tol=0.0) is True
    assert gt.gradgradcheck(Gelu.apply, (x,), fast_mode=True, check_grad_dtypes=True) is True
    assert gt.gradgradcheck(Gelu.apply, (x,), masked=True) is True  # dense: nothing masked
    with pytest.raises(gt.GradcheckError) as caught:  # 8 coordinates: fast mode checks all
        gt.gradgradcheck(GeluDetached.apply, (x,), fast_mode=True)
    assert caught.value.report.mode == "full"
    (large,) = _inputs((600,))  # 1,200 coordinates with its grad_output: fast mode probes
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradgradcheck(GeluDetached.apply, (large,), fast_mode=True)
    assert caught.value.report.mode == "probe"


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"check_rev_over_rev": False}, "`check_rev_over_rev`=False"),
        ({"check_rev_over_rev": False, "check_fwd_over_rev": True}, "`check_undefined_grad`=True"),
        ({"check_batched_grad": True, "check_rev_over_rev": False, "check_fwd_over_rev": True,
          "check_undefined_grad": False}, "`check_batched_grad`=True"),
        ({"gen_non_contig_grad_outputs": 1}, "`gen_non_contig_grad_outputs`=1"),
        ({"nondet_tol": -1.0}, "`nondet_tol`=-1.0"),
        ({"atol": -1.0}, "`atol`=-1.0"),
        ({"projections": 0}, "`projections`=0"),
    ],
)  # fmt: skip
def test_misuse_names_the_argument_and_its_fix(options, argument):
    (x,) = _inputs((2,))
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gt.gradgradcheck(torch.tanh, (x,), **options)
    assert str(caught.value).startswith(argument) and "Fix:" in str(caught.value)
