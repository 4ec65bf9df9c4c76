"""Fast mode's screen (gradproof._engine.screen): it clears right gradients in one call of
the loss, and never clears a wrong one, a noisy loss, a kink or a loss that fails."""

from __future__ import annotations

import numpy as np
import pytest

from gradproof._engine import screen
from gradproof._engine.screen import clears


def _smooth(rows: np.ndarray) -> np.ndarray:
    return np.sum(np.exp(np.sin(rows)) * rows**2, axis=1)


def _smooth_grad(theta: np.ndarray) -> np.ndarray:
    return np.exp(np.sin(theta)) * (np.cos(theta) * theta**2 + 2 * theta)


def _magnitude(theta: np.ndarray) -> float:
    return float(np.sum(np.exp(np.sin(theta)) * theta**2))


def _case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    theta = np.random.default_rng(seed).standard_normal(n) * 3
    return theta, _smooth_grad(theta)


@pytest.mark.parametrize("n", [1, 7, 64, 500])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_right_gradient_is_cleared(n, seed):
    theta, g = _case(n, seed)
    assert clears(_smooth, theta, g, [slice(0, n)], seed=seed, magnitude=lambda: _magnitude(theta))


def test_the_loss_is_called_once_with_every_point():
    theta, g = _case(10, 0)
    calls = []

    def loss(rows):
        calls.append(rows.shape)
        return _smooth(rows)

    assert clears(loss, theta, g, [slice(0, 4), slice(4, 10)], seed=0, magnitude=lambda: 1.0)
    # the base point, then 4 points per direction, DIRECTIONS per span
    assert calls == [(1 + 4 * screen.DIRECTIONS * 2, 10)]


@pytest.mark.parametrize(
    "bug",
    [
        lambda g, i: g.__setitem__(i, 2 * g[i]),  # x2
        lambda g, i: g.__setitem__(i, -g[i]),  # sign flip
        lambda g, i: g.__setitem__(i, g[i] * (1 + 1e-3)),  # a relative 1e-3
        lambda g, i: g.__setitem__(i, 0.0),  # a missing term
    ],
    ids=["x2", "sign", "rel-1e-3", "zero"],
)
@pytest.mark.parametrize("seed", range(20))
def test_a_wrong_element_is_never_cleared(bug, seed):
    """20 seeds each: one wrong element of 50 (its size well above the screen's
    tolerance, so a miss has probability far below 1e-6 per seed)."""
    theta, g = _case(50, seed)
    index = int(np.argmax(np.abs(g)))
    bug(g, index)
    assert not clears(
        _smooth, theta, g, [slice(0, 50)], seed=seed, magnitude=lambda: _magnitude(theta)
    )


def test_a_wrong_small_block_is_not_swamped_by_a_large_right_one():
    theta, g = _case(2001, 0)
    g[2000] *= 1.01  # the last block, one element
    spans = [slice(0, 2000), slice(2000, 2001)]
    assert not clears(_smooth, theta, g, spans, seed=0, magnitude=lambda: _magnitude(theta))
    assert clears(_smooth, theta, _smooth_grad(theta), spans, seed=0, magnitude=lambda: 1.0)


def test_noise_the_model_does_not_foresee_is_left_to_the_full_check():
    theta, g = _case(30, 0)

    def float32_inside(rows):
        r = rows.astype(np.float32)
        return np.sum(np.exp(np.sin(r)) * r**2, axis=1).astype(np.float64)

    rng = np.random.default_rng(5)

    def random_noise(rows):
        return _smooth(rows) + 1e-3 * rng.standard_normal(len(rows))

    for loss in (float32_inside, random_noise):
        assert not clears(
            loss, theta, g, [slice(0, 30)], seed=0, magnitude=lambda: _magnitude(theta)
        )


def test_a_kink_crossed_is_left_to_the_full_check():
    theta = np.array([0.0, 1.5, -2.0])

    def abs_loss(rows):
        return np.sum(np.abs(rows), axis=1)

    one_side = np.array([1.0, 1.0, -1.0])  # |x|'s slope on one side of the kink at 0
    assert not clears(abs_loss, theta, one_side, [slice(0, 3)], seed=0, magnitude=lambda: 3.5)


def test_a_loss_that_raises_or_is_not_finite_is_left_to_the_full_check():
    theta, g = _case(5, 0)

    def raises(rows):
        raise ValueError("boom")

    def nan(rows):
        out = _smooth(rows)
        out[3] = np.nan
        return out

    def short(rows):
        return _smooth(rows)[:-1]

    for loss in (raises, nan, short):
        assert not clears(loss, theta, g, [slice(0, 5)], seed=0, magnitude=lambda: 1.0)


def test_at_a_minimum_the_screen_does_not_clear_what_it_cannot_judge():
    """At theta = 0 the gradient of sum(x^2) is 0 and so is every directional derivative:
    no tolerance is small next to a zero derivative, so the full check decides."""
    theta = np.zeros(4)
    assert not clears(lambda r: np.sum(r**2, axis=1), theta, theta, [slice(0, 4)], seed=0,
                      magnitude=lambda: 0.0)  # fmt: skip


def test_the_same_seed_gives_the_same_points_and_another_seed_others():
    theta, _ = _case(6, 0)
    first = screen.points_along(theta, screen.screen_directions(theta, [slice(0, 6)], seed=3))
    again = screen.points_along(theta, screen.screen_directions(theta, [slice(0, 6)], seed=3))
    other = screen.points_along(theta, screen.screen_directions(theta, [slice(0, 6)], seed=4))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(first[0], theta)  # the base point first


def test_a_block_the_loss_does_not_depend_on_is_judged_against_the_others():
    """Its gradient is zero, and so is every directional derivative along it: it is
    cleared when the other blocks are (and a nonzero gradient there is not)."""
    theta, g = _case(8, 0)
    spans = [slice(0, 6), slice(6, 8)]

    def first_six(rows):
        return _smooth(rows[:, :6])

    g[6:] = 0.0
    assert clears(first_six, theta, g, spans, seed=0, magnitude=lambda: _magnitude(theta[:6]))
    g[7] = 1e-3
    assert not clears(first_six, theta, g, spans, seed=0, magnitude=lambda: _magnitude(theta[:6]))


def test_a_loss_oscillating_on_the_steps_scale_is_left_to_the_full_check():
    """sin(3e5 x): Richardson's error estimate is as large as the derivative, so its
    tolerance would hide a 10% bug; a tolerance that large never clears (SHARE), and the
    estimates' disagreement reads as a kink besides."""
    theta = np.random.default_rng(0).standard_normal(6) * 0.5

    def fast(rows):
        return np.sum(np.sin(3e5 * rows), axis=1)

    g = 3e5 * np.cos(3e5 * theta)
    g[2] *= 1.1
    assert not clears(fast, theta, g, [slice(0, 6)], seed=0, magnitude=lambda: 6.0)


def test_a_gradient_that_is_not_finite_is_never_cleared():
    theta, g = _case(5, 0)
    g[1] = np.inf
    assert not clears(_smooth, theta, g, [slice(0, 5)], seed=0, magnitude=lambda: _magnitude(theta))


def test_points_beyond_the_cap_are_left_to_the_full_check_without_an_evaluation(monkeypatch):
    monkeypatch.setattr(screen, "CAP", 100)
    theta, g = _case(20, 0)  # 20 * (1 + 8) = 180 values > 100

    def never(rows):
        raise AssertionError("evaluated")

    assert not clears(never, theta, g, [slice(0, 20)], seed=0, magnitude=lambda: 1.0)


@pytest.mark.parametrize("n, error", [(100, 1e-3), (1000, 1e-2)])
@pytest.mark.parametrize("seed", range(5))
def test_one_wrong_element_is_not_hidden_by_a_large_offset_or_a_large_block(n, error, seed):
    """sum(sin(x) + 3000): the loss's roundoff is that of 3000 per term, so the directional
    tolerance is large; it may clear only below a small share of the largest single term,
    never of the block's sum (where one element's error would hide)."""
    theta = np.random.default_rng(seed).uniform(-2, 2, n)

    def offset(rows):
        return np.sum(np.sin(rows) + 3000.0, axis=1)

    g = np.cos(theta)
    g[0] += error
    magnitude = float(np.sum(np.abs(np.sin(theta) + 3000.0)))
    assert not clears(offset, theta, g, [slice(0, n)], seed=seed, magnitude=lambda: magnitude)


def test_a_gradient_too_small_for_the_noise_model_is_left_unevaluated():
    """Beside a loss of 1e6, a gradient of ~1e-12 can never be cleared (the modelled
    roundoff alone is beyond 1e-4 of its terms): the screen spends no evaluation on it."""
    theta = np.full(3, 1e-12)
    calls = []

    def loss(rows):
        calls.append(len(rows))
        return np.sum(rows**2, axis=1) + 1e6

    assert not clears(loss, theta, 2 * theta, [slice(0, 3)], seed=0, magnitude=lambda: 1e6)
    assert calls == []


@pytest.mark.parametrize("seed", range(3))
def test_the_noise_floor_never_rules_out_what_evaluation_would_clear(seed):
    """Over gradients from far above to far below the modelled noise, the screen judged
    with its points evaluated clears only where the floor checked beforehand said it
    could; both outcomes occur, so the floor sits near the judge's own bound."""
    theta, g0 = _case(20, seed)
    spans = [slice(0, 20)]
    cleared, ruled_out = 0, 0
    for scale in np.logspace(-14, 0, 29):
        g = g0 * scale
        offset = 1.0 / scale  # the loss's size (its roundoff) grows as the gradient shrinks

        def loss(rows, s=scale, c=offset):
            return s * _smooth(rows) + c

        magnitude = scale * _magnitude(theta) + offset
        directions = screen.screen_directions(theta, spans, seed)
        terms = screen.Terms.of(directions, theta, g)
        points = screen.points_along(theta, directions)
        judged = screen.judge_screen(loss(points), points, terms, magnitude)
        reachable = terms.reachable(magnitude)
        assert reachable or not judged, scale
        cleared += judged
        ruled_out += not reachable
    assert cleared and ruled_out
