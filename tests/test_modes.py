"""Modes ``full`` and ``sample``, budgets, and argument checks for the issue-4 options.

Oracles are closed-form derivatives: J = sum(c * sin(theta)) has dJ/dtheta = c * cos(theta).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
from gradproof._engine.budget import Budget
from gradproof._engine.precision import POINTS

SETUP = 3 + 2 * POINTS + 1  # base value thrice, the noise table, the closing determinism check
RTOL = 1e-6  # relative tolerance on numerical derivatives of the smooth losses below


def sines(sizes=(("a", (40,)), ("b", (6, 5)), ("c", ()))):
    rng = np.random.default_rng(3)
    params = {name: rng.normal(size=shape) for name, shape in sizes}
    coef = {name: rng.uniform(0.5, 2.0, size=shape) for name, shape in sizes}

    def loss(p):
        return float(sum(np.sum(coef[k] * np.sin(p[k])) for k in coef))

    grad = {k: coef[k] * np.cos(params[k]) for k in coef}
    return loss, params, grad


def test_full_default_costs_two_evaluations_per_coordinate_on_a_smooth_loss():
    loss, params, grad = sines()
    report = gradproof.check(loss, params, grad)
    n = 40 + 30 + 1
    assert report.passed and report.mode == "full"
    assert report.evaluations == 2 * n + SETUP
    assert report.extra["central_first"] == {"coordinates": n, "refined": 0, "smaller_steps": 0}
    assert report.coverage == f"every coordinate: {n} of {n}"
    assert report.miss_probability is None


def test_explicit_richardson_costs_four():
    loss, params, grad = sines()
    report = gradproof.check(loss, params, grad, scheme="richardson")
    assert report.evaluations == 4 * 71 + SETUP and report.passed


def test_central_first_refines_and_names_a_wrong_element():
    loss, params, grad = sines()
    grad["b"][2, 3] *= 1 + 1e-4
    report = gradproof.check(loss, params, grad)
    assert report.blocks["b"].wrong_elements == ((2, 3),)
    assert report.suspects == ("b",)
    assert report.extra["central_first"]["refined"] >= 1
    worst = report.blocks["b"].worst[0]
    assert worst.numerical == pytest.approx(grad["b"][2, 3] / (1 + 1e-4), rel=RTOL)


def test_sample_mode_is_stratified_seeded_and_repeatable():
    loss, params, grad = sines()
    first = gradproof.check(loss, params, grad, mode="sample", samples=7, seed=4)
    again = gradproof.check(loss, params, grad, mode="sample", samples=7, seed=4)
    assert {b.name: b.checked for b in first.blocks.values()} == {"a": 7, "b": 7, "c": 1}
    assert first.to_dict()["blocks"] == again.to_dict()["blocks"]
    assert first.evaluations == again.evaluations == 2 * 15 + SETUP
    # One wrong element in a block of 40 escapes 7 samples with probability 33/40.
    assert first.miss_probability == pytest.approx(1 - 7 / 40, rel=1e-12)
    assert "not covered: 56 coordinates" in first.coverage


def test_sample_mode_finds_a_wrong_element_it_samples_and_seeds_change_the_sample():
    loss, params, grad = sines()
    grad["a"][:] *= 1.5  # every element wrong: any sample sees it
    report = gradproof.check(loss, params, grad, mode="sample", samples=5, seed=1)
    assert report.status == "fail" and len(report.blocks["a"].wrong_elements) == 5
    other = gradproof.check(loss, params, grad, mode="sample", samples=5, seed=2)
    assert set(report.blocks["a"].wrong_elements) != set(other.blocks["a"].wrong_elements)
    assert report.blocks["a"].diagnosis.kind == "scale"


def test_sample_mode_with_samples_covering_every_block_is_a_full_check():
    loss, params, grad = sines()
    report = gradproof.check(loss, params, grad, mode="sample", samples=1000)
    assert report.coverage == "every coordinate: 71 of 71" and report.miss_probability is None


def test_an_evaluation_budget_is_never_exceeded_and_the_report_says_what_was_left():
    loss, params, grad = sines((("big", (500,)), ("small", (3,))))
    report = gradproof.check(loss, params, grad, budget=300)
    assert report.evaluations <= 300
    checked = report.blocks["big"].checked + report.blocks["small"].checked
    assert 0 < checked < 503
    assert report.blocks["small"].checked == 3  # stratified: the small block is not starved
    assert "budget (300 loss evaluations) ran out" in report.coverage
    assert f"not covered: {503 - checked} coordinates" in report.coverage
    assert report.extra["budget"] == "300 loss evaluations"
    assert report.miss_probability == pytest.approx(1 - report.blocks["big"].checked / 500)


def test_a_string_budget_from_the_command_line_counts_evaluations():
    loss, params, grad = sines()
    assert gradproof.check(loss, params, grad, budget="100").evaluations <= 100


def test_a_seconds_budget_stops_a_slow_check():
    loss, params, grad = sines((("big", (4000,)),))
    report = gradproof.check(loss, params, grad, budget=0.05)
    assert report.blocks["big"].checked < 4000 and "ran out" in report.coverage


@pytest.mark.parametrize(
    ("text", "seconds", "evaluations"),
    [
        ("30s", 30.0, None),
        ("2min", 120.0, None),
        ("0.5h", 1800.0, None),
        ("5000", None, 5000),
        (2.5, 2.5, None),
        (12, None, 12),
        (" 7 s ", 7.0, None),
    ],
)
def test_budget_parsing(text, seconds, evaluations):
    budget = Budget.parse(text)
    assert (budget.seconds, budget.evaluations) == (seconds, evaluations)


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"mode": "fast"}, "`mode`"),
        ({"mode": None}, "`mode`"),
        ({"mode": "sample", "samples": 0}, "`samples`"),
        ({"mode": "probe", "samples": 2.5}, "`samples`"),
        ({"mode": "sample", "samples": True}, "`samples`"),
        ({"samples": 10}, "`samples`"),  # with mode="full"
        ({"seed": -1}, "`seed`"),
        ({"seed": 1.5}, "`seed`"),
        ({"budget": 0}, "`budget`"),
        ({"budget": -3.0}, "`budget`"),
        ({"budget": float("nan")}, "`budget`"),
        ({"budget": "abc"}, "`budget`"),
        ({"budget": "1.5"}, "`budget`"),
        ({"budget": "10 parsecs"}, "`budget`"),
        ({"budget": True}, "`budget`"),
        ({"budget": [5]}, "`budget`"),
        ({"workers": 0}, "`workers`"),
        ({"workers": 1.5}, "`workers`"),
        ({"workers": True}, "`workers`"),
        ({"executor": object()}, "`executor`"),
        ({"progress": "yes"}, "`progress`"),
        ({"mode": "probe", "scheme": "complex"}, "`scheme`"),
    ],
)
def test_bad_options_name_argument_value_rule_and_fix(options, argument):
    loss, params, grad = sines()
    calls = []
    with pytest.raises(gradproof.InvalidArgument) as info:
        gradproof.check(lambda p: calls.append(1) or loss(p), params, grad, **options)
    message = str(info.value)
    assert message.startswith(argument) and "Fix: " in message
    assert calls == []  # rejected before the loss was ever called


def test_workers_and_executor_together_are_refused():
    from concurrent.futures import ThreadPoolExecutor

    loss, params, grad = sines()
    with ThreadPoolExecutor(1) as pool, pytest.raises(gradproof.InvalidArgument, match="`workers`"):
        gradproof.check(loss, params, grad, workers=2, executor=pool)


@pytest.mark.parametrize(
    "options", [{}, {"mode": "sample"}, {"mode": "probe"}, {"batched": True}, {"budget": 60}]
)
def test_the_callers_arrays_survive_a_loss_that_raises_midway(options):
    loss, params, grad = sines((("w", (50,)),))
    before = {k: v.copy() for k, v in params.items()}
    calls = [0]
    # past the set-up, into the check itself (a batched set-up is two calls: the base point,
    # then the noise table with the base point's repeats)
    limit = 2 if options.get("batched") else 25

    def failing(p):
        calls[0] += 1
        if calls[0] > limit:
            raise RuntimeError("boom")
        if options.get("batched"):
            return np.array([loss({"w": row}) for row in p["w"]])
        return loss(p)

    with pytest.raises(RuntimeError, match="boom"):
        gradproof.check(failing, params, grad, **options)
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
