"""Verdicts you can trust: schemes, error model, kinks, noise, precision, sensitivity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gradproof
from gradproof.examples import fraud
from models import relu_net, tanh_net


def exp_sum(x):
    return float(np.sum(np.exp(x)))


# ------------------------------------------------------------------ 1. schemes


@pytest.mark.parametrize(("scheme", "order"), [("central", 2), ("richardson", 4)])
def test_scheme_error_shrinks_with_its_documented_order(scheme, order):
    x = np.array([0.3, -0.7, 1.1])
    errors = []
    for h in (4e-2, 2e-2):
        report = gradproof.check(exp_sum, x, np.exp, eps=h, scheme=scheme)
        errors.append(report.blocks["params"].max_abs_error)
    # Halving h divides the truncation error by 2**order (within 15%).
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.15)


def test_complex_step_is_exact_to_roundoff():
    x = np.array([0.3, -0.7, 1.1])
    report = gradproof.check(lambda z: np.sum(np.exp(z)), x, np.exp, scheme="complex")
    assert report.passed and report.scheme == "complex"
    assert report.blocks["params"].max_abs_error <= 4 * np.finfo(float).eps * np.exp(1.1)
    assert report.evaluations < 3 * x.size + 30  # one evaluation per coordinate plus set-up


def test_complex_step_on_a_real_only_loss_says_what_to_use():
    with pytest.raises(gradproof.InvalidArgument, match="richardson"):
        gradproof.check(lambda z: float(np.sum(z)), np.ones(2), np.ones(2), scheme="complex")


def test_default_is_richardson_and_a_given_eps_means_central():
    x = np.ones(2)
    assert gradproof.check(exp_sum, x, np.exp).scheme == "richardson"
    assert gradproof.check(exp_sum, x, np.exp, eps=1e-6).scheme == "central"


# ------------------------------------------------------- 2. the error model


def test_error_model_catches_what_the_notebooks_threshold_lets_through():
    """One element wrong by 1e-6 relative: the notebook's difference says 'great'; we fail."""
    loss, params, grad = tanh_net(0)
    g = grad(params)
    g["W"] = g["W"].copy()
    g["W"][3, 1] *= 1 + 1e-6
    report = gradproof.check(loss, params, g)
    assert report.difference < 1e-7  # the notebook's rule would call this great
    assert report.status == "fail"


def test_stated_noise_far_above_the_signal_is_inconclusive_not_fail():
    x = np.array([0.5, -1.0, 2.0])
    report = gradproof.check(lambda p: float(np.sum(p**2)), x, lambda p: 2 * p, noise=1e-3)
    assert report.status == "inconclusive"
    block = report.blocks["params"]
    assert "too noisy" in block.reason and "Try" in block.reason


def test_a_float16_loss_is_judged_at_float16_precision():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(20, 10))
    x0 = rng.normal(size=10) * 0.3

    def f16(x):
        x = np.asarray(x, np.float16)
        return np.float16(np.sum(np.tanh(A.astype(np.float16) @ x) ** 2))

    def g(x):
        t = np.tanh(A @ x)
        return A.T @ (2 * t * (1 - t**2))

    report = gradproof.check(f16, x0, g)
    # The correct gradient: float16's noise (an error bound near a fifth of the gradient)
    # is too coarse to clear it, and it is never a false alarm.
    assert report.status == "inconclusive"
    assert report.blocks["params"].reason.startswith("the numerical derivative is too noisy")
    assert report.precision.startswith("float16")
    # Yet a checker that is merely cautious would call everything inconclusive: a gradient
    # three times too large, or of the wrong sign, stands out of float16's noise and fails,
    # named as what it is.
    for factor, kind in ((3.0, "scale"), (-1.0, "sign")):
        wrong = gradproof.check(f16, x0, lambda x, factor=factor: factor * g(x))
        assert wrong.status == "fail" and wrong.suspects == ("params",), factor
        assert wrong.blocks["params"].diagnosis.kind == kind


# ------------------------------------------------------------------ 3. kinks


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("park", [3e-8, -3e-8, 0.0, 2e-6])
def test_relu_parked_next_to_its_kink_passes_with_a_kink_note(seed, park):
    """A kink inside the step: kept as a kink where no smaller step clears it (parked
    closer than the smallest quiet step), judged beside it at a smaller step where one
    does (2e-6 from it, a third of the default step); a pass with a note, either way."""
    loss, params, grad, X = relu_net(seed)
    z = params["W"] @ X + params["b"][:, None]
    params["b"][2] += park - z[2, 1]
    report = gradproof.check(loss, params, grad)
    assert report.passed, str(report)
    if abs(park) < 1e-7:
        assert (2,) in report.blocks["b"].kinks
        assert any("kink" in note for note in report.notes)
    else:
        assert report.blocks["b"].kinks == ()
        assert any("smaller than the default" in note for note in report.notes)
        assert report.extra["central_first"]["smaller_steps"] >= 1


def test_a_real_bug_next_to_a_kink_still_fails():
    loss, params, grad, X = relu_net(0)
    z = params["W"] @ X + params["b"][:, None]
    params["b"][2] += 3e-8 - z[2, 1]
    g = grad(params)
    g["v"] = 2 * g["v"]
    assert gradproof.check(loss, params, g).suspects == ("v",)


def test_a_small_bug_on_a_smooth_loss_is_never_excused_as_a_kink():
    loss, params, grad = tanh_net(1)
    g = grad(params)
    g["b"] = g["b"].copy()
    g["b"][2] *= 1 + 1e-5
    report = gradproof.check(loss, params, g)
    assert report.blocks["b"].wrong_elements == ((2,),)
    assert not report.blocks["b"].kinks


# -------------------------------------------------------- 4. nondeterminism


def test_random_sampling_in_the_loss_is_named_with_its_fixes():
    rng = np.random.default_rng(0)

    def loss(p):
        batch = rng.normal(size=(8, 3))
        return float(np.mean((batch @ p) ** 2))

    with pytest.raises(gradproof.NondeterministicLossError) as info:
        gradproof.check(loss, np.ones(3), np.ones(3))
    message = str(info.value)
    for phrase in ("dropout", "random sampling", "BatchNorm", "keep_prob=1", "seed", "noise="):
        assert phrase in message


def test_a_loss_that_changes_is_caught_at_the_base_point_before_any_difference():
    # Repeated evaluations at the unperturbed parameters come first: the error must come
    # before the loss has ever been called away from the base point.
    calls = []
    base = np.ones(3)

    def loss(p):
        calls.append(bool(np.array_equal(p, base)))
        return float(np.sum(p**2)) + 1e-6 * len(calls)  # drifts by 1e-6 per call

    with pytest.raises(gradproof.NondeterministicLossError):
        gradproof.check(loss, base, 2 * base)
    assert 2 <= len(calls) <= 3 + 4 and all(calls)  # only base-point calls (4 to tell why)


def test_a_loss_that_drifts_is_named_as_state_the_loss_updates():
    calls = []

    def loss(p):
        calls.append(1)
        return float(np.sum(p**2)) + 1e-6 * len(calls)  # a counter inside the loss

    with pytest.raises(gradproof.NondeterministicLossError) as info:
        gradproof.check(loss, np.ones(3), 2 * np.ones(3))
    message = str(info.value)
    assert "moves the same way at every call" in message and "counter" in message
    assert "dropout" not in message


@pytest.mark.parametrize("seed", range(10))
def test_a_random_draw_is_not_taken_for_a_drift(seed):
    """Seven scattered values are monotone with chance 2/7! (1 in 2,520): every seed here
    must read as a draw."""
    rng = np.random.default_rng(seed)

    def loss(p):
        return float(np.sum(p**2) * (1 + 0.01 * rng.random()))

    with pytest.raises(gradproof.NondeterministicLossError) as info:
        gradproof.check(loss, np.ones(3), 2 * np.ones(3))
    assert "dropout" in str(info.value) and "moves the same way" not in str(info.value)


def test_a_sum_in_a_changing_order_is_named_as_roundoff():
    """A float32 sum of shuffled terms: the values differ in their last bits only."""
    rng = np.random.default_rng(0)

    def loss(p):
        terms = np.concatenate([p**2, np.full(1000, 0.1)]).astype(np.float32)
        rng.shuffle(terms)
        return float(np.cumsum(terms)[-1])

    with pytest.raises(gradproof.NondeterministicLossError) as info:
        gradproof.check(loss, np.ones(3), 2 * np.ones(3))
    message = str(info.value)
    assert "units of roundoff only" in message and "use_deterministic_algorithms" in message
    assert "gradient function changed" not in message  # the grad call did not do it


def test_a_noisy_loss_that_agrees_twice_after_grad_is_not_blamed_on_grad():
    """The value before grad(params) differs, the two after agree by chance: more calls
    show the loss itself is noisy."""
    values = itertools.cycle([1.0, 2.0, 2.0, 2.5, 1.5, 3.0, 0.5, 2.2, 1.7])

    def loss(p):
        return next(values)

    with pytest.raises(gradproof.NondeterministicLossError) as info:
        gradproof.check(loss, np.ones(3), lambda p: 2 * p)
    assert "different values for the same parameters" in str(info.value)


@pytest.mark.parametrize("bugs", [False, True])
def test_dropout_with_a_stated_noise_is_inconclusive_whatever_the_backprop(bugs):
    """What noise=5.0 proves: dropout's noise swamps every finite difference, so the check
    says so for every block and blames none, for the notebook's buggy backprop as for the
    fixed one. It cannot tell them apart, and it does not pretend to: no pass, no fail."""
    loss, params, grads = fraud.problem(bugs=bugs, keep_prob=0.9)
    report = gradproof.check(loss, params, grads, noise=5.0)
    assert report.status == "inconclusive" and report.suspects == ()
    assert {b.status for b in report.blocks.values()} == {"inconclusive"}
    for block in report.blocks.values():
        assert block.reason.startswith("the numerical derivative is too noisy to judge")


def test_the_same_buggy_backprop_without_dropout_is_caught():
    """The contrast to the test above: dropout off, the planted bugs fail in W2 and b1."""
    loss, params, grads = fraud.problem(bugs=True, keep_prob=1.0)
    report = gradproof.check(loss, params, grads)
    assert report.status == "fail" and report.suspects == ("W2", "b1")


def test_a_stated_noise_smaller_than_the_real_one_still_raises():
    loss, params, grads = fraud.problem(bugs=False, keep_prob=0.5)
    with pytest.raises(gradproof.NondeterministicLossError):
        gradproof.check(loss, params, grads, noise=1e-12)


# ---------------------------------------------------------------- 5. precision


def _float32_problem(seed=0, m=64):
    """A correct float32 model: params and the whole backprop in float32."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, m))
    params = {
        "W": (rng.normal(size=(20, 30)) / np.sqrt(30)).astype(np.float32),
        "b": (rng.normal(size=20) * 0.1).astype(np.float32),
        "v": rng.normal(size=20).astype(np.float32),
    }

    def loss(q):  # the reference loss, evaluated in float64
        h = np.tanh(q["W"] @ X + q["b"][:, None])
        return float(np.mean(np.logaddexp(0.0, q["v"] @ h)))

    X32 = X.astype(np.float32)
    h = np.tanh(params["W"] @ X32 + params["b"][:, None])
    dz = np.float32(1) / (np.float32(1) + np.exp(-(params["v"] @ h))) / np.float32(m)
    dh = np.outer(params["v"], dz) * (np.float32(1) - h**2)
    grads = {"W": dh @ X32.T, "b": dh.sum(axis=1), "v": h @ dz}
    assert all(g.dtype == np.float32 for g in grads.values())
    return loss, params, grads


@pytest.mark.parametrize("seed", range(3))
def test_a_correct_float32_model_passes_and_says_how_it_was_checked(seed):
    loss, p32, g32 = _float32_problem(seed)
    report = gradproof.check(loss, p32, g32)
    assert report.passed, str(report)
    assert "float32" in report.precision and "checked in float64" in report.precision
    assert p32["W"].dtype == np.float32  # the caller's arrays keep their dtype


def test_a_float32_model_with_a_real_bug_fails():
    loss, p32, g32 = _float32_problem()
    g32["W"] = g32["W"].copy()
    g32["W"][2, 3] *= np.float32(1.01)
    report = gradproof.check(loss, p32, g32)
    assert report.suspects == ("W",) and report.blocks["W"].wrong_elements == ((2, 3),)


def test_a_loss_that_computes_in_float32_gets_float32_steps_and_passes():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(20, 10)).astype(np.float32)
    x0 = rng.normal(size=10) * 0.3

    def f32(x):
        return np.float32(np.sum(np.tanh(A @ np.asarray(x, np.float32)) ** 2))

    def g(x):
        t = np.tanh(A.astype(float) @ x)
        return A.astype(float).T @ (2 * t * (1 - t**2))

    report = gradproof.check(f32, x0, g)
    assert report.passed, str(report)
    assert report.precision.startswith("float32 (the loss computes in float32")
    assert gradproof.check(f32, x0, lambda x: 1.01 * g(x)).status == "fail"


def test_integer_params_are_checked_in_float64():
    report = gradproof.check(lambda p: float(np.sum(p**2)), np.array([1, 2, 3]), lambda p: 2 * p)
    assert report.passed and "int64" in report.precision


# -------------------------------------------------------------- 6. sensitivity


@pytest.mark.parametrize("seed", range(3))
def test_correct_smooth_float64_gradients_report_1e_9_or_smaller(seed):
    loss, params, grad = tanh_net(seed)
    assert sum(np.size(v) for v in params.values()) == 97
    report = gradproof.check(loss, params, grad)
    assert report.passed and report.difference <= 1e-9


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("block", "index"), [("W", (3, 1)), ("b", (5,)), ("v", (0,))])
def test_one_element_wrong_by_1e_6_relative_fails_and_is_named(seed, block, index):
    loss, params, grad = tanh_net(seed)
    g = {k: np.array(v, dtype=float) for k, v in grad(params).items()}
    g[block][index] *= 1 + 1e-6
    report = gradproof.check(loss, params, g)
    assert report.status == "fail"
    assert report.suspects == (block,)
    assert report.blocks[block].wrong_elements == (index,)
    assert report.blocks[block].worst_index == index


def test_bfloat16_params_and_gradient_are_checked_in_float64():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 arrays come from ml_dtypes")
    bf16 = ml_dtypes.bfloat16
    x = np.array([0.5, -1.25, 2.0], dtype=bf16)
    g = (2 * np.asarray(x, dtype=np.float32)).astype(bf16)
    report = gradproof.check(lambda p: float(np.sum(np.asarray(p, float) ** 2)), x, g)
    assert report.passed and "bfloat16" in report.precision
    wrong = (np.asarray(g, np.float32) * 1.5).astype(bf16)
    assert (
        gradproof.check(lambda p: float(np.sum(np.asarray(p, float) ** 2)), x, wrong).status
        == "fail"
    )


def test_steps_scale_with_the_coordinate_so_huge_parameters_check_right():
    # At theta ~ 1e12 one unit in the last place is ~1e-4: a step that ignored the
    # coordinate's magnitude (~6e-6) would not move theta at all. Closed form: d/dθ log θ = 1/θ.
    theta = np.array([1e12, 3e11, 2e12])
    report = gradproof.check(lambda p: float(np.sum(np.log(p))), theta, 1 / theta)
    assert report.passed
    for element in report.blocks["params"].worst:
        exact = 1 / theta[element.index]
        assert element.numerical == pytest.approx(exact, rel=1e-6)
    wrong = 1 / theta
    wrong[1] *= 1 + 1e-4
    assert gradproof.check(lambda p: float(np.sum(np.log(p))), theta, wrong).blocks[
        "params"
    ].wrong_elements == ((1,),)


def test_a_numpy_float32_scalar_param_is_reported_as_checked_in_float64():
    report = gradproof.check(lambda p: float(p) ** 2, np.float32(3.0), 6.0)
    assert report.passed
    assert "params of dtype float32 were checked in float64" in report.precision
