"""The drop-in's output cache: its keys tell every two different points apart, bit for bit."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="gradproof.torch needs torch (gradproof[torch])")

from gradproof.torch._cache import SMALL_POINT, OutputCache  # noqa: E402


def keys(points, batch=False):
    cache = OutputCache()
    return [cache.key({"x": p}, ("x",), batch) for p in points]


@pytest.mark.parametrize("shape", [(3, 4), (40, 64)], ids=["keyed-whole", "keyed-by-difference"])
def test_points_that_differ_anywhere_get_different_keys(shape):
    """A small point is hashed whole, a large one (over SMALL_POINT values) by where it
    differs from the first point seen: both tell every two points apart, bit for bit."""
    base = np.linspace(-1.0, 1.0, shape[0] * shape[1]).reshape(shape)
    moved = base.copy()
    moved[2, 3] += 1e-12
    assert base.size <= SMALL_POINT if shape == (3, 4) else base.size > SMALL_POINT
    signed = base.copy()
    signed[0, 0] = 0.0
    negative = signed.copy()
    negative[0, 0] = -0.0  # equal as numbers, different bits, different outputs (1/x)
    found = keys([base, moved, base.copy(), signed, negative])
    assert found[0] == found[2]
    assert len({found[0], found[1], found[3], found[4]}) == 4


def test_a_batch_is_keyed_row_by_row_against_the_base_point():
    base = np.arange(6.0).reshape(2, 3)
    batch = np.repeat(base[None], 3, axis=0)
    batch[1, 0, 2] = 7.5
    large = np.repeat(np.arange(600.0)[None], 3, axis=0)  # 1,800 values: keyed by difference
    large_other = large.copy()
    large_other[2, 599] = -1.0
    cache = OutputCache()
    assert cache.key({"x": large}, ("x",), True) == cache.key({"x": large.copy()}, ("x",), True)
    assert cache.key({"x": large}, ("x",), True) != cache.key({"x": large_other}, ("x",), True)
    other = batch.copy()
    other[1, 0, 2] = 7.25
    cache = OutputCache()
    first = cache.key({"x": batch}, ("x",), True)
    assert first == cache.key({"x": batch.copy()}, ("x",), True)
    assert first != cache.key({"x": other}, ("x",), True)
    assert first != cache.key({"x": batch[:2]}, ("x",), True)  # another shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_keys_work_for_every_dtype_and_a_zero_dimensional_point(dtype):
    a, b = np.array(1.5, dtype=dtype), np.array(2.5, dtype=dtype)
    first, second, again = keys([a, b, a.copy()])
    assert first == again != second


@pytest.mark.parametrize(
    "func",
    [lambda x: x.view(-1), lambda x: x.t(), lambda x: (x[1:], x * 2)],
    ids=["view", "transpose", "slice_and_product"],
)
@pytest.mark.parametrize("options", [{"projections": 3}, {"full_jacobian": True}, {}])
def test_outputs_that_are_views_of_the_input_are_not_overwritten_by_the_next_point(func, options):
    import gradproof.torch as gt

    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(func, (x,))
    assert gt.gradcheck(func, (x,), **options) is True
    assert gt.gradcheck(func, (x,), batched=False, **options) is True
