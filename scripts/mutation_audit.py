"""A hand-made mutation audit of gradproof's verdict modules.

Each mutant is one plausible one-line mistake in ``src/gradproof/_engine/``: the
exact original text, what replaces it, and what a user of ``gradproof.check``
would see if the mistake shipped. The script copies the repository to a
temporary directory (the working tree's ``src/`` is never written), applies one
mutant at a time to the copy, runs a fixed, fast subset of the tests against
it, and prints a table: killed (a test failed) or survived (every test passed).

Usage::

    python scripts/mutation_audit.py              # every mutant, then the table
    python scripts/mutation_audit.py --list       # the mutants, without running anything
    python scripts/mutation_audit.py --only S1,J1 # a few mutants by id

Each original text must occur exactly once in its file: the source changes, and
a mutant that no longer applies is an error, not a silent skip.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = Path("src/gradproof/_engine")
TESTS = (
    "tests/test_verdicts.py",
    "tests/test_kinks.py",
    "tests/test_precision.py",
    "tests/test_diagnosis.py",
    "tests/test_diagnosis_patterns.py",
    "tests/test_probe.py",
    "tests/test_fraud_example.py",
    "tests/test_layer_corpus.py",
    "tests/test_mutants.py",
    "tests/test_modes.py",
    "tests/test_properties.py",
    "tests/test_small_scales.py",
    "tests/test_grad_rounding.py",
    "tests/test_domain_edges.py",
    "tests/test_screen.py",
    "tests/test_torch_fast_screen.py",
)
PYTEST = (
    "-m",
    "pytest",
    "-x",
    "-q",
    "-p",
    "no:cacheprovider",
    "--hypothesis-seed=0",  # the property tests draw the same examples on every run
)
COPIED = ("src", "tests", "conftest.py", "pyproject.toml")


@dataclass(frozen=True)
class Mutant:
    """One one-line change to an engine module and what a user would see."""

    id: str
    file: str  # relative to src/gradproof/_engine/
    original: str
    replacement: str
    effect: str


M = Mutant
MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- judge.py
    M(
        "J1",
        "judge.py",
        'KINK_SLACK = {"central": 1e-3, "richardson": 1e-3, "complex": 0.0}',
        'KINK_SLACK = {"central": 1e-2, "richardson": 1e-2, "complex": 0.0}',
        "kink threshold x10: a bug of up to 1% at an element next to a ReLU kink passes",
    ),
    M(
        "J2",
        "judge.py",
        "SAFETY = 4.0",
        "SAFETY = 2.0",
        "SAFETY halved: tolerances half as wide, correct gradients of noisy losses fail",
    ),
    M(
        "J3",
        "judge.py",
        "GRAD_ROUNDING = 8.0",
        "GRAD_ROUNDING = 0.0",
        "GRAD_ROUNDING = 0: a correct float32 backprop fails on its own rounding",
    ),
    M(
        "J4",
        "judge.py",
        "return SAFETY * error + rtol * np.maximum(np.abs(g), np.abs(n)) + (1e-12 * scale",
        "return SAFETY * error + (1e-12 * scale",
        "no relative slack: what the error model cannot see fails correct gradients",
    ),
    M(
        "J5",
        "judge.py",
        "+ (1e-12 * scale + 1e-300)",
        "+ (0 * scale + 1e-300)",
        "no absolute floor: an element ~0 beside large ones is judged at roundoff",
    ),
    M(
        "J6",
        "judge.py",
        "if grad_eps > 2.0**-52:",
        "if grad_eps > 2.0**-23:",
        "only half-precision gradients get rounding room: a float32 backprop fails",
    ),
    M(
        "J7",
        "judge.py",
        "if side is not None and (disagree[i] or side[1] < tol[i]):",
        "if side is not None:",
        "a smooth loss's curvature is reported as a kink (kink notes on a cubic)",
    ),
    M(
        "J8",
        "judge.py",
        "return Judged(n, tol, beyond & ~unclear, kink, numeric, unclear=unclear)",
        "return Judged(n, tol, beyond, kink, numeric, unclear=unclear)",
        "an element at a kink half precision cannot resolve is blamed: fail, not inconclusive",
    ),
    M(
        "J9",
        "judge.py",
        "beyond = ~(np.abs(g - n) <= tol) | ~np.isfinite(n) | ~np.isfinite(tol)",
        "beyond = np.abs(g - n) > tol",
        "a NaN estimate or an infinite tolerance counts as within tolerance: a pass",
    ),
    M(
        "J10",
        "judge.py",
        "both = vague_f & vague_b & (near_f | near_b)",
        "both = near_f | near_b",
        "a bug next to a kink that a clean side contradicts reads inconclusive, not fail",
    ),
    M(
        "J11",
        "judge.py",
        "if err > 0.1 * size:",
        "if err > 1.0 * size:",
        "an uninformative one-sided estimate (error ~ its size) excuses a bug as a kink",
    ),
    M(
        "J12",
        "judge.py",
        "evidence |= est.smooth_gap > floor",
        "pass",
        "a kink between h/2 and h is not recognised: correct ReLU gradients fail",
    ),
    M(
        "J13",
        "judge.py",
        "floor = max(slack, rtol) * size + SAFETY * 4 * est.roundoff",
        "floor = max(slack, rtol) * size",
        "roundoff noise counts as evidence of a kink: bugs in noisy losses excused as kinks",
    ),
    M(
        "J14",
        "judge.py",
        "evidence |= np.abs(fwd - bwd) > bounds",
        "evidence |= np.abs(fwd - bwd) > np.inf",
        "a kink at the point itself (its sides smooth) is not recognised: a correct ReLU fails",
    ),
    M(
        "J15",
        "judge.py",
        "LOPSIDED = 0.1",
        "LOPSIDED = 10.0",
        "a slope jump below the slack on one side is missed: a float64 batch of 512 fails",
    ),
    M(
        "J16",
        "judge.py",
        "shown = apart & (near_f | near_b) & (est.smooth_gap is not None)",
        "shown = apart & (near_f | near_b)",
        "a central pair's curvature reads as sides apart: float32 checks go inconclusive",
    ),
    M(
        "J17",
        "judge.py",
        "apart = nonsmooth | (",
        "apart = nonsmooth & (",
        "sides apart below the kink floor blame the element: float32 ReLU nets fail",
    ),
    # -------------------------------------------------------------- schemes.py
    M(
        "S1",
        "schemes.py",
        "value = 2 * e2 - e1",
        "value = e2",
        "one-sided estimates only O(h): a correct gradient at a kink is not matched to a side",
    ),
    M(
        "S2",
        "schemes.py",
        "error = np.abs(value - d2) + roundoff",
        "error = roundoff",
        "Richardson's truncation term dropped: correct gradients of curved losses fail",
    ),
    M(
        "S3",
        "schemes.py",
        "value = d2 + (d2 - d1) / 3",
        "value = d2 + (d2 - d1) / 2",
        "wrong extrapolation weight: the estimate is only O(h^2), differences grow",
    ),
    M(
        "S4",
        "schemes.py",
        "roundoff = 3 * delta / h",
        "roundoff = delta / h",
        "Richardson's roundoff bound a third of itself: noisy correct gradients fail",
    ),
    M(
        "S5",
        "schemes.py",
        "error = 2 * delta / (hp + hm)",
        "error = delta / (hp + hm)",
        "the central difference's roundoff halved: correct low-precision gradients fail",
    ),
    M(
        "S6",
        "schemes.py",
        "error = np.abs(value - e2) + 10 * delta / np.abs(o1)",
        "error = np.abs(value - e2) + delta / np.abs(o1)",
        "one-sided roundoff bound /10: noise matched to a side, bugs excused as kinks",
    ),
    M(
        "S7",
        "schemes.py",
        "return (theta[:, None] + offsets) - theta[:, None]",
        "return offsets",
        "steps not representable: each difference carries one more rounding error",
    ),
    M(
        "S8",
        "schemes.py",
        "return float(machine_eps ** (1 / 3))",
        "return float(machine_eps ** (1 / 2))",
        "the forward-difference step for a central scheme: larger truncation error",
    ),
    M(
        "S9",
        "schemes.py",
        "error = 8 * np.finfo(np.float64).eps * np.abs(value)",
        "error = 0.0 * np.abs(value)",
        "the complex step claims no roundoff at all: tighter tolerances",
    ),
    # ---------------------------------------------------------------- noise.py
    M(
        "N1",
        "noise.py",
        "REPEATS = 3",
        "REPEATS = 1",
        "the base point is evaluated once: a drifting loss is not caught before any step",
    ),
    M(
        "N2",
        "noise.py",
        "return max(roundoff, 2 * measured, spread, noise or 0.0)",
        "return max(roundoff, measured, spread, noise or 0.0)",
        "the measured noise's bound halved: correct gradients of noisy losses fail",
    ),
    M(
        "N3",
        "noise.py",
        "return max(roundoff, 2 * measured, spread, noise or 0.0)",
        "return max(roundoff, 2 * measured, spread)",
        "noise= is ignored in the error model: a noisy loss's correct gradient fails",
    ),
    M(
        "N4",
        "noise.py",
        "else 32 * EPS64 * max(abs(j0), 1e-300)",
        "else 1e6 * EPS64 * max(abs(j0), 1e-300)",
        "a loss that changes by 1e-10 relative between calls passes as deterministic",
    ),
    M(
        "N5",
        "noise.py",
        "if abs(before - after[0]) <= allowed or max(after) - min(after) > allowed:",
        "if True:",
        "a grad() that changes the loss is not named (a generic nondeterminism error)",
    ),
    M(
        "N6",
        "noise.py",
        "spread = max(base.spread, abs(again - base.j0))",
        "spread = base.spread",
        "the closing determinism check ignores the value it took",
    ),
    M(
        "N7",
        "noise.py",
        "if len(steps) >= 2 and (all(d > 0 for d in steps) or all(d < 0 for d in steps)):",
        "if False:",
        "a loss that drifts at every call is blamed on a random draw",
    ),
    M(
        "N8",
        "noise.py",
        "if spread <= ORDER_ONLY * eps * max(abs(j0), TINY64):",
        "if spread <= ORDER_ONLY * max(abs(j0), TINY64):",
        "differences of a few units of roundoff are not told from a draw's",
    ),
    # ---------------------------------------------------------------- settle.py
    M(
        "Z1",
        "settle.py",
        "rows = rows[still & quiet]",
        "rows = rows[still & quiet & False]",
        "one smaller step only: exp(1e7 w) at w ~ 1e-8 is judged on an unsettled estimate",
    ),
    M(
        "Z2",
        "settle.py",
        "return np.flatnonzero(unsettled | moved), level, before",
        "return np.flatnonzero(unsettled), level, before",
        "a wrong verdict is not confirmed at a smaller step: sin(x) at x ~ 1e8 fails",
    ),
    M(
        "Z3",
        "settle.py",
        "unsettled = _unsettled(g, first, judged) & (_flagged(judged) | (weak & ~near_minimum))",
        "unsettled = _unsettled(g, first, judged) & _flagged(judged)",
        "a pass on a huge error bound stands: a sign-flipped gradient of sin(1e6 x) passes",
    ),
    M(
        "Z4",
        "settle.py",
        "unsettled = _unsettled(g, first, judged) & (_flagged(judged) | (weak & ~near_minimum))",
        "unsettled = _unsettled(g, first, judged) & (_flagged(judged) | weak)",
        "a pass at an exact minimum is re-judged at small steps on the base point's noise",
    ),
    M(
        "Z5",
        "settle.py",
        "_give_up(out, rows[still & ~quiet & shaky[rows]])",
        "pass",
        "an element whose estimates never settle keeps an unsettled wrong or kink verdict",
    ),
    M(
        "Z6",
        "settle.py",
        "truncation = 4 / 3 * np.abs(judged.numerical[rows] - d_half)",
        "truncation = 0 * np.abs(judged.numerical[rows] - d_half)",
        "a user's eps= gets no allowance for its truncation: tanh at eps=1e-2 fails",
    ),
    # ----------------------------------------------------------------- edges.py
    M(
        "Y1",
        "edges.py",
        "for _ in range(SHRINKS):",
        "for _ in range(0):",
        "a parameter at its loss's domain edge (sqrt at 1e-10) is refused, not checked",
    ),
    M(
        "Y2",
        "edges.py",
        "if bad.size:  # the loss's own error, at the smallest step, names the point",
        "if False:",
        "a loss NaN at every step is judged on NaN values instead of naming its point",
    ),
    # ------------------------------------------------------------ precision.py
    M(
        "P1",
        "precision.py",
        "candidates = [level for level in LEVELS if level.eps >= start.eps]",
        "candidates = [start]",
        "the precision ladder stops at the return type: a float32 loss is judged as float64",
    ),
    M(
        "P2",
        "precision.py",
        "return max(found, grid, key=lambda level: level.eps)",
        "return found",
        "values on float16's grid are not recognised: a float16 loss judged too finely",
    ),
    M(
        "P3",
        "precision.py",
        "NOISE_IN_ULPS = 64.0",
        "NOISE_IN_ULPS = 1e9",
        "float32 noise counts as float64's: a float32 loss averaged in float64 judged too finely",
    ),
    M(
        "P4",
        "precision.py",
        "vectors = round_to(theta + vectors, grid) - theta",
        "vectors = vectors",
        "noise-table steps not representable at the candidate precision",
    ),
    M(
        "P5",
        "precision.py",
        "sigmas.append(largest * sqrt(total / len(listed) / GAMMA[k]))",
        "sigmas.append(largest * sqrt(total / len(listed)))",
        "the noise is overestimated 4-30x: small bugs pass, checks read inconclusive",
    ),
    M(
        "P6",
        "precision.py",
        "gamma = comb(2 * k, k)",
        "gamma = 1",
        "the same, for losses beyond 1e300 only: sensitivity depends on the loss's units",
    ),
    # ------------------------------------------------------------ gradients.py
    M(
        "G1",
        "gradients.py",
        "same = gblock.shape == block.shape or (block.size == 1 and gblock.size == 1)",
        "same = gblock.shape == block.shape",
        "a (1,) gradient for a scalar parameter is refused",
    ),
    M(
        "G2",
        "gradients.py",
        "return max((e for e in found if e is not None), default=float(np.finfo(np.float64).eps))",
        "return min((e for e in found if e is not None), default=float(np.finfo(np.float64).eps))",
        "a gradient with float32 and float64 blocks is judged at float64: false alarms",
    ),
    M(
        "G3",
        "gradients.py",
        "out = grad(copy.deepcopy(params))",
        "out = grad(params)",
        "a backprop that writes into its arguments changes the caller's parameters",
    ),
    M(
        "G4",
        "gradients.py",
        "if not np.all(np.isfinite(gflat)):",
        "if False:",
        "a NaN in the gradient is judged (fail) instead of refused with where it is",
    ),
    # ----------------------------------------------------------------- tree.py
    M(
        "T1",
        "tree.py",
        "return tuple(reversed(out))",
        "return tuple(out)",
        "element indices reported reversed: W[1, 3] where W[3, 1] is wrong",
    ),
    M(
        "T2",
        "tree.py",
        "readonly.flags.writeable = False",
        "pass",
        "a loss that writes into its parameters corrupts the check's base point",
    ),
    # ------------------------------------------------------------- evaluate.py
    M(
        "E1",
        "shifts.py",
        "np.add(scratch, theta, out=out)",
        "np.subtract(theta, scratch, out=out)",
        "probe directions walk the wrong way: every probe's estimate has the wrong sign",
    ),
    M(
        "E5",
        "evaluate.py",
        "work[span] = self.theta[span]",
        "pass",
        "a probe's shift stays in the evaluator's work buffer: later probes start elsewhere",
    ),
    M(
        "E2",
        "evaluate.py",
        "points[rows, cols] = self.theta[cols]",
        "pass",
        "batched evaluations leave shifts behind: later rows evaluate the wrong points",
    ),
    M(
        "E3",
        "evaluate.py",
        "if not _finite(scalar):",
        "if False:",
        "a loss returning NaN is judged instead of refused with where it happened",
    ),
    M(
        "E4",
        "calls.py",
        "if not np.any(values.imag):",
        "if False:",
        "scheme='complex' on a loss that drops the imaginary part reads every gradient 0",
    ),
    # ------------------------------------------------------------- diagnose.py
    M(
        "D1",
        "diagnose.py",
        "SIGN = 0.01",
        "SIGN = 0.5",
        "sign-flip window widened: a -0.7x gradient reads 'wrong sign'",
    ),
    M(
        "D2",
        "diagnose.py",
        "FEW = 3",
        "FEW = 10",
        "'a few elements' loosened: 7 scattered wrong elements read as an indexing bug",
    ),
    M(
        "D3",
        "diagnose.py",
        "EXPLAINED = 0.05",
        "EXPLAINED = 0.5",
        "a pattern that explains half the error is named (a factor for a one-element bug)",
    ),
    M(
        "D4",
        "diagnose.py",
        "return size > 0.0 and float(np.linalg.norm(g)) <= 1e-12 * size",
        "return size > 0.0 and float(np.linalg.norm(g)) <= 1e-2 * size",
        "a gradient 100x too small is called 'zero' (detached) instead of a factor",
    ),
    M(
        "D5",
        "diagnose.py",
        "turned = case.g.reshape(case.shape).T.ravel()",
        "turned = case.g",
        "a transposed gradient is never named",
    ),
    M(
        "D6",
        "diagnose.py",
        "if len(case.wrong) >= 2 and _fitted_scale(case) is not None:",
        "if False:",
        "a doubled gradient that is zero in most elements reads as a few wrong elements",
    ),
    M(
        "D7",
        "diagnose.py",
        "if m >= 2 and abs(value - m) < 0.01 * m:",
        "if m >= 2 and abs(value - m) < 0.5 * m:",
        "a factor of 2.4 gets the hint 'a missing 1/m, if the batch holds m = 2'",
    ),
    M(
        "D8",
        "diagnose.py",
        "if c == 0.0 or not math.isfinite(coefficient) or not case.explains(missing - c * theta):",
        "if True:",
        "a missing L2 term is never named",
    ),
    M(
        "D9",
        "diagnose.py",
        "ENERGY = 0.99",
        "ENERGY = 0.5",
        "a block with a few large and many small errors reads as 'a few elements'",
    ),
    # --------------------------------------------------------------- blocks.py
    M(
        "B1",
        "blocks.py",
        "signal = max(rms(n, squared[1]), rms(g, squared[0]), floor)",
        "signal = max(rms(n, squared[1]), rms(g, squared[0]))",
        "inconclusive floor dropped: a block whose derivatives are ~0 reads inconclusive",
    ),
    M(
        "B2",
        "blocks.py",
        "INCONCLUSIVE_RATIO = 0.1",
        "INCONCLUSIVE_RATIO = 10.0",
        "a check whose error bound exceeds the gradient passes instead of inconclusive",
    ),
    M(
        "B3",
        "blocks.py",
        'if status == "pass" and unclear:',
        "if False:",
        "elements at an unresolvable kink pass silently instead of inconclusive",
    ),
    M(
        "B4",
        "blocks.py",
        "SLOPE_FLOOR = 1e-6",
        "SLOPE_FLOOR = 0.0",
        "at a minimum, noise is judged against a ~0 gradient: inconclusive, not pass",
    ),
    M(
        "B5",
        "blocks.py",
        'return tuple(b.name for b in reversed(blocks) if b.status == "fail")',
        'return tuple(b.name for b in blocks if b.status == "fail")',
        "suspects earliest first: the block where backprop's error arose is not first",
    ),
    M(
        "B6",
        "blocks.py",
        'if b.status != "fail" and b.difference > tol',
        'if b.status != "fail"',
        "tol= fails every block, not the blocks above it",
    ),
    M(
        "B7",
        "blocks.py",
        "worst_k = int(err.argmax()) if err.size else 0",
        "worst_k = int(err.argmin()) if err.size else 0",
        "worst_index names the best element",
    ),
    # ---------------------------------------------------------------- probe.py
    M(
        "R1",
        "probe.py",
        "SAME_RATIO = 1e-2",
        "SAME_RATIO = 1.0",
        "one wrong element reads as a scaled block: not bisected, maybe not named",
    ),
    M(
        "R2",
        "probe.py",
        "WIDE = 16",
        "WIDE = 2",
        "three wrong elements read as 'wrong throughout': sampled, not named",
    ),
    M(
        "R3",
        "probe.py",
        "if not left.wrong or abs(right_error) > right_tolerance:",
        "if not left.wrong:",
        "bisection stops at the left half: a second wrong element is not named",
    ),
    M(
        "R4",
        "probe.py",
        "return Signs.draw(self.rng, size)",
        "return Signs(np.full(-(-size // 8), 255, np.uint8), 0, size)",
        "all-plus directions: two errors that cancel are never seen",
    ),
    M(
        "R5",
        "probe.py",
        "if (judged.wrong[0] or judged.kink[0]) and not _carries(",
        "if judged.wrong[0] and not _carries(",
        "a probe across a kink is judged on the central pair alone",
    ),
    M(
        "R7",
        "probe.py",
        "kinked = real.kink or node.kink or any(p.kink for p in made)",
        "kinked = real.kink or any(p.kink for p in made)",
        "a part wrong by subtraction past a kink is unresolved: a right layer with ReLU "
        "inputs at 0 fails in probe mode",
    ),
    M(
        "R8",
        "probe.py",
        "if node.size - half > 1 and abs(right_error) > CARRIES * right_tolerance:",
        "if False:",
        "every right half probed: bisection costs twice the evaluations it needs",
    ),
    M(
        "R6",
        "probe.py",
        "self.cost = self.steps.size",
        "self.cost = 2",
        "a probe is budgeted at 2 evaluations though refining costs 4: budgets overrun",
    ),
    # --------------------------------------------------------------- screen.py
    M(
        "Q1",
        "screen.py",
        "return bool(np.all(agree & (tol <= SHARE * terms.largest) & ~kinked))",
        "return bool(np.all(agree))",
        "the screen clears wherever the estimate agrees within its tolerance, however large "
        "that tolerance and whatever kink shows",
    ),
    M(
        "Q3",
        "screen.py",
        "largest[largest == 0] = np.max(largest, initial=0.0)",
        "pass",
        "a block the loss does not depend on is never cleared: fast mode runs the full check",
    ),
    M(
        "Q4",
        "screen.py",
        "return bool(np.all(floor <= SHARE * self.largest))",
        "return True",
        "a gradient the noise model already rules out is evaluated anyway: fast mode pays the "
        "screen's call, then the full check",
    ),
    M(
        "Q5",
        "screen.py",
        "roundoff = 3 * self.noise(magnitude) / STEP",
        "roundoff = 30 * self.noise(magnitude) / STEP",
        "the noise floor set above the judge's own bound: right gradients the screen would "
        "clear go to the full check unevaluated",
    ),
    # -------------------------------------------------------- probe_verdict.py
    M(
        "V1",
        "probe_verdict.py",
        'return max((p.tolerance for p in entry.probes), default=float("inf"))',
        'return max((p.tolerance for p in entry.probes), default=float("inf")) / 30',
        "probe's stated sensitivity 30x finer than the probes can see",
    ),
    M(
        "V2",
        "probe_verdict.py",
        "return float(0.5**rounds) if rounds else 1.0",
        "return float(0.25**rounds) if rounds else 1.0",
        "the miss bound claims 4^-rounds",
    ),
    M(
        "V3",
        "probe_verdict.py",
        "elif entry.probes and size > 0 and rms(t) > INCONCLUSIVE_RATIO * size:",
        "elif False:",
        "probes too noisy to judge pass instead of inconclusive",
    ),
    M(
        "V4",
        "probe_verdict.py",
        "u = sign * max(abs(float(ctx.theta[i])), 1.0)",
        "u = max(abs(float(ctx.theta[i])), 1.0)",
        "a found element's numerical value shown with the wrong sign (half the time)",
    ),
    M(
        "V5",
        "probe_verdict.py",
        'if result.status != "fail":  # the sample missed what the probes saw',
        "if False:",
        "a block the probes found wrong passes when its sample misses the bug",
    ),
    M(
        "V6",
        "probe_verdict.py",
        "out[e.block.name] = thresholds[e.block.name] / max(largest or whole, 1e-300)",
        "out[e.block.name] = thresholds[e.block.name] / max(largest, 1e-300)",
        "a zero-gradient block's stated sensitivity reads ~1e291",
    ),
    # ---------------------------------------------------------- coordinates.py
    M(
        "K1",
        "coordinates.py",
        "_confirm_kinks(ctx, indices[undecided], offsets[undecided], values, second.kink)",
        "pass",
        "kink re-evaluation removed: a one-off glitch is excused as a kink",
    ),
    M(
        "K2",
        "coordinates.py",
        "delta[rows] = np.maximum(delta[rows], noise_along(ctx, indices[rows], offsets[rows, 0]))",
        "pass",
        "stationary-point noise removed: correct gradients at a minimum fail",
    ),
    M(
        "K3",
        "coordinates.py",
        "STATIONARY = 1e-3",
        "STATIONARY = 0.0",
        "no coordinate counts as near a stationary point: correct gradients there fail",
    ),
    M(
        "K4",
        "coordinates.py",
        "undecided = (judged.wrong | judged.kink).nonzero()[0]",
        "undecided = judged.wrong.nonzero()[0]",
        "a kink seen by the central pair is judged without Richardson's points",
    ),
    M(
        "K5",
        "coordinates.py",
        "fits = room // worst",
        "fits = room // cost",
        "an evaluation budget leaves no room for refinement: budgets overrun",
    ),
    # ---------------------------------------------------------------- check.py
    M(
        "C1",
        "check.py",
        "confirm_deterministic(evaluator, base, noise)",
        "pass",
        "the closing determinism check is skipped: a loss that drifts later is blamed",
    ),
    M(
        "C2",
        "check.py",
        "grad_eps=max(grad_eps, base.level.eps, params_precision(layout)),",
        "grad_eps=grad_eps,",
        "float32 params or a float32 loss: the gradient's rounding is judged at float64",
    ),
    M(
        "C3",
        "check.py",
        'tol_judges = None if "near_zero" in outcome.extra else tol',
        "tol_judges = tol",
        "at a minimum, tol= judges noise over noise: a correct gradient fails",
    ),
    M(
        "C4",
        "check.py",
        'adaptive=scheme == "auto" and eps is None,',
        "adaptive=False,",
        "the default check costs 4 evaluations per coordinate, not 2",
    ),
    # -------------------------------------------------------------- context.py
    M(
        "X1",
        "context.py",
        "offsets = round_to(theta[:, None] + offsets, self.level) - theta[:, None]",
        "offsets = offsets",
        "representable-steps rounding removed: a float32 loss sees other steps than assumed",
    ),
    M(
        "X2",
        "context.py",
        "return max(1e-8, 100 * self.machine_eps)",
        "return max(1e-6, 100 * self.machine_eps)",
        "relative slack 1e-6: a bug of 1e-6 relative in one element passes",
    ),
)


def verify(root: Path, mutants: tuple[Mutant, ...]) -> None:
    """Every original occurs exactly once in its file, on one line; every mutant compiles."""
    problems = []
    ids = [m.id for m in mutants]
    if len(set(ids)) != len(ids):
        problems.append("duplicate mutant ids")
    for m in mutants:
        path = root / ENGINE / m.file
        if not path.exists():
            problems.append(f"{m.id}: {path} does not exist")
            continue
        text = path.read_text()
        count = text.count(m.original)
        if "\n" in m.original or "\n" in m.replacement:
            problems.append(f"{m.id}: a mutation must stay on one line")
        elif count != 1:
            problems.append(f"{m.id}: {m.original!r} occurs {count} times in {m.file} (expected 1)")
        else:
            try:
                compile(text.replace(m.original, m.replacement), str(path), "exec")
            except SyntaxError as error:
                problems.append(f"{m.id}: the mutated {m.file} does not compile: {error}")
    if problems:
        sys.exit("mutation_audit: the mutants do not match the source:\n  " + "\n  ".join(problems))


def copy_repository(into: Path) -> Path:
    """A copy of what the tests need, without caches, virtual environments or git."""
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache", "*.pyc")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore)
        else:
            shutil.copy2(source, into / name)
    return into


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[str, str, float]:
    """Run the subset in ``copy``: ("passed" | "failed" | "timeout", first failure, seconds)."""
    shutil.rmtree(copy / ".hypothesis", ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(copy / "src"), PYTHONDONTWRITEBYTECODE="1")
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, *PYTEST, *tests],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timeout", f"(no result within {timeout:.0f} s)", time.perf_counter() - started
    seconds = time.perf_counter() - started
    if done.returncode == 0:
        return "passed", "", seconds
    for line in done.stdout.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return "failed", line.split(" - ", 1)[0], seconds
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    return "failed", f"(pytest exit {done.returncode}: {tail[0][:80]})", seconds


def check_import(copy: Path) -> None:
    """The copy's gradproof is the one the tests import, not the working tree's."""
    env = dict(os.environ, PYTHONPATH=str(copy / "src"), PYTHONDONTWRITEBYTECODE="1")
    found = subprocess.run(
        [sys.executable, "-c", "import gradproof; print(gradproof.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"mutation_audit: the tests would import {found}, not the copy's gradproof")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated mutant ids (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    args = parser.parse_args()
    verify(ROOT, MUTANTS)
    chosen = MUTANTS
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m.id for m in MUTANTS})
        if unknown:
            sys.exit(f"mutation_audit: --only={args.only}: no mutant {unknown}")
        chosen = tuple(m for m in MUTANTS if m.id in wanted)
    if args.list:
        for m in chosen:
            print(f"{m.id:4} {m.file:17} {m.effect}\n     - {m.original}\n     + {m.replacement}")
        return
    tests = [t for t in TESTS if (ROOT / t).exists()]
    missing = sorted(set(TESTS) - set(tests))
    print(f"tests: {' '.join(tests)}")
    if missing:
        print(f"(not present: {' '.join(missing)})")
    with tempfile.TemporaryDirectory(prefix="gradproof-mutants-") as tmp:
        copy = copy_repository(Path(tmp))
        check_import(copy)
        outcome, first, seconds = run_tests(copy, tests, args.timeout)
        if outcome != "passed":
            sys.exit(f"mutation_audit: the unmutated copy does not pass: {first}")
        print(f"unmutated: passed in {seconds:.0f} s\n")
        print(f"{'id':4} {'file':17} {'result':8} {'s':>4}  first failing test (killed) or effect")
        rows = []
        for m in chosen:
            path = copy / ENGINE / m.file
            original = path.read_text()
            path.write_text(original.replace(m.original, m.replacement))
            try:
                outcome, first, seconds = run_tests(copy, tests, args.timeout)
            finally:
                path.write_text(original)
            result = "survived" if outcome == "passed" else "killed"
            rows.append((m, result))
            shown = first if result == "killed" else m.effect
            print(f"{m.id:4} {m.file:17} {result:8} {seconds:4.0f}  {shown}", flush=True)
    killed = sum(result == "killed" for _, result in rows)
    print(
        f"\n{len(rows)} mutants: {killed} killed, {len(rows) - killed} survived; "
        f"kill rate {killed / max(len(rows), 1):.1%}"
    )
    for m, result in rows:
        if result == "survived":
            print(f"  survived {m.id} ({m.file}): {m.original!r} -> {m.replacement!r}")


if __name__ == "__main__":
    main()
