"""A corpus of hand-written numpy layers, each with planted backward bugs.

Every layer is written the classic way: a forward pass, and a backward pass that
takes an upstream gradient ``dout`` and returns the gradient of every block. The
scalar loss is ``sum(out * dout)`` for a fixed random ``dout`` (the loss layers
-- softmax, SVM, sigmoid + BCE -- are scalars already), so the gradient of the
loss is exactly what the backward returns.

A case is built by a factory, ``affine(style, bug=None)``, or by
``case("affine", style, bug)``. ``style`` fixes every dtype:

=============  ============  ================  ==============================
style          params        loss computes in  gradient
=============  ============  ================  ==============================
``f64``        float64       float64 -> float  float64
``f32-float``  float32       float32 -> float  float64 (exact at the point)
``f32-np``     float32       float32 -> np.float32  float64
``f32-acc64``  float32       float32 -> float  float32 arithmetic; loop layers
                                               accumulate into float64
                                               ``np.zeros(shape)`` buffers
``f32-grad``   float32       float32 -> float  float32 throughout
``bf16``       bfloat16      bfloat16 -> float float64 (needs ml_dtypes)
``f16``        float16       float16 -> float  float64
=============  ============  ================  ==============================

Fixed data (``dout``, labels, masks) is stored in the params' dtype, so the loss
and the backward see the same numbers. gradproof hands the loss read-only
float64 views of the params, so both the loss and the backward cast inside.

A bug is a variant of one layer's backward, selected by name. :data:`BUGS` lists
them with the block the check must name first (suspects run latest block first)
and the bug's relative size ``||g_bug - g|| / ||g||`` on that block in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes ships with the test extras here
    ml_dtypes = None

STYLES = ("f64", "f32-float", "f32-np", "f32-acc64", "f32-grad", "bf16", "f16")
F32_STYLES = ("f32-float", "f32-np", "f32-acc64", "f32-grad")
LOW_STYLES = ("bf16", "f16")


# --------------------------------------------------------------------- styles


@dataclass(frozen=True)
class _Style:
    store: Any  # dtype of params and fixed data
    loss: Any  # dtype the loss computes in
    grad: Any  # dtype the backward computes in
    acc64: bool = False  # accumulation buffers np.zeros(shape), i.e. float64
    np_scalar: bool = False  # the loss returns np.float32 instead of float
    grad_out: Any = None  # cast the returned gradient to this dtype


def _style(name: str) -> _Style:
    f64, f32 = np.float64, np.float32
    if name == "f64":
        return _Style(f64, f64, f64)
    if name == "f32-float":
        return _Style(f32, f32, f64)
    if name == "f32-np":
        return _Style(f32, f32, f64, np_scalar=True)
    if name == "f32-acc64":
        return _Style(f32, f32, f32, acc64=True)
    if name == "f32-grad":
        return _Style(f32, f32, f32, grad_out=f32)
    if name == "bf16":
        if ml_dtypes is None:
            raise RuntimeError("style 'bf16' needs ml_dtypes: pip install ml_dtypes")
        return _Style(ml_dtypes.bfloat16, ml_dtypes.bfloat16, f64)
    if name == "f16":
        return _Style(np.float16, np.float16, f64)
    raise ValueError(f"style={name!r}: must be one of {STYLES}")


# --------------------------------------------------------------------- helpers
# The forwards run in any dtype, bfloat16 included. ml_dtypes promotes bfloat16 with a
# Python float to float32 and matmuls bfloat16 into float32, so constants are made in
# the array's dtype (_k) and products are cast back (_mm).


def _k(value: float, like: np.ndarray) -> np.ndarray:
    return np.asarray(value, dtype=like.dtype)


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a, b).astype(np.result_type(a, b), copy=False)


def _td(a: np.ndarray, b: np.ndarray, axes: Any) -> np.ndarray:
    return np.tensordot(a, b, axes=axes).astype(np.result_type(a, b), copy=False)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    one = _k(1.0, z)
    return one / (one + np.exp(-z))


def _softmax(s: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(s - s.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _away(rng: np.random.Generator, shape: tuple[int, ...], lo: float = 0.2, hi: float = 1.5):
    """Values whose magnitude lies in [lo, hi]: clear of a kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, hi, size=shape)


def _double_largest(g: np.ndarray) -> np.ndarray:
    """One single wrong element: the largest one, doubled."""
    g = g.copy()
    g.flat[int(np.argmax(np.abs(g)))] *= 2
    return g


# ------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    """A loss, its params and a hand-written gradient, ready for ``gradproof.check``."""

    layer: str
    style: str
    bug: str | None
    loss: Callable[[Any], Any]
    params: dict[str, np.ndarray]
    grad: Callable[[Any], dict[str, np.ndarray]]

    @property
    def dtype(self) -> np.dtype:
        return next(iter(self.params.values())).dtype


@dataclass(frozen=True)
class Bug:
    """A planted bug: the layer, its name, the block named first, its relative size."""

    layer: str
    name: str
    block: str
    size: float
    what: str

    @property
    def id(self) -> str:
        return f"{self.layer}/{self.name}"


@dataclass(frozen=True)
class _Layer:
    make: Callable[[np.random.Generator], tuple[dict, dict]]
    forward: Callable[[dict, dict], tuple[Any, Any]]
    backward: Callable[..., dict]
    scalar: bool = False  # the forward's output is the loss itself
    seed: int = 0


def _cast(tree: dict, dtype: Any) -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, tuple):
            out[key] = tuple(np.asarray(v).astype(dtype) for v in value)
        elif np.asarray(value).dtype.kind in "iub":
            out[key] = value
        else:
            out[key] = np.asarray(value).astype(dtype)
    return out


def _build(layer: str, style: str, bug: str | None) -> Case:
    spec = _LAYERS[layer]
    st = _style(style)
    if bug is not None and (layer, bug) not in _BUG_INDEX:
        raise ValueError(f"bug={bug!r}: layer {layer!r} has no such bug")
    params64, data64 = spec.make(np.random.default_rng(spec.seed))
    params = {k: np.asarray(v, dtype=np.float64).astype(st.store) for k, v in params64.items()}
    data = _cast(data64, st.store)
    names = tuple(params)

    def loss(p):
        P = {k: np.asarray(p[k]).astype(st.loss) for k in names}
        D = _cast(data, st.loss)
        out, _ = spec.forward(P, D)
        if spec.scalar:
            value = out
        elif isinstance(out, tuple):
            value = sum(np.sum(o * d) for o, d in zip(out, D["dout"], strict=True))
        else:
            value = np.sum(out * D["dout"])
        return np.float32(value) if st.np_scalar else float(value)

    def grad(p):
        P = {k: np.asarray(p[k]).astype(st.grad) for k in names}
        D = _cast(data, st.grad)
        out, cache = spec.forward(P, D)

        def zeros(shape):
            return np.zeros(shape) if st.acc64 else np.zeros(shape, dtype=st.grad)

        g = spec.backward(D.get("dout"), cache, P, D, zeros, bug)
        if st.grad_out is not None:
            g = {k: np.asarray(v).astype(st.grad_out) for k, v in g.items()}
        return {k: g[k] for k in names}

    return Case(layer, style, bug, loss, params, grad)


# ---------------------------------------------------------------- 1. affine


def _affine_make(rng):
    params = {
        "x": rng.normal(size=(3, 4)),
        "W": rng.normal(size=(4, 4)) / 2,
        "b": rng.normal(size=4),
    }
    return params, {"dout": rng.normal(size=(3, 4))}


def _affine_forward(P, D):
    return _mm(P["x"], P["W"]) + P["b"], None


def _affine_backward(dout, cache, P, D, zeros, bug):
    x, W = P["x"], P["W"]
    dx = dout @ (W if bug == "dx_transposed" else W.T)
    dW = x.T @ dout
    db = dout.mean(axis=0) if bug == "db_mean" else dout.sum(axis=0)
    if bug == "dW_sign":
        dW = -dW
    if bug == "dW_one_element":
        dW = _double_largest(dW)
    return {"x": dx, "W": dW, "b": db}


# ------------------------------------------------------------------ 2-3. relu


def _relu_make(rng):
    return {"x": _away(rng, (3, 5))}, {"dout": rng.normal(size=(3, 5))}


def _relu_zeros_make(rng):
    x = _away(rng, (3, 5))
    x.flat[[0, 4, 7, 13]] = 0.0
    return {"x": x}, {"dout": _away(rng, (3, 5))}


def _relu_forward(P, D):
    x = P["x"]
    return np.maximum(x, _k(0.0, x)), x


def _relu_backward(dout, x, P, D, zeros, bug):
    if bug == "no_mask":
        dx = dout.copy()
    elif bug == "inverted_mask":
        dx = dout * (x < 0)
    else:
        dx = dout * (x > 0)
    if bug == "sign":
        dx = -dx
    if bug == "one_element":
        dx = _double_largest(dx)
    return {"x": dx}


# ----------------------------------------------------------- 4. affine + relu


def _affine_relu_make(rng):
    # Redraw until every pre-activation stays clear of the kink.
    while True:
        params = {
            "x": rng.normal(size=(3, 4)),
            "W": rng.normal(size=(4, 4)) / 2,
            "b": rng.normal(size=4),
        }
        z = params["x"] @ params["W"] + params["b"]
        if np.abs(z).min() > 0.2 and (z > 0).mean() > 0.3:
            return params, {"dout": rng.normal(size=(3, 4))}


def _affine_relu_forward(P, D):
    x, W = P["x"], P["W"]
    z = _mm(x, W) + P["b"]
    out = np.maximum(z, _k(0.0, z))
    return out, (z, out)


def _affine_relu_backward(dout, cache, P, D, zeros, bug):
    z, out = cache
    x, W = P["x"], P["W"]
    dz = dout.copy() if bug == "forgot_mask" else dout * (z > 0)
    dx = dz @ (W if bug == "dx_transposed" else W.T)
    if bug == "dW_unmasked":
        dW = x.T @ dout
    elif bug == "dW_uses_output":
        dW = out.T @ dz
    else:
        dW = x.T @ dz
    db = dout.sum(axis=0) if bug == "db_unmasked" else dz.sum(axis=0)
    return {"x": dx, "W": dW, "b": db}


# ----------------------------------------------------------------- 5-6. conv


def _conv_make_with(shape_x, shape_w, stride, pad):
    def make(rng):
        params = {
            "x": rng.normal(size=shape_x),
            "w": rng.normal(size=shape_w) / 3,
            "b": rng.normal(size=shape_w[0]),
        }
        Ho, Wo = _conv_geometry(params["x"], params["w"], stride, pad)
        return params, {"dout": rng.normal(size=(shape_x[0], shape_w[0], Ho, Wo))}

    return make


def _conv_geometry(x, w, stride, pad):
    H, W = x.shape[2:]
    HH, WW = w.shape[2:]
    return 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride


def _conv_forward_with(stride, pad):
    def forward(P, D):
        x, w, b = P["x"], P["w"], P["b"]
        HH, WW = w.shape[2:]
        Ho, Wo = _conv_geometry(x, w, stride, pad)
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        out = np.empty((x.shape[0], w.shape[0], Ho, Wo), dtype=x.dtype)
        for i in range(Ho):
            for j in range(Wo):
                win = xp[:, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
                out[:, :, i, j] = _td(win, w, ([1, 2, 3], [1, 2, 3])) + b
        return out, xp

    return forward


def _conv_backward_with(stride, pad):
    def backward(dout, xp, P, D, zeros, bug):
        x, w = P["x"], P["w"]
        HH, WW = w.shape[2:]
        N, F, Ho, Wo = dout.shape
        dxp, dw, db = zeros(xp.shape), zeros(w.shape), zeros(w.shape[0])
        if bug == "db_first_sample":
            db += dout[0].sum(axis=(1, 2))
        elif bug != "db_dropped":
            db += dout.sum(axis=(0, 2, 3))
        for i in range(Ho):
            for j in range(Wo):
                rows = slice(i * stride, i * stride + HH)
                cols = slice(j * stride, j * stride + WW)
                d = dout[:, :, i, j]  # (N, F)
                if bug == "dw_no_stride":
                    win = xp[:, :, i : i + HH, j : j + WW]
                elif bug == "dw_swapped_ij":
                    win = xp[:, :, j * stride : j * stride + HH, i * stride : i * stride + WW]
                else:
                    win = xp[:, :, rows, cols]
                if bug == "dw_flipped":
                    win = win[:, :, ::-1, ::-1]
                dw += np.tensordot(d, win, axes=([0], [0]))
                dwin = np.tensordot(d, w, axes=([1], [0]))  # (N, C, HH, WW)
                if bug == "dx_overwrite":
                    dxp[:, :, rows, cols] = dwin
                else:
                    dxp[:, :, rows, cols] += dwin
        H, W = x.shape[2:]
        if bug == "dx_unpad_offset":
            dx = dxp[:, :, :H, :W]
        else:
            dx = dxp[:, :, pad : pad + H, pad : pad + W]
        if bug == "dx_sign":
            dx = -dx
        return {"x": dx, "w": dw, "b": db}

    return backward


# -------------------------------------------------------------- 7-9. pooling


def _pool_make(rng):
    # Distinct values, at least 0.1 apart, so that no window holds a near-tie.
    x = rng.permutation(64).reshape(2, 2, 4, 4) * 0.1 - 3.2
    return {"x": x}, {"dout": rng.normal(size=(2, 2, 2, 2))}


def _pool_ties_make(rng):
    x = rng.permutation(32).reshape(1, 2, 4, 4) * 0.1 - 1.6
    for c, i, j in [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)]:
        win = x[0, c, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
        top = win.max()
        win[0, 0] = win[1, 1] = top  # two tied maxima in this window
    return {"x": x}, {"dout": _away(rng, (1, 2, 2, 2))}


def _windows(x):
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2)


def _maxpool_forward(P, D):
    x = P["x"]
    return _windows(x).max(axis=(3, 5)), x


def _maxpool_backward(dout, x, P, D, zeros, bug):
    N, C, Ho, Wo = dout.shape
    dx = zeros(x.shape)
    for i in range(Ho):
        for j in range(Wo):
            win = x[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(N, C, 4)
            if bug == "whole_window":
                route = np.ones((N, C, 4))
            elif bug == "avg_backward":
                route = np.full((N, C, 4), 0.25)
            else:
                k = win.argmin(axis=2) if bug == "argmin" else win.argmax(axis=2)
                route = np.eye(4)[k]  # (N, C, 4) one-hot of the first max
            d = dout[:, :, j, i] if bug == "swapped_ij" else dout[:, :, i, j]
            dx[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2] += (route * d[..., None]).reshape(
                N, C, 2, 2
            )
    return {"x": dx}


def _avgpool_forward(P, D):
    x = P["x"]
    return _windows(x).sum(axis=(3, 5)) / _k(4.0, x), None


def _avgpool_backward(dout, cache, P, D, zeros, bug):
    x = P["x"]
    dx = zeros(x.shape)
    share = {"no_divide": 1.0, "divide_by_2": 0.5}.get(bug, 0.25)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            d = dout[:, :, i, j, None, None] * share
            if bug == "top_left_only":
                dx[:, :, 2 * i, 2 * j] += d[..., 0, 0] * 4
            else:
                dx[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2] += d
    return {"x": dx}


# ---------------------------------------------------------- 10-12. normalizing

_NORM_EPS = 1e-5


def _norm_make_with(shape_x, n_features):
    def make(rng):
        params = {
            "x": rng.normal(size=shape_x) * 1.5 + 0.5,
            "gamma": rng.uniform(0.5, 1.5, size=n_features),
            "beta": rng.normal(size=n_features),
        }
        return params, {"dout": rng.normal(size=shape_x)}

    return make


def _normalize(x, axis):
    mu = x.mean(axis=axis, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=axis, keepdims=True)
    std = np.sqrt(var + _k(_NORM_EPS, x))
    return xc / std, std, var


def _norm_dx(dxhat, xhat, std, axis, drop=None):
    """The gradient through (x - mean) / std, the three-term form."""
    mean_d = dxhat.mean(axis=axis, keepdims=True)
    mean_dx = (dxhat * xhat).mean(axis=axis, keepdims=True)
    if drop == "mean":
        mean_d = 0.0
    if drop == "var":
        mean_dx = 0.0
    return (dxhat - mean_d - xhat * mean_dx) / std


def _batchnorm_forward(P, D):
    xhat, std, var = _normalize(P["x"], axis=0)
    return P["gamma"] * xhat + P["beta"], (xhat, std, var)


def _batchnorm_backward(dout, cache, P, D, zeros, bug):
    xhat, std, var = cache
    x, gamma = P["x"], P["gamma"]
    N = x.shape[0]
    dbeta = (dout * xhat).sum(axis=0) if bug == "dbeta_swapped" else dout.sum(axis=0)
    if bug == "dgamma_from_dbeta":
        dgamma = dout.sum(axis=0)
    elif bug == "dgamma_uses_x":
        dgamma = (dout * x).sum(axis=0)
    else:
        dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    if bug == "dx_no_eps":
        std = np.sqrt(var)
    dx = _norm_dx(dxhat, xhat, std, 0, drop="var" if bug == "dx_drop_var_term" else None)
    if bug == "dx_missing_1_over_N":
        dx = dx * N
    return {"x": dx, "gamma": dgamma, "beta": dbeta}


def _layernorm_forward(P, D):
    xhat, std, _ = _normalize(P["x"], axis=1)
    return P["gamma"] * xhat + P["beta"], (xhat, std)


def _layernorm_backward(dout, cache, P, D, zeros, bug):
    xhat, std = cache
    gamma = P["gamma"]
    dbeta = -dout.sum(axis=0) if bug == "dbeta_sign" else dout.sum(axis=0)
    dgamma = (dout * xhat).mean(axis=0) if bug == "dgamma_mean" else (dout * xhat).sum(axis=0)
    dxhat = dout if bug == "dx_forgot_gamma" else dout * gamma
    if bug == "dx_wrong_axis":
        # the statistics' gradient taken over the batch, as in batch norm
        dx = (
            dxhat
            - dxhat.mean(axis=0, keepdims=True)
            - xhat * (dxhat * xhat).mean(axis=0, keepdims=True)
        ) / std
    else:
        dx = _norm_dx(dxhat, xhat, std, 1)
    return {"x": dx, "gamma": dgamma, "beta": dbeta}


_GROUPS = 2


def _groupnorm_forward(P, D):
    x = P["x"]
    N, C = x.shape[:2]
    xhat, std, _ = _normalize(x.reshape(N, _GROUPS, -1), axis=2)
    xhat = xhat.reshape(x.shape)
    out = P["gamma"][None, :, None, None] * xhat + P["beta"][None, :, None, None]
    return out, (xhat, std)


def _groupnorm_backward(dout, cache, P, D, zeros, bug):
    xhat, std = cache
    x, gamma = P["x"], P["gamma"]
    N, C = x.shape[:2]
    dbeta, dgamma = zeros(C), zeros(C)
    if bug != "dbeta_dropped":
        dbeta += dout.sum(axis=(0, 2, 3))
    if bug == "dgamma_first_sample":
        dgamma += (dout * xhat)[0].sum(axis=(1, 2))
    else:
        dgamma += (dout * xhat).sum(axis=(0, 2, 3))
    dxhat = dout * gamma[None, :, None, None]
    if bug == "dx_whole_layer":
        # the means taken over all channels of a sample (layer norm's), not per group
        dx = _norm_dx(dxhat.reshape(N, -1), xhat.reshape(N, -1), 1.0, 1)
        dx = (dx.reshape(N, _GROUPS, -1) / std).reshape(x.shape)
    else:
        drop = "mean" if bug == "dx_drop_mean_term" else None
        dx = _norm_dx(
            dxhat.reshape(N, _GROUPS, -1), xhat.reshape(N, _GROUPS, -1), std, 2, drop=drop
        )
    return {"x": dx.reshape(x.shape), "gamma": dgamma, "beta": dbeta}


# ----------------------------------------------------------------- 13. dropout

_KEEP = 0.6


def _dropout_make(rng):
    x = rng.normal(size=(4, 5))
    mask = (rng.uniform(size=(4, 5)) < _KEEP).astype(float)
    mask.flat[:2] = [0.0, 1.0]  # both kinds present
    return {"x": x}, {"mask": mask, "dout": rng.normal(size=(4, 5))}


def _dropout_forward(P, D):
    x = P["x"]
    return x * D["mask"] / _k(_KEEP, x), None


def _dropout_backward(dout, cache, P, D, zeros, bug):
    mask = D["mask"]
    if bug == "forgot_mask":
        mask = np.ones_like(mask)
    if bug == "inverted_mask":
        mask = 1 - mask
    dx = dout * mask if bug == "forgot_scale" else dout * mask / _KEEP
    return {"x": dx}


# ------------------------------------------------------- 14-15. loss layers


def _scores_make(rng):
    return {"x": rng.normal(size=(5, 4))}, {"y": rng.integers(0, 4, size=5)}


def _svm_make(rng):
    while True:  # every margin clear of its hinge
        x = rng.normal(size=(5, 4))
        y = rng.integers(0, 4, size=5)
        m = x - x[np.arange(5), y][:, None] + 1
        m[np.arange(5), y] = 1
        if np.abs(m).min() > 0.15 and (m > 0).mean() < 0.9:
            return {"x": x}, {"y": y}


def _softmax_forward(P, D):
    x, y = P["x"], D["y"]
    s = x - x.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(y)), y].sum() / _k(len(y), x), None


def _softmax_backward(dout, cache, P, D, zeros, bug):
    x, y = P["x"], D["y"]
    N, C = x.shape
    dx = _softmax(x, axis=0 if bug == "softmax_wrong_axis" else 1)
    label = (y + 1) % C if bug == "label_off_by_one" else y
    if bug != "forgot_minus_one":
        dx[np.arange(N), label] -= 1
    if bug != "no_1_over_N":
        dx = dx / N
    return {"x": dx}


def _svm_forward(P, D):
    x, y = P["x"], D["y"]
    rows = np.arange(len(y))
    m = np.maximum(x - x[rows, y][:, None] + _k(1.0, x), _k(0.0, x))
    m[rows, y] = 0
    return m.sum() / _k(len(y), x), None


def _svm_backward(dout, cache, P, D, zeros, bug):
    x, y = P["x"], D["y"]
    N = len(y)
    rows = np.arange(N)
    delta = 0.0 if bug == "mask_without_delta" else 1.0
    active = (x - x[rows, y][:, None] + delta > 0).astype(x.dtype)
    active[rows, y] = 0
    dx = active.copy()
    if bug != "forgot_label_column":
        dx[rows, y] -= active.sum(axis=1)
    if bug != "no_1_over_N":
        dx = dx / N
    return {"x": dx}


# --------------------------------------------------------------- 16-17. RNN


def _rnn_step_make(rng):
    N, D, H = 3, 4, 5
    params = {
        "x": rng.normal(size=(N, D)),
        "h_prev": rng.normal(size=(N, H)),
        "Wx": rng.normal(size=(D, H)) / 2,
        "Wh": rng.normal(size=(H, H)) / 2,
        "b": rng.normal(size=H) / 2,
    }
    return params, {"dout": rng.normal(size=(N, H))}


def _rnn_step_forward(P, D):
    a = _mm(P["x"], P["Wx"]) + _mm(P["h_prev"], P["Wh"]) + P["b"]
    h = np.tanh(a)
    return h, (a, h)


def _rnn_step_backward(dout, cache, P, D, zeros, bug):
    a, h = cache
    x, h_prev, Wx, Wh = P["x"], P["h_prev"], P["Wx"], P["Wh"]
    dz = dout * (1 - a**2) if bug == "pre_activation" else dout * (1 - h**2)
    dx = -(dz @ Wx.T) if bug == "dx_sign" else dz @ Wx.T
    dh_prev = dz @ Wh if bug == "dh_prev_transposed" else dz @ Wh.T
    dWx = x.T @ dz
    dWh = dz.T @ h_prev if bug == "dWh_transposed" else h_prev.T @ dz
    db = dout.sum(axis=0) if bug == "db_no_tanh_derivative" else dz.sum(axis=0)
    return {"x": dx, "h_prev": dh_prev, "Wx": dWx, "Wh": dWh, "b": db}


def _rnn_seq_make(rng):
    N, T, D, H = 2, 3, 4, 5
    params = {
        "x": rng.normal(size=(N, T, D)),
        "h0": rng.normal(size=(N, H)),
        "Wx": rng.normal(size=(D, H)) / 2,
        "Wh": rng.normal(size=(H, H)) / 2,
        "b": rng.normal(size=H) / 2,
    }
    return params, {"dout": rng.normal(size=(N, T, H))}


def _rnn_seq_forward(P, D):
    x, Wx, Wh, b = P["x"], P["Wx"], P["Wh"], P["b"]
    hs = [P["h0"]]
    for t in range(x.shape[1]):
        hs.append(np.tanh(_mm(x[:, t], Wx) + _mm(hs[-1], Wh) + b))
    return np.stack(hs[1:], axis=1), hs


def _rnn_seq_backward(dout, hs, P, D, zeros, bug):
    x, Wx, Wh = P["x"], P["Wx"], P["Wh"]
    N, T, _ = x.shape
    dx, dWx, dWh, db = zeros(x.shape), zeros(Wx.shape), zeros(Wh.shape), zeros(Wh.shape[0])
    dprev = zeros(hs[0].shape)
    for t in range(T - 1, 0, -1) if bug == "skips_t0" else range(T - 1, -1, -1):
        h, h_prev = hs[t + 1], hs[t]
        dh = dout[:, t] if bug == "no_carry" else dout[:, t] + dprev
        dz = dh * (1 - h**2)
        dx[:, (t + 1) % T if bug == "dx_time_shift" else t] += dz @ Wx.T
        if bug == "dWx_overwrite":
            dWx = x[:, t].T @ dz
        else:
            dWx += x[:, t].T @ dz
        dWh += (h if bug == "dWh_uses_current_h" else h_prev).T @ dz
        db += dz.sum(axis=0)
        dprev = dz @ Wh.T
    dh0 = zeros(dprev.shape) if bug == "dh0_dropped" else dprev
    return {"x": dx, "h0": dh0, "Wx": dWx, "Wh": dWh, "b": db}


# -------------------------------------------------------------- 18-19. LSTM


def _lstm_gates(a, prev_c):
    H = a.shape[1] // 4
    i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H : 2 * H]), _sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    c = f * prev_c + i * g
    return i, f, o, g, c, o * np.tanh(c)


def _lstm_step_back(dh, dc, cache, bug):
    """One LSTM step's backward: (da, dprev_c) from the gradients of h and c."""
    i, f, o, g, c, prev_c = cache
    tc = np.tanh(c)
    dc_total = dc if bug == "dc_missing_h_path" else dc + dh * o * (1 - tc**2)
    do = dh * c if bug == "do_uses_c" else dh * tc
    di, df, dg = dc_total * g, dc_total * prev_c, dc_total * i
    dprev_c = dc_total if bug == "dprev_c_no_forget" else dc_total * f
    dgate_g = dg * g * (1 - g) if bug == "dg_sigmoid_derivative" else dg * (1 - g**2)
    parts = [di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dgate_g]
    if bug == "gates_if_swapped":
        parts[0], parts[1] = parts[1], parts[0]
    return np.concatenate(parts, axis=1), dprev_c


def _lstm_params(rng, x_shape, N, D, H):
    return {
        "x": rng.normal(size=x_shape),
        "h0": rng.normal(size=(N, H)) / 2,
        "Wx": rng.normal(size=(D, 4 * H)) / 2,
        "Wh": rng.normal(size=(H, 4 * H)) / 2,
        "b": rng.normal(size=4 * H) / 2,
    }


def _lstm_step_make(rng):
    N, D, H = 2, 3, 3
    p = _lstm_params(rng, (N, D), N, D, H)
    params = {
        "x": p["x"],
        "prev_h": p["h0"],
        "prev_c": rng.normal(size=(N, H)),
        "Wx": p["Wx"],
        "Wh": p["Wh"],
        "b": p["b"],
    }
    return params, {"dout": (rng.normal(size=(N, H)), rng.normal(size=(N, H)))}


def _lstm_step_forward(P, D):
    a = _mm(P["x"], P["Wx"]) + _mm(P["prev_h"], P["Wh"]) + P["b"]
    i, f, o, g, c, h = _lstm_gates(a, P["prev_c"])
    return (h, c), (i, f, o, g, c, P["prev_c"])


def _lstm_step_backward(dout, cache, P, D, zeros, bug):
    dh, dc = dout
    x, prev_h, Wx, Wh = P["x"], P["prev_h"], P["Wx"], P["Wh"]
    da, dprev_c = _lstm_step_back(dh, dc, cache, bug)
    dx = -(da @ Wx.T) if bug == "dx_sign" else da @ Wx.T
    dprev_h = np.zeros_like(prev_h) if bug == "dprev_h_dropped" else da @ Wh.T
    dWx = x.T @ da
    if bug == "dWx_one_element":
        dWx = _double_largest(dWx)
    return {
        "x": dx,
        "prev_h": dprev_h,
        "prev_c": dprev_c,
        "Wx": dWx,
        "Wh": prev_h.T @ da,
        "b": da.sum(axis=0),
    }


def _lstm_seq_make(rng):
    N, T, D, H = 2, 3, 3, 3
    return _lstm_params(rng, (N, T, D), N, D, H), {"dout": rng.normal(size=(N, T, H))}


def _lstm_seq_forward(P, D):
    x, Wx, Wh, b = P["x"], P["Wx"], P["Wh"], P["b"]
    h = P["h0"]
    c = np.zeros_like(h)
    hs, caches = [h], []
    for t in range(x.shape[1]):
        a = _mm(x[:, t], Wx) + _mm(h, Wh) + b
        i, f, o, g, c_new, h = _lstm_gates(a, c)
        caches.append((i, f, o, g, c_new, c))
        c = c_new
        hs.append(h)
    return np.stack(hs[1:], axis=1), (hs, caches)


def _lstm_seq_backward(dout, cache, P, D, zeros, bug):
    hs, caches = cache
    x, Wx, Wh = P["x"], P["Wx"], P["Wh"]
    N, T, _ = x.shape
    dx, dWx, dWh, db = zeros(x.shape), zeros(Wx.shape), zeros(Wh.shape), zeros(Wx.shape[1])
    dh_next, dc_next = zeros(hs[0].shape), zeros(hs[0].shape)
    for t in range(T - 1, -1, -1):
        dh = dout[:, t] if bug == "no_h_carry" else dout[:, t] + dh_next
        dc = zeros(dc_next.shape) if bug == "dc_not_carried" else dc_next
        da, dc_next = _lstm_step_back(dh, dc, caches[t], None)
        dx[:, (t + 1) % T if bug == "dx_time_shift" else t] += da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += hs[t + 1 if bug == "dWh_uses_current_h" else t].T @ da
        db += da.sum(axis=0)
        dh_next = da @ Wh.T
    dh0 = zeros(dh_next.shape) if bug == "dh0_dropped" else dh_next
    return {"x": dx, "h0": dh0, "Wx": dWx, "Wh": dWh, "b": db}


# ------------------------------------------------------------ 20. embedding


def _embedding_make(rng):
    idx = np.array([[0, 2, 2, 5], [3, 0, 2, 1]])  # repeated words: 0 twice, 2 three times
    return {"W": rng.normal(size=(6, 3))}, {"idx": idx, "dout": rng.normal(size=(2, 4, 3))}


def _embedding_forward(P, D):
    return P["W"][D["idx"]], None


def _embedding_backward(dout, cache, P, D, zeros, bug):
    idx = D["idx"]
    dW = zeros(P["W"].shape)
    if bug == "fancy_assign":
        dW[idx] += dout  # buffered: a repeated word keeps only its last gradient
    elif bug == "rows_shifted":
        np.add.at(dW, (idx + 1) % dW.shape[0], dout)
    elif bug == "drops_last_step":
        np.add.at(dW, idx[:, :-1], dout[:, :-1])
    else:
        np.add.at(dW, idx, dout)
    return {"W": dW}


# ------------------------------------------------------------ 21. attention


def _attention_make(rng):
    N, T, d, dv = 2, 3, 4, 2
    params = {
        "q": rng.normal(size=(N, T, d)),
        "k": rng.normal(size=(N, T, d)),
        "v": rng.normal(size=(N, T, dv)),
    }
    return params, {"dout": rng.normal(size=(N, T, dv))}


def _attention_forward(P, D):
    q, k, v = P["q"], P["k"], P["v"]
    scale = _k(1 / np.sqrt(q.shape[-1]), q)
    A = _softmax(_mm(q, k.swapaxes(1, 2)) * scale, axis=-1)
    return _mm(A, v), A


def _attention_backward(dout, A, P, D, zeros, bug):
    q, k, v = P["q"], P["k"], P["v"]
    scale = 1 / math.sqrt(q.shape[-1])  # a Python float: keeps float32 arrays float32
    dv = A @ dout if bug == "dv_transposed" else A.swapaxes(1, 2) @ dout
    dA = dout @ v.swapaxes(1, 2)
    if bug == "jacobian_missing_term":
        ds = A * dA
    elif bug == "jacobian_wrong_axis":
        ds = A * (dA - (dA * A).sum(axis=-2, keepdims=True))
    else:
        ds = A * (dA - (dA * A).sum(axis=-1, keepdims=True))
    dq = ds @ k if bug == "dq_missing_scale" else ds @ k * scale
    dk = ds @ q * scale if bug == "dk_not_transposed" else ds.swapaxes(1, 2) @ q * scale
    return {"q": dq, "k": dk, "v": dv}


# ----------------------------------------------------------- 22. tanh MLP


def _mlp_make(rng):
    params = {
        "x": rng.normal(size=(3, 4)),
        "W1": rng.normal(size=(4, 5)) / 2,
        "b1": rng.normal(size=5) / 2,
        "W2": rng.normal(size=(5, 3)) / 2,
        "b2": rng.normal(size=3) / 2,
    }
    return params, {"dout": rng.normal(size=(3, 3))}


def _mlp_forward(P, D):
    h = np.tanh(_mm(P["x"], P["W1"]) + P["b1"])
    z2 = _mm(h, P["W2"]) + P["b2"]
    out = np.tanh(z2)
    return out, (h, z2, out)


def _mlp_backward(dout, cache, P, D, zeros, bug):
    h, z2, out = cache
    x, W1, W2 = P["x"], P["W1"], P["W2"]
    dz2 = dout * (1 - z2**2) if bug == "layer2_pre_activation" else dout * (1 - out**2)
    db2 = dz2.mean(axis=0) if bug == "db2_mean" else dz2.sum(axis=0)
    dh = dz2 @ W2.T
    dz1 = dh if bug == "layer1_forgot_derivative" else dh * (1 - h**2)
    dW1 = x.T @ dh if bug == "dW1_before_derivative" else x.T @ dz1
    dx = -(dz1 @ W1.T) if bug == "dx_sign" else dz1 @ W1.T
    return {"x": dx, "W1": dW1, "b1": dz1.sum(axis=0), "W2": h.T @ dz2, "b2": db2}


# ---------------------------------------------------- 23. sigmoid + BCE


def _bce_make(rng):
    params = {"x": rng.normal(size=(6, 3)), "w": rng.normal(size=3), "b": rng.normal(size=1) / 2}
    return params, {"y": np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])}


def _bce_forward(P, D):
    x, y = P["x"], D["y"]
    p = _sigmoid(_mm(x, P["w"]) + P["b"])
    one = _k(1.0, p)
    return -(y * np.log(p) + (one - y) * np.log(one - p)).sum() / _k(len(y), p), p


def _bce_backward(dout, p, P, D, zeros, bug):
    x, w, y = P["x"], P["w"], D["y"]
    N = len(y)
    dz = y - p if bug == "dz_sign" else p - y
    if bug == "extra_sigmoid_derivative":
        dz = dz * p * (1 - p)
    if bug != "no_1_over_N":
        dz = dz / N
    dx = dz[:, None] * (np.ones_like(w) if bug == "dx_forgot_w" else w)[None, :]
    dw = x.T @ dz
    if bug == "dw_one_element":
        dw = _double_largest(dw)
    db = np.array([dz.mean() if bug == "db_mean" else dz.sum()], dtype=dz.dtype)
    return {"x": dx, "w": dw, "b": db}


# ---------------------------------------------------------------- the registry

_LAYERS: dict[str, _Layer] = {
    "affine": _Layer(_affine_make, _affine_forward, _affine_backward, seed=1),
    "relu": _Layer(_relu_make, _relu_forward, _relu_backward, seed=2),
    "relu_zeros": _Layer(_relu_zeros_make, _relu_forward, _relu_backward, seed=3),
    "affine_relu": _Layer(_affine_relu_make, _affine_relu_forward, _affine_relu_backward, seed=4),
    "conv": _Layer(
        _conv_make_with((2, 2, 5, 5), (3, 2, 3, 3), 2, 1),
        _conv_forward_with(2, 1),
        _conv_backward_with(2, 1),
        seed=5,
    ),
    "conv_s1": _Layer(
        _conv_make_with((2, 2, 4, 4), (2, 2, 3, 3), 1, 0),
        _conv_forward_with(1, 0),
        _conv_backward_with(1, 0),
        seed=6,
    ),
    "maxpool": _Layer(_pool_make, _maxpool_forward, _maxpool_backward, seed=7),
    "maxpool_ties": _Layer(_pool_ties_make, _maxpool_forward, _maxpool_backward, seed=8),
    "avgpool": _Layer(_pool_make, _avgpool_forward, _avgpool_backward, seed=9),
    "batchnorm": _Layer(
        _norm_make_with((5, 3), 3), _batchnorm_forward, _batchnorm_backward, seed=10
    ),
    "layernorm": _Layer(
        _norm_make_with((4, 5), 5), _layernorm_forward, _layernorm_backward, seed=11
    ),
    "groupnorm": _Layer(
        _norm_make_with((2, 4, 2, 2), 4), _groupnorm_forward, _groupnorm_backward, seed=12
    ),
    "dropout": _Layer(_dropout_make, _dropout_forward, _dropout_backward, seed=13),
    "softmax_loss": _Layer(_scores_make, _softmax_forward, _softmax_backward, scalar=True, seed=14),
    "svm_loss": _Layer(_svm_make, _svm_forward, _svm_backward, scalar=True, seed=15),
    "rnn_step": _Layer(_rnn_step_make, _rnn_step_forward, _rnn_step_backward, seed=16),
    "rnn_seq": _Layer(_rnn_seq_make, _rnn_seq_forward, _rnn_seq_backward, seed=17),
    "lstm_step": _Layer(_lstm_step_make, _lstm_step_forward, _lstm_step_backward, seed=18),
    "lstm_seq": _Layer(_lstm_seq_make, _lstm_seq_forward, _lstm_seq_backward, seed=19),
    "embedding": _Layer(_embedding_make, _embedding_forward, _embedding_backward, seed=20),
    "attention": _Layer(_attention_make, _attention_forward, _attention_backward, seed=21),
    "tanh_mlp": _Layer(_mlp_make, _mlp_forward, _mlp_backward, seed=22),
    "sigmoid_bce": _Layer(_bce_make, _bce_forward, _bce_backward, scalar=True, seed=23),
}
LAYERS = tuple(_LAYERS)

# (layer, bug, block named first, relative size in float64, what it is)
_BUG_TABLE = [
    ("affine", "dx_transposed", "x", 1.1, "dx = dout @ W instead of dout @ W.T"),
    ("affine", "dW_sign", "W", 2.0, "dW with its sign flipped"),
    ("affine", "db_mean", "b", 0.67, "db averaged over the batch instead of summed"),
    ("affine", "dW_one_element", "W", 0.8, "one element of dW doubled"),
    ("relu", "no_mask", "x", 1.4, "the mask forgotten: dx = dout"),
    ("relu", "inverted_mask", "x", 1.7, "the mask inverted: x < 0"),
    ("relu", "one_element", "x", 0.72, "one element of dx doubled"),
    ("relu_zeros", "no_mask", "x", 2.1, "the mask forgotten: dx = dout"),
    ("relu_zeros", "sign", "x", 2.0, "dx with its sign flipped"),
    ("affine_relu", "forgot_mask", "b", 0.65, "the relu mask forgotten for every block"),
    ("affine_relu", "db_unmasked", "b", 0.65, "db summed from dout, not the masked dz"),
    ("affine_relu", "dW_unmasked", "W", 0.82, "dW from dout, not the masked dz"),
    ("affine_relu", "dW_uses_output", "W", 1.4, "dW from the layer's output, not its input"),
    ("affine_relu", "dx_transposed", "x", 1.1, "dx = dz @ W instead of dz @ W.T"),
    ("conv", "db_first_sample", "b", 0.48, "db summed over the first sample only"),
    ("conv", "dw_flipped", "w", 1.3, "dw from the window flipped (convolution vs correlation)"),
    ("conv", "dw_no_stride", "w", 1.5, "dw windows taken at stride 1"),
    ("conv", "dx_unpad_offset", "x", 1.4, "dx cut from the padded buffer at the wrong offset"),
    ("conv", "dx_sign", "x", 2.0, "dx with its sign flipped"),
    ("conv_s1", "dx_overwrite", "x", 0.73, "overlapping windows overwrite dx (= not +=)"),
    ("conv_s1", "db_dropped", "b", 1.0, "db left at zero"),
    ("conv_s1", "dw_swapped_ij", "w", 1.4, "dw windows at (j, i) instead of (i, j)"),
    ("maxpool", "whole_window", "x", 1.7, "dout routed to the whole window"),
    ("maxpool", "argmin", "x", 1.4, "dout routed to the window's minimum"),
    ("maxpool", "avg_backward", "x", 0.87, "average-pool backward used"),
    ("maxpool", "swapped_ij", "x", 1.0, "dout read at (j, i)"),
    ("maxpool_ties", "whole_window", "x", 1.7, "dout routed to the whole window"),
    ("maxpool_ties", "argmin", "x", 1.4, "dout routed to the window's minimum"),
    ("avgpool", "no_divide", "x", 3.0, "the 1/4 forgotten"),
    ("avgpool", "divide_by_2", "x", 1.0, "divided by 2 instead of 4"),
    ("avgpool", "top_left_only", "x", 1.7, "the whole window's share sent to one corner"),
    ("batchnorm", "dx_drop_var_term", "x", 1.2, "dx without the variance term"),
    ("batchnorm", "dgamma_from_dbeta", "gamma", 1.7, "dgamma = sum(dout), dbeta's formula"),
    ("batchnorm", "dbeta_swapped", "beta", 2.2, "dbeta = sum(dout * xhat), dgamma's formula"),
    ("batchnorm", "dgamma_uses_x", "gamma", 0.23, "dgamma from x instead of xhat"),
    ("batchnorm", "dx_no_eps", "x", 6.4e-06, "dx divides by sqrt(var), without eps"),
    ("batchnorm", "dx_missing_1_over_N", "x", 4.0, "dx without its 1/N"),
    ("layernorm", "dx_wrong_axis", "x", 1.3, "dx's means over the batch axis"),
    ("layernorm", "dgamma_mean", "gamma", 0.75, "dgamma averaged instead of summed"),
    ("layernorm", "dbeta_sign", "beta", 2.0, "dbeta with its sign flipped"),
    ("layernorm", "dx_forgot_gamma", "x", 0.47, "dxhat = dout, gamma forgotten"),
    ("groupnorm", "dx_whole_layer", "x", 0.85, "dx's means over all channels, not the group"),
    ("groupnorm", "dgamma_first_sample", "gamma", 0.75, "dgamma from the first sample only"),
    ("groupnorm", "dbeta_dropped", "beta", 1.0, "dbeta left at zero"),
    ("groupnorm", "dx_drop_mean_term", "x", 0.86, "dx without the mean term"),
    ("dropout", "forgot_mask", "x", 1.2, "the mask forgotten"),
    ("dropout", "forgot_scale", "x", 0.4, "the 1/keep_prob forgotten"),
    ("dropout", "inverted_mask", "x", 1.5, "the mask inverted"),
    ("softmax_loss", "no_1_over_N", "x", 4.0, "the 1/N forgotten"),
    ("softmax_loss", "forgot_minus_one", "x", 0.92, "the -1 at the label forgotten"),
    ("softmax_loss", "softmax_wrong_axis", "x", 0.37, "softmax over the batch axis"),
    ("softmax_loss", "label_off_by_one", "x", 1.3, "the -1 at label + 1"),
    ("svm_loss", "forgot_label_column", "x", 0.85, "the label column's -count forgotten"),
    ("svm_loss", "mask_without_delta", "x", 0.52, "the active mask tested without the + 1"),
    ("svm_loss", "no_1_over_N", "x", 4.0, "the 1/N forgotten"),
    ("rnn_step", "pre_activation", "b", 6.4, "tanh' from the pre-activation"),
    ("rnn_step", "dWh_transposed", "Wh", 1.3, "dWh = dz.T @ h_prev, transposed"),
    ("rnn_step", "dh_prev_transposed", "h_prev", 1.2, "dh_prev = dz @ Wh, not Wh.T"),
    ("rnn_step", "dx_sign", "x", 2.0, "dx with its sign flipped"),
    ("rnn_step", "db_no_tanh_derivative", "b", 1.9, "db summed from dout, not dz"),
    ("rnn_seq", "no_carry", "b", 0.34, "the gradient from later steps not carried back"),
    ("rnn_seq", "dh0_dropped", "h0", 1.0, "dh0 left at zero"),
    ("rnn_seq", "skips_t0", "b", 0.12, "the loop back stops before t = 0"),
    ("rnn_seq", "dWx_overwrite", "Wx", 0.88, "dWx = instead of += over time"),
    ("rnn_seq", "dx_time_shift", "x", 1.4, "dx[:, t] written at t + 1"),
    ("rnn_seq", "dWh_uses_current_h", "Wh", 1.4, "dWh from h_t instead of h_{t-1}"),
    ("lstm_step", "dc_missing_h_path", "b", 0.68, "dc without the path through h"),
    ("lstm_step", "dprev_c_no_forget", "prev_c", 1.5, "dprev_c not multiplied by f"),
    ("lstm_step", "gates_if_swapped", "b", 1.2, "the i and f gate gradients swapped"),
    ("lstm_step", "dg_sigmoid_derivative", "b", 1.7, "the g gate with sigmoid's derivative"),
    ("lstm_step", "do_uses_c", "b", 0.0065, "do = dh * c, not dh * tanh(c)"),
    ("lstm_step", "dx_sign", "x", 2.0, "dx with its sign flipped"),
    ("lstm_step", "dprev_h_dropped", "prev_h", 1.0, "dprev_h left at zero"),
    ("lstm_step", "dWx_one_element", "Wx", 0.34, "one element of dWx doubled"),
    ("lstm_seq", "dc_not_carried", "b", 0.45, "the cell gradient not carried back"),
    ("lstm_seq", "no_h_carry", "b", 0.18, "the hidden gradient not carried back"),
    ("lstm_seq", "dh0_dropped", "h0", 1.0, "dh0 left at zero"),
    ("lstm_seq", "dWh_uses_current_h", "Wh", 0.64, "dWh from h_t instead of h_{t-1}"),
    ("lstm_seq", "dx_time_shift", "x", 1.2, "dx[:, t] written at t + 1"),
    ("embedding", "fancy_assign", "W", 0.7, "dW[idx] += dout: repeated words lose gradient"),
    ("embedding", "rows_shifted", "W", 1.5, "dW rows at idx + 1"),
    ("embedding", "drops_last_step", "W", 0.47, "the last time step left out"),
    ("attention", "dv_transposed", "v", 0.46, "dv = A @ dout, not A.T @ dout"),
    ("attention", "jacobian_missing_term", "k", 1.3, "softmax backward without its - sum"),
    ("attention", "jacobian_wrong_axis", "k", 1.1, "softmax backward summed over queries"),
    ("attention", "dq_missing_scale", "q", 1.0, "dq without the 1/sqrt(d)"),
    ("attention", "dk_not_transposed", "k", 0.8, "dk = ds @ q, not ds.T @ q"),
    ("tanh_mlp", "layer2_pre_activation", "b2", 0.76, "tanh' from the pre-activation"),
    ("tanh_mlp", "db2_mean", "b2", 0.67, "db2 averaged instead of summed"),
    ("tanh_mlp", "layer1_forgot_derivative", "b1", 1.3, "layer 1's tanh' forgotten"),
    ("tanh_mlp", "dW1_before_derivative", "W1", 1.0, "dW1 from dh, before tanh'"),
    ("tanh_mlp", "dx_sign", "x", 2.0, "dx with its sign flipped"),
    ("sigmoid_bce", "dz_sign", "b", 2.0, "dz = y - p"),
    ("sigmoid_bce", "no_1_over_N", "b", 5.0, "the 1/N forgotten"),
    ("sigmoid_bce", "extra_sigmoid_derivative", "b", 0.48, "dz times an extra p(1 - p)"),
    ("sigmoid_bce", "db_mean", "b", 0.83, "db averaged instead of summed"),
    ("sigmoid_bce", "dx_forgot_w", "x", 4.0, "dx without w"),
    ("sigmoid_bce", "dw_one_element", "w", 0.87, "one element of dw doubled"),
]
_BUG_INDEX = {(layer, name) for layer, name, *_ in _BUG_TABLE}
BUGS = tuple(Bug(*row) for row in _BUG_TABLE)


def case(layer: str, style: str = "f64", bug: str | None = None) -> Case:
    """The case for ``layer`` in ``style``, with the backward's ``bug`` planted (None: correct)."""
    if layer not in _LAYERS:
        raise ValueError(f"layer={layer!r}: must be one of {LAYERS}")
    return _build(layer, style, bug)


def _factory(layer: str) -> Callable[..., Case]:
    def make(style: str = "f64", bug: str | None = None) -> Case:
        return _build(layer, style, bug)

    make.__name__ = layer
    make.__doc__ = f"The {layer} case in ``style``, with ``bug`` planted (None: correct)."
    return make


affine = _factory("affine")
relu = _factory("relu")
relu_zeros = _factory("relu_zeros")
affine_relu = _factory("affine_relu")
conv = _factory("conv")
conv_s1 = _factory("conv_s1")
maxpool = _factory("maxpool")
maxpool_ties = _factory("maxpool_ties")
avgpool = _factory("avgpool")
batchnorm = _factory("batchnorm")
layernorm = _factory("layernorm")
groupnorm = _factory("groupnorm")
dropout = _factory("dropout")
softmax_loss = _factory("softmax_loss")
svm_loss = _factory("svm_loss")
rnn_step = _factory("rnn_step")
rnn_seq = _factory("rnn_seq")
lstm_step = _factory("lstm_step")
lstm_seq = _factory("lstm_seq")
embedding = _factory("embedding")
attention = _factory("attention")
tanh_mlp = _factory("tanh_mlp")
sigmoid_bce = _factory("sigmoid_bce")
