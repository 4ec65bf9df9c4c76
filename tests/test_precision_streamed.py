"""The noise measurement streamed a chunk at a time: the same directions, the same points.

Oracle: the whole-array expressions the measurement used when it held its directions
whole (one draw of signs per direction, ``v = s * (spacing * max(|θ|, 1))``, rounded
onto the candidate precision's grid, points ``θ + k·v``), compared bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradproof._engine.evaluate import Evaluator
from gradproof._engine.precision import (
    DIRECTIONS,
    LEVELS,
    POINTS,
    TableDirection,
    _direction_signs,
    _table,
    block_noise,
    round_to,
)
from gradproof._engine.shifts import CHUNK, Along
from gradproof._engine.tree import flatten


def whole_array_points(theta, signs, spacing, grid, k):
    """The point θ + k·v as the whole-array code computed it."""
    vectors = signs * (spacing * np.maximum(np.abs(theta), 1.0))
    if grid.bits < 53:
        vectors = round_to(theta + vectors, grid) - theta
    return vectors * k + theta


def base_point(size: int) -> np.ndarray:
    rng = np.random.default_rng(size)
    theta = rng.standard_normal(size) * np.logspace(-12, 3, size)  # tiny to large
    theta[::97] = 0.0
    theta[1::211] = -0.0
    return theta


def bytes_signs(rng, size):
    """The reference: ``size`` signs from the bits of one ``rng.bytes`` call, unpacked whole."""
    bits = np.unpackbits(np.frombuffer(rng.bytes(-(-size // 8)), dtype=np.uint8), count=size)
    return bits.astype(np.float64) * 2.0 - 1.0


def test_the_directions_are_those_of_one_draw_per_direction():
    drawn = _direction_signs(CHUNK + 3, seed=4)
    reference = np.random.default_rng(4)
    assert len(drawn) == DIRECTIONS
    for signs in drawn:
        np.testing.assert_array_equal(signs.array(), bytes_signs(reference, CHUNK + 3))


@pytest.mark.parametrize("level", LEVELS[:3], ids=lambda level: level.name)
@pytest.mark.parametrize("size", [5, CHUNK + 7])
def test_table_points_are_the_whole_array_points_bit_for_bit(level, size):
    theta = base_point(size)
    (signs, _) = _direction_signs(size, seed=1)
    direction = TableDirection(theta, signs, level.spacing, level)
    out, scratch = np.empty(size), np.empty(size)
    for k in range(1, POINTS + 1):
        expected = whole_array_points(theta, signs.array(), level.spacing, level, float(k))
        for start in range(0, size, CHUNK):  # the chunks the evaluator shifts
            stop = min(size, start + CHUNK)
            direction.shift(
                start, theta[start:stop], float(k), out[start:stop], scratch[: stop - start]
            )
        np.testing.assert_array_equal(out.view(np.int64), expected.view(np.int64))
        generic = np.empty(size)
        Along.shift(direction, 0, theta, float(k), generic, scratch)  # fill, multiply, add
        np.testing.assert_array_equal(generic.view(np.int64), expected.view(np.int64))


def test_the_table_evaluates_the_whole_array_points_and_leaves_theta_alone():
    theta = base_point(CHUNK + 11)
    layout, flat = flatten({"w": theta})
    seen: list[np.ndarray] = []
    evaluator = Evaluator(lambda p: seen.append(p["w"].copy()) or 1.0, layout, flat.copy())
    signs = _direction_signs(theta.size, seed=0)
    table = _table(evaluator, signs, LEVELS[0].spacing)
    assert table.shape == (DIRECTIONS, POINTS) and len(seen) == DIRECTIONS * POINTS
    for d, s in enumerate(signs):
        for k in range(1, POINTS + 1):
            expected = whole_array_points(theta, s.array(), LEVELS[0].spacing, LEVELS[0], k)
            np.testing.assert_array_equal(seen[d * POINTS + k - 1], expected)
    np.testing.assert_array_equal(evaluator.theta, theta)
    np.testing.assert_array_equal(evaluator._work, theta)  # put back after the table


def test_block_noise_moves_only_its_block():
    theta = base_point(40)
    layout, flat = flatten({"a": theta[:15], "b": theta[15:]})
    seen: list[np.ndarray] = []

    def loss(p):
        seen.append(np.concatenate([p["a"], p["b"]]))
        return float(np.sum(p["a"] ** 2) + np.sum(p["b"] ** 3))

    evaluator = Evaluator(loss, layout, flat.copy())
    block_noise(evaluator, loss({"a": theta[:15], "b": theta[15:]}), LEVELS[0], [(0, 15), (15, 40)])
    seen = seen[1:]
    assert len(seen) == 2 * DIRECTIONS * POINTS
    first, second = seen[: DIRECTIONS * POINTS], seen[DIRECTIONS * POINTS :]
    for p in first:
        assert np.array_equal(p[15:], theta[15:]) and not np.array_equal(p[:15], theta[:15])
    for p in second:
        assert np.array_equal(p[:15], theta[:15]) and not np.array_equal(p[15:], theta[15:])
    # the signs: one draw per direction, DIRECTIONS per block
    rng = np.random.default_rng(0)
    for points, (lo, hi) in ((first, (0, 15)), (second, (15, 40))):
        drawn = [bytes_signs(rng, hi - lo) for _ in range(DIRECTIONS)]
        for d, s in enumerate(drawn):
            expected = whole_array_points(theta[lo:hi], s, LEVELS[0].spacing, LEVELS[0], 1.0)
            np.testing.assert_array_equal(points[d * POINTS][lo:hi], expected)
