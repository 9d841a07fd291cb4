"""Writing results atomically: everything goes to a staging directory beside the target, which is
renamed into place only when complete. A run that fails or is killed leaves no partial output and
never touches an existing result unless ``overwrite`` was asked for."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from khe_bayes.errors import OutputExistsError


def check_can_write(out: Path, overwrite: bool) -> None:
    """Fail early, before any work, if ``out`` exists and may not be replaced."""
    if out.exists() and not overwrite:
        raise OutputExistsError(
            f"{out}: output directory exists; pass --overwrite to replace it "
            "or choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory")


@contextlib.contextmanager
def staged_directory(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces ``out`` in one rename.

    On any exception (including KeyboardInterrupt) the staging directory is removed and ``out``
    is left as it was.
    """
    out = Path(out).absolute()  # figures and reports refer to files by absolute path
    check_can_write(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        check_can_write(out, overwrite)
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, trash / out.name)
        os.replace(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
