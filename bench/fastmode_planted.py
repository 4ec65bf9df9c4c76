"""Fast mode's screen against planted bugs: does it pass what the default mode fails?

For the first ``--limit`` op_db operators with a float64 sample whose function returns one
floating tensor (built as ``fastmode.py`` builds them), the function is wrapped in a custom
``autograd.Function`` whose backward is torch's own, with the largest element of the first
input's gradient multiplied by ``1 + rel``. Each is checked by
``gradproof.torch.gradcheck`` in its default mode and with ``fast_mode=True`` (its screen,
then the full check where the screen cannot clear), and by ``torch.autograd.gradcheck``
with ``fast_mode=True`` for comparison; it prints how the verdicts pair up, and the
operators whose bug the default mode catches and fast mode passes::

    python bench/fastmode_planted.py --rel 1e-2 1e-4 1e-6

Needs ``pip install expecttest`` for torch's op_db.
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from opdb_sweep import _applies, build, load_ops, op_name


def planted(fn: Any, rel: float) -> Any:
    """``fn`` with torch's backward, its largest first-input gradient element off by ``rel``."""

    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *xs: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(*xs)
            return fn(*xs).detach().clone()

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
            xs = [x.detach().requires_grad_() for x in ctx.saved_tensors]
            with torch.enable_grad():
                grads = torch.autograd.grad(fn(*xs), xs, g, allow_unused=True)
            pairs = zip(xs, grads, strict=True)
            out = [torch.zeros_like(x) if d is None else d.clone() for x, d in pairs]
            flat = out[0].view(-1)
            k = int(flat.abs().argmax())
            flat[k] = flat[k] * (1 + rel)
            return tuple(out)

    return Planted.apply


def samples(limit: int) -> list[tuple[str, Any, tuple[torch.Tensor, ...], float]]:
    """The first ``limit`` op_db samples with one floating output: name, fn, inputs, nondet_tol."""
    out = []
    for op in load_ops():
        if len(out) >= limit:
            break
        if not _applies(op, torch.float64):
            continue
        try:
            sample = next(iter(op.sample_inputs("cpu", torch.float64, requires_grad=True)))
            fn, inputs = build(op, sample)
            if not inputs or any(t.numel() == 0 for t in inputs):
                continue
            value = fn(*inputs)
        except Exception:
            continue
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            out.append((op_name(op), fn, inputs, getattr(op, "gradcheck_nondet_tol", 0.0)))
    return out


def _verdict(check: Any, func: Any, inputs: Any, **options: Any) -> str:
    try:
        ok = check(func, inputs, raise_exception=False, check_undefined_grad=False, **options)
        return "pass" if ok else "fail"
    except Exception as error:
        return f"raise {type(error).__name__}"


def main(argv: list[str] | None = None) -> int:
    import gradproof.torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rel", nargs="+", type=float, default=[1e-2, 1e-4, 1e-6])
    parser.add_argument("--limit", type=int, default=120)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    cases = samples(args.limit)
    for rel in args.rel:
        pairs: collections.Counter[tuple[str, str, str]] = collections.Counter()
        missed = []
        for name, fn, inputs, nondet in cases:
            func = planted(fn, rel)
            default = _verdict(gradproof.torch.gradcheck, func, inputs, nondet_tol=nondet)
            fast = _verdict(
                gradproof.torch.gradcheck, func, inputs, fast_mode=True, nondet_tol=nondet
            )
            theirs = _verdict(
                torch.autograd.gradcheck, func, inputs, fast_mode=True, nondet_tol=nondet
            )
            pairs[(default, fast, theirs)] += 1
            if default == "fail" and fast == "pass":
                missed.append(name)
        print(f"rel {rel:g}, {len(cases)} samples: (default, fast, torch fast) -> count")
        for key, count in sorted(pairs.items(), key=lambda kv: -kv[1]):
            print(f"  {key}: {count}")
        print(f"  default fails, fast passes ({len(missed)}): {', '.join(missed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
