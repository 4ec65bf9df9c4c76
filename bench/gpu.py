"""On a GPU: gradproof.torch.check_module against torch.autograd.gradcheck, on the device.

Two workloads, the model's parameters and data on ``--device`` (default ``cuda``):

- a 100-128-128-1 tanh MLP (29,569 parameters, batch 64, float64): gradproof's full
  check (``check_module``, perturbations batched with ``torch.func.vmap``) against
  ``torch.autograd.gradcheck`` on the same parameters through ``functional_call``;
- Linear(10000 x 10000) -> tanh -> Linear (100M float32 parameters, batch 8, checked in
  float64): probe mode, one weight multiplied by 1.001 in a custom backward, and whether
  it is named.

Where no CUDA device is present the script says so and exits 0 (``--device cpu --small``
runs the same code on the CPU at 1/100 of the sizes, to try it)::

    python bench/gpu.py                 # on a machine with a GPU
    python bench/gpu.py --device cpu --small
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from typing import Any

import torch
from torch.func import functional_call

import gradproof.torch


class _Planted(torch.autograd.Function):
    """``x @ w.T`` whose backward multiplies one weight's gradient by 1.001."""

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w.T

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        x, w = ctx.saved_tensors
        gw = g.T @ x
        gw[1, 2] *= 1.001
        return g @ w, gw


class _Wide(torch.nn.Module):
    def __init__(self, n: int, device: str) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(n, n, generator=gen) / n**0.5
        self.w = torch.nn.Parameter(w.to(device))
        self.head = torch.nn.Linear(n, 1, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(_Planted.apply(x, self.w)))


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target) ** 2).mean()


def full_check(device: str, small: bool) -> list[dict[str, Any]]:
    sizes = (10, 16, 16, 1) if small else (100, 128, 128, 1)
    layers: list[torch.nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers[:-1]).to(device=device, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(64, sizes[0], generator=gen, dtype=torch.float64).to(device)
    y = torch.randn(64, 1, generator=gen, dtype=torch.float64).to(device)
    n = sum(p.numel() for p in model.parameters())
    started = time.perf_counter()
    report = gradproof.torch.check_module(model, _mse, x, y)
    mine = time.perf_counter() - started
    names = [k for k, _ in model.named_parameters()]
    leaves = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

    def fn(*values: torch.Tensor) -> torch.Tensor:
        return _mse(functional_call(model, dict(zip(names, values, strict=True)), (x,)), y)

    started = time.perf_counter()
    torch.autograd.gradcheck(fn, leaves)
    theirs = time.perf_counter() - started
    return [
        {
            "workload": f"MLP {n:,}",
            "tool": "gradproof check_module",
            "seconds": mine,
            "verdict": report.status,
        },
        {
            "workload": f"MLP {n:,}",
            "tool": "torch gradcheck",
            "seconds": theirs,
            "ratio": theirs / mine,
        },
    ]


def probe(device: str, small: bool) -> dict[str, Any]:
    n = 1000 if small else 10_000
    model = _Wide(n, device)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, n, generator=gen).to(device), torch.randn(8, 1, generator=gen).to(device)
    started = time.perf_counter()
    report = gradproof.torch.check_module(model, _mse, x, y, mode="probe")
    seconds = time.perf_counter() - started
    wrong = [(b.name, tuple(e)) for b in report.blocks.values() for e in b.wrong_elements]
    return {
        "workload": f"probe {n * n + n + 1:,}",
        "tool": "gradproof probe",
        "seconds": seconds,
        "named": wrong == [("w", (1, 2))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="1/100 of the sizes, to try it")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device here (torch.cuda.is_available() is False)")
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = [*full_check(args.device, args.small), probe(args.device, args.small)]
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
