"""The `gradproof` command line: ``gradproof check`` for CI, ``gradproof demo`` to see it work.

Exit codes (``gradproof check``): 0 the gradient passed, 1 it failed, 2 the
check was inconclusive or the command was misused; 141 (any command): stdout's reader left.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from gradproof._errors import GradproofError, InvalidArgument, invalid

EXIT = {"pass": 0, "fail": 1, "inconclusive": 2}
USAGE = 2
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a command killed by it

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
function grad(params) returning it; `grads` is accepted too). With a name
(dotted, too: file.py:Problem.build), name() must return (loss, params, grad), or
a dict with those keys. What the file prints goes to stderr: stdout is the report.

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

TARGET_RULE = (
    "a target is a function returning (loss, params, grad) or a dict of them, or a file "
    "defining `loss`, `params` and `grad`"
)
OUTPUTS = {"--json": "report.json", "--html": "report.html", "--plot": "blocks.png"}


class UsageError(Exception):
    """The command cannot run as given; the message says why and what to do.

    A misused argument raises :class:`gradproof.InvalidArgument` (argument, value, rule, fix).
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (141 where stdout's reader went away)."""
    try:
        try:
            return _main(argv)
        finally:  # in the try: a report (or --help) still buffered meets a closed pipe here
            sys.stdout.flush()
    except BrokenPipeError:  # `gradproof demo | head`: quiet, 128 + SIGPIPE as a shell says
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


def _main(argv: Sequence[str] | None) -> int:
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

    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="gradproof",
        description="Proof that a gradient is right, or where and how it is wrong.",
        epilog=MAIN_EPILOG,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"gradproof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="check the notebook's fraud-detection example, with its planted bugs and without",
        description=DEMO_HELP,
        formatter_class=raw,
    )
    demo.set_defaults(run=_demo)
    check = sub.add_parser(
        "check",
        help="check the gradient defined in a Python file (exit 0 pass, 1 fail, 2 other)",
        description=CHECK_HELP,
        epilog=CHECK_EXAMPLES,
        formatter_class=raw,
    )
    _add_check_arguments(check)
    check.set_defaults(run=_check)
    return parser


def _add_check_arguments(check: argparse.ArgumentParser) -> None:
    # Imports numpy: here rather than at the top, so that importing this module stays cheap.
    from gradproof._engine.validate import MODES, SCHEME_NAMES

    add = check.add_argument
    add("target", metavar="TARGET", help="path/to/file.py or path/to/file.py:name")
    add("--mode", choices=MODES, help="every coordinate (full), a sample, or directions (probe)")
    add("--eps", type=float, help="one fixed central-difference step, e.g. 1e-7")
    add("--tol", type=float, help="a bound on the relative difference ||g - n|| / (||g|| + ||n||)")
    add("--scheme", choices=SCHEME_NAMES, help="the finite-difference scheme (default: auto)")
    add("--budget", help="stop after this much: seconds ('30s') or loss evaluations ('5000')")
    add("--samples", type=int, help="coordinates (sample) or directions (probe) per block")
    add("--seed", type=int, help="the seed for sampled and probed checks")
    add("--workers", type=int, help="evaluate the loss in this many processes")
    add("--json", metavar="PATH", help="write the report as JSON ('-': stdout)")
    add("--html", metavar="PATH", help="write a self-contained HTML report")
    add("--plot", metavar="PATH", help="the block chart (.png/.svg) and a scatter (matplotlib)")
    add("--scheduler", metavar="ADDRESS", help="evaluate on a Dask cluster: tcp://127.0.0.1:8786")


def _demo(args: argparse.Namespace) -> int:
    from gradproof._demo import run_demo
    from gradproof._render.text import terminal_console

    run_demo(terminal_console())
    return 0


def _check(args: argparse.Namespace) -> int:
    from gradproof._render.text import print_report, terminal_console

    _validate_output_paths(args)  # before the check: a long check must not end in "no such folder"
    with _user_output_to_stderr():
        loss, params, grad = load_target(args.target)
        with _dask_executor(args.scheduler) as executor:
            report = _run_check(loss, params, grad, _options(args, executor))
    if args.json == "-":
        print(report.to_json())
    else:
        print_report(report, terminal_console())
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
    names = ("mode", "eps", "tol", "scheme", "budget", "samples", "seed", "workers")
    given = {name: getattr(args, name) for name in names} | {"executor": executor}
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
def _user_output_to_stderr() -> Iterator[None]:
    """Send what the target prints (at import, in its loss) to stderr: stdout holds the report.

    Its file descriptor too, where it has one: output from C code or a subprocess moves too.
    """
    sys.stdout.flush()
    try:
        out, saved = sys.stdout.fileno(), os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), out)
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (StringIO)
        out, saved = -1, None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, out)
            os.close(saved)


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

    ``name`` may be dotted (``file.py:Problem.build``): a function of no arguments
    returning the three (or a dict of them), or the tuple or dict itself.

    Raises:
        InvalidArgument: no such file or attribute, or not the three things needed.
        UsageError: importing the file, or calling the name, raised.
    """
    path_text, name = _split_target(target)
    if not Path(path_text).is_file():
        raise invalid("TARGET", target, f"{path_text} is not a file", "pass path/to/file.py[:name]")
    module = _import_file(Path(path_text))
    if name is None:
        return _from_namespace(vars(module), f"{path_text} defines", target)
    found = _resolve(module, name, path_text, target)
    result = _call(found, name, target) if callable(found) else found
    what = f"{name}() returned" if callable(found) else f"{name} is"
    if isinstance(result, (tuple, list)) and len(result) == 3:
        return result[0], result[1], result[2]
    if isinstance(result, Mapping) and {"loss", "params"} & set(result):
        return _from_namespace(result, f"{what} a dict with", target)
    fix = f"pass {path_text} alone: it defines `loss`, `params` and `grad`"
    if not {"loss", "params", "grad"} <= set(vars(module)):
        fix = "name a function that ends with `return loss, params, grad`"
    raise invalid("TARGET", target, f"{what} {_describe(result)}; {TARGET_RULE}", fix)


def _split_target(target: str) -> tuple[str, str | None]:
    """``("file.py", "a.b")`` for ``"file.py:a.b"``; a file with a colon in its name is kept."""
    head, sep, tail = target.rpartition(":")
    named = sep and head and all(p.isidentifier() for p in tail.split("."))
    return (head, tail) if named and not Path(target).is_file() else (target, None)


def _resolve(module: Any, name: str, path_text: str, target: str) -> Any:
    """``module.a.b`` for ``name="a.b"``, or an error naming the attribute not found."""
    found, where = module, path_text
    for part in name.split("."):
        if not hasattr(found, part):
            rule = f"{where} {'defines no' if found is module else 'has no attribute'} {part!r}"
            names = [k for k in dir(found) if found is not module or callable(vars(module)[k])]
            listed = ", ".join(sorted(k for k in names if not k.startswith("_"))[:12])
            raise invalid("TARGET", target, rule, f"name one of: {listed or '(none)'}")
        found, where = getattr(found, part), f"{where}{':' if found is module else '.'}{part}"
    return found


def _call(found: Any, name: str, target: str) -> Any:
    """``found()``, where the user's error shows with its traceback and what to do."""
    try:
        return found()
    except Exception as error:
        traceback.print_exc()
        raise UsageError(
            f"{target}: calling {name}() raised {type(error).__name__}: {error}. Fix: name a "
            "function that takes no arguments and returns (loss, params, grad), and make it run "
            f"on its own (python -c 'import ...; {name}()')"
        ) from error


def _describe(value: Any) -> str:
    """``"a dict with keys 'w', 'b'"``, ``"a tuple of 2 items"``, ``"42 (type int)"``."""
    kind = type(value).__name__
    if isinstance(value, Mapping):
        return f"a {kind} with keys {', '.join(map(repr, list(value)[:6]))}"
    if isinstance(value, (tuple, list)):
        return f"a {kind} of {len(value)} items"
    plain = type(value).__repr__ is object.__repr__  # "<... object at 0x...>" says no more
    return f"an object of type {kind}" if plain else f"{repr(value)[:60]} (type {kind})"


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
        rule = f"{where} no {', '.join(repr(k) for k in missing)}"
        fix = "define `loss`, `params` and `grad`, or pass file.py:name, naming a function "
        raise invalid("TARGET", target, rule, fix + "that returns them")
    return namespace["loss"], namespace["params"], namespace[grad_key]


def _outputs(args: argparse.Namespace) -> list[tuple[str, str, Path]]:
    """Every file the command writes: (its flag, the path given, the path written)."""
    given = [("--json", None if args.json == "-" else args.json), ("--html", args.html)]
    written = [(flag, where, Path(where)) for flag, where in given if where is not None]
    if args.plot is not None:
        path = Path(args.plot)
        scatter = path.with_name(f"{path.stem}-scatter{path.suffix}")
        written += [("--plot", args.plot, path), ("--plot", args.plot, scatter)]
    return written


def _write_outputs(report: Any, args: argparse.Namespace) -> None:
    if args.json not in (None, "-"):
        Path(args.json).write_text(report.to_json() + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.html is not None:
        Path(args.html).write_text(report.to_html(), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.plot is not None:
        from gradproof import plot

        (*_, path), (*_, scatter) = _outputs(args)[-2:]
        plot.blocks(report, path=path)
        plot.scatter(report, path=scatter)
        print(f"wrote {path} and {scatter}", file=sys.stderr)


def _validate_output_paths(args: argparse.Namespace) -> None:
    """Every output goes to an existing folder and overwrites neither the target nor another.

    Paths are compared resolved (``./r.json`` is ``r.json``), and as files where both exist.
    """
    if args.plot is not None and Path(args.plot).suffix.lower() not in (".png", ".svg"):
        raise invalid("--plot", args.plot, "must end in .png or .svg", "pass --plot blocks.png")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib. Fix: pip install 'gradproof[plot]'")
    code = "the file being checked: the report would overwrite its code"
    taken = [(code, Path(_split_target(args.target)[0]))]
    for flag, where, path in _outputs(args):
        if not (folder := path.resolve().parent).is_dir():
            rule = f"the folder {str(folder)!r} does not exist"
            raise invalid(flag, where, rule, "create it first, or write to an existing folder")
        for owner, other in taken:
            if path.resolve() == other.resolve() or (
                path.exists() and other.exists() and os.path.samefile(path, other)
            ):
                rule = "" if path == Path(where) else f"writes {path}, which "  # --plot's scatter
                fix = f"give {flag} a file of its own, e.g. {flag} {OUTPUTS[flag]}"
                raise invalid(flag, where, f"{rule}is {owner}", fix)
        taken.append((f"where {flag} writes: one output would overwrite the other", path))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
