"""Argument checks for the public entry points, in one place."""

from __future__ import annotations

import math
import numbers
from typing import Any

from gradproof._engine.schemes import SCHEMES
from gradproof._errors import invalid


def validate_positive(argument: str, value: Any, fix: str, allow_none: bool = True) -> None:
    """``value`` must be a finite number > 0 (or None where allowed)."""
    if value is None and allow_none:
        return
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and float(value) > 0
    )
    if not ok:
        raise invalid(argument, value, "must be a finite number > 0", fix)


def validate_seed(seed: Any) -> None:
    """``seed`` must be a whole number >= 0."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise invalid("seed", seed, "must be a whole number >= 0", "pass seed=0 (for example)")


# The names a user may pass, in the order the docs and the command line list them.
SCHEME_NAMES = ("auto", *SCHEMES)
MODES = ("full", "sample", "probe")


def validate_scheme(scheme: Any) -> None:
    """``scheme`` must be one of :data:`SCHEME_NAMES`."""
    if scheme not in SCHEME_NAMES:
        raise invalid(
            "scheme",
            scheme,
            f"must be one of {list(SCHEME_NAMES)}",
            "use 'auto' (Richardson with scaled steps, or central with your `eps`), "
            "'central' (the Gradient Checking notebook's method), 'richardson' or 'complex'",
        )


def validate_callable(argument: str, value: Any, fix: str) -> None:
    if not callable(value):
        raise invalid(argument, value, "must be callable", fix)
