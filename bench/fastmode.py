"""Fast mode per sample: gradproof's ``fast_mode=True`` against torch's, over torch's op_db.

For a fixed set of samples of torch's operator database (float64, the first sample of
each op, built as torch's ``test_ops_gradients`` builds it; see ``opdb_sweep.py``), three
checks of the same function on one thread, each the median of ``--repeats`` runs after
one warm-up: ``torch.autograd.gradcheck(fast_mode=True)``, ``gradproof.torch.gradcheck(
fast_mode=True)`` and ``gradproof.torch.gradcheck()`` (default mode). It prints the medians
over the samples and how many samples' fast mode was slower than gradproof's default:

    python bench/fastmode.py --limit 60 --json fast.json

Needs ``pip install expecttest`` for torch's op_db.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opdb_sweep import _applies, build, load_ops, op_name


def _median_seconds(call: Any, repeats: int) -> tuple[float, str]:
    """The median time of ``call`` over ``repeats`` runs after a warm-up, and its outcome."""
    try:
        outcome = "pass" if call() else "fail"
    except Exception as error:  # a raise is reported, not timed
        return float("nan"), f"raise: {type(error).__name__}"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), outcome


def sample_row(op: Any, repeats: int) -> dict[str, Any] | None:
    """The three checks on the op's first float64 sample (None: no checkable sample)."""
    import gradproof.torch

    if not _applies(op, torch.float64):
        return None
    try:
        sample = next(iter(op.sample_inputs("cpu", torch.float64, requires_grad=True)))
    except Exception:
        return None
    fn, inputs = build(op, sample)
    if not inputs or any(t.numel() == 0 for t in inputs):
        return None
    nondet = getattr(op, "gradcheck_nondet_tol", 0.0)
    calls = {
        "torch fast": lambda: torch.autograd.gradcheck(
            fn, inputs, fast_mode=True, raise_exception=False, nondet_tol=nondet
        ),
        "gradproof fast": lambda: gradproof.torch.gradcheck(
            fn, inputs, fast_mode=True, raise_exception=False, nondet_tol=nondet
        ),
        "gradproof default": lambda: gradproof.torch.gradcheck(
            fn, inputs, raise_exception=False, nondet_tol=nondet
        ),
    }
    row: dict[str, Any] = {"op": op_name(op), "elements": sum(t.numel() for t in inputs)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, call in calls.items():
            torch.manual_seed(0)
            row[name], row[name + " outcome"] = _median_seconds(call, repeats)
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per tool over the samples all three timed, and fast-slower-than-default count."""
    timed = [r for r in rows if all(r[k] == r[k] for k in ("torch fast", "gradproof fast"))]
    timed = [r for r in timed if r["gradproof default"] == r["gradproof default"]]
    out: dict[str, Any] = {"samples": len(timed)}
    for key in ("torch fast", "gradproof fast", "gradproof default"):
        out[key + " median s"] = statistics.median(r[key] for r in timed) if timed else None
    out["fast slower than default"] = sum(
        r["gradproof fast"] > 1.1 * r["gradproof default"] for r in timed
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60, help="the first N ops with a sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the rows and the summary here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    for op in load_ops():
        if len(rows) >= args.limit:
            break
        row = sample_row(op, args.repeats)
        if row is not None:
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    result = {"rows": rows, "summary": summary(rows)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
