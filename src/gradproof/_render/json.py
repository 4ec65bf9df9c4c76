"""JSON-ready dicts of a Report."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any

from gradproof._render.words import checked_nothing

if TYPE_CHECKING:
    from gradproof._report import BlockResult, Report


def render_json(report: Report, *, indent: int | None = 2) -> str:
    """``report`` as JSON text; NaN and inf become ``null`` (strict JSON).

    >>> import json, numpy as np, gradproof
    >>> report = gradproof.check(lambda w: float(w @ w), np.ones(2), lambda w: 2 * w)
    >>> json.loads(render_json(report))["status"]
    'pass'
    """
    return json.dumps(_plain(report_to_dict(report)), indent=indent, allow_nan=False)


def report_to_dict(report: Report) -> dict[str, Any]:
    """Every field of ``report`` as plain Python values (json.dumps-ready)."""
    return {
        "status": report.status,
        "passed": report.passed,
        # None where no coordinate was checked: a difference over nothing is no measurement
        "difference": None if checked_nothing(report) else _num(report.difference),
        "checked": sum(block.checked for block in report.blocks.values()),
        "tol": report.tol,
        "scheme": report.scheme,
        "eps": report.eps,
        "precision": report.precision,
        "mode": report.mode,
        "evaluations": report.evaluations,
        "seconds": report.seconds,
        "coverage": report.coverage,
        "miss_probability": report.miss_probability,
        "suspects": list(report.suspects),
        "notes": list(report.notes),
        "blocks": {name: _block(b) for name, b in report.blocks.items()},
        "extra": _plain(dict(report.extra)),
    }


def _block(block: BlockResult) -> dict[str, Any]:
    out = _plain(dataclasses.asdict(block))
    out["passed"] = block.passed
    return out


def _num(x: float) -> float | None:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _num(value)
    if hasattr(value, "item"):
        return _plain(value.item())
    return value
