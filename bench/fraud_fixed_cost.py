"""Time gradproof's full batched check of the notebook's network against the notebook's loop.

The fraud-detection network of the Gradient Checking notebook has 47 parameters, so a full
check is dominated by gradproof's fixed cost (the noise measurement, the judging, the
report) rather than by the loss. Both tools run interleaved in one process, each
``--repeats`` times after a warm-up, and the medians are printed with their ratio:

    python bench/fraud_fixed_cost.py [--repeats 200] [--planted] [--profile]

``--profile`` runs gradproof's check under cProfile instead and prints the top entries.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import _notebook_loop  # noqa: E402

import gradproof  # noqa: E402
from models import fraud_network  # noqa: E402


def tools(planted: bool) -> tuple[Any, Any]:
    """Two callables: gradproof's full batched check and the notebook's loop."""
    w = fraud_network()
    grad = w.gradient(planted)

    def gradproof_run() -> Any:
        return gradproof.check(w.batched_loss, w.params, grad, batched=True, progress=False)

    return gradproof_run, _notebook_loop(w, grad)


def timed(func: Any) -> float:
    """Seconds one call of ``func`` takes."""
    started = time.perf_counter()
    func()
    return time.perf_counter() - started


def compare(repeats: int, planted: bool) -> None:
    """Interleave both tools ``repeats`` times and print the medians in milliseconds."""
    ours, loop = tools(planted)
    for _ in range(5):
        ours(), loop()
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a.append(timed(ours))
        b.append(timed(loop))
    mine, theirs = statistics.median(a), statistics.median(b)
    print(f"gradproof full batched: {mine * 1e3:.3f} ms (median of {repeats})")
    print(f"notebook loop:          {theirs * 1e3:.3f} ms")
    print(f"ratio:                  {theirs / mine:.2f}x")


def profile(repeats: int, planted: bool) -> None:
    """Run gradproof's check ``repeats`` times under cProfile and print the costliest calls."""
    ours, _ = tools(planted)
    ours()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        ours()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--planted", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    (profile if args.profile else compare)(args.repeats, args.planted)


if __name__ == "__main__":
    main()
