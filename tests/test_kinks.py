"""Kinks the step crosses, in float64 and in float32: no false alarm, bugs still caught.

Oracle: a two-layer ReLU network with its hand-written backprop, exact (its float64
form is autograd's formula). A correct gradient must never fail: where a ReLU input
sits within the step of zero, the element is cleared at the kink (float64) or, where
the precision cannot tell a kink from noise (float32), called inconclusive. Planted
bugs (a missing regularisation term, a bias gradient 1% off, a sign flip) must fail
as before.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradproof
from gradproof._engine.judge import nonsmooth
from gradproof._engine.schemes import SCHEMES


def relu_net(seed: int, batch: int, dtype: type = np.float64, park: float | None = None):
    """Loss, parameters and exact gradient of a 8-32-5 ReLU net with softmax loss and an
    L2 term on W1; ``park`` sets sample 0's pre-activations to that value (a kink there)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 8)).astype(dtype)
    y = rng.integers(0, 5, batch)
    p = {
        "W1": (rng.normal(size=(8, 32)) * 0.5).astype(dtype),
        "b1": (rng.normal(size=32) * 0.1).astype(dtype),
        "W2": (rng.normal(size=(32, 5)) * 0.3).astype(dtype),
        "b2": np.zeros(5, dtype),
    }
    if park is not None:
        p["b1"] = (-(x[0] @ p["W1"]) + park).astype(dtype)
    reg = 1e-3

    def forward(q):
        z1 = x @ q["W1"] + q["b1"]
        a1 = np.maximum(z1, 0)
        s = a1 @ q["W2"] + q["b2"]
        e = np.exp(s - s.max(1, keepdims=True))
        return z1, a1, e / e.sum(1, keepdims=True)

    def loss(q):
        q = {k: np.asarray(v, dtype) for k, v in q.items()}
        probs = forward(q)[2]
        return float(-np.log(probs[np.arange(batch), y]).mean() + 0.5 * reg * np.sum(q["W1"] ** 2))

    z1, a1, probs = forward(p)
    ds = probs.copy()
    ds[np.arange(batch), y] -= 1
    ds /= batch
    dz1 = (ds @ p["W2"].T) * (z1 > 0)
    grad = {"W1": x.T @ dz1 + reg * p["W1"], "b1": dz1.sum(0), "W2": a1.T @ ds, "b2": ds.sum(0)}
    return loss, p, grad, reg


def _bugs(p, grad, reg):
    def changed(name, value):
        return {**{k: v.copy() for k, v in grad.items()}, name: value}

    yield "missing L2", changed("W1", grad["W1"] - reg * p["W1"])
    yield "b1 1% off", changed("b1", grad["b1"] * 1.01)
    flipped = grad["W1"].copy()
    flipped[3, 7] *= -1
    yield "one sign", changed("W1", flipped)


@pytest.mark.parametrize("seed", [19, 7])
def test_one_samples_relu_crossing_zero_in_a_batch_of_512_is_no_bug(seed):
    """Seed 19 puts a pre-activation at 2.4e-7, inside the step: one sample of 512 bends
    the slope by 7e-4 of it, below the relative slack that a slope jump must pass; the
    central differences at h and h/2 show it on one side only."""
    loss, p, grad, reg = relu_net(seed, 512)
    assert gradproof.check(loss, p, grad).status == "pass"
    for name, wrong in _bugs(p, grad, reg):
        assert gradproof.check(loss, p, wrong).status == "fail", name


def test_a_kink_at_the_point_itself_is_no_bug():
    """Sample 0's pre-activations all at 1e-9: each side is smooth, and the two one-sided
    estimates (each O(h²)) part by the slope jump, 7e-4 of the derivative."""
    loss, p, grad, reg = relu_net(0, 32, park=1e-9)
    report = gradproof.check(loss, p, grad)
    assert report.status == "pass" and report.blocks["W1"].kinks
    for name, wrong in _bugs(p, grad, reg):
        assert gradproof.check(loss, p, wrong).status == "fail", name


@pytest.mark.parametrize("seed", [0, 3, 5, 6])
def test_a_float32_relu_network_is_never_failed_for_its_kinks(seed):
    """float32 steps (about 5e-3) cross kinks whose jumps the noise can hide: a correct
    gradient passes or is inconclusive there, never fails (these seeds failed once)."""
    loss, p, grad, reg = relu_net(seed, 32, np.float32)
    report = gradproof.check(loss, p, grad)
    assert report.status in ("pass", "inconclusive"), report
    for name, wrong in _bugs(p, grad, reg):
        if name != "one sign":  # W1[3, 7] may sit at a kink in float32's step
            assert gradproof.check(loss, p, wrong).status == "fail", name


def _evidence(f, theta: float, h: float) -> bool:
    """Whether Richardson's points around ``theta`` show a kink in ``f``."""
    offsets = np.array([[h, -h, h / 2, -h / 2]])
    values = np.array([[f(theta + o) for o in offsets[0]]])
    j0 = f(theta)
    delta = 1e-16 * max(abs(j0), 1.0)
    est = SCHEMES["richardson"].combine(j0, values, offsets, delta)
    g = np.array([est.value[0]])
    return bool(nonsmooth(g, est, 1e-3, 1e-8)[0])


@pytest.mark.parametrize(
    ("name", "f", "theta"),
    [
        ("exp(300θ)", lambda t: np.exp(300 * t) / 300, 0.0),
        ("sin(50θ) at an inflection", lambda t: np.sin(50 * t), np.pi / 50),
        ("cubic", lambda t: t**3 - 2 * t, 0.7),
    ],
)
def test_a_smooth_loss_shows_no_kink(name, f, theta):
    assert not _evidence(f, theta, 6e-6)


@pytest.mark.parametrize("where", [2e-7, -2e-7, 4e-6, 0.0])
def test_a_small_slope_jump_within_the_step_shows_a_kink(where):
    """A slope jump of 5e-4 of the slope (one sample of 2,000 crossing zero), inside
    h = 6e-6 on either side or at the point: below the 1e-3 relative slack, yet shown."""

    def f(t):
        return 0.04 * t + 2e-5 * max(t - where, 0.0) + 0.3 * t**2

    assert _evidence(f, 0.0, 6e-6)


@pytest.mark.parametrize("seed", [1, 4])
def test_a_float32_relu_network_whose_kinks_are_resolved_passes(seed):
    """Where the steps cross no kink the precision cannot resolve, float32 passes outright:
    the central pair's sides (apart by h·J'' wherever the loss curves) never make an
    element inconclusive."""
    loss, p, grad, _ = relu_net(seed, 32, np.float32)
    assert gradproof.check(loss, p, grad).status == "pass"
