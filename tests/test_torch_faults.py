"""Faults found in gradproof's PyTorch support, each kept as the case that showed it.

Raw errors from deep inside (``int()``, ``copy.py``, ``Tensor.numpy()``) become
gradproof's own errors, naming the argument, its value, the rule and the fix, or
the case just works; torch's vmap warnings about gradproof's own vmap use stay
inside gradproof; nothing the adapters build lands on a device the user's tensors
are not on.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

REASON = "PyTorch is not installed: pip install 'gradproof[torch]'"
torch = pytest.importorskip("torch", reason=REASON)

import gradproof  # noqa: E402
import gradproof.torch as gt  # noqa: E402

F = torch.nn.functional


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))


def _data():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(16, 5, generator=gen), torch.randn(16, 1, generator=gen)


@pytest.mark.parametrize(
    ("seed", "shown"),
    [("abc", "'abc'"), (-1, "-1"), (1.5, "1.5"), (True, "True"), (None, "None")],
)
@pytest.mark.parametrize("entry", ["check_module", "gradcheck"])
def test_a_bad_seed_is_misuse_naming_seed_and_its_fix(entry, seed, shown):
    with pytest.raises(gradproof.InvalidArgument) as caught:
        if entry == "check_module":
            gt.check_module(_mlp(), F.mse_loss, *_data(), seed=seed)
        else:
            x = torch.randn(3, dtype=torch.float64, requires_grad=True)
            gt.gradcheck(torch.sin, (x,), seed=seed)
    assert str(caught.value) == (
        f"`seed`={shown}: must be a whole number >= 0. Fix: pass seed=0 (for example)."
    )


@pytest.mark.parametrize("seed", [0, 7, np.int64(7)])
def test_a_whole_number_seed_is_taken(seed):
    report = gt.check_module(_mlp(), F.mse_loss, *_data(), seed=seed)
    assert report.passed


class _Locked(torch.nn.Module):
    """A model holding a lock, as one that guards a cache or a counter does."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.body = _mlp()

    def forward(self, x):
        with self.lock:
            return self.body(x)


def test_a_module_holding_a_lock_is_checked_and_keeps_its_lock():
    model = _Locked()
    lock = model.lock
    assert gt.check_module(model, F.mse_loss, *_data()).passed
    assert model.lock is lock and not lock.locked()


def _encoder():
    torch.manual_seed(0)
    return torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()


def _encoder_loss(output, target):
    return F.mse_loss(output.mean(-1), target)


def _weight_norm():
    torch.manual_seed(0)
    linear = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(8, 1))
    return torch.nn.Sequential(torch.nn.Flatten(0, 1), linear).eval()


def _weight_norm_loss(output, target):
    return F.mse_loss(output.reshape(target.shape), target)


@pytest.mark.parametrize(
    ("build", "loss"),
    [(_encoder, _encoder_loss), (_weight_norm, _weight_norm_loss)],
    ids=["transformer_encoder_eval", "weight_norm"],
)
def test_vmap_performance_warnings_of_gradproofs_own_vmap_do_not_reach_the_user(
    build, loss, monkeypatch
):
    from gradproof.torch import _module

    ran = []

    def spy(fn):
        def run(*args):
            result = torch.func.vmap(fn)(*args)
            ran.append(True)  # vmap itself ran: the warning was not turned into a fallback
            return result

        return run

    monkeypatch.setattr(_module, "vmap", spy)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 4, 8, generator=gen), torch.randn(3, 4, generator=gen)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        report = gt.check_module(build(), loss, x, y)
    assert report.passed and ran
    assert [str(w.message) for w in seen] == []


def test_the_users_own_vmap_still_warns_after_a_check():
    model = _weight_norm()
    x = torch.randn(3, 4, 8)
    gt.check_module(model, _weight_norm_loss, x, torch.randn(3, 4))
    stacked = {n: torch.stack([p.detach(), 2 * p.detach()]) for n, p in model.named_parameters()}
    with pytest.warns(UserWarning, match="There is a performance drop"):
        torch.func.vmap(lambda v: torch.func.functional_call(model, v, (x,)))(stacked)


def test_nothing_check_module_builds_lands_on_the_default_device():
    # A tensor built without device= would land on "meta" and meet the CPU model, and
    # torch would raise, as it does for a CPU tensor beside a CUDA model.
    model, (x, y) = _mlp(), _data()
    with torch.device("meta"):
        report = gt.check_module(model, F.mse_loss, x, y)
    assert report.passed
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_core_check_detaches_a_torch_tensor_that_requires_grad():
    # A tensor that requires grad, passed as params to gradproof.check, is detached
    # silently and checked, and the user's tensor is untouched (the engine's tree.py;
    # it used to raise torch's "Can't call numpy() on Tensor that requires grad").
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    before = w.detach().clone()

    def loss(p):
        return float(np.sum(np.asarray(p) ** 2))

    right = gradproof.check(loss, w, 2 * before.numpy())
    wrong = gradproof.check(loss, w, 4 * before.numpy())
    assert right.passed and list(right.blocks) == ["params"]
    assert wrong.status == "fail" and wrong.suspects == ("params",)
    assert wrong.blocks["params"].scale == pytest.approx(2.0, rel=1e-6)
    assert w.requires_grad and w.grad is None and w.grad_fn is None
    assert torch.equal(w.detach(), before)


def test_gradchecks_own_vmap_does_not_warn_either(monkeypatch):
    from gradproof.torch import _function_loss

    ran = []

    def spy(fn):
        def run(*args):
            result = torch.func.vmap(fn)(*args)
            ran.append(True)
            return result

        return run

    monkeypatch.setattr(_function_loss, "vmap", spy)
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, 4, dtype=torch.float64, generator=gen).requires_grad_()
    g = (torch.rand(3, 1, dtype=torch.float64, generator=gen) + 0.5).requires_grad_()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert gt.gradcheck(lambda v, g: torch._weight_norm(v, g, 0), (v, g)) is True
    assert ran and [str(w.message) for w in seen] == []


def _sin_failing_at(failing_call, calls):
    """sin, raising on its ``failing_call``-th call outside vmap (0: never); counts them."""

    def func(x):
        if not torch._C._functorch.is_batchedtensor(x):
            calls.append(1)
            if len(calls) == failing_call:
                raise ValueError("transient fault in func")
        return torch.sin(x)

    return func


def test_funcs_own_error_at_any_plain_call_reaches_the_user():
    """func raising once (a transient fault) is the user's error wherever it happens: it is
    raised, not taken for a function vmap cannot run and retried one point at a time. Only
    a call under vmap may fail quietly (the check then evaluates one point per call)."""
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_()
    before = x.detach().clone()
    plain: list[int] = []
    assert gt.gradcheck(_sin_failing_at(0, plain), (x,))
    assert len(plain) >= 3  # the graph's call, and vmap's rows compared with single calls
    for failing_call in range(1, len(plain) + 1):
        with pytest.raises(ValueError, match="transient fault in func"):
            gt.gradcheck(_sin_failing_at(failing_call, []), (x,))
        assert torch.equal(x.detach(), before) and x.requires_grad and x.grad is None
