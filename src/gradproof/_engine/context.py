"""What the modes share: the frozen set-up of one check, and the frozen result of a mode.

:func:`gradproof._engine.check.check` builds one :class:`Context` after the
noise measurement; a mode (``coordinates`` or ``probe``) reads it and returns a
:class:`ModeResult`, which ``check`` assembles into the :class:`~gradproof.Report`.
Neither is changed after it is made: a mode reports back only through what it
returns. The :class:`~gradproof._engine.evaluate.Evaluator` inside the context
is the one moving part: it counts the loss evaluations the check spends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from gradproof._engine.budget import Budget
from gradproof._engine.calls import evaluate_offsets
from gradproof._engine.evaluate import Evaluator
from gradproof._engine.precision import FLOAT64, Level, round_to
from gradproof._engine.schemes import Scheme, default_step
from gradproof._engine.tree import Layout
from gradproof._report import BlockResult


@dataclass(frozen=True)
class Context:
    """Everything a mode needs, set up once per check.

    Attributes:
        layout, theta: the parameters' blocks and their flat float64 values.
        g: the gradient under test, flat, in ``layout``'s order.
        evaluator: evaluates the loss around ``theta`` (and counts evaluations).
        scheme: the scheme whose steps and error model judge the check.
        adaptive: central differences first, ``scheme``'s extra points only
            where they cannot clear a coordinate (``scheme="auto"``, no ``eps``).
        eps: the user's fixed step, or None for steps scaled to each coordinate.
        j0: the loss at ``theta``; ``delta``: a bound on the noise in one value.
        level: the precision the loss works in, as measured.
        budget: what the check may still spend.
        seed: seeds every random choice of the mode.
        grad_eps: the precision the gradient under test was computed in.
    """

    layout: Layout
    theta: np.ndarray
    g: np.ndarray
    evaluator: Evaluator
    scheme: Scheme
    adaptive: bool
    eps: float | None
    j0: float
    delta: float
    level: Level
    budget: Budget
    seed: int
    grad_eps: float
    block_delta: tuple[float, ...] | None = None  # per block, where measured block by block

    @property
    def machine_eps(self) -> float:
        """The epsilon of the precision the loss works in."""
        return self.level.eps

    @property
    def rtol(self) -> float:
        """The judge's relative slack: tight for Richardson, loose for plain central."""
        if self.scheme.name == "central" and not self.adaptive:
            return max(1e-6, 1e3 * self.machine_eps)
        return max(1e-8, 100 * self.machine_eps)

    @cached_property
    def grad_scale(self) -> float:
        """The largest element of the gradient under test (the judge's scale)."""
        return float(np.max(np.abs(self.g), initial=0.0))

    @property
    def per_coordinate(self) -> int:
        """Evaluations one coordinate costs (before any refinement)."""
        return 2 if self.adaptive else self.scheme.evaluations_per_coordinate

    def steps(self, theta: np.ndarray) -> np.ndarray:
        """Per-coordinate steps: ``eps`` as given, or scaled to |theta| and the precision."""
        if self.eps is not None:
            return np.full(theta.shape, float(self.eps))
        base = default_step(self.scheme.name, self.machine_eps)
        if self.scheme.name == "complex":
            return np.full(theta.shape, base)
        return base * np.maximum(np.abs(theta), 1.0)

    def offsets(self, theta: np.ndarray) -> np.ndarray:
        """The scheme's offsets for coordinates at ``theta``, shape (n, k).

        With steps of its own choosing (no ``eps``), the check makes each shifted
        coordinate representable in the precision the loss works in, so that a
        loss computing in float32 sees exactly the step the formula assumes.
        """
        offsets = self.scheme.offsets(theta, self.steps(theta), exact=self.eps is None)
        if self.eps is None and self.level.bits < FLOAT64.bits and not self.scheme.is_complex:
            offsets = round_to(theta[:, None] + offsets, self.level) - theta[:, None]
        return offsets

    def noise_at(self, values: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
        """A bound on the noise in each row of loss ``values`` (shape (n, k)).

        The base point's (that of the block holding ``indices[i]``, where noise was
        measured block by block), or one unit of roundoff of the largest value in
        the row, where the loss is much larger away from the base point (near a
        minimum at J ≈ 0).
        """
        with np.errstate(invalid="ignore"):
            largest = np.abs(values).max(axis=1)
        delta: float | np.ndarray = self.delta
        if self.block_delta is not None and indices is not None:
            delta = np.asarray(self.block_delta)[self.block_index(indices)]
        return np.maximum(delta, self.machine_eps * largest)

    def block_index(self, indices: np.ndarray) -> np.ndarray:
        """The position in ``layout.blocks`` of the block holding each flat index."""
        return np.searchsorted(self._stops, indices, side="right")

    @cached_property
    def _stops(self) -> np.ndarray:
        return np.array([b.stop for b in self.layout.blocks])

    def evaluate(self, indices: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """J(theta + offsets[i, k] e_indices[i]) for every i, k, in this check's scheme."""
        return evaluate_offsets(self.evaluator, self.scheme.is_complex, indices, offsets)


@dataclass(frozen=True)
class ModeResult:
    """What one mode found, before ``tol`` and the report's assembly.

    Attributes:
        blocks: one verdict per block, in the parameters' order.
        difference: the notebook's relative difference over what was checked.
        notes: sentences for the report's notes.
        coverage: what was and was not checked, in words.
        miss_probability: the chance that a wrong element went unseen (None: none).
        extra: mode-specific details for ``Report.extra``.
    """

    blocks: tuple[BlockResult, ...]
    difference: float
    notes: tuple[str, ...]
    coverage: str
    miss_probability: float | None
    extra: Mapping[str, Any]
