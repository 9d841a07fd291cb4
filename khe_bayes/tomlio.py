"""Reading a TOML file into a strict pydantic model, with one-line errors naming file and key."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from khe_bayes.errors import InputError

M = TypeVar("M", bound=BaseModel)


def read_toml(path: str | Path) -> dict:
    """Parse a TOML file; missing, non-UTF-8 or malformed files raise InputError."""
    label = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("file not found", file=label) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a TOML file", file=label) from None
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


def validate_as[M: BaseModel](raw: dict, cls: type[M], *, file: str | Path) -> M:
    """Validate ``raw`` as ``cls``; the first error becomes a one-line InputError."""
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = key_path(tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (not allowed here)"
        raise InputError(message, file=file, key=key or None) from None


def load_toml_model[M: BaseModel](path: str | Path, cls: type[M]) -> M:
    """Read and validate a TOML file as ``cls``."""
    return validate_as(read_toml(path), cls, file=path)
