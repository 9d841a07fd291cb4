"""Command-line entry point: ``khe-bayes <command>``.

Each command lives in ``khe_bayes/commands/<name>.py`` with a ``register(subparsers)`` function
that adds its parser and sets ``func``. Bad input ends with a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from khe_bayes import __version__
from khe_bayes.errors import InputError, OutputExistsError

# The explicit list of command modules (no discovery by import path from files).
COMMANDS = ["evidence", "reanalyze", "reconstruct", "audit", "fit", "sbc"]

EXIT_INPUT = 2
EXIT_STRICT = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="khe-bayes",
        description="Bayesian reanalysis of the sirolimus-for-KHE cohort (Int J Cancer 2017).",
    )
    parser.add_argument("--version", action="version", version=f"khe-bayes {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"khe_bayes.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, OutputExistsError) as exc:
        print(f"khe-bayes: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("khe-bayes: interrupted; no output was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
