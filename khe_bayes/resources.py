"""Where the bundled specs (``models/``) are: in an installed wheel they are package data
(``khe_bayes/specs``, mapped from the repository's ``models/`` in pyproject.toml); in a source
checkout they are the repository's ``models/`` folder itself."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def specs_dir() -> Path:
    """The folder holding the bundled model specs and their data."""
    installed = _PACKAGE / "specs"
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / "models"


def bundled_specs() -> list[str]:
    """Names of the bundled specs (file names without ``.toml``)."""
    return sorted(p.stem for p in specs_dir().glob("*.toml"))


def spec_path(spec: str | Path) -> Path:
    """A spec given as a path, or as the name of a bundled spec (``"binomial_example"``)."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        return path
    bundled = specs_dir() / f"{spec}.toml"
    if bundled.is_file():
        return bundled
    raise FileNotFoundError(f"{spec}: no such spec file, and no bundled spec of that name")
