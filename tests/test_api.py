"""The public API of gradproof.check: structures, names, the report, safety of user data."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

import gradproof
from gradproof.examples import fraud


def quad(p):
    return float(sum(np.sum(np.asarray(v) ** 2) for v in _leaves(p)))


def _leaves(p):
    if isinstance(p, dict):
        for v in p.values():
            yield from _leaves(v)
    elif isinstance(p, (list, tuple)):
        for v in p:
            yield from _leaves(v)
    else:
        yield p


def double(p):
    if isinstance(p, dict):
        return {k: double(v) for k, v in p.items()}
    if isinstance(p, (list, tuple)):
        return type(p)(double(v) for v in p)
    return 2 * np.asarray(p, dtype=float) if isinstance(p, np.ndarray) else 2 * float(p)


def test_one_d_seed_example_as_a_check():
    report = gradproof.check(lambda theta: theta * 3, 4.0, 3.0)
    assert report.passed and list(report.blocks) == ["params"]


def test_block_names_follow_the_structure_in_order():
    params = {
        "layers": [{"W": np.ones((2, 3)), "b": np.zeros(2)}, {"W": np.ones((1, 2)), "b": 0.5}],
        "scale": (1.0, np.array([2.0, 3.0])),
    }
    report = gradproof.check(quad, params, double(params))
    assert list(report.blocks) == [
        "layers.0.W",
        "layers.0.b",
        "layers.1.W",
        "layers.1.b",
        "scale.0",
        "scale.1",
    ]
    assert report.passed
    assert report.blocks["layers.0.W"].shape == (2, 3)


def test_gradient_dict_in_another_key_order_is_matched_by_name():
    params = {"a": np.array([1.0, 2.0]), "b": np.array([3.0])}
    grad = {"b": np.array([6.0]), "a": np.array([2.0, 4.0])}
    assert gradproof.check(quad, params, grad).passed


def test_seed_convention_keys_and_extra_keys():
    X, Y, p = fraud.gradient_check_n_test_case()
    _, cache = fraud.forward_propagation_n(X, Y, p)
    grads = fraud.backward_propagation_n_fixed(X, Y, cache)
    assert "dZ1" in grads and "dA1" in grads  # ignored in the notebook's convention
    report = gradproof.check(lambda q: fraud.forward_propagation_n(X, Y, q)[0], p, grads)
    assert report.passed and list(report.blocks) == list(fraud.KEYS)


def test_extra_keys_outside_the_seed_convention_are_an_error():
    params = {"a": np.ones(2)}
    with pytest.raises(gradproof.InvalidArgument, match="extra block"):
        gradproof.check(quad, params, {"a": 2 * np.ones(2), "dZ1": np.ones(2)})


def test_grad_may_be_a_callable_and_gets_its_own_copy():
    params = {"w": np.array([1.0, -1.0])}

    def grad(p):
        p["w"] *= 0  # a backprop that scribbles on its input
        return {"w": 2 * np.array([1.0, -1.0])}

    assert gradproof.check(quad, params, grad).passed
    np.testing.assert_array_equal(params["w"], [1.0, -1.0])


def test_report_is_frozen_and_its_blocks_read_only():
    report = gradproof.check(quad, np.ones(2), 2 * np.ones(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.difference = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        report.blocks["x"] = None  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.blocks["params"].difference = 1.0  # type: ignore[misc]


def test_to_dict_is_json_ready_and_complete():
    loss, params, grads = fraud.problem(bugs=True)
    report = gradproof.check(loss, params, grads, eps=1e-7)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["status"] == "fail" and data["passed"] is False
    assert data["suspects"] == ["W2", "b1"]
    assert data["difference"] == pytest.approx(0.2850931567761623, rel=1e-9)
    assert data["blocks"]["W2"]["scale"] == pytest.approx(2.0, rel=1e-6)
    assert data["blocks"]["W2"]["worst_index"] == list(report.blocks["W2"].worst_index)
    assert data["blocks"]["b1"]["diagnosis"]["kind"] == "scale"


def test_text_report_has_verdict_table_suspects_and_diagnoses():
    loss, params, grads = fraud.problem(bugs=True)
    text = str(gradproof.check(loss, params, grads, eps=1e-7))
    flat = " ".join(text.split())
    assert text.startswith("gradient check: FAIL")
    for name in fraud.KEYS:
        assert f"\n{name} " in text
    assert "W2, b1" in flat and "latest block first" in flat
    assert "W2: the gradient is 2.00× the numerical derivative" in flat
    assert "b1: the gradient is 4.00× the numerical derivative" in flat


def test_assert_gradients_match_raises_with_the_report_as_message():
    loss, params, grads = fraud.problem(bugs=True)
    with pytest.raises(gradproof.GradcheckError) as info:
        gradproof.assert_gradients_match(loss, params, grads, eps=1e-7)
    assert isinstance(info.value, AssertionError)
    assert "W2: the gradient is 2.00×" in " ".join(str(info.value).split())
    assert info.value.report.suspects == ("W2", "b1")
    loss, params, grads = fraud.problem(bugs=False)
    assert gradproof.assert_gradients_match(loss, params, grads).passed


def test_users_arrays_are_untouched_even_when_the_loss_raises_midway():
    X, Y, p = fraud.gradient_check_n_test_case()
    before = {k: v.copy() for k, v in p.items()}
    calls = {"n": 0}

    def loss(q):
        calls["n"] += 1
        if calls["n"] == 40:
            raise RuntimeError("boom in the middle of the check")
        return fraud.forward_propagation_n(X, Y, q)[0]

    _, cache = fraud.forward_propagation_n(X, Y, p)
    with pytest.raises(RuntimeError, match="boom"):
        gradproof.check(loss, p, fraud.backward_propagation_n(X, Y, cache))
    for k in before:
        np.testing.assert_array_equal(p[k], before[k])
        assert p[k].flags.writeable


def test_a_loss_cannot_write_into_the_check():
    def loss(p):
        p *= 2  # in place: refused, the arrays handed to the loss are read-only
        return float(np.sum(p))

    x = np.ones(3)
    with pytest.raises(ValueError, match="read-only"):
        gradproof.check(loss, x, np.ones(3))
    np.testing.assert_array_equal(x, np.ones(3))


def test_each_block_keeps_a_bounded_sample_of_pairs_for_plots():
    loss, params, grads = fraud.problem(bugs=True)
    report = gradproof.check(loss, params, grads)
    w2 = report.blocks["W2"].sample
    assert len(w2) == 15  # the whole (3, 5) block: fewer elements than the cap
    ratios = [a / n for a, n in w2 if abs(n) > 1e-3]
    assert ratios and all(r == pytest.approx(2.0, rel=1e-6) for r in ratios)


@pytest.mark.parametrize(
    "error",
    [
        gradproof.GradproofError,
        gradproof.InvalidArgument,
        gradproof.GradcheckError,
        gradproof.NondeterministicLossError,
    ],
)
def test_errors_show_their_public_name_and_survive_pickling(error):
    # pytest prints `gradproof.GradcheckError`, and errors cross process boundaries intact.
    assert f"{error.__module__}.{error.__qualname__}" == f"gradproof.{error.__name__}"
    if error is not gradproof.GradcheckError:  # that one carries a whole Report
        assert str(pickle.loads(pickle.dumps(error("why")))) == "why"
