"""gradproof.torch.check_module: parameters named as in named_parameters(), state untouched.

Oracles: autograd of plain torch layers is right, so a model of them must pass;
a hand-written layer with a planted bug (×2, transposed weight gradient) must be
named by its parameter's name, with the bug's kind.
"""

from __future__ import annotations

import copy
import warnings
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
        ((), {"wrt": "input"}, "`wrt`='input'"),
        ((), {"wrt": None}, "`wrt`=None"),
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


# The model the user trains is the one checked: hooks, parametrizations and tied weights
# take part as in the user's own loss.backward().


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _hooks(model):
    """Every hook on the model's modules and parameters, by key and object."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    modules = [
        [(k, id(v)) for kind in kinds for k, v in getattr(m, kind).items()] for m in model.modules()
    ]
    tensors = [
        [(k, id(v)) for k, v in (p._backward_hooks or {}).items()] for p in model.parameters()
    ]
    return modules, tensors


def _full_snapshot(model):
    """_snapshot, plus the hooks and the storage each parameter and buffer uses."""
    storages = [t.data_ptr() for t in [*model.parameters(), *model.buffers()]]
    return {**_snapshot(model), "hooks": _hooks(model), "storages": storages}


def test_a_tensor_hook_that_doubles_a_gradient_fails_naming_the_parameter(data):
    model = _mlp()
    model[0].weight.register_hook(lambda g: 2 * g)
    report = gt.check_module(model, F.mse_loss, *data)
    assert report.status == "fail"
    assert report.suspects == ("0.weight",)
    assert report.blocks["0.weight"].diagnosis.kind == "scale"
    assert report.blocks["0.weight"].scale == pytest.approx(2.0, rel=SCALE_RTOL)
    assert [n for n, b in report.blocks.items() if b.passed] == ["0.bias", "2.weight", "2.bias"]


@pytest.mark.parametrize(
    "hook", [lambda g: None, lambda g: g.clone(), lambda g: g * 1.0], ids=["none", "clone", "x1"]
)
def test_a_tensor_hook_that_keeps_the_gradient_passes(data, hook):
    model = _mlp()
    model[2].weight.register_hook(hook)
    assert gt.check_module(model, F.mse_loss, *data).passed


def test_a_forward_hook_that_changes_the_output_is_what_the_loss_sees(data):
    model = _mlp()
    x, y = data
    with torch.no_grad():  # what the hook makes of the output, in the check's float64
        expected = copy.deepcopy(model).double()(x.double()) ** 2
    model.register_forward_hook(lambda module, args, output: output**2)
    seen = []

    def loss(output, target):
        if not seen:  # the first call: the gradient's, at the base point
            seen.append(output.detach().clone())
        return F.mse_loss(output, target)

    report = gt.check_module(model, loss, x, y)
    assert report.passed and list(report.blocks) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=0)


def test_a_forward_pre_hook_that_scales_the_input_is_honoured(data):
    model = _mlp()
    model[0].register_forward_pre_hook(lambda module, args: (3 * args[0],))
    x, y = data
    calls = []
    model[2].register_forward_pre_hook(lambda module, args: calls.append(1))
    report = gt.check_module(model, F.mse_loss, x, y)
    assert report.passed and calls  # the user's hooks run at the check's evaluations


def test_a_full_backward_hook_that_scales_grad_input_fails_the_layers_upstream(data):
    model = _mlp()

    def triple(module, grad_input, grad_output):
        return tuple(None if g is None else 3 * g for g in grad_input)

    model[2].register_full_backward_hook(triple)
    report = gt.check_module(model, F.mse_loss, *data)
    assert report.status == "fail"
    assert set(report.suspects) == {"0.weight", "0.bias"}
    assert report.blocks["2.weight"].passed and report.blocks["2.bias"].passed
    for name in ("0.weight", "0.bias"):
        assert report.blocks[name].diagnosis.kind == "scale"
        assert report.blocks[name].scale == pytest.approx(3.0, rel=SCALE_RTOL)


def test_a_backward_pre_hook_that_halves_grad_output_fails_the_layer_and_those_upstream(data):
    model = _mlp()
    model[2].register_full_backward_pre_hook(lambda module, grad_output: (grad_output[0] / 2,))
    report = gt.check_module(model, F.mse_loss, *data)
    assert set(report.suspects) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for block in report.blocks.values():
        assert block.diagnosis.kind == "scale" and block.scale == pytest.approx(0.5, rel=SCALE_RTOL)


def test_a_weight_norm_parametrization_passes_with_its_originals_as_blocks(data):
    from torch.nn.utils import parametrizations, parametrize

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        parametrizations.weight_norm(torch.nn.Linear(5, 4)), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    )
    parametrize.register_parametrization(model[2], "weight", _Symmetric())
    report = gt.check_module(model, F.mse_loss, *data)
    assert report.passed
    assert list(report.blocks) == [
        "0.bias",
        "0.parametrizations.weight.original0",
        "0.parametrizations.weight.original1",
        "2.bias",
        "2.parametrizations.weight.original",
    ]


class _Symmetric(torch.nn.Module):
    """A parametrization whose gradient in its original is not the identity's: w + w.flip."""

    def forward(self, w):
        return w + w.flip(-1)


def test_tied_weights_pass_and_are_reported_once():
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(4, 4, bias=False)
            self.decoder = torch.nn.Linear(4, 4)
            self.decoder.weight = self.encoder.weight

        def forward(self, x):
            return self.decoder(torch.tanh(self.encoder(x)))

    torch.manual_seed(0)
    model, x, y = Tied(), torch.randn(8, 4), torch.randn(8, 4)
    report = gt.check_module(model, F.mse_loss, x, y)
    assert report.passed and list(report.blocks) == ["encoder.weight", "decoder.bias"]
    assert model.decoder.weight is model.encoder.weight


def _hooked_stateful_model(double):
    model = _stateful_model()
    model[0].weight.register_hook((lambda g: 2 * g) if double else (lambda g: g))
    model[0].register_forward_hook(lambda module, args, output: output * 1.5)
    model[2].register_forward_pre_hook(lambda module, args: None)
    model[4].register_full_backward_hook(lambda module, grad_input, grad_output: None)
    model[4].register_full_backward_pre_hook(lambda module, grad_output: None)
    return model


def _exploding_loss():
    """A loss that consumes random numbers, as one with sampling would, then raises."""
    calls = []

    def loss(output, target):
        calls.append(1)
        torch.rand(3)
        if len(calls) > 5:
            raise RuntimeError("boom")
        return F.mse_loss(output, target)

    return loss


@pytest.mark.parametrize("outcome", ["pass", "fail", "raise"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_check_gives_the_model_back_bit_for_bit(outcome, mode):
    model = _hooked_stateful_model(double=outcome == "fail")
    model.train(mode == "train")
    x, y = _data()
    before = _full_snapshot(model)
    loss = _exploding_loss() if outcome == "raise" else F.mse_loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gt.TrainingModeWarning)
        if outcome == "raise":
            with pytest.raises(RuntimeError, match="boom"):
                gt.check_module(model, loss, x, y, batched=False)
        else:
            report = gt.check_module(model, loss, x, y)
            assert report.status == outcome
            assert report.suspects == (("0.weight",) if outcome == "fail" else ())
    after = _full_snapshot(model)
    _assert_same(before, after)
    assert before["hooks"] == after["hooks"] and before["storages"] == after["storages"]


class _SquareSumWrong(torch.autograd.Function):
    """sum(w**2) with the backward 4w instead of 2w: a penalty's planted ×2."""

    @staticmethod
    def forward(ctx, w):
        ctx.save_for_backward(w)
        return (w**2).sum()

    @staticmethod
    def backward(ctx, g):
        (w,) = ctx.saved_tensors
        return 4 * w * g


def test_a_penalty_the_loss_reads_from_the_model_itself_is_checked(data):
    # loss_fn closes over the user's model: the check evaluates that model, so the
    # penalty moves with each perturbation and its wrong backward is seen.
    model = _mlp()

    def loss(output, target):
        return F.mse_loss(output, target) + _SquareSumWrong.apply(model[2].weight)

    report = gt.check_module(model, loss, *data)
    assert report.suspects == ("2.weight",)
    assert [n for n, b in report.blocks.items() if b.passed] == ["0.weight", "0.bias", "2.bias"]


def test_a_post_accumulate_grad_hook_that_scales_grad_in_place_fails(data):
    # The gradient checked is the .grad the optimizer reads after loss.backward().
    model = _mlp()

    def flip(parameter):
        parameter.grad.mul_(-1)

    model[2].bias.register_post_accumulate_grad_hook(flip)
    report = gt.check_module(model, F.mse_loss, *data)
    assert report.suspects == ("2.bias",)
    assert report.blocks["2.bias"].diagnosis.kind == "sign"


# ------------------------------------------------------------------ wrt="inputs"


class InputGradFn(torch.autograd.Function):
    """x @ w.T with a right weight gradient and an input gradient doubled."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w.T

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return 2 * (g @ w), g.T @ x


class WrongInputGrad(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 5) / 5**0.5)

    def forward(self, x):
        return torch.tanh(InputGradFn.apply(x, self.weight))


def test_a_wrong_input_gradient_passes_the_parameters_and_fails_wrt_inputs():
    torch.manual_seed(0)
    model, (x, _) = WrongInputGrad(), _data()
    y = torch.randn(16, 3)
    assert gt.check_module(model, F.mse_loss, x, y).passed  # dW is right
    report = gt.check_module(model, F.mse_loss, x, y, wrt="inputs")
    assert list(report.blocks) == ["batch[0]", "batch[1]"]
    assert report.suspects == ("batch[0]",) and report.blocks["batch[1]"].passed
    block = report.blocks["batch[0]"]
    assert block.diagnosis.kind == "scale" and block.scale == pytest.approx(2.0, rel=1e-6)
    assert "batch[0][" in str(report)
    both = gt.check_module(model, F.mse_loss, x, y, wrt="all", batched=False)
    assert list(both.blocks) == ["weight", "batch[0]", "batch[1]"]
    assert both.suspects == ("batch[0]",) and both.blocks["weight"].passed


@pytest.mark.parametrize("batched", [True, False])
def test_wrt_inputs_passes_a_plain_model_and_leaves_the_batch_alone(data, batched):
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    x, y = data
    before = (x.clone(), y.clone())
    report = gt.check_module(model, F.mse_loss, x, y, wrt="inputs", batched=batched)
    assert report.passed and list(report.blocks) == ["batch[0]", "batch[1]"]
    assert torch.equal(x, before[0]) and torch.equal(y, before[1])
    assert not x.requires_grad and x.grad is None
    assert all(p.grad is None for p in model.parameters())


def test_wrt_inputs_names_tuples_and_skips_integer_tensors():
    class TwoInputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 3)

        def forward(self, ids, scale):
            return self.embed(ids).sum(1) * scale

    torch.manual_seed(0)
    ids, scale = torch.randint(0, 10, (4, 2)), torch.randn(4, 1)
    labels = torch.randint(0, 3, (4,))
    report = gt.check_module(TwoInputs(), F.cross_entropy, (ids, scale), labels, wrt="inputs")
    assert report.passed and list(report.blocks) == ["batch[0][1]"]
    with pytest.raises(gradproof.InvalidArgument, match=r"^`wrt`='inputs': .*holds none"):
        gt.check_module(TwoInputs(), F.cross_entropy, (ids, ids[:, :1]), labels, wrt="inputs")


def test_wrt_inputs_needs_no_trainable_parameter(data):
    model = torch.nn.Linear(5, 1).requires_grad_(False)
    with pytest.raises(gradproof.InvalidArgument, match="wrt='inputs'"):
        gt.check_module(model, F.mse_loss, *data)
    assert gt.check_module(model, F.mse_loss, *data, wrt="inputs").passed
    assert gt.check_module(model, F.mse_loss, *data, wrt="all").passed
