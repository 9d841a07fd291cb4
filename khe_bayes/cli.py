"""Command-line entry point: ``khe-bayes <command>``.

Each command lives in ``khe_bayes/commands/<name>.py`` with a ``register(subparsers)`` function
that adds its parser and sets ``func``. Command modules import PyMC, ArviZ and the rest only
inside ``run``, so ``--help`` and ``--version`` answer without loading them.

Errors: bad input (``InputError``), an output that may not be written and any ``OSError`` end
with one line on stderr and exit code 2; Ctrl-C ends with one line and exit code 130, and no
result is written (see interrupts.py). Results go to files and stdout; progress and warnings
(e.g. poor convergence) go to stderr; ``-q`` silences progress but not warnings or errors.
"""

from __future__ import annotations

import argparse
import sys

from khe_bayes.toolkit import interrupts

# The explicit list of command modules (no discovery by import path from files).
COMMANDS = ["evidence", "reanalyze", "reconstruct", "audit", "fit", "sbc"]

EXIT_INPUT = 2
EXIT_STRICT = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process ended by Ctrl-C


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``khe-bayes: error: argument --seed: ...``), exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_INPUT, f"khe-bayes: error: {' '.join(message.split())}\n")


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or action.required:
            return text
        if (action.option_strings and action.nargs != 0) or isinstance(
            action, argparse.BooleanOptionalAction
        ):
            return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from khe_bayes import __version__

    parser = OneLineParser(
        prog="khe-bayes",
        description="Bayesian reanalysis of the sirolimus-for-KHE cohort (Int J Cancer 2017).",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"khe-bayes {__version__}")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress messages or progress bars (warnings and errors still go to stderr)",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser
    )
    for name in COMMANDS:
        importlib.import_module(f"khe_bayes.commands.{name}").register(sub)
    for command in sub.choices.values():
        command.formatter_class = DefaultsHelpFormatter
        if not any("--quiet" in a.option_strings for a in command._actions):
            command.add_argument(
                "-q",
                "--quiet",
                action="store_true",
                default=argparse.SUPPRESS,
                help="same as khe-bayes -q",
            )
    return parser


def quiet_down() -> None:
    """-q: library progress logging (PyMC's "NUTS: [...]", nutpie's bars) off."""
    import logging

    for name in ("pymc", "pytensor", "distributed", "nutpie"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    restore = interrupts.install()  # first: Ctrl-C from now on ends with one line
    interrupts.die_with_parent()
    try:
        return _run(argv)
    finally:
        restore()
        outputs = sys.modules.get("khe_bayes.toolkit.outputs")
        if outputs is not None:
            outputs.release_all()


def _run(argv: list[str] | None) -> int:
    from khe_bayes.toolkit.errors import InputError, OutputError, describe_os_error

    try:
        args = build_parser().parse_args(argv)
        if args.quiet:
            quiet_down()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("khe-bayes: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (InputError, OutputError) as exc:
        print(f"khe-bayes: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # a full disk, a read-only or vanished directory, a broken pipe
        print(f"khe-bayes: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
