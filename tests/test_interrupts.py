"""Ctrl-C and killed runs (issue 16, class 1), on real runs of the installed executable.

PyMC and nutpie catch KeyboardInterrupt and return the draws so far as if sampling had
finished; before the fix such a run wrote a complete-looking result from a truncated trace and
exited 0. Now: exit 130, one line, nothing written, an earlier result untouched. Ctrl-C while
the program is still starting gives the same line, not a traceback. Chain processes die with
their parent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EIGHT_SCHOOLS = REPO / "models" / "normal_eight_schools.toml"
# Sampling that would take many minutes: certainly still sampling when interrupted.
LONG = ["--draws", "1000000", "--tune", "1000", "--chains", "2", "--seed", "1", "--no-progress"]
SAMPLING = "NUTS"  # PyMC logs "NUTS: [...]" / "NUTS[nutpie]: [...]" before compiling
# The fit command, announcing when nutpie starts sampling (after the model is compiled): an
# interrupt then lands in the sampling loop, where nutpie swallows it, not in the compilation.
ANNOUNCED = r"""
import sys
import nutpie
real_sample = nutpie.sample

def sample(*args, **kwargs):
    print("@@sampling", file=sys.stderr, flush=True)
    return real_sample(*args, **kwargs)

nutpie.sample = sample
from khe_bayes.cli import main
sys.exit(main(sys.argv[1:]))
"""
INTERRUPTED = "khe-bayes: interrupted; no output was written\n"


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "khe-bayes"
    return [str(script)] if script.exists() else [sys.executable, "-m", "khe_bayes.cli"]


def read_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def wait_for(proc: subprocess.Popen, log: Path, marker: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while marker not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            pytest.fail(f"exited ({proc.returncode}) before {marker!r}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {marker!r} within {timeout} s: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def start(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        # a session of its own, so that "Ctrl-C" can go to the whole process group
        return subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=fh, cwd=cwd, start_new_session=True, text=True
        )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        stdout, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("the interrupted run did not end")
    return proc.returncode, stdout


def assert_interrupted(code: int, stdout: str, log: Path) -> None:
    stderr = log.read_text(errors="replace")
    assert code == 130, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.endswith(INTERRUPTED), stderr[-2000:]
    assert stdout == ""


@pytest.mark.parametrize("target", ["process", "group"])
def test_ctrl_c_while_sampling_writes_nothing_and_keeps_the_old_result(tmp_path, target):
    """``process``: SIGINT to the main process (``kill -INT``); ``group``: to its whole process
    group, as a terminal's Ctrl-C does (chain processes included)."""
    out = tmp_path / "results" / "eight"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text('{"command": "fit"}\n')  # an earlier result
    (out / "summary.csv").write_text("earlier\n")
    before = read_tree(out)
    log = tmp_path / "stderr.log"
    argv = [sys.executable, "-c", ANNOUNCED, "fit", str(EIGHT_SCHOOLS), "--out", str(out)]
    proc = start([*argv, "--overwrite", *LONG], log, tmp_path)
    try:
        wait_for(proc, log, "@@sampling")
        time.sleep(1.5)  # well into sampling
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        code, stdout = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert_interrupted(code, stdout, log)
    assert read_tree(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["eight"]  # no staging left


def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    """Interrupted while the command imports its libraries (numpy is being loaded: the CLI
    itself does not import it), long before sampling."""
    log = tmp_path / "stderr.log"
    out = tmp_path / "run"
    proc = start([*console_script(), "fit", str(EIGHT_SCHOOLS), "--out", str(out)], log, tmp_path)
    try:
        deadline = time.monotonic() + 60
        maps = Path(f"/proc/{proc.pid}/maps")
        while "_multiarray_umath" not in maps.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        code, stdout = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert_interrupted(code, stdout, log)
    assert log.read_text() == INTERRUPTED  # exactly one line
    assert not out.exists()


def pymc_backend_spec(folder: Path) -> Path:
    """Eight schools with PyMC's own multiprocess NUTS (one forked process per chain) instead
    of nutpie (threads): the case where chains could outlive their parent."""
    data = (EIGHT_SCHOOLS.parent / "data" / "eight_schools.csv").as_posix()
    text = EIGHT_SCHOOLS.read_text().replace('data = "data/eight_schools.csv"', f'data = "{data}"')
    spec = folder / "eight_pymc.toml"
    spec.write_text(text.replace("[sampler]\n", '[sampler]\nbackend = "pymc"\n'))
    return spec


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_chain_processes_die_with_their_parent(tmp_path):
    log = tmp_path / "stderr.log"
    argv = [*console_script(), "fit", str(pymc_backend_spec(tmp_path)), "--out"]
    argv += [str(tmp_path / "run"), *LONG, "--cores", "2"]
    proc = start(argv, log, tmp_path)
    chains: list[int] = []
    try:
        wait_for(proc, log, SAMPLING)
        deadline = time.monotonic() + 60
        while len(chains) < 2 and time.monotonic() < deadline:
            chains = children(proc.pid)
            time.sleep(0.1)
        assert len(chains) >= 2, f"no chain processes: {log.read_text()[-2000:]}"
        proc.send_signal(signal.SIGKILL)  # the parent dies without any chance to clean up
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(c) for c in chains) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = [c for c in chains if alive(c)]
    finally:
        for pid in [proc.pid, *chains]:  # only the processes this test started
            if alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    assert survivors == [], "chain processes outlived their parent"
