"""gradproof.torch on code as people write it: grad-mode branches, buffer updates, None grads.

Oracles: torch.autograd.gradcheck's verdict on the same function (it evaluates with
grad enabled and the inputs requiring grad, and takes each output's Jacobian with the
other outputs' gradients undefined), and closed-form derivatives (a buffer used before
the forward updates it; spectral norm's ``W / (u . W v)`` with ``u``, ``v`` constants,
which is what autograd differentiates in training mode).
"""

from __future__ import annotations

import numpy as np
import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402
from gradproof.torch._function_loss import CheckedInputs, FunctionLoss  # noqa: E402

nn = torch.nn
F = torch.nn.functional
D = torch.float64


def _x(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=D).requires_grad_(True)


# ------------------------------------------------- evaluated with grad enabled, as torch


class SigmoidGelu(torch.autograd.Function):
    """x * sigmoid(1.702 x), with its right backward: the training path of `gelu_op`."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(1.702 * x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(1.702 * x)
        return g * (s + 1.702 * x * s * (1 - s))


def gelu_op(x):
    """The Function in training (x requires grad), the exact erf GELU in inference."""
    if x.requires_grad:
        return SigmoidGelu.apply(x)
    return F.gelu(x)


def grad_mode_op(x):
    """Another function under no_grad than with grad enabled."""
    return torch.tanh(x) if torch.is_grad_enabled() else torch.sin(x)


@pytest.mark.parametrize("func", [gelu_op, grad_mode_op], ids=["requires_grad", "grad_mode"])
@pytest.mark.parametrize("batched", [True, False])
def test_a_func_that_branches_on_grad_is_checked_on_the_path_torch_checks(func, batched):
    x = _x(6)
    assert torch.autograd.gradcheck(func, (x,))
    assert gt.gradcheck(func, (x,), batched=batched) is True
    assert gt.gradcheck(func, (x,), batched=batched, full_jacobian=True, atol=1e-5) is True


def test_a_large_func_that_branches_on_requires_grad_is_checked_in_place_too():
    # 1,100 coordinates, one call per point: the evaluations are made in place
    # (gradcheck's resident path), with the copies requiring grad
    x = _x(1100)
    assert gt.gradcheck(gelu_op, (x,), batched=False) is True


def test_a_func_that_agrees_without_grad_keeps_the_quick_path():
    x = _x(4)
    loss = FunctionLoss(torch.sin, (x,), CheckedInputs((0,), ("x",)), D, seed=0, batched=True)
    assert loss.needs_grad is False
    branchy = FunctionLoss(gelu_op, (x,), CheckedInputs((0,), ("x",)), D, seed=0, batched=True)
    assert branchy.needs_grad is True


class GradModeBranch(nn.Module):
    """A linear layer then tanh in training, a clamp under no_grad (1,230 parameters)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(40, 30)

    def forward(self, x):
        y = self.lin(x)
        return torch.tanh(y) if torch.is_grad_enabled() else y.clamp(-1, 1)


@pytest.mark.parametrize("batched", [True, False])
def test_a_module_that_branches_on_grad_mode_passes(batched):
    torch.manual_seed(0)
    model = GradModeBranch().double()
    x, y = torch.randn(3, 40, dtype=D), torch.randn(3, 30, dtype=D)
    report = gt.check_module(model, F.mse_loss, x, y, batched=batched)
    assert report.passed, str(report)


def _encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(
        d_model=4, nhead=2, dim_feedforward=8, batch_first=True, dropout=0.0
    )
    return nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=True).double().eval()


class Encoder(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.enc, self.mask = _encoder(), mask

    def forward(self, x):
        return self.enc(x, src_key_padding_mask=self.mask)


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's nested-tensor prototype warning
def test_an_eval_transformer_with_a_padding_mask_is_checked_on_its_training_path():
    # under no_grad, eval mode takes torch's fast path, which zeroes the padded positions
    mask = torch.tensor([[False, False, True, True], [False, False, False, True]])
    model = Encoder(mask)
    x = _x(2, 4, 4)
    with torch.no_grad():
        fast = F.mse_loss(model(x), torch.zeros(2, 4, 4, dtype=D))
    assert fast != F.mse_loss(model(x), torch.zeros(2, 4, 4, dtype=D))  # two functions
    target = torch.randn(2, 4, 4, dtype=D)
    assert gt.check_module(model, F.mse_loss, x.detach(), target).passed
    assert torch.autograd.gradcheck(model, (x,))
    assert gt.gradcheck(model, (x,)) is True


# ------------------------------------------------------------------- buffers restored


class UsesThenUpdates(nn.Module):
    """y = x W^T * scale, and then scale *= 1.01 in place: the loss uses the old scale."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2, bias=False)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x):
        out = self.lin(x) * self.scale.clone()
        self.scale.mul_(1.01)
        return out


@pytest.mark.parametrize("batched", [True, False])
def test_a_buffer_the_forward_updates_is_restored_before_every_evaluation(batched):
    torch.manual_seed(0)
    model = UsesThenUpdates().double()
    x, y = torch.randn(4, 3, dtype=D), torch.randn(4, 2, dtype=D)
    before = model.scale.clone()
    report = gt.check_module(model, lambda out, t: ((out - t) ** 2).sum(), x, y, batched=batched)
    assert report.passed, str(report)
    # closed form at scale 2: d/dW sum((2 x W^T - y)^2) = 2 * 2 * (2 x W^T - y)^T x
    w = model.lin.weight.detach()
    _assert_worst_match(report, "lin.weight", 4 * (2 * x @ w.T - y).T @ x)
    assert torch.equal(model.scale, before)  # the user's buffer as it was


def _spectral(seed, old_style=False):
    torch.manual_seed(seed)
    wrap = nn.utils.spectral_norm if old_style else nn.utils.parametrizations.spectral_norm
    model = nn.Sequential(wrap(nn.Linear(5, 4)), nn.Tanh(), nn.Linear(4, 2)).double()
    return model, torch.randn(6, 5, dtype=D), torch.randn(6, 2, dtype=D)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("old_style", [False, True], ids=["parametrizations", "hook"])
def test_a_fresh_spectral_norm_model_in_training_mode_passes(seed, old_style):
    # each forward runs a power iteration on u, v (buffers) under no_grad: autograd
    # differentiates W / (u . W v) with u, v constants, and so must every point
    model, x, y = _spectral(seed, old_style)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    report = gt.check_module(model, F.mse_loss, x, y)
    assert report.passed, str(report)
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert all(m.training for m in model.modules())  # the modes given back


def test_spectral_norm_in_training_mode_is_judged_against_its_closed_form():
    model, x, y = _spectral(0)
    layer = model[0]
    model(x)  # a training step's iteration, then the check's own forward's
    model(x)  # u, v as the check's gradient uses them: the constants of the closed form
    u, v = layer.parametrizations.weight[0]._u.clone(), layer.parametrizations.weight[0]._v
    w = layer.parametrizations.weight.original.detach().clone().requires_grad_(True)
    out = torch.tanh(x @ (w / torch.dot(u, torch.mv(w, v))).T + layer.bias) @ model[2].weight.T
    F.mse_loss(out + model[2].bias, y).backward()
    model, x, y = _spectral(0)
    model(x)
    report = gt.check_module(model, F.mse_loss, x, y)
    assert report.passed
    _assert_worst_match(report, "0.parametrizations.weight.original", w.grad)


def _assert_worst_match(report, block, expected):
    """The report's worst elements of ``block``: their numerical derivative is ``expected``'s."""
    worst = report.blocks[block].worst
    assert worst
    for element in worst:
        want = float(expected[element.index])
        assert element.numerical == pytest.approx(want, rel=1e-7, abs=1e-12)
        assert element.analytic == pytest.approx(want, rel=1e-9, abs=1e-14)


# ----------------------------------------------- each output's gradient as torch takes it


class TwoReadsNoneAsOnes(torch.autograd.Function):
    """(sin x, cos x); the backward reads an undefined output gradient as ones."""

    @staticmethod
    def forward(ctx, x):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(x)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, ga, gb):
        (x,) = ctx.saved_tensors
        ga = torch.ones_like(x) if ga is None else ga
        gb = torch.ones_like(x) if gb is None else gb
        return ga * x.cos() - gb * x.sin()


class TwoSkipsNone(TwoReadsNoneAsOnes):
    """The same, skipping an undefined gradient: right."""

    @staticmethod
    def backward(ctx, ga, gb):
        (x,) = ctx.saved_tensors
        terms = []
        if ga is not None:
            terms.append(ga * x.cos())
        if gb is not None:
            terms.append(-gb * x.sin())
        return sum(terms) if terms else None


@pytest.mark.parametrize("options", [{}, {"full_jacobian": True}, {"atol": 1e-5}])
def test_a_backward_that_reads_none_as_ones_fails_without_check_undefined_grad(options):
    x = _x(5)
    # the user-visible bug: d sum(sin x)/dx is not cos x
    (g,) = torch.autograd.grad(TwoReadsNoneAsOnes.apply(x)[0].sum(), x)
    assert not torch.allclose(g, x.cos())
    fails = {"check_undefined_grad": False, "raise_exception": False}
    assert torch.autograd.gradcheck(TwoReadsNoneAsOnes.apply, (x,), **fails) is False
    assert gt.gradcheck(TwoReadsNoneAsOnes.apply, (x,), **fails, **options) is False
    assert torch.autograd.gradcheck(TwoSkipsNone.apply, (x,), check_undefined_grad=False)
    assert gt.gradcheck(TwoSkipsNone.apply, (x,), check_undefined_grad=False, **options)


# ------------------------------------------------------------- outputs that are constant


@pytest.mark.parametrize(
    ("func", "passes"),
    [
        (torch.zeros_like, True),
        (lambda a: (torch.ones(2, dtype=D), torch.zeros_like(a)), True),
        (lambda a: a.detach() * 2, False),  # the numerical derivative is 2, not zero
    ],
    ids=["zeros_like", "two_constants", "detached"],
)
def test_an_output_that_depends_on_no_input_is_judged_as_torch_judges_it(func, passes):
    x = _x(3)
    assert torch.autograd.gradcheck(func, (x,), raise_exception=False) is passes
    assert gt.gradcheck(func, (x,), raise_exception=False) is passes
    extras = {"check_batched_grad": True, "check_forward_ad": True, "full_jacobian": True}
    assert gt.gradcheck(func, (x,), raise_exception=False, **extras) is passes


# ------------------------------------------------------------------------- misuse named


def test_the_complex_scheme_is_refused_before_func_runs():
    calls = []

    def func(x):
        calls.append(1)
        return torch.sin(x)

    with pytest.raises(gradproof.InvalidArgument, match=r"^`scheme`='complex': .*Fix: leave"):
        gt.gradcheck(func, (_x(3),), scheme="complex")
    with pytest.raises(gradproof.InvalidArgument, match=r"^`scheme`='complex'"):
        gt.gradgradcheck(func, (_x(3),), scheme="complex")
    model = nn.Linear(2, 1).double()
    with pytest.raises(gradproof.InvalidArgument, match=r"^`scheme`='complex'"):
        gt.check_module(
            model,
            F.mse_loss,
            torch.ones(3, 2, dtype=D),
            torch.ones(3, 1, dtype=D),
            scheme="complex",
        )
    assert not calls


# The points a loss receives are read-only (a loss cannot move the check's own point), and
# torch warns once per process when one becomes a tensor without a copy: whether this test
# sees that warning depends on which test converted a point first.
@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable:UserWarning")
def test_torch_tensors_in_core_check_with_a_torch_loss_name_the_conversion():
    w = torch.randn(3, 4, dtype=D)
    v = torch.randn(4, dtype=D)

    def loss(p):
        return torch.tanh(p["W"] @ v).sum()

    grad = {"W": ((1 - torch.tanh(w @ v) ** 2)[:, None] * v[None, :]).numpy()}
    with pytest.raises(gradproof.InvalidArgument, match=r"gradproof\.torch\.check_module"):
        gradproof.check(loss, {"W": w}, grad)
    with pytest.raises(gradproof.InvalidArgument, match=r"^`params`='a torch tensor'"):
        gradproof.check(lambda p: torch.tanh(p).sum(), w, np.zeros((3, 4)))

    # a numpy loss on the same tensors is checked, and converting inside the loss works
    def in_numpy(p):
        return float(np.tanh(p["W"] @ v.numpy()).sum())

    def converted_inside(p):
        return torch.tanh(torch.as_tensor(p["W"]) @ v).sum()

    numpy_loss = gradproof.check(in_numpy, {"W": w}, grad)
    converted = gradproof.check(converted_inside, {"W": w}, grad)
    assert numpy_loss.passed and converted.passed


@pytest.mark.parametrize("inputs", [np.ones(3), (np.ones(3), 2.0)], ids=["array", "tuple"])
def test_numpy_inputs_are_refused_saying_tensors_are_required(inputs):
    with pytest.raises(gradproof.InvalidArgument, match=r"^`inputs`=.*torch tensor"):
        gt.gradcheck(torch.sin, inputs)
