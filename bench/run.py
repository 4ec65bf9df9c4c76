"""Benchmark gradproof against the notebook's loop, torch.autograd.gradcheck and jax check_grads.

The notebook's loop is ``gradient_check_n`` of the Gradient Checking notebook
(deeplearning.ai's course): plain central differences, one coordinate at a time, eps = 1e-7,
threshold 2e-7. One command, everything side by side in the same run:

    python bench/run.py            # prints the markdown table; --json FILE keeps the raw data

Each cell (tool x workload x correct/planted) runs in a fresh process with one
BLAS/OpenMP thread per process (``workers=2`` uses two processes), so timings
and peak memory do not bleed into each other. Peak memory is the process's
peak resident set size during the check minus the peak after setting up the
workload (model, data, one loss evaluation and the gradient): what the checker
added beyond the loss's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import targets  # noqa: E402  (bench/ is a folder of scripts, not a package)

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ANCHORS = ("notebook loop", "torch gradcheck", "torch gradcheck fast", "jax check_grads")
FULL_TOOLS = (
    "gradproof full",
    "gradproof full batched",
    "gradproof full workers=2",
    "notebook loop",
    "torch gradcheck",
)
QUICK_TOOLS = ("gradproof probe", "torch gradcheck fast", "jax check_grads")
TOOLS = (*FULL_TOOLS[:3], "gradproof probe", *FULL_TOOLS[3:], *QUICK_TOOLS[1:])
# The same torch function, checked by gradproof two ways: gradproof.check on it (wrapped to
# return a float) and the drop-in gradproof.torch.gradcheck; beside torch's own gradcheck.
SAME_FUNCTION_TOOLS = ("gradproof full torch loss", "gradproof drop-in", "torch gradcheck")
WORKLOADS = ("fraud", "mlp5k", "mlp30k", "mlp92k", "mlp10m")
# The results files kept in bench/ were written when the fraud-detection workload and the
# notebook's loop had other names; the table shows them under the current ones.
FORMER_NAMES = {"seeds": "fraud", "seeds loop": "notebook loop"}
CELL_TIMEOUT = 900
REPEAT_BUDGET = 3.0  # seconds: a cell is run again while its runs took less than this ...
REPEATS = 301  # ... up to this many runs in all, and the median of all but the first reported


def plan() -> list[tuple[str, str, str]]:
    """Which cells run: every tool on every workload, correct and planted.

    Except the full checks of the 10M model, which would take weeks (2 x 10.5M
    evaluations at ~0.1 s each): probe and the one-direction anchors only there.
    Every other cell finishes within ten minutes on this machine.
    """
    cells = []
    for w in WORKLOADS:
        for variant in ("correct", "planted"):
            for tool in _tools(w):
                cells.append((tool, w, variant))
    return cells


def target_plan() -> list[tuple[str, str, str]]:
    """The cells the targets need (``--targets``): the notebook's network with the batched
    loss beside its loop, the same torch function at 5.5k, 30k and 92k three ways, and
    the quick checks at every size, for the scaling plot."""
    cells = []
    for variant in ("correct", "planted"):
        cells += [(t, "fraud", variant) for t in ("gradproof full batched", "notebook loop")]
        for w in ("mlp5k", "mlp30k", "mlp92k"):
            cells += [(t, w, variant) for t in SAME_FUNCTION_TOOLS]
    # the scaling plot's quick checks, from 47 to 10.5M parameters, correct gradient
    quick = ("gradproof probe", "torch gradcheck fast")
    cells += [(t, w, "correct") for w in WORKLOADS for t in quick]
    return cells


def _tools(workload: str) -> tuple[str, ...]:
    """The tools run on ``workload``: all of them, but no full check of the 10M model, and
    at 30k only the same-function comparison (with the batched numpy loss beside it)."""
    if workload == "mlp10m":
        return tuple(t for t in TOOLS if t not in FULL_TOOLS)
    if workload == "mlp30k":
        return ("gradproof full", "gradproof full batched", *SAME_FUNCTION_TOOLS)
    if workload == "mlp92k":
        return (*TOOLS, *SAME_FUNCTION_TOOLS[:2])
    return TOOLS


# ------------------------------------------------------------------- one cell


def run_cell(tool: str, name: str, variant: str) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from models import workload

    w = workload(name)
    planted = variant == "planted"
    grad = w.gradient(planted)
    w.loss(w.params)
    runner, setup = _tool(tool, w, grad)
    setup()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    out = runner()
    times = [time.perf_counter() - started]
    # A short check is timed again, up to REPEATS runs or REPEAT_BUDGET seconds in all,
    # and the median of the warm runs (all but the first) is reported: a cold run of a few
    # milliseconds measures first-call costs (lazy imports, caches) and the machine's
    # jitter more than the tool, and so do a handful of runs. Every tool alike; checks of
    # minutes run once.
    while sum(times) < REPEAT_BUDGET and len(times) < REPEATS:
        started = time.perf_counter()
        runner()
        times.append(time.perf_counter() - started)
    seconds = float(statistics.median(times[1:] or times))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.update(tool=tool, workload=name, variant=variant, seconds=seconds, size=w.size)
    out.update(first_seconds=times[0], runs=len(times))
    out["peak_mb"] = max(0, peak - base) / 1024
    if planted:
        block, index = w.planted
        out["planted"] = f"{block}{list(index)}"
        out["named"] = bool(out.pop("found", None) and [block, list(index)] in out["found_at"])
    out.pop("found_at", None)
    out.pop("found", None)
    return out


def _tool(tool: str, w: Any, grad: dict[str, Any]) -> tuple[Any, Any]:
    if tool.startswith("gradproof drop-in"):
        return _torch(tool, w, grad)
    if tool.startswith("gradproof"):
        return _gradproof(tool, w, grad), lambda: None
    if tool == "notebook loop":
        return _notebook_loop(w, grad), lambda: None
    if tool.startswith("torch"):
        return _torch(tool, w, grad)
    return _jax(w, grad)


def _gradproof(tool: str, w: Any, grad: dict[str, Any]) -> Any:
    import gradproof

    options: dict[str, Any] = {"progress": False}
    loss = w.loss
    if "torch loss" in tool:  # the anchor's own loss: separates checker from loss speed
        loss = _numpy_to_torch(w)
    if "batched" in tool:
        options["batched"] = True
        loss = w.batched_loss
    if "workers" in tool:
        options["workers"] = 2
    if "probe" in tool:
        options["mode"] = "probe"

    def run() -> dict[str, Any]:
        report = gradproof.check(loss, w.params, grad, **options)
        found = [[b.name, list(i)] for b in report.blocks.values() for i in b.wrong_elements]
        return {
            "verdict": report.status,
            "evaluations": report.evaluations,
            "found": bool(found),
            "found_at": found,
            "miss_probability": report.miss_probability,
        }

    return run


def _numpy_to_torch(w: Any) -> Any:
    """The workload's torch loss, called on gradproof's numpy parameters (no copies)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)

    def loss(p: dict[str, Any]) -> float:
        theta = torch.from_numpy(np.concatenate([p[k].ravel() for k in w.params]))
        with torch.no_grad():
            return float(w.torch_loss(theta))

    return loss


def _notebook_loop(w: Any, grad: dict[str, Any]) -> Any:
    """The notebook's gradient_check_n, exactly, on its fraud network; the same loop elsewhere."""
    import numpy as np

    from gradproof.examples import fraud

    def run() -> dict[str, Any]:
        if w.name == "fraud":
            X, Y, _ = fraud.gradient_check_n_test_case()
            grads = {"d" + k: v for k, v in grad.items()}
            difference = fraud.gradient_check_n(w.params, grads, X, Y, 1e-7)
        else:
            theta, g = w.flat(w.params), w.flat(grad)
            approx = np.zeros_like(theta)
            for i in range(theta.size):
                plus = np.copy(theta)
                plus[i] += 1e-7
                minus = np.copy(theta)
                minus[i] -= 1e-7
                approx[i] = (w.loss(w.unflat(plus)) - w.loss(w.unflat(minus))) / 2e-7
            difference = np.linalg.norm(g - approx) / (np.linalg.norm(g) + np.linalg.norm(approx))
        verdict = "fail" if difference > fraud.THRESHOLD else "pass"
        return {"verdict": verdict, "evaluations": 2 * w.size, "difference": float(difference)}

    return run


def _torch(tool: str, w: Any, grad: dict[str, Any]) -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(1)
    calls = [0]
    g = torch.from_numpy(w.flat(grad))

    class Loss(torch.autograd.Function):
        """The model's loss with the hand-written backprop as its backward."""

        @staticmethod
        def forward(ctx: Any, theta: Any) -> Any:
            calls[0] += _points(theta)
            return w.torch_loss(theta)

        @staticmethod
        def backward(ctx: Any, grad_output: Any) -> Any:
            return grad_output * g

    theta = torch.from_numpy(w.flat(w.params)).requires_grad_(True)

    def setup() -> None:
        Loss.apply(theta).backward()
        calls[0] = 0

    def run() -> dict[str, Any]:
        if tool.startswith("gradproof"):
            return _drop_in(Loss.apply, theta, w, fast="fast" in tool) | {"evaluations": calls[0]}
        try:
            ok = torch.autograd.gradcheck(Loss.apply, (theta,), fast_mode="fast" in tool)
        except torch.autograd.gradcheck.GradcheckError:
            ok = False
        return {"verdict": "pass" if ok else "fail", "evaluations": calls[0]}

    return run, setup


def _points(theta: Any) -> int:
    """How many points one call of the Function evaluates: one, or under vmap (where the
    drop-in runs a Function's forward in batches) the batch's rows."""
    from torch._C import _functorch

    count = 1
    while _functorch.is_batchedtensor(theta):
        dim = _functorch.maybe_get_bdim(theta)
        theta = _functorch.get_unwrapped(theta)
        count *= int(theta.shape[dim])
    return count


def _drop_in(func: Any, theta: Any, w: Any, *, fast: bool) -> dict[str, Any]:
    """``gradproof.torch.gradcheck`` as a torch user calls it; the element its error names.

    The function takes the flat parameter vector ``theta``, so the planted element is
    named ``theta[k]``, ``k`` its flat position.
    """
    import numpy as np

    import gradproof.torch

    try:
        ok = gradproof.torch.gradcheck(func, (theta,), fast_mode=fast)
        message = ""
    except gradproof.torch.GradcheckError as error:
        ok, message = False, str(error)
    block, index = w.planted
    offset = 0
    for name, value in w.params.items():
        if name == block:
            break
        offset += value.size
    flat = offset + int(np.ravel_multi_index(index, w.params[block].shape))
    found = f"theta[{flat}]" in message
    return {
        "verdict": "pass" if ok else "fail",
        "found": found,
        "found_at": [[block, list(index)]] if found else [],
    }


def _jax(w: Any, grad: dict[str, Any]) -> tuple[Any, Any]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.test_util import check_grads

    calls = [0]
    g = jnp.asarray(w.flat(grad))

    @jax.custom_vjp
    def loss(theta: Any) -> Any:
        calls[0] += 1
        return w.jax_loss(theta)

    def fwd(theta: Any) -> Any:
        return loss(theta), None

    def bwd(_: Any, ct: Any) -> Any:
        return (ct * g,)

    loss.defvjp(fwd, bwd)
    theta = jnp.asarray(w.flat(w.params))

    def setup() -> None:
        jax.grad(loss)(theta).block_until_ready()
        calls[0] = 0

    def run() -> dict[str, Any]:
        try:
            check_grads(loss, (theta,), order=1, modes=["rev"])
            verdict = "pass"
        except AssertionError:
            verdict = "fail"
        return {"verdict": verdict, "evaluations": calls[0]}

    return run, setup


# ----------------------------------------------------------------- the table


def table(results: list[dict[str, Any]]) -> str:
    results = [_current_names(r) for r in results]
    anchors = {
        (r["workload"], r["variant"], r["tool"]): r["seconds"]
        for r in results
        if r["tool"] in ANCHORS and r.get("verdict") not in (None, "error", "timeout")
    }
    head = (
        "| workload | gradient | tool | time (s) | vs notebook loop | vs gradcheck | vs gradcheck "
        "fast | vs jax | loss evals | peak MB | verdict | named planted element |\n"
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|\n"
    )
    rows = []
    for r in results:
        ratios = []
        for anchor in ANCHORS:
            t = anchors.get((r["workload"], r["variant"], anchor))
            ratios.append(f"{t / r['seconds']:.2f}×" if t and r.get("seconds") else "–")
        named = "–"
        if r["variant"] == "planted":
            named = f"yes: {r['planted']}" if r.get("named") else "no"
        rows.append(
            f"| {r['workload']} ({r.get('size', '?')}) | {r['variant']} | {r['tool']} | "
            f"{_seconds(r.get('seconds'))} | {' | '.join(ratios)} | "
            f"{r.get('evaluations', '–')} | {r.get('peak_mb', float('nan')):.0f} | "
            f"{r.get('verdict')} | {named} |"
        )
    return head + "\n".join(rows) + "\n"


def _current_names(result: dict[str, Any]) -> dict[str, Any]:
    names = {k: FORMER_NAMES.get(result[k], result[k]) for k in ("workload", "tool") if k in result}
    return {**result, **names}


def _seconds(value: float | None) -> str:
    """Seconds to two decimals, or two significant digits below a tenth of a second."""
    if value is None:
        return "–"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", nargs=3, metavar=("TOOL", "WORKLOAD", "VARIANT"))
    parser.add_argument("--only", nargs="*", help="run only these workloads")
    parser.add_argument("--tools", nargs="*", help="run only these tools (with --only)")
    parser.add_argument("--planted", action="store_true", help="with --tools: planted too")
    parser.add_argument("--json", help="write the raw results here")
    parser.add_argument("--table", help="print the table of an earlier run's --json file")
    parser.add_argument(
        "--targets",
        action="store_true",
        help="run the cells the targets need (not the whole table), measure probe mode at "
        "10M and 100M and fast mode over op_db, and print every target, met or not",
    )
    args = parser.parse_args(argv)
    if args.table:
        results = [_current_names(r) for r in json.loads(Path(args.table).read_text())]
        print(table([r for r in results if "variant" in r and r["workload"] in WORKLOADS]))
        print(targets.table(results))
        return 0
    if args.cell:
        print(json.dumps(run_cell(*args.cell)))
        return 0
    results = []
    env = {**os.environ, **THREADS}
    variants = ("correct", "planted") if args.planted else ("correct",)
    cells = (
        (target_plan() if args.targets else plan())
        if not args.tools
        else [
            (tool, name, variant)
            for name in args.only or WORKLOADS
            for variant in variants
            for tool in args.tools
        ]
    )
    for tool, name, variant in cells:
        if args.only and name not in args.only:
            continue
        command = [sys.executable, str(Path(__file__)), "--cell", tool, name, variant]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, env=env, timeout=CELL_TIMEOUT
            )
            if done.returncode == 0:
                result = json.loads(done.stdout.strip().splitlines()[-1])
            else:
                result = {"verdict": "error", "error": done.stderr[-2000:]}
        except subprocess.TimeoutExpired:
            result = {"verdict": "timeout", "seconds": float(CELL_TIMEOUT)}
        result.update(tool=tool, workload=name, variant=variant)
        results.append(result)
        print(json.dumps(result), file=sys.stderr, flush=True)
    if args.targets:
        results.extend(targets.probe_rows())
        results.append(targets.fast_mode_row())
        results.extend(targets.gpu_rows())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(table([r for r in results if r["workload"] in WORKLOADS]))
    if args.targets:
        print(targets.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
