"""``budget=``: a limit on a check's work, in seconds or in loss evaluations.

A float is seconds, an int is loss evaluations, and a string is either (``"30s"``,
``"2.5min"``, ``"5000"``): the command line passes its ``--budget`` through as
typed. The modes ask :meth:`Budget.left` before each piece of work, so a check
stops between pieces, never in the middle of one, and says what it covered.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from dataclasses import dataclass, field
from typing import Any

from gradproof._errors import invalid

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*$")
_FIX = (
    "pass seconds as a float (budget=30.0), loss evaluations as an int (budget=5000), "
    "or a string such as '30s', '2min' or '5000'; or leave budget=None for no limit"
)


@dataclass(frozen=True)
class Budget:
    """What a check may spend: ``seconds`` or ``evaluations`` (None: unlimited).

    >>> Budget.parse("30s").seconds, Budget.parse(5000).evaluations
    (30.0, 5000)
    >>> Budget.parse(None).left(10**9)
    True
    """

    seconds: float | None = None
    evaluations: int | None = None
    started: float = field(default_factory=time.perf_counter)
    reserved: int = 0  # evaluations kept back for work that must follow (a closing check)

    @classmethod
    def parse(cls, budget: Any, reserved: int = 0) -> Budget:
        """Validate ``budget`` and turn it into a :class:`Budget`.

        ``reserved`` evaluations are kept back for work that must follow the
        budgeted part (the check's closing determinism test).

        Raises:
            InvalidArgument: not a positive number or a string such as "30s".
        """
        if budget is None:
            return cls(reserved=reserved)
        if isinstance(budget, bool):
            raise invalid("budget", budget, "must be seconds or loss evaluations", _FIX)
        if isinstance(budget, numbers.Integral):
            if int(budget) < 1:
                raise invalid("budget", budget, "must allow at least 1 loss evaluation", _FIX)
            return cls(evaluations=int(budget), reserved=reserved)
        if isinstance(budget, numbers.Real):
            if not (math.isfinite(float(budget)) and float(budget) > 0):
                raise invalid("budget", budget, "must be a finite number of seconds > 0", _FIX)
            return cls(seconds=float(budget), reserved=reserved)
        if isinstance(budget, str):
            return cls._parse_text(budget, reserved)
        raise invalid(
            "budget", budget, f"is a {type(budget).__name__}, not seconds or evaluations", _FIX
        )

    @classmethod
    def _parse_text(cls, text: str, reserved: int) -> Budget:
        match = _PATTERN.match(text.lower())
        if match is None or match.group(2) not in ("", *_UNITS):
            raise invalid(
                "budget", text, "must be a number, optionally followed by s, min or h", _FIX
            )
        number, unit = match.groups()
        if unit:
            return cls.parse(float(number) * _UNITS[unit], reserved)
        if re.fullmatch(r"[0-9]+", number):
            return cls.parse(int(number), reserved)
        raise invalid(
            "budget",
            text,
            "is a fractional number of evaluations (without a unit, a string counts evaluations)",
            _FIX,
        )

    @property
    def limited(self) -> bool:
        return self.seconds is not None or self.evaluations is not None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self, evaluations: int, need: int = 0) -> bool:
        """Whether ``need`` more evaluations fit after ``evaluations`` were spent."""
        if self.evaluations is not None and evaluations + need + self.reserved > self.evaluations:
            return False
        return self.seconds is None or self.elapsed() < self.seconds

    def room(self, evaluations: int, seconds_per_evaluation: float) -> int | None:
        """How many more evaluations fit (None: no limit)."""
        counts = []
        if self.evaluations is not None:
            counts.append(self.evaluations - self.reserved - evaluations)
        if self.seconds is not None:
            rate = max(seconds_per_evaluation, 1e-9)
            counts.append(int((self.seconds - self.elapsed()) / rate))
        return max(0, min(counts)) if counts else None

    def describe(self) -> str:
        if self.evaluations is not None:
            return f"{self.evaluations} loss evaluations"
        if self.seconds is not None:
            return f"{self.seconds:g} s"
        return "no limit"
