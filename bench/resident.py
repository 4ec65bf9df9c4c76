"""check_module with its points made where the tensors live, against points built on the host.

``gradproof.torch.check_module`` shifts the model's own tensors in place (a coordinate
written and put back; a probe's direction made from its packed signs), with no point
built on the host (``gradproof/torch/_resident.py``). This script times that against
the host's way on the same check, in one process, the two taken in turn, best of
``--repeats``; the host's way is what the engine does for a loss without
``__gradproof_resident__`` (switched off here for the comparison only). Workloads, on
``--device`` (default cpu), one thread:

- probe mode on Linear(n x n) -> tanh -> Linear(n -> 1), batch 8, for each ``--sizes``
  (n^2 + 2n + 1 parameters, float32 model checked in float64);
- the full check of a 20-64-64-1 tanh MLP (5,569 parameters, batch 64), vmapped.

    .venv/bin/python bench/resident.py                     # 1M and 9M parameters
    .venv/bin/python bench/resident.py --sizes 1000 10000  # up to 100M (about 4 GB more)
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

import gradproof._engine.evaluate as evaluate
import gradproof.torch


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def compare(name: str, check: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Best time of ``check`` each way, the two taken in turn, and their verdicts."""
    opener = evaluate.open_resident
    best = {"resident": float("inf"), "host": float("inf")}
    verdicts: dict[str, str] = {}
    try:
        for _ in range(repeats):
            for way in best:
                evaluate.open_resident = opener if way == "resident" else (lambda *a: None)
                seconds, report = _timed(check)
                best[way] = min(best[way], seconds)
                verdicts[way] = report.status
    finally:
        evaluate.open_resident = opener
    return {
        "workload": name,
        "resident s": round(best["resident"], 3),
        "host s": round(best["host"], 3),
        "host / resident": round(best["host"] / best["resident"], 2),
        "verdicts": verdicts,
    }


def probe_workload(n: int, device: str) -> tuple[str, Callable[[], Any]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(n, n), torch.nn.Tanh(), torch.nn.Linear(n, 1))
    model = model.to(device)
    x, y = torch.randn(8, n, device=device), torch.randn(8, 1, device=device)
    size = sum(p.numel() for p in model.parameters())
    return f"probe {size:,}", lambda: gradproof.torch.check_module(
        model, torch.nn.functional.mse_loss, x, y, mode="probe", progress=False
    )


def full_workload(device: str) -> tuple[str, Callable[[], Any]]:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64)]
    model = torch.nn.Sequential(*layers, torch.nn.Tanh(), torch.nn.Linear(64, 1)).to(device)
    x, y = torch.randn(64, 20, device=device), torch.randn(64, 1, device=device)
    return "full 5,569", lambda: gradproof.torch.check_module(
        model, torch.nn.functional.mse_loss, x, y, progress=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    workloads = [full_workload(args.device), *(probe_workload(n, args.device) for n in args.sizes)]
    rows = []
    for name, check in workloads:
        rows.append(compare(name, check, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
