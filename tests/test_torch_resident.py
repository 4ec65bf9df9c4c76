"""check_module's points made where the tensors live (gradproof.torch._resident).

The claim is that the resident way evaluates the very points the host would build, so
the oracle is the host's own way on the same loss: values must agree bit for bit (an
exact comparison is the property under test here, not a float tolerance). Then: no
point is built on the host per evaluation, the tensors hold the base point between
calls (also after a host-built point, or a loss that raises), and check_module's
verdicts, evaluated this way, still name a planted element.
"""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="the resident evaluation is torch's (pip install torch)"
)

import gradproof._engine.evaluate as evaluate_module  # noqa: E402
import gradproof.torch  # noqa: E402
from gradproof._engine.evaluate import Evaluator  # noqa: E402
from gradproof._engine.precision import LEVELS, TableDirection  # noqa: E402
from gradproof._engine.probe import Direction  # noqa: E402
from gradproof._engine.shifts import Signs, Values  # noqa: E402
from gradproof._engine.tree import flatten  # noqa: E402
from gradproof.torch._common import to_numpy64  # noqa: E402
from gradproof.torch._module import _ModuleLoss  # noqa: E402
from gradproof.torch._resident import TensorResident  # noqa: E402
from gradproof.torch._resident import pays as real_pays  # noqa: E402
from gradproof.torch._state import borrowed  # noqa: E402


@pytest.fixture(autouse=True)
def resident_everywhere(monkeypatch):
    """On the CPU a small check builds its points on the host, where that costs less
    (``_resident.pays``); these tests take the resident way at every size, on purpose."""
    from gradproof.torch import _function_resident, _resident

    monkeypatch.setattr(_resident, "pays", lambda *args: True)
    monkeypatch.setattr(_function_resident, "pays", lambda *args: True)


def test_on_the_cpu_the_resident_way_is_taken_where_it_pays():
    """Off the CPU always; on it, from 1,024 coordinates, and not in vmapped rows."""
    from gradproof.torch._resident import CPU_SMALL, ROW_ELEMENTS

    pays = real_pays  # the fixture patches the module's; this is the policy itself
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert pays(meta, 10, True) and pays(meta, 10, False)
    assert not pays(cpu, CPU_SMALL - 1, False) and pays(cpu, CPU_SMALL, False)
    assert not pays(cpu, 5000, True)  # vmapped rows: the host's reused buffer is as quick
    assert pays(cpu, ROW_ELEMENTS, True)  # too large for rows: in place, one point a call


def _model(n: int = 6, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1)).to(
        dtype
    )


def _evaluators(model, target, batched, x, y):
    """Two evaluators of one borrowed model's loss: resident, and the host's way."""
    names = [name for name, _ in model.named_parameters()]
    params = {name: to_numpy64(p) for name, p in model.named_parameters()}
    loss = _ModuleLoss(model, torch.nn.functional.mse_loss, (x, y), target, (names, []), 0)
    layout, theta = flatten(params)
    resident = Evaluator(loss, layout, theta, batched=batched)
    host = Evaluator(loss, layout, theta, batched=batched, resident=False)
    host.resident = None  # the host's way: every point built here
    return loss, layout, theta, resident, host


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("native", [False, True])
def test_the_points_are_the_hosts_bit_for_bit(batched, native):
    model = _model(dtype=torch.float32 if native else torch.float64)
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randn(9, 1, dtype=torch.float64)
    target = torch.float32 if native else torch.float64
    with borrowed([model], target):
        loss, layout, theta, resident, host = _evaluators(model, target, batched, x, y)
        assert isinstance(resident.resident, TensorResident)
        indices = np.array([0, 7, 29, layout.size - 1])
        offsets = np.array([[1e-3, -1e-3], [2e-6, -2e-6], [0.5, -0.25], [1e-8, 3e-8]])
        np.testing.assert_array_equal(
            resident.coordinates(indices, offsets), host.coordinates(indices, offsets)
        )
        rng = np.random.default_rng(1)
        span = slice(3, layout.size - 2)  # across every block but the edges
        signs = [Signs.draw(rng, span.stop - span.start) for _ in range(3)]
        steps = np.array([1e-3, -1e-3, 4e-3])
        for alongs in (
            [Direction(theta[span], s) for s in signs],
            [TableDirection(theta[span], s, 1e-6, LEVELS[1]) for s in signs],
            [Values(rng.standard_normal(span.stop - span.start)) for _ in signs],
        ):
            np.testing.assert_array_equal(
                resident.directions(alongs, steps, span=span),
                host.directions(alongs, steps, span=span),
            )
        if batched:  # the host's base point goes through vmap as a batch of one, the
            # resident's through the plain forward: other kernels, so a few ulps may part them
            ulp = float(np.finfo(np.float32 if native else np.float64).eps)
            assert resident.value() == pytest.approx(host.value(), rel=4 * ulp)
        else:
            np.testing.assert_array_equal(resident.value(), host.value())


def test_a_directions_dot_with_the_gradient_is_summed_where_it_is_built():
    model = _model()
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randn(9, 1, dtype=torch.float64)
    with borrowed([model], torch.float64):
        _, layout, theta, resident, _ = _evaluators(model, torch.float64, False, x, y)
        g = np.random.default_rng(2).standard_normal(layout.size)
        resident.know_gradient(g)
        signs = Signs.draw(np.random.default_rng(3), layout.size - 5)
        direction = Direction(theta[5:], signs, g[5:])
        resident.along(slice(5, layout.size), direction, np.array([1e-3, -1e-3]))
        expected = float(np.dot(g[5:], signs.array() * np.maximum(np.abs(theta[5:]), 1.0)))
        assert direction.analytic() == pytest.approx(expected, rel=1e-12)


def test_the_tensors_hold_the_base_point_between_calls_even_after_a_host_built_point():
    model = _model()
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randn(9, 1, dtype=torch.float64)
    with borrowed([model], torch.float64):
        _, layout, theta, resident, host = _evaluators(model, torch.float64, False, x, y)
        moved = theta + 0.1
        at_moved = resident.value(moved)  # built on the host and written into the tensors
        assert at_moved != pytest.approx(resident.value(), rel=1e-6)
        indices, offsets = np.array([2, 11]), np.array([[1e-4], [-1e-4]])
        expected = host.coordinates(indices, offsets)  # leaves its last point in the tensors
        np.testing.assert_array_equal(resident.coordinates(indices, offsets), expected)
        current = np.concatenate([to_numpy64(p).ravel() for p in model.parameters()])
        np.testing.assert_array_equal(current, theta)


def test_a_loss_that_raises_halfway_leaves_the_tensors_at_the_base_point():
    model = _model()
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randn(9, 1, dtype=torch.float64)
    calls = {"n": 0}

    def loss_fn(out, target):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the loss broke")
        return torch.nn.functional.mse_loss(out, target)

    with borrowed([model], torch.float64):
        names = [name for name, _ in model.named_parameters()]
        params = {name: to_numpy64(p) for name, p in model.named_parameters()}
        loss = _ModuleLoss(model, loss_fn, (x, y), torch.float64, (names, []), 0)
        layout, theta = flatten(params)
        evaluator = Evaluator(loss, layout, theta)
        signs = Signs.draw(np.random.default_rng(0), layout.size)
        with pytest.raises(RuntimeError, match="the loss broke"):
            evaluator.directions([Direction(theta, signs)], np.array([0.1, -0.1, 0.2]))
        current = np.concatenate([to_numpy64(p).ravel() for p in model.parameters()])
        np.testing.assert_array_equal(current, theta)


def test_no_point_is_built_on_the_host_per_evaluation(layout_builds):
    """A probe check of a 250,000-parameter model: the layout never builds a host point,
    and the host's arrays allocated while evaluating stay far below one copy of θ."""
    n = 500
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(n, n), torch.nn.Tanh(), torch.nn.Linear(n, 1))
    model = model.double()
    x, y = torch.randn(4, n, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
    report = gradproof.torch.check_module(
        model, torch.nn.functional.mse_loss, x, y, mode="probe", progress=False
    )
    assert report.passed and report.evaluations > 50
    assert layout_builds["n"] == 0

    with borrowed([model], torch.float64):
        _, layout, theta, resident, _ = _evaluators(model, torch.float64, True, x, y)
        signs = Signs.draw(np.random.default_rng(0), layout.size)
        direction = Direction(theta, signs)
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            resident.directions([direction] * 4, np.array([1e-3, -1e-3]))
            resident.coordinates(np.arange(0, layout.size, 997), np.full((251, 2), 1e-4))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < theta.nbytes / 8, f"{peak} bytes allocated on the host, θ has {theta.nbytes}"


def test_check_module_evaluated_in_place_names_a_planted_element():
    """A weight's gradient doubled by a hook on one element is found, in probe and full mode."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(40, 30), torch.nn.Tanh(), torch.nn.Linear(30, 1))
    mask = torch.ones(30, 40)
    mask[4, 7] = 2.0
    model[0].weight.register_hook(lambda grad: grad * mask.to(grad.dtype))
    x, y = torch.randn(16, 40), torch.randn(16, 1)
    for mode in ("full", "probe"):
        report = gradproof.torch.check_module(
            model, torch.nn.functional.mse_loss, x, y, mode=mode, progress=False
        )
        assert not report.passed
        assert report.suspects[0] == "0.weight", mode
        assert report.blocks["0.weight"].wrong_elements == ((4, 7),), mode
        assert all(report.blocks[name].passed for name in ("0.bias", "2.weight", "2.bias"))


def test_inputs_and_tied_weights_go_the_resident_way():
    torch.manual_seed(0)
    emb = torch.nn.Linear(4, 4, bias=False)
    model = torch.nn.Sequential(emb, torch.nn.Tanh(), torch.nn.Linear(4, 4, bias=False))
    model[2].weight = emb.weight  # tied: one block
    x, y = torch.randn(5, 4), torch.randn(5, 4)
    report = gradproof.torch.check_module(
        model, torch.nn.functional.mse_loss, x, y, wrt="all", progress=False
    )
    assert report.passed
    assert list(report.blocks) == ["0.weight", "batch[0]", "batch[1]"]


def test_reseed_makes_dropout_repeat_in_place():
    """Dropout draws one mask per evaluation, the same at every point (the generator is
    reset before each), so a training-mode model checks cleanly the resident way too."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    x, y = torch.randn(10, 6), torch.randn(10, 1)
    with pytest.warns(gradproof.torch.TrainingModeWarning):
        report = gradproof.torch.check_module(
            model, torch.nn.functional.mse_loss, x, y, progress=False
        )
    assert report.passed


def test_a_tensor_the_resident_way_cannot_view_flat_takes_the_hosts_way():
    """A non-contiguous input (a transposed view) declines the resident way; the check
    still runs, on the host's points, and passes."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    x = torch.randn(4, 6).t()  # non-contiguous
    y = torch.randn(6, 1)
    opened = []
    real = TensorResident.__init__

    def spy(self, *args, **kwargs):
        opened.append(self)
        real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TensorResident, "__init__", spy)
        report = gradproof.torch.check_module(
            model, torch.nn.functional.mse_loss, x, y, wrt="inputs", progress=False
        )
    assert report.passed and not opened
    report = gradproof.torch.check_module(model, torch.nn.functional.mse_loss, x, y, progress=False)
    assert report.passed


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_a_low_precision_model_checked_natively_goes_the_resident_way(dtype):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    model = model.to(dtype)
    x, y = torch.randn(12, 5, dtype=dtype), torch.randn(12, 1, dtype=dtype)
    report = gradproof.torch.check_module(
        model, torch.nn.functional.mse_loss, x, y, dtype="native", progress=False
    )
    assert report.status != "fail"  # pass or inconclusive, never a false alarm


def test_a_model_that_moves_its_own_weights_is_checked_on_host_built_points():
    """A forward pre-hook that shrinks the weight in place (``weight.data *= 0.999``, a
    weight decay applied inside forward): the loss is J(θ) = f(0.999 θ), a function of the
    point, when every point is written whole before each call. In place, the weights would
    drift from call to call; the resident way notices, declines, and the check gives the
    host's verdict: autograd's gradient of the weight misses the factor 0.999."""

    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        model[0].register_forward_pre_hook(shrink)
        return model

    def shrink(module, args):
        module.weight.data.mul_(0.999)

    x, y = torch.randn(10, 5), torch.randn(10, 1)
    real = evaluate_module.open_resident
    reports = []
    for opener in (real, lambda *args: None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(evaluate_module, "open_resident", opener)
            reports.append(
                gradproof.torch.check_module(
                    build(), torch.nn.functional.mse_loss, x, y, progress=False
                )
            )
    resident, host = reports
    assert host.status == "fail" and host.suspects[0] == "0.weight"
    assert resident.status == host.status and resident.suspects == host.suspects
    assert resident.blocks["0.weight"].difference == pytest.approx(
        host.blocks["0.weight"].difference, rel=1e-6
    )


# ---------------------------------------------------------------- gradcheck's inputs


class _Skewed(torch.autograd.Function):
    """``tanh(x @ w)`` whose backward scales one weight's gradient by 1.01 (no vmap rule)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return torch.tanh(x @ w)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        d = g * (1 - torch.tanh(x @ w) ** 2)
        gw = x.T @ d
        gw[1, 0] *= 1.01
        return d @ w.T, gw


def _gradcheck_both_ways(func, inputs, check=None, **options):
    """The drop-in's outcome (True, or its error message) the resident way and the host's
    way, and the kinds of resident evaluation the engine opened (``check``: the drop-in,
    ``gradproof.torch.gradcheck`` by default)."""
    check = check or gradproof.torch.gradcheck
    real = evaluate_module.open_resident
    opened = []

    def spy(*args):
        resident = real(*args)
        opened.append(type(resident).__name__)
        return resident

    outcomes = []
    for opener in (spy, lambda *args: None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(evaluate_module, "open_resident", opener)
            try:
                outcomes.append(check(func, inputs, **options))
            except gradproof.torch.GradcheckError as error:  # its timing aside
                outcomes.append(re.sub(r"in \d+\.\d+ s", "in T s", str(error)))
    return outcomes, opened


@pytest.mark.parametrize("fast_mode", [False, True])
@pytest.mark.parametrize(
    "func", [lambda x, w: torch.tanh(x @ w), _Skewed.apply], ids=["vmappable", "no-vmap-rule"]
)
def test_gradcheck_evaluated_in_place_gives_the_hosts_verdict(func, fast_mode):
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    (resident, host), opened = _gradcheck_both_ways(func, (x, w), fast_mode=fast_mode)
    correct = func != _Skewed.apply
    if fast_mode and correct:  # fast mode's screen clears it: no full check runs at all
        assert opened == []
    else:
        assert "TensorResident" in opened
    assert resident == host
    assert (resident is True) == correct


def test_a_func_that_runs_autograd_itself_is_evaluated_in_place_with_gradients():
    """Its first call under no_grad raises; it is made again in place, with gradients
    enabled and the private copies requiring grad, and so is every later one."""
    torch.manual_seed(0)
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    calls = {"grad enabled": 0}

    def autograd_inside(t):  # the gradient of sum(t^3), as gradgradcheck's function takes it
        calls["grad enabled"] += torch.is_grad_enabled()
        (g,) = torch.autograd.grad((t**3).sum(), t, create_graph=True)
        return g

    (resident, host), opened = _gradcheck_both_ways(autograd_inside, (x,))
    assert resident is True and host is True and "TensorResident" in opened
    assert calls["grad enabled"] > 20
    assert not x.grad_fn and x.grad is None  # the user's input untouched


class _Cube(torch.autograd.Function):
    """``x**3`` with a hand-written backward that is itself differentiable; ``wrong``
    scales its double backward by 1.01 at element 3 (what gradgradcheck must catch)."""

    wrong = False

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return _CubeBackward.apply(g, x)


class _CubeBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, g, x):
        ctx.save_for_backward(g, x)
        return 3 * g * x**2

    @staticmethod
    def backward(ctx, gg):
        g, x = ctx.saved_tensors
        dx = 6 * gg * g * x
        if _Cube.wrong:
            dx = dx.clone()
            dx[3] *= 1.01
        return 3 * gg * x**2, dx


@pytest.mark.parametrize("wrong", [False, True])
def test_gradgradcheck_evaluated_in_place_gives_the_hosts_verdict(monkeypatch, wrong):
    monkeypatch.setattr(_Cube, "wrong", wrong)
    torch.manual_seed(0)
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    (resident, host), opened = _gradcheck_both_ways(
        _Cube.apply, (x,), check=gradproof.torch.gradgradcheck
    )
    assert "TensorResident" in opened
    assert resident == host
    assert (resident is True) == (not wrong)
    if wrong:
        assert "[3]" in resident
