"""Losses that keep the parameters where they compute, and are shifted there.

The evaluator's own way builds every point on the host, in one flat float64
vector, and hands the loss a structure of views of it: a loss whose
parameters live on a GPU then copies them host to device at every
evaluation. A loss can offer a better way with one method::

    loss.__gradproof_resident__(blocks, theta, batched) -> Resident | None

given the layout's blocks as :class:`Span` records, the flat base point and whether
the check may evaluate many points per call. It returns a :class:`Resident`, an
object that holds the base point where the loss computes and evaluates the loss
at points described by what changed (a coordinate and its offset; a span, a
direction given by its :class:`~gradproof._engine.shifts.Recipe`, and a step), or
None to decline (the evaluator then builds points on the host as always).

The points must be those the host would build, bit for bit: ``theta_i + offset`` for
a coordinate, ``theta_i + (u_i * step)`` along a direction, each in float64 and
then cast to the parameter's dtype. Between calls the parameters hold the base
point; a resident that finds they do not (the loss moved them) raises :class:`Declined`.
Directions without a recipe are filled by the host a chunk at a time
(:meth:`~gradproof._engine.shifts.Along.fill`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gradproof._engine.shifts import Along
from gradproof._engine.tree import Layout

OPENER = "__gradproof_resident__"


class Declined(Exception):
    """Raised by a :class:`Resident` that can no longer make the check's points (the loss
    wrote into the parameters it holds, say): the evaluator then builds this point, and
    every later one, on the host."""


@dataclass(frozen=True)
class Span:
    """One block of the flat vector: its path in the structure, where it starts, how many
    coordinates it has, and its shape."""

    path: tuple[Any, ...]
    start: int
    size: int
    shape: tuple[int, ...]


class Resident(Protocol):
    """Evaluations of a loss at points described by their change from the base point.

    Values come back as arrays in the loss's own dtype; each method may evaluate its
    points one at a time or many per call, as the loss allows.
    """

    def base(self) -> Any:
        """The loss at the base point (a scalar, array or tensor of one element)."""

    def gradient(self, g: np.ndarray) -> None:
        """The gradient under test, flat, for the ``g . u`` that recipes ask for."""

    def coordinates(self, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """``J(theta + offsets[i, k] e_indices[i])`` for every i, k (real offsets); (n, k)."""

    def directions(self, alongs: Sequence[Along], steps: np.ndarray, span: slice) -> np.ndarray:
        """``J(theta + steps[k] * u_d)`` for each direction d over ``span``; (d, k)."""


def open_resident(loss: Any, layout: Layout, theta: np.ndarray, batched: bool) -> Any:
    """The loss's :class:`Resident` for this check, or None where it has none (or declines).

    Complex blocks and Python numbers always take the host's way.
    """
    opener = getattr(loss, OPENER, None)
    if not callable(opener) or not layout.blocks:
        return None
    if any(b.is_complex or b.is_python_number for b in layout.blocks):
        return None
    spans = tuple(Span(b.path, b.start, b.size, b.shape) for b in layout.blocks)
    return opener(spans, theta, batched)
