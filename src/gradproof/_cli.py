"""The `gradproof` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

DEMO_HELP = """\
Check the seeds' fraud-detection network (LINEAR->RELU->LINEAR->RELU->LINEAR->SIGMOID):
first its backprop with the two planted bugs, then the corrected one.

example:
  gradproof demo
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.run(args))


def _parser() -> argparse.ArgumentParser:
    from gradproof import __version__

    parser = argparse.ArgumentParser(
        prog="gradproof",
        description="Proof that a gradient is right, or where and how it is wrong.",
        epilog="example:\n  gradproof demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"gradproof {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="check the seeds' network, with its planted bugs and without",
        description=DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.set_defaults(run=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    from gradproof._demo import run_demo

    run_demo(_console())
    return 0


def _console() -> Console:
    """Colour and the terminal's width on a TTY; plain text, 100 columns wide, when piped."""
    console = Console()
    return console if console.is_terminal else Console(width=100)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
