"""Property-based tests: random smooth compositions with exact gradients (issue 3, point 9).

Each model is a chain  x -> op(A_1 x) -> op(A_2 ...) -> reduction, written with its
forward beside its backward, so the gradient is exact by construction. A correct
gradient must never fail; a planted error above the detection floor must always
fail, in the block where it was planted.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gradproof

# op: (forward, derivative given input u and output y)
OPS = {
    "sin": (np.sin, lambda u, y: np.cos(u)),
    "tanh": (np.tanh, lambda u, y: 1 - y**2),
    "softplus": (lambda u: np.logaddexp(0.0, u), lambda u, y: 1 / (1 + np.exp(-u))),
    "square": (lambda u: u**2, lambda u, y: 2 * u),
    "exp": (lambda u: np.exp(0.5 * u), lambda u, y: 0.5 * y),
}
REDUCTIONS = ("sum", "mean", "logsumexp")


@st.composite
def models(draw):
    n = draw(st.integers(1, 5))
    widths = [n, *draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))]
    ops = draw(
        st.lists(st.sampled_from(sorted(OPS)), min_size=len(widths) - 1, max_size=len(widths) - 1)
    )
    reduction = draw(st.sampled_from(REDUCTIONS))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    params = {"x": rng.normal(size=n)}
    for i in range(1, len(widths)):
        params[f"A{i}"] = rng.normal(size=(widths[i], widths[i - 1])) / np.sqrt(widths[i - 1])
    return params, ops, reduction


def forward(params, ops, reduction):
    h = params["x"]
    tape = []
    for i, name in enumerate(ops, start=1):
        u = params[f"A{i}"] @ h
        y = OPS[name][0](u)
        tape.append((h, u, y))
        h = y
    if reduction == "sum":
        return float(np.sum(h)), tape, np.ones_like(h)
    if reduction == "mean":
        return float(np.mean(h)), tape, np.full_like(h, 1 / h.size)
    top = np.max(h)
    weights = np.exp(h - top)
    return float(top + np.log(np.sum(weights))), tape, weights / np.sum(weights)


def gradient(params, ops, reduction):
    _, tape, dh = forward(params, ops, reduction)
    grads = {}
    for i in range(len(ops), 0, -1):
        h_in, u, y = tape[i - 1]
        du = dh * OPS[ops[i - 1]][1](u, y)
        grads[f"A{i}"] = np.outer(du, h_in)
        dh = params[f"A{i}"].T @ du
    grads["x"] = dh
    return {k: grads[k] for k in params}


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(models())
def test_exact_gradients_never_fail(model):
    params, ops, reduction = model
    report = gradproof.check(
        lambda p: forward(p, ops, reduction)[0], params, gradient(params, ops, reduction)
    )
    assert report.status != "fail", str(report)


@PROPERTY
@given(models(), st.data())
def test_planted_errors_above_the_floor_always_fail_in_their_block(model, data):
    params, ops, reduction = model
    grads = gradient(params, ops, reduction)
    block = data.draw(st.sampled_from(sorted(grads)))
    flat_index = data.draw(st.integers(0, grads[block].size - 1))
    relative = data.draw(st.floats(1e-4, 1.0))
    scale = max(float(np.max(np.abs(g))) for g in grads.values())
    planted = {k: np.array(v, dtype=float) for k, v in grads.items()}
    planted[block].flat[flat_index] += relative * max(scale, 1e-3)
    report = gradproof.check(lambda p: forward(p, ops, reduction)[0], params, planted)
    assert report.status == "fail", str(report)
    assert report.suspects == (block,), str(report)
    index = np.unravel_index(flat_index, grads[block].shape)
    assert tuple(int(i) for i in index) in report.blocks[block].wrong_elements
