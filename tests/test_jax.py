"""gradproof.jax: custom_vjp/custom_jvp rules checked, bugs named, pytrees, float64 scoping.

Oracles are closed-form derivatives; floats are compared with a stated relative
tolerance (ORACLE_RTOL for float64 evaluations of the same formula, NUMERICAL_RTOL
for a Richardson estimate against the closed form).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gradproof.jax needs JAX: pip install 'gradproof[jax]'")
jnp = pytest.importorskip("jax.numpy", reason="gradproof.jax needs JAX")

import gradproof  # noqa: E402
import gradproof.jax as gj  # noqa: E402
from gradproof.jax._x64 import float64  # noqa: E402

ORACLE_RTOL = 1e-12  # the same float64 formula, evaluated twice
NUMERICAL_RTOL = 1e-8  # Richardson differences (O(h^4)) against the closed form
LAM = 0.3  # the L2 coefficient of the layer's loss


def make_layer(bug: str | None = None):
    """loss(W, x) = sum(tanh(x @ W)) + LAM/2 ||W||^2, with a hand-written custom_vjp.

    Closed form: dW = x.T @ (1 - t^2) + LAM W and dx = (1 - t^2) @ W.T, t = tanh(x @ W).
    ``bug`` plants one mistake in dW: "double", "sign" or "missing_l2".
    """

    @jax.custom_vjp
    def loss(W, x):
        return jnp.sum(jnp.tanh(x @ W)) + 0.5 * LAM * jnp.sum(W**2)

    def fwd(W, x):
        t = jnp.tanh(x @ W)
        return jnp.sum(t) + 0.5 * LAM * jnp.sum(W**2), (W, x, t)

    def bwd(res, g):
        W, x, t = res
        d = g * (1 - t**2)
        dW = x.T @ d + g * LAM * W
        if bug == "double":
            dW = 2 * dW
        elif bug == "sign":
            dW = -dW
        elif bug == "missing_l2":
            dW = x.T @ d
        return dW, d @ W.T

    loss.defvjp(fwd, bwd)
    return lambda p: loss(p["W"], p["x"])


def closed_form(W, x):
    t = np.tanh(x @ W)
    return {"W": x.T @ (1 - t**2) + LAM * W, "x": (1 - t**2) @ W.T}


@pytest.fixture
def layer_params():
    rng = np.random.default_rng(7)
    return {"W": rng.normal(size=(4, 3)), "x": rng.normal(size=(5, 4))}


def assert_matches_closed_form(report, expected):
    for name, block in report.blocks.items():
        for element in block.worst:
            exact = expected[name][element.index]
            assert element.analytic == pytest.approx(exact, rel=ORACLE_RTOL, abs=1e-14)
            assert element.numerical == pytest.approx(exact, rel=NUMERICAL_RTOL, abs=1e-10)


# -- custom_vjp ------------------------------------------------------------------------------


def test_correct_custom_vjp_passes_and_matches_closed_form(layer_params):
    report = gj.check(make_layer(), layer_params)
    assert report.status == "pass"
    assert list(report.blocks) == ["W", "x"]
    assert report.difference < 1e-9
    assert report.precision == "float64"
    assert_matches_closed_form(report, closed_form(layer_params["W"], layer_params["x"]))


@pytest.mark.parametrize(
    ("bug", "kind", "scale"),
    [("double", "scale", 2.0), ("sign", "sign", -1.0), ("missing_l2", "regularization", None)],
)
def test_wrong_custom_vjp_is_caught_and_named(layer_params, bug, kind, scale):
    report = gj.check(make_layer(bug), layer_params)
    assert report.status == "fail"
    assert report.suspects == ("W",)
    assert report.blocks["x"].passed
    block = report.blocks["W"]
    assert block.diagnosis is not None and block.diagnosis.kind == kind
    assert len(block.wrong_elements) == block.size
    if scale is not None:
        assert block.scale == pytest.approx(scale, rel=1e-6)
    exact = closed_form(layer_params["W"], layer_params["x"])["W"]
    worst = block.worst[0]
    assert worst.numerical == pytest.approx(exact[worst.index], rel=NUMERICAL_RTOL)


def test_missing_l2_diagnosis_states_the_coefficient(layer_params):
    block = gj.check(make_layer("missing_l2"), layer_params).blocks["W"]
    assert block.diagnosis is not None
    assert "0.3 × W" in block.diagnosis.sentence


def test_float32_params_pass_and_are_checked_at_float64(layer_params):
    params32 = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in layer_params.items()}
    report = gj.check(make_layer(), params32)
    assert report.status == "pass"
    assert "params of dtype float32 were checked in float64" in report.precision
    # The gradient is jax.grad at the float64 values of the float32 params.
    W, x = (np.asarray(params32[k], dtype=np.float64) for k in ("W", "x"))
    assert_matches_closed_form(report, closed_form(W, x))


def test_assert_gradients_match_raises_with_the_report(layer_params):
    assert gj.assert_gradients_match(make_layer(), layer_params).passed
    with pytest.raises(gradproof.GradcheckError) as caught:
        gj.assert_gradients_match(make_layer("double"), layer_params)
    assert caught.value.report.suspects == ("W",)
    assert "W: the gradient is 2.00×" in str(caught.value)


# -- custom_jvp ------------------------------------------------------------------------------


def make_softplus(factor: float):
    """softplus with a custom_jvp rule; the right rule has factor 1 (d/dx = sigmoid)."""

    @jax.custom_jvp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    @softplus.defjvp
    def softplus_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), factor * jax.nn.sigmoid(x) * t

    return lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(softplus(p["w"]))


@pytest.fixture
def jvp_params():
    return {"a": np.array([0.5, -1.5]), "w": np.array([-2.0, 0.1, 0.7, 3.0])}


def test_correct_custom_jvp_passes(jvp_params):
    report = gj.check(make_softplus(1.0), jvp_params)
    assert report.status == "pass"
    sigmoid = 1 / (1 + np.exp(-jvp_params["w"]))
    assert_matches_closed_form(report, {"a": 2 * jvp_params["a"], "w": sigmoid})


def test_wrong_custom_jvp_is_caught_and_named(jvp_params):
    report = gj.check(make_softplus(0.5), jvp_params)
    assert report.status == "fail"
    assert report.suspects == ("w",)
    assert report.blocks["a"].passed
    block = report.blocks["w"]
    assert block.diagnosis is not None and block.diagnosis.kind == "scale"
    assert block.scale == pytest.approx(0.5, rel=1e-6)


# -- pytrees ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Linear:
    """An equinox-style module: a dataclass registered as a pytree with attribute keys."""

    weight: object
    bias: object


jax.tree_util.register_dataclass(Linear, data_fields=["weight", "bias"], meta_fields=[])


@jax.tree_util.register_pytree_node_class
class Scaler:
    """A class registered without keys: its leaves are named by the attributes holding them."""

    def __init__(self, gain, shift):
        self.gain, self.shift = gain, shift

    def tree_flatten(self):
        return (self.gain, self.shift), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(*children)


@jax.custom_vjp
def cube_sum(v):
    return jnp.sum(v**3)


cube_sum.defvjp(lambda v: (jnp.sum(v**3), v), lambda v, g: (g * 9 * v**2,))  # 9, not 3


def tree_loss(p):
    assert isinstance(p["mod"], Linear) and isinstance(p["scaler"], Scaler)
    first, second = p["layers"]
    h = jnp.tanh(first["W"] @ jnp.ones(3) + first["b"])
    h = jnp.tanh(second["W"] @ h + second["b"])
    out = p["mod"].weight @ h + p["mod"].bias
    out = p["scaler"].gain * out + p["scaler"].shift * p["steps"]
    return jnp.sum(out**2) + p["pair"][0] * p["pair"][1] ** 2 + cube_sum(p["cubed"])


def tree_params():
    rng = np.random.default_rng(3)
    return {
        "layers": [
            {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=4)},
            {"W": rng.normal(size=(2, 4)), "b": rng.normal(size=2)},
        ],
        "mod": Linear(weight=jnp.asarray(rng.normal(size=(2, 2))), bias=jnp.zeros(2)),
        "scaler": Scaler(gain=1.5, shift=np.array(0.25)),
        "pair": (2.0, np.array(-0.5)),
        "steps": 3,
        "cubed": np.array([0.5, -1.0, 2.0]),
    }


def test_pytree_blocks_are_named_by_path_in_insertion_order():
    report = gj.check(tree_loss, tree_params())
    assert list(report.blocks) == [
        "layers.0.W",
        "layers.0.b",
        "layers.1.W",
        "layers.1.b",
        "mod.weight",
        "mod.bias",
        "scaler.gain",
        "scaler.shift",
        "pair.0",
        "pair.1",
        "cubed",
    ]
    # cube_sum's rule says 9 v^2 where the derivative is 3 v^2: only its block fails.
    assert report.suspects == ("cubed",)
    assert report.blocks["cubed"].scale == pytest.approx(3.0, rel=1e-6)
    assert all(b.passed for name, b in report.blocks.items() if name != "cubed")
    assert report.blocks["pair.1"].worst[0].numerical == pytest.approx(2 * 2.0 * -0.5, rel=1e-8)
    assert any("Held fixed" in note and "steps" in note for note in report.notes)


def test_dict_keys_keep_insertion_order_not_jax_sorted_order():
    params = {"z": np.array([1.0, 2.0]), "a": np.array(3.0)}
    report = gj.check(lambda p: jnp.sum(p["z"] ** 2) * p["a"], params)
    assert list(report.blocks) == ["z", "a"]
    assert report.passed


def test_a_bare_array_is_one_block_named_params():
    report = gj.check(lambda w: jnp.sum(jnp.sin(w)), jnp.array([0.1, 0.2]))
    assert list(report.blocks) == ["params"]
    assert report.blocks["params"].worst[0].numerical == pytest.approx(
        np.cos(report.blocks["params"].worst[0].index[0] * 0.1 + 0.1), rel=1e-8
    )


def test_integer_leaves_are_held_fixed_and_passed_through():
    seen = []

    def f(p):
        seen.append((type(p["n"]), np.asarray(p["idx"]).dtype))
        return jnp.sum(p["w"][p["idx"]] ** 2) * p["n"]

    params = {"w": np.array([1.0, 2.0, 3.0]), "idx": np.array([0, 2]), "n": 2}
    report = gj.check(f, params, evaluation="eager")
    assert list(report.blocks) == ["w"]
    assert report.passed
    assert set(seen) == {(int, np.dtype(np.int64))}
    worst = report.blocks["w"].worst
    expected = {(0,): 4.0, (1,): 0.0, (2,): 12.0}
    for element in worst:
        assert element.numerical == pytest.approx(expected[element.index], rel=1e-8, abs=1e-9)


# -- float64 scoping, the caller's arrays ----------------------------------------------------


def default_dtype():
    return jnp.zeros(()).dtype


@pytest.fixture
def x64_off():
    """JAX's 64-bit mode off in this thread for the test, whatever the global setting."""
    if hasattr(jax, "enable_x64"):  # jax >= 0.6
        scope = jax.enable_x64(False)
    else:
        from jax.experimental import disable_x64

        scope = disable_x64()
    with scope:
        assert default_dtype() == np.float32
        yield


def test_x64_is_enabled_during_the_check_and_restored_after(layer_params, x64_off):
    seen = []
    layer = make_layer()

    def f(p):
        seen.append((p["W"].dtype, default_dtype()))
        return layer(p)

    gj.check(f, {k: jnp.asarray(v, dtype=jnp.float32) for k, v in layer_params.items()})
    assert seen and set(seen) == {(np.dtype(np.float64), np.dtype(np.float64))}
    assert default_dtype() == np.float32


def test_x64_is_restored_when_f_raises(layer_params, x64_off):
    calls = [0]
    layer = make_layer()

    def f(p):
        calls[0] += 1
        if calls[0] > 20:  # fails in the middle of the finite differences
            raise RuntimeError("boom")
        return layer(p)

    with pytest.raises(RuntimeError, match="boom"):
        gj.check(f, layer_params, evaluation="eager")
    assert default_dtype() == np.float32


def test_x64_already_enabled_stays_enabled(layer_params, x64_off):
    with float64():
        gj.check(make_layer(), layer_params)
        assert default_dtype() == np.float64
    assert default_dtype() == np.float32


def test_the_callers_arrays_are_not_modified(layer_params):
    params = {
        "W": layer_params["W"],
        "x": layer_params["x"].astype(np.float32),
        "j": jnp.asarray([0.5, 1.5]),
    }
    copies = {k: np.array(v, copy=True) for k, v in params.items()}
    layer = make_layer()
    report = gj.check(lambda p: layer(p) + jnp.sum(p["j"] ** 2), params)
    assert report.passed
    for name, copy in copies.items():
        assert params[name].dtype == copy.dtype
        np.testing.assert_array_equal(np.asarray(params[name]), copy)
    assert params["W"].flags.writeable and params["x"].flags.writeable


# -- evaluation, options, modes --------------------------------------------------------------


def test_batched_vmap_gives_the_same_verdict_as_the_loop(layer_params):
    reports = {
        how: gj.check(make_layer("double"), layer_params, evaluation=how)
        for how in ("vmap", "map", "jit", "eager")
    }
    vmap = reports["vmap"]
    for how in ("map", "jit", "eager"):
        other = reports[how]
        assert other.status == vmap.status == "fail"
        assert other.suspects == vmap.suspects
        assert other.evaluations == vmap.evaluations
        for name, block in vmap.blocks.items():
            assert other.blocks[name].wrong_elements == block.wrong_elements
            if block.passed:  # roundoff, which depends on the order of the sums
                assert max(block.difference, other.blocks[name].difference) < 1e-9
            else:
                assert other.blocks[name].difference == pytest.approx(block.difference, rel=1e-6)


def test_gradproof_options_pass_through(layer_params):
    report = gj.check(make_layer(), layer_params, scheme="central", eps=1e-6, tol=1e-5)
    assert report.passed
    assert (report.scheme, report.eps, report.tol) == ("central", 1e-6, 1e-5)


MODES = ("full", "probe")


@pytest.mark.parametrize("mode", MODES)
def test_modes_pass_through(layer_params, mode):
    good = gj.check(make_layer(), layer_params, mode=mode)
    bad = gj.check(make_layer("double"), layer_params, mode=mode)
    assert good.mode == bad.mode == mode
    assert good.status == "pass"
    assert bad.status == "fail"


def test_python_control_flow_needs_eager_evaluation():
    def f(p):
        w = p["w"]
        return jnp.sum(w**2) if w[0] > 0 else jnp.sum(w**3)

    with pytest.raises(gradproof.InvalidArgument, match=r"`evaluation`='auto'.*'eager'"):
        gj.check(f, {"w": np.array([1.0, 2.0])})
    assert gj.check(f, {"w": np.array([1.0, 2.0])}, evaluation="eager").passed


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: gj.check("f", {"w": np.ones(2)}), "`f`="),
        (lambda: gj.check(jnp.sum, {"w": np.ones(2)}, evaluation="loop"), "`evaluation`="),
        (lambda: gj.check(jnp.sum, {"w": np.ones(2)}, batched=True), "`batched`="),
        (lambda: gj.check(jnp.sum, {"w": np.ones(2)}, grad={"w": 1}), "`grad`="),
        (lambda: gj.check(jnp.sum, {"n": 3, "i": np.arange(2)}), "`params`="),
        (lambda: gj.check(lambda p: jnp.sum(p["w"] > 0), {"w": np.ones(2)}), "`f`="),
        (lambda: gj.check(lambda p: jnp.sum(p["w"]), {"w": np.ones(2)}, atol=-1.0), "`atol`="),
        (lambda: gj.check(lambda p: jnp.sum(p["w"]), {"w": np.ones(2)}, rtol="1e-3"), "`rtol`="),
    ],
)
def test_misuse_names_the_argument_and_the_fix(call, argument):
    with pytest.raises(gradproof.InvalidArgument) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(argument)
    assert "Fix: " in message


def test_a_thread_pool_evaluates_in_float64_too(layer_params):
    # JAX's 64-bit setting is per thread: the loss switches it on in each worker thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        report = gj.check(make_layer("double"), layer_params, executor=pool)
    assert report.suspects == ("W",)
    assert report.blocks["x"].passed and report.blocks["x"].difference < 1e-9
    assert report.blocks["W"].scale == pytest.approx(2.0, rel=1e-6)


def test_a_function_jit_cannot_trace_gets_the_eager_hint_and_runs_eagerly():
    def f(p):
        return jnp.sum(p["w"] ** 2) * int(p["w"][0] > 0)  # int() of a traced value

    with pytest.raises(gradproof.InvalidArgument, match="evaluation='eager'"):
        gradproof.jax.check(f, {"w": jnp.array([1.0, 2.0])})
    assert gradproof.jax.check(f, {"w": jnp.array([1.0, 2.0])}, evaluation="eager").passed


def test_a_function_grad_cannot_trace_is_named_with_the_fix():
    def f(p):
        return jnp.asarray(np.sum(np.asarray(p["w"]) ** 2))  # numpy inside f

    with pytest.raises(gradproof.InvalidArgument, match=r"jax\.numpy throughout"):
        gradproof.jax.check(f, {"w": jnp.array([1.0, 2.0])}, evaluation="eager")


# -- order, modes and the primal, as check_grads has them ----------------------------------


@jax.custom_jvp
def _softplus_detached(x):
    return jnp.log1p(jnp.exp(x))


# Right first derivative, but sigmoid is detached: the rule is not differentiable.
_softplus_detached.defjvp(
    lambda primals, tangents: (
        _softplus_detached(primals[0]),
        jax.lax.stop_gradient(jax.nn.sigmoid(primals[0])) * tangents[0],
    )
)


@jax.custom_jvp
def _softplus(x):
    return jnp.log1p(jnp.exp(x))


_softplus.defjvp(
    lambda primals, tangents: (_softplus(primals[0]), jax.nn.sigmoid(primals[0]) * tangents[0])
)

W = {"w": jnp.array([0.3, -1.2, 2.0])}


@pytest.mark.parametrize("modes", [("rev",), ("fwd",), ("fwd", "rev")])
def test_a_stop_gradient_inside_a_rule_passes_order_1_and_fails_order_2(modes):
    def f(p):
        return jnp.sum(_softplus_detached(p["w"]) ** 2)

    assert gj.check(f, W, order=1, modes=modes).passed
    report = gj.check(f, W, order=2, modes=modes)
    assert report.status == "fail" and report.suspects == ("w",)
    assert "the second derivative" in " ".join(report.notes)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_right_rule_passes_every_order_in_both_modes(order):
    def f(p):
        return jnp.sum(_softplus(p["w"]) ** 2)

    report = gj.check(f, W, order=order, modes=("fwd", "rev"))
    assert report.passed, str(report)
    assert len(report.extra["derivatives"]) == 2 * order


def test_forward_mode_checks_a_custom_jvp_rule():
    @jax.custom_jvp
    def square(x):
        return x**2

    square.defjvp(lambda primals, tangents: (square(primals[0]), 3 * primals[0] * tangents[0]))
    report = gj.check(lambda p: jnp.sum(square(p["w"])), W, modes=("fwd",))
    assert report.status == "fail" and report.blocks["w"].diagnosis.kind == "scale"


def test_a_custom_vjp_whose_fwd_computes_another_function_fails():
    @jax.custom_vjp
    def cube(x):
        return x**3

    cube.defvjp(lambda x: (x**3 + 0.1, x), lambda x, g: (3 * x**2 * g,))  # fwd: x³ + 0.1
    report = gj.check(lambda p: jnp.sum(cube(p["w"])), W)
    assert report.status == "fail"
    assert "primal output of jax.vjp" in report.extra["primal"]


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [("order", 4, "one of [1, 2, 3]"), ("order", True, "one of"), ("modes", ("bwd",), "fwd")],
)
def test_bad_order_or_modes_are_named(option, value, words):
    with pytest.raises(gradproof.InvalidArgument, match=rf"`{option}`") as info:
        gj.check(lambda p: jnp.sum(p["w"] ** 2), W, **{option: value})
    assert words in str(info.value)
