"""gradproof: proof that a gradient is right, or where and how it is wrong.

>>> import numpy as np, gradproof
>>> report = gradproof.check(lambda w: float(np.sum(np.sin(w))), np.zeros(3), np.ones(3))
>>> report.status
'pass'
"""

from gradproof._check import assert_gradients_match, check
from gradproof._errors import (
    GradcheckError,
    GradproofError,
    InvalidArgument,
    NondeterministicLossError,
)
from gradproof._report import BlockResult, Diagnosis, ElementResult, Report
from gradproof._taylor import SweepResult, TaylorResult, sweep, taylor_test

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
    "__version__",
    "assert_gradients_match",
    "check",
    "sweep",
    "taylor_test",
]
