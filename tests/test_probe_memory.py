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
from gradproof._engine.shifts import CHUNK, Signs
from gradproof._engine.tree import flatten


def tanh_layer(n: int, seed: int = 0, factor: float = 1.001):
    """J(W) = 0.5 * sum((tanh(X @ W) - Y)**2) for W of n x n, its gradient with the largest
    element planted wrong (x ``factor``), and that element's index."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, n)) / np.sqrt(n)
    y = 0.5 * rng.standard_normal((4, n))
    w = rng.standard_normal((n, n))

    def loss(p):
        return 0.5 * float(np.sum((np.tanh(x @ p["W"]) - y) ** 2))

    a = np.tanh(x @ w)
    grad = x.T @ ((a - y) * (1.0 - a**2))
    planted = np.unravel_index(int(np.argmax(np.abs(grad))), grad.shape)
    grad[planted] *= factor
    return loss, {"W": w}, {"W": grad}, tuple(int(i) for i in planted)


def test_the_probes_of_a_million_parameters_add_a_fifth_of_their_bytes(monkeypatch):
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
    # The work buffer is the noise measurement's, made before; the probes add chunks and
    # the signs of the failing probes (a bit each): a copy of theta, or int8 signs per
    # probe, would pass 0.2x at once.
    assert added and added[0] < 0.2 * nbytes, f"the probe added {added[0] / nbytes:.2f}x"
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
    signs = Signs.draw(np.random.default_rng(1), size)
    u = signs.array() * np.maximum(np.abs(theta[2 : 2 + size]), 1.0)
    direction = Direction(theta[2 : 2 + size], signs)
    seen = []
    layout, _ = flatten({"v": theta})
    evaluator = Evaluator(lambda p: seen.append(p["v"].copy()) or 0.0, layout, theta.copy())
    evaluator.along(slice(2, 2 + size), direction, np.array([1e-4, -2e-4]))
    for step, point in zip((1e-4, -2e-4), seen, strict=True):
        expected = theta.copy()
        expected[2 : 2 + size] = theta[2 : 2 + size] + u * step
        np.testing.assert_array_equal(point, expected)  # bit for bit
    assert direction.dot(g[2 : 2 + size]) == pytest.approx(float(np.dot(g[2 : 2 + size], u)))
    if size <= CHUNK:
        assert direction.dot(g[2 : 2 + size]) == float(np.dot(g[2 : 2 + size], u))


@pytest.mark.parametrize("sizes", [(1, 2, 3), (CHUNK - 1, 7), (2 * CHUNK + 1, CHUNK + 2, 5)])
def test_signs_are_those_of_one_draw_of_the_generator_per_probe(sizes):
    """Each probe's signs are the bits of one ``rng.bytes`` call (eight to a byte, the first
    sign the top bit, 1 for +1), and leave the generator where that call leaves it."""
    from gradproof._engine.probe import Prober

    prober = Prober.__new__(Prober)  # only its generator is used
    prober.rng = np.random.default_rng(3)
    reference = np.random.default_rng(3)
    for size in sizes:
        drawn = prober.signs(size)
        assert drawn.packed.nbytes == -(-size // 8)  # one bit per sign
        np.testing.assert_array_equal(drawn.array(), bytes_signs(reference, size))
    assert prober.rng.integers(0, 2**31) == reference.integers(0, 2**31)  # state too


def bytes_signs(rng, size):
    """The reference: ``size`` signs from the bits of ``rng.bytes``, unpacked whole."""
    bits = np.unpackbits(np.frombuffer(rng.bytes(-(-size // 8)), dtype=np.uint8), count=size)
    return bits.astype(np.float64) * 2.0 - 1.0


def test_signs_are_fair():
    """Half +1, half -1, within 5 standard deviations, over a million signs; and neighbours
    unrelated (the bits are the generator's, not a pattern)."""
    signs = Signs.draw(np.random.default_rng(11), 1_000_000).array().astype(np.float64)
    assert abs(signs.sum()) < 5 * np.sqrt(signs.size)
    assert abs(np.dot(signs[:-1], signs[1:])) < 5 * np.sqrt(signs.size)


@pytest.mark.parametrize("size", [1, 9, CHUNK + 5])
def test_packed_signs_slice_without_copying(size):
    signs = Signs.draw(np.random.default_rng(3), size)
    whole = signs.array()
    assert whole.dtype == np.int8 and set(np.unique(whole)) <= {-1, 1}
    for lo, hi in ((0, size), (size // 3, size - size // 4), (size - 1, size)):
        part = signs[lo:hi]
        assert part.packed is signs.packed  # a view of the same bits
        np.testing.assert_array_equal(part.array(), whole[lo:hi])
        if hi > lo:
            assert part.first() == whole[lo]
            chunk = np.empty(hi - lo - (hi - lo) // 2, dtype=np.int8)
            part.into((hi - lo) // 2, chunk)
            np.testing.assert_array_equal(chunk, whole[lo + (hi - lo) // 2 : hi])


class Watched:
    """A loss that records, at each call, how far memory rose since the previous call
    ended (everything the check allocated between two evaluations) and the level then."""

    def __init__(self, loss):
        self.loss = loss
        self.between: list[int] = []
        self.levels: list[int] = []
        self.ended: int | None = None

    def __call__(self, p):
        current, peak = tracemalloc.get_traced_memory()
        if self.ended is not None:
            self.between.append(peak - self.ended)
        self.levels.append(current)
        value = self.loss(p)  # the loss's own memory is not the check's
        tracemalloc.reset_peak()
        self.ended = tracemalloc.get_traced_memory()[0]
        return value


def traced_check(loss, params, grad, **options):
    """The check under tracemalloc: its report and its peak beyond what existed before."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        report = gradproof.check(loss, params, grad, mode="probe", seed=0, **options)
        return report, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_a_probe_check_of_four_million_parameters_adds_at_most_twice_their_bytes():
    """The whole check, noise measurement included: one work buffer (1x) and chunks. A
    single float64 block and its gradient are used as they are, read-only, not copied
    (copies of both made it 3x); the measurement that held its directions whole, 7x."""
    loss, params, grad, planted = tanh_layer(2000)
    w_before, g_before = params["W"].copy(), grad["W"].copy()
    nbytes = params["W"].nbytes
    report, peak = traced_check(loss, params, grad)
    assert peak < 2.0 * nbytes, f"the check peaked at {peak / nbytes:.2f}x the parameters"
    assert [tuple(i) for i in report.blocks["W"].wrong_elements] == [planted]
    np.testing.assert_array_equal(params["W"], w_before)
    np.testing.assert_array_equal(grad["W"], g_before)


def test_no_full_size_memory_is_allocated_between_evaluations():
    """Between two calls of the loss the check allocates at most chunks and packed signs,
    except once: the work buffer, made before the first shifted point. Nor does what it
    holds grow with the number of evaluations."""
    loss, params, grad, planted = tanh_layer(1000)
    nbytes = params["W"].nbytes
    watched = Watched(loss)
    report, _ = traced_check(watched, params, grad)
    large = [b for b in watched.between if b > 0.2 * nbytes]
    assert len(watched.between) == report.evaluations - 1 > 60
    assert len(large) == 1 and 0.99 * nbytes <= large[0] < 1.2 * nbytes  # the work buffer
    after = watched.levels[watched.between.index(large[0]) + 1 :]
    assert max(after) - min(after) < 0.1 * nbytes  # no growth from call to call
    assert [tuple(i) for i in report.blocks["W"].wrong_elements] == [planted]


def test_more_directions_cost_evaluations_not_memory():
    loss, params, grad, _ = tanh_layer(1000, factor=1.0)  # correct: every round runs
    nbytes = params["W"].nbytes
    few, few_peak = traced_check(loss, params, grad, samples=2)
    many, many_peak = traced_check(loss, params, grad, samples=30)
    assert many.evaluations > few.evaluations + 40
    assert few.passed and many.passed
    assert abs(many_peak - few_peak) < 0.05 * nbytes
