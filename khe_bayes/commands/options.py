"""Option types and checks shared by the commands. Light: nothing here imports PyMC, so that
``khe-bayes --help`` stays fast, and every check runs before any work."""

from __future__ import annotations

import argparse
import math
import socket
from urllib.parse import urlsplit

from khe_bayes.toolkit.errors import InputError

SCHEDULER_TIMEOUT_S = 5.0


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` are refused with the rule)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def probability(text: str) -> float:
    value = finite_float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text!r}")
    return value


def check_count(option: str, value: int | None, low: int, high: int, why: str = "") -> None:
    """``value`` (if given) must lie in [low, high]; the message names the option and rule."""
    if value is None or low <= value <= high:
        return
    rule = f"must be between {low} and {high}" if high < 10**12 else f"must be at least {low}"
    raise InputError(f"{option}: {rule}, got {value}{f' ({why})' if why else ''}")


def check_scheduler(address: str | None, timeout: float = SCHEDULER_TIMEOUT_S) -> None:
    """Fail before any work if a Dask scheduler address is malformed or not reachable (a TCP
    connection is opened and closed: cheap, and it catches a typo or a stopped cluster)."""
    if address is None:
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise InputError(
            f"--scheduler {address!r}: expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)"
        )
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise InputError(
            f"--scheduler {address}: cannot reach the Dask scheduler ({why}); "
            "is the cluster running?"
        ) from None
