"""Ctrl-C and the processes a run starts.

PyMC (``pm.sample``) and nutpie (``nutpie.sample``) both catch ``KeyboardInterrupt`` and return
the draws sampled so far as if sampling had finished. The CLI therefore installs its own SIGINT
handler (:func:`install`) that records the interrupt before raising ``KeyboardInterrupt``: a
library may swallow the exception, but not the record. :func:`raise_if_interrupted` is called
after sampling and before a result is put into place, so a truncated trace never becomes a
result. :func:`deferred` holds an interrupt back while a few renames must all happen or none.

Chain processes: PyMC forks one process per chain. :func:`die_with_parent` makes every process
forked from this one receive SIGKILL when its parent dies (Linux ``PR_SET_PDEATHSIG``), so chains
never go on sampling after the run was killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

_state: dict = {"interrupted": False, "deferring": 0, "pending": False, "parent": 0}


def _handler(signum, frame) -> None:
    _state["interrupted"] = True
    if _state["deferring"]:
        _state["pending"] = True
        return
    raise KeyboardInterrupt


def install() -> Callable[[], None]:
    """Record every SIGINT (then raise KeyboardInterrupt as Python's default handler does);
    return a function that puts the previous handler back. Only the main thread can install
    signal handlers; elsewhere this does nothing."""
    reset()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGINT, _handler)
    if previous is None:  # installed from C: restore Python's default
        previous = signal.default_int_handler

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)

    return restore


def interrupted() -> bool:
    """Whether a SIGINT arrived since :func:`install` (or the last :func:`reset`)."""
    return _state["interrupted"]


def reset() -> None:
    _state.update(interrupted=False, pending=False)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a SIGINT arrived, even one a library swallowed."""
    if _state["interrupted"]:
        raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT back inside the block; an interrupt that arrived is raised after it."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    if not _state["deferring"] and _state["pending"]:
        _state["pending"] = False
        raise KeyboardInterrupt


def _remember_parent() -> None:
    _state["parent"] = os.getpid()


def _set_death_signal() -> None:
    """In a freshly forked child: die with SIGKILL when the parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != _state["parent"]:  # the parent died before prctl took effect
        os._exit(1)


def die_with_parent() -> None:
    """Every process forked from now on is killed when its parent process dies (Linux only)."""
    if not sys.platform.startswith("linux") or _state.get("fork_hook"):
        return
    os.register_at_fork(before=_remember_parent, after_in_child=_set_death_signal)
    _state["fork_hook"] = True
