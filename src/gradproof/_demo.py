"""`gradproof demo`: the Gradient Checking notebook's fraud-detection example in two checks."""

from __future__ import annotations

from rich.console import Console
from rich.rule import Rule

from gradproof._engine.check import check
from gradproof._render.text import print_report
from gradproof.examples import fraud


def run_demo(console: Console) -> None:
    """Check the notebook's fraud-detection network with its planted bugs, then with them fixed."""
    for bugs, title in (
        (True, "1. backward_propagation_n, as the notebook ships it (two planted bugs)"),
        (False, "2. backward_propagation_n_fixed (dW2 without the 2, db1 with 1./m)"),
    ):
        loss, params, grads = fraud.problem(bugs=bugs)
        console.print(Rule(title, align="left"))
        console.print(
            "gradproof.check(loss, params, grads, eps=1e-7)   "
            "# the notebook's method: plain central differences"
        )
        print_report(check(loss, params, grads, eps=1e-7), console)
        console.print()
