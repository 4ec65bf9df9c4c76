"""The drop-in's fixed cost per check: a few small float64 samples, interleaved with torch's.

For each sample (add, mul, sin, matmul, sum, a two-output function, on tensors of a few
elements), ``torch.autograd.gradcheck(fast_mode=True)`` and
``gradproof.torch.gradcheck(fast_mode=True)`` are taken in turn, on one thread, for
``--repeats`` rounds after a warm-up; it prints each one's median and their ratio:

    OMP_NUM_THREADS=1 python bench/fixedcost.py --repeats 200

``--profile NAME`` runs gradproof's check of that sample under cProfile instead and
prints the top of the profile (cumulative time).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import gradproof.torch


def _leaf(*shape: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()


def samples() -> dict[str, tuple[Callable[..., Any], tuple[torch.Tensor, ...]]]:
    """Typical small op_db-like samples: a function and its inputs."""
    return {
        "add": (torch.add, (_leaf(3, 3), _leaf(3, 3, seed=1))),
        "mul": (torch.mul, (_leaf(5), _leaf(5, seed=1))),
        "sin": (torch.sin, (_leaf(5),)),
        "matmul": (torch.matmul, (_leaf(3, 4), _leaf(4, 2, seed=1))),
        "sum": (torch.sum, (_leaf(4, 3),)),
        "split": (lambda x: torch.split(x, 2), (_leaf(5),)),
    }


def _timed(call: Callable[[], Any], times: list[float]) -> None:
    """Run ``call`` once and append its wall-clock seconds to ``times``."""
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)


def compare(repeats: int) -> None:
    """Each sample's median time, torch's fast mode against gradproof's, interleaved."""
    print(f"{'sample':8} {'torch ms':>9} {'gradproof ms':>13} {'ratio':>6}")
    ratios = []
    for name, (fn, inputs) in samples().items():
        calls = {
            "torch": lambda fn=fn, inputs=inputs: torch.autograd.gradcheck(
                fn, inputs, fast_mode=True
            ),
            "gradproof": lambda fn=fn, inputs=inputs: gradproof.torch.gradcheck(
                fn, inputs, fast_mode=True
            ),
        }
        times: dict[str, list[float]] = {k: [] for k in calls}
        for call in calls.values():
            call()
        for _ in range(repeats):
            for key, call in calls.items():
                _timed(call, times[key])
        t, g = (statistics.median(times[k]) * 1e3 for k in ("torch", "gradproof"))
        ratios.append(g / t)
        print(f"{name:8} {t:9.3f} {g:13.3f} {g / t:6.2f}")
    print(f"median ratio {statistics.median(ratios):.2f}")


def profile(name: str, repeats: int, top: int) -> None:
    """gradproof's check of sample ``name`` under cProfile, ``repeats`` times."""
    fn, inputs = samples()[name]
    gradproof.torch.gradcheck(fn, inputs, fast_mode=True)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        gradproof.torch.gradcheck(fn, inputs, fast_mode=True)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--profile", default=None, help="a sample's name: profile it")
    parser.add_argument("--top", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.profile:
        profile(args.profile, args.repeats, args.top)
    else:
        compare(args.repeats)


if __name__ == "__main__":
    main()
