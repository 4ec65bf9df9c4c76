"""Scenarios that the mutation audit (scripts/mutation_audit.py, docs/mutation.md) showed untested.

Each test is a user's check with an exact expected outcome; its docstring names the
user-visible failure it pins and, in brackets, the audit's mutant that it kills. The
losses are closed-form, so every "correct" gradient here is exact.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
from gradproof._engine.schemes import default_step

# The default step of the Richardson scheme at |θ| <= 1 in float64 (about 6e-6): the
# scenarios with a kink place it at a known fraction of the step.
STEP = default_step("richardson", float(np.finfo(np.float64).eps))
# The same in float32: the step a loss that computes in float32 gets.
STEP32 = default_step("richardson", float(np.finfo(np.float32).eps))


def sines(n: int, seed: int = 5) -> tuple:
    """J = sum(c * sin(θ)) over one block of ``n``, its parameters and exact gradient."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    coef = rng.uniform(0.5, 2.0, size=n)
    return (lambda p: float(np.sum(coef * np.sin(p)))), theta, coef * np.cos(theta)


# ------------------------------------------------------------ the error model (judge)


def test_a_bug_in_a_loss_oscillating_on_the_steps_scale_is_found_at_smaller_steps():
    """A 10% bug where sin(2e5·θ) turns within a step: at the default step the estimate's
    error bound is too wide to clear or blame; at steps small enough for the oscillation
    every element is wrong by the factor, and the check says so. [J2: SAFETY halved]"""
    x = np.linspace(-1.0, 1.0, 20)
    report = gradproof.check(
        lambda p: float(np.sum(np.sin(2e5 * p))) / 2e5, x, 1.1 * np.cos(2e5 * x)
    )
    block = report.blocks["params"]
    assert report.status == "fail" and len(block.wrong_elements) == 20
    assert block.diagnosis.kind == "scale" and abs(block.scale - 1.1) < 1e-6
    assert report.extra["central_first"]["smaller_steps"] == 20


def test_a_correct_gradient_of_a_fast_oscillation_passes():
    """sin(1e4·θ): Richardson's estimate carries a truncation error the error bound must
    include, or every element of a correct gradient fails. [S2: truncation term dropped]"""
    x = np.linspace(-1.0, 1.0, 20)
    report = gradproof.check(lambda p: float(np.sum(np.sin(1e4 * p))) / 1e4, x, np.cos(1e4 * x))
    assert report.status == "pass"


def test_a_complex_step_check_clears_elements_that_are_zero_up_to_rounding():
    """The gradient of sum(softmax(z)) is 0 mathematically; backprop leaves ~1e-17. Beside
    a gradient of 3, that is not a bug. [J5: the absolute floor of the tolerance dropped]"""
    z = np.array([0.3, -1.2, 2.0])
    e = np.exp(z)
    s = e / e.sum()
    gz = s * (1 - s.sum())
    assert np.any(gz != 0)  # the rounding the check must allow

    def loss(p):
        e = np.exp(p["z"])
        return np.sum(e / np.sum(e)) + 3.0 * p["w"]

    report = gradproof.check(loss, {"z": z, "w": 1.0}, {"z": gz, "w": 3.0}, scheme="complex")
    assert report.status == "pass"


def test_a_numerical_derivative_that_overflows_never_passes():
    """1e308·tanh(1e7·θ) at 0: the finite differences overflow to inf and NaN. A gradient
    of 1.0 (the truth overflows) must not pass as 'within an infinite tolerance'.
    [J9: non-finite estimates or tolerances count as within tolerance]"""
    theta = np.array([0.0, 2.0])
    with np.errstate(over="ignore", invalid="ignore"):
        report = gradproof.check(
            lambda p: 1e308 * float(np.tanh(1e7 * p[0])) + float(p[1]), theta, np.ones(2)
        )
    block = report.blocks["params"]
    assert report.status == "fail" and block.wrong_elements == ((0,),)
    assert block.diagnosis.kind == "general"
    assert "the numerical derivative is not finite at 1 of 2 elements" in block.diagnosis.sentence


@pytest.mark.parametrize(("slope", "status"), [(2.0, "fail"), (0.0, "pass")])
def test_a_relu_just_off_is_judged_on_the_side_that_stays_clear_of_its_kink(slope, status):
    """The kink sits 0.6 steps above θ, where the ReLU is still off: its true slope is 0.
    A backprop that takes the ReLU as on (slope 2) must fail, not be excused by the
    one-sided difference that crosses the kink (its own error is ~40% of its size).
    The correct 0 passes, near a kink. [J11: uninformative sides excuse a bug]"""
    kink = 0.5 + 0.6 * STEP
    report = gradproof.check(
        lambda p: 2.0 * max(0.0, p[0] - kink) + float(np.sin(p[1])),
        np.array([0.5, 0.25]),
        np.array([slope, np.cos(0.25)]),
    )
    block = report.blocks["params"]
    assert report.status == status
    assert block.wrong_elements == (((0,),) if status == "fail" else ())
    assert block.kinks == ()  # judged beside the kink, at a step that stays clear of it


@pytest.mark.parametrize("offset", [-0.05, 0.05])
def test_a_relu_kink_beside_a_steep_exponential_passes(offset):
    """A kink 0.05 steps from θ beside exp(3000·θ): the side clear of the kink must be
    extrapolated to O(h²), or its O(h) curvature error hides the match with the correct
    gradient and the kink reads as a bug. [S1: one-sided estimate 2·e2 - e1 replaced by e2]"""
    theta = 0.3
    kink = theta + offset * STEP

    def loss(p):
        return float(max(0.0, p[0] - kink) + np.exp(3000.0 * (p[0] - theta)) / 3000.0)

    report = gradproof.check(loss, np.array([theta]), np.array([1.0 + (theta > kink)]))
    assert report.status == "pass"  # at a kink, or judged beside it at a smaller step
    assert (
        report.blocks["params"].kinks == ((0,),) or report.extra["central_first"]["smaller_steps"]
    )


def _relu_squared_layer() -> tuple:
    """A float32 layer, J = sum(relu(A·θ)²) computed in float32, and its exact gradient."""
    rng = np.random.default_rng(135)
    rng.integers(2)  # the draws of the fuzz scenario this layer comes from
    A = rng.normal(size=(8, 6))
    theta = rng.normal(size=6) * 0.5
    rng.integers(2)

    def loss(p):
        z = A.astype(np.float32) @ np.asarray(p, np.float32)
        return float(np.sum(np.maximum(z, 0) ** 2))

    return loss, theta, A.T @ (2 * np.maximum(A @ theta, 0))


def test_a_ten_percent_bug_in_a_float32_layer_is_named_not_excused_as_a_kink():
    """float32 noise in the one-sided differences is no evidence of a kink: a 10% bug in
    element 5 must fail there. [J13: the kink evidence floor without its roundoff term]"""
    loss, theta, grad = _relu_squared_layer()
    assert gradproof.check(loss, theta, grad).status == "pass"
    wrong = grad.copy()
    wrong[5] *= 1.1
    report = gradproof.check(loss, theta, wrong)
    assert report.status == "fail"
    assert report.blocks["params"].wrong_elements == ((5,),)
    assert report.blocks["params"].kinks == ()


def test_an_unresolvable_kink_in_a_float32_loss_is_inconclusive_with_its_reason():
    """A kink 0.45 float32 steps from θ₀, whose slope (0.25) float32's noise at J ~ 1000
    blurs: both one-sided differences are too uncertain to clear or blame element 0.
    [B3: such elements pass silently]"""
    theta = np.array([-0.96, 0.4, -0.7, 1.1, 0.3])
    slopes = np.array([0.25, 30.0, 30.0, 1.0, 3.0])
    kink = np.float32(theta[0] + 0.45 * STEP32)

    def loss(p):
        x = np.asarray(p, np.float32)
        relu = np.maximum(np.float32(0), x[0] - kink)
        return float(np.float32(1000) + np.sum(slopes.astype(np.float32) * x) - 0.65 * relu)

    report = gradproof.check(loss, theta, slopes)
    block = report.blocks["params"]
    assert report.status == "inconclusive"
    assert block.reason.startswith(
        "1 element(s) sit near a kink that the loss's precision cannot resolve"
    )


# ------------------------------------------------------------ precision and steps


@pytest.mark.parametrize("scale", [1.0, 1e301])
def test_a_bug_of_3e_8_is_caught_whatever_the_units_of_the_loss(scale):
    """sum(sin(θ)) + 1 over 100 coordinates: the sum's rounding, measured from the
    noise table, sets the tolerance. Measured right, one element off by 3e-8 fails, in
    the loss's units or 1e301 times them (where the table is differenced by numpy).
    [P5, P6: the noise table's variance amplification comb(2k, k) dropped]"""
    theta = np.linspace(-1.0, 1.0, 100)
    wrong = scale * np.cos(theta)
    wrong[17] *= 1 + 3e-8
    report = gradproof.check(lambda p: scale * (float(np.sum(np.sin(p))) + 1.0), theta, wrong)
    assert report.status == "fail" and report.blocks["params"].wrong_elements == ((17,),)


def test_a_float32_loss_averaged_in_float64_is_measured_as_float32():
    """A float32 forward whose sum is divided by 15 in float64 returns values off float32's
    grid; its noise still says float32. Judged as float64, the correct gradient would be
    'inconclusive' and a 0.1% bug would hide. [P3: float32 noise counted as float64's]"""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(16, 64)).astype(np.float32)
    W = rng.normal(size=(64, 8)) / 8
    dout = rng.normal(size=(16, 8)).astype(np.float32)

    def loss(p):
        return float(np.sum(np.tanh(X @ p.astype(np.float32)) * dout)) / 15

    t = np.tanh(X.astype(float) @ W)
    grad = X.astype(float).T @ ((1 - t * t) * dout) / 15
    report = gradproof.check(loss, W, grad)
    assert report.status == "pass" and report.precision.startswith("float32 (measured")
    assert gradproof.check(loss, W, 1.001 * grad).status == "fail"


def _linear_float32() -> tuple:
    """J = a·(θ - θ₀) computed in float32 at float32 θ₀: exactly linear in the steps."""
    rng = np.random.default_rng(0)
    x = (rng.uniform(1.0, 1.9, 20) * rng.choice([1, 2, 4], 20)).astype(np.float32)
    a = rng.uniform(0.5, 2.0, 20).astype(np.float32)
    return (lambda p: float(np.sum(a * (np.asarray(p, np.float32) - x)))), x, a.astype(float)


def test_float32_steps_are_representable_so_the_notebooks_threshold_holds():
    """Steps the loss can represent make a linear float32 loss's estimate exact to its
    rounding, so the notebook's tol=2e-7 passes; with steps the loss rounds, the
    difference is ~2.5e-6 and a correct gradient fails. [X1: representable steps removed]"""
    loss, x, grad = _linear_float32()
    report = gradproof.check(loss, x, grad, tol=2e-7)
    assert report.status == "pass" and report.difference < 1e-7


def test_a_bug_of_1e_4_in_a_float32_linear_loss_fails_where_it_is():
    """The noise of a float32 loss is measured with steps it represents: otherwise its own
    rounding of θ + step reads as noise, the tolerance widens 25-fold and a bug of 1e-4
    passes. [P4: noise-table steps not representable]"""
    loss, x, grad = _linear_float32()
    wrong = grad.copy()
    wrong[3] *= 1 + 1e-4
    report = gradproof.check(loss, x, wrong)
    assert report.status == "fail" and report.blocks["params"].wrong_elements == ((3,),)


def test_a_float32_backward_cast_to_float64_is_allowed_its_rounding():
    """float32 parameters, an exact float64 loss, a backward computed in float32 and
    returned as float64: its rounding comes from the parameters' dtype, not a bug.
    [C2: the gradient's precision ignores the parameters' and the loss's]"""
    rng = np.random.default_rng(0)
    A = rng.normal(size=(30, 20))
    w = rng.normal(size=20).astype(np.float32)
    t = np.tanh(A.astype(np.float32) @ w)
    grad = (A.astype(np.float32).T @ (1 - t * t)).astype(np.float64)
    report = gradproof.check(lambda p: float(np.sum(np.tanh(A @ np.asarray(p, float)))), w, grad)
    assert report.status == "pass"


def test_a_gradient_with_a_float32_block_and_a_float64_block_is_judged_at_float32():
    """The least precise block sets the rounding allowed: a float32 dW beside a float64
    db is correct. [G2: max replaced by min in the gradient's precision]"""
    rng = np.random.default_rng(2)
    params = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    coef = rng.uniform(0.5, 2.0, size=(3, 4))

    def loss(p):
        return float(np.sum(coef * np.sin(p["W"])) + np.sum(p["b"] ** 2))

    grads = {"W": (coef * np.cos(params["W"])).astype(np.float32), "b": 2 * params["b"]}
    assert gradproof.check(loss, params, grads).status == "pass"


# ------------------------------------------------------------ what the check accepts


def test_a_shape_1_gradient_for_a_scalar_parameter_is_accepted():
    """A backprop returning np.array([6.0]) for a Python-float parameter is not misuse.
    [G1: a (1,) gradient for a scalar parameter refused]"""
    report = gradproof.check(
        lambda p: p["a"] ** 2 + 3 * float(np.sum(p["w"])),
        {"a": 3.0, "w": np.ones(2)},
        {"a": np.array([6.0]), "w": np.full(2, 3.0)},
    )
    assert report.status == "pass"


def test_a_backprop_that_steps_its_arguments_leaves_the_callers_parameters_alone():
    """grad(params) that applies an optimiser step in place gets its own copy: the
    caller's arrays are unchanged and the check is of the original point.
    [G3: the gradient function given the caller's parameters]"""
    params = {"w": np.array([0.5, -1.0, 2.0])}

    def backprop(p):
        g = {"w": 2 * p["w"]}
        p["w"] -= 0.1 * g["w"]
        return g

    report = gradproof.check(lambda p: float(np.sum(p["w"] ** 2)), params, backprop)
    assert report.status == "pass"
    assert params["w"].tolist() == [0.5, -1.0, 2.0]


def test_a_nan_in_the_gradient_is_refused_with_where_it_is():
    """[G4: a NaN gradient is judged as a failing block instead]"""
    with pytest.raises(gradproof.InvalidArgument, match=r"`grad`='params\[1\] = nan'"):
        gradproof.check(lambda p: float(np.sum(p**2)), np.ones(3), np.array([2.0, np.nan, 2.0]))


@pytest.mark.parametrize("everywhere", [True, False], ids=["everywhere", "at-shifted-points"])
def test_a_loss_that_writes_into_its_parameters_is_named(everywhere):
    """Everywhere, or only at shifted points: the base point is read-only of itself, and
    the shifted points are built in a buffer of the check's own, which the loss must not
    be able to write either. [T2: the views given to the loss writable: the base point
    drifts and the error blames nondeterminism instead]"""

    def loss(p):
        if everywhere or p[0] != 1.0:
            p *= 2
        return float(np.sum(p**2))

    x = np.ones(3)
    with pytest.raises(gradproof.InvalidArgument, match="wrote into the parameters it was given"):
        gradproof.check(loss, x, (8 if everywhere else 2) * x)
    assert x.tolist() == [1.0, 1.0, 1.0]


def test_a_loss_that_returns_nan_at_every_step_is_named_with_the_step():
    """A loss finite only within 1e-6 of θ₀: eps=1e4, even shrunk 16⁸ times (see
    edges.py), steps out; the check says where and that a smaller eps helps.
    [E3: a non-finite loss value judged as a failing element]"""

    def loss(p):
        return float(np.sum(p**2)) if abs(p[0] - 1.0) < 1e-6 else float("nan")

    with pytest.raises(gradproof.InvalidArgument) as info:
        gradproof.check(loss, np.array([1.0, 2.0]), np.array([2.0, 4.0]), eps=1e4)
    message = str(info.value)
    assert "returned a non-finite value at params[0] shifted by" in message
    assert "choose a smaller step `eps`" in message


def test_the_complex_step_on_a_loss_that_drops_the_imaginary_part_is_misuse():
    """|z|² of a complex z is real: every complex-step derivative would read 0 and a
    correct gradient would fail as 'regularization missing'.
    [E4: real values accepted from scheme='complex']"""
    with pytest.raises(gradproof.InvalidArgument, match="keeps the imaginary part"):
        gradproof.check(
            lambda z: float(np.sum(np.abs(z) ** 2)),
            np.array([1.0, 2.0]),
            np.array([2.0, 4.0]),
            scheme="complex",
        )


def test_a_batched_check_over_several_chunks_passes_a_correct_gradient():
    """600 coordinates, 1200 points: more than one chunk of rows, each of which must
    start again from θ. [E2: batched rows not restored between chunks]"""
    x = np.linspace(-1.0, 1.0, 600)
    report = gradproof.check(lambda p: np.sum(np.sin(p), axis=1), x, np.cos(x), batched=True)
    assert report.status == "pass"


def test_a_drift_of_1e_12_between_identical_calls_is_nondeterminism():
    """A loss that grows by one part in 1e12 per call (a counter, an accumulating cache)
    is named before any gradient is blamed. [N4: repeated values allowed 1e6 ulps apart]"""
    calls = []

    def loss(p):
        calls.append(1)
        return float(np.sum(p**2)) * (1 + 1e-12 * len(calls))

    with pytest.raises(gradproof.NondeterministicLossError, match="different values"):
        gradproof.check(loss, np.ones(3), lambda p: 2 * p)


def test_a_one_off_glitch_during_the_differences_is_not_a_kink():
    """One loss value 1e-3 off, once, while the central pairs are taken: the one-sided
    differences then disagree like a kink's. Evaluated again, the point moves, so it is
    named as nondeterminism, not excused. [K1: the kink re-evaluation removed]"""
    calls = {"n": 0}

    def loss(p):
        calls["n"] += 1
        return float(np.sum(np.sin(p))) + (1e-3 if calls["n"] == 25 else 0.0)

    with pytest.raises(gradproof.NondeterministicLossError, match="what looked like a kink"):
        gradproof.check(loss, np.linspace(0.1, 1.0, 10), np.cos)


def test_an_evaluation_budget_holds_when_every_coordinate_needs_refining():
    """A wrong block: every coordinate gets Richardson's two extra points, and the
    budget must have left room for them. [K5: room counted at 2 evaluations, not 4]"""
    loss, theta, grad = sines(500)
    report = gradproof.check(loss, theta, 1.5 * grad, budget=300)
    assert report.evaluations <= 300
    assert report.status == "fail" and report.blocks["params"].diagnosis.kind == "scale"


# ------------------------------------------------------------ diagnosis


def test_a_gradient_a_thousand_times_too_small_is_a_factor_not_zero():
    """[D4: 'zero' claimed for a gradient up to 1% of the truth]"""
    theta = np.array([0.3, -1.2, 2.0, 0.7])
    report = gradproof.check(lambda p: float(np.sum(np.sin(p))), theta, np.cos(theta) / 1000)
    diagnosis = report.blocks["params"].diagnosis
    assert diagnosis.kind == "scale"
    assert diagnosis.sentence.startswith("params: the gradient is 0.001× the numerical derivative")


def test_a_factor_of_2_4_gets_no_batch_size_hint():
    """2.4 is no whole number: no 'missing 1/m' hint. [D7: the hint's window widened]"""
    theta = np.array([0.3, -1.2, 2.0, 0.7])
    report = gradproof.check(lambda p: float(np.sum(np.sin(p))), theta, 2.4 * np.cos(theta))
    assert report.blocks["params"].diagnosis.sentence == (
        "params: the gradient is 2.40× the numerical derivative — a constant factor, look "
        "for a stray multiplier"
    )


# ------------------------------------------------------------ mode="probe"


def test_probe_mode_names_three_wrong_elements():
    """Three wrong elements in a block of 1000 are bisected to, not called 'wrong
    throughout'. [R2: WIDE = 2]"""
    loss, theta, grad = sines(1000)
    grad[[100, 400, 800]] *= [1.01, 0.98, 1.03]
    report = gradproof.check(loss, theta, grad, mode="probe")
    block = report.blocks["params"]
    assert block.wrong_elements == ((100,), (400,), (800,))
    assert block.diagnosis.kind == "elements"


def test_probe_mode_refines_a_probe_that_looks_like_a_kink_and_finds_the_bug():
    """exp(300·θ₁) curves enough within a step that the central pair looks like a kink
    and clears a 0.1% bug on one side of it; Richardson's points show the bug.
    [R5: a probe that looks like a kink judged on the central pair alone]"""
    theta = np.array([-0.3, -0.08, 0.87])

    def loss(p):
        return float(0.6 * p[0] + np.exp(300 * (p[1] - theta[1])) / 300 - 0.9 * p[2] + np.sin(p[2]))

    grad = np.array([0.6, 1.0 * 1.001, -0.9 + np.cos(theta[2])])
    report = gradproof.check(loss, theta, grad, mode="probe")
    assert report.status == "fail" and report.blocks["params"].wrong_elements == ((1,),)


def test_probe_mode_with_noise_far_above_the_signal_is_inconclusive():
    """[V3: probes too noisy to judge pass]"""
    report = gradproof.check(
        lambda p: float(np.sum(p**2)),
        np.array([0.5, -1.0, 2.0]),
        lambda p: 2 * p,
        noise=1e-3,
        mode="probe",
    )
    assert report.status == "inconclusive"
    assert report.blocks["params"].reason.startswith("the directional derivatives are too noisy")


def test_a_block_the_probes_found_wrong_fails_even_when_its_sample_misses_the_bug():
    """40 wrong elements scattered over 10000: too many disjoint parts to bisect, so the
    block is sampled (32 coordinates), and the sample misses them. The probes saw the
    bug: the block fails. [V5: it passes when the sample misses]"""
    loss, theta, grad = sines(10000)
    spots = np.random.default_rng(0).choice(10000, 40, replace=False)
    grad[spots] *= 1.5
    report = gradproof.check(loss, theta, grad, mode="probe")
    assert report.status == "fail" and report.suspects == ("params",)
    assert report.blocks["params"].wrong_elements == ()
    assert report.blocks["params"].diagnosis.kind == "general"


@pytest.mark.parametrize("seed", range(6))
def test_probe_mode_shows_a_found_elements_numerical_derivative_with_its_sign(seed):
    """A wrong element found by bisection is shown with the numerical derivative along its
    own coordinate, whatever sign its probe drew for it (six seeds: both signs occur).
    [V4: the probe's sign left out of the element's numerical value]"""
    rng = np.random.default_rng(5)
    a = rng.normal(size=2000)
    theta = rng.normal(size=2000)
    grad = 2 * a * theta  # J = sum(a * theta^2)
    planted = grad.copy()
    planted[1234] *= 1.5
    report = gradproof.check(
        lambda p: float(np.sum(a * p**2)), theta, planted, mode="probe", seed=seed
    )
    (element,) = [e for e in report.blocks["params"].worst if e.index == (1234,)]
    assert element.numerical == pytest.approx(grad[1234], rel=1e-4)
