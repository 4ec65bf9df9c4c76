"""``mode="probe"``: random signed directions per block, the miss bound, and bisection.

Oracle: J = sum(c * sin(theta)) over every block, so dJ/dtheta = c * cos(theta) exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradproof
from gradproof._engine.judge import Judged
from gradproof._engine.probe import _carries

RTOL = 1e-6  # relative tolerance on element-level numerical derivatives


def sines(sizes, scale=None, seed=5):
    rng = np.random.default_rng(seed)
    params = {name: rng.normal(size=shape) for name, shape in sizes}
    coef = {
        name: rng.uniform(0.5, 2.0, size=shape) * (scale or {}).get(name, 1.0)
        for name, shape in sizes
    }

    def loss(p):
        return float(sum(np.sum(coef[k] * np.sin(p[k])) for k in coef))

    def batched(p):
        return sum(np.sum(coef[k] * np.sin(p[k]), axis=tuple(range(1, p[k].ndim))) for k in coef)

    grad = {k: coef[k] * np.cos(params[k]) for k in coef}
    return loss, batched, params, grad


def test_a_correct_gradient_passes_with_the_stated_miss_probability():
    loss, _, params, grad = sines((("W", (30, 40)), ("b", (7,))))
    report = gradproof.check(loss, params, grad, mode="probe")
    assert report.passed and report.mode == "probe"
    assert report.miss_probability == pytest.approx(2.0**-10) and report.miss_probability <= 1e-3
    assert report.extra["rounds"] == 10
    assert "missed with probability ≤ 9.8e-04" in report.coverage
    assert all(b.checked == b.size for b in report.blocks.values())


@pytest.mark.parametrize("samples", [1, 3, 7])
def test_the_miss_bound_halves_with_each_round(samples):
    loss, _, params, grad = sines((("W", (20,)),))
    report = gradproof.check(loss, params, grad, mode="probe", samples=samples)
    assert report.miss_probability == pytest.approx(0.5**samples, rel=1e-12)


def test_bisection_names_one_wrong_element_in_a_large_block_in_o_log_n_evaluations():
    n = 2**14
    loss, _, params, grad = sines((("W", (128, 128)), ("b", (3,))))
    grad["W"][77, 101] *= 1 + 1e-3
    report = gradproof.check(loss, params, grad, mode="probe")
    assert report.blocks["W"].wrong_elements == ((77, 101),)
    assert report.blocks["b"].passed and report.suspects == ("W",)
    element = report.blocks["W"].worst[0]
    assert element.index == (77, 101)
    assert element.numerical == pytest.approx(grad["W"][77, 101] / (1 + 1e-3), rel=RTOL)
    assert element.rel_error == pytest.approx(1e-3, rel=1e-3)
    # 10 rounds for the passing block, a few for the failing one, then ~1.5 probes per
    # halving at 2-4 evaluations each: far below a full check's 2N.
    assert report.evaluations < 20 + 4 * 10 + 4 * 5 + 6 * math.log2(n) + 20
    assert report.evaluations < 2 * n / 50


def test_a_right_half_wrong_by_subtraction_costs_no_evaluation_of_its_own():
    """The wrong element last in its block: every halving's left half passes and its right
    half carries the parent's error, known by subtraction. Each halving then costs the left
    half's central pair alone: 4 more halvings, about 8 more evaluations (16 when each right
    half was probed too)."""
    spent = {}
    for n in (2**10, 2**14):
        loss, _, params, grad = sines((("W", (n,)),))
        grad["W"][n - 1] *= 1 + 1e-3
        report = gradproof.check(loss, params, grad, mode="probe")
        assert report.blocks["W"].wrong_elements == ((n - 1,),)
        spent[n] = report.evaluations
    assert spent[2**14] - spent[2**10] <= 2.5 * 4


def test_two_wrong_elements_are_both_found():
    loss, _, params, grad = sines((("W", (1000,)),))
    grad["W"][[12, 900]] *= [0.99, 1.02]
    report = gradproof.check(loss, params, grad, mode="probe")
    assert set(report.blocks["W"].wrong_elements) == {(12,), (900,)}


def test_a_small_block_is_not_swamped_by_a_large_one():
    # One block of 200k elements with large gradients, one of 2 with small ones: a single
    # direction over everything would bury the small block's bug under the big block's
    # rounding; a probe per block does not.
    loss, _, params, grad = sines((("big", (200_000,)), ("tiny", (2,))), scale={"big": 1e3})
    grad["tiny"][1] *= 1 + 1e-3
    report = gradproof.check(loss, params, grad, mode="probe", samples=4)
    assert report.blocks["tiny"].wrong_elements == ((1,),)
    assert report.blocks["big"].passed


def test_a_block_wrong_everywhere_is_recognised_without_descending():
    loss, _, params, grad = sines((("W", (64, 64)), ("b", (5,))))
    grad["W"] = 2 * grad["W"]
    report = gradproof.check(loss, params, grad, mode="probe")
    block = report.blocks["W"]
    assert block.status == "fail" and block.diagnosis.kind == "scale"
    assert block.scale == pytest.approx(2.0, rel=1e-6)
    assert "W" in report.extra["wrong_throughout"]
    assert 0 < len(block.wrong_elements) <= 32  # examples from a sample, not all 4096
    assert report.evaluations < 400


def test_probes_are_repeatable_with_a_seed_and_differ_across_seeds():
    loss, _, params, grad = sines((("W", (500,)),))
    a = gradproof.check(loss, params, grad, mode="probe", seed=3)
    b = gradproof.check(loss, params, grad, mode="probe", seed=3)
    c = gradproof.check(loss, params, grad, mode="probe", seed=4)
    assert a.difference == b.difference and a.evaluations == b.evaluations
    assert a.difference != c.difference


def test_a_budget_cuts_rounds_and_the_miss_bound_says_so():
    loss, _, params, grad = sines((("W", (100,)), ("b", (4,))))
    report = gradproof.check(loss, params, grad, mode="probe", budget=40)
    assert report.evaluations <= 40
    rounds = report.extra["rounds"]
    assert rounds < 10 and report.miss_probability == pytest.approx(0.5**rounds)
    assert "budget" in report.coverage


@pytest.mark.parametrize(
    ("budget", "status", "named", "unresolved"),
    [
        (21, "inconclusive", (), []),  # the set-up only: no probe at all
        (35, "fail", (), [300]),  # one failing probe, no room to bisect it
        (49, "fail", (), [10]),  # bisection cut short at 10 elements of 300
        (63, "fail", ((123,),), []),
        (77, "fail", ((123,),), []),
        (119, "fail", ((123,),), []),
        (161, "fail", ((123,),), []),
        (203, "fail", ((123,),), []),
        (301, "fail", ((123,),), []),
    ],
)
def test_an_evaluation_budget_holds_and_names_the_planted_element_once_it_can(
    budget, status, named, unresolved
):
    # Failing probes are refined and bisected: all of it must fit the budget, not only the
    # first round of probes, and where the budget allows the bisection, it ends at W[123].
    loss, _, params, grad = sines((("W", (300,)), ("b", (4,))))
    grad["W"][123] *= 1.01
    report = gradproof.check(loss, params, grad, mode="probe", budget=budget)
    assert report.evaluations <= budget
    assert report.status == status
    assert report.blocks["W"].wrong_elements == named
    assert report.extra["unresolved"]["W"] == unresolved
    if status == "fail":
        assert report.suspects == ("W",) and report.blocks["b"].status == "pass"
        kind = "elements" if named else "general"
        assert report.blocks["W"].diagnosis.kind == kind


@pytest.mark.parametrize(
    ("budget", "status", "sampled"),
    [
        (21, "inconclusive", 0),
        (35, "fail", 0),  # probes only: no room left to sample a coordinate
        (49, "fail", 0),
        (77, "fail", 4),
        (119, "fail", 16),
        (161, "fail", 16),
        (203, "fail", 32),  # SAMPLED, the most a block wrong throughout gets
        (301, "fail", 32),
    ],
)
def test_an_evaluation_budget_holds_when_the_block_is_wrong_everywhere(budget, status, sampled):
    # A block wrong everywhere is sampled, as many coordinates as the budget leaves room for:
    # each sampled coordinate is wrong, and the diagnosis is the factor once there is a sample.
    loss, _, params, grad = sines((("W", (300,)), ("b", (4,))))
    grad["W"] = 2 * grad["W"]
    report = gradproof.check(loss, params, grad, mode="probe", budget=budget)
    assert report.evaluations <= budget
    assert report.status == status
    block = report.blocks["W"]
    assert len(block.wrong_elements) == sampled
    if status == "fail":
        assert report.suspects == ("W",) and report.blocks["b"].status == "pass"
        assert block.diagnosis.kind == ("scale" if sampled else "general")


@pytest.mark.parametrize("budget", [20, 1e-9])
def test_a_budget_that_allows_no_probe_is_inconclusive_and_says_nothing_was_checked(budget):
    loss, _, params, grad = sines((("W", (1000,)),))
    grad["W"] = 3 * grad["W"]  # wrong everywhere: a pass here would be a false verdict
    report = gradproof.check(loss, params, grad, mode="probe", budget=budget)
    assert report.status == "inconclusive"
    assert report.blocks["W"].checked == 0
    assert report.coverage.startswith("nothing")
    assert report.miss_probability == 1.0


def test_a_block_with_zero_gradient_is_measured_against_the_whole_gradient():
    loss, _, params, grad = sines((("W", (50,)),))
    params["z"] = np.ones(4)

    def with_z(p):  # z does not enter the loss: its gradient is exactly zero
        return loss({"W": p["W"]}) + 0.0 * float(np.sum(p["z"]))

    grad["z"] = np.zeros(4)
    report = gradproof.check(with_z, params, grad, mode="probe")
    assert report.passed
    relative = report.extra["detectable_relative"]
    # From the error model: z does not enter the loss, so every probe of z sees J(θ) alone;
    # the central pair's error bound is 2δ / 2h with δ = eps·|J| (one value's roundoff) and
    # h = eps^(1/3) the default step, and a probe's tolerance is SAFETY = 4 times that. The
    # block's own gradient is zero, so the size is relative to the whole gradient's largest.
    eps = np.finfo(float).eps
    tolerance = 4 * (2 * eps * abs(with_z(params))) / (2 * eps ** (1 / 3))
    derived = tolerance / max(float(np.max(np.abs(g))) for g in grad.values())
    assert derived / 3 <= relative["z"] <= 3 * derived  # a 30x finer claim fails
    assert f"{max(relative.values()):.1e}" in report.coverage


def test_a_batched_loss_probes_the_same():
    loss, batched, params, grad = sines((("W", (300,)), ("b", (4,))))
    grad["W"][123] *= 1.01
    report = gradproof.check(batched, params, grad, mode="probe", batched=True)
    assert report.blocks["W"].wrong_elements == ((123,),)


def test_probe_on_the_notebooks_network_names_the_planted_blocks():
    from gradproof.examples import fraud

    loss, params, grads = fraud.problem(bugs=True)
    report = gradproof.check(loss, params, grads, mode="probe")
    assert set(report.suspects) == {"W2", "b1"}
    assert report.blocks["W2"].scale == pytest.approx(2.0, rel=1e-4)
    assert report.blocks["b1"].scale == pytest.approx(4.0, rel=1e-4)


@pytest.mark.parametrize("mode", ["probe", "sample"])
def test_the_extra_facts_are_json_ready(mode):
    import json

    loss, _, params, grad = sines((("W", (200,)), ("b", (3,))))
    grad["W"][5] *= 1.01
    report = gradproof.check(loss, params, grad, mode=mode, samples=200, budget=500)
    data = json.loads(report.to_json())
    assert data["mode"] == mode and data["extra"]["budget"] == "500 loss evaluations"
    assert data["blocks"]["W"]["wrong_elements"] == [[5]]


def _judged(numerical, tolerance, wrong=True, kink=False, unclear=False):
    return Judged(
        numerical=np.array([numerical]),
        tolerance=np.array([tolerance]),
        wrong=np.array([wrong]),
        kink=np.array([kink]),
        unclear=np.array([unclear]),
    )


def test_a_bisected_part_carrying_its_parents_whole_error_skips_richardsons_points():
    """Its central verdict stands where its error is the parent's (judged on Richardson's
    points) and far beyond its own tolerance; anything else is refined as before."""
    parent = (0.5, 1e-3)  # the parent's error and tolerance
    assert _carries(_judged(1.5, 1e-3), 2.0, parent, size=8)  # error 0.5: the parent's
    assert not _carries(_judged(1.5, 1e-3), 2.0, None, size=8)  # a first probe
    assert not _carries(_judged(1.5, 1e-3), 2.0, parent, size=1)  # an element: reported
    assert not _carries(_judged(1.8, 1e-3), 2.0, parent, size=8)  # part of the error only
    assert not _carries(_judged(1.5, 0.2), 2.0, parent, size=8)  # not far beyond its own
    assert not _carries(_judged(1.5, 1e-3, kink=True), 2.0, parent, size=8)
    assert not _carries(_judged(1.5, 1e-3, unclear=True), 2.0, parent, size=8)
    assert not _carries(_judged(1.5, 1e-3, wrong=False), 2.0, parent, size=8)


def test_bisection_costs_a_central_pair_per_level_and_names_the_element():
    """A single wrong element in 2^12 coordinates: each bisection level spends about the
    central pair (the parent's error found whole in one half), not Richardson's four
    points: the failing check costs at most two evaluations a level more than a passing
    one (which spends ten rounds of probes that the failing one does not)."""
    loss, _, params, grad = sines((("W", (4096,)),))
    true = grad["W"][1234]
    passing = gradproof.check(loss, params, grad, mode="probe", seed=1)
    grad["W"][1234] *= 1.001
    report = gradproof.check(loss, params, grad, mode="probe", seed=1)
    assert passing.passed and report.blocks["W"].wrong_elements == ((1234,),)
    levels = 12
    assert report.evaluations - passing.evaluations <= 2 * levels + 8
    element = report.blocks["W"].worst[0]
    assert element.index == (1234,) and element.numerical == pytest.approx(true, rel=1e-8)
