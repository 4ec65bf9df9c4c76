"""The Gradient Checking notebook's fraud-detection network as a `gradproof check` target.

    gradproof check examples/fraud_problem.py:problem --eps 1e-7
    gradproof check examples/fraud_problem.py:fixed --eps 1e-7 --tol 2e-7

`problem` is the notebook's backprop with its two planted bugs (exit code 1, W2 and b1
named); `fixed` is the corrected one (exit code 0).
"""

from gradproof.examples import fraud


def problem():
    """(loss, params, grads) with the notebook's planted bugs in dW2 and db1."""
    return fraud.problem(bugs=True)


def fixed():
    """(loss, params, grads) with the corrected backprop."""
    return fraud.problem(bugs=False)
