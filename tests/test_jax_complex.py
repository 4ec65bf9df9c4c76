"""gradproof.jax beside jax.test_util.check_grads: complex leaves and outputs, atol and rtol.

Every rule here is run through both checkers on the same function and pytree:
a right rule passes both, a planted bug (a missing conj, a factor 2, a
stop_gradient that only order 2 sees) fails both, and gradproof's report names
the leaf and the element. Oracles are closed forms; floats are compared with a
stated relative tolerance (ORACLE_RTOL for float64 evaluations of the same
formula, NUMERICAL_RTOL for a numerical derivative against the closed form).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gradproof.jax needs JAX: pip install 'gradproof[jax]'")
jnp = pytest.importorskip("jax.numpy", reason="gradproof.jax needs JAX")

import gradproof  # noqa: E402
import gradproof.jax as gj  # noqa: E402
from gradproof.jax._x64 import float64  # noqa: E402

ORACLE_RTOL = 1e-12  # the same float64 formula, evaluated twice
NUMERICAL_RTOL = 1e-6  # a numerical derivative (central or Richardson) against the closed form
SCALE_RTOL = 1e-6  # a planted ×2 is recovered to this relative accuracy


def check_grads_passes(f, params, order=1, modes=("rev",), **tolerances) -> bool:
    """Whether jax.test_util.check_grads accepts ``f`` at ``params`` (in float64, as gradproof)."""
    from jax.test_util import check_grads

    with float64():
        try:
            check_grads(f, (params,), order, modes=modes, **tolerances)
        except AssertionError:
            return False
    return True


@pytest.fixture
def params():
    rng = np.random.default_rng(11)
    return {
        "w": np.array([1.0, 2.0, 3.0, 0.5]),
        "z": rng.normal(size=4) + 1j * rng.normal(size=4),
    }


# -- a custom_vjp on complex inputs ------------------------------------------------------------


def make_abs2(bug: str | None = None):
    """|z|² with a hand-written custom_vjp. Its JAX cotangent is g·2·conj(z) (JAX's convention).

    ``bug``: "conj" (g·2·z, the conj forgotten) or "double" (g·4·conj(z)).
    """

    @jax.custom_vjp
    def abs2(z):
        return jnp.real(z * jnp.conj(z))

    def bwd(z, g):
        d = {"conj": 2 * z, "double": 4 * jnp.conj(z)}.get(bug, 2 * jnp.conj(z))
        return (g * d,)

    abs2.defvjp(lambda z: (abs2(z), z), bwd)
    return lambda p: jnp.sum(p["w"] * abs2(p["z"]))


def test_a_right_custom_vjp_on_a_complex_leaf_passes_both_and_matches_the_closed_form(params):
    f = make_abs2()
    assert check_grads_passes(f, params)
    report = gj.check(f, params)
    assert report.status == "pass"
    assert report.blocks["z"].shape == (4, 2)  # (real, imaginary) per element
    # gradproof's convention: dL/dx + i dL/dy = 2 w z (JAX's grad is its conjugate)
    exact = 2 * params["w"] * params["z"]
    for element in report.blocks["z"].worst:
        i, part = element.index
        value = (exact[i].real, exact[i].imag)[part]
        assert element.analytic == pytest.approx(value, rel=ORACLE_RTOL)
        assert element.numerical == pytest.approx(value, rel=NUMERICAL_RTOL)


def test_jax_grad_is_conjugated_to_gradproofs_convention(params):
    """The mapping itself: jax.grad returns conj(2wz); gradproof checks 2wz against it."""
    f = make_abs2()
    with float64():
        jax_grad = np.asarray(jax.grad(f)({k: jnp.asarray(v) for k, v in params.items()})["z"])
    np.testing.assert_allclose(jax_grad, np.conj(2 * params["w"] * params["z"]), rtol=ORACLE_RTOL)


@pytest.mark.parametrize(("bug", "kind"), [("conj", "conjugate"), ("double", "scale")])
def test_a_wrong_custom_vjp_on_a_complex_leaf_fails_both_and_is_named(params, bug, kind):
    f = make_abs2(bug)
    assert not check_grads_passes(f, params)
    report = gj.check(f, params)
    assert report.status == "fail"
    assert report.suspects == ("z",)
    assert report.blocks["w"].passed
    block = report.blocks["z"]
    assert block.diagnosis is not None and block.diagnosis.kind == kind
    if bug == "double":
        assert block.scale == pytest.approx(2.0, rel=SCALE_RTOL)
        assert len(block.wrong_elements) == 8  # every real and imaginary part
    else:  # conj(g) differs from g in its imaginary parts only
        assert sorted(block.wrong_elements) == [(i, 1) for i in range(4)]


def test_complex64_leaves_are_checked_at_complex128(params):
    small = {"w": params["w"], "z": params["z"].astype(np.complex64)}
    report = gj.check(make_abs2(), small)
    assert report.status == "pass"
    assert "complex64" in report.precision
    assert gj.check(make_abs2("conj"), small).suspects == ("z",)
    assert small["z"].dtype == np.complex64  # the caller's array untouched


def test_a_python_complex_leaf_is_a_block():
    report = gj.check(lambda p: jnp.abs(p["c"]) ** 2, {"c": 1.0 + 2.0j})
    assert report.passed
    assert report.blocks["c"].shape == (2,)
    exact = {(0,): 2.0, (1,): 4.0}  # 2 Re c, 2 Im c
    for element in report.blocks["c"].worst:
        assert element.numerical == pytest.approx(exact[element.index], rel=NUMERICAL_RTOL)


# -- a custom_jvp on complex inputs: forward mode and order 2 ----------------------------------


def make_log1p_abs2(bug: str | None = None):
    """log(1 + |z|²) with a custom_jvp: tangent 2 Re(conj(z) t) / (1 + |z|²).

    ``bug``: "conj" (Re(z t): the conj forgotten) or "stop_gradient" (the
    factor detached: right at order 1, wrong at order 2).
    """

    @jax.custom_jvp
    def g(z):
        return jnp.log1p(jnp.real(z * jnp.conj(z)))

    @g.defjvp
    def g_jvp(primals, tangents):
        (z,), (t,) = primals, tangents
        factor = 2 / (1 + jnp.real(z * jnp.conj(z)))
        if bug == "stop_gradient":
            factor = jax.lax.stop_gradient(factor)
        zz = z if bug == "conj" else jnp.conj(z)
        return g(z), factor * jnp.real(zz * t)

    return lambda p: jnp.sum(p["w"] * g(p["z"]))


@pytest.mark.parametrize("modes", [("rev",), ("fwd",), ("fwd", "rev")])
def test_a_right_custom_jvp_on_complex_passes_every_order_in_every_mode(params, modes):
    f = make_log1p_abs2()
    assert check_grads_passes(f, params, order=2, modes=modes)
    report = gj.check(f, params, order=2, modes=modes)
    assert report.passed, str(report)
    assert len(report.extra["derivatives"]) == 2 * len(modes)


@pytest.mark.parametrize("modes", [("rev",), ("fwd",)])
def test_a_custom_jvp_missing_its_conj_fails_both_modes(params, modes):
    f = make_log1p_abs2("conj")
    assert not check_grads_passes(f, params, modes=modes)
    report = gj.check(f, params, modes=modes)
    assert report.suspects == ("z",)
    assert report.blocks["z"].diagnosis.kind == "conjugate"


@pytest.mark.parametrize("modes", [("rev",), ("fwd",)])
def test_a_stop_gradient_on_a_complex_leaf_fails_order_2_only(params, modes):
    f = make_log1p_abs2("stop_gradient")
    assert check_grads_passes(f, params, order=1, modes=modes)
    assert gj.check(f, params, order=1, modes=modes).passed
    assert not check_grads_passes(f, params, order=2, modes=modes)
    report = gj.check(f, params, order=2, modes=modes)
    assert report.status == "fail" and report.suspects == ("z",)
    assert "the second derivative" in " ".join(report.notes)


def test_the_forward_gradient_of_a_complex_leaf_is_the_closed_form(params):
    report = gj.check(make_log1p_abs2(), params, modes=("fwd",), mode="full")
    z, w = params["z"], params["w"]
    exact = 2 * w * z / (1 + np.abs(z) ** 2)
    for element in report.blocks["z"].worst:
        i, part = element.index
        value = (exact[i].real, exact[i].imag)[part]
        assert element.analytic == pytest.approx(value, rel=ORACLE_RTOL)


# -- complex and non-scalar outputs -------------------------------------------------------------


def make_square(bug: str | None = None):
    """z ↦ z² (holomorphic, complex output) with a custom_vjp: cotangent g·2z in JAX."""

    @jax.custom_vjp
    def square(z):
        return z**2

    def bwd(z, g):
        return (g * 2 * (jnp.conj(z) if bug == "conj" else z),)

    square.defvjp(lambda z: (square(z), z), bwd)
    return lambda p: square(p["z"]) * p["w"]


@pytest.mark.parametrize("bug", [None, "conj"])
def test_a_complex_output_is_checked_through_a_random_projection(params, bug):
    f = make_square(bug)
    assert check_grads_passes(f, params) == (bug is None)
    report = gj.check(f, params)
    assert report.passed == (bug is None)
    assert any("Re(Σ conj(v)·f(params))" in note for note in report.notes)
    if bug:
        assert report.suspects == ("z",)
        assert report.blocks["w"].passed


def test_a_pytree_of_real_outputs_is_checked_through_a_random_projection(params):
    def f(p):
        return {"a": jnp.tanh(p["w"]), "b": (jnp.sum(p["w"] ** 2), jnp.abs(p["z"]))}

    report = gj.check(f, params, modes=("fwd", "rev"))
    assert report.passed
    assert any("not a real scalar" in note for note in report.notes)
    # a real scalar output is differentiated as it is: no note
    plain = gj.check(lambda p: jnp.sum(p["w"] ** 2), params)
    assert not any("not a real scalar" in note for note in plain.notes)


# -- atol and rtol: check_grads' rule decides --------------------------------------------------


def make_sine(offset: float):
    """Σ sin(w) with a custom_vjp whose element 2 is off by ``offset``."""

    @jax.custom_vjp
    def sines(w):
        return jnp.sum(jnp.sin(w))

    def bwd(w, g):
        return (g * (jnp.cos(w) + offset * (jnp.arange(w.size) == 2)),)

    sines.defvjp(lambda w: (sines(w), w), bwd)
    return lambda p: sines(p["w"])


W = {"w": np.array([0.1, -0.4, 0.9, 1.3])}


def test_the_rule_names_the_element_that_breaks_it():
    f = make_sine(1e-3)
    assert not check_grads_passes(f, W, atol=1e-5, rtol=1e-5)
    report = gj.check(f, W, atol=1e-5, rtol=1e-5)
    assert report.status == "fail" and report.suspects == ("w",)
    block = report.blocks["w"]
    assert block.wrong_elements == ((2,),)
    assert "1 element(s) beyond check_grads' bound" in block.reason
    worst = block.worst[0]
    assert worst.index == (2,)
    assert worst.numerical == pytest.approx(np.cos(0.9), rel=NUMERICAL_RTOL)
    assert worst.analytic == pytest.approx(np.cos(0.9) + 1e-3, rel=ORACLE_RTOL)
    assert worst.tolerance == pytest.approx(1e-5 + 1e-5 * np.cos(0.9), rel=NUMERICAL_RTOL)


def test_a_loose_rule_forgives_what_the_error_model_fails():
    f = make_sine(1e-3)
    assert not gj.check(f, W).passed  # gradproof's error model: a real 1e-3 error
    assert check_grads_passes(f, W, atol=1e-2)
    report = gj.check(f, W, atol=1e-2)
    assert report.status == "pass" and report.suspects == ()
    assert "within check_grads' rule" in report.blocks["w"].reason
    assert report.extra["rule"] == {"atol": 1e-2, "rtol": 1e-5, "eps": 1e-4}  # rtol: default


def test_the_rule_takes_eps_and_rtol_alone():
    report = gj.check(make_sine(0.0), W, rtol=1e-6, eps=1e-3)
    assert report.passed
    assert report.eps == 1e-3  # gradproof's own check took it too
    assert report.extra["rule"] == {"atol": 1e-5, "rtol": 1e-6, "eps": 1e-3}


def test_the_rule_judges_a_complex_leaf_by_real_and_imaginary_parts(params):
    report = gj.check(make_abs2("conj"), params, atol=1e-5)
    assert report.suspects == ("z",)
    assert sorted(report.blocks["z"].wrong_elements) == [(i, 1) for i in range(4)]
    assert report.blocks["z"].diagnosis.kind == "conjugate"  # the error model's name kept
    assert gj.check(make_abs2(), params, atol=1e-5, rtol=1e-5).passed


def test_the_rule_fails_a_stop_gradient_at_order_2(params):
    f = make_log1p_abs2("stop_gradient")
    assert gj.check(f, params, order=1, atol=1e-5).passed
    report = gj.check(f, params, order=2, atol=1e-5)
    assert report.status == "fail" and report.suspects == ("z",)
    assert report.blocks["z"].wrong_elements


def test_the_rule_checks_every_element_with_an_eager_loop():
    report = gj.check(make_sine(1e-3), W, atol=1e-5, evaluation="eager")
    assert report.blocks["w"].wrong_elements == ((2,),)


@pytest.mark.parametrize("value", [-1.0, float("nan"), True, {np.float64: 1e-5}])
def test_a_bad_atol_is_named(value):
    with pytest.raises(gradproof.InvalidArgument, match=r"^`atol`=") as info:
        gj.check(make_sine(0.0), W, atol=value)
    assert "Fix: " in str(info.value)


# -- the docs ----------------------------------------------------------------------------------


def test_the_jax_example_on_the_complex_page_runs():
    """docs/complex.md's JAX section: its ``py`` block (tests/test_docs.py runs the ``python``
    blocks, which must run without JAX; this one runs here, where JAX is installed)."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "complex.md").read_text()
    section = page.split("\n## JAX\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    exec(compile(block, "docs/complex.md", "exec"), {"__name__": "docs_complex_jax"})


def test_a_rule_returning_a_complex_cotangent_for_a_real_leaf_is_named():
    @jax.custom_vjp
    def scaled(a, b):
        return jnp.sin(a) * b

    def bwd(saved, ct):
        a, b = saved
        return ct * jnp.conj(jnp.cos(a) * b), ct * jnp.conj(jnp.sin(a))  # complex for real b

    scaled.defvjp(lambda a, b: (scaled(a, b), (a, b)), bwd)
    params = {"z": np.array([1 + 2j, -0.5 + 0.3j]), "w": np.array([0.3, -1.2])}

    def f(p):
        return jnp.sum(jnp.abs(scaled(p["z"], p["w"])) ** 2)

    assert not check_grads_passes(f, params)
    with pytest.raises(gradproof.InvalidArgument, match=r"real leaf 'w'.*jnp\.real"):
        gj.check(f, params)
