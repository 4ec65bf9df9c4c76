"""``mode="probe"`` in bounded memory: no full-size copy of the parameters per evaluation.

Oracle for the named element: a tanh layer whose exact gradient has one element planted
wrong; for the memory, tracemalloc (numpy reports its allocations to it).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gradproof
import gradproof._engine.check as check_module
from gradproof._engine.evaluate import Evaluator
from gradproof._engine.probe import Direction
from gradproof._engine.shifts import CHUNK
from gradproof._engine.tree import flatten


def tanh_layer(n: int, seed: int = 0):
    """J(W) = 0.5 * sum((tanh(X @ W) - Y)**2) for W of n x n, its gradient with the largest
    element planted wrong (x1.001), and that element's index."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, n)) / np.sqrt(n)
    y = 0.5 * rng.standard_normal((4, n))
    w = rng.standard_normal((n, n))

    def loss(p):
        return 0.5 * float(np.sum((np.tanh(x @ p["W"]) - y) ** 2))

    a = np.tanh(x @ w)
    grad = x.T @ ((a - y) * (1.0 - a**2))
    planted = np.unravel_index(int(np.argmax(np.abs(grad))), grad.shape)
    grad[planted] *= 1.001
    return loss, {"W": w}, {"W": grad}, tuple(int(i) for i in planted)


def test_a_probe_of_a_million_parameters_adds_less_than_twice_their_bytes(monkeypatch):
    loss, params, grad, planted = tanh_layer(1000)
    w_before, g_before = params["W"].copy(), grad["W"].copy()
    nbytes = params["W"].nbytes
    added: list[float] = []
    run_probe = check_module.probe_mode

    def measured(ctx, *args):  # the probe mode alone: the noise measurement is not its own
        entry = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = run_probe(ctx, *args)
        added.append(tracemalloc.get_traced_memory()[1] - entry)
        return result

    monkeypatch.setattr(check_module, "probe_mode", measured)
    tracemalloc.start()
    try:
        report = gradproof.check(loss, params, grad, mode="probe", seed=0)
    finally:
        tracemalloc.stop()
    # One work buffer (1x) and the signs of the failing probes (int8, 1/8 each); a
    # copy per evaluation, or float64 signs and directions, would pass 2x at once.
    assert added and added[0] < 2 * nbytes, f"the probe added {added[0] / nbytes:.2f}x"
    assert not report.passed
    assert [tuple(i) for i in report.blocks["W"].wrong_elements] == [planted]
    np.testing.assert_array_equal(params["W"], w_before)  # the user's arrays: untouched
    np.testing.assert_array_equal(grad["W"], g_before)


def test_along_puts_the_span_back_when_the_loss_raises():
    layout, theta = flatten({"W": np.arange(12.0).reshape(3, 4)})
    calls = []

    def loss(p):
        calls.append(p["W"].copy())
        if len(calls) == 2:
            raise RuntimeError("the loss's own error")
        return float(np.sum(p["W"] ** 2))

    evaluator = Evaluator(loss, layout, theta.copy())
    with pytest.raises(RuntimeError, match="own error"):
        evaluator.along(slice(2, 7), np.ones(5), np.array([1e-3, -1e-3]))
    assert evaluator._work is not None
    np.testing.assert_array_equal(evaluator._work, theta)  # the work buffer is theta again
    np.testing.assert_array_equal(evaluator.theta, theta)
    np.testing.assert_array_equal(calls[0].ravel()[2:7], theta[2:7] + 1e-3)
    np.testing.assert_array_equal(calls[0].ravel()[7:], theta[7:])


@pytest.mark.parametrize("size", [1, 7, CHUNK, CHUNK + 3, 3 * CHUNK - 1])
def test_a_chunked_direction_gives_the_points_of_the_whole_array_expression(size):
    rng = np.random.default_rng(size)
    theta = rng.standard_normal(size + 5) * 3
    g = rng.standard_normal(size + 5)
    signs = np.random.default_rng(1).choice(np.array([-1.0, 1.0]), size=size)
    u = signs * np.maximum(np.abs(theta[2 : 2 + size]), 1.0)
    direction = Direction(theta[2 : 2 + size], signs.astype(np.int8))
    seen = []
    layout, _ = flatten({"v": theta})
    evaluator = Evaluator(lambda p: seen.append(p["v"].copy()) or 0.0, layout, theta.copy())
    evaluator.along(slice(2, 2 + size), direction.fill, np.array([1e-4, -2e-4]))
    for step, point in zip((1e-4, -2e-4), seen, strict=True):
        expected = theta.copy()
        expected[2 : 2 + size] = theta[2 : 2 + size] + u * step
        np.testing.assert_array_equal(point, expected)  # bit for bit
    assert direction.dot(g[2 : 2 + size]) == pytest.approx(float(np.dot(g[2 : 2 + size], u)))
    if size <= CHUNK:
        assert direction.dot(g[2 : 2 + size]) == float(np.dot(g[2 : 2 + size], u))


def test_signs_are_those_of_one_draw_of_the_generator():
    from gradproof._engine.probe import Prober

    prober = Prober.__new__(Prober)  # only its generator is used
    for size in (1, CHUNK - 1, 2 * CHUNK + 1):
        prober.rng = np.random.default_rng(3)
        reference = np.random.default_rng(3)
        drawn = prober.signs(size)
        assert drawn.dtype == np.int8
        np.testing.assert_array_equal(drawn, reference.choice(np.array([-1.0, 1.0]), size=size))
        assert prober.rng.integers(0, 2**31) == reference.integers(0, 2**31)  # state too
