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


class _Offset(torch.autograd.Function):
    """sin(x) + 3000 whose backward adds ``error`` to element 0's gradient."""

    error = 0.0

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.sin() + 3000.0

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        out = g * x.cos()
        out[0] += _Offset.error * g[0]
        return out


@pytest.mark.parametrize("seed", range(3))
def test_a_wrong_element_beside_a_large_offset_fails_as_in_the_default_mode(seed, monkeypatch):
    monkeypatch.setattr(_Offset, "error", 1e-3)
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(100, dtype=torch.float64, generator=generator) * 4 - 2).requires_grad_()
    for fast in (False, True):
        with pytest.raises(gt.GradcheckError):
            gt.gradcheck(_Offset.apply, (x,), fast_mode=fast)


def _wrong_rule(eager, batched, derivative):
    """A Function computing ``eager``, whose vmap rule computes ``batched`` instead, and whose
    backward is ``derivative`` (right for ``batched``, wrong for ``eager``)."""

    class Rule(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return eager(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return g * derivative(ctx.saved_tensors[0])

        @staticmethod
        def vmap(info, in_dims, x):
            return batched(x), 0

    return Rule.apply


def test_a_wrong_vmap_rule_does_not_fool_the_screen():
    """The screen's points go to func under vmap; its base row and a nudged row are
    compared with func's own values, so a wrong rule is found and func's own values judge
    the backward (wrong)."""
    x = _x(6)
    func = _wrong_rule(lambda t: t.sin() + 0.1 * t**2, torch.sin, torch.cos)
    assert torch.autograd.gradcheck(func, (x,), raise_exception=False) is False
    for fast in (False, True):
        with pytest.raises(gt.GradcheckError):
            gt.gradcheck(func, (x,), fast_mode=fast)


def test_a_non_finite_backward_is_refused_as_in_the_default_mode():
    class Inf(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            out = g.clone()
            out[1] = float("inf")
            return out

    x = _x(4)
    outcomes = []
    for fast in (False, True):
        try:
            outcomes.append(
                gt.gradcheck(Inf.apply, (x,), fast_mode=fast, check_undefined_grad=False)
            )
        except Exception as error:  # the same refusal either way
            outcomes.append(type(error).__name__)
    assert outcomes[0] == outcomes[1] and outcomes[0] is not True


@pytest.mark.parametrize(
    "func, fill",
    [
        (_wrong_rule(lambda x: 2 * x.log(), torch.log, torch.reciprocal), 1.0),  # equal at 1
        (_wrong_rule(lambda x: 2 * x.sin(), torch.sin, torch.cos), 0.0),  # equal at 0
    ],
    ids=["log-at-ones", "sin-at-zeros"],
)
def test_a_vmap_rule_right_only_at_the_base_point_is_not_trusted(func, fill):
    """The vmap trial's nudged row (zeros moved too) shows the rule computes another
    function; then func's own values judge the backward, wrong in both modes, as torch."""
    x = torch.full((6,), fill, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(func, (x,), raise_exception=False) is False
    for fast in (False, True):
        assert gt.gradcheck(func, (x,), fast_mode=fast, raise_exception=False) is False
