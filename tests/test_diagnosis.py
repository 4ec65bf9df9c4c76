"""Each kind of bug, planted, is diagnosed by name (issue 3, point 7)."""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
from models import tanh_net


def planted(change, *, square: bool = False, lambd: float = 0.0):
    """Check tanh_net (16 examples) with ``change`` applied to the exact gradient."""
    n = 8 if square else 10
    loss, params, grad = tanh_net(3, n_in=n, n_hidden=8)
    if lambd:
        inner = loss

        def loss(p):
            return inner(p) + lambd / 2 * float(np.sum(p["W"] ** 2))

    g = {k: np.array(v, dtype=float) for k, v in grad(params).items()}
    change(g, params)
    return gradproof.check(loss, params, g)


def set_w(value):
    def change(g, p):
        g["W"] = value(g["W"], p["W"])

    return change


@pytest.mark.parametrize(
    ("change", "kind", "phrase", "options"),
    [
        (set_w(lambda w, p: 2 * w), "scale", "2.00× the numerical derivative", {}),
        (set_w(lambda w, p: 16 * w), "scale", "a missing 1/m, if the batch holds m = 16", {}),
        (set_w(lambda w, p: w / 16), "scale", "an extra 1/m, if the batch holds m = 16", {}),
        (set_w(lambda w, p: -w), "sign", "wrong sign", {}),
        (set_w(lambda w, p: 0 * w), "zero", "detached tensor or a missing term", {}),
        (set_w(lambda w, p: w.T), "transposed", "transpose", {"square": True}),
        (set_w(lambda w, p: w), "regularization", "regularization missing", {"lambd": 0.3}),
    ],
    ids=["x2", "xm", "over-m", "sign", "zero", "transposed", "l2"],
)
def test_planted_bug_is_diagnosed(change, kind, phrase, options):
    report = planted(change, **options)
    assert report.suspects == ("W",)
    diagnosis = report.blocks["W"].diagnosis
    assert diagnosis is not None and diagnosis.kind == kind
    assert phrase in diagnosis.sentence
    assert diagnosis.sentence in " ".join(str(report).split())  # wrapped at 100 columns


def test_a_few_wrong_elements_are_listed_by_index():
    def change(g, p):
        g["W"][1, 2] += 0.01
        g["W"][6, 0] -= 0.02

    report = planted(change)
    block = report.blocks["W"]
    assert block.diagnosis.kind == "elements"
    assert set(block.wrong_elements) == {(1, 2), (6, 0)}
    assert "[1, 2]" in block.diagnosis.sentence and "[6, 0]" in block.diagnosis.sentence


def test_scale_is_none_where_the_numerical_derivative_is_zero():
    report = gradproof.check(
        lambda p: 0.0 * float(np.sum(p)), np.array([1.0, 2.0, -3.0]), np.ones(3)
    )
    assert report.blocks["params"].scale is None
    assert report.blocks["params"].diagnosis.kind == "general"


def test_only_failing_blocks_get_a_diagnosis():
    report = planted(set_w(lambda w, p: 2 * w))
    assert all(b.diagnosis is None for name, b in report.blocks.items() if name != "W")


@pytest.mark.parametrize("size", [1e-14, 1e-10, 1.0, 1e10])
def test_a_factor_of_two_is_named_at_any_scale_of_the_loss(size):
    # The diagnosis must not depend on the loss's units: a x2 bug in a loss of size 1e-14
    # is as much a constant factor as in a loss of size 1.
    theta = np.array([0.3, -1.2, 2.0, 0.7])
    report = gradproof.check(
        lambda p: size * float(np.sum(np.sin(p))), theta, 2 * size * np.cos(theta)
    )
    block = report.blocks["params"]
    assert report.status == "fail"
    assert block.scale == pytest.approx(2.0, rel=1e-6)
    assert block.diagnosis.kind == "scale"
