"""gradproof.jax.check with its points made on the parameters' device, against host-built ones.

``gradproof.jax.check`` holds the base point on the parameters' device and makes each
point there (a coordinate shifted, a probe's direction built from its packed signs),
with no point built on the host (``gradproof/jax/_resident.py``). This script times that
against the host's way on the same check, in one process, the two taken in turn, best of
``--repeats``; the host's way is what the engine does for a loss without
``__gradproof_resident__`` (switched off here for the comparison only). Workloads, on
JAX's default backend, one thread (XLA's Eigen pool off unless ``XLA_FLAGS`` is set):

- probe mode on f(p) = mean((tanh(X @ W + b) @ v - y)^2), W n x n, X 8 x n, for each
  ``--sizes`` (n^2 + 2n parameters, float64);
- the full check of a 20-64-64-1 tanh MLP (5,568 parameters, batch 64).

``--always`` takes the device's way at every size (below ``CPU_SMALL`` coordinates the
check itself builds a CPU check's points on the host): the measurement behind that bound.

    OMP_NUM_THREADS=1 .venv/bin/python bench/jax_resident.py              # 1M and 9M
    OMP_NUM_THREADS=1 .venv/bin/python bench/jax_resident.py --always --sizes 10 30 60 100 300
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax
import jax.numpy as jnp
import numpy as np

import gradproof._engine.evaluate as evaluate
import gradproof.jax
from gradproof.jax import _resident


def compare(name: str, check: Callable[[], Any], repeats: int) -> dict[str, Any]:
    """Best time of ``check`` each way, the two taken in turn, and their verdicts."""
    opener = evaluate.open_resident
    best = {"resident": float("inf"), "host": float("inf")}
    verdicts: dict[str, str] = {}
    opened: list[bool] = []

    def spy(*args: Any) -> Any:
        resident = opener(*args)
        opened.append(resident is not None)
        return resident

    try:
        for _ in range(repeats):
            for way in best:
                evaluate.open_resident = spy if way == "resident" else (lambda *a: None)
                start = time.perf_counter()
                report = check()
                best[way] = min(best[way], time.perf_counter() - start)
                verdicts[way] = report.status
    finally:
        evaluate.open_resident = opener
    return {
        "workload": name,
        "resident s": round(best["resident"], 3),
        "host s": round(best["host"], 3),
        "host / resident": round(best["host"] / best["resident"], 2),
        "device's way taken": any(opened),  # else both took the host's (CPU_SMALL)
        "verdicts": verdicts,
    }


def _mlp(widths: list[int], batch: int, seed: int = 0) -> tuple[Callable[[Any], Any], dict]:
    """A tanh MLP's mean squared error, and its parameters (float64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, widths[0]))  # numpy: float64 inside the check
    y = rng.standard_normal(batch)
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        params[f"W{i}"] = rng.standard_normal((a, b)) / np.sqrt(a)
        params[f"b{i}"] = np.zeros(b)

    def f(p: dict) -> Any:
        h = x
        for i in range(len(widths) - 1):
            h = h @ p[f"W{i}"] + p[f"b{i}"]
            h = jnp.tanh(h) if i < len(widths) - 2 else h
        return jnp.mean((h[:, 0] - y) ** 2)

    return f, params


def probe_workload(n: int) -> tuple[str, Callable[[], Any]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, n))  # numpy: float64 inside the check
    y = rng.standard_normal(8)
    params = {"W": rng.standard_normal((n, n)) / np.sqrt(n), "b": np.zeros(n), "v": np.ones(n)}

    def f(p: dict) -> Any:
        return jnp.mean((jnp.tanh(x @ p["W"] + p["b"]) @ p["v"] / n - y) ** 2)

    size = n * n + 2 * n
    return f"probe {size:,}", lambda: gradproof.jax.check(f, params, mode="probe", progress=False)


def full_workload() -> tuple[str, Callable[[], Any]]:
    f, params = _mlp([20, 64, 64, 1], 64)
    size = sum(p.size for p in params.values())
    return f"full {size:,}", lambda: gradproof.jax.check(f, params, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--always", action="store_true", help="the device's way at every size")
    parser.add_argument("--no-full", action="store_true", help="skip the full check")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    if args.always:
        _resident.pays = lambda *a: True  # type: ignore[assignment]
    print(f"# {jax.default_backend()}, XLA_FLAGS={os.environ.get('XLA_FLAGS')}", flush=True)
    workloads = [] if args.no_full else [full_workload()]
    workloads += [probe_workload(n) for n in args.sizes]
    rows = []
    for name, check in workloads:
        rows.append(compare(name, check, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(rows, out, indent=1)


if __name__ == "__main__":
    main()
