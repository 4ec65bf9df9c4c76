"""The benchmark's workloads: the notebook's network and tanh MLPs, in numpy, torch and jax.

"fraud" is the fraud-detection network of the Gradient Checking notebook (deeplearning.ai's
course), on the notebook's test case. Each workload gives the same loss three ways (numpy
for gradproof and the notebook's loop, torch for ``torch.autograd.gradcheck``, jax for
``check_grads``) and one hand-written numpy backprop, the gradient under test everywhere:
torch and jax call it from a custom backward, so every tool checks the same gradient. The
planted bug multiplies one element of it by 1 + 1e-3 (a relative error of 1e-3).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradproof.examples import fraud

PLANTED_RELATIVE_ERROR = 1e-3
BATCH = 64
MLPS = {
    "mlp5k": (20, 64, 64, 1),
    "mlp30k": (100, 128, 128, 1),
    "mlp92k": (100, 256, 256, 1),
    "mlp10m": (1024, 4096, 1536, 1),
}


@dataclass
class Workload:
    name: str
    params: dict[str, np.ndarray]
    loss: Any  # numpy: params dict -> float
    batched_loss: Any  # numpy: params dict with a leading axis K -> (K,)
    grad: dict[str, np.ndarray]  # the hand-written backprop at params
    planted: tuple[str, tuple[int, ...]]  # block and index of the planted element
    torch_loss: Any  # (flat torch tensor) -> scalar tensor
    jax_loss: Any  # (flat jax array) -> scalar

    @property
    def size(self) -> int:
        return sum(v.size for v in self.params.values())

    def gradient(self, planted: bool) -> dict[str, np.ndarray]:
        out = {k: v.copy() for k, v in self.grad.items()}
        if planted:
            block, index = self.planted
            out[block][index] *= 1 + PLANTED_RELATIVE_ERROR
        return out

    def flat(self, tree: dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(tree[k], dtype=np.float64).ravel() for k in self.params])

    def unflat(self, theta: Any) -> dict[str, Any]:
        out, start = {}, 0
        for k, v in self.params.items():
            out[k] = theta[start : start + v.size].reshape(v.shape)
            start += v.size
        return out


def _planted(grad: dict[str, np.ndarray], block: str) -> tuple[str, tuple[int, ...]]:
    """A fixed element of ``block`` whose gradient is not tiny (above the block's median)."""
    g = np.abs(grad[block]).ravel()
    order = np.argsort(g)
    flat = int(order[(3 * g.size) // 4])
    return block, tuple(int(i) for i in np.unravel_index(flat, grad[block].shape))


def fraud_network() -> Workload:
    """The notebook's 4-5-3-1 network, its corrected backprop, a planted element in W2."""
    X, Y, params = fraud.gradient_check_n_test_case()
    _, cache = fraud.forward_propagation_n(X, Y, params)
    grads = fraud.backward_propagation_n_fixed(X, Y, cache)
    grad = {k: grads["d" + k] for k in fraud.KEYS}

    def loss(p: dict[str, np.ndarray]) -> float:
        return fraud.forward_propagation_n(X, Y, p)[0]

    w = Workload(
        "fraud", params, loss, fraud.batched_loss(X, Y), grad, _planted(grad, "W2"), None, None
    )
    w.torch_loss = lambda theta: _torch_fraud(w, theta, X, Y)
    w.jax_loss = lambda theta: _jax_fraud(w, theta, X, Y)
    return w


def _torch_fraud(w: Workload, theta: Any, X: np.ndarray, Y: np.ndarray) -> Any:
    import torch

    p = w.unflat(theta)
    x, y = torch.from_numpy(X), torch.from_numpy(Y.astype(np.float64))
    a1 = torch.relu(p["W1"] @ x + p["b1"])
    a2 = torch.relu(p["W2"] @ a1 + p["b2"])
    a3 = torch.sigmoid(p["W3"] @ a2 + p["b3"])
    return torch.mean(-torch.log(a3) * y - torch.log(1 - a3) * (1 - y)) * 1.0


def _jax_fraud(w: Workload, theta: Any, X: np.ndarray, Y: np.ndarray) -> Any:
    import jax
    import jax.numpy as jnp

    p = w.unflat(theta)
    a1 = jax.nn.relu(p["W1"] @ X + p["b1"])
    a2 = jax.nn.relu(p["W2"] @ a1 + p["b2"])
    a3 = jax.nn.sigmoid(p["W3"] @ a2 + p["b3"])
    return jnp.mean(-jnp.log(a3) * Y - jnp.log(1 - a3) * (1 - Y))


def mlp(name: str) -> Workload:
    sizes = MLPS[name]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(BATCH, sizes[0]))
    Y = rng.normal(size=(BATCH, 1))
    params: dict[str, np.ndarray] = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        params[f"W{i}"] = rng.normal(size=(a, b)) / np.sqrt(a)
        params[f"b{i}"] = 0.1 * rng.normal(size=(b,))
    layers = len(sizes) - 1

    def loss(q: dict[str, np.ndarray]) -> float:
        h = X
        for i in range(layers):
            z = h @ q[f"W{i}"] + q[f"b{i}"]
            h = np.tanh(z) if i < layers - 1 else z
        return float(0.5 * np.mean((h - Y) ** 2))

    def batched(q: dict[str, np.ndarray]) -> np.ndarray:
        h: np.ndarray = X  # 2-D: matmul broadcasts it over the K parameter sets
        for i in range(layers):
            z = h @ q[f"W{i}"] + q[f"b{i}"][:, None, :]
            h = np.tanh(z) if i < layers - 1 else z
        return 0.5 * np.mean((h - Y) ** 2, axis=(1, 2))

    def backprop(q: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        hs, h = [X], X
        for i in range(layers):
            z = h @ q[f"W{i}"] + q[f"b{i}"]
            h = np.tanh(z) if i < layers - 1 else z
            hs.append(h)
        d = (h - Y) / X.shape[0]
        g: dict[str, np.ndarray] = {}
        for i in reversed(range(layers)):
            g[f"W{i}"] = hs[i].T @ d
            g[f"b{i}"] = d.sum(0)
            if i:
                d = (d @ q[f"W{i}"].T) * (1 - hs[i] ** 2)
        return {k: g[k] for k in params}

    grad = backprop(params)
    w = Workload(name, params, loss, batched, grad, _planted(grad, "W1"), None, None)

    def torch_loss(theta: Any) -> Any:
        import torch

        p, h = w.unflat(theta), torch.from_numpy(X)
        for i in range(layers):
            z = h @ p[f"W{i}"] + p[f"b{i}"]
            h = torch.tanh(z) if i < layers - 1 else z
        return 0.5 * torch.mean((h - torch.from_numpy(Y)) ** 2)

    def jax_loss(theta: Any) -> Any:
        import jax.numpy as jnp

        p, h = w.unflat(theta), X
        for i in range(layers):
            z = h @ p[f"W{i}"] + p[f"b{i}"]
            h = jnp.tanh(z) if i < layers - 1 else z
        return 0.5 * jnp.mean((h - Y) ** 2)

    w.torch_loss, w.jax_loss = torch_loss, jax_loss
    return w


def workload(name: str) -> Workload:
    return fraud_network() if name == "fraud" else mlp(name)
