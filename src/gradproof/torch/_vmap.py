"""``torch.func.vmap`` over the leading axis of every argument, without its per-call overhead.

The drop-in evaluates ``func`` under vmap a dozen times per check, on a few points of a
few elements each. ``torch.func.vmap`` spends about 50 microseconds per call walking
its arguments and results as pytrees (structure, ``in_dims``, ``out_dims``), ten times
the cost of ``torch.sin`` on a small batch. Here every argument is a tensor batched
along dimension 0 and every result a tensor batched along dimension 0, so the walk is
not needed: :func:`vmap` (:func:`vmap_rows`) enters a vmap level, marks the batch
dimension, calls the function and removes the batch dimension, with torch's own
primitives, as ``torch.func.vmap`` does (same batching rules, same ``randomness="error"``).

Where those primitives are missing (another torch version), ``torch.func.vmap`` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.func

try:  # torch's C primitives behind torch.func.vmap, present since torch 2.0
    from torch._C._functorch import (
        _add_batch_dim,
        _remove_batch_dim,
        _vmap_decrement_nesting,
        _vmap_increment_nesting,
    )
    from torch._functorch.vmap import lazy_load_decompositions

    PRIMITIVES = True
except ImportError:  # pragma: no cover - another torch: torch.func.vmap does it all
    PRIMITIVES = False

RANDOMNESS = "error"  # torch.func.vmap's default: a random op under vmap raises
_LOADED = False  # vmap's decompositions loaded (torch loads them once per process)


def vmap(function: Callable[..., Sequence[Any]]) -> Callable[..., list[torch.Tensor]]:
    """``torch.func.vmap(function)`` with its defaults (every argument and result batched
    along dimension 0), for functions of tensors that return a sequence of tensors."""
    return lambda *stacked: vmap_rows(function, stacked)


def vmap_rows(
    function: Callable[..., Sequence[Any]], stacked: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """``function`` applied to each row of ``stacked`` (one batch along dimension 0 of
    every tensor), its results stacked along dimension 0, as ``torch.func.vmap(function)``
    gives them.

    Raises what the batched call raises; a result that is not a tensor raises too.

    >>> rows = vmap_rows(lambda x: (x.sum(),), [torch.ones(3, 2)])
    >>> rows[0].tolist()
    [2.0, 2.0, 2.0]
    >>> x, w = torch.randn(4, 3), torch.randn(3, 2)
    >>> mine = vmap_rows(lambda r: (r @ w, w.sum()), [x])  # the second result is not batched
    >>> theirs = torch.func.vmap(lambda r: (r @ w, w.sum()))(x)
    >>> all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True))
    True
    >>> try:  # a random operation raises, as under torch.func.vmap's default randomness
    ...     vmap_rows(lambda r: (torch.rand_like(r),), [x])
    ... except RuntimeError as error:
    ...     print("random" in str(error))
    True
    """
    if not PRIMITIVES:  # pragma: no cover - another torch
        return list(torch.func.vmap(lambda *a: tuple(function(*a)))(*stacked))
    _load_decompositions()
    size = stacked[0].shape[0]
    if any(t.dim() == 0 or t.shape[0] != size for t in stacked):
        raise ValueError("vmap_rows: every argument needs the same leading batch size")
    level = _vmap_increment_nesting(size, RANDOMNESS)
    try:
        batched = [_add_batch_dim(t, 0, level) for t in stacked]
        results = function(*batched)
        return [_unbatched(r, level, size) for r in results]
    finally:
        _vmap_decrement_nesting()


def _load_decompositions() -> None:
    """What ``torch.func.vmap`` does before each call, done once: load vmap's decompositions."""
    global _LOADED
    if not _LOADED:
        lazy_load_decompositions()
        _LOADED = True


def _unbatched(result: Any, level: int, size: int) -> torch.Tensor:
    """One result with its batch dimension at the front (expanded where it has none)."""
    if not isinstance(result, torch.Tensor):
        raise ValueError(f"vmap_rows: the function must return tensors, got {type(result)}")
    return _remove_batch_dim(result, level, size, 0)


def nudged(values: np.ndarray) -> np.ndarray:
    """``values`` moved by a relative 1e-4, alternately up and down, zeros to 1e-4: another
    point (the signs kept), where a vmap rule that computes another function shows."""
    factors = np.full(values.size, 1 + 1e-4)
    factors[1::2] = 1 - 1e-4
    moved = values * factors.reshape(values.shape)
    return np.where(values == 0, 1e-4, moved)
