"""Losses that change on a scale far below the default step (gradproof._engine.settle).

The default step is eps^(1/3) * max(|θ|, 1) (about 6e-6 for |θ| <= 1). A loss of
parameters near 1e-8 that changes on that scale (exp(1e7 w)), one of |x| near 1e7 that
oscillates with period 2π (sin(x) of a Unix timestamp), or a Gaussian beam a micrometre
wide, is not smooth on that step. The oracles are the closed-form derivatives: a correct
gradient must pass (no "constant factor" false alarm) and a wrong one (×1.1, ×2, a sign
flip) must fail, never be excused as a kink, in every case; at the default scale
nothing changes.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof


def _exp_problem(seed: int = 8):
    w = np.random.default_rng(seed).normal(size=4) * 1e-8
    return (lambda p: float(np.sum(np.exp(p * 1e7)))), w, (lambda p: 1e7 * np.exp(p * 1e7))


@pytest.mark.parametrize("factor", [1.1, 2.0, -1.0])
def test_a_wrong_gradient_of_tiny_parameters_on_their_own_scale_fails(factor):
    loss, w, grad = _exp_problem()
    report = gradproof.check(loss, w, lambda p: factor * grad(p))
    assert report.status == "fail", str(report)
    assert report.blocks["params"].kinks == ()  # a smooth loss is no kink


@pytest.mark.parametrize("seed", range(4))
def test_the_right_gradient_of_tiny_parameters_passes(seed):
    loss, w, grad = _exp_problem(seed)
    report = gradproof.check(loss, w, grad)
    assert report.passed, str(report)
    assert report.extra["central_first"]["smaller_steps"] >= 1
    assert any("smaller than the default" in note for note in report.notes)
    # the element's estimate is the closed form to 1e-7 (relative), not the default step's
    worst = report.blocks["params"].worst[0]
    assert abs(worst.numerical - worst.analytic) <= 1e-7 * abs(worst.analytic)


@pytest.mark.parametrize("magnitude", [1e6, 1e7, 1e8])
def test_sin_of_large_inputs_is_judged_on_its_period(magnitude):
    x = magnitude * (1 + 0.1 * np.arange(4))
    v = np.random.default_rng(0).normal(size=4)

    def loss(p):
        return float(np.sum(v * np.exp(np.sin(p))))

    def grad(p):
        return v * np.exp(np.sin(p)) * np.cos(p)

    assert gradproof.check(loss, x, grad).passed
    flipped = gradproof.check(loss, x, lambda p: -grad(p))
    assert flipped.status == "fail" and flipped.blocks["params"].diagnosis.kind == "sign"


def test_a_gaussian_beam_in_metres():
    x = np.linspace(-5e-6, 5e-6, 50)
    data = np.exp(-(((x - 1.2e-6) / 1e-6) ** 2))

    def loss(p):
        return float(np.sum((np.exp(-(((x - p[0]) / 1e-6) ** 2)) - data) ** 2))

    def grad(p, scale=1.0):
        m = np.exp(-(((x - p[0]) / 1e-6) ** 2))
        return scale * np.array([np.sum(2 * (m - data) * m * 2 * (x - p[0]) / 1e-12)])

    p0 = np.array([0.3e-6])
    assert gradproof.check(loss, p0, grad).passed
    assert gradproof.check(loss, p0, lambda p: grad(p, 1.5)).status == "fail"


@pytest.mark.parametrize("bug", ["inverted mask", "relu term missing"])
def test_a_bug_beside_a_relu_kink_within_the_step_fails(bug):
    """The pre-activation is 1e-7 (inside the default step, beyond a smaller one): the
    derivative is the active side's, and a gradient of the other side is wrong."""
    x = np.array([1.0, 2.0])
    w0 = np.array([1e-7, 0.0])

    def loss(w):
        return float(3.0 * np.maximum(0.0, w @ x) + 0.5 * np.sum(w**2))

    grads = {
        "right": lambda w: 3.0 * (w @ x > 0) * x + w,
        "inverted mask": lambda w: 3.0 * (w @ x <= 0) * x + w,
        "relu term missing": lambda w: w,
    }
    assert gradproof.check(loss, w0, grads["right"]).passed
    assert gradproof.check(loss, w0, grads[bug]).status == "fail"


def test_at_the_default_scale_a_wrong_block_costs_two_more_evaluations_per_element():
    """A x2 block of a smooth loss: the default step is fine, and each wrong element costs
    the central pair, Richardson's two points and one pair at a smaller step that confirms
    the estimate did not move (6 in all), before it is blamed."""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 40))

    def loss(p):
        return float(np.sum(np.tanh(A @ p)))

    def grad(p):
        return A.T @ (1 - np.tanh(A @ p) ** 2)

    p0 = rng.normal(size=40) * 0.1
    right = gradproof.check(loss, p0, grad)
    wrong = gradproof.check(loss, p0, lambda p: 2 * grad(p))
    assert right.passed and wrong.status == "fail"
    assert len(wrong.blocks["params"].wrong_elements) == 40
    assert wrong.evaluations - right.evaluations <= 4 * 40 + 8
    assert wrong.extra["central_first"]["smaller_steps"] == 0


def test_estimates_that_never_settle_before_the_noise_blame_nothing():
    """sin(1e6 w)/1e6 with a stated noise of 1e-10: the steps short enough for its period
    carry noise of the derivative's own size, so no level settles. The correct gradient
    is never failed: an element that did not settle is neither cleared nor blamed."""
    w = np.array([0.3e-6, -0.2e-6, 0.1e-6])

    def loss(p):
        return float(np.sum(1e-6 * np.sin(1e6 * p)))

    report = gradproof.check(loss, w, lambda p: np.cos(1e6 * p), noise=1e-10)
    assert report.status == "inconclusive", str(report)
    assert report.blocks["params"].wrong_elements == ()
    assert "never settled" in report.blocks["params"].reason


# ------------------------------------------------------------ a step the user gives


@pytest.mark.parametrize("eps", [1e-3, 1e-2, 1e-1])
def test_a_users_large_eps_is_allowed_its_truncation_and_keeps_its_numbers(eps):
    """eps= selects the notebook's plain central difference, whose O(eps^2) truncation is
    measured (at eps/2) where an element would be blamed: a correct gradient passes, and
    the differences shown are the plain central ones, to the last digit."""
    x = np.random.default_rng(7).normal(size=4)
    report = gradproof.check(lambda w: float(np.sum(np.sin(w))), x, np.cos, eps=eps)
    assert report.passed, str(report)
    central = (np.sin(x + eps) - np.sin(x - eps)) / (2 * eps)
    shown = {e.index[0]: e.numerical for e in report.blocks["params"].worst}
    for i, value in shown.items():
        assert value == pytest.approx(central[i], rel=1e-12, abs=0.0)
    expected = np.linalg.norm(np.cos(x) - central) / (
        np.linalg.norm(np.cos(x)) + np.linalg.norm(central)
    )
    assert report.difference == pytest.approx(expected, rel=1e-9)


def test_a_real_bug_at_a_users_large_eps_still_fails():
    x = np.random.default_rng(7).normal(size=4)
    report = gradproof.check(
        lambda w: float(np.sum(np.sin(w))), x, lambda w: 1.01 * np.cos(w), eps=1e-2
    )
    assert report.status == "fail" and len(report.blocks["params"].wrong_elements) == 4
