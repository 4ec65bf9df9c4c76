"""How long ``mode="probe"`` takes, and how much memory it adds, as the parameters grow.

One tanh layer ``J(W) = 0.5 * sum((tanh(X @ W) - Y)**2)`` with ``W`` of n x n float64
(N = n^2 parameters, a batch of 4 rows), its exact gradient with one element planted
wrong (x1.001, the largest one), checked by ``gradproof.check(..., mode="probe")``:

    .venv/bin/python bench/probe_scale.py                      # N = 1M and 10M
    .venv/bin/python bench/probe_scale.py --sizes 1e6 1e7 1e8  # and 100M (about 3 GB more)

Each size runs in a fresh process with one BLAS thread, ``--repeats`` times; the best time
is reported. Memory is measured in a separate run of its own under tracemalloc (numpy
reports its allocations to it): the peak of what the check allocated beyond the workload,
and that peak over the parameters' bytes (8 N). ``VmHWM`` is the process's peak resident
set during the check minus its resident set before it (the kernel's count, cross-check).
Set ``PYTHONPATH`` to measure another copy of gradproof (say, the committed one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _workload(size: int):  # type: ignore[no-untyped-def]
    import numpy as np

    n = round(size**0.5)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, n)) / np.sqrt(n)
    y = rng.standard_normal((4, n)) * 0.5
    w = rng.standard_normal((n, n))

    def loss(p):  # type: ignore[no-untyped-def]
        return 0.5 * float(np.sum((np.tanh(x @ p["W"]) - y) ** 2))

    a = np.tanh(x @ w)
    grad = x.T @ ((a - y) * (1.0 - a**2))
    planted = np.unravel_index(int(np.argmax(np.abs(grad))), grad.shape)
    grad[planted] *= 1.001
    return loss, {"W": w}, {"W": grad}, tuple(int(i) for i in planted)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def one(size: int, memory: bool) -> dict[str, object]:
    """One check of one size in this process: seconds or memory, and whether it named the bug."""
    import gradproof

    loss, params, grad, planted = _workload(size)
    n = params["W"].size
    phase: list[int] = []
    if memory:
        _measure_probe_phase(phase)
        with open("/proc/self/clear_refs", "w") as refs:  # reset VmHWM to the current RSS
            refs.write("5")
        rss = _rss_kib("VmRSS")
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    report = gradproof.check(loss, params, grad, mode="probe", seed=0)
    seconds = time.perf_counter() - started
    out: dict[str, object] = {"N": n, "seconds": seconds}
    if memory:
        peak = max(tracemalloc.get_traced_memory()[1], phase[0] if phase else 0) - base
        tracemalloc.stop()
        out["peak_bytes"] = peak
        out["ratio"] = peak / (8 * n)
        out["vmhwm_ratio"] = (_rss_kib("VmHWM") - rss) * 1024 / (8 * n)
        out["probe_ratio"] = phase[1] / (8 * n) if phase else float("nan")
    blocks = report.blocks.values()
    wrong = [tuple(e) for b in blocks for e in b.wrong_elements]
    out["named"] = wrong == [planted]
    out["passed"] = report.passed
    return out


def _measure_probe_phase(phase: list[int]) -> None:
    """Record in ``phase`` the check's peak before the probe mode starts (the noise
    measurement's), and what the probe mode alone adds over what it is handed (the
    check's flat copies of the parameters and the gradient, made before it starts)."""
    import gradproof._engine.check as check

    run = check.probe_mode

    def measured(ctx, *args):  # type: ignore[no-untyped-def]
        entry, before = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = run(ctx, *args)
        phase.extend([before, tracemalloc.get_traced_memory()[1] - entry])
        return result

    check.probe_mode = measured


def _child(size: int, memory: bool) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", str(size)] + (["--memory"] if memory else [])
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **THREADS}, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one(int(args.child), args.memory)))
        return
    print(
        "| N | best of | seconds | check's peak added | / params' bytes | VmHWM / params' "
        "bytes | probe phase / params' bytes | named |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        runs = [_child(int(size), memory=False) for _ in range(args.repeats)]
        mem = _child(int(size), memory=True)
        best = min(float(str(r["seconds"])) for r in runs)
        named = all(r["named"] for r in runs) and mem["named"]
        peak = float(str(mem["peak_bytes"])) / 2**20
        print(
            f"| {mem['N']:,} | {args.repeats} | {best:.2f} | {peak:,.0f} MiB | "
            f"{mem['ratio']:.2f}× | {mem['vmhwm_ratio']:.2f}× | {mem['probe_ratio']:.2f}× | "
            f"{'yes' if named else 'NO'} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
