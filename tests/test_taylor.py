"""The Taylor test and the step-size sweep (issue 3, point 8)."""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
from models import relu_net, tanh_net


@pytest.mark.parametrize("seed", range(3))
def test_right_gradient_converges_at_order_two(seed):
    loss, params, grad = tanh_net(seed)
    result = gradproof.taylor_test(loss, params, grad, seed=seed)
    assert result.status == "pass"
    assert result.order == pytest.approx(2.0, abs=0.2)


@pytest.mark.parametrize("factor", [2.0, 1.01, -1.0])
def test_wrong_gradient_converges_at_order_one(factor):
    loss, params, grad = tanh_net(0)
    g = {k: factor * np.asarray(v) for k, v in grad(params).items()}
    result = gradproof.taylor_test(loss, params, g)
    assert result.status == "fail"
    assert result.order == pytest.approx(1.0, abs=0.2)


def test_a_single_wrong_element_fails_the_taylor_test():
    loss, params, grad = tanh_net(1)
    g = {k: np.array(v, dtype=float) for k, v in grad(params).items()}
    g["W"][2, 2] += 0.05
    assert gradproof.taylor_test(loss, params, g).status == "fail"


def test_residuals_are_the_documented_quantities():
    loss, params, grad = tanh_net(0)
    result = gradproof.taylor_test(loss, params, grad)
    assert len(result.steps) == len(result.residuals) == len(result.residuals_zeroth)
    assert list(result.steps) == sorted(result.steps, reverse=True)
    # The zeroth-order residual |J(x+hv) - J(x)| falls like h: its log-slope is about 1.
    slope = np.polyfit(np.log(result.steps[-6:]), np.log(result.residuals_zeroth[-6:]), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.1)


def test_linear_loss_with_its_exact_gradient_passes_at_the_noise_floor():
    c = np.array([1.0, -2.0, 0.5])
    result = gradproof.taylor_test(lambda x: float(c @ x), np.ones(3), lambda x: c)
    assert result.status == "pass" and result.order is None
    assert "noise level" in result.explanation


def test_taylor_test_leaves_params_untouched():
    loss, params, grad, _ = relu_net(0)
    before = {k: v.copy() for k, v in params.items()}
    gradproof.taylor_test(loss, params, grad)
    for k in before:
        np.testing.assert_array_equal(params[k], before[k])


def test_sweep_shows_the_v_and_finds_a_middle_step():
    loss, params, grad = tanh_net(0)
    result = gradproof.sweep(loss, params, grad)
    d = np.array(result.differences)
    best = int(np.argmin(d))
    assert 0 < best < len(d) - 1  # truncation on the left, roundoff on the right
    assert d[0] > 100 * d[best] and d[-1] > 100 * d[best]
    assert result.best_eps == result.eps[best] and 1e-9 <= result.best_eps <= 1e-3
    assert result.best_difference == pytest.approx(d[best], rel=1e-12)


def test_sweep_takes_the_steps_it_is_given():
    result = gradproof.sweep(
        lambda x: float(np.sum(x**3)), np.ones(2), lambda x: 3 * x**2, eps=[1e-2, 1e-4]
    )
    assert result.eps == (1e-2, 1e-4)
    # central difference of x^3: error h^2 exactly, so the difference shrinks by 1e4
    assert result.differences[0] / result.differences[1] == pytest.approx(1e4, rel=1e-3)


def _sin(x):
    return float(np.sum(np.sin(x)))


@pytest.mark.parametrize(
    ("call", "argument", "fragment"),
    [
        (
            lambda: gradproof.taylor_test(_sin, np.ones(2), np.cos, largest_step=-1),
            "largest_step",
            "> 0",
        ),
        (
            lambda: gradproof.taylor_test(_sin, np.ones(2), np.cos, largest_step=0.0),
            "largest_step",
            "> 0",
        ),
        (lambda: gradproof.taylor_test(_sin, np.ones(2), np.cos, seed="a"), "seed", "whole number"),
        (lambda: gradproof.sweep(_sin, np.ones(2), np.cos, eps=[]), "eps", "at least one step"),
        (lambda: gradproof.sweep(_sin, np.ones(2), np.cos, eps=[1e-3, -1e-5]), "eps", "> 0"),
        (lambda: gradproof.sweep(_sin, np.ones(2), np.cos, eps="small"), "eps", "at least one"),
    ],
    ids=["step-negative", "step-zero", "seed-text", "eps-empty", "eps-negative", "eps-text"],
)
def test_misuse_names_the_argument_and_the_fix(call, argument, fragment):
    with pytest.raises(gradproof.InvalidArgument) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"`{argument}`=") and fragment in message and "Fix: " in message
