"""A float64 gradient that carries float32's rounding (a backward accumulating in a float32
buffer) is judged with float32's rounding allowed; a real bug still fails."""

from __future__ import annotations

import numpy as np

import gradproof


def _problem():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=40)

    def loss(p):
        return float(np.sum(np.sin(p) * np.linspace(0.3, 3.3, 40)))

    exact = np.cos(theta) * np.linspace(0.3, 3.3, 40)
    return loss, theta, exact


def test_a_gradient_rounded_to_float32_but_handed_back_as_float64_passes():
    loss, theta, exact = _problem()
    rounded = exact.astype(np.float32).astype(np.float64)
    assert gradproof.check(loss, theta, exact).passed
    assert gradproof.check(loss, theta, rounded).passed


def test_a_bug_in_a_float32_rounded_gradient_still_fails():
    loss, theta, exact = _problem()
    wrong = exact.copy()
    wrong[7] *= 1.001
    report = gradproof.check(loss, theta, wrong.astype(np.float32).astype(np.float64))
    assert report.status == "fail"
    assert report.blocks["params"].wrong_elements == ((7,),)
