"""gradproof.torch.gradcheck(fast_mode=True) screens first: a right backward is cleared by a
few random directional derivatives in one call of func, with no full check; anything the
screen cannot clear gets fast mode's full check, whose verdict and report stand."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'gradproof[torch]'")

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402


class _Tanh(torch.autograd.Function):
    """tanh(x) with a hand-written backward; ``scale`` multiplies one element's gradient."""

    scale = 1.0

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        out = g * (1 - y**2)
        out.view(-1)[3] *= _Tanh.scale
        return out


@pytest.fixture
def full_checks(monkeypatch):
    """The calls of gradproof.check that the drop-in makes (its full checks)."""
    calls = []
    real = gradproof.check

    def counting(*args, **options):
        calls.append(options.get("mode", "full"))
        return real(*args, **options)

    monkeypatch.setattr(gradproof, "check", counting)
    return calls


def _x(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator, requires_grad=True)


@pytest.mark.parametrize(
    "func, inputs",
    [
        (torch.sin, (_x(5, 5),)),
        (lambda a, b: (a @ b).tanh(), (_x(4, 3), _x(3, 6, seed=1))),
        (lambda a, b: (a * b, a.exp()), (_x(7), _x(7, seed=1))),
        (_Tanh.apply, (_x(40, 40),)),
    ],
    ids=["sin", "matmul", "two-outputs", "function-1600"],
)
def test_a_right_backward_is_cleared_without_a_full_check(func, inputs, full_checks):
    assert gt.gradcheck(func, inputs, fast_mode=True) is True
    assert full_checks == []
    assert gt.gradcheck(func, inputs) is True  # the default mode agrees
    assert full_checks  # and it ran its full check


@pytest.mark.parametrize("shape, mode", [((4, 4), "full"), ((40, 40), "probe")])
def test_a_wrong_element_gets_the_full_check_and_its_report(shape, mode, full_checks, monkeypatch):
    monkeypatch.setattr(_Tanh, "scale", 1.001)
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(_Tanh.apply, (_x(*shape),), fast_mode=True)
    report = caught.value.report
    assert full_checks == [mode] and report.mode == mode
    assert [tuple(e) for e in report.blocks["x"].wrong_elements] == [
        tuple(int(i) for i in torch.unravel_index(torch.tensor(3), shape))
    ]


def test_a_func_computing_in_float32_gets_the_full_checks_verdict(full_checks):
    """float32 inside: noise the screen's model does not foresee. It is not cleared by the
    screen, and fast mode's verdict is the full check's, as the default mode's is."""

    def f(x):
        return torch.sin(x.float()).double()

    x = _x(6)
    assert gt.gradcheck(f, (x,), fast_mode=True) is gt.gradcheck(f, (x,))
    assert len(full_checks) == 2


def test_the_full_checks_own_options_skip_the_screen(full_checks):
    x = _x(5)
    assert gt.gradcheck(torch.sin, (x,), fast_mode=True, tol=1e-6) is True
    assert gt.gradcheck(torch.sin, (x,), fast_mode=True, atol=1e-5) is True  # torch's rule
    assert len(full_checks) == 2


def test_the_screen_leaves_the_inputs_and_torchs_generator_as_they_were():
    x = _x(5, 5)
    before = x.detach().clone()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    assert gt.gradcheck(torch.sin, (x,), fast_mode=True) is True
    assert torch.equal(x.detach(), before) and x.requires_grad and x.grad is None
    assert torch.equal(torch.get_rng_state(), state)
