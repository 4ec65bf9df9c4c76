"""gradproof.jax on code as people write it: impure losses, check_grads habits, float32 leaves.

- A numpy or Python random draw inside ``f`` (dropout, sampled data) is fixed anew in
  every JAX trace: it is named as nondeterminism, never blamed on a gradient or a rule.
- ``f(x, y)`` written for ``check_grads`` is refused with the one-line fix.
- An ``f`` not finite at the parameters given, returning None, or with a non-finite
  ``jax.grad(f)`` is told in words about ``f`` and the base point.
- float32 leaves of an ``f`` that computes in float64 are judged as float64; an ``f``
  that computes in float32 is still judged as float32.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gradproof.jax needs JAX: pip install 'gradproof[jax]'")
jnp = pytest.importorskip("jax.numpy", reason="gradproof.jax needs JAX")

import gradproof  # noqa: E402
import gradproof.jax as gj  # noqa: E402
from gradproof.jax._width import computes_in_float64  # noqa: E402
from gradproof.jax._x64 import float64  # noqa: E402

X = np.array([0.3, -1.2, 0.8, 0.1, 0.5, -0.4, 1.1, -0.9])


# -- 1. an impure f: a draw fixed at trace time -----------------------------------------


def dropout_loss(seed: int = 0):
    """tanh(p) masked by a dropout mask drawn with numpy inside f: new at every trace."""
    rng = np.random.default_rng(seed)

    def f(p):
        mask = rng.random(p.shape) < 0.5
        return jnp.sum(jnp.tanh(p) * mask)

    return f


@pytest.mark.parametrize("evaluation", ["auto", "map", "vmap", "jit"])
def test_a_numpy_dropout_mask_inside_f_is_nondeterminism_not_a_wrong_rule(evaluation):
    with pytest.raises(gradproof.NondeterministicLossError) as caught:
        gj.check(dropout_loss(), jnp.asarray(X), evaluation=evaluation)
    message = str(caught.value)
    assert "f returned different values at the same parameters" in message
    assert "jax.random" in message and "trace" in message
    assert "custom_vjp" not in message


def test_an_eager_check_still_names_the_dropout_as_nondeterminism():
    with pytest.raises(gradproof.NondeterministicLossError):
        gj.check(dropout_loss(), jnp.asarray(X), evaluation="eager")


def test_data_sampled_with_numpy_inside_f_is_named_at_order_2():
    rng = np.random.default_rng(8)

    def f(p):  # the batch is drawn inside f: every trace trains on other data
        batch = jnp.asarray(rng.normal(size=(5, 3)))
        layer = jax.checkpoint(lambda x: jnp.tanh(p["W"] @ x + p["b"]))
        return jnp.sum(jax.vmap(layer)(batch) ** 2)

    params = {"W": jnp.asarray(rng.normal(size=(3, 3))), "b": jnp.zeros(3)}
    with pytest.raises(gradproof.NondeterministicLossError, match="numpy or Python random draw"):
        gj.check(f, params, order=2)


def test_python_state_read_inside_f_is_named_not_blamed_on_the_gradient():
    calls = itertools.count(1)

    def f(p):  # a schedule that advances at every call of the Python code
        return jnp.sum(p**2) * (1.0 + 0.1 * next(calls))

    with pytest.raises(gradproof.NondeterministicLossError, match="Python"):
        gj.check(f, jnp.asarray(X))


def test_a_pure_f_with_a_wrong_rule_still_fails_on_its_rule():
    @jax.custom_vjp
    def square(x):
        return x**2

    square.defvjp(lambda x: (x**2, x), lambda x, g: (g * x,))  # forgot the 2
    report = gj.check(lambda p: jnp.sum(square(p)), jnp.asarray(X))
    assert report.status == "fail" and report.blocks["params"].diagnosis.kind == "scale"


def test_jax_random_with_a_fixed_key_is_one_function_and_passes():
    key = jax.random.PRNGKey(0)

    def f(p):
        mask = jax.random.bernoulli(key, 0.5, p.shape)
        return jnp.sum(jnp.tanh(p) * mask)

    assert gj.check(f, jnp.asarray(X)).passed


# -- 2. f(x, y) written for check_grads ---------------------------------------------------


def two_arguments(x, y):
    return jnp.sum(jnp.sin(x) * y)


@pytest.mark.parametrize("f", [two_arguments, jax.jit(two_arguments)], ids=["plain", "jit"])
def test_a_check_grads_style_f_of_two_arguments_is_refused_with_the_fix(f):
    x, y = jnp.ones(3), jnp.arange(3.0)
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gj.check(f, (x, y))
    message = str(caught.value)
    assert message.startswith("`f`=")
    assert "2 positional arguments (x, y)" in message
    assert "gradproof.jax.check(lambda a: f(*a), (x, y))" in message


def test_the_suggested_fix_checks_both_arguments():
    x, y = jnp.ones(3), jnp.arange(3.0)
    report = gj.check(lambda a: two_arguments(*a), (x, y))
    assert report.passed and set(report.blocks) == {"0", "1"}


def test_a_required_keyword_only_argument_is_refused_with_partial_as_the_fix():
    def f(p, *, scale):
        return jnp.sum(p**2) * scale

    with pytest.raises(gradproof.InvalidArgument, match=r"functools\.partial\(f, scale=\.\.\.\)"):
        gj.check(f, jnp.asarray(X))
    assert gj.check(functools.partial(f, scale=2.0), jnp.asarray(X)).passed


def test_extra_arguments_with_defaults_are_fine():
    def f(p, scale=2.0, *rest, temperature=1.0):
        return jnp.sum(p**2) * scale / temperature

    assert gj.check(f, jnp.asarray(X)).passed


# -- 3. messages about f, the base point and jax.grad(f) -----------------------------------


@pytest.mark.parametrize("evaluation", ["auto", "jit", "eager"])
def test_f_not_finite_at_the_base_point_names_f_and_the_base_point(evaluation):
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gj.check(lambda p: jnp.sum(jnp.log(p)), jnp.array([-1.0, 1.0]), evaluation=evaluation)
    message = str(caught.value)
    assert message.startswith("`f`='f(params) = nan'")
    assert "the base point" in message and "batched" not in message


def test_an_array_output_not_finite_names_the_element():
    with pytest.raises(gradproof.InvalidArgument, match=r"nan at output element \[1\]"):
        gj.check(lambda p: jnp.log(p), jnp.array([1.0, -1.0]))


def test_f_returning_none_says_so():
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gj.check(lambda p: None, jnp.ones(2))
    message = str(caught.value)
    assert "returned None" in message and "dtype []" not in message


def sqrt_rule():
    @jax.custom_vjp
    def root(x):
        return jnp.sqrt(x)

    root.defvjp(lambda x: (jnp.sqrt(x), x), lambda x, g: (g * 0.5 / jnp.sqrt(x),))
    return root


def test_a_nan_in_jax_grad_names_jax_grad_of_f_not_grad():
    root = sqrt_rule()
    with pytest.raises(gradproof.InvalidArgument) as caught:
        gj.check(lambda p: jnp.sum(root(p**2)), jnp.array([0.0, 1.0]))
    message = str(caught.value)
    assert message.startswith("`f`='jax.grad(f) = nan at params[0]'")
    assert "the base point" in message and "`grad`" not in message


def test_an_infinite_forward_derivative_names_forward_mode():
    with pytest.raises(gradproof.InvalidArgument, match=r"jax\.jvp of f \(forward mode\) = inf"):
        gj.check(lambda p: jnp.sum(jnp.sqrt(p)), jnp.array([0.0, 1.0]), modes=("fwd",))


# -- 4. float32 leaves of an f that computes in float64 ------------------------------------

W = np.random.default_rng(4).normal(size=4)


@pytest.mark.parametrize(
    ("frequency", "dtype"), list(itertools.product([1e3, 1e6], ["f32", "f64"]))
)
def test_float32_leaves_of_a_float64_f_are_judged_as_float64(frequency, dtype):
    w = (W / frequency).astype(np.float32 if dtype == "f32" else np.float64)
    report = gj.check(lambda p: jnp.sum(jnp.sin(p * frequency)), w)
    assert report.status == "pass", str(report)
    assert report.precision.startswith("float64")
    if dtype == "f32":
        assert report.precision == "float64; params of dtype float32 were checked in float64"


def off_by(rel):
    @jax.custom_vjp
    def sin(x):
        return jnp.sin(x)

    sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x) * (1 + rel),))
    return sin


@pytest.mark.parametrize("rel", [1e-6, 1e-7])
def test_a_small_rule_error_fails_with_float32_leaves_as_with_float64_ones(rel):
    sin = off_by(rel)
    weights = jnp.arange(1.0, 7.0)
    x = np.random.default_rng(4).normal(size=6)
    for leaves in (x, x.astype(np.float32)):
        report = gj.check(lambda p: jnp.sum(sin(p) * weights), leaves)
        assert report.status == "fail", str(report)
    assert gj.check(lambda p: jnp.sum(off_by(0.0)(p) * weights), x.astype(np.float32)).passed


def test_an_f_that_computes_in_float32_is_still_judged_as_float32():
    w = np.random.default_rng(1).normal(size=6).astype(np.float32)

    def f(p):
        return jnp.sum(jnp.tanh(p.astype(jnp.float32)) ** 2)

    report = gj.check(f, w)
    assert report.passed, str(report)
    assert report.precision.startswith("float32")


def test_a_float32_part_beside_a_float64_term_keeps_the_leaves_precision():
    w = np.random.default_rng(2).normal(size=6).astype(np.float32)

    def f(p):  # a float32 model plus a float64 L2 term
        return jnp.sum(jnp.tanh(p.astype(jnp.float32)) ** 2) + 1e-3 * jnp.sum(p**2)

    report = gj.check(f, w)
    assert report.passed, str(report)
    assert not report.precision.startswith("float64;")


def test_the_program_tells_float64_from_float32_computation():
    data32 = np.ones((3, 2), dtype=np.float32)

    @jax.custom_vjp
    def sin(x):
        return jnp.sin(x)

    def narrow_backward(x, g):  # the rule's backward rounds through float32
        return ((g * jnp.cos(x)).astype(jnp.float32).astype(x.dtype),)

    sin.defvjp(lambda x: (jnp.sin(x), x), narrow_backward)
    cases = {
        "float64 with float32 data": (lambda v: jnp.sum(jnp.tanh(data32 @ v[0])), True),
        "a cast to float32": (lambda v: jnp.sum(v[0].astype(jnp.float32)), False),
        "a float32 backward": (lambda v: jnp.sum(sin(v[0])), False),
        "reduce_precision": (
            lambda v: jnp.sum(jax.lax.reduce_precision(v[0], exponent_bits=8, mantissa_bits=23)),
            False,
        ),
        "a cast in a scan": (
            lambda v: jax.lax.scan(lambda c, x: (c * x, None), 1.0, v[0].astype(jnp.float32))[0],
            False,
        ),
    }
    with float64():
        found = {name: computes_in_float64(f, [jnp.ones(2)]) for name, (f, _) in cases.items()}
    assert found == {name: wide for name, (_, wide) in cases.items()}


def test_the_callers_float32_leaves_are_untouched():
    w = (W / 1e3).astype(np.float32)
    before = w.copy()
    gj.check(lambda p: jnp.sum(jnp.sin(p["w"] * 1e3)), {"w": w})
    assert w.dtype == np.float32 and np.array_equal(w, before)
