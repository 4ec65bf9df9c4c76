"""The scalar losses `gradcheck` checks: random projections of the outputs, or every element.

gradproof checks the gradient of a scalar loss, so ``func``'s outputs are
reduced to one scalar by weighting them, ``sum_k <w_k, out_k>``; its gradient
is the backward applied to ``grad_outputs=w``. A random Gaussian ``w`` checks
the whole backward at once, with a small chance of missing a wrong one (see
:data:`MISS_FACTOR`); a unit ``w`` per output element checks every element on
its own.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from gradproof.torch._common import index_label

# P(|N(0, s^2)| <= t) <= sqrt(2/pi) t/s: the chance that one Gaussian projection
# hides an element error s of a wrong (linear) backward below its tolerance t.
MISS_FACTOR = math.sqrt(2 / math.pi)


@dataclasses.dataclass(frozen=True, eq=False)
class Reduction:
    """One scalar loss to check: a weight tensor per output, and what it checks, in words."""

    context: str
    weights: tuple[torch.Tensor, ...]


def reductions(
    outputs: list[torch.Tensor],
    *,
    full_jacobian: bool,
    projections: int,
    seed: int,
    owner: str = "",
) -> list[Reduction]:
    """Every check's weighting: ``projections`` random ones, or one per output element.

    >>> plan = reductions([torch.zeros(2)], full_jacobian=True, projections=1, seed=0)
    >>> [r.context for r in plan], [r.weights[0].tolist() for r in plan]
    (['output 0[0]', 'output 0[1]'], [[1.0, 0.0], [0.0, 1.0]])
    """
    if full_jacobian:
        return list(_every_element(outputs))
    return list(_projections(outputs, projections, seed, owner))


def unit_weights(outputs: list[torch.Tensor], k: int, flat: int) -> tuple[torch.Tensor, ...]:
    """Weights that pick element ``flat`` (row-major) of output ``k``: one there, zero elsewhere."""
    # contiguous, whatever the outputs' strides (a transposed output's zeros_like has no view(-1))
    weights = tuple(torch.zeros(tuple(o.shape), dtype=o.dtype, device=o.device) for o in outputs)
    weights[k].view(-1)[flat] = 1
    return weights


def _dense(values: np.ndarray, output: torch.Tensor) -> torch.Tensor:
    """``values`` as a tensor like ``output`` (its dtype and device: the backward takes it).

    Laid out as ``torch.empty`` lays it out: ``torch.tensor`` gives an empty array
    strides of 0, which the backward of ``view_as_real`` (a complex output's
    real view) refuses.
    """
    dense = torch.empty(tuple(output.shape), dtype=output.dtype, device=output.device)
    return dense.copy_(torch.from_numpy(np.asarray(values)))


def _every_element(outputs: list[torch.Tensor]) -> Iterator[Reduction]:
    """One unit weighting per element of every output, in order."""
    for k, output in enumerate(outputs):
        shape = tuple(output.shape)
        for flat in range(int(np.prod(shape, dtype=np.int64))):
            where = index_label(np.unravel_index(flat, shape))
            yield Reduction(f"output {k}{where}", unit_weights(outputs, k, flat))


def _projections(
    outputs: list[torch.Tensor], count: int, seed: int, owner: str = ""
) -> Iterator[Reduction]:
    """``count`` Gaussian weightings, drawn from a generator started at ``seed``.

    ``owner`` names whose outputs they are (``"the backward's "``), where not ``func``'s.
    """
    draws = _draws(tuple(tuple(o.shape) for o in outputs), count, seed)
    named = f"the {owner}output" if len(outputs) == 1 else f"the {owner}{len(outputs)} outputs"
    for p, values in enumerate(draws):
        weights = tuple(_dense(d, o) for d, o in zip(values, outputs, strict=True))
        context = (
            f"{named} projected on random vector {p + 1} of {count} (seed {seed}; an "
            f"element error r times its tolerance is missed with probability at most "
            f"{MISS_FACTOR:.2f}/r per projection; full_jacobian=True checks every output "
            "element)"
        )
        yield Reduction(context, weights)


CACHED_DRAWS = 1 << 12  # values of the projections kept for the next check (32 KiB)


def _draws(
    shapes: tuple[tuple[int, ...], ...], count: int, seed: int
) -> Iterator[tuple[np.ndarray, ...]]:
    """The Gaussian values of ``count`` projections of outputs of ``shapes``, in order, from
    a generator started at ``seed``: kept for the next check where they are few (starting a
    generator costs more than a small check's other set-up), drawn one projection at a
    time otherwise."""
    if count * sum(math.prod(s) for s in shapes) > CACHED_DRAWS:
        return _drawn(shapes, count, seed)
    return iter(_kept_draws(shapes, count, seed))


def _drawn(
    shapes: tuple[tuple[int, ...], ...], count: int, seed: int
) -> Iterator[tuple[np.ndarray, ...]]:
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield tuple(rng.standard_normal(s) for s in shapes)


@functools.lru_cache(maxsize=64)
def _kept_draws(
    shapes: tuple[tuple[int, ...], ...], count: int, seed: int
) -> tuple[tuple[np.ndarray, ...], ...]:
    return tuple(_drawn(shapes, count, seed))  # only ever copied into fresh tensors


def weighted_sum(
    outputs: Sequence[torch.Tensor], weights: Sequence[torch.Tensor], batch: bool
) -> torch.Tensor:
    """``sum_k <weights_k, outputs_k>``: one value, or one per row of a batch of outputs."""
    terms = [
        (out * w).reshape(out.shape[0], -1).sum(1) if batch else (out * w).sum()
        for out, w in zip(outputs, weights, strict=True)
    ]
    return functools.reduce(operator.add, terms)
