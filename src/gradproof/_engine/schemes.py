"""Finite-difference schemes: where to evaluate the loss and how to combine the values.

Every scheme turns loss values at a few points along one coordinate into an
estimate of the derivative, an estimate of that estimate's error, and (where the
points allow) one-sided estimates from each side, used to recognise kinks.

Notation: ``h`` is the step, ``delta`` the noise in one loss value (roundoff,
or the user's stated noise).

=============  ===========================  ====================  ==================
scheme         formula                      truncation error      loss evaluations
=============  ===========================  ====================  ==================
central        (J(x+h) - J(x-h)) / 2h       O(h^2)                2 per coordinate
richardson     (4 D(h/2) - D(h)) / 3        O(h^4)                4 per coordinate
complex        Im J(x + ih) / h             O(h^2), no roundoff   1 per coordinate
=============  ===========================  ====================  ==================

All schemes also use J(x) itself, evaluated once for the whole check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

SchemeName = Literal["central", "richardson", "complex"]
Noise = float | np.ndarray  # a bound on the noise in one loss value: one, or one per row


@dataclass(frozen=True)
class Estimate:
    """Per-coordinate numerical derivatives and what is known of their error."""

    value: np.ndarray
    error: np.ndarray
    forward: np.ndarray
    forward_error: np.ndarray
    backward: np.ndarray
    backward_error: np.ndarray
    roundoff: np.ndarray
    smooth_gap: np.ndarray | None = None
    # Half the difference of the two sides' first-order corrections: (h/4)|J''| for a smooth
    # loss, as large as the smooth gap where a kink lies on one side only.
    bend: np.ndarray | None = None


@dataclass(frozen=True)
class Scheme:
    """A finite-difference recipe: offsets (in units of h) and how to combine them."""

    name: SchemeName
    multiples: tuple[complex, ...]
    order: int

    @property
    def evaluations_per_coordinate(self) -> int:
        return len(self.multiples)

    @property
    def is_complex(self) -> bool:
        return any(isinstance(m, complex) for m in self.multiples)

    def offsets(self, theta: np.ndarray, h: np.ndarray, exact: bool) -> np.ndarray:
        """Offsets to evaluate, shape (n, k).

        With ``exact`` the offsets are made exactly representable
        ((x + o) - x == o), which removes one rounding error from each difference;
        the notebook's own method does not do this, so user-given steps keep ``exact``
        off and reproduce the notebook's numbers to the last digit.
        """
        if self.is_complex:
            return np.outer(h, np.array(self.multiples, dtype=np.complex128))
        nominal = np.outer(h, np.array(self.multiples, dtype=np.float64))
        return representable(theta, nominal) if exact else nominal

    def combine(
        self, j0: float, values: np.ndarray, offsets: np.ndarray, delta: float | np.ndarray
    ) -> Estimate:
        """Combine loss values (n, k) at ``offsets`` (n, k) into an :class:`Estimate`.

        ``delta`` bounds the noise in one value: a number, or one per row.
        """
        # Values near overflow make differences overflow: the estimate is then inf or
        # NaN, which the judge fails (never passes); no warning escapes to the user.
        with np.errstate(over="ignore", invalid="ignore"):
            if self.name == "central":
                return _central(j0, values, offsets, delta)
            if self.name == "richardson":
                return _richardson(j0, values, offsets, delta)
            return _complex_step(values, offsets)


def _central(j0: float, values: np.ndarray, offsets: np.ndarray, delta: Noise) -> Estimate:
    jp, jm = values[:, 0], values[:, 1]
    hp, hm = offsets[:, 0], -offsets[:, 1]
    value = (jp - jm) / (hp + hm)
    forward = (jp - j0) / hp
    backward = (j0 - jm) / hm
    # Roundoff only: a two-point central difference carries no estimate of its
    # truncation error (the judge allows a relative slack for it instead).
    error = 2 * delta / (hp + hm)
    return Estimate(value, error, forward, 2 * delta / hp, backward, 2 * delta / hm, error)


def representable(theta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``offsets`` (one row per coordinate) made exactly representable next to ``theta``:
    ``(θ + o) - θ == o``, so that a difference carries no rounding of the step."""
    return (theta[:, None] + offsets) - theta[:, None]


def _richardson(j0: float, values: np.ndarray, offsets: np.ndarray, delta: Noise) -> Estimate:
    jp1, jm1, jp2, jm2 = (values[:, i] for i in range(4))
    op1, om1, op2, om2 = (offsets[:, i] for i in range(4))
    d1 = (jp1 - jm1) / (op1 - om1)
    d2 = (jp2 - jm2) / (op2 - om2)
    value = d2 + (d2 - d1) / 3
    # |value - d2| bounds the error of d2 and so, conservatively, of the
    # extrapolated value; the roundoff bound adds the noise of each difference.
    h = (op1 - om1) / 2
    roundoff = 3 * delta / h
    error = np.abs(value - d2) + roundoff
    fwd, fwd_err, fwd_step = _one_sided(j0, jp1, jp2, op1, op2, delta)
    bwd, bwd_err, bwd_step = _one_sided(j0, jm1, jm2, om1, om2, delta)
    # For a smooth loss the two central differences agree to O(h^2); a kink between the
    # steps pulls them apart by a slope jump. Each side's change between its two steps
    # is ±(h/4)J'' + O(h^2): their sum (twice the gap) cancels, their difference does not.
    bend = np.abs(fwd_step - bwd_step) / 2
    return Estimate(value, error, fwd, fwd_err, bwd, bwd_err, roundoff, np.abs(d1 - d2), bend)


def _one_sided(
    j0: float, j1: np.ndarray, j2: np.ndarray, o1: np.ndarray, o2: np.ndarray, delta: Noise
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Richardson-extrapolated one-sided difference, O(h^2), its error bound, and the
    change of the first-order difference between the two steps."""
    e1 = (j1 - j0) / o1
    e2 = (j2 - j0) / o2
    value = 2 * e2 - e1
    error = np.abs(value - e2) + 10 * delta / np.abs(o1)
    return value, error, e1 - e2


def _complex_step(values: np.ndarray, offsets: np.ndarray) -> Estimate:
    h = offsets[:, 0].imag
    value = values[:, 0].imag / h
    # No subtraction, so no cancellation: the error is a few units of roundoff.
    error = 8 * np.finfo(np.float64).eps * np.abs(value)
    nan = np.full_like(value, np.nan)
    return Estimate(value, error, nan, nan, nan, nan, error)


SCHEMES: dict[str, Scheme] = {
    "central": Scheme("central", (1.0, -1.0), 2),
    "richardson": Scheme("richardson", (1.0, -1.0, 0.5, -0.5), 4),
    "complex": Scheme("complex", (1j,), 2),
}


def default_step(scheme: SchemeName, machine_eps: float) -> float:
    """The relative step each scheme uses when the user gives none.

    Central and Richardson balance truncation against roundoff near
    eps**(1/3); the complex step has no roundoff to balance and uses 1e-20.
    """
    if scheme == "complex":
        return 1e-20
    return float(machine_eps ** (1 / 3))
