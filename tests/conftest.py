"""Shared test settings. Fast tiers use short chains; `slow` marks long statistical checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SOURCE_ABSTRACT = REPO.parent / "shared" / "source" / "000_8504a13c01ada11f.txt"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def source_abstract() -> str:
    if not SOURCE_ABSTRACT.exists():
        pytest.skip(f"source abstract not found at {SOURCE_ABSTRACT}")
    return SOURCE_ABSTRACT.read_text(encoding="utf-8")
