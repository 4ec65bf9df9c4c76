"""gradproof: proof that a gradient is right, or where and how it is wrong.

>>> import numpy as np, gradproof
>>> report = gradproof.check(lambda w: float(np.sum(np.sin(w))), np.zeros(3), np.ones(3))
>>> report.status
'pass'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradproof._engine.check import assert_gradients_match, check
    from gradproof._engine.taylor import SweepResult, TaylorResult, sweep, taylor_test
    from gradproof._errors import (
        GradcheckError,
        GradproofError,
        InvalidArgument,
        NondeterministicLossError,
        WorkerError,
    )
    from gradproof._report import BlockResult, Diagnosis, ElementResult, Report

# Public name -> the private module that defines it. Imported on first use, so that
# `import gradproof` (and the pytest plugin, which lives in this package) stays cheap.
_HOME = {
    "check": "_engine.check",
    "assert_gradients_match": "_engine.check",
    "GradproofError": "_errors",
    "InvalidArgument": "_errors",
    "GradcheckError": "_errors",
    "NondeterministicLossError": "_errors",
    "WorkerError": "_errors",
    "BlockResult": "_report",
    "Diagnosis": "_report",
    "ElementResult": "_report",
    "Report": "_report",
    "SweepResult": "_report",
    "TaylorResult": "_report",
    "sweep": "_engine.taylor",
    "taylor_test": "_engine.taylor",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'gradproof' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gradproof.{home}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__version__ = "0.1.0"

__all__ = [
    "BlockResult",
    "Diagnosis",
    "ElementResult",
    "GradcheckError",
    "GradproofError",
    "InvalidArgument",
    "NondeterministicLossError",
    "Report",
    "SweepResult",
    "TaylorResult",
    "WorkerError",
    "__version__",
    "assert_gradients_match",
    "check",
    "sweep",
    "taylor_test",
]
