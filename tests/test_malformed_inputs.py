"""Malformed inputs to `khe-bayes reanalyze --ipd` and `khe-bayes fit`, and runs killed mid-way.

Every file in tests/corpus/ipd/*.csv and tests/corpus/specs/*.toml is one malformed input (the
huge, missing and directory inputs are made in tmp_path). Each must be answered by exit code 2,
exactly one line on stderr naming the file (and the row and column, or the key, where the problem
is in one), nothing on stdout, no traceback, and nothing written: the --out directory does not
exist afterwards and the working directory is unchanged.

Speed: importing PyMC costs ~4 s per process, too slow for ~50 cases. The corpus cases therefore
run in processes forked from one interpreter that has imported the CLI once (see SERVER): each
case is still its own process, running ``khe_bayes.cli:main`` with its own stdout, stderr, exit
code and working directory, as the console script does. In that interpreter ``pymc.sample`` and
nutpie's compile/sample are replaced by a guard that raises, so a case that starts sampling
before rejecting its input fails the test (with a traceback naming the guard) instead of
sampling. ``test_console_script_*`` runs a few cases through the real ``khe-bayes`` executable to
check that nothing printed at import time breaks the one-line rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from khe_bayes.study.ipd import MAX_BYTES

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"
IPD_CORPUS = CORPUS / "ipd"
SPEC_CORPUS = CORPUS / "specs"
EIGHT_SCHOOLS = REPO / "models" / "normal_eight_schools.toml"
GOOD_IPD = REPO / "models" / "data" / "khe_reconstructed_seed20170815.csv"
OUT = "results/run"  # relative to the case's working directory: its parent must not appear


@dataclass(frozen=True)
class Expect:
    """What the one error line must say: a fragment of the message and the exact location.

    ``names`` is the file the error must name, relative to the corpus file's directory (None: the
    corpus file itself); ``row``/``column``/``key`` are None when the line must not give one.
    """

    fragment: str
    row: int | None = None
    column: str | None = None
    key: str | None = None
    names: str | None = None


IPD_EXPECT: dict[str, Expect] = {
    "missing_column_arm.csv": Expect("missing column(s) ['arm']", 1, "arm"),
    "extra_column_colour.csv": Expect("unknown column(s) ['colour']", 1, "colour"),
    "non_numeric_age.csv": Expect("'six' is not a number", 4, "age_months"),
    "age_nan.csv": Expect("'nan' is not a finite number", 8, "age_months"),
    "age_zero.csv": Expect("age must be above 0 months", 3, "age_months"),
    "negative_age.csv": Expect("-3.5 is outside 0 to 216", 7, "age_months"),
    "severity_out_of_range.csv": Expect("11 is outside 0 to 10", 5, "severity_0m"),
    "severity_not_integer.csv": Expect("'2.5' is not an integer", 9, "severity_12m"),
    "response_not_binary.csv": Expect("'2' is not 0 or 1", 6, "response_6m"),
    "shrinkage_out_of_range.csv": Expect("250 is outside -100 to 100", 10, "shrinkage_12m"),
    "unknown_arm.csv": Expect("'steroids' is not one of", 11, "arm"),
    "empty_required_center.csv": Expect("empty value in a required column", 12, "center"),
    "duplicate_patient_id.csv": Expect("duplicate patient_id 'P002'", 6, "patient_id"),
    "combination_without_kmp.csv": Expect("combination therapy without KMP", 39, "arm"),
    "ragged_row.csv": Expect("12 fields where the header has 11", 5),
    "empty.csv": Expect("file is empty"),
    "blank_lines.csv": Expect("file is empty"),
    "header_only.csv": Expect("no patient rows"),
    "latin1_encoded.csv": Expect("not UTF-8 text (byte 0xf4)", 8, "center"),
    "utf16_encoded.csv": Expect("UTF-16 text"),
    "bom_then_latin1_byte.csv": Expect("not UTF-8 text (byte 0xf4)", 5, "center"),
    # issue 16: control characters are not a new center, and not a finite number is not one
    "center_with_nul.csv": Expect("control character \\x00", 4, "center"),
    "center_with_escape.csv": Expect("control character \\x1b", 6, "center"),
    "patient_id_bidi_override.csv": Expect("control character \\u202e", 9, "patient_id"),
    "age_infinite.csv": Expect("'inf' is not a finite number", 5, "age_months"),
}

SPEC_EXPECT: dict[str, Expect] = {
    "unknown_top_level_key.toml": Expect("unknown key", key="colour"),
    "unknown_prior_key.toml": Expect("unknown key", key="priors.tau_sd"),
    "unknown_sampler_key.toml": Expect("unknown key", key="sampler.iterations"),
    "unknown_prior_distribution.toml": Expect(
        "unknown prior distribution 'HalfCauchyy'", key="priors.tau"
    ),
    "bad_prior_parameter_name.toml": Expect("unknown parameter(s) ['scale']", key="priors.tau"),
    "negative_sigma.toml": Expect("sigma must be > 0, got -20", key="priors.mu"),
    "nan_sigma.toml": Expect("sigma must be finite, got nan", key="priors.mu"),
    "infinite_mu.toml": Expect("mu must be finite, got inf", key="priors.mu"),
    "prior_parameter_not_a_number.toml": Expect("sigma must be a number", key="priors.mu"),
    "tau_prior_not_positive.toml": Expect("must be on positive values", key="priors"),
    "tau_and_tau_variance.toml": Expect("not both", key="priors"),
    "unknown_family.toml": Expect("unknown family 'poisson'", key="family"),
    "family_not_a_string.toml": Expect("unknown family ['normal']", key="family"),
    "missing_family.toml": Expect("missing key 'family'", key="family"),
    "sampler_draws_zero.toml": Expect("greater than or equal to 10", key="sampler.draws"),
    "threshold_unknown_quantity.toml": Expect(
        "no variable 'mu_typo'", key="thresholds[1].quantity"
    ),
    "threshold_unknown_label.toml": Expect(
        "'Z' is not a group label", key="thresholds[1].quantity"
    ),
    "threshold_vector_without_label.toml": Expect("name one element", key="thresholds[1].quantity"),
    "toml_syntax_error.toml": Expect("not valid TOML (Unclosed inline table (at line 8"),
    "latin1_encoded.toml": Expect("not UTF-8 text (byte 0xe9 on line 5)"),
    "missing_data_file.toml": Expect(
        "data file not found", names="../../../models/data/eight_schools_v2.csv"
    ),
    "data_is_a_directory.toml": Expect("is a directory", names="data"),
    "data_bad_value.toml": Expect("0 must be > 0", 4, "se", names="data/eight_schools_bad_se.csv"),
    "ipd_family_bad_severity.toml": Expect(
        "11 is outside 0 to 10", 5, "severity_0m", names="../ipd/severity_out_of_range.csv"
    ),
    # issue 16: strict types (no string-to-number coercion), finite and sane values, printable
    # text; each names the key
    "sampler_draws_string.toml": Expect("got the string '1000'", key="sampler.draws"),
    "sampler_draws_float.toml": Expect("valid integer, got 1000.0", key="sampler.draws"),
    "sampler_progressbar_string.toml": Expect("got the string 'yes'", key="sampler.progressbar"),
    "sampler_seed_negative.toml": Expect("greater than or equal to 0, got -1", key="sampler.seed"),
    "sampler_chains_1000.toml": Expect("less than or equal to 64, got 1000", key="sampler.chains"),
    "sampler_target_accept_nan.toml": Expect("target_accept must be finite", key="sampler"),
    "prior_sigma_huge.toml": Expect("sigma = 1e+308 is out of range", key="priors.mu"),
    "prior_sigma_absurd.toml": Expect("sigma = 1e+09 is absurd", key="priors.mu"),
    "prior_sigma_string.toml": Expect("sigma must be a number, got '20'", key="priors.mu"),
    "reported_lower_string.toml": Expect("got the string '-0.3'", key="reported[1].lower"),
    "reported_upper_infinite.toml": Expect("lower must be finite, got -inf", key="reported[1]"),
    "threshold_value_string.toml": Expect("got the string '0'", key="thresholds[1].value"),
    "threshold_label_escape.toml": Expect("control character \\x1b", key="thresholds[1].label"),
    "description_nul.toml": Expect("control character \\x00", key="description"),
    "name_bidi_override.toml": Expect("control character \\u202e", key="name"),
    "group_label_control_character.toml": Expect(
        "control character \\x01", 4, "group", names="data/eight_schools_control_label.csv"
    ),
}

# Inputs made in tmp_path rather than committed: (command, name, make(dir) -> path, Expect).
GENERATED = {
    "ipd:huge": ("ipd", lambda d: _huge_ipd(d / "huge.csv"), Expect("larger than 50 MB")),
    "ipd:missing": ("ipd", lambda d: d / "no_such.csv", Expect("file not found")),
    "ipd:directory": ("ipd", lambda d: _mkdir(d / "a_dir.csv"), Expect("is a directory")),
    "spec:missing": ("spec", lambda d: d / "no_such.toml", Expect("file not found")),
    "spec:directory": ("spec", lambda d: _mkdir(d / "a_dir.toml"), Expect("is a directory")),
    # issue 16: a symlink loop is a symlink loop, not "not found"
    "ipd:symlink_loop": ("ipd", lambda d: _loop(d / "loop.csv"), Expect("symbolic link loop")),
    "spec:symlink_loop": ("spec", lambda d: _loop(d / "loop.toml"), Expect("symbolic link loop")),
    "spec:data_symlink_loop": (
        "spec",
        lambda d: _spec_with_data(d, _loop(d / "loop_data.csv")),
        Expect("symbolic link loop", names="loop_data.csv"),
    ),
}


def _loop(path: Path) -> Path:
    """``path`` -> ``path.other`` -> ``path``: opening either fails with ELOOP."""
    other = path.with_name(path.name + ".other")
    path.symlink_to(other.name)
    other.symlink_to(path.name)
    return path


def _spec_with_data(folder: Path, data: Path) -> Path:
    spec = folder / "spec.toml"
    text = EIGHT_SCHOOLS.read_text().replace(
        'data = "data/eight_schools.csv"', f'data = "{data.name}"'
    )
    spec.write_text(text)
    return spec


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _huge_ipd(path: Path) -> Path:
    """A valid-looking CSV just over the size limit (sparse: the tail is a hole of zeros)."""
    path.write_bytes(GOOD_IPD.read_bytes())
    with open(path, "r+b") as fh:
        fh.truncate(MAX_BYTES + 1)
    return path


# --- the fork server -------------------------------------------------------------------------

SERVER = r"""
import json, os, signal, sys, traceback
from khe_bayes.cli import build_parser, main
build_parser()  # imports every command module once, before any fork
# the commands import PyMC and the stages lazily (so --help is fast): import them here, once
import khe_bayes.families, khe_bayes.study.reanalysis
import khe_bayes.toolkit.sampling, khe_bayes.toolkit.spec_ppc

def _guard(*args, **kwargs):
    raise AssertionError("test guard: sampling started before the input was rejected")

import pymc
pymc.sample = _guard
try:
    import nutpie
    nutpie.sample = nutpie.compile_pymc_model = _guard
except ImportError:
    pass

proto = os.fdopen(os.dup(1), "w")
print("@@ready", file=proto, flush=True)
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(60)  # a case that hangs dies with SIGALRM instead of hanging the test
            os.chdir(req["cwd"])
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, key in ((1, "stdout"), (2, "stderr")):
                f = os.open(req[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            sys.argv = ["khe-bayes", *req["argv"]]
            try:
                code = main()  # the console script runs sys.exit(main())
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()  # what the interpreter does with an uncaught exception
                code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    print("@@" + json.dumps({"code": os.waitstatus_to_exitcode(status)}), file=proto, flush=True)
"""


class ForkServer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self._reply() == "ready"

    def _reply(self) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"fork server exited with {self.proc.wait()}")
            if line.startswith("@@"):
                return line[2:].strip()

    def run(self, argv: list[str], cwd: Path, logs: Path) -> tuple[int, str, str]:
        out, err = logs / "stdout", logs / "stderr"
        request = {"argv": argv, "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        code = json.loads(self._reply())["code"]
        return code, out.read_text(errors="replace"), err.read_text(errors="replace")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    srv = ForkServer()
    yield srv
    srv.close()


# --- checks --------------------------------------------------------------------------------

LINE = re.compile(
    r"^khe-bayes: error: (?P<file>.+?)(?:, row (?P<row>\d+))?(?:, column '(?P<column>[^']*)')?"
    r"(?:, key '(?P<key>[^']*)')?: (?P<message>.+)$"
)


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.lstat().st_size for p in root.rglob("*")}


def argv_for(kind: str, path: Path) -> list[str]:
    if kind == "ipd":
        return ["reanalyze", "--ipd", str(path), "--out", OUT, "--no-progress"]
    return ["fit", str(path), "--out", OUT, "--no-progress"]


def check_rejected(code: int, stdout: str, stderr: str, path: Path, expect: Expect) -> None:
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, stderr
    assert stdout == ""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not one line: {stderr!r}"
    match = LINE.match(stderr.rstrip("\n"))
    assert match, stderr
    named = path.parent / expect.names if expect.names else path
    assert os.path.normpath(match["file"]) == os.path.normpath(named), stderr
    assert match["row"] == (None if expect.row is None else str(expect.row)), stderr
    assert match["column"] == expect.column, stderr
    assert match["key"] == expect.key, stderr
    assert expect.fragment in match["message"], stderr


def run_case(server, tmp_path, kind: str, path: Path, expect: Expect) -> None:
    """Run one case with tmp_path/work as its working directory and --out results/run."""
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir()
    logs.mkdir()

    def written() -> dict[str, int]:  # everything under tmp_path but the captured stdout/stderr
        return {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("logs")}

    before, corpus_before = written(), snapshot(CORPUS)
    code, stdout, stderr = server.run(argv_for(kind, path), work, logs)
    check_rejected(code, stdout, stderr, path, expect)
    assert not (work / OUT).exists()
    assert written() == before, "something was written in tmp_path"
    assert snapshot(CORPUS) == corpus_before, "something was written into the corpus"


def corpus_files(directory: Path, suffix: str) -> list[Path]:
    return sorted(directory.glob(f"*{suffix}"))


def test_every_corpus_file_has_an_expectation_and_vice_versa():
    assert {p.name for p in corpus_files(IPD_CORPUS, ".csv")} == set(IPD_EXPECT)
    assert {p.name for p in corpus_files(SPEC_CORPUS, ".toml")} == set(SPEC_EXPECT)


@pytest.mark.parametrize("path", corpus_files(IPD_CORPUS, ".csv"), ids=lambda p: p.name)
def test_reanalyze_rejects_malformed_ipd(server, tmp_path, path):
    run_case(server, tmp_path, "ipd", path, IPD_EXPECT[path.name])


@pytest.mark.parametrize("path", corpus_files(SPEC_CORPUS, ".toml"), ids=lambda p: p.name)
def test_fit_rejects_malformed_spec(server, tmp_path, path):
    run_case(server, tmp_path, "spec", path, SPEC_EXPECT[path.name])


@pytest.mark.parametrize("case", sorted(GENERATED))
def test_generated_inputs_are_rejected(server, tmp_path, case):
    kind, make, expect = GENERATED[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    run_case(server, tmp_path, kind, make(inputs), expect)


# --- options, output directories and the environment (issue 16) ----------------------------

FIT = ["fit", str(EIGHT_SCHOOLS), "--no-progress"]
REANALYZE = ["reanalyze", "--no-progress"]

# Bad option values: (argv, fragment of the one error line). Each names the option and the rule.
OPTION_CASES = {
    "seed_negative": ([*FIT, "--out", OUT, "--seed", "-1"], "--seed: input should be greater"),
    "seed_too_large": ([*FIT, "--out", OUT, "--seed", str(2**40)], "--seed: input should be less"),
    "seed_not_integer": ([*FIT, "--out", OUT, "--seed", "1.5"], "argument --seed: invalid int"),
    "chains_1000": ([*FIT, "--out", OUT, "--chains", "1000"], "each chain is a process"),
    "cores_zero": ([*FIT, "--out", OUT, "--cores", "0"], "--cores: input should be greater"),
    "draws_absurd": ([*FIT, "--out", OUT, "--draws", "10000000000"], "--draws: input should be"),
    "concentration_nan": (
        [*REANALYZE, "--out", OUT, "--center-concentration", "nan"],
        "argument --center-concentration: must be a finite number",
    ),
    "concentration_negative": (
        [*REANALYZE, "--out", OUT, "--center-concentration", "-1"],
        "argument --center-concentration: must be > 0",
    ),
    "shares_inf": (
        [*REANALYZE, "--out", OUT, "--centers", "2", "--center-shares", "1,inf"],
        "--center-shares: 'inf': must be a finite number",
    ),
    "shares_count": (
        [*REANALYZE, "--out", OUT, "--center-shares", "1,2"],
        "--center-shares: 2 shares for 6 centers",
    ),
    "centers_too_many": ([*REANALYZE, "--out", OUT, "--centers", "1000"], "--centers: must be"),
    "datasets_zero": ([*REANALYZE, "--out", OUT, "--datasets", "0"], "--datasets: must be"),
    "workers_zero": ([*REANALYZE, "--out", OUT, "--workers", "0"], "--workers: must be"),
    "unknown_option": ([*FIT, "--out", OUT, "--chians", "2"], "unrecognized arguments: --chians"),
    "sbc_alpha_nan": (
        ["sbc", str(EIGHT_SCHOOLS), "--out", OUT, "--alpha", "nan"],
        "argument --alpha: must be a finite number",
    ),
    "scheduler_refused": (
        [*REANALYZE, "--out", OUT, "--scheduler", "tcp://127.0.0.1:1"],
        "--scheduler tcp://127.0.0.1:1: cannot reach the Dask scheduler",
    ),
    "scheduler_malformed": (
        [*REANALYZE, "--out", OUT, "--scheduler", "localhost"],
        "expected tcp://HOST:PORT",
    ),
    "store_unwritable": (
        [*REANALYZE, "--out", OUT, "--workers", "1", "--store", "/proc/khe/store"],
        "--store /proc/khe/store: cannot write in /proc",
    ),
    "sbc_scheduler_refused": (
        ["sbc", str(EIGHT_SCHOOLS), "--out", OUT, "--scheduler", "tcp://127.0.0.1:1"],
        "cannot reach the Dask scheduler",
    ),
}


def _manifest_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    return path


def _non_result(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    return path


# --out problems: name -> (make(work) -> the --out argument, extra argv, fragment). The run's
# working directory is ``work``; nothing anywhere under tmp_path may change.
OUTPUT_CASES = {
    "dot": (lambda w: ".", ["--overwrite"], "it is the current directory"),
    "dot_without_overwrite": (lambda w: ".", [], "it is the current directory"),
    "parent_of_cwd": (lambda w: "..", ["--overwrite"], "it contains the current directory"),
    "root": (lambda w: "/", ["--overwrite"], "it is the root directory"),
    "home": (lambda w: str(Path.home()), ["--overwrite"], "home directory"),
    "non_result": (
        lambda w: str(_non_result(w / "mine")),
        ["--overwrite"],
        "is not a khe-bayes result (no manifest.json)",
    ),
    "regular_file": (
        lambda w: _touch(w / "notes.txt"),
        ["--overwrite"],
        "exists and is a file, not a directory",
    ),
    "existing_result_without_overwrite": (
        lambda w: str(_manifest_dir(w / "old")),
        [],
        "output directory exists; pass --overwrite",
    ),
    "symlink": (
        lambda w: _symlink(w / "link", _manifest_dir(w / "target")),
        ["--overwrite"],
        "is a symbolic link",
    ),
    "under_a_file": (lambda w: f"{_touch(w / 'afile')}/out", [], "is not a directory"),
}


def _touch(path: Path) -> str:
    path.write_text("x")
    return str(path)


def _symlink(link: Path, target: Path) -> str:
    link.symlink_to(target)
    return str(link)


def run_cli_case(server, tmp_path, argv_for_work, fragment: str) -> None:
    """``argv_for_work(work)`` -> argv; the run must end with one error line naming the problem
    (exit 2, nothing on stdout, no traceback) and change nothing under tmp_path."""
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir()
    logs.mkdir()
    argv = argv_for_work(work)

    def written() -> dict[str, int]:
        return {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("logs")}

    before = written()
    code, stdout, stderr = server.run(argv, work, logs)
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, stderr
    assert stdout == ""
    assert stderr.startswith("khe-bayes: error: ") and stderr.count("\n") == 1, repr(stderr)
    assert fragment in stderr, stderr
    assert written() == before, "something was written in tmp_path"


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_bad_option_values_name_the_option_and_rule(server, tmp_path, case):
    argv, fragment = OPTION_CASES[case]
    run_cli_case(server, tmp_path, lambda _work: argv, fragment)


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_output_directories_that_may_not_be_written(server, tmp_path, case):
    make, extra, fragment = OUTPUT_CASES[case]
    run_cli_case(server, tmp_path, lambda work: [*FIT, "--out", make(work), *extra], fragment)


def test_non_result_and_dot_are_refused_by_reanalyze_too(server, tmp_path):
    run_cli_case(
        server,
        tmp_path,
        lambda work: [*REANALYZE, "--out", str(_non_result(work / "x")), "--overwrite"],
        "is not a khe-bayes result",
    )


def test_the_corpus_ipd_source_itself_is_valid():
    """The corpus files are edits of this file, so each is wrong only where it was edited."""
    from khe_bayes.study.ipd import load_ipd

    assert len(load_ipd(GOOD_IPD)) == 52


# --- the real console script ---------------------------------------------------------------


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "khe-bayes"
    return [str(script)] if script.exists() else [sys.executable, "-m", "khe_bayes.cli"]


def test_console_script_gives_one_line_too(tmp_path):
    """The same contract through the installed executable (fresh interpreter, real imports)."""
    cases = [
        ("ipd", IPD_CORPUS / "severity_out_of_range.csv", IPD_EXPECT["severity_out_of_range.csv"]),
        ("spec", SPEC_CORPUS / "nan_sigma.toml", SPEC_EXPECT["nan_sigma.toml"]),
    ]

    def run(case):
        kind, path, _ = case
        work = tmp_path / f"work_{kind}"
        work.mkdir()
        proc = subprocess.run(
            [*console_script(), *argv_for(kind, path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=work,
        )
        return work, proc

    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(run, cases))
    for (_, path, expect), (work, proc) in zip(cases, results, strict=True):
        check_rejected(proc.returncode, proc.stdout, proc.stderr, path, expect)
        assert list(work.iterdir()) == []


# --- killed runs ---------------------------------------------------------------------------

TINY = ["--draws", "100", "--tune", "100", "--chains", "2", "--cores", "1", "--seed", "1"]
# Sampling that would take minutes: the process is certainly still sampling when it is killed.
# (nutpie samples eight schools at ~100k draws/s/chain: a million draws is still many seconds)
LONG = ["--draws", "1000000", "--tune", "1000", "--chains", "2", "--cores", "1", "--seed", "1"]
SAMPLING = "@@sampling"  # announced by the SAMPLING_ANNOUNCED harness as nutpie starts

# Runs the fit command and announces on stderr when nutpie starts to sample (the compiled path
# logs nothing of its own), so the test kills a process that is certainly sampling.
SAMPLING_ANNOUNCED = r"""
import sys
import nutpie
from khe_bayes.cli import main

real_sample = nutpie.sample

def sample(*args, **kwargs):
    print("@@sampling", file=sys.stderr, flush=True)
    return real_sample(*args, **kwargs)

nutpie.sample = sample
sys.exit(main())
"""

# Runs the fit command but stops inside the staging directory, just before manifest.json (the
# last file) is written, and announces it: a deterministic "killed while writing" point.
PAUSE_IN_STAGING = r"""
import sys, time
import khe_bayes.commands.fit as fit_command
from khe_bayes.cli import main

def pause(path, payload):
    print("@@paused in", path.parent, file=sys.stderr, flush=True)
    time.sleep(600)

fit_command.write_json = pause
sys.exit(main())
"""


def read_tree(root: Path) -> dict[str, str]:
    """Every file's sha256: equal trees are byte-identical (and a failure prints short)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def start(argv: list[str], log: Path, *, pause_in_staging: bool = False) -> subprocess.Popen:
    harness = PAUSE_IN_STAGING if pause_in_staging else SAMPLING_ANNOUNCED
    prefix = [sys.executable, "-c", harness]
    with open(log, "w") as fh:
        return subprocess.Popen([*prefix, *argv], stdout=subprocess.DEVNULL, stderr=fh, cwd=REPO)


def kill_when_logged(proc: subprocess.Popen, log: Path, marker: str, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``marker`` appears in its stderr; fail if it exits first."""
    deadline = time.monotonic() + timeout
    while marker not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before {marker!r}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {marker!r} within {timeout} s: {log.read_text()[-2000:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def kill_both(runs: list[tuple[subprocess.Popen, Path, str]]) -> None:
    """Wait for each run's marker and kill it (concurrently); never leave one running."""
    try:
        with ThreadPoolExecutor(len(runs)) as pool:
            for future in [pool.submit(kill_when_logged, *run) for run in runs]:
                future.result()
    finally:
        for proc, _, _ in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def leftovers(parent: Path, name: str) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.name != name)


def assert_hidden_staging(paths: list[Path], name: str) -> None:
    # SIGKILL gives staged_directory no chance to clean up, so a run killed while writing leaves
    # its staging directory behind. It is named ".<out>.partial-XXXX": a hidden sibling that
    # neither `ls`, a glob such as results/*, nor a reader of <out> takes for a result.
    for p in paths:
        assert p.is_dir() and p.name.startswith(f".{name}.partial-"), p
        assert not (p / "manifest.json").exists()  # never complete: the manifest comes last


def test_killed_overwrite_leaves_the_earlier_result_intact(tmp_path):
    out, logs = tmp_path / "results" / "eight_schools", tmp_path / "logs"
    logs.mkdir()
    base = ["fit", str(EIGHT_SCHOOLS), "--out", str(out), "--no-progress"]
    done = subprocess.run(
        [*console_script(), *base, *TINY], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before = read_tree(out)
    assert {"summary.csv", "posterior.nc", "thresholds.csv", "manifest.json"} <= set(before)

    # Killed while sampling, then killed while writing the staging directory; both were asked
    # to --overwrite. One after the other: a second run to the same --out while the first is
    # running is refused at once (the output lock, issue 16), so they cannot overlap.
    sampling_log, staging_log = logs / "sampling.log", logs / "staging.log"
    kill_both([(start([*base, *LONG, "--overwrite"], sampling_log), sampling_log, SAMPLING)])
    assert read_tree(out) == before
    kill_both(
        [
            (
                start([*base, *TINY, "--overwrite"], staging_log, pause_in_staging=True),
                staging_log,
                "@@paused in",
            )
        ]
    )
    assert read_tree(out) == before
    left = leftovers(out.parent, out.name)
    assert len(left) == 1  # from the run killed while writing; the other had staged nothing
    assert_hidden_staging(left, out.name)


def test_killed_fresh_run_leaves_no_output(tmp_path):
    runs, logs = [], tmp_path / "logs"
    logs.mkdir()
    for kind, settings, marker in (("sampling", LONG, SAMPLING), ("staging", TINY, "@@paused in")):
        out, log = tmp_path / kind / "result", logs / f"{kind}.log"
        argv = ["fit", str(EIGHT_SCHOOLS), "--out", str(out), "--no-progress", *settings]
        runs.append((start(argv, log, pause_in_staging=kind == "staging"), log, marker))
    kill_both(runs)
    # Killed while sampling: nothing at all was created (not even the parent directory).
    assert not (tmp_path / "sampling").exists()
    # Killed while writing: no result, only the hidden staging directory beside it.
    assert not (tmp_path / "staging" / "result").exists()
    left = leftovers(tmp_path / "staging", "result")
    assert len(left) == 1
    assert_hidden_staging(left, "result")
    assert (left[0] / "summary.csv").exists()  # it was killed mid-write, not before
