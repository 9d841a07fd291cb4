"""`khe-bayes --help` and `--version` answer at once (issue 13, item 5): the commands import PyMC
and the stages only when they run. Checked twice: by the modules a fresh interpreter has loaded
after answering (robust on a loaded machine), and by the wall time of the real executable."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pymc", "pytensor", "arviz", "numba", "nutpie", "dask", "distributed", "pandas", "scipy")
ANSWERS = [
    ["--help"],
    ["--version"],
    *([name, "--help"] for name in ("evidence", "reanalyze", "reconstruct", "audit", "fit", "sbc")),
]

LOADED = r"""
import json, sys
from khe_bayes.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("@@" + json.dumps(sorted(sys.modules)))
"""


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "khe-bayes"
    return [str(script)] if script.exists() else [sys.executable, "-m", "khe_bayes.cli"]


@pytest.mark.parametrize("argv", ANSWERS, ids=" ".join)
def test_help_and_version_load_none_of_the_stack(argv):
    proc = subprocess.run(
        [sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout.rsplit("@@", 1)[1])
    loaded = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    assert loaded == [], f"{' '.join(argv)} imported {loaded}"


@pytest.mark.parametrize("argv", [["--help"], ["--version"]], ids=" ".join)
def test_help_and_version_answer_in_under_a_second(argv):
    """Best of five runs of the installed executable, in CPU seconds of the child (user +
    system): the suite runs this beside its background reanalyses on two cores, where wall
    time measures the machine's load (a 0.35 s answer took 1.06-1.19 s of wall time there);
    the CPU time is what the command itself costs, and it is < 1 s only if no heavy library is
    imported (the test above names them)."""
    import resource

    times = []
    for _ in range(5):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([*console_script(), *argv], capture_output=True, timeout=60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert proc.returncode == 0
    assert min(times) < 1.0, f"khe-bayes {argv[0]} took {min(times):.2f} CPU s at best"


def test_every_option_has_help_text_that_shows_its_default():
    from khe_bayes.cli import DefaultsHelpFormatter, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, command in [("khe-bayes", parser), *sub.choices.items()]:
        formatter = DefaultsHelpFormatter(prog=name)
        for action in command._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if action.dest == "help" or isinstance(action, argparse._VersionAction):
                continue
            text = formatter._get_help_string(action)
            if not action.help:
                missing.append(f"{name} {action.option_strings[0]}: no help")
            takes_value = action.nargs != 0 or isinstance(action, argparse.BooleanOptionalAction)
            if takes_value and not action.required and "default" not in text:
                missing.append(f"{name} {action.option_strings[0]}: no default shown")
    assert missing == []


def test_quiet_is_accepted_before_and_after_the_command():
    from khe_bayes.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-q", "audit"]).quiet is True
    assert parser.parse_args(["audit", "--quiet"]).quiet is True
    assert parser.parse_args(["audit"]).quiet is False


def test_usage_errors_are_one_line():
    proc = subprocess.run(
        [*console_script(), "fit", "--chians", "2"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("khe-bayes: error: "), (
        proc.stderr
    )


def test_quiet_prints_nothing_but_writes_the_result(tmp_path, capsys):
    from khe_bayes.cli import main

    assert main(["-q", "reconstruct", "--datasets", "1", "--out", str(tmp_path / "rec")]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
    assert (tmp_path / "rec" / "dataset_000.csv").exists()


def test_the_cli_copy_of_the_number_of_ranks_is_right():
    from khe_bayes.commands.sbc import N_RANKS
    from khe_bayes.toolkit.sbc import N_RANKS as USED

    assert N_RANKS == USED


def test_warnings_go_to_stderr_and_results_to_stdout_and_files(tmp_path):
    """A deliberately short fit converges poorly: the warning is on stderr, the summary on
    stdout, and the result directory has normal permissions (0777 minus the umask)."""
    out = tmp_path / "run"
    spec = Path(__file__).resolve().parents[1] / "models" / "normal_eight_schools.toml"
    tiny = ["--draws", "20", "--tune", "20", "--chains", "2", "--seed", "1", "--no-progress"]
    proc = subprocess.run(
        [*console_script(), "fit", str(spec), "--out", str(out), *tiny],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "khe-bayes: warning: poor convergence" in proc.stderr
    assert "warning" not in proc.stdout
    assert "mu" in proc.stdout  # the summary table
    assert out.stat().st_mode & 0o777 == 0o755
