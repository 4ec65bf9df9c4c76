"""Argument checks for the public entry points, in one place."""

from __future__ import annotations

import difflib
import functools
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np

from gradproof._engine.schemes import SCHEMES
from gradproof._errors import invalid

P = ParamSpec("P")
R = TypeVar("R")


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


def validate_batched(batched: Any) -> None:
    """``batched`` must be True or False (a string such as "no" is truthy, not False)."""
    if not isinstance(batched, bool | np.bool_):
        raise invalid(
            "batched",
            batched,
            "must be True or False",
            "pass batched=True if the loss takes a leading batch axis on every leaf and "
            "returns one value per parameter set, else leave batched=False",
        )


def validate_callable(argument: str, value: Any, fix: str) -> None:
    if not callable(value):
        raise invalid(argument, value, "must be callable", fix)


def validate_mode(mode: Any, samples: Any, seed: Any, scheme: Any) -> None:
    """``mode`` one of :data:`MODES`; ``samples``, ``seed`` and ``scheme`` fit it."""
    if mode not in MODES:
        raise invalid(
            "mode",
            mode,
            f"must be one of {list(MODES)}",
            "use 'full' (every coordinate), 'sample' (k coordinates per block) or 'probe' "
            "(random directions per block, then bisection to the wrong elements)",
        )
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, numbers.Integral) or samples < 1:
            raise invalid(
                "samples",
                samples,
                "must be a whole number >= 1",
                "pass samples=32 (coordinates per block in mode='sample', directions per "
                "block in mode='probe'), or leave samples=None for the default",
            )
        if mode == "full":
            raise invalid(
                "samples",
                samples,
                "has no meaning with mode='full', which checks every coordinate",
                "pass mode='sample' or mode='probe' with it, or drop `samples`",
            )
    validate_seed(seed)
    if mode == "probe" and scheme == "complex":
        raise invalid(
            "scheme",
            scheme,
            "is not available with mode='probe' (probes shift many coordinates at once)",
            "use scheme='richardson' (or 'auto') with mode='probe', or mode='full'",
        )


def validate_passed_on(
    where: Callable[..., Any],
    options: dict[str, Any],
    to: Callable[..., Any],
    own: set[str],
    also: tuple[str, ...] = (),
) -> None:
    """Each of ``options`` (a drop-in's ``**options``) is one of the keywords of ``to``
    (:func:`gradproof.check`) that ``where`` passes on to it, so a misspelt one is named
    before ``func`` runs, not as a ``TypeError`` from deep inside the check. ``own``: the
    keywords ``where`` sets itself (not the user's to pass); ``also``: ``where``'s own
    arguments that come through ``**options`` (listed with its arguments in the message).

    >>> def drop_in(f, *, atol=None, **options): ...
    >>> from gradproof import check
    >>> validate_passed_on(drop_in, {"tolerance": 1e-5}, to=check, own=set())
    Traceback (most recent call last):
    ...
    gradproof.InvalidArgument: `tolerance`=1e-05: is neither ... Fix: did you mean `tol`? ...
    """
    passed_on = [n for n in _keywords(to, only=True) if n not in own]
    for name, value in options.items():
        if name in passed_on:
            continue
        arguments = [*_keywords(where), *also]
        hint = _did_you_mean(name, [*arguments, *passed_on])
        public = _public_name(where)
        raise invalid(
            name,
            value,
            f"is neither an argument of {public} nor an option of gradproof.check it passes on",
            f"{hint}{public}'s arguments are {', '.join(arguments)}; the options it "
            f"passes on are {', '.join(passed_on)}",
        )


def refuse_unknown_keywords(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, whose unknown keyword arguments are an :class:`InvalidArgument` naming
    the keyword, its value and the closest right spelling, not Python's bare ``TypeError``.

    >>> @refuse_unknown_keywords
    ... def check(loss, *, tol=None, eps=None): ...
    >>> check(None, tolerance=1e-5)
    Traceback (most recent call last):
    ...
    gradproof.InvalidArgument: `tolerance`=1e-05: is not an argument of ... did you mean `tol`? ...
    """
    known = _keywords(function)

    @functools.wraps(function)
    def refusing(*args: P.args, **kwargs: P.kwargs) -> R:
        for name, value in kwargs.items():
            if name not in known:
                _refuse(function, name, value, known)
        return function(*args, **kwargs)

    return refusing


def _refuse(function: Callable[..., Any], name: str, value: Any, known: Sequence[str]) -> None:
    public = _public_name(function)
    raise invalid(
        name,
        value,
        f"is not an argument of {public}",
        f"{_did_you_mean(name, known)}{public}'s keyword arguments are {', '.join(known)}",
    )


def _did_you_mean(name: str, spellings: Sequence[str]) -> str:
    """``"did you mean `tol`? "`` for the closest of ``spellings`` to ``name``, or ""."""
    close = difflib.get_close_matches(name, spellings, n=1, cutoff=0.5)
    return f"did you mean `{close[0]}`? " if close else ""


def _public_name(function: Callable[..., Any]) -> str:
    """``gradproof.torch.gradcheck`` for the function defined in ``gradproof.torch._gradcheck``."""
    if function.__module__.startswith("gradproof._engine"):  # gradproof.check and its kin
        return f"gradproof.{function.__name__}"
    module = ".".join(part for part in function.__module__.split(".") if not part.startswith("_"))
    return f"{module}.{function.__name__}"


@functools.lru_cache(maxsize=64)  # gradproof's own functions, whose signatures do not change
def _keywords(function: Callable[..., Any], only: bool = False) -> tuple[str, ...]:
    """The names ``function`` takes by keyword (``**options`` left out; ``only``: its
    keyword-only ones, those after ``*``)."""
    kinds: set[inspect._ParameterKind] = {inspect.Parameter.KEYWORD_ONLY}
    if not only:
        kinds.add(inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds)
