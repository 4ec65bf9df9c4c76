"""Misuse gives an InvalidArgument naming the argument, its value, the rule and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import gradproof

P = {"W": np.ones((2, 3)), "b": np.zeros(2)}
G = {"W": np.full((2, 3), 2.0), "b": np.zeros(2)}


def loss(p):
    return float(np.sum(p["W"] ** 2) + np.sum(p["b"] ** 2))


def with_nan(p):
    return float("nan")


def with_inf(p):
    return float(np.sum(p["W"]) * np.inf)


def writes_into_params(p):
    p["W"] += 1.0  # an in-place update of what gradproof passes read-only
    return float(np.sum(p["W"] ** 2))


CASES = [
    # id, call kwargs overrides, argument named, fragments the message must hold
    (
        "grad-shape",
        {"grad": {"W": np.ones((3, 2)), "b": np.zeros(2)}},
        "grad block 'W'",
        ["(3, 2)", "(2, 3)", "shape"],
    ),
    ("grad-missing", {"grad": {"W": G["W"]}}, "grad", ["missing", "'b'"]),
    ("grad-extra", {"grad": {**G, "c": np.ones(1)}}, "grad", ["extra", "'c'"]),
    ("loss-vector", {"loss": lambda p: p["W"]}, "loss", ["shape (2, 3)", "scalar", ".sum()"]),
    ("loss-nan", {"loss": with_nan}, "loss", ["nan", "non-finite"]),
    ("loss-inf", {"loss": with_inf}, "loss", ["inf", "non-finite"]),
    (
        "grad-nan",
        {"grad": {"W": np.full((2, 3), np.nan), "b": np.zeros(2)}},
        "grad",
        ["W[0, 0]", "nan", "finite"],
    ),
    (
        "params-string",
        {"params": {"W": "weights"}, "grad": {"W": 1.0}},
        "params block 'W'",
        ["'weights'", "str", "number"],
    ),
    ("params-bool", {"params": True, "grad": 1.0}, "params", ["bool"]),
    (
        "params-object",
        {"params": np.array([1.0, "x"], dtype=object), "grad": np.ones(2)},
        "params",
        ["object", "real and complex"],
    ),
    (
        "grad-real-for-complex",
        {"params": np.ones(2, dtype=complex), "grad": np.ones(2)},
        "grad block 'params'",
        ["must be complex", "dL/d(Re z) + i·dL/d(Im z)"],
    ),
    ("params-empty", {"params": {}, "grad": {}}, "params", ["no parameters"]),
    (
        "params-empty-block",
        {"params": {"W": np.ones((2, 3)), "e": np.zeros(0)}, "grad": {**G, "e": np.zeros(0)}},
        "params",
        ["'e' is empty", "shape (0,)", "leave 'e' out"],
    ),
    (
        "grad-notebook-key-missing",
        {"grad": {"dW": G["W"], "dZ1": np.ones(2)}},
        "grad",
        ["notebook's convention", "no ['db']", "'db'"],
    ),
    (
        "grad-inf",
        {"grad": {"W": G["W"], "b": np.array([0.0, np.inf])}},
        "grad",
        ["b[1]", "inf", "finite"],
    ),
    ("eps-zero", {"eps": 0}, "eps", ["0", "> 0", "eps=1e-7"]),
    ("eps-negative", {"eps": -1e-7}, "eps", ["-1e-07", "> 0"]),
    ("eps-nan", {"eps": float("nan")}, "eps", ["nan", "finite"]),
    ("tol-zero", {"tol": 0.0}, "tol", ["> 0", "tol=2e-7"]),
    ("noise-negative", {"noise": -1.0}, "noise", ["> 0"]),
    ("grad-neither", {"grad": "dW"}, "grad", ["'dW'", "callable", "structure"]),
    ("grad-none", {"grad": None}, "grad", ["None", "callable"]),
    ("loss-not-callable", {"loss": 3.0}, "loss", ["3.0", "callable"]),
    ("scheme-unknown", {"scheme": "forward"}, "scheme", ["'forward'", "richardson"]),
    ("grad-returns-none", {"grad": lambda p: None}, "grad", ["returned None", "return grads"]),
    (
        "loss-two-arguments",
        {"loss": lambda p, q: 0.0},
        "loss",
        ["one argument", "missing 1 required positional argument", "closure"],
    ),
    ("loss-writes-params", {"loss": writes_into_params}, "loss", ["read-only", ".copy()"]),
]


@pytest.mark.parametrize(
    ("overrides", "argument", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_misuse_is_explained(overrides, argument, fragments):
    kwargs = {"loss": loss, "params": P, "grad": G, **overrides}
    call_loss, params, grad = kwargs.pop("loss"), kwargs.pop("params"), kwargs.pop("grad")
    with pytest.raises(gradproof.InvalidArgument) as info:
        gradproof.check(call_loss, params, grad, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith(f"`{argument}`="), message
    assert "Fix: " in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_a_loss_that_is_nan_next_to_the_base_point_is_reported_where_it_happened():
    # The first points off the base point are the noise measurement's: the message says so
    # and does not suggest a smaller eps, which does not set those steps.
    base = np.ones(3)

    def loss(p):
        return float(np.sum(p**2)) if np.array_equal(p, base) else float("nan")

    with pytest.raises(gradproof.InvalidArgument) as info:
        gradproof.check(loss, base, 2 * base)
    message = str(info.value)
    assert message.startswith("`loss`=nan") and "the noise measurement" in message
    assert "`eps`" not in message


def test_a_losss_own_type_error_is_not_called_misuse():
    def loss(p):
        return float(np.sum(p["W"])) + "oops"  # the user's bug, not gradproof's

    with pytest.raises(TypeError, match="unsupported operand") as info:
        gradproof.check(loss, P, G)
    assert not isinstance(info.value, gradproof.GradproofError)


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"a.b": np.ones(2), "a": {"b": np.ones(1)}}, ["'a.b'", "a.b"]),
        ({0: np.ones(2), "0": np.ones(1)}, ["0", "'0'"]),
        (
            {"layer1.weight": np.ones(2), "layer1.bias": np.ones(1)},
            ["layer1.weight", "layer1.bias"],
        ),
        ([np.ones(2), (np.ones(1), {"x": np.ones(1)})], ["0", "1.0", "1.1.x"]),
    ],
    ids=["dotted-key-vs-nested", "int-vs-str-key", "torch-style-names", "nested-sequences"],
)
def test_block_names_are_unique_and_a_correct_gradient_passes(params, names):
    from gradproof._engine.tree import flatten

    layout, theta = flatten(params)
    assert [b.name for b in layout.blocks] == names

    def loss(p):
        return float(sum(np.sum(np.asarray(x) ** 3) for x in _leaves(p)))

    grad = layout.build(3 * theta**2)  # the same structure, keys and all
    report = gradproof.check(loss, params, grad)
    assert report.status == "pass", str(report)
    assert list(report.blocks) == names


def _leaves(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


@pytest.mark.parametrize(
    "options", [{}, {"scheme": "richardson"}, {"mode": "probe"}, {"batched": False}]
)
def test_a_loss_returning_a_complex_number_is_named_before_any_step(options):
    """An FFT-based loss that forgets np.real returns a complex scalar for real parameters:
    the first value, at the base point, says so with the fix (not a float() TypeError
    from inside the noise measurement)."""
    x = np.array([1.0, 2.0, 0.5, -1.0])
    seen = []

    def fft_loss(w):
        seen.append(w.copy())
        return np.sum(np.fft.fft(w) * np.conj(np.fft.fft(x)))

    with pytest.raises(gradproof.InvalidArgument) as caught:
        gradproof.check(fft_loss, x.copy(), lambda w: 4 * x, **options)
    text = str(caught.value)
    assert text.startswith("`loss`=(")
    assert "returned a complex number (complex128) at the base point" in text
    assert "np.real(z)" in text
    assert len(seen) == 1 and np.array_equal(seen[0], x)  # only the base point was tried
