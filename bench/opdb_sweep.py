"""Sweep: gradproof.torch.gradcheck against torch.autograd.gradcheck over torch's op_db.

For each operator of torch's operator database (``op_db``) that supports
autograd, up to ``--samples`` samples per dtype (float64, and complex128 where
the op's ``supported_backward_dtypes`` has it) are built as torch's ``test_ops_gradients``
builds them: only the tensors that require grad are checked, everything else
is fixed in a closure that reassembles the sample and calls
``op.gradcheck_wrapper(op.get_op(), ...)``. Both checkers run with
``raise_exception=False`` (and the op's ``gradcheck_nondet_tol``) on one thread.
A sample torch needs more than ``--torch-cap`` seconds for is skipped; gradproof
gets ``--gradproof-cap`` seconds.

Each sample lands in one row: agree-pass, agree-fail, gradproof-only-fail,
torch-only-fail, gradproof raised (grouped by exception type and the first line
of its message), torch raised, or skipped. Samples torch's suite marks as an
expected failure (or skip) of ``test_fn_grad`` are tagged ``xfail``/``skip``.

Run: ``python bench/opdb_sweep.py --jobs 2 --out sweep.jsonl`` (the whole
database: long; ``--limit N`` takes the first N ops, ``--ops a,b`` named ones,
``--dtypes float64``; ``--check gradgradcheck`` compares the two
``gradgradcheck``s instead, on the ops that support it, as torch's
``test_fn_gradgrad`` does). Needs ``pip install expecttest`` for torch's op_db.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import signal
import sys
import time
import unittest
import warnings
from typing import Any

import torch

DTYPES = {"float64": torch.float64, "complex128": torch.complex128}
# --check: torch's checker, gradproof's (by name in gradproof.torch), torch's test of it
CHECKS = {
    "gradcheck": (torch.autograd.gradcheck, "gradcheck", "test_fn_grad"),
    "gradgradcheck": (torch.autograd.gradgradcheck, "gradgradcheck", "test_fn_gradgrad"),
}
EMPTY = "empty inputs"


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout


def load_ops() -> list[Any]:
    """torch's op_db (an ImportError where torch's test helpers cannot load)."""
    from torch.testing._internal.common_methods_invocations import op_db

    return list(op_db)


def _recompose(inputs: tuple[Any, ...], value: Any, index: int) -> tuple[Any, int]:
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(v, torch.Tensor) for v in value)
    ):
        out = []
        for v in value:
            if v.requires_grad:
                out.append(inputs[index])
                index += 1
            else:
                out.append(v)
        return out, index
    if isinstance(value, torch.Tensor) and value.requires_grad:
        return inputs[index], index + 1
    return value, index


def _flat(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in value):
        return list(value)
    return [value]


def build(op: Any, sample: Any) -> tuple[Any, tuple[torch.Tensor, ...]]:
    """The function and the inputs of torch's ``test_fn_grad`` for one sample."""
    values = [*_flat(sample.input)]
    for v in (*sample.args, *sample.kwargs.values()):
        values.extend(_flat(v))
    checked = tuple(v for v in values if isinstance(v, torch.Tensor) and v.requires_grad)
    variant = op.get_op()

    def fn(*inputs: torch.Tensor) -> Any:
        first, index = _recompose(inputs, sample.input, 0)
        args = [first]
        for v in sample.args:
            value, index = _recompose(inputs, v, index)
            args.append(value)
        kwargs = {}
        for k, v in sample.kwargs.items():
            kwargs[k], index = _recompose(inputs, v, index)
        output = op.gradcheck_wrapper(variant, *args, **kwargs)
        if sample.output_process_fn_grad is not None:
            return sample.output_process_fn_grad(output)
        return output

    fn.__name__ = op.name.replace(".", "_") or "fn"
    return fn, checked


def expected(op: Any, dtype: torch.dtype, test: str = "test_fn_grad") -> str:
    """``xfail``/``skip`` where torch's suite marks ``test`` so, else ``""``.

    Only a decorator that marks the test counts: an expected failure or a skip
    (a tolerance override, say, does not).
    """
    for info in getattr(op, "decorators", ()) or ():
        try:
            active = info.is_active("TestBwdGradients", test, "cpu", dtype, {})
        except Exception:
            active = False
        if active:
            mark = _mark(getattr(info, "decorators", ()))
            if mark:
                return mark
    return ""


def _mark(decorators: Any) -> str:
    """``xfail`` or ``skip`` where one of ``decorators`` marks a test so, else ``""``."""
    for decorator in decorators:
        if decorator is unittest.expectedFailure:
            return "xfail"

        def probe() -> None:  # a fresh test for each decorator to mark
            pass

        try:
            marked = decorator(probe)
        except Exception:
            continue
        if getattr(marked, "__unittest_expecting_failure__", False):
            return "xfail"
        if getattr(marked, "__unittest_skip__", False):
            return "skip"
    return ""


def _timed(cap: float, call: Any) -> tuple[str, str, float]:
    """Run ``call`` under a wall-clock cap: (outcome, detail, seconds)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, cap)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok = call()
        outcome, detail = ("pass" if ok else "fail"), ""
    except _Timeout:
        outcome, detail = "timeout", ""
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0][:160]
        outcome, detail = "raise", f"{type(error).__name__}: {first}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return outcome, detail, time.perf_counter() - start


def check_sample(
    op: Any, sample: Any, caps: tuple[float, float], check: str = "gradcheck"
) -> dict[str, Any]:
    """Both checkers (``check``: gradcheck or gradgradcheck) on one sample."""
    import gradproof.torch

    theirs, ours = CHECKS[check][0], getattr(gradproof.torch, CHECKS[check][1])
    fn, inputs = build(op, sample)
    row: dict[str, Any] = {"inputs": len(inputs)}
    if not inputs:
        row["row"] = "skipped: no input requires grad"
        return row
    nondet = getattr(op, "gradcheck_nondet_tol", 0.0)
    torch_result = _timed(
        caps[0],
        lambda: theirs(fn, inputs, raise_exception=False, nondet_tol=nondet),
    )
    row["torch"], row["torch_detail"], row["torch_s"] = torch_result
    if row["torch"] == "timeout":
        row["row"] = "skipped: torch over its cap"
        return row
    proof_result = _timed(
        caps[1],
        lambda: ours(fn, inputs, raise_exception=False, nondet_tol=nondet),
    )
    row["gradproof"], row["gradproof_detail"], row["gradproof_s"] = proof_result
    if all(t.numel() == 0 for t in inputs):
        row["empty"] = True
    row["row"] = classify(row["torch"], row["gradproof"])
    return row


def classify(torch_outcome: str, proof_outcome: str) -> str:
    """The table row of one sample's pair of outcomes."""
    if proof_outcome == "raise":
        return "gradproof raised"
    if proof_outcome == "timeout":
        return "gradproof over its cap"
    if torch_outcome == "raise":
        return "torch raised"
    if torch_outcome == proof_outcome:
        return f"agree-{torch_outcome}"
    return "gradproof-only-fail" if proof_outcome == "fail" else "torch-only-fail"


def sweep_op(task: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Every chosen dtype and sample of one op (a worker's unit of work)."""
    index, dtype_names, samples, caps, check = task
    torch.set_num_threads(1)
    op = load_ops()[index]
    rows = []
    for dtype_name in dtype_names:
        dtype = DTYPES[dtype_name]
        if not _applies(op, dtype) or (check == "gradgradcheck" and not op.supports_gradgrad):
            continue
        try:
            chosen = list(_first(op.sample_inputs("cpu", dtype, requires_grad=True), samples))
        except Exception as error:
            rows.append(
                {
                    "op": op_name(op),
                    "dtype": dtype_name,
                    "row": "skipped: samples raise",
                    "detail": f"{type(error).__name__}: {error}"[:160],
                }
            )
            continue
        for number, sample in enumerate(chosen):
            base = {
                "op": op_name(op),
                "dtype": dtype_name,
                "sample": number,
                "expected": expected(op, dtype, CHECKS[check][2]),
            }
            torch.manual_seed(0)
            rows.append({**base, **check_sample(op, sample, caps, check)})
    return rows


def op_name(op: Any) -> str:
    """``name.variant`` as torch's test names an OpInfo (``linalg.norm.subgradients_at_zero``)."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


def _applies(op: Any, dtype: torch.dtype) -> bool:
    # torch's supported_backward_dtypes already leaves out complex where the op
    # does not support complex autograd.
    return bool(op.supports_autograd) and dtype in op.supported_backward_dtypes("cpu")


def _first(samples: Any, count: int) -> Any:
    for number, sample in enumerate(samples):
        if number >= count:
            return
        yield sample


def summarise(rows: list[dict[str, Any]]) -> str:
    """The totals table, then the groups of raises and the disagreements."""
    lines = ["| row | float64 | complex128 | xfail/skip in torch's suite |", "|---|---|---|---|"]
    counts = collections.Counter((r["row"], r["dtype"]) for r in rows)
    marked = collections.Counter(r["row"] for r in rows if r.get("expected"))
    for name in sorted({r["row"] for r in rows}):
        lines.append(
            f"| {name} | {counts[name, 'float64']} | {counts[name, 'complex128']} "
            f"| {marked[name]} |"
        )
    lines.append("")
    for title, key in (("gradproof raised", "gradproof_detail"), ("torch raised", "torch_detail")):
        groups = collections.Counter(r[key] for r in rows if r["row"] == title)
        for detail, n in groups.most_common():
            ops = sorted({r["op"] for r in rows if r["row"] == title and r[key] == detail})
            lines.append(f"- {title} ×{n}: `{detail}` ({', '.join(ops[:8])})")
    for title in ("gradproof-only-fail", "torch-only-fail", "gradproof over its cap"):
        hits = [r for r in rows if r["row"] == title]
        names = ", ".join(
            f"{r['op']}/{r['dtype']}/{r['sample']}"
            f"{'(' + r['expected'] + ')' if r.get('expected') else ''}"
            for r in hits
        )
        if hits:
            lines.append(f"- {title} ×{len(hits)}: {names}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N chosen ops")
    parser.add_argument("--skip", type=int, default=0, help="skip the first N chosen ops")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--dtypes", default="float64,complex128")
    parser.add_argument("--torch-cap", type=float, default=2.0)
    parser.add_argument("--gradproof-cap", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="", help="write every row as JSON lines here")
    parser.add_argument("--check", default="gradcheck", choices=sorted(CHECKS))
    args = parser.parse_args(argv)
    ops = load_ops()
    wanted = {n for n in args.ops.split(",") if n}
    chosen = [
        i
        for i, op in enumerate(ops)
        if not wanted or op.name in wanted or f"{op.name}.{op.variant_test_name}" in wanted
    ]
    chosen = chosen[args.skip :][: args.limit or None]
    caps = (args.torch_cap, args.gradproof_cap)
    tasks = [(i, args.dtypes.split(","), args.samples, caps, args.check) for i in chosen]
    rows = _run(tasks, args.jobs, args.out)
    print(summarise(rows))


def _run(tasks: list[Any], jobs: int, out: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sink = open(out, "w") if out else None
    pool = multiprocessing.get_context("fork").Pool(jobs, maxtasksperchild=20)
    try:
        for done in pool.imap_unordered(sweep_op, tasks):
            rows.extend(done)
            for row in done:
                print(json.dumps(row), file=sink or sys.stderr, flush=True)
    finally:
        pool.close()
        if sink:
            sink.close()
    return rows


if __name__ == "__main__":
    main()
