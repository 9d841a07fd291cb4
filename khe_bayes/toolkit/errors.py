"""One exception type for bad input, rendered by the CLI as a one-line message and exit code 2."""

from __future__ import annotations

import errno
import os
import unicodedata
from pathlib import Path


class InputError(Exception):
    """Bad user input: names the file and, where known, the row and column.

    Rows are 1-based data rows as a spreadsheet user counts them (the header is row 1, so the
    first data row is row 2); for TOML files ``key`` names the key path instead.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.key = key
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.message}" if prefix else self.message
        return " ".join(text.split())


class OutputError(Exception):
    """The output directory may not be written (exists, protected, locked, not writable)."""


class OutputExistsError(OutputError):
    """The output directory exists and --overwrite was not given."""


class OutputNotAllowedError(OutputError):
    """--out names a file, a protected or non-result directory, or an unwritable place."""


class OutputLockedError(OutputError):
    """Another run is writing the same output directory."""


_OS_REASONS = {
    errno.ELOOP: "symbolic link loop (too many levels of symbolic links)",
    errno.ENOENT: "not found",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.EISDIR: "is a directory",
}


def os_reason(exc: OSError) -> str:
    """What went wrong, in words (no path)."""
    return _OS_REASONS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError: the path it concerns and what went wrong, in words."""
    reason = os_reason(exc)
    where = exc.filename if exc.filename is not None else None
    text = f"{where}: {reason}" if where is not None else reason
    return " ".join(str(text).split())


def check_input_path(path: str | Path, label: str | Path | None = None) -> None:
    """Raise InputError for a path that cannot be looked at for a reason other than not
    existing: a symbolic link loop, a permission problem, a path through a file. A missing file
    is left to the caller, which has its own words for it."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(os_reason(exc), file=label if label is not None else path) from None


def control_character(text: str, *, allow: str = "") -> str | None:
    """The first control or invisible format character in ``text`` (NUL, escape, a bidi
    override, ...) written as an escape such as ``\\x00``; None if there is none. ``allow``
    lists characters that are fine here (e.g. newline and tab in free text)."""
    for ch in text:
        if ch not in allow and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            return ascii(ch)[1:-1]
    return None
