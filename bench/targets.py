"""The performance targets, measured in one run beside their anchors (used by ``run.py``).

``run.py --targets`` runs, after its cells, the measurements its cells do not make: probe
mode on one tanh layer of 10M and 100M parameters (``probe_scale.py``'s own measurement, a
fresh process per size, time and memory), fast mode over torch's op_db samples
(``fastmode.py``), and the GPU's (``gpu.py``: where no CUDA device is present its rows say
so, not measured). ``table`` then states each target, the figure measured, the anchor
beside it and whether it is met.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PROBE_SIZES = (10_000_000, 100_000_000)
PROBE_SECONDS = {10_000_000: 5.0, 100_000_000: 30.0}
PROBE_MEMORY = 2.0  # memory added, over the parameters' bytes
GPU_PROBE_SECONDS = 3.0  # the 100M-parameter probe on a GPU


def _child(command: list[str], timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        env={**os.environ, **THREADS},
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def probe_rows(sizes: tuple[int, ...] = PROBE_SIZES) -> list[dict[str, Any]]:
    """One wrong element in a tanh layer of each size: time (one run), memory (another)."""
    rows = []
    for size in sizes:
        script = str(HERE / "probe_scale.py")
        timed = _child([script, "--child", str(size)], timeout=900)
        memory = _child([script, "--child", str(size), "--memory"], timeout=900)
        rows.append(
            {
                "tool": "gradproof probe (tanh layer)",
                "workload": "tanh layer",
                "variant": "planted",
                "size": size,
                "seconds": timed.get("seconds"),
                "memory_ratio": memory.get("ratio"),
                "named": bool(timed.get("named")) and bool(memory.get("named")),
                "error": timed.get("error") or memory.get("error"),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def fast_mode_row(limit: int = 120) -> dict[str, Any]:
    """Median seconds per op_db sample: torch's fast mode, gradproof's fast and default."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / "gradproof-fastmode.json"
    done = subprocess.run(
        [sys.executable, str(HERE / "fastmode.py"), "--limit", str(limit), "--json", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **THREADS},
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        return {"tool": "fast mode", "workload": "op_db", "error": done.stderr[-2000:]}
    summary = json.loads(out.read_text())["summary"]
    return {"tool": "fast mode", "workload": "op_db", **summary}


def gpu_rows() -> list[dict[str, Any]]:
    """``gpu.py``'s rows on the CUDA device (check_module's full check of the 30k MLP beside
    ``gradcheck``, and the 100M probe), or one row saying why they were not measured."""
    done = subprocess.run(
        [sys.executable, str(HERE / "gpu.py")],
        capture_output=True,
        text=True,
        env={**os.environ, **THREADS},
        timeout=3600,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("{"):
        why = (lines[-1] if lines else "") if done.returncode == 0 else done.stderr[-2000:]
        return [{"tool": "gpu", "workload": "gpu", "skipped": why or "gpu.py printed nothing"}]
    return [{"workload": "gpu " + row.pop("workload"), **row} for row in map(json.loads, lines)]


def _seconds(results: list[dict[str, Any]], tool: str, workload: str, variant: str) -> Any:
    for r in results:
        if (r.get("tool"), r.get("workload"), r.get("variant")) == (tool, workload, variant):
            return r.get("seconds") if r.get("verdict") not in ("error", "timeout") else None
    return None


def _ratio_rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, anchor, met) for the ratio targets, correct and planted."""
    specs = [
        (
            "notebook network, full, batched loss: >= 3x its loop",
            "fraud",
            "gradproof full batched",
            "notebook loop",
            3.0,
        ),
    ]
    for w in ("mlp30k", "mlp92k"):
        for tool in ("gradproof full torch loss", "gradproof drop-in"):
            specs.append((f"{w}, {tool}: >= 1.5x torch gradcheck", w, tool, "torch gradcheck", 1.5))
    rows = []
    for target, workload, tool, anchor, goal in specs:
        for variant in ("correct", "planted"):
            mine = _seconds(results, tool, workload, variant)
            theirs = _seconds(results, anchor, workload, variant)
            if mine is None or theirs is None:
                rows.append((f"{target} ({variant})", "not run", "–", None))
                continue
            ratio = theirs / mine
            rows.append(
                (
                    f"{target} ({variant})",
                    f"{ratio:.2f}x ({mine:.3g} s)",
                    f"{theirs:.3g} s",
                    ratio >= goal,
                )
            )
    return rows


def _probe_rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    rows = []
    for r in results:
        if r.get("tool") != "gradproof probe (tanh layer)":
            continue
        size, seconds, ratio = r["size"], r.get("seconds"), r.get("memory_ratio")
        goal = PROBE_SECONDS.get(size)
        if seconds is None or goal is None:
            rows.append((f"probe, {size:,} parameters", "error", "–", None))
            continue
        met = seconds < goal and bool(r.get("named"))
        rows.append(
            (
                f"probe, {size:,} parameters: < {goal:g} s, named",
                f"{seconds:.2f} s, named: {r.get('named')}",
                "–",
                met,
            )
        )
        if size == max(PROBE_SIZES) and ratio is not None:
            rows.append(
                (
                    f"probe, {size:,} parameters: memory added <= {PROBE_MEMORY:g}x",
                    f"{ratio:.2f}x the parameters' bytes",
                    "–",
                    ratio <= PROBE_MEMORY,
                )
            )
    return rows


def _fast_rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    rows = []
    for r in results:
        if r.get("tool") != "fast mode" or "error" in r:
            continue
        mine, theirs = r["gradproof fast median s"], r["torch fast median s"]
        rows.append(
            (
                f"fast mode, median per op_db sample ({r['samples']}): <= torch fast's",
                f"{mine * 1e3:.2f} ms",
                f"{theirs * 1e3:.2f} ms",
                mine <= theirs,
            )
        )
        slower = r["fast slower than default"]
        rows.append(
            (
                "fast mode never slower than default mode (10% margin)",
                f"slower on {slower} of {r['samples']} samples (screen cleared "
                f"{r.get('screened', '?')}, probed {r.get('probed', '?')})",
                f"default median {r['gradproof default median s'] * 1e3:.2f} ms",
                slower == 0,
            )
        )
    return rows


def _gpu_rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    probe = "on a GPU: probe, 100,000,000 parameters: < 3 s, named"
    full = "on a GPU: check_module full check of the 30k MLP, beside torch gradcheck"
    skipped = [r["skipped"] for r in results if r.get("tool") == "gpu"]
    if skipped:
        why = skipped[0].removeprefix("skipped: ")
        return [(probe, f"not measured: {why}", "–", None), (full, "not measured", "–", None)]
    rows: list[tuple[str, str, str, bool | None]] = []
    for r in results:
        if r.get("workload", "").startswith("gpu probe"):
            met = r["seconds"] < GPU_PROBE_SECONDS and bool(r.get("named"))
            rows.append((probe, f"{r['seconds']:.3g} s, named: {r.get('named')}", "–", met))
        elif r.get("workload", "").startswith("gpu MLP") and "ratio" in r:
            rows.append((full, f"{r['ratio']:.2f}x", f"gradcheck {r['seconds']:.3g} s", None))
    return rows


def table(results: list[dict[str, Any]]) -> str:
    """Every target: what was measured, the anchor beside it, met or not (–: no target
    figure, or not measured here)."""
    rows = _ratio_rows(results) + _probe_rows(results) + _fast_rows(results) + _gpu_rows(results)
    lines = ["| target | measured | anchor | met |", "|---|---|---|---|"]
    for target, measured, anchor, met in rows:
        flag = "–" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {target} | {measured} | {anchor} | {flag} |")
    return "\n".join(lines) + "\n"
