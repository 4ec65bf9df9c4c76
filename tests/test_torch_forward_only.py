"""A custom autograd.Function without a vmap rule is evaluated in batches: its forward runs
under vmap (gradproof.torch._forward_only), checked against single calls first, and torch
is left as it was."""

from __future__ import annotations

import threading
import time

import pytest

torch = pytest.importorskip("torch", reason="needs the torch extra: pip install 'gradproof[torch]'")

import gradproof.torch as gt  # noqa: E402
from gradproof.torch._forward_only import forwards_under_vmap  # noqa: E402

APPLY = torch.autograd.Function.__dict__["apply"]


def _counting(bug: float = 1.0, new_style: bool = False):
    """tanh(x) * y as an old-style (or setup_context) Function without a vmap rule, its
    forward's calls counted; ``bug`` scales x[1]'s gradient."""
    calls = [0]

    def compute(x, y):
        calls[0] += 1
        return torch.tanh(x) * y

    def grads(x, y, g):
        gx = g * y * (1 - torch.tanh(x) ** 2)
        gx = gx.clone()
        gx.view(-1)[1] *= bug
        return gx, g * torch.tanh(x)

    if new_style:

        class NewStyle(torch.autograd.Function):
            @staticmethod
            def forward(x, y):
                return compute(x, y)

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(*inputs)

            @staticmethod
            def backward(ctx, g):
                return grads(*ctx.saved_tensors, g)

        return NewStyle, calls

    class OldStyle(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            ctx.mark_non_differentiable()  # the marks a forward may make are taken
            ctx.set_materialize_grads(True)
            assert len(ctx.needs_input_grad) == 2
            return compute(x, y)

        @staticmethod
        def backward(ctx, g):
            return grads(*ctx.saved_tensors, g)

    return OldStyle, calls


def _inputs(n=30):
    gen = torch.Generator().manual_seed(0)
    return tuple(
        torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True) for _ in "xy"
    )


@pytest.mark.parametrize("new_style", [False, True], ids=["old-style", "setup_context"])
def test_a_function_without_a_vmap_rule_is_evaluated_in_batches(new_style):
    fn, calls = _counting(new_style=new_style)
    x, y = _inputs()
    assert gt.gradcheck(fn.apply, (x, y))
    # 60 coordinates: one call per point would be over 120 (2 per coordinate and the noise
    # measurement); in batches, a few dozen at most
    assert calls[0] < 40
    assert torch.autograd.Function.__dict__["apply"] is APPLY


@pytest.mark.parametrize("new_style", [False, True], ids=["old-style", "setup_context"])
def test_a_planted_bug_is_still_named_when_evaluated_in_batches(new_style):
    fn, _ = _counting(bug=1.001, new_style=new_style)
    x, y = _inputs()
    with pytest.raises(gt.GradcheckError) as caught:
        gt.gradcheck(fn.apply, (x, y))
    report = caught.value.report
    assert [tuple(e) for e in report.blocks["x"].wrong_elements] == [(1,)]
    assert report.blocks["y"].status == "pass"
    assert torch.autograd.Function.__dict__["apply"] is APPLY


def test_a_forward_vmap_cannot_run_is_called_once_per_point():
    calls = [0]

    class ThroughNumpy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            calls[0] += 1
            ctx.save_for_backward(x)
            return torch.from_numpy(x.detach().numpy() ** 2)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * g * x

    x = torch.linspace(-1, 1, 12, dtype=torch.float64, requires_grad=True)
    assert gt.gradcheck(ThroughNumpy.apply, (x,))
    assert calls[0] > 2 * 12  # each point a call of its own
    assert torch.autograd.Function.__dict__["apply"] is APPLY


def test_a_function_with_its_own_vmap_rule_keeps_it():
    """The rule is used (and, computing another function, found out by the vmap trial)."""
    used = [0]

    class WithRule(torch.autograd.Function):
        generate_vmap_rule = False

        @staticmethod
        def forward(x):
            return 2 * torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2 * g * torch.cos(x)

        @staticmethod
        def vmap(info, in_dims, x):
            used[0] += 1
            return torch.sin(x), 0  # another function than forward's

    x = torch.linspace(0.1, 1, 8, dtype=torch.float64, requires_grad=True)
    assert gt.gradcheck(WithRule.apply, (x,))
    assert used[0] >= 1


def test_torch_is_left_as_it_was_even_when_func_raises():
    fn, _ = _counting()

    def raising(x, y):
        if torch._C._are_functorch_transforms_active():
            raise RuntimeError("no vmap here")
        return fn.apply(x, y)

    x, y = _inputs(5)
    assert gt.gradcheck(raising, (x, y))  # vmap raises: one call per point instead
    assert torch.autograd.Function.__dict__["apply"] is APPLY
    with pytest.raises(RuntimeError, match="setup_context"):  # torch refuses, as before
        torch.func.vmap(lambda r: fn.apply(r, r))(torch.ones(2, 3, dtype=torch.float64))


def test_only_the_thread_inside_runs_forwards_directly():
    fn, _ = _counting()
    inside, outside = threading.Event(), threading.Event()
    seen: list[str] = []

    def other_thread():
        inside.wait()
        try:
            with torch.no_grad():
                torch.func.vmap(lambda r: fn.apply(r, r))(torch.ones(2, 3, dtype=torch.float64))
            seen.append("ran")
        except RuntimeError:
            seen.append("refused")
        outside.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with torch.no_grad(), forwards_under_vmap():
        inside.set()
        outside.wait(timeout=30)
        rows = torch.func.vmap(lambda r: fn.apply(r, r))(torch.ones(2, 3, dtype=torch.float64))
    worker.join()
    assert seen == ["refused"]  # torch's own behaviour in the other thread
    assert torch.allclose(rows, torch.tanh(torch.ones(2, 3, dtype=torch.float64)))
    assert torch.autograd.Function.__dict__["apply"] is APPLY


def test_batches_slower_per_point_than_single_calls_give_way_to_single_calls():
    """A function whose batches cost far more per point than a call of its own (here a
    batch sleeps 0.2 s; a call 1 ms) is batched until the first batch of
    16 points or more has shown it, then called once per point; the verdict is the same."""
    from torch._C import _functorch

    batches, singles = [0], [0]

    def slow_in_batches(x):
        if _functorch.is_batchedtensor(x):
            batches[0] += 1
            time.sleep(0.2)
        else:
            singles[0] += 1
            time.sleep(0.001)  # a call long enough to be judged (MIN_CALL)
        return torch.sin(x)

    x = torch.linspace(-1, 1, 20, dtype=torch.float64, requires_grad=True)
    assert gt.gradcheck(slow_in_batches, (x,))
    # the vmap trial's batch, the noise table's (16 points or more), then single calls
    assert batches[0] <= 3
    assert singles[0] > 2 * 20


def test_a_quick_function_makes_the_same_calls_from_run_to_run():
    """Calls of a few microseconds are not timed against batches: the count is fixed."""
    counts = []
    for _ in range(3):
        fn, calls = _counting()
        x, y = _inputs(8)
        assert gt.gradcheck(fn.apply, (x, y))
        counts.append(calls[0])
    assert counts[0] == counts[1] == counts[2]
