"""``batched=True``: K parameter sets per call, in chunks of bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
from conftest import NOTEBOOK_RTOL
from gradproof._engine.evaluate import Evaluator
from gradproof._engine.tree import flatten
from gradproof.examples import fraud

WITH_BUGS = 0.2850931567761623
FIXED = 1.1890913024229996e-07


@pytest.mark.parametrize(("bugs", "expected"), [(True, WITH_BUGS), (False, FIXED)])
def test_the_notebooks_batched_network_reproduces_the_notebooks_numbers(fraud_case, bugs, expected):
    X, Y, params = fraud_case
    _, cache = fraud.forward_propagation_n(X, Y, params)
    backward = fraud.backward_propagation_n if bugs else fraud.backward_propagation_n_fixed
    grads = backward(X, Y, cache)
    report = gradproof.check(fraud.batched_loss(X, Y), params, grads, eps=1e-7, batched=True)
    assert report.difference == pytest.approx(expected, rel=NOTEBOOK_RTOL)
    assert report.passed is (not bugs)
    if bugs:
        assert report.suspects == ("W2", "b1")


def test_the_notebooks_batched_loss_with_l2_matches_the_loop_loss(fraud_case):
    X, Y, params = fraud_case
    stacked = {k: np.stack([v, 1.1 * v, 0.9 * v]) for k, v in params.items()}
    values = fraud.batched_loss(X, Y, lambd=0.7)(stacked)
    for k, factor in enumerate((1, 1.1, 0.9)):
        single = {key: factor * v for key, v in params.items()}
        expected = fraud.forward_propagation_n(X, Y, single, lambd=0.7)[0]
        assert values[k] == pytest.approx(expected, rel=1e-13)


def test_chunks_bound_the_batch_and_give_the_serial_values():
    rng = np.random.default_rng(2)
    params = {"a": rng.normal(size=(7, 3)), "b": rng.normal(size=5)}
    layout, theta = flatten(params)
    sizes = []

    def batched(p):
        sizes.append(p["a"].shape[0])
        assert not p["a"].flags.writeable
        return np.sum(np.sin(p["a"]), axis=(1, 2)) + np.sum(p["b"] ** 3, axis=1)

    def single(p):
        return float(np.sum(np.sin(p["a"])) + np.sum(p["b"] ** 3))

    indices = np.arange(theta.size)
    offsets = np.outer(np.full(theta.size, 1e-3), [1.0, -1.0, 0.5, -0.5])
    chunked = Evaluator(batched, layout, theta, batched=True, chunk_elements=3 * theta.size)
    got = chunked.coordinates(indices, offsets)
    want = Evaluator(single, layout, theta).coordinates(indices, offsets)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert max(sizes) == 3 and sum(sizes) == 4 * theta.size
    assert chunked.evaluations == 4 * theta.size
    np.testing.assert_array_equal(theta, flatten(params)[1])  # the base point is restored


def test_a_batched_loss_with_the_wrong_shape_is_named():
    with pytest.raises(gradproof.InvalidArgument, match="one value per parameter set"):
        gradproof.check(lambda p: np.sum(p), np.ones(3), np.ones(3), batched=True)


def test_a_batched_loss_returning_nan_is_named():
    def loss(p):
        out = np.sum(p**2, axis=1)
        return np.where(np.abs(p[:, 0] - 1.0) > 0, np.nan, out)

    with pytest.raises(gradproof.InvalidArgument, match="non-finite"):
        gradproof.check(loss, np.ones(3), 2 * np.ones(3), batched=True)


@pytest.mark.parametrize("mode", ["full", "sample", "probe"])
def test_batched_and_serial_checks_agree_in_every_mode(mode):
    rng = np.random.default_rng(8)
    params = {"W": rng.normal(size=(6, 9)), "c": rng.normal(size=3)}
    grad = {"W": np.cos(params["W"]), "c": 3 * params["c"] ** 2}
    grad["W"][2, 2] *= 1.01

    def single(p):
        return float(np.sum(np.sin(p["W"])) + np.sum(p["c"] ** 3))

    def batched(p):
        return np.sum(np.sin(p["W"]), axis=(1, 2)) + np.sum(p["c"] ** 3, axis=1)

    options = {"mode": mode, "samples": 60} if mode != "full" else {}
    one = gradproof.check(single, params, grad, **options)
    many = gradproof.check(batched, params, grad, batched=True, **options)
    assert one.blocks["W"].wrong_elements == many.blocks["W"].wrong_elements == ((2, 2),)
    assert one.evaluations == many.evaluations
    assert many.difference == pytest.approx(one.difference, rel=1e-6)
