"""What one of `gradcheck`'s checks found: an :class:`Outcome`; reports for checks without steps.

Most of `gradcheck`'s checks compare a derivative (the backward, the jvp, the
backward under vmap) with gradproof's numerical one; their report is
:func:`gradproof.check`'s. A few of torch's checks compare two things the
function computed itself: the backward run twice (``nondet_tol``), the
backward given undefined output gradients against zero, the gradients' dtype
and device against the inputs'. :func:`comparison_report` and
:func:`raised_report` give those the same :class:`~gradproof.Report`, so the
failure still names the input and the element, and says what was compared in
the element notes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from gradproof._engine.blocks import WORST_SHOWN
from gradproof._report import BlockResult, Diagnosis, ElementResult, Report, Status


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One check's report and what it checked, in words.

    ``what`` names the derivative under test (``"backward"``, ``"forward-mode
    derivative (jvp)"``); ``context`` says what it was compared with. A
    ``numerical`` outcome compared it with gradproof's numerical derivative of
    ``context``; another one's ``context`` is the whole finding ("is not
    deterministic: ...").
    """

    what: str
    context: str
    report: Report
    numerical: bool = True


@dataclasses.dataclass(frozen=True)
class Compared:
    """Two values of every checked input, compared element by element.

    ``got`` is what is under test, ``expected`` what it must equal; an element
    fails where they differ by more than ``tolerance`` (NaN fails).
    """

    got: Mapping[str, np.ndarray]
    expected: Mapping[str, np.ndarray]
    tolerance: float
    note: str  # what the two columns are, shown beside each element


def comparison_report(compared: Compared, *, kind: str, finding: str, coverage: str) -> Report:
    """A report of the elements where ``got`` and ``expected`` differ beyond the tolerance.

    ``finding`` completes "<input>: ..." for each failing input.

    >>> c = Compared({"x": np.array([1.0, 2.0])}, {"x": np.array([1.0, 2.5])}, 0.0, "run 2 / 1")
    >>> report = comparison_report(c, kind="nondeterministic", finding="differs", coverage="")
    >>> report.status, report.blocks["x"].wrong_elements, report.blocks["x"].worst[0].numerical
    ('fail', ((1,),), 2.5)
    """
    blocks = {
        name: _compared_block(
            name, got, np.asarray(compared.expected[name]), compared, kind, finding
        )
        for name, got in compared.got.items()
    }
    return _report(blocks, _difference(compared), coverage)


def agrees(compared: Compared) -> bool:
    """Whether every element of ``got`` is within the tolerance of ``expected`` (NaN is not):
    the verdict of :func:`comparison_report`, without building the report.

    >>> agrees(Compared({"x": np.array([1.0, 2.0])}, {"x": np.array([1.0, 2.0])}, 0.0, ""))
    True
    >>> agrees(Compared({"x": np.array([np.nan])}, {"x": np.array([np.nan])}, 1.0, ""))
    False
    """
    return all(
        bool((np.abs(got - np.asarray(compared.expected[name])) <= compared.tolerance).all())
        for name, got in compared.got.items()
    )


def raised_report(shapes: Mapping[str, tuple[int, ...]], *, kind: str, sentence: str) -> Report:
    """A failed report for a check that could not compute its gradients at all.

    >>> report = raised_report({"x": (2,)}, kind="raised", sentence="the backward raised")
    >>> report.status, report.suspects, report.blocks["x"].diagnosis.sentence
    ('fail', ('x',), 'x: the backward raised')
    """
    return blocks_report(
        shapes,
        dict.fromkeys(shapes, sentence),
        kind=kind,
        coverage="no gradient: the call raised",
    )


def blocks_report(
    shapes: Mapping[str, tuple[int, ...]],
    failing: Mapping[str, str],
    *,
    kind: str,
    coverage: str,
) -> Report:
    """A report whose blocks in ``failing`` fail, each with its sentence; the others pass."""
    blocks = {
        name: BlockResult(
            name=name,
            shape=shape,
            status="fail" if name in failing else "pass",
            difference=float("nan") if name in failing else 0.0,
            scale=None,
            max_abs_error=float("nan") if name in failing else 0.0,
            worst_index=(),
            checked=0,
            diagnosis=Diagnosis(kind, f"{name}: {failing[name]}") if name in failing else None,
            reason=failing.get(name, ""),
        )
        for name, shape in shapes.items()
    }
    return _report(blocks, float("nan") if failing else 0.0, coverage)


def _compared_block(
    name: str,
    got: np.ndarray,
    expected: np.ndarray,
    compared: Compared,
    kind: str,
    finding: str,
) -> BlockResult:
    err = np.abs(got - expected)
    with np.errstate(invalid="ignore"):
        bad = ~(err <= compared.tolerance)
    order = np.argsort(-np.nan_to_num(err.ravel(), nan=np.inf), kind="stable")
    worst = tuple(
        _element(name, np.unravel_index(int(flat), got.shape), got, expected, compared)
        for flat in order[:WORST_SHOWN]
        if bad.ravel()[flat]
    )
    largest = float(np.max(np.nan_to_num(err, nan=np.inf), initial=0.0))
    failed = bool(bad.any())
    sentence = (
        f"{name}: {finding} at {int(bad.sum())} element(s), by up to {largest:.3g} "
        f"(allowed: {compared.tolerance:g})"
    )
    status: Status = "fail" if failed else "pass"
    return BlockResult(
        name=name,
        shape=tuple(got.shape),
        status=status,
        difference=_relative(got, expected),
        scale=None,
        max_abs_error=largest,
        worst_index=worst[0].index if worst else (),
        checked=int(got.size),
        wrong_elements=tuple(tuple(int(i) for i in idx) for idx in np.argwhere(bad)),
        worst=worst,
        diagnosis=Diagnosis(kind, sentence) if failed else None,
        reason=sentence if failed else "",
    )


def _element(
    name: str, index: tuple[np.intp, ...], got: np.ndarray, expected: np.ndarray, c: Compared
) -> ElementResult:
    a, n = float(got[index]), float(expected[index])
    err = abs(a - n)
    size = max(abs(a), abs(n))
    return ElementResult(
        block=name,
        index=tuple(int(i) for i in index),
        analytic=a,
        numerical=n,
        abs_error=err,
        rel_error=err / size if size > 0 else 0.0,
        tolerance=c.tolerance,
        note=c.note,
    )


def _report(blocks: dict[str, BlockResult], difference: float, coverage: str) -> Report:
    failing = tuple(n for n in reversed(list(blocks)) if blocks[n].status == "fail")
    return Report(
        status="fail" if failing else "pass",
        difference=difference,
        tol=None,
        blocks=blocks,
        suspects=failing,
        scheme="none",
        eps=0.0,
        precision="float64",
        evaluations=0,
        seconds=0.0,
        mode="comparison",
        coverage=coverage,
    )


def _relative(got: np.ndarray, expected: np.ndarray) -> float:
    """The notebook's difference ``||a - b|| / (||a|| + ||b||)`` (0 where both are zero)."""
    total = float(np.linalg.norm(got) + np.linalg.norm(expected))
    return float(np.linalg.norm(got - expected)) / total if total > 0 else 0.0


def _difference(compared: Compared) -> float:
    got = np.concatenate([np.ravel(v) for v in compared.got.values()] or [np.zeros(0)])
    expected = np.concatenate(
        [np.ravel(compared.expected[n]) for n in compared.got] or [np.zeros(0)]
    )
    return _relative(got, expected)
