"""The package as a user installs it: the wheel carries the bundled specs and data, installs into
a fresh environment, and works from a folder outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_of_the_source_tree():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "khe_bayes").rglob("__init__.py")
    }
    assert found - listed == set(), "add these packages to [tool.setuptools] packages"
    assert listed - found == {"khe_bayes.study.data", "khe_bayes.specs"}  # data-only packages


def test_bundled_specs_resolve_by_name_in_a_source_checkout():
    from khe_bayes.resources import bundled_specs, spec_path

    assert {"aggregate_proportions", "binomial_example", "khe_response"} <= set(bundled_specs())
    assert spec_path("binomial_example") == ROOT / "models" / "binomial_example.toml"
    with pytest.raises(FileNotFoundError, match="no bundled spec"):
        spec_path("no_such_spec")


@pytest.mark.timeout(600)
def test_wheel_installs_into_a_fresh_venv_and_runs_outside_the_repository(tmp_path):
    """Build the wheel, install it (with the locked dependencies) into a new venv, then from an
    empty folder: ``--version``, the evidence table (package data) and a small fit of a bundled
    spec through the Python API (package data of ``models/``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        env=env,
    )
    wheel = next((tmp_path / "dist").glob("khe_bayes-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    vpip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    subprocess.run([*vpip, "-r", str(ROOT / "requirements.lock")], check=True, env=env)
    subprocess.run([*vpip, "--no-deps", str(wheel)], check=True, env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args: str) -> str:
        done = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert run(str(venv / "bin" / "khe-bayes"), "--version").startswith("khe-bayes ")
    assert "n_analyzed" in run(str(venv / "bin" / "khe-bayes"), "evidence")
    out = run(
        str(python),
        "-c",
        "import khe_bayes as kb, khe_bayes.resources as r;"
        "assert r.specs_dir().parts[-2:] == ('khe_bayes', 'specs'), r.specs_dir();"
        "res = kb.fit_spec('binomial_example', draws=100, tune=100, chains=2);"
        "print(kb.summarize(res).shape[0] > 0, 'log_likelihood' in res.children)",
    )
    assert out.split() == ["True", "True"]
