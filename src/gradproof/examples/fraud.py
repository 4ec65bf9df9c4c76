"""The Gradient Checking notebook's fraud-detection network and gradient-checking helpers.

The functions of the notebook (from deeplearning.ai's course), under their own names and
signatures, with its printed messages and its 2e-7 threshold:
``forward_propagation``, ``backward_propagation`` and ``gradient_check`` for
the 1-D model J(theta) = theta * x; ``forward_propagation_n`` and
``backward_propagation_n`` for LINEAR->RELU->LINEAR->RELU->LINEAR->SIGMOID, the
latter with the notebook's two planted bugs (``dW2`` doubled, ``db1`` with
``4./m``); ``gradient_check_n`` and the vector helpers. Beyond the notebook:
``backward_propagation_n_fixed`` (the bugs corrected), L2 regularization
(``lambd``) and dropout (``keep_prob``) in forward and backward, as the
lecture's implementation notes ask, and a batched loss for fast checks.

>>> X, Y, parameters = gradient_check_n_test_case()
>>> cost, cache = forward_propagation_n(X, Y, parameters)
>>> gradients = backward_propagation_n(X, Y, cache)
>>> print(f"{gradient_check_n(parameters, gradients, X, Y, 1e-7):.6f}")
0.285093
"""

from __future__ import annotations

from typing import Any

import numpy as np

KEYS = ("W1", "b1", "W2", "b2", "W3", "b3")
SHAPES = {"W1": (5, 4), "b1": (5, 1), "W2": (3, 5), "b2": (3, 1), "W3": (1, 3), "b3": (1, 1)}
THRESHOLD = 2e-7
YELLOW, GREEN, RESET = "\033[93m", "\033[92m", "\033[0m"

# ----------------------------------------------------------------------------- 1-D


def forward_propagation(x: float, theta: float) -> float:
    """J(theta) = theta * x.

    >>> forward_propagation(2, 4)
    8
    """
    return theta * x


def backward_propagation(x: float, theta: float) -> float:
    """dJ/dtheta = x.

    >>> backward_propagation(3, 4)
    3
    """
    return x


def gradient_check(x: float, theta: float, epsilon: float = 1e-7, print_msg: bool = False) -> float:
    """The notebook's 1-D gradient check: central difference against backprop.

    >>> f"{gradient_check(3, 4):.6e}"
    '7.814075e-11'
    """
    theta_plus = theta + epsilon
    theta_minus = theta - epsilon
    J_plus = forward_propagation(x, theta_plus)
    J_minus = forward_propagation(x, theta_minus)
    gradapprox = (J_plus - J_minus) / (2 * epsilon)
    grad = backward_propagation(x, theta)
    numerator = np.linalg.norm(grad - gradapprox)
    denominator = np.linalg.norm(grad) + np.linalg.norm(gradapprox)
    difference = numerator / denominator
    if print_msg:
        _print_verdict(difference)
    return difference


def _print_verdict(difference: float) -> None:
    if difference > THRESHOLD:
        print(
            YELLOW
            + "There is a mistake in the backward propagation! difference = "
            + str(difference)
            + RESET
        )
    else:
        print(
            GREEN
            + "Your backward propagation works perfectly fine! difference = "
            + str(difference)
            + RESET
        )


# ------------------------------------------------------------------------ helpers


def sigmoid(x: Any) -> Any:
    """The logistic function 1 / (1 + exp(-x))."""
    return 1 / (1 + np.exp(-x))


def relu(x: Any) -> Any:
    """max(0, x), element-wise."""
    return np.maximum(0, x)


def dictionary_to_vector(parameters: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
    """Stack W1, b1, ..., b3 (each raveled row-major) into one column vector.

    Returns the (47, 1) vector and, as the notebook's helper does, the key of
    every entry.
    """
    keys: list[str] = []
    pieces = []
    for key in KEYS:
        new_vector = np.reshape(parameters[key], (-1, 1))
        keys = keys + [key] * new_vector.shape[0]
        pieces.append(new_vector)
    return np.concatenate(pieces, axis=0), keys


def vector_to_dictionary(theta: np.ndarray) -> dict[str, np.ndarray]:
    """Unroll a (47, 1) vector into the parameters dict (inverse of the above)."""
    parameters = {}
    start = 0
    for key in KEYS:
        size = int(np.prod(SHAPES[key]))
        parameters[key] = theta[start : start + size].reshape(SHAPES[key])
        start += size
    return parameters


def gradients_to_vector(gradients: dict[str, np.ndarray]) -> np.ndarray:
    """Stack dW1, db1, ..., db3 into one column vector; other keys are ignored."""
    return np.concatenate([np.reshape(gradients["d" + key], (-1, 1)) for key in KEYS], axis=0)


def gradient_check_n_test_case() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The notebook's test case: seed 1, X (4, 3), Y = [1, 1, 0], a 4-5-3-1 network.

    The draws are those of ``np.random.seed(1)`` followed by ``randn`` calls,
    made on a private generator so the global random state is left alone.
    """
    rng = np.random.RandomState(1)
    x = rng.randn(4, 3)
    y = np.array([1, 1, 0])
    parameters = {key: rng.randn(*SHAPES[key]) for key in KEYS}
    return x, y, parameters


# ---------------------------------------------------------------------- the network


def forward_propagation_n(
    X: np.ndarray,
    Y: np.ndarray,
    parameters: dict[str, np.ndarray],
    lambd: float = 0.0,
    keep_prob: float = 1.0,
    rng: np.random.Generator | None = None,
) -> tuple[float, tuple[Any, ...]]:
    """LINEAR->RELU->LINEAR->RELU->LINEAR->SIGMOID and the logistic cost.

    ``lambd`` adds the L2 term lambd/(2m) * sum ||W||_F^2; ``keep_prob < 1``
    applies inverted dropout to both hidden layers (masks drawn from ``rng``,
    or numpy's global generator, so the loss changes from call to call, as
    dropout does). The cache is the notebook's 12-tuple, plus the two masks
    when dropout is on.
    """
    m = X.shape[1]
    W1, b1, W2, b2, W3, b3 = (parameters[k] for k in KEYS)
    Z1 = np.dot(W1, X) + b1
    A1 = relu(Z1)
    A1, D1 = _dropout(A1, keep_prob, rng)
    Z2 = np.dot(W2, A1) + b2
    A2 = relu(Z2)
    A2, D2 = _dropout(A2, keep_prob, rng)
    Z3 = np.dot(W3, A2) + b3
    A3 = sigmoid(Z3)
    log_probs = np.multiply(-np.log(A3), Y) + np.multiply(-np.log(1 - A3), 1 - Y)
    cost = 1.0 / m * np.sum(log_probs)
    if lambd:
        cost = cost + lambd / (2 * m) * sum(np.sum(np.square(W)) for W in (W1, W2, W3))
    cache: tuple[Any, ...] = (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3)
    if keep_prob < 1:
        cache = (*cache, D1, D2)
    return cost, cache


def _dropout(
    A: np.ndarray, keep_prob: float, rng: np.random.Generator | None
) -> tuple[np.ndarray, Any]:
    if keep_prob >= 1:
        return A, None
    draw = rng.random(A.shape) if rng is not None else np.random.rand(*A.shape)
    D = draw < keep_prob
    return A * D / keep_prob, D


def backward_propagation_n(
    X: np.ndarray, Y: np.ndarray, cache: tuple[Any, ...], lambd: float = 0.0, keep_prob: float = 1.0
) -> dict[str, np.ndarray]:
    """The notebook's backprop, planted bugs included: dW2 is doubled, db1 uses 4./m."""
    return _backward(X, Y, cache, lambd, keep_prob, bugs=True)


def backward_propagation_n_fixed(
    X: np.ndarray, Y: np.ndarray, cache: tuple[Any, ...], lambd: float = 0.0, keep_prob: float = 1.0
) -> dict[str, np.ndarray]:
    """The notebook's backprop with both planted bugs corrected."""
    return _backward(X, Y, cache, lambd, keep_prob, bugs=False)


def _backward(
    X: np.ndarray, Y: np.ndarray, cache: tuple[Any, ...], lambd: float, keep_prob: float, bugs: bool
) -> dict[str, np.ndarray]:
    m = X.shape[1]
    (Z1, A1, W1, b1, Z2, A2, W2, b2, Z3, A3, W3, b3) = cache[:12]
    D1, D2 = cache[12:] if len(cache) == 14 else (None, None)

    dZ3 = A3 - Y
    dW3 = 1.0 / m * np.dot(dZ3, A2.T) + lambd / m * W3
    db3 = 1.0 / m * np.sum(dZ3, axis=1, keepdims=True)

    dA2 = np.dot(W3.T, dZ3)
    if D2 is not None:
        dA2 = dA2 * D2 / keep_prob
    dZ2 = np.multiply(dA2, np.int64(A2 > 0))
    dW2 = 1.0 / m * np.dot(dZ2, A1.T) * (2 if bugs else 1) + lambd / m * W2
    db2 = 1.0 / m * np.sum(dZ2, axis=1, keepdims=True)

    dA1 = np.dot(W2.T, dZ2)
    if D1 is not None:
        dA1 = dA1 * D1 / keep_prob
    dZ1 = np.multiply(dA1, np.int64(A1 > 0))
    dW1 = 1.0 / m * np.dot(dZ1, X.T) + lambd / m * W1
    db1 = (4.0 if bugs else 1.0) / m * np.sum(dZ1, axis=1, keepdims=True)

    return {
        "dZ3": dZ3,
        "dW3": dW3,
        "db3": db3,
        "dA2": dA2,
        "dZ2": dZ2,
        "dW2": dW2,
        "db2": db2,
        "dA1": dA1,
        "dZ1": dZ1,
        "dW1": dW1,
        "db1": db1,
    }


def gradient_check_n(
    parameters: dict[str, np.ndarray],
    gradients: dict[str, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    epsilon: float = 1e-7,
    print_msg: bool = False,
) -> float:
    """The notebook's N-dimensional check: one central difference per parameter."""
    parameters_values, _ = dictionary_to_vector(parameters)
    grad = gradients_to_vector(gradients)
    num_parameters = parameters_values.shape[0]
    J_plus = np.zeros((num_parameters, 1))
    J_minus = np.zeros((num_parameters, 1))
    gradapprox = np.zeros((num_parameters, 1))
    for i in range(num_parameters):
        theta_plus = np.copy(parameters_values)
        theta_plus[i] = theta_plus[i] + epsilon
        J_plus[i], _ = forward_propagation_n(X, Y, vector_to_dictionary(theta_plus))
        theta_minus = np.copy(parameters_values)
        theta_minus[i] = theta_minus[i] - epsilon
        J_minus[i], _ = forward_propagation_n(X, Y, vector_to_dictionary(theta_minus))
        gradapprox[i] = (J_plus[i] - J_minus[i]) / (2 * epsilon)
    numerator = np.linalg.norm(grad - gradapprox)
    denominator = np.linalg.norm(grad) + np.linalg.norm(gradapprox)
    difference = numerator / denominator
    if print_msg:
        _print_verdict(difference)
    return difference


# ------------------------------------------------------------------ for gradproof


def problem(
    bugs: bool = True, lambd: float = 0.0, keep_prob: float = 1.0
) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(loss, params, gradients) of the notebook's test case, ready for ``gradproof.check``.

    ``bugs=False`` uses the corrected backprop. With ``keep_prob < 1`` the loss
    draws fresh dropout masks at every call, as a real training loss does.

    >>> import gradproof
    >>> loss, params, grads = problem(bugs=False)
    >>> gradproof.check(loss, params, grads).passed
    True
    """
    X, Y, parameters = gradient_check_n_test_case()
    backward = backward_propagation_n if bugs else backward_propagation_n_fixed
    rng = np.random.default_rng(0)
    _, cache = forward_propagation_n(X, Y, parameters, lambd, keep_prob, rng)
    gradients = backward(X, Y, cache, lambd, keep_prob)

    def loss(p: dict[str, np.ndarray]) -> float:
        return forward_propagation_n(X, Y, p, lambd, keep_prob, rng)[0]

    return loss, parameters, gradients


def batched_loss(X: np.ndarray, Y: np.ndarray, lambd: float = 0.0) -> Any:
    """The network's cost for K parameter sets at once (leaves with a leading axis K).

    >>> X, Y, p = gradient_check_n_test_case()
    >>> f = batched_loss(X, Y)
    >>> stacked = {k: np.stack([v, v]) for k, v in p.items()}
    >>> bool(np.allclose(f(stacked), forward_propagation_n(X, Y, p)[0]))
    True
    """

    def loss(p: dict[str, np.ndarray]) -> np.ndarray:
        m = X.shape[1]
        A1 = relu(np.matmul(p["W1"], X) + p["b1"])
        A2 = relu(np.matmul(p["W2"], A1) + p["b2"])
        A3 = sigmoid(np.matmul(p["W3"], A2) + p["b3"])
        log_probs = -np.log(A3) * Y + -np.log(1 - A3) * (1 - Y)
        cost = 1.0 / m * np.sum(log_probs, axis=(-2, -1))
        if lambd:
            cost = cost + lambd / (2 * m) * sum(
                np.sum(np.square(p[k]), axis=(-2, -1)) for k in ("W1", "W2", "W3")
            )
        return cost

    return loss
