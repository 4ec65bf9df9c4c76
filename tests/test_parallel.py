"""``workers=`` and ``executor=``: the same numbers as a serial check, from other processes."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import gradproof

REL = 1e-12  # parallel and serial evaluate the same points: equal up to summation order


class TanhLoss:
    """sum(tanh(W x + b)^2): defined at module level, so plain pickle sends it to workers."""

    def __init__(self, x):
        self.x = x

    def __call__(self, p):
        return float(np.sum(np.tanh(p["W"] @ self.x + p["b"]) ** 2))


class SumOfSines:
    """sum(sin(theta)), picklable by reference."""

    def __call__(self, p):
        return float(np.sum(np.sin(p)))


class FailsAwayFromTheBasePoint:
    """The loss, except that it raises wherever W[0, 0] is perturbed."""

    def __init__(self, loss, w00):
        self.loss, self.w00 = loss, w00

    def __call__(self, p):
        if abs(p["W"][0, 0] - self.w00) > 0:
            raise FloatingPointError("in the worker")
        return self.loss(p)


def problem():
    rng = np.random.default_rng(11)
    params = {"W": rng.normal(size=(12, 10)), "b": rng.normal(size=(12,))}
    x = rng.normal(size=10)
    loss = TanhLoss(x)
    t = np.tanh(params["W"] @ x + params["b"])
    d = 2 * t * (1 - t**2)
    grad = {"W": np.outer(d, x), "b": d}
    grad["W"][4, 7] += 1e-3  # one planted wrong element
    return loss, params, grad


def _same(parallel, serial):
    assert parallel.status == serial.status == "fail"
    assert parallel.evaluations == serial.evaluations
    assert parallel.difference == pytest.approx(serial.difference, rel=REL)
    assert parallel.blocks["W"].wrong_elements == serial.blocks["W"].wrong_elements == ((4, 7),)
    for a, b in zip(parallel.blocks["W"].worst, serial.blocks["W"].worst, strict=True):
        assert a.numerical == pytest.approx(b.numerical, rel=REL)


def test_workers_give_the_serial_numbers():
    loss, params, grad = problem()
    before = {k: v.copy() for k, v in params.items()}
    _same(gradproof.check(loss, params, grad, workers=2), gradproof.check(loss, params, grad))
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_a_thread_pool_executor_gives_the_serial_numbers():
    loss, params, grad = problem()
    with ThreadPoolExecutor(2) as pool:
        parallel = gradproof.check(loss, params, grad, executor=pool)
    _same(parallel, gradproof.check(loss, params, grad))


def test_a_process_pool_executor_gives_the_serial_numbers_in_sample_mode():
    import multiprocessing

    loss, params, grad = problem()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        parallel = gradproof.check(loss, params, grad, executor=pool, mode="sample", samples=200)
    _same(parallel, gradproof.check(loss, params, grad, mode="sample", samples=200))


def test_an_unpicklable_loss_is_refused_before_any_work():
    loss, params, grad = problem()
    lock = threading.Lock()
    calls = []

    def locked(p):
        calls.append(1)
        with lock:
            return loss(p)

    with pytest.raises(gradproof.InvalidArgument) as info:
        gradproof.check(locked, params, grad, workers=2)
    message = str(info.value)
    assert message.startswith("`loss`=<function ") and "picklable" in message and "Fix:" in message
    assert calls == []


def test_a_closure_travels_to_workers_by_cloudpickle():
    pytest.importorskip("cloudpickle", reason="closures travel by cloudpickle (gradproof[dask])")
    loss, params, grad = problem()
    x = loss.x

    def closure(p):  # a local function: plain pickle refuses it, cloudpickle sends it by value
        return float(np.sum(np.tanh(p["W"] @ x + p["b"]) ** 2))

    _same(gradproof.check(closure, params, grad, workers=2), gradproof.check(loss, params, grad))


def test_an_error_in_a_worker_reaches_the_caller():
    loss, params, grad = problem()
    fails_away_from_the_base_point = FailsAwayFromTheBasePoint(loss, params["W"][0, 0])

    before = {k: v.copy() for k, v in params.items()}
    with ThreadPoolExecutor(2) as pool, pytest.raises(FloatingPointError, match="in the worker"):
        gradproof.check(fails_away_from_the_base_point, params, grad, executor=pool, eps=1e-6)
    with pytest.raises(FloatingPointError, match="in the worker"):
        gradproof.check(fails_away_from_the_base_point, params, grad, workers=2, eps=1e-6)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])


def test_a_long_check_comes_back_in_small_pieces_that_move_the_bar(capsys):
    # 5,000 coordinates on 2 workers: pieces of at most 500, not 2 x 4 = 8 big ones.
    theta = np.linspace(-1.0, 1.0, 5_000)
    report = gradproof.check(SumOfSines(), theta, np.cos(theta), workers=2, progress=True)
    assert report.passed
    last = re.split(r"[\r\n]", capsys.readouterr().err.strip())[-1]  # a terminal's or a log's
    done, total = (int(x) for x in re.search(r"(\d+)/(\d+) chunks", last).groups())
    assert done == total >= 10  # the central pass alone: ceil(5000 / 500)
