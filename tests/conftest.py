"""Shared test settings. Fast tiers use short chains; `slow` marks long statistical checks."""

from __future__ import annotations

import os
import subprocess
import sys
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
    every other test (pytest_collection_modifyitems), and wait for it to finish."""

    def __init__(
        self, name: str, args: list[str], returncode: int = 0, ipd_seed: int | None = None
    ):
        self.name, self.args, self.returncode, self.ipd_seed = name, args, returncode, ipd_seed
        self.proc: subprocess.Popen | None = None
        self.work: Path | None = None

    @property
    def out(self) -> Path:
        assert self.work is not None
        return self.work / "results" / "reanalysis"

    def start(self, base: Path) -> None:
        self.work = base / self.name
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
        command = [
            sys.executable,
            "-m",
            "khe_bayes.cli",
            "reanalyze",
            "--out",
            "results/reanalysis",
        ]
        self.proc = subprocess.Popen(
            [*command, *args],
            cwd=self.work,
            stdout=(self.work / "stdout.txt").open("w"),
            stderr=(self.work / "stderr.txt").open("w"),
        )

    def wait(self) -> tuple[int, str]:
        assert self.proc is not None and self.work is not None
        code = self.proc.wait(timeout=1500)  # ~14 summary-data fits; slow on a loaded machine
        return code, (self.work / "stderr.txt").read_text()

    def result(self) -> Path:
        code, stderr = self.wait()
        assert code == self.returncode, stderr[-2000:]
        return self.out


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
    base = config._tmp_path_factory.mktemp("background")  # pytest's tmp_path factory
    for name in BACKGROUND:
        if name in needed:
            BACKGROUND[name].start(base)
    late = [i for i in items if needed & set(getattr(i, "fixturenames", ()))]
    late_ids = {id(i) for i in late}
    items[:] = [i for i in items if id(i) not in late_ids] + late


def pytest_unconfigure(config):
    for run in BACKGROUND.values():
        if run.proc is not None and run.proc.poll() is None:
            run.proc.kill()


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
