"""Property-based robustness: any structure, any dtype, any bad option value.

Whatever hypothesis draws, only gradproof's own errors (or the user's own
exceptions) escape a check; the user's arrays are bit-exact afterwards; a
correct gradient never fails; a planted error always fails, in its block.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the test extra brings hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gradproof  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = [np.float64, np.float32, np.float16, np.int64]
KEYS = st.one_of(
    st.text(alphabet="ab.0_é", min_size=0, max_size=4),
    st.integers(min_value=0, max_value=3),
)


@st.composite
def leaves(draw):
    """A parameter leaf: a Python float or a small array of some dtype."""
    if draw(st.booleans()):
        return draw(st.floats(min_value=-3, max_value=3, allow_nan=False))
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    dtype = draw(st.sampled_from(DTYPES))
    values = draw(
        st.lists(
            st.floats(min_value=-3, max_value=3, allow_nan=False, width=16),
            min_size=int(np.prod(shape)),
            max_size=int(np.prod(shape)),
        )
    )
    return np.array(values, dtype=np.float64).reshape(shape).astype(dtype)


structures = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.dictionaries(KEYS, children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
    ),
    max_leaves=5,
)


def items(node):
    """Every leaf of a structure, in a fixed order."""
    if isinstance(node, dict):
        for value in node.values():
            yield from items(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from items(value)
    else:
        yield node


def rebuild(node, values):
    """``node``'s structure with its leaves replaced, in order, by ``values``."""
    if isinstance(node, dict):
        return {k: rebuild(v, values) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(rebuild(v, values) for v in node)
    return next(values)


def loss(p):
    """A smooth loss of every leaf: sum of sin(x) + x²/2, in float64."""
    return float(
        sum(
            np.sum(np.sin(np.asarray(x, dtype=np.float64)) + np.asarray(x) ** 2 / 2)
            for x in items(p)
        )
    )


def grad(p):
    return rebuild(
        p, iter(np.cos(np.asarray(x, dtype=np.float64)) + np.asarray(x) for x in items(p))
    )


def snapshot(node):
    return [np.array(x, copy=True) for x in items(node)]


def same(before, node):
    return all(
        a.dtype == np.asarray(b).dtype and a.tobytes() == np.asarray(b).tobytes()
        for a, b in zip(before, items(node), strict=True)
    )


@SETTINGS
@given(structures)
def test_a_correct_gradient_never_fails_and_the_users_data_are_untouched(params):
    if not any(np.size(x) for x in items(params)):
        return
    before = snapshot(params)
    try:
        report = gradproof.check(loss, params, grad)
    except gradproof.InvalidArgument as error:  # an empty dict/list inside: named, not raw
        assert "Fix: " in str(error)
        return
    assert report.status != "fail", str(report)
    assert same(before, params)


@SETTINGS
@given(structures, st.data())
def test_a_planted_error_fails_in_its_block(params, data):
    sizes = [np.size(x) for x in items(params)]
    if not sum(sizes):
        return
    try:
        names = list(gradproof.check(loss, params, grad).blocks)
    except gradproof.InvalidArgument:
        return
    which = data.draw(st.integers(0, len(names) - 1))
    good = grad(params)
    values = [np.array(x, dtype=np.float64, copy=True) for x in items(good)]
    values[which] = values[which] + 0.5  # every element of one block off by 0.5
    wrong = rebuild(good, iter(values))
    report = gradproof.check(loss, params, wrong)
    assert report.status == "fail"
    assert names[which] in report.suspects


BAD_OPTIONS = {
    "eps": st.one_of(st.just(0.0), st.just(-1.0), st.just(math.nan), st.text(max_size=3)),
    "tol": st.one_of(st.just(0), st.just(-1e-7), st.just(math.inf), st.just([1e-7])),
    "noise": st.one_of(st.just(-1.0), st.just("0.1"), st.just(math.nan)),
    "scheme": st.one_of(st.text(max_size=6), st.integers(), st.none()),
    "mode": st.one_of(st.text(max_size=6), st.integers(), st.just(None)),
    "samples": st.one_of(st.just(0), st.just(-3), st.just(2.5), st.just("ten")),
    "seed": st.one_of(st.just(-1), st.just(1.5), st.just("abc"), st.just(True)),
    "budget": st.one_of(st.just(0), st.just(-5.0), st.just("soon"), st.just(True)),
    "workers": st.one_of(st.just(0), st.just(-2), st.just(1.5), st.just("two")),
    "executor": st.one_of(st.just("pool"), st.just(3)),
    "progress": st.one_of(st.just("yes"), st.just(2)),
    "batched": st.one_of(st.just("no"), st.just(2), st.just(None)),
}


@SETTINGS
@given(st.sampled_from(sorted(BAD_OPTIONS)), st.data())
def test_a_bad_option_value_is_an_invalid_argument_naming_it(option, data):
    value = data.draw(BAD_OPTIONS[option])
    params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    before = copy.deepcopy(params)
    kwargs = {option: value}
    if option == "samples":
        kwargs["mode"] = "sample"
    try:
        gradproof.check(loss, params, grad, **kwargs)
    except gradproof.InvalidArgument as error:
        assert f"`{option}`" in str(error) and "Fix: " in str(error), str(error)
    else:
        pytest.fail(f"{option}={value!r} was accepted")
    assert all(np.array_equal(params[k], before[k]) for k in params)


class UsersOwnError(Exception):
    """What the user's loss raises: it must reach the user unchanged."""


@SETTINGS
@given(st.integers(min_value=1, max_value=40))
def test_the_losss_own_exception_escapes_unchanged_and_leaves_data_intact(fail_at):
    params = {"W": np.arange(6.0).reshape(2, 3), "b": np.ones(2)}
    before = copy.deepcopy(params)
    calls = {"n": 0}

    def flaky(p):
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise UsersOwnError("the loss gave up")
        return loss(p)

    try:
        gradproof.check(flaky, params, grad)
    except UsersOwnError:
        pass
    assert all(np.array_equal(params[k], before[k]) for k in params)
