"""Writing results atomically: everything goes to a staging directory beside the target, which is
renamed into place only when complete. A run that fails, is interrupted or is killed leaves no
partial output and never touches an existing result unless ``overwrite`` was asked for.

Before any work, :func:`check_can_write` checks the destination: ``--overwrite`` replaces only a
khe-bayes result (a directory holding ``manifest.json`` or ``reconstruction.json``), never the
root, the home or the current directory or one of its parents, nor any other directory; the
nearest existing parent must be writable and have room; and the output is reserved with a lock,
so a second run to the same ``--out`` is refused at once instead of racing the first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from khe_bayes.toolkit import interrupts
from khe_bayes.toolkit.errors import (
    OutputExistsError,
    OutputLockedError,
    OutputNotAllowedError,
    describe_os_error,
    os_reason,
)

RESULT_MARKERS = ("manifest.json", "reconstruction.json")
MIN_FREE_BYTES = 64 * 2**20  # a reanalysis writes ~20 MB; refuse to start with less than this
_HELD: dict[Path, int] = {}  # locked outputs of this process -> lock file descriptor


def _absolute(out: str | Path) -> Path:
    """``out`` made absolute without resolving its last component (which may be a symlink)."""
    out = Path(os.path.abspath(out))
    return out.parent.resolve() / out.name if out.name else out


def is_result(path: Path) -> bool:
    """A directory written by khe-bayes: it holds a manifest (a JSON object)."""
    if path.is_symlink() or not path.is_dir():
        return False
    for name in RESULT_MARKERS:
        marker = path / name
        if marker.is_file() and not marker.is_symlink():
            try:
                return isinstance(json.loads(marker.read_text(encoding="utf-8")), dict)
            except (OSError, ValueError):
                return False
    return False


def _protected(out: Path) -> str | None:
    """Why ``out`` may never be replaced, or None."""
    if out == Path(out.anchor) or not out.name:
        return "it is the root directory"
    try:
        target = out.resolve()
        cwd = Path.cwd().resolve()
    except (OSError, RuntimeError) as exc:
        why = describe_os_error(exc) if isinstance(exc, OSError) else "symbolic link loop"
        return f"the path cannot be resolved ({why})"
    try:
        home = Path.home().resolve()
    except (OSError, RuntimeError):  # no HOME and no passwd entry
        home = None
    if home is not None and target == home:
        return "it is the home directory"
    if target == cwd:
        return "it is the current directory"
    if target in cwd.parents:
        return "it contains the current directory"
    if home is not None and target in home.parents:
        return "it contains the home directory"
    return None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor)


def check_destination(out: Path, *, label: str | None = None) -> None:
    """The nearest existing parent of ``out`` is a writable directory with room (a probe file
    is created and removed, so a read-only mount is caught even as root)."""
    parent = _nearest_existing(out.parent)
    name = label or str(out)
    if not parent.is_dir():
        raise OutputNotAllowedError(f"{name}: {parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".khe-bayes-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputNotAllowedError(
            f"{name}: cannot write in {parent} ({os_reason(exc)})"
        ) from None
    free = shutil.disk_usage(parent).free
    if free < MIN_FREE_BYTES:
        raise OutputNotAllowedError(
            f"{name}: only {free / 2**20:.1f} MB free on the file system of {parent}; "
            f"a result needs at least {MIN_FREE_BYTES // 2**20} MB"
        )


def check_can_write(out: str | Path, overwrite: bool) -> None:
    """Fail early, before any work, if ``out`` may not be written (see the module docstring);
    then reserve it for this process until :func:`staged_directory` has written it."""
    out = _absolute(out)
    reason = _protected(out)
    if reason:
        raise OutputNotAllowedError(f"{out}: refusing to write a result here: {reason}")
    if out.is_symlink():
        raise OutputNotAllowedError(f"{out}: is a symbolic link; give the directory it points to")
    if out.exists():
        if not out.is_dir():
            raise OutputNotAllowedError(
                f"{out}: exists and is a file, not a directory; choose another --out"
            )
        if not overwrite:
            raise OutputExistsError(
                f"{out}: output directory exists; pass --overwrite to replace it "
                "or choose another --out"
            )
        if not is_result(out):
            raise OutputNotAllowedError(
                f"{out}: exists and is not a khe-bayes result (no {RESULT_MARKERS[0]}); "
                "--overwrite replaces only earlier results: remove it yourself or choose "
                "another --out"
            )
    check_destination(out)
    _lock(out)


def _lock_path(out: Path) -> Path:
    """The lock file of ``out``: in a per-user directory under the temporary directory, so that
    reserving an output writes nothing beside it (a failed check leaves no trace)."""
    digest = hashlib.sha256(str(out).encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / f"khe-bayes-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{digest}.lock"


def _lock(out: Path) -> None:
    if out in _HELD:
        return
    path = _lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").split("\n")[0]
            os.close(fd)
            raise OutputLockedError(
                f"{out}: another khe-bayes run (pid {holder or '?'}) is writing this output; "
                "wait for it to finish or choose another --out"
            ) from None
        # the holder may have removed the file between our open and flock: lock the new one
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{out}\n".encode(), 0)
    _HELD[out] = fd


def release(out: str | Path) -> None:
    """Give up the reservation of ``out`` (done by :func:`staged_directory` when it ends)."""
    out = _absolute(out)
    fd = _HELD.pop(out, None)
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(_lock_path(out))
    os.close(fd)


def release_all() -> None:
    """Give up every reservation of this process (the CLI does this as it ends, so that a failed
    run leaves no lock file behind)."""
    for out in list(_HELD):
        release(out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_directory(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory; on success it replaces ``out`` in one rename.

    On any exception (including KeyboardInterrupt, and a SIGINT that a library swallowed) the
    staging directory is removed and ``out`` is left as it was; the result directory gets the
    permissions of any directory the user creates (0777 minus the umask, not mkdtemp's 0700).
    """
    out = _absolute(out)  # figures and reports refer to files by absolute path
    check_can_write(out, overwrite)
    staging = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        interrupts.raise_if_interrupted()
        with interrupts.deferred():
            _replace(staging, out, overwrite)
    except BaseException:
        if staging is not None:
            with interrupts.deferred():
                shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        release(out)


def _replace(staging: Path, out: Path, overwrite: bool) -> None:
    """Put ``staging`` in place of ``out``; on failure ``out`` is as it was (the caller removes
    ``staging``)."""
    if not (out.exists() or out.is_symlink()):
        os.rename(staging, out)
        return
    check_can_write(out, overwrite)  # it may have appeared since the check before sampling
    trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    try:
        os.rename(out, trash / out.name)
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(trash / out.name, out)
            raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
