"""gradproof.jax.check's points made on the parameters' device (gradproof.jax._resident).

The claim is that the device's way evaluates ``f`` at the very points the host would
build, so the oracle is the host's own way on the same problem: the points ``f`` is
given, and its values there, must agree bit for bit (an exact comparison is the property
under test here, not a float tolerance). Then: no point is built on the host per
evaluation, verdicts still name a planted element, and where it would not pay
(``evaluation='eager'``, a small check on the CPU) the host's way is taken.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="gradproof.jax needs JAX: pip install 'gradproof[jax]'")
jnp = pytest.importorskip("jax.numpy", reason="gradproof.jax needs JAX")

import gradproof  # noqa: E402
import gradproof._engine.evaluate as evaluate_module  # noqa: E402
import gradproof.jax as gj  # noqa: E402
from gradproof._engine.evaluate import Evaluator  # noqa: E402
from gradproof._engine.precision import LEVELS, TableDirection, _held  # noqa: E402
from gradproof._engine.probe import Direction  # noqa: E402
from gradproof._engine.shifts import Signs, Values  # noqa: E402
from gradproof._engine.tree import flatten  # noqa: E402
from gradproof.jax import _resident  # noqa: E402
from gradproof.jax._check import _of_blocks, _Problem  # noqa: E402
from gradproof.jax._resident import JaxResident  # noqa: E402
from gradproof.jax._tree import split  # noqa: E402
from gradproof.jax._x64 import float64  # noqa: E402

real_pays = _resident.pays


@pytest.fixture
def everywhere(monkeypatch):
    """On the CPU a check below ``CPU_SMALL`` coordinates builds its points on the host,
    where that costs less (``_resident.pays``); with this, the device's way at every size."""
    monkeypatch.setattr(_resident, "pays", lambda *args: True)


def _mlp(n_in: int = 6, hidden: int = 5, seed: int = 0, scale: float = 1.0):
    """f(p) = mean((tanh(X W + b) v - y)^2) and its parameters (float64, numpy)."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((9, n_in)), rng.standard_normal(9)

    def f(p):
        return jnp.mean((jnp.tanh(x @ p["W"] + p["b"]) @ p["v"] - y) ** 2)

    params = {
        "W": rng.standard_normal((n_in, hidden)) * scale,
        "b": rng.standard_normal(hidden) * scale,
        "v": rng.standard_normal(hidden),
    }
    return f, params


def _evaluators(f, params, evaluation):
    """Two evaluators of one problem: the device's way, and the host's way."""
    tree = split(params)
    with float64():
        problem = _Problem(_of_blocks(f, tree), tree, evaluation, requested=evaluation)
    layout, theta = flatten(tree.blocks())
    batched = evaluation in ("vmap", "map")
    resident = Evaluator(problem, layout, theta, batched=batched)
    host = Evaluator(problem, layout, theta, batched=batched, resident=False)
    host.resident = None  # the host's way: every point built here
    return problem, layout, theta, resident, host


def _directions(theta, span, rng, count=3):
    """A probe's, the noise table's (at float32's grid, and float64's held whole) and
    plain arrays' directions over ``span``."""
    signs = [Signs.draw(rng, span.stop - span.start) for _ in range(count)]
    return {
        "probe": [Direction(theta[span], s) for s in signs],
        "table float32": [TableDirection(theta[span], s, 1e-6, LEVELS[1]) for s in signs],
        "table held": [_held(TableDirection(theta[span], s, 1e-7, LEVELS[0])) for s in signs],
        "arrays": [Values(rng.standard_normal(span.stop - span.start)) for _ in signs],
    }


@pytest.mark.usefixtures("everywhere")
@pytest.mark.parametrize("evaluation", ["map", "vmap", "jit"])
def test_the_values_are_the_hosts_bit_for_bit(evaluation):
    f, params = _mlp()
    _, layout, theta, resident, host = _evaluators(f, params, evaluation)
    assert isinstance(resident.resident, JaxResident)
    indices = np.array([0, 7, 29, layout.size - 1])
    offsets = np.array([[1e-3, -1e-3], [2e-6, -2e-6], [0.5, -0.25], [1e-8, 3e-8]])
    np.testing.assert_array_equal(
        resident.coordinates(indices, offsets), host.coordinates(indices, offsets)
    )
    span = slice(3, layout.size - 2)  # across every block but the edges
    rng = np.random.default_rng(1)
    for steps in (np.array([1e-3, -1e-3, 4e-3]), np.arange(0.0, 9.0)):
        for name, alongs in _directions(theta, span, rng).items():
            np.testing.assert_array_equal(
                resident.directions(alongs, steps, span=span),
                host.directions(alongs, steps, span=span),
                err_msg=name,
            )
    np.testing.assert_array_equal(resident.value(), host.value())


@pytest.mark.usefixtures("everywhere")
@pytest.mark.parametrize("evaluation", ["map", "jit"])
def test_the_points_f_is_given_are_the_hosts_bit_for_bit(evaluation):
    """What ``f`` receives, recorded both ways: 3,000 coordinates whose magnitudes span
    sixteen orders, so that a fused multiply-add (one rounding of θ + u·h, not two) or a
    rounding to the grid done differently would show."""
    rng = np.random.default_rng(3)
    n = 3000
    theta = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
    params = {"a": theta[:1000].reshape(40, 25), "b": theta[1000:]}
    problem, layout, theta, resident, host = _evaluators(
        lambda p: jnp.sum(p["a"]) + jnp.sum(p["b"]), params, evaluation
    )
    seen: dict[str, list[np.ndarray]] = {"host": [], "device": []}
    now = {"way": "host"}

    def recorder(batched):
        def record(blocks):
            rows = [np.asarray(b).reshape(len(b), -1) if batched else np.ravel(b) for b in blocks]
            seen[now["way"]].append(np.concatenate(rows, axis=-1))
            return jnp.zeros(len(blocks[0]) if batched else ())

        return record

    problem.single, problem.batch = recorder(False), recorder(True)
    indices = rng.integers(0, n, 20)
    offsets = rng.standard_normal((20, 2)) * 10.0 ** rng.integers(-9, 3, (20, 2))
    span = slice(17, n - 5)
    for way, evaluator in (("host", host), ("device", resident)):
        now["way"] = way
        evaluator.coordinates(indices, offsets)
        rng = np.random.default_rng(4)
        for steps in (np.array([1e-3, -3.3e-5, 7.0]), np.arange(0.0, 9.0)):
            for alongs in _directions(theta, span, rng).values():
                evaluator.directions(alongs, steps, span=span)
    assert len(seen["host"]) == len(seen["device"]) > 20
    for mine, theirs in zip(seen["device"], seen["host"], strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.usefixtures("everywhere")
def test_a_directions_dot_with_the_gradient_is_summed_on_the_device():
    f, params = _mlp()
    _, layout, theta, resident, _ = _evaluators(f, params, "map")
    g = np.random.default_rng(2).standard_normal(layout.size)
    resident.know_gradient(g)
    signs = Signs.draw(np.random.default_rng(3), layout.size - 5)
    direction = Direction(theta[5:], signs, g[5:])
    resident.along(slice(5, layout.size), direction, np.array([1e-3, -1e-3]))
    expected = float(np.dot(g[5:], signs.array() * np.maximum(np.abs(theta[5:]), 1.0)))
    assert direction._summed == direction.g.size  # recorded, not summed on the host after
    assert direction.analytic() == pytest.approx(expected, rel=1e-12)


def test_no_point_is_built_on_the_host_per_evaluation(monkeypatch, layout_builds):
    """A probe check of a model above ``CPU_SMALL`` coordinates, at the real policy: the
    layout never builds a host point, and the host's arrays allocated while evaluating
    stay far below one copy of θ."""
    n = 512  # n^2 + 2n = 263,168 coordinates
    assert n * n + 2 * n >= _resident.CPU_SMALL
    f, params = _mlp(n_in=n, hidden=n, scale=1 / np.sqrt(n))
    report = gj.check(f, params, mode="probe", progress=False)
    assert report.passed and report.evaluations > 50
    assert layout_builds["n"] == 0

    _, layout, theta, resident, _ = _evaluators(f, params, "map")
    assert isinstance(resident.resident, JaxResident)
    signs = Signs.draw(np.random.default_rng(0), layout.size)
    resident.directions([Direction(theta, signs)] * 4, np.array([1e-3, -1e-3]))  # compiled
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        resident.directions([Direction(theta, signs)] * 4, np.array([1e-3, -1e-3]))
        resident.coordinates(np.arange(0, layout.size, 997), np.full((264, 2), 1e-4))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < theta.nbytes / 8, f"{peak} bytes allocated on the host, θ has {theta.nbytes}"


def test_a_full_check_above_the_threshold_builds_no_point_on_the_host(monkeypatch, layout_builds):
    """The full check of a 1,345-coordinate model, the threshold lowered to 1,024 (a full
    check of 262,144 coordinates takes too long for a test): every coordinate's points
    made on the device."""
    monkeypatch.setattr(_resident, "CPU_SMALL", 1024)
    f, params = _mlp(n_in=40, hidden=32, scale=0.2)
    report = gj.check(f, params, progress=False)
    assert report.passed and report.evaluations > 2 * 1345
    assert layout_builds["n"] == 0


def _planted(kind: str):
    """tanh(x W) v summed, with a custom_vjp whose W gradient is wrong at element (4, 7)
    only: scaled by 1.001, or of the wrong sign; ``kind=None``: right everywhere."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 30))
    mask = np.ones((30, 20))
    if kind == "scale":
        mask[4, 7] = 1.001
    elif kind == "sign":
        mask[4, 7] = -1.0

    @jax.custom_vjp
    def layer(w):
        return jnp.tanh(x @ w)

    def fwd(w):
        t = jnp.tanh(x @ w)
        return t, t

    def bwd(t, g):
        return ((x.T @ (g * (1 - t**2))) * mask,)

    layer.defvjp(fwd, bwd)
    params = {"W": rng.standard_normal((30, 20)) * 0.2, "v": rng.standard_normal(20)}
    return (lambda p: jnp.sum(layer(p["W"]) @ p["v"])), params


def _both_ways(f, params, **options):
    """The check's report the device's way (every size) and the host's way."""
    reports = []
    for opener in (evaluate_module.open_resident, lambda *args: None):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_resident, "pays", lambda *args: True)
            patch.setattr(evaluate_module, "open_resident", opener)
            reports.append(gj.check(f, params, progress=False, **options))
    return reports


@pytest.mark.parametrize("mode", ["full", "probe"])
@pytest.mark.parametrize("kind", ["scale", "sign", None])
def test_verdicts_are_the_hosts_and_name_the_planted_element(kind, mode):
    f, params = _planted(kind)
    device, host = _both_ways(f, params, mode=mode)
    assert device.status == host.status and device.suspects == host.suspects
    if kind is None:
        assert device.passed
        return
    assert device.status == "fail" and device.suspects[0] == "W"
    assert device.blocks["W"].wrong_elements == host.blocks["W"].wrong_elements == ((4, 7),)
    assert device.blocks["v"].passed


@pytest.mark.parametrize("evaluation", ["map", "vmap", "jit"])
def test_every_evaluation_but_eager_is_checked_the_devices_way(evaluation):
    f, params = _planted("sign")
    device, host = _both_ways(f, params, evaluation=evaluation)
    assert device.suspects == host.suspects == ("W",)
    assert device.blocks["W"].wrong_elements == ((4, 7),)


def _opened(monkeypatch):
    opened = []
    real = JaxResident.__init__

    def spy(self, *args, **kwargs):
        opened.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(JaxResident, "__init__", spy)
    return opened


def test_eager_evaluation_and_a_small_check_take_the_hosts_way(monkeypatch, layout_builds):
    """``evaluation='eager'`` declines at every size; a check below ``CPU_SMALL`` on the CPU
    declines at the real policy. Both still check, on host-built points."""
    opened = _opened(monkeypatch)
    f, params = _mlp()
    assert gj.check(f, params, progress=False).passed
    assert not opened and layout_builds["n"] > 0
    monkeypatch.setattr(_resident, "pays", lambda *args: True)
    assert gj.check(f, params, evaluation="eager", progress=False).passed
    assert not opened
    assert gj.check(f, params, evaluation="jit", progress=False).passed
    assert opened


def test_where_the_devices_way_pays():
    """Off the CPU always; on it from ``CPU_SMALL`` coordinates on."""
    small = _resident.CPU_SMALL
    assert real_pays("gpu", 10) and real_pays("tpu", 1)
    assert not real_pays("cpu", small - 1) and real_pays("cpu", small)


@pytest.mark.usefixtures("everywhere")
def test_f_that_jit_cannot_trace_is_told_to_run_eagerly_the_devices_way_too():
    def f(p):
        return jnp.sum(p["w"] ** 2) if p["w"][0] > 0 else jnp.sum(p["w"])

    with pytest.raises(gradproof.InvalidArgument, match="evaluation='eager'"):
        gj.check(f, {"w": np.array([1.0, 2.0])}, progress=False)
