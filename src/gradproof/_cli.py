"""The `gradproof` command line: ``gradproof check`` for CI, ``gradproof demo`` to see it work.

Exit codes (``gradproof check``): 0 the gradient passed, 1 it failed, 2 the
check was inconclusive or the command was misused.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from rich.console import Console

from gradproof._errors import GradproofError, InvalidArgument, invalid

EXIT = {"pass": 0, "fail": 1, "inconclusive": 2}
USAGE = 2

DEMO_HELP = """\
Check the Gradient Checking notebook's fraud-detection example, a network
LINEAR->RELU->LINEAR->RELU->LINEAR->SIGMOID: first its backprop with the two
planted bugs, then the corrected one.

example:
  gradproof demo
"""

CHECK_HELP = """\
Check the gradient defined in a Python file against finite differences.

TARGET is path/to/file.py or path/to/file.py:name. Without a name the file must
define `loss` (loss(params) -> scalar), `params` and `grad` (the gradient, or a
function grad(params) returning it; `grads` is accepted too). With a name,
name() must return (loss, params, grad), or a dict with those keys.

exit codes: 0 pass, 1 fail, 2 inconclusive or usage error, so the command can
be a CI step as it is.
"""

CHECK_EXAMPLES = """\
examples:
  gradproof check model_check.py
  gradproof check examples/fraud_problem.py:problem --eps 1e-7 --html report.html
  gradproof check model_check.py --mode sample --budget 30s --json report.json
  gradproof check model_check.py --plot blocks.png      # also writes blocks-scatter.png
"""

MAIN_EPILOG = """\
examples:
  gradproof demo
  gradproof check path/to/file.py:problem --html report.html
"""


class UsageError(Exception):
    """The command cannot run as given; the message says why and what to do.

    A misused argument raises :class:`gradproof.InvalidArgument` instead, whose
    message names the argument, its value, the rule and the fix.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return USAGE
    try:
        return int(args.run(args))
    except (UsageError, InvalidArgument) as error:
        print(f"gradproof {args.command}: error: {error}", file=sys.stderr)
        return USAGE


def _parser() -> argparse.ArgumentParser:
    from gradproof import __version__

    parser = argparse.ArgumentParser(
        prog="gradproof",
        description="Proof that a gradient is right, or where and how it is wrong.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gradproof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="check the Gradient Checking notebook's fraud-detection example, "
        "with its planted bugs and without",
        description=DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(run=_demo)
    check = sub.add_parser(
        "check",
        help="check the gradient defined in a Python file (exit 0 pass, 1 fail, 2 other)",
        description=CHECK_HELP,
        epilog=CHECK_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_check_arguments(check)
    check.set_defaults(run=_check)
    return parser


def _add_check_arguments(check: argparse.ArgumentParser) -> None:
    # Imports numpy: here rather than at the top, so that importing this module stays cheap.
    from gradproof._engine.validate import MODES, SCHEME_NAMES

    check.add_argument("target", metavar="TARGET", help="path/to/file.py or path/to/file.py:name")
    check.add_argument(
        "--mode",
        choices=MODES,
        help="every coordinate (full), a random sample, or random directions (probe)",
    )
    check.add_argument("--eps", type=float, help="one fixed central-difference step, e.g. 1e-7")
    check.add_argument(
        "--tol",
        type=float,
        help="a bound on the relative difference ||grad - numerical|| / (||grad|| + ||numerical||)",
    )
    check.add_argument(
        "--scheme",
        choices=SCHEME_NAMES,
        help="the finite-difference scheme (default: auto)",
    )
    check.add_argument(
        "--budget", help="stop after this much: seconds ('30s') or loss evaluations ('5000')"
    )
    check.add_argument(
        "--samples", type=int, help="coordinates (sample) or directions (probe) per block"
    )
    check.add_argument("--seed", type=int, help="the seed for sampled and probed checks")
    check.add_argument("--workers", type=int, help="evaluate the loss in this many processes")
    check.add_argument("--json", metavar="PATH", help="write the report as JSON ('-': stdout)")
    check.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    check.add_argument(
        "--plot",
        metavar="PATH",
        help="save the per-block chart (.png or .svg) and the scatter beside it (needs matplotlib)",
    )
    check.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the loss evaluations on a Dask cluster, e.g. tcp://127.0.0.1:8786",
    )


def _demo(args: argparse.Namespace) -> int:
    from gradproof._demo import run_demo

    run_demo(_console())
    return 0


def _check(args: argparse.Namespace) -> int:
    from gradproof._render.text import print_report

    if args.plot is not None:
        _validate_plot_path(args.plot)
    _validate_output_paths(args)  # before the check: a long check must not end in "no such folder"
    loss, params, grad = load_target(args.target)
    with _dask_executor(args.scheduler) as executor:
        report = _run_check(loss, params, grad, _options(args, executor))
    if args.json == "-":
        print(report.to_json())
    else:
        print_report(report, _console())
    try:
        _write_outputs(report, args)
    except OSError as error:
        raise UsageError(
            f"the check ran ({report.status}) but its report could not be written: {error}. "
            "Fix: pass a path you can write to"
        ) from error
    return EXIT[report.status]


def _options(args: argparse.Namespace, executor: Executor | None) -> dict[str, Any]:
    """The options the user gave, and only those: gradproof.check's defaults decide the rest."""
    given = {
        "mode": args.mode,
        "eps": args.eps,
        "tol": args.tol,
        "scheme": args.scheme,
        "budget": args.budget,
        "samples": args.samples,
        "seed": args.seed,
        "workers": args.workers,
        "executor": executor,
    }
    return {name: value for name, value in given.items() if value is not None}


def _run_check(loss: Any, params: Any, grad: Any, options: dict[str, Any]) -> Any:
    from gradproof._engine.check import check

    try:
        return check(loss, params, grad, **options)
    except GradproofError as error:
        raise UsageError(str(error)) from error
    except Exception as error:
        # The user's own code raised: show where, but keep exit code 1 for "gradient wrong".
        traceback.print_exc()
        raise UsageError(f"the check stopped: {type(error).__name__}: {error}") from error


@contextlib.contextmanager
def _dask_executor(address: str | None) -> Iterator[Executor | None]:
    """The executor of a Dask client connected to ``address`` (None without --scheduler)."""
    if address is None:
        yield None
        return
    from gradproof._extras import require

    try:
        require("dask")  # even where gradproof.dask is already imported, as in a test session
    except ImportError as error:
        raise UsageError(f"--scheduler: {error}") from error
    from gradproof.dask import connect

    with connect(address) as client:
        yield client.get_executor()


def load_target(target: str) -> tuple[Any, Any, Any]:
    """``(loss, params, grad)`` from ``path/to/file.py`` or ``path/to/file.py:name``.

    Raises:
        InvalidArgument: no such file, no such name, or not the three things needed.
        UsageError: importing the file, or calling the name, raised.
    """
    path_text, name = _split_target(target)
    path = Path(path_text)
    if not path.is_file():
        raise invalid("TARGET", target, f"{path_text} is not a file", "pass path/to/file.py[:name]")
    module = _import_file(path)
    if name is None:
        return _from_namespace(vars(module), f"{path_text} defines", target)
    if not hasattr(module, name):
        functions = sorted(
            k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
        )
        raise invalid(
            "TARGET",
            target,
            f"{path_text} defines no {name!r}",
            "name one of its functions: " + (", ".join(functions) or "(none)"),
        )
    found = getattr(module, name)
    try:
        result = found() if callable(found) else found
    except Exception as error:
        traceback.print_exc()
        raise UsageError(
            f"{target}: calling {name}() raised {type(error).__name__}: {error}. Fix: make "
            f"{name}() run on its own (python -c 'import ...; {name}()')"
        ) from error
    if isinstance(result, Mapping):
        return _from_namespace(result, f"{name}() returned a dict with", target)
    if isinstance(result, (tuple, list)) and len(result) == 3:
        return result[0], result[1], result[2]
    raise invalid(
        "TARGET",
        target,
        f"{name}() must return (loss, params, grad) or a dict with those keys, "
        f"not {type(result).__name__}",
        "end it with `return loss, params, grad`",
    )


def _split_target(target: str) -> tuple[str, str | None]:
    head, sep, tail = target.rpartition(":")
    if sep and tail.isidentifier() and head:
        return head, tail
    return target, None


def _import_file(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_gradproof_target_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise invalid("TARGET", str(path), "cannot be imported", "pass a .py file")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        traceback.print_exc()
        raise UsageError(f"importing {str(path)!r} raised {type(error).__name__}") from error
    finally:
        sys.path.remove(folder)
    return module


def _from_namespace(namespace: Mapping[str, Any], where: str, target: str) -> tuple[Any, ...]:
    grad_key = "grads" if "grads" in namespace and "grad" not in namespace else "grad"
    missing = [k for k in ("loss", "params", grad_key) if k not in namespace]
    if missing:
        raise invalid(
            "TARGET",
            target,
            f"{where} no {', '.join(repr(k) for k in missing)}",
            "define `loss`, `params` and `grad`, or a function returning them and pass "
            "path/to/file.py:name",
        )
    return namespace["loss"], namespace["params"], namespace[grad_key]


def _write_outputs(report: Any, args: argparse.Namespace) -> None:
    if args.json not in (None, "-"):
        Path(args.json).write_text(report.to_json() + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.html is not None:
        Path(args.html).write_text(report.to_html(), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.plot is not None:
        from gradproof import plot

        path = Path(args.plot)
        scatter = path.with_name(f"{path.stem}-scatter{path.suffix}")
        plot.blocks(report, path=path)
        plot.scatter(report, path=scatter)
        print(f"wrote {path} and {scatter}", file=sys.stderr)


def _validate_output_paths(args: argparse.Namespace) -> None:
    outputs = [("--json", args.json), ("--html", args.html), ("--plot", args.plot)]
    for flag, where in outputs:
        if where in (None, "-"):
            continue
        folder = Path(where).resolve().parent
        if not folder.is_dir():
            raise invalid(
                flag,
                where,
                f"the folder {str(folder)!r} does not exist",
                "create it first, or write to an existing folder",
            )


def _validate_plot_path(plot: str) -> None:
    if Path(plot).suffix.lower() not in (".png", ".svg"):
        raise invalid("--plot", plot, "must end in .png or .svg", "pass --plot blocks.png")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(
            "--plot needs matplotlib, which is not installed. Fix: pip install 'gradproof[plot]'"
        )


def _console() -> Console:
    """Colour and the terminal's width on a TTY; plain text, 100 columns wide, when piped."""
    console = Console()
    return console if console.is_terminal else Console(width=100)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
