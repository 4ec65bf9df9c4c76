"""A log-log plot of check time against parameter count, from a ``run.py --json`` file.

Two panels: full checks (every coordinate: gradproof, the notebook's loop, torch's
``gradcheck``) and quick checks (gradproof's probe mode, torch's fast mode, jax
``check_grads``, which look along a few directions). One line per tool, the correct
gradient's time at each workload's parameter count; probe mode on one tanh layer (10M and
100M parameters, one wrong element) is added where ``run.py --targets`` measured it::

    python bench/plot_scale.py bench/results.json bench/results_targets.json \
        --out docs/img/scale.svg

With several files, each tool's points are taken from all of them (a later file's point
replaces an earlier one's at the same size); compare within one run for ratios.

Needs matplotlib (``pip install gradproof[plot]``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

FULL = (
    "gradproof full",
    "gradproof full batched",
    "gradproof full torch loss",
    "gradproof drop-in",
    "notebook loop",
    "torch gradcheck",
)
QUICK = (
    "gradproof probe",
    "gradproof probe (tanh layer)",
    "torch gradcheck fast",
    "jax check_grads",
)
FORMER = {
    "seeds": "fraud",
    "seeds loop": "notebook loop",
    "gradproof full, torch loss": "gradproof full torch loss",
}


def series(results: list[dict[str, Any]], tool: str) -> tuple[list[int], list[float]]:
    """(parameter counts, seconds) of ``tool``'s correct-gradient runs (probe: planted)."""
    variant = "planted" if tool == "gradproof probe (tanh layer)" else "correct"
    points = sorted(
        (int(r["size"]), float(r["seconds"]))
        for r in results
        if FORMER.get(r.get("tool", ""), r.get("tool")) == tool
        and r.get("variant") == variant
        and r.get("seconds")
        and r.get("size")
        and r.get("verdict") not in ("error", "timeout")
    )
    return [p[0] for p in points], [p[1] for p in points]


def plot(results: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, tools, title in ((axes[0], FULL, "full check"), (axes[1], QUICK, "probe / fast")):
        for tool in tools:
            x, y = series(results, tool)
            if x:
                style = "-" if tool.startswith("gradproof") else "--"
                axis.plot(x, y, style, marker="o", label=tool)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("parameters")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_ylabel("seconds (one process, one thread)")
    figure.tight_layout()
    figure.savefig(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="run.py --json files")
    parser.add_argument("--out", default="docs/img/scale.svg")
    args = parser.parse_args(argv)
    merged: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for name in args.results:
        for r in json.loads(Path(name).read_text()):
            key = (
                FORMER.get(r.get("tool", ""), r.get("tool", "")),
                str(r.get("workload")),
                str(r.get("variant")),
                int(r.get("size") or 0),
            )
            merged[key] = r
    plot(list(merged.values()), Path(args.out))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
