"""Individual-patient data (IPD): one documented schema for real and reconstructed data.

One row per patient. The same schema validates a user's ``--ipd FILE.csv`` and every
reconstructed dataset. Errors are one line naming the file, the row (the header is row 1, so the
first patient is row 2) and the column.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from khe_bayes.toolkit.errors import InputError, check_input_path, control_character

MAX_BYTES = 50 * 1024 * 1024
ARMS = ("sirolimus", "combination")
VISITS = ("0m", "6m", "12m")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "text", "binary", "integer", "number", "category"
    required: bool  # False: may be empty (missing)
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""


SCHEMA: tuple[Column, ...] = (
    Column("patient_id", "text", True, description="unique patient identifier"),
    Column("center", "text", True, description="treating center (random effect)"),
    Column("kmp", "binary", True, description="1 = Kasabach-Merritt phenomenon at baseline"),
    Column(
        "arm",
        "category",
        True,
        description="'sirolimus' alone or 'combination' with short-term prednisolone "
        "(combination only with kmp = 1)",
    ),
    Column("age_months", "number", True, 0.0, 216.0, "age at start of sirolimus, months (0, 216]"),
    Column(
        "response_6m", "binary", False, description="1 = response at 6 months; empty = not seen"
    ),
    Column(
        "response_12m", "binary", False, description="1 = response at 12 months; empty = not seen"
    ),
    Column("severity_0m", "integer", True, 0, 10, "severity score at baseline, integer 0-10"),
    Column("severity_6m", "integer", False, 0, 10, "severity score at 6 months; may be empty"),
    Column("severity_12m", "integer", False, 0, 10, "severity score at 12 months; may be empty"),
    Column(
        "shrinkage_12m",
        "number",
        False,
        -100.0,
        100.0,
        "tumour shrinkage at 12 months, % (100 = gone, negative = growth); may be empty",
    ),
)
COLUMNS = tuple(c.name for c in SCHEMA)


def schema_table() -> pd.DataFrame:
    """The schema as a table (printed by the README and ``khe-bayes reconstruct --schema``)."""
    return pd.DataFrame(
        [
            {
                "column": c.name,
                "type": c.kind,
                "required": c.required,
                "range": "" if c.minimum is None else f"{c.minimum:g} to {c.maximum:g}",
                "description": c.description,
            }
            for c in SCHEMA
        ]
    )


def load_ipd(path: str | Path) -> pd.DataFrame:
    """Read and validate an IPD CSV (UTF-8, comma-separated, header row)."""
    path = Path(path)
    label = str(path)
    check_input_path(path, label)  # a symlink loop or a permission problem, in those words
    if not path.exists():
        raise InputError("file not found", file=label)
    if not path.is_file():
        raise InputError("is a directory (or not a regular file), not a CSV file", file=label)
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"file is larger than {MAX_BYTES // 2**20} MB", file=label)
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError("file is empty", file=label)
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError("UTF-16 text; save the file as UTF-8 CSV", file=label)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:  # exc.object: the bytes after any BOM
        row, column = _cell_at(exc.object, exc.start)
        raise InputError(
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save the file as UTF-8 CSV",
            file=label,
            row=row,
            column=column,
        ) from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if ragged:
            expected, line, seen = (int(g) for g in ragged.groups())
            raise InputError(
                f"{seen} fields where the header has {expected}", file=label, row=line
            ) from None
        message = " ".join(str(exc).split())
        raise InputError(f"not a valid CSV ({message})", file=label) from None
    return validate_ipd(frame, source=label)


def _cell_at(raw: bytes, offset: int) -> tuple[int, str | None]:
    """Row (header = row 1) and column name of the CSV cell holding byte ``offset``."""
    before = raw[:offset].decode("utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(before)))
    if not rows or before.endswith(("\n", "\r")):
        row, field = len(rows) + 1, 0
    else:
        row, field = len(rows), len(rows[-1]) - 1
    header = rows[0] if rows and row > 1 else []
    return row, header[field] if field < len(header) else None


def validate_ipd(frame: pd.DataFrame, source: str = "<ipd>") -> pd.DataFrame:
    """Check columns, types, ranges and cross-column rules; return a typed copy.

    Accepts text (as read from CSV) or already-typed columns.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}", file=source, row=1, column=missing[0])
    extra = [c for c in frame.columns if c not in COLUMNS]
    if extra:
        raise InputError(
            f"unknown column(s) {extra}; the schema has {list(COLUMNS)}",
            file=source,
            row=1,
            column=str(extra[0]),
        )
    if len(frame) == 0:
        raise InputError("no patient rows", file=source)
    out = pd.DataFrame(index=range(len(frame)))
    for col in SCHEMA:
        out[col.name] = _convert(frame[col.name].reset_index(drop=True), col, source)
    dup = out["patient_id"].duplicated(keep="first")
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise InputError(
            f"duplicate patient_id {out.loc[i, 'patient_id']!r}",
            file=source,
            row=i + 2,
            column="patient_id",
        )
    bad = (out["arm"] == "combination") & (out["kmp"] == 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            "combination therapy without KMP (the study gave it to KMP patients only)",
            file=source,
            row=i + 2,
            column="arm",
        )
    return out


def _is_empty(value) -> bool:
    return (
        value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""
    )


def _convert(values: pd.Series, col: Column, source: str) -> pd.Series:
    converted = []
    for i, value in enumerate(values):
        row = i + 2

        def fail(message: str, row=row) -> None:
            raise InputError(message, file=source, row=row, column=col.name)

        if _is_empty(value):
            if col.required:
                fail("empty value in a required column")
            converted.append(np.nan)
            continue
        text = str(value).strip()
        if col.kind == "text":
            bad = control_character(text)
            if bad:
                fail(f"control character {bad} in {text!r}; labels must be printable text")
            converted.append(text)
            continue
        if col.kind == "category":
            if text not in ARMS:
                fail(f"{text!r} is not one of {list(ARMS)}")
            converted.append(text)
            continue
        try:
            number = float(text)
        except ValueError:
            fail(f"{text!r} is not a number")
        if not np.isfinite(number):
            fail(f"{text!r} is not a finite number")
        if col.kind in ("binary", "integer") and number != int(number):
            fail(f"{text!r} is not an integer")
        if col.kind == "binary" and number not in (0, 1):
            fail(f"{text!r} is not 0 or 1")
        if col.minimum is not None and not (col.minimum <= number <= col.maximum):
            if col.name == "age_months" and number == 0:
                fail("age must be above 0 months")
            fail(f"{text} is outside {col.minimum:g} to {col.maximum:g}")
        if col.name == "age_months" and number <= 0:
            fail("age must be above 0 months")
        converted.append(number)
    series = pd.Series(converted, name=col.name)
    if col.kind in ("binary", "integer"):
        return (
            series.astype("Float64").astype("Int64") if series.isna().any() else series.astype(int)
        )
    if col.kind == "number":
        return series.astype(float)
    return series.astype(object)


def write_ipd(frame: pd.DataFrame, path: Path) -> None:
    """Write IPD as CSV in schema column order (numbers with 6 decimals, missing as empty)."""
    frame.loc[:, list(COLUMNS)].to_csv(path, index=False, float_format="%.6f")
