"""gradproof.torch on a GPU: inputs, models and everything the checks build on one device.

These run where a CUDA device is present and skip elsewhere, saying so. The same tests
run on the CPU with ``GRADPROOF_TEST_DEVICE=cpu`` (how they are tried on a machine without
a GPU); the CPU-only assumptions they guard against are also caught without a GPU by the
"meta" default-device tests in ``test_torch_gradcheck.py``.
"""

import os

import pytest

torch = pytest.importorskip("torch", reason="gradproof.torch needs torch (gradproof[torch])")

import gradproof.torch as gt  # noqa: E402

DEVICE = os.environ.get("GRADPROOF_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(),
    reason="needs a CUDA device (torch.cuda.is_available() is False here); "
    "GRADPROOF_TEST_DEVICE=cpu runs these tests on the CPU",
)


def make_layer_norm(eps_in_backward: float):
    """LayerNorm over the last axis as a Function; its backward uses ``eps_in_backward``."""

    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            mean = x.mean(-1, keepdim=True)
            var = x.var(-1, unbiased=False, keepdim=True)
            ctx.save_for_backward(x, mean, var)
            return (x - mean) / torch.sqrt(var + 1e-5)

        @staticmethod
        def backward(ctx, g):
            x, mean, var = ctx.saved_tensors
            rstd = 1 / torch.sqrt(var + eps_in_backward)
            xhat = (x - mean) * rstd
            mean_g = g.mean(-1, keepdim=True)
            return rstd * (g - mean_g - xhat * (g * xhat).mean(-1, keepdim=True))

    return LayerNorm.apply


def _x(dtype=torch.float64, shape=(4, 6)):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=gen, dtype=dtype).to(DEVICE).requires_grad_()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_right_function_on_the_device_passes(dtype):
    x = _x(dtype)
    before = x.detach().clone()
    assert gt.gradcheck(make_layer_norm(1e-5), (x,)) is True
    assert x.device.type == torch.device(DEVICE).type and torch.equal(x.detach(), before)


def test_a_backward_without_its_epsilon_fails_on_the_device_naming_the_input():
    x = (_x() * 1e-2).detach().requires_grad_()  # small variance: the epsilon matters
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(make_layer_norm(0.0), (x,))
    assert caught.value.report.suspects == ("x",)


@pytest.mark.parametrize(
    "options",
    [{"fast_mode": True}, {"atol": 1e-5, "rtol": 1e-3}, {"check_batched_grad": True},
     {"check_forward_ad": True}, {"full_jacobian": True}],
    ids=["fast_mode", "torch_rule", "batched_grad", "forward_ad", "full_jacobian"],
)  # fmt: skip
def test_every_option_runs_on_the_device(options):
    x, w = _x(), _x(shape=(6,))
    assert gt.gradcheck(lambda a, b: torch.tanh(a * b).sum(0), (x, w), **options) is True


def test_gradgradcheck_and_complex_inputs_on_the_device():
    x = _x()
    assert gt.gradgradcheck(lambda a: torch.sin(a) * a, (x,)) is True
    z = torch.randn(5, dtype=torch.complex128).to(DEVICE).requires_grad_()
    assert gt.gradcheck(lambda a: (a * a.conj()).real * a.abs(), (z,)) is True
    assert gt.gradgradcheck(lambda a: a * a, (z,)) is True


@pytest.mark.parametrize("mode", ["full", "probe"])
def test_check_module_on_the_device_checks_parameters_and_inputs(mode):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    model = model.to(device=DEVICE, dtype=torch.float64)
    x = _x().detach()
    y = torch.zeros(4, 1, dtype=torch.float64, device=DEVICE)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    report = gt.check_module(model, torch.nn.functional.mse_loss, x, y, wrt="all", mode=mode)
    assert report.passed
    assert set(report.blocks) >= {"0.weight", "2.bias"}
    for k, v in model.state_dict().items():
        assert v.device.type == torch.device(DEVICE).type and torch.equal(v, before[k])
