"""torch.autograd.gradcheck's own options, checked, and which of `gradcheck`'s checks they run.

Every option of torch's ``gradcheck`` is taken and does what it does in torch
(see docs/parity.md); misuse is an :class:`~gradproof.InvalidArgument` naming
the option, where torch raises an ``AssertionError``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from gradproof._errors import invalid


@dataclasses.dataclass(frozen=True)
class TorchOptions:
    """torch's options of ``gradcheck`` beside ``eps``/``atol``/``rtol``, at torch's defaults.

    >>> TorchOptions().check_backward_ad, TorchOptions(check_forward_ad=True).check_forward_ad
    (True, True)
    >>> TorchOptions(check_backward_ad=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    gradproof.InvalidArgument: `check_backward_ad`=False: with check_forward_ad=False too, ...
    """

    nondet_tol: float = 0.0
    check_undefined_grad: bool = True
    check_grad_dtypes: bool = False
    check_batched_grad: bool = False
    check_batched_forward_grad: bool = False
    check_forward_ad: bool = False
    check_backward_ad: bool = True
    masked: bool | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "nondet_tol":
                validate_nondet_tol(value)
            elif field.name == "masked":
                if value is not None and not isinstance(value, bool):
                    raise invalid(
                        "masked", value, "must be None, True or False", "pass masked=False"
                    )
            else:
                validate_flag(field.name, value)
        self._validate_combination()

    def _validate_combination(self) -> None:
        """The combinations torch refuses, refused by name."""
        if not (self.check_forward_ad or self.check_backward_ad):
            raise invalid(
                "check_backward_ad",
                False,
                "with check_forward_ad=False too, nothing would be checked",
                "leave check_backward_ad=True, or pass check_forward_ad=True to check the jvp",
            )
        if self.check_batched_grad and not self.check_backward_ad:
            raise invalid(
                "check_batched_grad",
                True,
                "checks the backward under vmap, which check_backward_ad=False skips",
                "pass check_backward_ad=True, or drop check_batched_grad",
            )
        if self.check_batched_forward_grad and not self.check_forward_ad:
            raise invalid(
                "check_batched_forward_grad",
                True,
                "checks the jvp under vmap, which needs check_forward_ad=True",
                "pass check_forward_ad=True as well",
            )


def validate_nondet_tol(value: Any) -> None:
    """``nondet_tol`` must be a finite number >= 0."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise invalid(
            "nondet_tol",
            value,
            "must be a finite number >= 0",
            "pass nondet_tol=0.0 (the backward must repeat exactly) or a small bound such as 1e-12",
        )


def validate_flag(name: str, value: Any) -> None:
    """A boolean option must be True or False."""
    if not isinstance(value, bool):
        raise invalid(name, value, "must be True or False", f"pass {name}=True or False")
