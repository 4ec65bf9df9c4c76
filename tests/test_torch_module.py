"""gradproof.torch.check_module: parameters named as in named_parameters(), state untouched.

Oracles: autograd of plain torch layers is right, so a model of them must pass;
a hand-written layer with a planted bug (×2, transposed weight gradient) must be
named by its parameter's name, with the bug's kind.
"""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor

import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402

F = torch.nn.functional
SCALE_RTOL = 1e-6  # a planted ×2 is recovered to this relative accuracy


class LinearFn(torch.autograd.Function):
    """x @ w.T + b with a hand-written backward; `bug` plants a mistake in dw."""

    @staticmethod
    def forward(ctx, x, w, b, bug):
        ctx.save_for_backward(x, w)
        ctx.bug = bug
        return x @ w.T + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dw = g.T @ x
        if ctx.bug == "double":
            dw = 2 * dw
        elif ctx.bug == "transpose":
            dw = dw.T
        return g @ w, dw, g.sum(0), None


class HandLinear(torch.nn.Module):
    def __init__(self, n_in, n_out, bug=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
        self.bias = torch.nn.Parameter(torch.randn(n_out) * 0.1)
        self.bug = bug

    def forward(self, x):
        return LinearFn.apply(x, self.weight, self.bias, self.bug)


class Net(torch.nn.Module):
    def __init__(self, bug=None):
        super().__init__()
        self.layer1 = torch.nn.Linear(5, 6)
        self.layer2 = HandLinear(6, 6, bug)
        self.layer3 = torch.nn.Linear(6, 1)

    def forward(self, x):
        return self.layer3(torch.tanh(self.layer2(torch.tanh(self.layer1(x)))))


def _data(n=16, n_in=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=gen), torch.randn(n, 1, generator=gen)


@pytest.fixture
def data():
    torch.manual_seed(0)
    return _data()


def test_plain_torch_mlp_passes_with_its_names(data):
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    report = gt.check_module(model, F.mse_loss, *data)
    assert report.passed
    assert list(report.blocks) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert report.blocks["0.weight"].shape == (8, 5)


def test_correct_hand_written_layer_passes(data):
    assert gt.check_module(Net(), F.mse_loss, *data).passed


def test_doubled_weight_gradient_is_named_by_parameter(data):
    report = gt.check_module(Net(bug="double"), F.mse_loss, *data)
    assert report.status == "fail"
    assert report.suspects == ("layer2.weight",)
    block = report.blocks["layer2.weight"]
    assert block.diagnosis.kind == "scale"
    assert block.scale == pytest.approx(2.0, rel=SCALE_RTOL)
    assert all(report.blocks[n].passed for n in report.blocks if n != "layer2.weight")
    assert "layer2.weight[" in str(report)


def test_transposed_weight_gradient_is_named_as_a_transpose(data):
    report = gt.check_module(Net(bug="transpose"), F.mse_loss, *data)
    assert report.suspects == ("layer2.weight",)
    assert report.blocks["layer2.weight"].diagnosis.kind == "transposed"


def test_vmap_and_loop_agree(data):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    fast = gt.check_module(model, F.mse_loss, *data, batched=True)
    slow = gt.check_module(model, F.mse_loss, *data, batched=False)
    assert fast.passed and slow.passed
    assert fast.evaluations == slow.evaluations
    wrong_fast = gt.check_module(Net(bug="double"), F.mse_loss, *data, batched=True)
    torch.manual_seed(0)
    wrong_slow = gt.check_module(Net(bug="double"), F.mse_loss, *data, batched=False)
    assert wrong_fast.suspects == wrong_slow.suspects == ("layer2.weight",)


@pytest.mark.parametrize("precision", ["float64", "native"])
def test_float32_model_passes(data, precision):
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    report = gt.check_module(model, F.mse_loss, *data, dtype=precision)
    assert report.passed
    assert report.precision.startswith("float32" if precision == "native" else "float64")


def test_several_inputs_integer_targets_and_a_loss_module():
    class TwoIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 4)
            self.b = torch.nn.Linear(2, 4)

        def forward(self, u, v):
            return self.a(u) * torch.tanh(self.b(v))

    torch.manual_seed(1)
    u, v, labels = torch.randn(6, 3), torch.randn(6, 2), torch.tensor([0, 1, 2, 3, 0, 1])
    weight = torch.tensor([1.0, 2.0, 0.5, 1.0])  # a float32 buffer of the loss module
    loss = torch.nn.CrossEntropyLoss(weight=weight)
    report = gt.check_module(TwoIn(), loss, (u, v), labels)
    assert report.passed and set(report.blocks) == {"a.weight", "a.bias", "b.weight", "b.bias"}


def test_frozen_parameters_are_not_blocks(data):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model[0].weight.requires_grad_(False)
    report = gt.check_module(model, F.mse_loss, *data)
    assert list(report.blocks) == ["0.bias", "2.weight", "2.bias"]


def _stateful_model():
    torch.manual_seed(3)
    model = torch.nn.Sequential(
        torch.nn.Linear(5, 6),
        torch.nn.BatchNorm1d(6),
        torch.nn.Tanh(),
        torch.nn.Dropout(0.3),
        torch.nn.Linear(6, 1),
    )
    model(torch.randn(16, 5)).sum().backward()  # .grad fields and running statistics set
    model[4].bias.grad = None
    model[1].weight.requires_grad_(False)
    model[4].eval()  # mixed modes, to see each restored
    return model


def _snapshot(model):
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "objects": [id(p) for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "rng": torch.get_rng_state().clone(),
    }


def _assert_same(before, after):
    """Bit for bit: equal values and dtypes, the same objects, flags and modes."""
    assert before["tensors"].keys() == after["tensors"].keys()
    for key, value in before["tensors"].items():
        assert value.dtype == after["tensors"][key].dtype, key
        assert torch.equal(value, after["tensors"][key]), key
    for key in ("objects", "requires_grad", "training"):
        assert before[key] == after[key], key
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None) == (g1 is None)
        if g0 is not None:
            assert torch.equal(g0, g1)
    assert torch.equal(before["rng"], after["rng"])


def test_state_is_restored_bit_for_bit_and_training_mode_warns():
    model = _stateful_model()
    x, y = _data()
    before = _snapshot(model)
    with pytest.warns(gt.TrainingModeWarning, match=r"1 \(BatchNorm|BatchNorm|dropout"):
        report = gt.check_module(model, F.mse_loss, x, y)
    _assert_same(before, _snapshot(model))
    # Dropout draws one fixed mask and BatchNorm uses batch statistics: a deterministic loss.
    assert report.passed
    assert "1.weight" not in report.blocks


def test_state_is_restored_bit_for_bit_when_the_loss_raises():
    model = _stateful_model()
    model.eval()
    x, y = _data()
    calls = []

    def exploding(output, target):
        calls.append(1)
        torch.rand(3)  # consume random numbers, as a loss with sampling would
        if len(calls) > 5:
            raise RuntimeError("boom")
        return F.mse_loss(output, target)

    before = _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        gt.check_module(model, exploding, x, y, batched=False)
    _assert_same(before, _snapshot(model))


def test_eval_mode_does_not_warn(data):
    model = _stateful_model().eval()
    assert gt.check_module(model, F.mse_loss, *data).passed


@pytest.mark.parametrize(
    ("args", "options", "argument"),
    [
        (("model",), {}, "`model`="),
        ((), {"dtype": "half"}, "`dtype`='half'"),
        ((), {"batched": "yes"}, "`batched`='yes'"),
    ],
)
def test_bad_arguments_name_argument_and_fix(data, args, options, argument):
    model = args[0] if args else torch.nn.Linear(5, 1)
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gt.check_module(model, F.mse_loss, *data, **options)
    assert str(caught.value).startswith(argument) and "Fix:" in str(caught.value)


def test_missing_batch_and_non_scalar_loss_are_misuse():
    model = torch.nn.Linear(2, 1)
    with pytest.raises(gradproof.InvalidArgument, match="`batch`"):
        gt.check_module(model, F.mse_loss)
    with pytest.raises(gradproof.InvalidArgument, match="scalar"):
        gt.check_module(model, lambda out: out, torch.ones(3, 2), batched=False)


def test_speed_mode_full_passes_through(data):
    report = gt.check_module(Net(bug="double"), F.mse_loss, *data, mode="full")
    assert report.mode == "full" and report.suspects == ("layer2.weight",)


def test_speed_mode_sample_names_the_block(data):
    report = gt.check_module(Net(bug="double"), F.mse_loss, *data, mode="sample", seed=0)
    assert report.mode == "sample" and "layer2.weight" in report.suspects


def test_speed_mode_probe_fails_the_wrong_model(data):
    report = gt.check_module(Net(bug="double"), F.mse_loss, *data, mode="probe", seed=0)
    assert report.mode == "probe" and report.status == "fail"


def test_bfloat16_model_is_checked_on_a_float64_copy(data):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    model = model.to(torch.bfloat16)
    report = gt.check_module(model, F.mse_loss, *data)
    assert report.passed and report.precision.startswith("float64")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with pytest.raises(gradproof.InvalidArgument, match="bfloat16"):
        gt.check_module(model, F.mse_loss, *data, dtype="native")


@pytest.mark.skipif(
    "executor" not in inspect.signature(gradproof.check).parameters,
    reason="this gradproof.check takes no executor= (a thread pool to evaluate in)",
)
def test_a_thread_pool_sees_the_same_losses(data):
    # The private copy is shared by the threads: evaluations must not interleave.
    with ThreadPoolExecutor(2) as pool:
        threaded = gt.check_module(Net(bug="double"), F.mse_loss, *data, executor=pool)
    torch.manual_seed(0)
    serial = gt.check_module(Net(bug="double"), F.mse_loss, *data)
    assert threaded.suspects == serial.suspects == ("layer2.weight",)
    assert threaded.difference == pytest.approx(serial.difference, rel=1e-9)


def test_vmap_runs_where_the_model_allows_and_the_loop_elsewhere(data, monkeypatch):
    from gradproof.torch import _module

    outcomes = []

    def spy(fn):
        def run(*args):
            try:
                result = torch.func.vmap(fn)(*args)
            except Exception:
                outcomes.append("failed")
                raise
            outcomes.append("ran")
            return result

        return run

    monkeypatch.setattr(_module, "vmap", spy)
    plain = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    assert gt.check_module(plain, F.mse_loss, *data).passed
    assert outcomes and set(outcomes) == {"ran"}
    outcomes.clear()
    dropout = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Dropout(0.5), torch.nn.Tanh())
    summed = lambda out, y: F.mse_loss(out.sum(1, keepdim=True), y)  # noqa: E731
    with pytest.warns(gt.TrainingModeWarning):  # dropout in training mode: vmap refuses it
        assert gt.check_module(dropout, summed, *data).passed
    assert outcomes == ["failed"]  # tried once, then the loop
