"""A pattern is named only where it explains the error g - n itself.

Each case plants one kind of bug and states the exact diagnosis expected, both
through ``diagnose`` directly and end to end through ``gradproof.check``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import gradproof
from gradproof._engine.diagnose import diagnose, scale_of

RNG = np.random.default_rng(20261130)
W10 = RNG.normal(size=10)
W20 = RNG.normal(size=20)
NOT_A_NUMBER = re.compile(r"\bnan\b|\binf\b", re.IGNORECASE)


def sines(p):
    return float(np.sum(np.sin(p)))


def wrong_of(g, n):
    """The indices of the elements that differ, as the judge would list them."""
    off = np.abs(g - n) > 1e-9 * np.maximum(np.abs(g), np.abs(n)) + 1e-300
    return [tuple(int(i) for i in index) for index in np.argwhere(off)]


def diagnosed(g, n, theta=None, wrong=None):
    g, n = np.asarray(g, dtype=float), np.asarray(n, dtype=float)
    theta = np.ones_like(g) if theta is None else theta
    return diagnose("w", g, n, theta, wrong_of(g, n) if wrong is None else wrong)


def checked(g, w=W10, loss=sines):
    report = gradproof.check(loss, w, g)
    assert report.status == "fail"
    diagnosis = report.blocks["params"].diagnosis
    assert diagnosis is not None
    return diagnosis


def one_element_off():
    g = np.cos(W10)
    g[3] += 0.01
    return g


def scattered_seven():
    g = np.cos(W20)
    spots = [1, 4, 6, 9, 12, 15, 18]
    g[spots] *= [1.3, 0.5, 2.0, -1.0, 1.7, 0.2, 3.0]
    return g


# --- 1 and 2: a few wrong elements are elements, not a factor of 1.00 ----------------------


def test_one_wrong_element_is_named_by_index_not_as_a_factor_of_one():
    for diagnosis in (checked(one_element_off()), diagnosed(one_element_off(), np.cos(W10))):
        assert diagnosis.kind == "elements"
        assert diagnosis.sentence.split(": ", 1)[1] == (
            "1 element(s) wrong ([3]), the rest match — look for an indexing or slicing "
            "bug, or a special case at these positions"
        )


def test_a_factor_that_leaves_the_error_unexplained_is_not_claimed():
    # The least-squares factor of one_element_off is ~1.0005: within 1% of g as a whole,
    # yet what it leaves of the error is nearly all of it.
    g, n = one_element_off(), np.cos(W10)
    s = scale_of(g, n)
    assert s is not None and abs(s - 1) < 1e-2
    assert np.linalg.norm(g - s * n) > 0.9 * np.linalg.norm(g - n)
    assert diagnosed(g, n, wrong=[]).kind == "general"  # no element listed: no pattern either


def test_every_element_doubled_is_a_scale():
    diagnosis = checked(2 * np.cos(W10))
    assert diagnosis.kind == "scale"
    assert diagnosis.sentence == (
        "params: the gradient is 2.00× the numerical derivative — a constant factor, "
        "look for a stray multiplier; or a missing 1/m, if the batch holds m = 2 examples"
    )


def test_a_doubled_gradient_that_matches_at_a_few_kinks_is_still_a_scale():
    n = np.cos(W20)
    g = 2 * n
    g[[4, 11]] = n[[4, 11]]  # the judge took one side at these kinks, and g matches it
    diagnosis = diagnosed(g, n)
    assert diagnosis.kind == "scale"
    assert "2.00× the numerical derivative in all but 2 element(s) (at a kink" in diagnosis.sentence


def test_a_doubled_gradient_with_kinks_end_to_end():
    # The kinks at w[4] and w[11] = 0: slopes 1 on the left, 2 on the right. The buggy
    # gradient doubles everything, with the left slope at the kinks: 2, the right side.
    w = W20.copy()
    w[[4, 11]] = 0.0
    kinked = np.zeros(20, dtype=bool)
    kinked[[4, 11]] = True

    def loss(p):
        return float(np.sum(np.sin(p[~kinked])) + np.sum(p[kinked] + np.maximum(0.0, p[kinked])))

    g = np.where(kinked, 2.0, 2 * np.cos(w))
    report = gradproof.check(loss, w, g)
    block = report.blocks["params"]
    assert set(block.kinks) == {(4,), (11,)} and len(block.wrong_elements) == 18
    assert block.diagnosis is not None and block.diagnosis.kind == "scale"
    assert "2.00×" in block.diagnosis.sentence


def test_a_doubled_gradient_that_is_zero_in_most_elements_is_a_scale():
    n = np.zeros(20)
    n[[2, 9]] = [0.7, -1.3]  # a sparse gradient: two elements carry all of it
    diagnosis = diagnosed(2 * n, n)
    assert diagnosis.kind == "scale" and "2.00×" in diagnosis.sentence


def test_a_few_large_errors_among_many_tiny_ones_are_elements():
    n = np.cos(W20)
    g = 1.000001 * n  # every element slightly off, so every element is listed
    g[5] += 0.5
    diagnosis = diagnosed(g, n)
    assert diagnosis.kind == "elements"
    assert diagnosis.sentence.startswith(
        "w: 20 elements are beyond the error model, but 1 of them carry 99% of the error"
    )


# --- 3: a sign flip is -1 only ------------------------------------------------------------


@pytest.mark.parametrize(
    ("factor", "kind", "phrase"),
    [
        (-1.0, "sign", "wrong sign (-1.00× the numerical derivative)"),
        (-0.7, "scale", "the gradient is -0.70× the numerical derivative — a constant factor"),
        (1.001, "scale", "the gradient is 1.001× the numerical derivative"),
        (1 / 16, "scale", "0.0625×"),
        (5e4, "scale", "5e+04×"),
    ],
)
def test_a_factor_is_named_with_its_value_and_only_minus_one_is_a_sign(factor, kind, phrase):
    for diagnosis in (checked(factor * np.cos(W10)), diagnosed(factor * np.cos(W10), np.cos(W10))):
        assert diagnosis.kind == kind
        assert phrase in diagnosis.sentence
        assert ("wrong sign" in diagnosis.sentence) is (kind == "sign")


# --- 4: seven of twenty is not "a few" ------------------------------------------------------


def test_seven_scattered_errors_of_twenty_have_no_simple_pattern():
    for diagnosis in (checked(scattered_seven(), W20), diagnosed(scattered_seven(), np.cos(W20))):
        assert diagnosis.kind == "general"
        assert "a few" not in diagnosis.sentence
        assert diagnosis.sentence.split(": ", 1)[1] == (
            "7 of 20 checked elements differ from the numerical derivative with no simple "
            "pattern (not a constant factor, sign, transpose, L2 term or isolated elements) — "
            "check this block's backprop formula term by term"
        )


def test_seven_wrong_of_twenty_are_not_elements_even_with_the_rest_matching():
    n = np.cos(W20)
    g = n.copy()
    g[:7] += 0.3  # a slice shifted, not a factor: too many to be "a few"
    assert diagnosed(g, n).kind == "general"


# --- 5: a missing 1/N in a hinge loss, with one element at a kink ----------------------------


def svm(bug: bool):
    """A linear SVM on 5 examples; example 0 sees feature 3 only, at margin exactly 1."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(5, 6))
    y = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
    X[0] = 0.0
    X[0, 3] = 1.0
    w = rng.normal(size=6)
    w[3] = 1.0  # 1 - y0 * w.x0 = 0: a kink in w[3], and only there

    def loss(w):
        return float(np.mean(np.maximum(0.0, 1 - y * (X @ w))) + 0.05 * w @ w)

    active = (1 - y * (X @ w)) > 0
    total = -(active * y) @ X + 5 * 0.1 * w  # summed over the batch, not averaged
    return loss, w, total if bug else total / 5


def test_a_missing_one_over_n_with_a_kink_is_a_scale_with_the_batch_hint():
    loss, w, g = svm(bug=True)
    report = gradproof.check(loss, w, g)
    block = report.blocks["params"]
    assert block.scale is not None and abs(block.scale - 5) > 0.01  # the kink pulls the fit
    assert block.diagnosis is not None and block.diagnosis.kind == "scale"
    assert block.diagnosis.sentence == (
        "params: the gradient is 5.00× the numerical derivative in all but 1 element(s) "
        "(at a kink, or a second bug) — a constant factor, look for a stray multiplier; "
        "or a missing 1/m, if the batch holds m = 5 examples"
    )


def test_the_svm_without_the_bug_passes_with_its_kink_noted():
    loss, w, g = svm(bug=False)
    report = gradproof.check(loss, w, g)
    assert report.passed and report.blocks["params"].kinks == ((3,),)


# --- 6: never a "nan" or an "inf" -----------------------------------------------------------


@pytest.mark.parametrize(
    ("g", "n", "said"),
    [
        ([1.0, np.nan, 2.0], [1.0, 1.0, 1.0], "the gradient is not finite at 1 of 3 elements"),
        ([1.0, 2.0, 3.0], [np.inf, 1.0, -np.inf], "derivative is not finite at 2 of 3 elements"),
    ],
)
def test_values_that_are_not_finite_are_said_so(g, n, said):
    diagnosis = diagnosed(np.array(g), np.array(n), wrong=[(1,)])
    assert diagnosis.kind == "general"
    assert said in diagnosis.sentence
    assert not NOT_A_NUMBER.search(diagnosis.sentence)


def test_scale_of_is_none_for_values_that_are_not_finite():
    assert scale_of(np.array([1.0, np.nan]), np.ones(2)) is None
    assert scale_of(np.ones(2), np.array([np.inf, 1.0])) is None


@pytest.mark.parametrize("size", [1e-300, 1e-150, 1.0, 1e150, 1e300])
def test_a_factor_is_found_at_any_magnitude_without_overflow(size):
    n = size * np.cos(W10)
    assert scale_of(3 * n, n) == pytest.approx(3.0, rel=1e-12)
    diagnosis = diagnosed(3 * n, n, theta=W10)
    assert diagnosis.kind == "scale" and "3.00×" in diagnosis.sentence


def test_no_sentence_prints_a_number_that_is_not_one():
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = rng.normal(size=(4, 4)) * 10.0 ** rng.integers(-300, 300)
        with np.errstate(over="ignore"):  # an inf in g is one of the cases
            g = rng.choice([0.0, -1.0, 1.0, 2.0, 1e300]) * n
        g.ravel()[rng.integers(16, size=rng.integers(0, 5))] += rng.normal() * 1e-200
        theta = rng.normal(size=(4, 4)) * 10.0 ** rng.integers(-300, 300)
        diagnosis = diagnose("w", g, n, theta, [(0, 0)])
        assert not NOT_A_NUMBER.search(diagnosis.sentence), diagnosis.sentence


# --- 7: a zero gradient needs a numerical derivative above its own error ----------------------


def test_a_zero_gradient_where_the_numerical_derivative_is_not_is_zero():
    assert diagnosed(np.zeros(10), np.cos(W10)).kind == "zero"
    assert checked(np.zeros(10)).kind == "zero"


@pytest.mark.parametrize(
    ("n", "wrong"),
    [(np.zeros(10), []), (1e-17 * np.cos(W10), []), (np.zeros(10), [(2,)])],
    ids=["both exactly 0", "n only noise (failed on tol)", "n exactly 0"],
)
def test_a_block_where_both_are_about_zero_is_not_a_zero_gradient(n, wrong):
    diagnosis = diagnose("w", np.zeros(10), n, W10, wrong)
    assert diagnosis.kind == "general"


def test_a_block_that_fails_only_on_tol_says_so():
    diagnosis = diagnose("w", np.cos(W10), np.cos(W10) + 1e-12 * W10**3, W10, [])
    assert diagnosis.kind == "general"
    assert diagnosis.sentence.startswith(
        "w: every checked element is within the numerical derivative's error bound, but "
        "the block's difference exceeds tol"
    )


# --- the other patterns explain the error too ----------------------------------------------


def unit(a):
    return a / np.linalg.norm(a)


def test_a_transpose_is_named_only_where_it_explains_the_error():
    n = RNG.normal(size=(5, 5))
    assert diagnosed(n.T, n).kind == "transposed"
    # A nearly symmetric n, and g within 1.5% of n.T: close to the transpose as a whole,
    # but the error g - n (about 2.8% of n) is half left over after transposing.
    s = RNG.normal(size=(5, 5))
    a = unit(s - s.T)
    n = unit(s + s.T) + 0.012 * a
    g = n.T + 0.015 * unit(RNG.normal(size=(5, 5)))
    assert np.linalg.norm(g.T - n) <= 0.02 * np.linalg.norm(n) < np.linalg.norm(g - n)
    assert diagnosed(g, n).kind == "general"


def test_a_missing_l2_term_is_named_only_where_it_explains_the_error():
    theta = RNG.normal(size=(4, 5))
    n = RNG.normal(size=(4, 5))
    diagnosis = diagnosed(n - 0.3 * theta, n, theta=theta)
    assert diagnosis.kind == "regularization" and "(0.3 × w)" in diagnosis.sentence
    g = n - 0.3 * theta
    g[:, 2] += 0.4  # a second, larger error that theta does not explain
    assert diagnosed(g, n, theta=theta).kind == "general"
