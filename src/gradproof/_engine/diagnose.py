"""Name the kind of bug a failing block looks like.

Each test compares the analytic block ``g`` with the numerical one ``n``
(same shape) and returns a :class:`Diagnosis` when the pattern fits well.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradproof._report import Diagnosis, Index

FIT = 0.02  # relative residual below which a pattern counts as a fit


def scale_of(g: np.ndarray, n: np.ndarray) -> float | None:
    """Least-squares s with g ~ s * n; None where n is ~0."""
    nn = float(np.dot(n.ravel(), n.ravel()))
    if nn <= 1e-300 or np.sqrt(nn) <= 1e-12 * float(np.linalg.norm(g)):  # relative: any scale
        return None
    return float(np.dot(g.ravel(), n.ravel()) / nn)


def diagnose(
    name: str,
    g: np.ndarray,
    n: np.ndarray,
    theta: np.ndarray,
    wrong: list[Index],
) -> Diagnosis:
    """The most specific pattern that explains ``g - n`` in block ``name``."""
    for test in (_zero, _scale, _transposed, _regularization):
        found = test(name, g, n, theta)
        if found is not None:
            return found
    return _elements_or_general(name, g, n, wrong)


def _residual(a: np.ndarray, b: np.ndarray) -> float:
    denom = max(float(np.linalg.norm(b)), 1e-300)
    return float(np.linalg.norm(a - b)) / denom


def _zero(name: str, g: np.ndarray, n: np.ndarray, theta: np.ndarray) -> Diagnosis | None:
    if np.linalg.norm(n) > 0 and np.linalg.norm(g) <= 1e-12 * np.linalg.norm(n):
        return Diagnosis(
            "zero",
            f"{name}: the gradient is zero where the numerical derivative is not — "
            "a detached tensor or a missing term in backprop?",
        )
    return None


def _scale(name: str, g: np.ndarray, n: np.ndarray, theta: np.ndarray) -> Diagnosis | None:
    s = scale_of(g, n)
    if s is None or abs(s - 1) < 1e-6 or _residual(g, s * n) > FIT:
        return None
    if abs(s + 1) < 0.01:
        return Diagnosis(
            "sign",
            f"{name}: the gradient has the wrong sign (-1.00× the numerical derivative) — "
            "a subtraction the wrong way round, or a missing minus?",
        )
    hint = _integer_hint(s)
    return Diagnosis(
        "scale",
        f"{name}: the gradient is {s:.2f}× the numerical derivative — a constant factor, "
        f"look for a stray multiplier{hint}",
    )


def _integer_hint(s: float) -> str:
    """A batch-size hint where the factor is a whole number m or 1/m."""
    for value, what in ((s, "a missing 1/m"), (1 / s if s else 0.0, "an extra 1/m")):
        m = round(value)
        if m >= 2 and abs(value - m) < 0.01 * m:
            return f"; or {what}, if the batch holds m = {m} examples"
    return ""


def _transposed(name: str, g: np.ndarray, n: np.ndarray, theta: np.ndarray) -> Diagnosis | None:
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] < 2:
        return None
    if _residual(g.T, n) <= FIT and _residual(g, n) > FIT:
        return Diagnosis(
            "transposed",
            f"{name}: the gradient is the transpose of the numerical derivative — "
            "swap the operands of the matmul in backprop (dW = dZ @ X.T, not X @ dZ.T)",
        )
    return None


def _regularization(name: str, g: np.ndarray, n: np.ndarray, theta: np.ndarray) -> Diagnosis | None:
    missing = n - g
    tt = float(np.dot(theta.ravel(), theta.ravel()))
    if tt == 0 or theta.size < 2:
        return None
    c = float(np.dot(missing.ravel(), theta.ravel()) / tt)
    if c == 0 or _residual(c * theta, missing) > FIT:
        return None
    return Diagnosis(
        "regularization",
        f"{name}: the gradient misses a term proportional to the parameter itself "
        f"({c:.3g} × {name}) — regularization missing from the gradient? "
        f"(for L2 with lambd/(2m)·||W||², add lambd/m · W)",
    )


def _elements_or_general(name: str, g: np.ndarray, n: np.ndarray, wrong: list[Index]) -> Diagnosis:
    if wrong and len(wrong) < g.size and len(wrong) <= max(3, g.size // 10):
        return Diagnosis(
            "elements",
            f"{name}: {len(wrong)} element(s) wrong ({listed(wrong)}), the rest match — "
            "look for an indexing or slicing bug, or a special case at these positions",
        )
    return Diagnosis(
        "general",
        f"{name}: the gradient differs from the numerical derivative with no simple pattern "
        "(not a constant factor, sign, transpose or L2 term) — check this block's backprop "
        "formula term by term",
    )


def listed(wrong: Sequence[Index], shown: int = 8) -> str:
    """Up to ``shown`` element indices, then how many more: ``"[1, 2], [6, 0] and 3 more"``."""
    text = ", ".join("[" + ", ".join(str(i) for i in index) + "]" for index in wrong[:shown])
    return text + (f" and {len(wrong) - shown} more" if len(wrong) > shown else "")
