"""Reading a TOML file into a strict pydantic model, with one-line errors naming file and key."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from pydantic import BaseModel, ValidationError

from khe_bayes.toolkit.errors import (
    InputError,
    check_input_path,
    control_character,
    describe_os_error,
)
from khe_bayes.toolkit.settings import LIMIT_REASONS


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; missing, non-UTF-8 or malformed files raise InputError."""
    label = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", file=label) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a TOML file", file=label) from None
    except OSError as exc:  # a symlink loop, no permission, ...: say which
        check_input_path(path, label)
        raise InputError(describe_os_error(exc).removeprefix(f"{label}: "), file=label) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8",
            file=label,
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # as read_text() translated them
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML ({exc})", file=label) from None


def key_path(loc: tuple) -> str:
    """Render a pydantic error location as a TOML-ish key path, e.g. ``priors.tau.beta``.

    List indices become ``[i]`` with i 1-based (the i-th ``[[table]]``); tags that pydantic adds
    for discriminated unions and function validators are dropped.
    """
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item + 1}]")
        elif str(item).startswith("function-") or "[" in str(item):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


# Numbers beyond this magnitude are typos or overflow bait (a prior sigma of 1e308), not settings.
MAX_MAGNITUDE = 1e12


def check_values(raw: object, path: tuple = (), *, file: str | Path) -> None:
    """Every number in ``raw`` finite and below :data:`MAX_MAGNITUDE`, every string free of
    control characters (newline and tab allowed); the error names the key."""
    if isinstance(raw, dict):
        for k, v in raw.items():
            check_values(v, (*path, k), file=file)
        return
    if isinstance(raw, list):
        for i, v in enumerate(raw):
            check_values(v, (*path, i), file=file)
        return
    leaf = next((str(p) for p in reversed(path) if not isinstance(p, int)), "value")
    parent = key_path(path[:-1]) if len(path) > 1 else key_path(path)
    if isinstance(raw, float) and not math.isfinite(raw):
        raise InputError(f"{leaf} must be finite, got {raw}", file=file, key=parent or None)
    if isinstance(raw, int | float) and not isinstance(raw, bool) and abs(raw) > MAX_MAGNITUDE:
        raise InputError(
            f"{leaf} = {raw:g} is out of range (magnitude above {MAX_MAGNITUDE:g})",
            file=file,
            key=parent or None,
        )
    if isinstance(raw, str):
        bad = control_character(raw, allow="\n\t")
        if bad:
            raise InputError(
                f"control character {bad} in {leaf}; use printable text",
                file=file,
                key=key_path(path) or None,
            )


def validate_as[M: BaseModel](raw: dict, cls: type[M], *, file: str | Path) -> M:
    """Validate ``raw`` as ``cls``, strictly: a number written as a string (``draws = "1000"``)
    is an error, not a number. The first error becomes a one-line InputError."""
    check_values(raw, file=file)
    try:
        # strict JSON mode: no str -> number coercion, while arrays still fill tuples
        return cls.model_validate_json(json.dumps(raw, default=str), strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = key_path(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            message = "unknown key (not allowed here)"
        elif isinstance(value, str) and err["type"] in STRICT_TYPES:
            message += f", got the string {value!r} (write numbers and booleans without quotes)"
        elif isinstance(value, int | float | bool) and not err["type"].startswith("value_error"):
            message += f", got {value!r}"
            why = LIMIT_REASONS.get(str(err["loc"][-1]))
            if why and err["type"] == "less_than_equal":
                message += f" ({why})"
        raise InputError(message, file=file, key=key or None) from None


# pydantic error types of a value of the wrong type (a string where a number was expected)
STRICT_TYPES = {"int_type", "float_type", "bool_type", "int_parsing", "float_parsing"}


def load_toml_model[M: BaseModel](path: str | Path, cls: type[M]) -> M:
    """Read and validate a TOML file as ``cls``."""
    return validate_as(read_toml(path), cls, file=path)
