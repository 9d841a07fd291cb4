"""The run manifest: what produced a result (versions, settings, seed, commit, input hashes)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ["khe-bayes", "pymc", "pytensor", "arviz", "numpy", "scipy", "pandas", "xarray"]


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(start: Path | None = None) -> dict[str, str | bool | None]:
    """The commit of the checkout the package runs from, and whether it has uncommitted changes."""
    where = start or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def build_manifest(
    *, command: str, settings: dict, inputs: dict[str, str], outputs: list[str]
) -> dict:
    """``inputs`` maps a label to a sha256; ``outputs`` lists files written beside the manifest."""
    return {
        "command": command,
        "argv": sys.argv,
        "settings": settings,
        "inputs_sha256": inputs,
        "outputs": sorted(outputs),
        "versions": package_versions(),
        "platform": platform.platform(),
        "git": git_commit(),
    }
