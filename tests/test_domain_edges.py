"""A parameter at the edge of its loss's domain is checked at a smaller step.

``sqrt(p)`` at ``p = 1e-10``, ``log(p)`` at a probability near 0: the loss is finite at
the parameters but not at the step the check chose on the far side. The derivative is
defined there, and a step small enough measures it. Oracles: the closed-form
derivatives ``1 / (2 sqrt(p))`` and ``1 / p``; a gradient wrong at the edge element
fails there; a loss not finite at any step still gets the error naming its point.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import gradproof
from gradproof._engine.edges import SHRINKS

OPTIONS = [{}, {"scheme": "richardson"}, {"eps": 1e-7}, {"mode": "sample", "samples": 3}]


def sqrt_loss(p):
    with warnings.catch_warnings():  # sqrt of a negative number: NaN, which is the point
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.sum(np.sqrt(p)))


def sqrt_grad(p):
    return 0.5 / np.sqrt(p)


EDGE = np.array([1e-10, 1.0, 4.0, 0.25])


@pytest.mark.parametrize("options", OPTIONS)
def test_sqrt_just_above_zero_passes_with_its_element_checked(options):
    report = gradproof.check(sqrt_loss, EDGE.copy(), sqrt_grad, **options)
    assert report.passed, str(report)
    (block,) = report.blocks.values()
    assert block.status == "pass" and block.wrong_elements == ()


@pytest.mark.parametrize("options", OPTIONS)
def test_a_wrong_gradient_at_the_edge_element_fails_there(options):
    def doubled_at_edge(p):
        g = sqrt_grad(p)
        g[0] *= 2  # 1e5 where the derivative is 5e4
        return g

    report = gradproof.check(sqrt_loss, EDGE.copy(), doubled_at_edge, **options)
    assert not report.passed
    (block,) = report.blocks.values()
    assert block.wrong_elements == ((0,),)
    assert block.worst[0].index == (0,)
    # the step that stays in the domain is near the edge: its truncation is a few percent,
    # bounded by the error model, and a factor of 2 stands far outside it
    assert block.worst[0].numerical == pytest.approx(5e4, rel=0.05)


def test_log_of_a_probability_near_zero_is_checked_and_the_interior_keeps_its_steps():
    p = np.array([1e-9, 0.3, 0.7])
    seen = []

    def log_likelihood(q):
        seen.append(q.copy())
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.sum(np.log(q)))

    report = gradproof.check(log_likelihood, p.copy(), lambda q: 1.0 / q)
    assert report.passed, str(report)
    below = [q for q in seen if q[0] <= 0]  # points outside the domain: element 0's only
    assert below and len(below) <= SHRINKS * 2
    assert all(np.array_equal(q[1:], p[1:]) for q in below)
    np.testing.assert_array_equal(p, [1e-9, 0.3, 0.7])  # the user's array untouched


def test_a_loss_not_finite_at_any_step_still_names_the_element():
    # finite within 1e-6 of p[1] = 1 only: the noise measurement's tiny steps stay inside,
    # eps=1e4 shrunk SHRINKS times (to 2.3e-6) does not
    def finite_near_one(p):
        return float(np.sum(p**2)) if abs(p[1] - 1.0) < 1e-6 else float("nan")

    with pytest.raises(gradproof.InvalidArgument) as caught:
        gradproof.check(finite_near_one, np.array([2.0, 1.0]), lambda p: 2 * p, eps=1e4)
    text = str(caught.value)
    assert "returned a non-finite value at params[1] shifted by" in text


def test_a_batched_loss_at_the_edge_is_checked_too():
    def batched_sqrt(p):
        with np.errstate(invalid="ignore"):
            return np.sum(np.sqrt(p), axis=-1)

    report = gradproof.check(batched_sqrt, EDGE.copy(), sqrt_grad, batched=True)
    assert report.passed, str(report)
