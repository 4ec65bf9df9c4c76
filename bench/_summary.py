"""One row of a framework benchmark from a gradproof report (bench_torch.py, bench_jax.py)."""

from __future__ import annotations

from typing import Any


def gradproof_row(report: Any, seconds: float, planted: tuple[str, tuple[int, ...]]) -> dict:
    """Time, evaluations, verdict, whether the planted element was named, miss probability.

    "Named" means: the planted element is among its block's wrong elements and that block
    is the only suspect.
    """
    name, index = planted
    block = report.blocks.get(name)
    named = block is not None and index in block.wrong_elements and report.suspects == (name,)
    return {
        "seconds": seconds,
        "evaluations": report.evaluations,
        "verdict": report.status,
        "named": f"yes: {name}{list(index)}" if named else "no",
        "miss": "–" if report.miss_probability is None else f"{report.miss_probability:.2g}",
    }
