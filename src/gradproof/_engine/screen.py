"""A quick screen that clears a correct gradient in a few evaluations: fast mode's first step.

Per block, ``DIRECTIONS`` random directional derivatives are compared with the
gradient's: ``a = g . v`` against Richardson's estimate along ``v`` (4 points
each; all the points of every block go to the loss in one call, with the base
point). ``v_i = z_i * max(|theta_i|, 1)``, ``z`` standard normal: a wrong
element (or several, whatever their errors) ``r`` times the screen's tolerance
is missed by one direction with probability at most ``0.8 / r`` (the chance
that a Gaussian sum of the errors lands within the tolerance), by all of them
with at most ``(0.8 / r) ** DIRECTIONS``.

The screen can only clear. Each direction is judged by the error model's
tolerance (:func:`~gradproof._engine.judge.tolerance`) with a noise bound from a
model instead of a measurement (``ROUNDOFF`` units of roundoff of the loss's
magnitude, plus the rounding of the shifted points), and it clears the block
only where every direction agrees within a tolerance of at most ``SHARE`` of
its largest term ``|g_i v_i|``, and where no evidence of a kink shows
(:func:`~gradproof._engine.judge.nonsmooth`):
noise the model does not foresee (a float32 loss, randomness), a kink or a
wrong element all leave the block to the full check, whose verdict then
stands. So the screen never turns a pass into a failure; it trades the full
check's coverage of every coordinate for speed where the gradient is right.
A gradient that is not finite or all zero, one so small beside the loss that
the modelled roundoff alone keeps every tolerance above ``SHARE`` of its terms
(:meth:`Terms.reachable`), and points beyond ``CAP`` values in all (about
470,000 coordinates in one block), are left to the full check without an
evaluation.

>>> import numpy as np
>>> theta = np.array([0.3, -1.2, 2.0])
>>> loss = lambda rows: np.sum(np.sin(rows), axis=1)
>>> clears(loss, theta, np.cos(theta), [slice(0, 3)], seed=0, magnitude=lambda: 3.0)
True
>>> clears(loss, theta, np.cos(theta) * [1, 1, 1.001], [slice(0, 3)], seed=0,
...        magnitude=lambda: 3.0)
False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from gradproof._engine.judge import KINK_SLACK, nonsmooth, tolerance
from gradproof._engine.schemes import SCHEMES, default_step

DIRECTIONS = 2  # random directions per block
ROUNDOFF = 16.0  # units of roundoff of the loss's magnitude allowed in one value
SHARE = 1e-4  # the largest tolerance, relative to the largest term g_i v_i, that may clear
CAP = 1 << 22  # values in the screen's points (32 MiB of float64): larger checks skip it
RTOL = 1e-8  # the judge's relative slack, as the full check's with Richardson in float64
EPS = 2.0**-52
SCHEME = SCHEMES["richardson"]
STEP = default_step("richardson", EPS)
STEPS = np.real(np.array(SCHEME.multiples, dtype=np.complex128)) * STEP


def screen_directions(theta: np.ndarray, spans: Sequence[slice], seed: int) -> np.ndarray:
    """``v = z * max(|theta|, 1)``, ``DIRECTIONS`` rows per span, zero off their span."""
    bounds = tuple((span.start, span.stop) for span in spans)
    return _normals(seed, theta.size, bounds) * np.maximum(np.abs(theta), 1.0)


def points_along(theta: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The base point, then Richardson's four points along each direction."""
    shifted = theta + STEPS[None, :, None] * directions[:, None, :]  # (d, 4, n)
    return np.concatenate([theta[None, :], shifted.reshape(-1, theta.size)])


@lru_cache(maxsize=8)  # a test suite checks the same shapes with the same seed many times
def _normals(seed: int, size: int, bounds: tuple[tuple[int, int], ...]) -> np.ndarray:
    """``DIRECTIONS`` standard normal rows per span, zero off it (read-only: shared)."""
    rng = np.random.default_rng([seed, 0x5C4EE9])
    normals = np.zeros((DIRECTIONS * len(bounds), size))
    for k, (lo, hi) in enumerate(bounds):
        normals[k * DIRECTIONS : (k + 1) * DIRECTIONS, lo:hi] = rng.standard_normal(
            (DIRECTIONS, hi - lo)
        )
    normals.flags.writeable = False
    return normals


class Terms(NamedTuple):
    """What the screen knows of each direction before evaluating: ``g . v``, the largest
    term ``|g_i v_i|`` (over a block whose gradient is all zero, the largest of any
    block) and the rounding of the shifted points, in the loss's value."""

    analytic: np.ndarray
    largest: np.ndarray
    rounding: np.ndarray

    @classmethod
    def of(cls, directions: np.ndarray, theta: np.ndarray, g: np.ndarray) -> Terms:
        terms = np.abs(directions) * np.abs(g)  # each derivative's terms g_i v_i, in size
        # Against the largest term, not the derivative (whose terms may cancel) nor their
        # sum (which grows with the block: one element's error would hide in it).
        largest = terms.max(axis=1, initial=0.0)
        largest[largest == 0] = np.max(largest, initial=0.0)
        rounding = EPS * (STEP * terms.sum(axis=1) + np.abs(theta) @ np.abs(g))
        return cls(directions @ g, largest, rounding)

    def noise(self, magnitude: float) -> np.ndarray:
        """The modelled noise in one value of the loss along each direction: ``ROUNDOFF``
        units of roundoff of ``magnitude``, and the shifted points' rounding."""
        return ROUNDOFF * EPS * magnitude + self.rounding

    def reachable(self, magnitude: float) -> bool:
        """Whether every direction's tolerance can be small enough to clear: the judge's
        tolerance with only Richardson's roundoff bound ``3 delta / h`` as the error (for
        the least noise the model allows) must stay within ``SHARE`` of the largest term.
        Where it cannot, the screen is skipped unevaluated."""
        roundoff = 3 * self.noise(magnitude) / STEP
        floor = tolerance(self.analytic, self.analytic, roundoff, RTOL)
        return bool(np.all(floor <= SHARE * self.largest))


def judge_screen(values: np.ndarray, points: np.ndarray, terms: Terms, magnitude: float) -> bool:
    """Whether every direction's numerical derivative (from ``values``, the loss at
    ``points``) clears ``g . v`` within the error model's tolerance, that tolerance is
    small, and nothing shows a kink."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size != points.shape[0] or not np.all(np.isfinite(values)):
        return False
    table = values[1:].reshape(terms.analytic.size, -1)
    # The steps actually taken differ from t * v by the shifted points' rounding, which is
    # in the noise bound instead (a pass per point would measure it).
    offsets = np.broadcast_to(STEPS, table.shape)
    noise = terms.noise(max(magnitude, float(np.max(np.abs(values)))))
    analytic = terms.analytic
    with np.errstate(over="ignore", invalid="ignore"):
        estimate = SCHEME.combine(float(values[0]), table, offsets, noise)
        tol = tolerance(analytic, estimate.value, estimate.error, RTOL)
        agree = np.abs(analytic - estimate.value) <= tol
        kinked = nonsmooth(analytic, estimate, KINK_SLACK[SCHEME.name], RTOL)
    return bool(np.all(agree & (tol <= SHARE * terms.largest) & ~kinked))


def clears(
    loss: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    g: np.ndarray,
    spans: Sequence[slice],
    *,
    seed: int,
    magnitude: Callable[[], float],
) -> bool:
    """Whether the screen clears ``g`` on every span: ``loss`` maps a (points, n) array of
    parameter vectors to their values in one call; ``magnitude()`` is the size of the terms
    the loss sums (its roundoff's scale), at least ``|J(theta)|``, asked for only where
    the gradient can be screened. A loss that raises
    leaves the gradient to the full check (False), which reports the error."""
    if not np.all(np.isfinite(g)) or not np.any(g) or theta.size * (1 + 8 * len(spans)) > CAP:
        return False  # nothing to judge a tolerance against, or too large to screen at once
    directions = screen_directions(theta, spans, seed)
    terms = Terms.of(directions, theta, g)
    size = magnitude()
    if not terms.reachable(size):
        return False  # the noise model alone rules a clearance out: no evaluation spent
    points = points_along(theta, directions)
    try:
        values = loss(points)
    except Exception:  # the full check evaluates the same loss and names the error
        return False
    return judge_screen(values, points, terms, size)
