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


@pytest.fixture(scope="session")
def result_dir(tmp_path_factory):
    """Run as `make reanalyze` does: a relative --out from the working directory.
    KHE_TEST_RESULT_DIR=DIR reuses a finished run with the FAST settings (while developing
    tests; never set by make test)."""
    if os.environ.get("KHE_TEST_RESULT_DIR"):
        return Path(os.environ["KHE_TEST_RESULT_DIR"])
    work = tmp_path_factory.mktemp("cli")
    out = work / "results" / "reanalysis"
    proc = run_cli("reanalyze", "--out", "results/reanalysis", *FAST, cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


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
