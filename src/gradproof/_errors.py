"""The one exception hierarchy of gradproof.

Every error gradproof raises derives from :class:`GradproofError`, so one
``except gradproof.GradproofError`` catches them all; each also derives from the
builtin its meaning matches (``ValueError`` for misuse, ``AssertionError`` for a
wrong gradient), so code that catches those keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradproof._report import Report


class GradproofError(Exception):
    """Base class of every error gradproof raises."""


class InvalidArgument(GradproofError, ValueError):
    """An argument broke a rule; the message names it, its value, the rule and the fix."""


class GradcheckError(GradproofError, AssertionError):
    """The gradient under test does not match the numerical derivative.

    ``str(error)`` is the full text report; ``error.report`` is the
    :class:`~gradproof.Report` itself.
    """

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report


class NondeterministicLossError(GradproofError, RuntimeError):
    """The loss returned different values for the same parameters."""


class WorkerError(GradproofError, RuntimeError):
    """An evaluation of the loss did not finish: its worker process died, or it ran
    past ``timeout=`` or far past the end of the budget.

    The message names the points being evaluated, the cause and what to try.

    Attributes:
        cause: what happened, in a few words ("exit code 3", "signal SIGSEGV",
            "timeout", "budget").
        coordinates: the coordinates being evaluated, as (block name, element index).
    """

    def __init__(
        self,
        message: str,
        cause: str = "",
        coordinates: tuple[tuple[str, tuple[int, ...]], ...] = (),
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.coordinates = coordinates

    def __reduce__(self) -> Any:
        return type(self), (str(self), self.cause, self.coordinates)


# Shown by their public names (`gradproof.GradcheckError` in a pytest failure), not by
# the private module they live in.
for _public in (
    GradproofError,
    InvalidArgument,
    GradcheckError,
    NondeterministicLossError,
    WorkerError,
):
    _public.__module__ = "gradproof"


def invalid(argument: str, value: Any, rule: str, fix: str) -> InvalidArgument:
    """Build an :class:`InvalidArgument` whose message follows the house style.

    >>> str(invalid("eps", 0, "must be > 0", "pass a small step such as eps=1e-7"))
    '`eps`=0: must be > 0. Fix: pass a small step such as eps=1e-7.'
    """
    shown = _short_repr(value)
    return InvalidArgument(f"`{argument}`={shown}: {rule}. Fix: {fix}.")


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
