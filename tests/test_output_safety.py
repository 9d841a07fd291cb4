"""Output directories and the environment (issue 16, classes 2 and 3): what --overwrite may
replace, the lock against concurrent runs, clean-up when the final rename fails, normal
permissions, and read-only or full file systems found before any work and leaving nothing.

The file-system cases mount a small tmpfs when the tests run as root (and skip, saying why,
when mounting is not allowed); the same failures are also injected as OSErrors, so they are
covered everywhere."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from khe_bayes.cli import main
from khe_bayes.toolkit import outputs
from khe_bayes.toolkit.errors import OutputExistsError, OutputLockedError, OutputNotAllowedError
from khe_bayes.toolkit.outputs import check_can_write, release, staged_directory

REPO = Path(__file__).resolve().parents[1]


def result_dir(path: Path, content: str = "old") -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text('{"command": "fit"}')
    (path / "summary.csv").write_text(content)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# --- what --overwrite may replace ----------------------------------------------------------


def test_overwrite_replaces_an_earlier_result(tmp_path):
    out = result_dir(tmp_path / "res")
    with staged_directory(out, overwrite=True) as stage:
        (stage / "manifest.json").write_text("{}")
        (stage / "new.csv").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "new.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["res"]


@pytest.mark.parametrize("marker", [None, "[1, 2]", "not json"])
def test_overwrite_refuses_a_directory_that_is_not_a_result(tmp_path, marker):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    if marker is not None:
        (out / "manifest.json").write_text(marker)  # a manifest that is not ours
    before = tree(out)
    refused = pytest.raises(OutputNotAllowedError, match="not a khe-bayes result")
    with refused, staged_directory(out, overwrite=True):
        pytest.fail("must not get here")
    assert tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]


@pytest.mark.parametrize("where", ["cwd", "parent", "root", "home"])
def test_protected_directories_are_refused_even_with_overwrite(tmp_path, monkeypatch, where):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    (work / "manifest.json").write_text("{}")  # even when it looks like a result
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    out = {"cwd": ".", "parent": "..", "root": "/", "home": str(tmp_path / "a")}[where]
    with pytest.raises(OutputNotAllowedError, match="refusing to write a result here"):
        check_can_write(out, overwrite=True)


def test_a_regular_file_is_not_called_an_existing_directory(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("x")
    with pytest.raises(OutputNotAllowedError, match="is a file, not a directory"):
        check_can_write(target, overwrite=False)


def test_an_existing_result_needs_overwrite(tmp_path):
    out = result_dir(tmp_path / "res")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_can_write(out, overwrite=False)


# --- staging is cleaned on every path --------------------------------------------------------


def test_a_failed_final_rename_leaves_the_old_result_and_no_staging(tmp_path, monkeypatch):
    out = result_dir(tmp_path / "res")
    before = tree(out)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".res.partial-"):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(outputs.os, "rename", rename)
    with pytest.raises(OSError), staged_directory(out, overwrite=True) as stage:
        (stage / "manifest.json").write_text("{}")
    assert tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["res"]  # no .partial-, no .old-


def test_a_swallowed_interrupt_discards_the_staged_result(tmp_path):
    """A SIGINT that a library caught (so no exception reached us) still stops the write."""
    from khe_bayes.toolkit import interrupts

    restore = interrupts.install()
    try:
        with contextlib.suppress(KeyboardInterrupt):  # what PyMC and nutpie do with Ctrl-C
            signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt), staged_directory(tmp_path / "res") as stage:
            (stage / "manifest.json").write_text("{}")
    finally:
        interrupts.reset()
        restore()
    assert list(tmp_path.iterdir()) == []


def test_result_directories_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with staged_directory(tmp_path / "res") as stage:
            (stage / "manifest.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "res").stat().st_mode & 0o777 == 0o755  # not mkdtemp's 0700


# --- concurrent runs to one --out ------------------------------------------------------------

HOLD = r"""
import sys, time
from khe_bayes.toolkit.outputs import check_can_write
check_can_write(sys.argv[1], overwrite=True)
print("@@locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_to_the_same_out_is_refused_at_once(tmp_path):
    out = tmp_path / "res"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "@@locked"
        with pytest.raises(OutputLockedError, match=f"pid {holder.pid}"):
            check_can_write(out, overwrite=True)
        # the same through the staging directory, and through the command line
        with pytest.raises(OutputLockedError), staged_directory(out, overwrite=True):
            pass
        assert_refused(["fit", EIGHT, "--out", str(out), "--no-progress"], "another khe-bayes run")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # a killed holder's lock is gone with it (the kernel releases it): the output is free
    check_can_write(out, overwrite=True)
    release(out)
    assert list(tmp_path.iterdir()) == []  # the lock lives outside the output's directory


# --- read-only and full file systems ---------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """Mount a tmpfs at ``path`` for the block; skip (saying why) where that is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected-OSError tests cover this case")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


EIGHT = str(REPO / "models" / "normal_eight_schools.toml")


def assert_refused(argv: list[str], fragment: str) -> None:
    code, stdout, stderr = run_cli(argv)
    assert code == 2, stderr
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("khe-bayes: error: "), stderr
    assert fragment in stderr, stderr


def test_read_only_destination_is_refused_before_any_work(tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m,ro") as mount:
        started = time.perf_counter()
        assert_refused(
            ["fit", EIGHT, "--out", str(mount / "run"), "--no-progress"],
            "read-only file system",
        )
        assert time.perf_counter() - started < 30  # refused up front, not after sampling
        assert list(mount.iterdir()) == []


def test_full_file_system_is_refused_before_any_work(tmp_path):
    with tmpfs(tmp_path / "full", "size=1m") as mount:
        assert_refused(
            ["fit", EIGHT, "--out", str(mount / "run"), "--no-progress"],
            "MB free on the file system",
        )
        assert list(mount.iterdir()) == []


def test_a_disk_that_fills_while_writing_leaves_nothing(tmp_path, monkeypatch):
    """The free-space check passes (it is lowered to 0 here) but the disk fills mid-write: one
    line, exit 2, no result and no staging directory."""
    monkeypatch.setattr(outputs, "MIN_FREE_BYTES", 0)
    with tmpfs(tmp_path / "small", "size=48k") as mount:
        assert_refused(
            ["reconstruct", "--datasets", "12", "--out", str(mount / "rec")],
            "no space left on the device",
        )
        assert list(mount.iterdir()) == []


def test_injected_read_only_and_full_disk_errors(tmp_path, monkeypatch):
    """The same two failures without a mount: the probe file fails with EROFS, then a write in
    the staging directory fails with ENOSPC."""

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path))

    with monkeypatch.context() as m:
        m.setattr(outputs.tempfile, "mkstemp", read_only)
        assert_refused(["reconstruct", "--out", str(tmp_path / "rec")], "read-only file system")
    assert list(tmp_path.iterdir()) == []

    import khe_bayes.study.ipd

    def full(frame, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(khe_bayes.study.ipd, "write_ipd", full)
    assert_refused(
        ["reconstruct", "--datasets", "1", "--out", str(tmp_path / "rec")],
        "no space left on the device",
    )
    assert list(tmp_path.iterdir()) == []


# --- the Dask scheduler is checked before any work --------------------------------------------


def test_a_real_dask_scheduler_passes_the_check():
    from distributed import LocalCluster

    from khe_bayes.commands.options import check_scheduler

    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        check_scheduler(cluster.scheduler_address, timeout=10)
