"""Benchmark: gradproof.torch against torch.autograd.gradcheck on hand-written MLP layers.

Each workload is an MLP (tanh hidden layers, mean squared error, batch 64,
float64) built from a linear layer whose backward is written by hand as an
``autograd.Function``, checked once with the right backward and once with one
planted wrong element (``layer2.weight[3, 5]`` off by 1% of the block's largest
entry). gradproof runs ``gradproof.torch.check_module`` (vmap-batched); torch
runs ``torch.autograd.gradcheck`` on the parameters, through
``torch.func.functional_call``. torch's full check of the 92k-parameter MLP
takes minutes on 2 cores (two forward passes per parameter, one at a time), so
there it runs in ``fast_mode`` only, and gradproof in its sampled and probed
modes only (a full check is about 2 evaluations per parameter as well); the
ratio column compares with torch's full check where it ran, else with its fast
mode.

Run: ``python bench/bench_torch.py`` (prints a markdown table; under a minute
on 2 cores). torch runs with one thread: on a loaded 2-core machine, torch's
thread pool costs more than it gains for these small matrices.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
import warnings
from typing import Any

import torch
from _summary import gradproof_row
from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError
from torch.func import functional_call

import gradproof
import gradproof.torch

BATCH = 64
PLANTED = ("layer2.weight", (3, 5))
WORKLOADS = {"MLP 20-64-64-1": (20, 64, 64, 1), "MLP 100-256-256-1": (100, 256, 256, 1)}
TORCH_FULL_MAX_PARAMS = 20_000  # above this, torch's full gradcheck takes minutes


class LinearFn(torch.autograd.Function):
    """``x @ w.T + b`` with a hand-written backward; ``plant`` adds one wrong element to dw."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, plant: Any) -> torch.Tensor:
        return x @ w.T + b

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        x, w, _, plant = inputs
        ctx.save_for_backward(x, w)
        ctx.plant = plant

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> Any:
        x, w = ctx.saved_tensors
        dw = g.T @ x
        if ctx.plant is not None:
            dw = dw.clone()
            dw[ctx.plant] += 0.01 * dw.abs().max()
        return g @ w, dw, g.sum(0), None


class HandLinear(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int, gen: torch.Generator, plant: Any = None) -> None:
        super().__init__()
        weight = torch.randn(n_out, n_in, generator=gen, dtype=torch.float64) / n_in**0.5
        self.weight = torch.nn.Parameter(weight)
        self.bias = torch.nn.Parameter(0.1 * torch.randn(n_out, generator=gen, dtype=torch.float64))
        self.plant = plant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LinearFn.apply(x, self.weight, self.bias, self.plant)


class MLP(torch.nn.Module):
    def __init__(self, sizes: tuple[int, ...], planted: bool) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
            plant = PLANTED[1] if planted and f"layer{i}.weight" == PLANTED[0] else None
            self.add_module(f"layer{i}", HandLinear(n_in, n_out, gen, plant))
        self.depth = len(sizes) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.depth + 1):
            x = getattr(self, f"layer{i}")(x)
            if i < self.depth:
                x = torch.tanh(x)
        return x


def data(sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, sizes[0], generator=gen, dtype=torch.float64)
    return x, torch.randn(BATCH, sizes[-1], generator=gen, dtype=torch.float64)


def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((output - target) ** 2).sum(1).mean()


def run_gradproof(model: MLP, x: Any, y: Any, **options: Any) -> dict[str, Any]:
    started = time.perf_counter()
    report = gradproof.torch.check_module(model, loss_fn, x, y, **options)
    return gradproof_row(report, time.perf_counter() - started, PLANTED)


def run_torch(model: MLP, x: Any, y: Any, fast_mode: bool) -> dict[str, Any]:
    names = [n for n, _ in model.named_parameters()]
    leaves = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    calls = [0]

    def fn(*values: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return loss_fn(functional_call(model, dict(zip(names, values, strict=True)), (x,)), y)

    started = time.perf_counter()
    message = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.autograd.gradcheck(fn, leaves, fast_mode=fast_mode)
            verdict = "pass"
        except TorchGradcheckError as error:
            verdict, message = "fail", str(error)
    seconds = time.perf_counter() - started
    where = f"input {names.index(PLANTED[0])}"
    named = f"block only ({where} = {PLANTED[0]})" if where in message else "no"
    return {
        "seconds": seconds,
        "evaluations": calls[0],
        "verdict": verdict,
        "named": named,
        "miss": "not stated",
    }


def gradproof_configs(n: int) -> list[tuple[str, dict[str, Any]]]:
    configs: list[tuple[str, dict[str, Any]]] = []
    if n <= TORCH_FULL_MAX_PARAMS:  # a full check of 92k parameters takes about 6 minutes here
        configs += [
            ("gradproof full (default)", {}),
            ("gradproof full, central", {"scheme": "central"}),
        ]
    for mode in ("sample", "probe"):
        configs.append((f"gradproof {mode}", {"mode": mode}))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small workload only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, gradproof {gradproof.__version__}, {platform.machine()}, "
        f"{torch.get_num_threads()} torch thread; float64, batch {BATCH}\n"
    )
    print(
        "| workload | params | gradient | method | time (s) | × torch gradcheck "
        "| loss evaluations | verdict | planted element named | stated miss probability |"
    )
    print("|---|---:|---|---|---:|---:|---:|---|---|---|")
    workloads = list(WORKLOADS.items())[: 1 if args.quick else None]
    for workload, sizes in workloads:
        x, y = data(sizes)
        for planted in (False, True):
            model = MLP(sizes, planted)
            n = sum(p.numel() for p in model.parameters())
            rows: list[tuple[str, dict[str, Any]]] = []
            if n <= TORCH_FULL_MAX_PARAMS:
                rows.append(("torch gradcheck", run_torch(model, x, y, fast_mode=False)))
            rows.append(("torch gradcheck fast_mode", run_torch(model, x, y, fast_mode=True)))
            reference = rows[0][1]["seconds"]
            rows += [(label, run_gradproof(model, x, y, **o)) for label, o in gradproof_configs(n)]
            for label, r in rows:
                print(
                    f"| {workload} | {n:,} | {'1 wrong element' if planted else 'correct'} "
                    f"| {label} | {r['seconds']:.2f} | {r['seconds'] / reference:.2f} "
                    f"| {r['evaluations']:,} | {r['verdict']} | {r['named'] if planted else '–'} "
                    f"| {r['miss']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
