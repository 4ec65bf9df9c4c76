"""Benchmark: a full check of the 92k-parameter MLP, serial against a 2-worker Dask cluster.

The workload is the benchmarks' MLP 100-256-256-1 (``bench/models.py``: tanh
hidden layers, mean squared error, batch 64, float64; 91,905 parameters) with a
numpy loss and its exact numpy backprop, checked in full (every coordinate,
about 2 evaluations each) twice in one run: serially with ``gradproof.check``,
and with ``gradproof.check(..., executor=client.get_executor())`` on a
``distributed.LocalCluster`` of 2 worker processes (one thread each, bound to
127.0.0.1). The Dask report must be bit-identical to the serial one (every field
but the wall-clock time); the table says whether it is. The 5k MLP
(20-64-64-1) runs first, with the right gradient and with the planted bug (one
element of ``W1`` off by a relative 1e-3), so that the table also shows a
failing check found through Dask.

Every process uses one BLAS thread, the serial run as each worker, so the
comparison is one core against two. The workers run without Dask's default
``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``): with
it, glibc stops raising its mmap threshold, every temporary array over 128 KB is
mapped and unmapped afresh, and this loss costs about 1.4 ms per evaluation in a
worker instead of 0.8 ms. ``--dask-malloc-default`` keeps Dask's setting.

The CPU columns are the seconds the serial process, and the two workers
together, spent computing: on a machine shared with other work they show what
the wall-clock times cannot, that the Dask run does the same work.

Run: ``python bench/bench_dask.py`` (prints a markdown table; about 5 minutes on
2 cores). ``--quick`` leaves out the 92k MLP (seconds).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy is imported: one BLAS thread per process

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import dask  # noqa: E402
import distributed  # noqa: E402
import numpy as np  # noqa: E402

import gradproof  # noqa: E402
from gradproof._engine.parallel import dumps  # noqa: E402
from gradproof._engine.tree import flatten  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import workload  # noqa: E402

CASES = (("mlp5k", False), ("mlp5k", True), ("mlp92k", False))
NAMES = {"mlp5k": "MLP 20-64-64-1", "mlp92k": "MLP 100-256-256-1"}
TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
CLUSTER = {
    "n_workers": 2,
    "threads_per_worker": 1,
    "processes": True,
    "host": "127.0.0.1",
    "dashboard_address": None,
    "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},  # not the fixed port 8787
}


def without_time(report: gradproof.Report) -> str:
    """The report as JSON, every field but the wall-clock time (floats round-trip exactly)."""
    out = report.to_dict()
    del out["seconds"]
    return json.dumps(out, sort_keys=True)


def run_case(client: Any, name: str, planted: bool) -> dict[str, Any]:
    w = workload(name)
    grad = w.gradient(planted)
    started, cpu = time.perf_counter(), time.process_time()
    serial = gradproof.check(w.loss, w.params, grad)
    serial_seconds, serial_cpu = time.perf_counter() - started, time.process_time() - cpu
    with distributed.get_task_stream(client) as stream:
        cpu = sum(client.run(time.process_time).values())
        started = time.perf_counter()
        remote = gradproof.check(w.loss, w.params, grad, executor=client.get_executor())
        remote_seconds = time.perf_counter() - started
        remote_cpu = sum(client.run(time.process_time).values()) - cpu
    tasks = [t for t in stream.data if str(t["key"]).startswith("_run_piece")]
    layout, theta = flatten(w.params)
    payload = len(dumps((w.loss, layout, theta, False), "loss", "measure it"))
    return {
        "workload": f"{NAMES[name]} ({w.size:,} parameters)",
        "gradient": "planted bug" if planted else "correct",
        "serial": serial_seconds,
        "dask": remote_seconds,
        "serial_cpu": serial_cpu,
        "dask_cpu": remote_cpu,
        "evaluations": remote.evaluations,
        "tasks": len(tasks),
        "payload": payload,
        "verdict": remote.status.upper()
        + (f" ({', '.join(remote.suspects)})" if remote.suspects else ""),
        "identical": without_time(remote) == without_time(serial),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | gradient | serial | Dask, 2 workers | ratio | CPU serial / Dask "
        "| evaluations | Dask tasks | payload per worker | verdict | bit-identical |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        same = "yes" if r["identical"] else "NO"
        lines.append(
            f"| {r['workload']} | {r['gradient']} | {r['serial']:.1f} s | {r['dask']:.1f} s "
            f"| {r['serial'] / r['dask']:.2f}x | {r['serial_cpu']:.1f} s / {r['dask_cpu']:.1f} s "
            f"| {r['evaluations']:,} | {r['tasks']} "
            f"| {r['payload'] / 1e6:.2f} MB | {r['verdict']} | {same} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out the 92k MLP")
    parser.add_argument(
        "--dask-malloc-default",
        action="store_true",
        help="keep Dask's MALLOC_TRIM_THRESHOLD_=65536 in the workers",
    )
    args = parser.parse_args()
    cases = [c for c in CASES if not (args.quick and c[0] == "mlp92k")]
    started = time.perf_counter()
    malloc = {} if args.dask_malloc_default else {TRIM: None}  # None: leave it unset
    with (
        dask.config.set(malloc),
        distributed.LocalCluster(**CLUSTER) as cluster,
        distributed.Client(cluster) as client,
    ):
        rows = [run_case(client, name, planted) for name, planted in cases]
    print(table(rows))
    print()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"{platform.machine()}, {os.cpu_count()} cores (load average {load}), Python "
        f"{platform.python_version()}, numpy {np.__version__}, dask.distributed "
        f"{distributed.__version__}, gradproof {gradproof.__version__}; one BLAS thread per "
        f"process; workers {'with' if args.dask_malloc_default else 'without'} Dask's "
        f"MALLOC_TRIM_THRESHOLD_; {time.perf_counter() - started:.0f} s in all."
    )
    if not all(r["identical"] for r in rows):
        raise SystemExit("a Dask report differs from the serial one")


if __name__ == "__main__":
    main()
