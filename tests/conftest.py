"""Shared test settings. Fast tiers use short chains; `slow` marks long statistical checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SOURCE_ABSTRACT = REPO.parent / "shared" / "source" / "000_8504a13c01ada11f.txt"


FAST = [
    "--draws",
    "200",
    "--tune",
    "200",
    "--chains",
    "2",
    "--seed",
    "5",
    "--datasets",
    "2",  # two reconstructions: pooling runs end to end
    "--max-datasets",
    "2",  # and no growth towards the Monte Carlo target (which the report then flags)
    "--no-progress",
    "--no-sensitivity",
]


# headless Chromium as the report tests run it (no network, DOM dumped after layout)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=5000",
    "--dump-dom",
]


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "khe_bayes.cli", *args],
        capture_output=True,
        text=True,
        timeout=1500,  # the summary-data model adds ~14 compiled fits; slow on a loaded machine
        cwd=cwd,
    )


class BackgroundRun:
    """A `khe-bayes reanalyze` that several tests read. It starts when collection ends (if a
    selected test asks for it) in a process of its own, so it runs beside the other tests: a
    reanalysis keeps about one core busy and the machine has two. Tests that read one run after
    every other test (pytest_collection_modifyitems), and wait for it to finish. With
    pytest-xdist (`make test` runs 2 workers) the first worker to get there starts it and every
    worker reads the same run: its directory, under the session's temporary root, is the
    record (``returncode`` appears when the command has finished)."""

    def __init__(
        self, name: str, args: list[str], returncode: int = 0, ipd_seed: int | None = None
    ):
        self.name, self.args, self.returncode, self.ipd_seed = name, args, returncode, ipd_seed
        self.work: Path | None = None

    @property
    def out(self) -> Path:
        assert self.work is not None
        return self.work / "results" / "reanalysis"

    def start(self, base: Path) -> None:
        """Start the run in ``base / name`` unless a worker already did (call under a lock)."""
        self.work = base / self.name
        if self.work.exists():
            return
        self.work.mkdir(parents=True)
        args = list(self.args)
        if self.ipd_seed is not None:
            from khe_bayes.study.evidence import load_evidence
            from khe_bayes.study.ipd import write_ipd
            from khe_bayes.study.reconstruct import reconstruct_datasets

            ipd = self.work / "ipd.csv"
            write_ipd(reconstruct_datasets(load_evidence(), 1, seed=self.ipd_seed)[0], ipd)
            args += ["--ipd", str(ipd)]
        # as `make reanalyze` runs it: a relative --out from the working directory
        command = [sys.executable, "-m", "khe_bayes.cli", "reanalyze", "--out"]
        command += ["results/reanalysis", *args]
        record = "code=$?; echo $code > returncode.tmp; mv returncode.tmp returncode"
        proc = subprocess.Popen(
            ["sh", "-c", f'"$@"; {record}', "sh", *command],
            cwd=self.work,
            stdout=(self.work / "stdout.txt").open("w"),
            stderr=(self.work / "stderr.txt").open("w"),
            start_new_session=True,  # its own process group: killed as one if the session ends
        )
        (self.work / "pid").write_text(str(proc.pid))

    def result(self) -> Path:
        assert self.work is not None
        done = self.work / "returncode"
        deadline = time.monotonic() + 1500  # ~14 summary-data fits; slow on a loaded machine
        while not done.exists():
            assert time.monotonic() < deadline, f"{self.name}: no result after 1500 s"
            time.sleep(0.5)
        code = int(done.read_text())
        assert code == self.returncode, (self.work / "stderr.txt").read_text()[-2000:]
        return self.out

    def kill(self, base: Path) -> None:
        work = base / self.name
        if (work / "pid").exists() and not (work / "returncode").exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int((work / "pid").read_text()), signal.SIGKILL)


def _shared_root(config) -> Path:
    """The session's temporary root, the same for every xdist worker."""
    base = config._tmp_path_factory.getbasetemp()  # pytest's own tmp_path factory
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


BACKGROUND = {
    run.name: run
    for run in (
        BackgroundRun("result_dir", FAST),
        # the same command again, in another directory: the same seed must give the same bytes
        BackgroundRun("same_seed_rerun", FAST),
        # user IPD (a file in the IPD schema): no reconstruction, LOO of the severity models
        # (the summary-data model does not depend on the patient data: its tests use result_dir)
        BackgroundRun("ipd_run", [*FAST, "--no-summary-data"], ipd_seed=12),
        # too few draws to converge: --strict must exit 3 (EXIT_STRICT) and still write a report
        BackgroundRun(
            "strict_run",
            [
                *("--draws", "20", "--tune", "5", "--chains", "2", "--seed", "1"),
                *("--datasets", "1", "--max-datasets", "1", "--quick-tune", "0"),
                *("--no-progress", "--no-sensitivity", "--no-summary-data", "--strict"),
            ],
            returncode=3,
        ),
    )
}


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(session, config, items):
    """Start the background runs the selected tests need, and run those tests last."""
    if os.environ.get("KHE_TEST_RESULT_DIR"):
        BACKGROUND.pop("result_dir")
    needed = {
        name for item in items for name in getattr(item, "fixturenames", ()) if name in BACKGROUND
    }
    if not needed:
        return
    from filelock import FileLock

    base = _shared_root(config) / "background"
    base.mkdir(exist_ok=True)
    with FileLock(base / ".lock"):
        for name in BACKGROUND:
            if name in needed:
                BACKGROUND[name].start(base)
    late = [i for i in items if needed & set(getattr(i, "fixturenames", ()))]
    late_ids = {id(i) for i in late}
    items[:] = [i for i in items if id(i) not in late_ids] + late


def pytest_unconfigure(config):
    """At the end of the session (in xdist's controller, not in a worker, which cannot know
    whether the other still needs a run) stop any background run still going."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    base = _shared_root(config) / "background"
    for run in BACKGROUND.values():
        run.kill(base)


@pytest.fixture(scope="session")
def result_dir():
    """The reanalysis with the FAST settings, as `make reanalyze` runs it (relative --out).
    KHE_TEST_RESULT_DIR=DIR reuses a finished run with the FAST settings (while developing
    tests; never set by make test)."""
    if os.environ.get("KHE_TEST_RESULT_DIR"):
        return Path(os.environ["KHE_TEST_RESULT_DIR"])
    return BACKGROUND["result_dir"].result()


@pytest.fixture(scope="session")
def same_seed_rerun() -> Path:
    return BACKGROUND["same_seed_rerun"].result()


@pytest.fixture(scope="session")
def ipd_run() -> Path:
    return BACKGROUND["ipd_run"].result()


@pytest.fixture(scope="session")
def strict_run() -> Path:
    return BACKGROUND["strict_run"].result()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def source_abstract() -> str:
    if not SOURCE_ABSTRACT.exists():
        pytest.skip(f"source abstract not found at {SOURCE_ABSTRACT}")
    return SOURCE_ABSTRACT.read_text(encoding="utf-8")


NAN = np.nan
# 10 patients: 6 KMP (3 combination, 3 sirolimus alone), 4 non-KMP; some follow-ups missing.
SMALL_IPD = pd.DataFrame(
    {
        "patient_id": [f"P{i}" for i in range(10)],
        "center": ["a", "a", "b", "b", "c", "c", "a", "b", "c", "a"],
        "kmp": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
        "arm": ["combination"] * 3 + ["sirolimus"] * 7,
        "age_months": [2.0, 5.5, 1.0, 8.0, 3.5, 6.0, 30.0, 44.0, 12.0, 60.0],
        "response_6m": [1, 1, 0, 1, 1, NAN, 1, 1, 0, 1],
        "response_12m": [1, 1, 1, 1, NAN, 1, 1, 1, 1, 0],
        "severity_0m": [8, 7, 9, 6, 5, 6, 4, 5, 3, 4],
        "severity_6m": [3, 4, 5, 2, NAN, 3, 2, 1, 2, 3],
        "severity_12m": [2, 2, 3, 1, 2, NAN, 1, 1, 0, 2],
        "shrinkage_12m": [60.0, 45.0, 70.0, 30.0, 20.0, NAN, 55.0, 25.0, 40.0, 35.0],
    }
)
