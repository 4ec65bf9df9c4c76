"""Two measurements behind the drop-in's notes in docs/benchmarks.md, one process, one thread.

``--part vmap``: ``gradproof.torch.gradcheck`` against ``torch.autograd.gradcheck`` on the
same flat-parameter tanh MLP written with torch ops (so vmap can run it), 100-128-128-1 by
default (29,569 parameters), batch 64, float64; also the time of one call of the function
looped and vmapped, per point. ``--part crossover``: ``gradproof.torch.gradcheck`` in full
and in probe mode on a tanh/clamp function from 256 to 8,192 real coordinates (where fast
mode's threshold comes from)::

    python bench/dropin.py --part vmap          # about a minute
    python bench/dropin.py --part crossover
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch.func import vmap

import gradproof.torch


def _mlp(sizes: tuple[int, ...]) -> tuple[Any, torch.Tensor]:
    shapes: list[tuple[int, ...]] = []
    for a, b in itertools.pairwise(sizes):
        shapes += [(b, a), (b,)]
    gen = torch.Generator().manual_seed(0)
    n = sum(int(np.prod(s)) for s in shapes)
    theta = (torch.randn(n, generator=gen, dtype=torch.float64) * 0.3).requires_grad_()
    x = torch.randn(64, sizes[0], generator=gen, dtype=torch.float64)
    y = torch.randn(64, 1, generator=gen, dtype=torch.float64)

    def f(t: torch.Tensor) -> torch.Tensor:
        h, start = x, 0
        for i, shape in enumerate(shapes[::2]):
            k, b = int(np.prod(shape)), shape[0]
            w, bias = t[start : start + k].reshape(shape), t[start + k : start + k + b]
            start += k + b
            h = h @ w.T + bias
            h = torch.tanh(h) if i < len(shapes) // 2 - 1 else h
        return ((h - y) ** 2).mean()

    return f, theta


def part_vmap(sizes: tuple[int, ...]) -> None:
    f, theta = _mlp(sizes)
    for name, run in (
        ("torch.autograd.gradcheck", lambda: torch.autograd.gradcheck(f, (theta,))),
        ("gradproof.torch.gradcheck", lambda: gradproof.torch.gradcheck(f, (theta,))),
    ):
        start = time.perf_counter()
        run()
        print(f"{name}: {time.perf_counter() - start:.2f} s ({theta.numel():,} parameters)")
    points = theta.detach().repeat(64, 1)
    with torch.no_grad():
        start = time.perf_counter()
        for row in points:
            f(row)
        looped = (time.perf_counter() - start) / len(points)
        start = time.perf_counter()
        vmap(f)(points)
        batched = (time.perf_counter() - start) / len(points)
    print(f"one point: looped {looped * 1e6:.0f} us, vmapped {batched * 1e6:.0f} us")


def part_crossover() -> None:
    def f(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.tanh(a * b).sum(0) + torch.clamp(a, -0.5, 0.5)

    for n in (256, 512, 1024, 2048, 4096, 8192):
        gen = torch.Generator().manual_seed(n)
        a, b = (
            torch.randn(n // 8, 4, generator=gen, dtype=torch.float64).requires_grad_()
            for _ in range(2)
        )
        times = {}
        for mode in ("full", "probe"):

            def run(mode: str = mode, inputs: tuple[torch.Tensor, ...] = (a, b)) -> None:
                gradproof.torch.gradcheck(f, inputs, mode=mode, raise_exception=False)

            run()
            runs = []
            for _ in range(5):
                start = time.perf_counter()
                run()
                runs.append(time.perf_counter() - start)
            times[mode] = statistics.median(runs) * 1e3
        print(f"{n:5d} coordinates: full {times['full']:.1f} ms, probe {times['probe']:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=("vmap", "crossover"), required=True)
    parser.add_argument("--sizes", default="100,128,128,1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if args.part == "vmap":
        part_vmap(tuple(int(s) for s in args.sizes.split(",")))
    else:
        part_crossover()


if __name__ == "__main__":
    main()
