"""Fast mode per sample: gradproof's ``fast_mode=True`` against torch's, over torch's op_db.

For a fixed set of samples of torch's operator database (float64, the first sample of
each op, built as torch's ``test_ops_gradients`` builds it; see ``opdb_sweep.py``), three
checks of the same function on one thread, each its best time over ``--repeats`` rounds
(the three taken in turn) after one warm-up: ``torch.autograd.gradcheck(fast_mode=True)``,
``gradproof.torch.gradcheck(fast_mode=True)`` and ``gradproof.torch.gradcheck()`` (default
mode). It prints the medians over the samples, how many samples fast mode's screen
cleared without a full check (and how many it left to a probe), and how many took fast
mode over 1.1 times the default's time:

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


def _best_seconds(calls: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Each call's outcome and its best time over ``repeats`` rounds after a warm-up, the
    calls taken in turn within a round (a millisecond check's median moves with the
    machine's other work; its best time, taken the same way for every tool, does not)."""
    row: dict[str, Any] = {}
    for name, call in calls.items():
        try:
            row[name + " outcome"] = "pass" if call() else "fail"
        except Exception as error:  # a raise is reported, not timed
            row[name + " outcome"] = f"raise: {type(error).__name__}"
    timed = {n: c for n, c in calls.items() if not row[n + " outcome"].startswith("raise")}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in timed.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    for name in calls:
        row[name] = min(times[name]) if times[name] else float("nan")
    return row


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
    modes = _modes(calls["gradproof fast"])
    row["probed"], row["screened"] = "probe" in modes, not modes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        row.update(_best_seconds(calls, repeats))
    return row


def _modes(call: Any) -> list[Any]:
    """The modes gradproof's fast mode asked gradproof.check for on this sample, recorded
    while it runs once (none: its screen cleared the backward without a full check)."""
    import gradproof

    modes: list[Any] = []
    check = gradproof.check

    def recording(*args: Any, **options: Any) -> Any:
        modes.append(options.get("mode"))
        return check(*args, **options)

    gradproof.check = recording
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except Exception:
        pass
    finally:
        gradproof.check = check
    return modes


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per tool over the samples all three timed (of their best times), and of the
    samples where fast mode probed, how many took over 1.1 times the default's time."""
    timed = [r for r in rows if all(r[k] == r[k] for k in ("torch fast", "gradproof fast"))]
    timed = [r for r in timed if r["gradproof default"] == r["gradproof default"]]
    out: dict[str, Any] = {"samples": len(timed)}
    for key in ("torch fast", "gradproof fast", "gradproof default"):
        out[key + " median s"] = statistics.median(r[key] for r in timed) if timed else None
    out["probed"] = sum(bool(r["probed"]) for r in timed)
    out["screened"] = sum(bool(r.get("screened")) for r in timed)
    out["fast slower than default"] = sum(
        r["gradproof fast"] > 1.1 * r["gradproof default"] for r in timed
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60, help="the first N ops with a sample")
    parser.add_argument("--repeats", type=int, default=7)
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
