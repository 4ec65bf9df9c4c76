"""Small models with closed-form gradients, shared by the tests (the oracles)."""

from __future__ import annotations

import numpy as np


def tanh_net(seed: int = 0, n_in: int = 10, n_hidden: int = 8, m: int = 16):
    """A ~100-parameter smooth net: mean softplus(v · tanh(W x + b) + c).

    Returns (loss, params, grad) with grad the exact closed-form gradient.
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_in, m))
    params = {
        "W": rng.normal(size=(n_hidden, n_in)) / np.sqrt(n_in),
        "b": rng.normal(size=n_hidden) * 0.1,
        "v": rng.normal(size=n_hidden),
        "c": float(rng.normal()),
    }

    def loss(p):
        h = np.tanh(p["W"] @ X + p["b"][:, None])
        z = p["v"] @ h + p["c"]
        return float(np.mean(np.logaddexp(0.0, z)))

    def grad(p):
        h = np.tanh(p["W"] @ X + p["b"][:, None])
        z = p["v"] @ h + p["c"]
        dz = 1.0 / (1.0 + np.exp(-z)) / m
        dh = np.outer(p["v"], dz) * (1 - h**2)
        return {"W": dh @ X.T, "b": dh.sum(axis=1), "v": h @ dz, "c": float(dz.sum())}

    return loss, params, grad


def relu_net(seed: int = 0, n_in: int = 4, n_hidden: int = 6, m: int = 5):
    """A ReLU layer then a linear read-out, mean squared; exact gradient (subgradient 0 at 0)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_in, m))
    y = rng.normal(size=m)
    params = {
        "W": rng.normal(size=(n_hidden, n_in)),
        "b": rng.normal(size=n_hidden),
        "v": rng.normal(size=n_hidden),
    }

    def loss(p):
        a = np.maximum(0.0, p["W"] @ X + p["b"][:, None])
        return float(np.mean((p["v"] @ a - y) ** 2))

    def grad(p):
        z = p["W"] @ X + p["b"][:, None]
        a = np.maximum(0.0, z)
        r = 2 * (p["v"] @ a - y) / m
        dz = np.outer(p["v"], r) * (z > 0)
        return {"W": dz @ X.T, "b": dz.sum(axis=1), "v": a @ r}

    return loss, params, grad, X
