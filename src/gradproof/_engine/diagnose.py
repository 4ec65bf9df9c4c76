"""Name the kind of bug a failing block looks like.

A pattern is named only when it explains the error ``g - n`` itself, not merely
when it comes close to ``g``: after the pattern is applied, what is left of the
error must be at most ``EXPLAINED`` of it. A gradient off in one element is
within 1% of the numerical derivative as a whole, and so "close to 1.00× of it",
but a factor of 1.00 explains none of its error.

The tests run from the most specific to the least: a zero gradient, a few wrong
elements, a constant factor (or a sign flip), a transpose, a missing L2 term;
what none of them explains is "general".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from gradproof._report import Diagnosis, Index

EXPLAINED = 0.05  # a pattern may leave at most this share of the error's norm unexplained
FEW = 3  # "a few" elements: up to this many, or up to a tenth of a large block
ENERGY = 0.99  # the share of the error's energy that "a few" elements must carry
SIGN = 0.01  # a factor within this of -1 is a sign flip
SUPPORT = 1e-3  # elements with |n| above this share of max |n| support a fitted factor
KEPT = 0.25  # the elements a factor fits must carry at least this share of the error's norm
MOSTLY = 0.5  # within the tolerances, a pattern must still explain this much of the error


def scale_of(g: np.ndarray, n: np.ndarray) -> float | None:
    """Least-squares s with g ~ s * n; None where n is ~0 or a value is not finite.

    Both arrays are divided by their largest element first, so that the sums
    neither overflow nor underflow whatever the loss's units. (Array methods, not
    numpy's functions: a block's verdict calls this on a few elements, where the
    functions' dispatch costs more than the arithmetic.)
    """
    g, n = np.asarray(g, dtype=float).ravel(), np.asarray(n, dtype=float).ravel()
    # A NaN or an inf anywhere shows in the largest magnitude: NaN propagates through max.
    largest_g = float(np.abs(g).max(initial=0.0))
    largest_n = float(np.abs(n).max(initial=0.0))
    if not (math.isfinite(largest_g) and math.isfinite(largest_n)):
        return None
    size = max(largest_g, largest_n)
    if size == 0.0:
        return None
    g, n = g / size, n / size
    nn = float(n.dot(n))
    # relative: any scale (sqrt of g.g is np.linalg.norm's own arithmetic for a vector)
    if nn == 0.0 or math.sqrt(nn) <= 1e-12 * math.sqrt(float(g.dot(g))):
        return None
    return float(g.dot(n) / nn)


@dataclass(frozen=True)
class _Case:
    """A failing block, divided by its largest element so every pattern is scale-free."""

    name: str
    g: np.ndarray  # flat, as are n and theta
    n: np.ndarray
    theta: np.ndarray
    wrong: list[Index]
    shape: tuple[int, ...]
    unit: float  # what g and n were divided by
    tolerance: np.ndarray | None = None  # each element's tolerance, divided by unit
    is_complex: bool = False  # a complex block, as (real, imaginary) pairs on its last axis
    size: int = 0  # the whole block's size, where more than g.size of it; 0: all checked
    error: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "error", self.g - self.n)

    def explains(
        self, rest: np.ndarray, error: np.ndarray | None = None, where: np.ndarray | None = None
    ) -> bool:
        """Whether ``rest``, the error left after a pattern, is at most EXPLAINED of it.

        Or, where the elements' tolerances are known: whether the pattern leaves
        only what the tolerances allow, element by element, and explains most of
        the error. A float32 check's numerical derivative carries rounding that
        no pattern explains; a wrong element's error is beyond its tolerance.
        ``where`` selects the elements ``rest`` and ``error`` hold.
        """
        error = self.error if error is None else error
        size = float(np.linalg.norm(error))
        left = float(np.linalg.norm(rest))
        if size == 0.0 or left <= EXPLAINED * size:
            return size > 0.0
        if self.tolerance is None or left > MOSTLY * size:
            return False
        allowed = self.tolerance if where is None else self.tolerance[where]
        return bool(np.all(np.abs(rest) <= allowed))

    @property
    def few(self) -> int:
        """How many elements still count as "a few": 3, a tenth of the block, at most half."""
        return min(max(FEW, self.g.size // 10), self.g.size // 2)


def diagnose(
    name: str,
    g: np.ndarray,
    n: np.ndarray,
    theta: np.ndarray,
    wrong: list[Index],
    tolerance: np.ndarray | None = None,
    is_complex: bool = False,
    *,
    size: int | None = None,
) -> Diagnosis:
    """The most specific pattern that explains ``g - n`` in block ``name``.

    ``g`` is the gradient under test, ``n`` the numerical derivative, ``theta``
    the parameter values (all of one shape), ``wrong`` the indices of the
    elements beyond their tolerance, ``tolerance`` (optional) those tolerances;
    ``is_complex``: the block holds a complex parameter as (real, imaginary) pairs.
    ``size``: the whole block's size, where only ``g.size`` of its elements were
    checked (a sample, or a budget spent early): no sentence then says the rest match.
    """
    g, n = np.asarray(g, dtype=float), np.asarray(n, dtype=float)
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(n))):
        return _not_finite(name, g, n)
    unit = float(max(np.max(np.abs(g), initial=0.0), np.max(np.abs(n), initial=0.0)))
    theta = np.asarray(theta, dtype=float).ravel()
    if unit > 0.0:
        allowed = None if tolerance is None else np.asarray(tolerance, dtype=float).ravel() / unit
        case = _Case(name, g.ravel() / unit, n.ravel() / unit, theta, wrong, g.shape, unit, allowed)
        unchecked = size if size is not None and size > g.size else 0
        case = replace(case, is_complex=is_complex, size=unchecked)
        for test in (_zero, _conjugated, _elements, _scale, _transposed, _regularization):
            found = test(case)
            if found is not None:
                return found
    return _general(name, g.size, wrong)


def _not_finite(name: str, g: np.ndarray, n: np.ndarray) -> Diagnosis:
    """A NaN or an inf in either array: no pattern can be fitted, and no factor printed."""
    parts = [
        f"{what} is not finite at {count} of {values.size} elements"
        for what, values in (("the gradient", g), ("the numerical derivative", n))
        if (count := int(np.count_nonzero(~np.isfinite(values))))
    ]
    return Diagnosis(
        "general",
        f"{name}: {' and '.join(parts)}, so no pattern can be fitted — look for a log of 0, "
        "a division by 0 or an overflow",
    )


def _zero(case: _Case) -> Diagnosis | None:
    """The gradient is ~0 where the numerical derivative clearly is not.

    "Clearly" is the error model's word: some element is beyond its tolerance,
    so ``n`` there is more than its own error. A block where both are ~0, and
    fails only on ``tol=``, is not a zero gradient but noise.
    """
    if not case.wrong or not _is_zero(case.g, case.n):
        return None
    return Diagnosis(
        "zero",
        f"{case.name}: the gradient is zero where the numerical derivative is not — "
        "a detached tensor or a missing term in backprop?",
    )


def _is_zero(g: np.ndarray, n: np.ndarray) -> bool:
    """Whether ``g`` is ~0 beside a nonzero ``n``: at most 1e-12 of its norm."""
    size = float(np.linalg.norm(n))
    return size > 0.0 and float(np.linalg.norm(g)) <= 1e-12 * size


def _conjugated(case: _Case) -> Diagnosis | None:
    """A complex block whose gradient is s times the conjugate of the numerical one.

    For a real loss of a complex z, the gradient is dL/d(Re z) + i·dL/d(Im z) (what
    torch's ``.grad`` holds). Its conjugate is a backward that forgot (or added) a
    ``conj()``; half its conjugate is the Wirtinger derivative dL/dz, returned instead.
    """
    if not case.is_complex:
        return None
    flipped = case.n.reshape(-1, 2) * np.array([1.0, -1.0])
    s = scale_of(case.g, flipped.ravel())
    if s is None or not case.explains(case.g - s * flipped.ravel()):
        return None
    if abs(s - 1) < SIGN:
        what = "the conjugate of the numerical derivative — a conj() missing or extra"
    elif abs(s - 0.5) < SIGN / 2:
        what = (
            "half the conjugate of the numerical derivative: the Wirtinger derivative dL/dz, "
            "where dL/d(Re z) + i·dL/d(Im z) = 2·conj(dL/dz) is wanted"
        )
    else:
        what = f"{_factor(s)}× the conjugate of the numerical derivative — a conj() and a factor"
    return Diagnosis(
        "conjugate",
        f"{case.name}: the gradient is {what} in backprop (for a real loss of complex z, the "
        "gradient is dL/d(Re z) + i·dL/d(Im z))",
    )


def _elements(case: _Case) -> Diagnosis | None:
    """A few elements are wrong and the rest match: tested before any factor.

    "A few": the wrong list holds at most ``case.few`` elements, or that many
    carry ENERGY of the error's energy (then many more are slightly off). A
    factor that explains the whole error still wins where it is seen in two or
    more wrong elements: a doubled gradient that is zero in most elements.
    """
    if not case.wrong:  # the error model found nothing wrong: it failed on tol= only
        return None
    energy = np.sort(case.error**2)[::-1]
    carriers = int(np.searchsorted(np.cumsum(energy), ENERGY * energy.sum())) + 1
    by_count = len(case.wrong) <= case.few
    if not (by_count or carriers <= case.few):
        return None
    if len(case.wrong) >= 2 and _fitted_scale(case) is not None:
        return None
    if by_count and case.size:
        return Diagnosis(
            "elements",
            f"{case.name}: {len(case.wrong)} of the {case.g.size} checked elements wrong "
            f"({listed(case.wrong)}), the other {case.g.size - len(case.wrong)} checked match"
            f"{_unchecked(case)} — look for an indexing or slicing bug, or a special case at "
            "these positions, then check every element (mode='full', with the budget it needs)",
        )
    if by_count:
        return Diagnosis(
            "elements",
            f"{case.name}: {len(case.wrong)} element(s) wrong ({listed(case.wrong)}), the rest "
            "match — look for an indexing or slicing bug, or a special case at these positions",
        )
    return Diagnosis(
        "elements",
        f"{case.name}: {len(case.wrong)} elements are beyond the error model, but {carriers} of "
        f"them carry {ENERGY:.0%} of the error (the block's worst elements){_unchecked(case)} — "
        "look for an indexing or slicing bug, or a special case at those positions, then check "
        "again",
    )


def _unchecked(case: _Case) -> str:
    """``"; 4968 of the block's 5000 elements were not checked, ..."``, or "" for a full check."""
    if not case.size:
        return ""
    return (
        f"; {case.size - case.g.size} of the block's {case.size} elements were not checked, "
        "so these may be examples of more"
    )


def _fitted_scale(case: _Case) -> tuple[float, int] | None:
    """A factor s with g = s n that explains the error, and how many elements it leaves out.

    First over the whole block; then, in a block of 5 or more, leaving out up
    to a tenth of it (at least one): elements at kinks, whose numerical
    derivative was taken from one side, need not follow the factor. The
    elements left in must carry at least KEPT of the error's norm, and two of
    them must have a numerical derivative above SUPPORT of the largest. The
    count returned is of the elements left out that the factor does not fit.
    """
    if _is_zero(case.g, case.n):  # a factor of 0 is _zero's to name, or noise's
        return None
    s = scale_of(case.g, case.n)
    if s is not None and s != 1.0 and case.explains(case.g - s * case.n):
        return s, 0
    spare = max(1, case.g.size // 10) if case.g.size >= 5 else 0
    supported = np.abs(case.n) > SUPPORT * float(np.max(np.abs(case.n)))
    if not spare or np.count_nonzero(supported) < spare + 2:
        return None
    median = float(np.median(case.g[supported] / case.n[supported]))
    keep = np.argsort(np.abs(case.g - median * case.n), kind="stable")[: case.g.size - spare]
    g, n, error = case.g[keep], case.n[keep], case.error[keep]
    s = scale_of(g, n)
    if s is None or s == 1.0 or np.count_nonzero(supported[keep]) < 2:
        return None
    if np.linalg.norm(error) < KEPT * np.linalg.norm(case.error) or not case.explains(
        g - s * n, error, keep
    ):
        return None
    rest = np.abs(case.g - s * case.n)
    fits = max(2 * float(np.max(rest[keep])), EXPLAINED * float(np.max(np.abs(error))))
    return s, int(np.count_nonzero(rest > fits))


def _scale(case: _Case) -> Diagnosis | None:
    """A constant factor s (a sign flip where s ~ -1) that explains the error.

    The factor is measurably different from 1 because it explains the error:
    what it leaves is at most EXPLAINED of ``g - n``, so ``(s - 1) n`` is
    nearly all of it.
    """
    fitted = _fitted_scale(case)
    if fitted is None:
        return None
    s, misfits = fitted
    apart = f" in all but {misfits} element(s) (at a kink, or a second bug)" if misfits else ""
    if abs(s + 1) < SIGN:
        return Diagnosis(
            "sign",
            f"{case.name}: the gradient has the wrong sign (-1.00× the numerical derivative)"
            f"{apart} — a subtraction the wrong way round, or a missing minus?",
        )
    return Diagnosis(
        "scale",
        f"{case.name}: the gradient is {_factor(s)}× the numerical derivative{apart} — a "
        f"constant factor, look for a stray multiplier{_integer_hint(s)}",
    )


def _factor(s: float) -> str:
    """``s`` with two decimals, or as many as it takes not to print a factor as 1.00."""
    if not 0.1 <= abs(s) < 1000:
        return f"{s:.3g}"
    decimals = 2
    while decimals < 12 and round(s, decimals) == 1.0:
        decimals += 1
    return f"{s:.{decimals}f}"


def _integer_hint(s: float) -> str:
    """A batch-size hint where the factor is a whole number m or 1/m."""
    for value, what in ((s, "a missing 1/m"), (1 / s if s else 0.0, "an extra 1/m")):
        m = round(value)
        if m >= 2 and abs(value - m) < 0.01 * m:
            return f"; or {what}, if the batch holds m = {m} examples"
    return ""


def _transposed(case: _Case) -> Diagnosis | None:
    """A square matrix whose transpose, not itself, matches: ``g.T - n`` is ~none of the error."""
    if len(case.shape) != 2 or case.shape[0] != case.shape[1] or case.shape[0] < 2:
        return None
    turned = case.g.reshape(case.shape).T.ravel()
    if not case.explains(turned - case.n):
        return None
    return Diagnosis(
        "transposed",
        f"{case.name}: the gradient is the transpose of the numerical derivative — "
        "swap the operands of the matmul in backprop (dW = dZ @ X.T, not X @ dZ.T)",
    )


def _regularization(case: _Case) -> Diagnosis | None:
    """The error is c times the parameter itself: an L2 term left out of the gradient."""
    theta = case.theta
    if theta.size < 2 or not np.all(np.isfinite(theta)):
        return None
    top = float(np.max(np.abs(theta)))
    if top == 0.0:
        return None
    theta = theta / top
    missing = case.n - case.g
    c = float(np.dot(missing, theta) / np.dot(theta, theta))
    coefficient = c * case.unit / top
    if c == 0.0 or not math.isfinite(coefficient) or not case.explains(missing - c * theta):
        return None
    return Diagnosis(
        "regularization",
        f"{case.name}: the gradient misses a term proportional to the parameter itself "
        f"({coefficient:.3g} × {case.name}) — regularization missing from the gradient? "
        f"(for L2 with lambd/(2m)·||W||², add lambd/m · W)",
    )


def _general(name: str, size: int, wrong: list[Index]) -> Diagnosis:
    """No pattern explains the error; say whether the error model found wrong elements at all."""
    if not wrong:
        return Diagnosis(
            "general",
            f"{name}: every checked element is within the numerical derivative's error "
            "bound, but the block's difference exceeds tol — a bug smaller than the "
            "finite-difference error, or a tol tighter than the numerical derivative can resolve",
        )
    return Diagnosis(
        "general",
        f"{name}: {len(wrong)} of {size} checked elements differ from the numerical derivative "
        "with no simple pattern (not a constant factor, sign, transpose, L2 term or isolated "
        "elements) — check this block's backprop formula term by term",
    )


def listed(wrong: Sequence[Index], shown: int = 8) -> str:
    """Up to ``shown`` element indices, then how many more: ``"[1, 2], [6, 0] and 3 more"``."""
    text = ", ".join("[" + ", ".join(str(i) for i in index) + "]" for index in wrong[:shown])
    return text + (f" and {len(wrong) - shown} more" if len(wrong) > shown else "")
