"""Benchmark: an SBC sweep on 1 vs 2 Dask workers, and an interrupted sweep resumed.

    .venv/bin/python benchmarks/bench_dask.py [--spec models/khe_response.toml]
        [--replications 120] [--skip-resume]

1. The same sweep (``sbc_tasks`` of the spec: simulate, fit with the model compiled once per
   worker, rank) run twice into fresh stores, on a local cluster of 1 and of 2 single-threaded
   worker processes. Wall time includes starting the cluster and each worker's compilation, as
   a user would see it. Prints both times and the speedup; checks both gave identical ranks
   (same seeds per replication, so where a task runs must not change its result). Each task is
   timed where it runs, so the output also splits the wall time into the start-up each worker
   pays before its first task and the time per task afterwards.
2. ``khe-bayes sbc`` on 2 workers, killed (SIGKILL to its process group, workers included) once
   a third of its replications are stored, then run again with the same command: prints the
   second run's "already done" line and its wall time, and checks no stored task was redone
   (file modification times unchanged).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from khe_bayes.sbc import collect, sbc_tasks
from khe_bayes.sweep import Task, run_sweep

REPO = Path(__file__).resolve().parents[1]


def _timed(fn, *args) -> dict:
    """Run a task and record when it ran, in which process, and its CPU time."""
    started, cpu = time.time(), time.process_time()
    result = fn(*args)
    return {**result, "_timing": [started, time.time(), time.process_time() - cpu, os.getpid()]}


def timed_sweep(spec: Path, replications: int, workers: int, store: Path):
    tasks = [
        Task(t.key, _timed, (t.fn, *t.args), t.fingerprint)
        for t in sbc_tasks(spec, replications, seed=1)
    ]
    started = time.time()
    results = run_sweep(tasks, store, workers=workers)
    wall = time.time() - started
    timing = np.array([r.pop("_timing") for r in results.values()])
    begin, end, cpu, pid = timing.T
    first = ", ".join(f"{begin[pid == p].min() - started:.1f}" for p in np.unique(pid))
    busy = end.max() - begin.min()
    print(
        f"{workers} worker(s): wall {wall:.1f} s; first task started {first} "
        f"s after the sweep began (cluster start, imports, simulation, compilation); then "
        f"{busy:.1f} s running {len(results)} tasks: {(end - begin).mean():.3f} s wall and "
        f"{cpu.mean():.3f} s CPU per task",
        flush=True,
    )
    return wall, collect(results)[0]


def resume_demo(spec: Path, replications: int, tmp: Path) -> None:
    out, store = tmp / "sbc_out", tmp / "sbc_store"
    cmd = [
        str(Path(sys.executable).parent / "khe-bayes"),
        "sbc",
        str(spec),
        "--out",
        str(out),
        "--store",
        str(store),
        "--replications",
        str(replications),
        "--workers",
        "2",
        "--seed",
        "2",
    ]
    print("$", " ".join(cmd[1:]))
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    target = replications // 3
    while len(list(store.glob("*.json"))) < target:
        if proc.poll() is not None:
            raise SystemExit(f"sbc ended before it could be interrupted:\n{proc.stdout.read()}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its Dask worker processes
    proc.wait()
    done = {p: p.stat().st_mtime_ns for p in store.glob("*.json")}
    print(
        f"killed after {len(done)} of {replications} replications were stored; out exists: "
        f"{out.exists()}"
    )
    started = time.perf_counter()
    again = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    lines = (again.stderr + again.stdout).splitlines()
    print("\n".join(line for line in lines if "already done" in line or "SBC" in line))
    unchanged = all(p.stat().st_mtime_ns == t for p, t in done.items())
    print(
        f"rerun: exit {again.returncode}, {elapsed:.1f} s; stored tasks untouched: {unchanged}; "
        f"{len(list(store.glob('*.json')))} stored in all"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spec", type=Path, default=REPO / "models" / "khe_response.toml")
    p.add_argument("--replications", type=int, default=120)
    p.add_argument("--skip-resume", action="store_true")
    args = p.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; spec {args.spec.name}, {args.replications} replications"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        one, ranks_one = timed_sweep(args.spec, args.replications, 1, tmp / "w1")
        two, ranks_two = timed_sweep(args.spec, args.replications, 2, tmp / "w2")
        print(
            f"speedup 1 -> 2 workers: {one / two:.2f}x; identical ranks: "
            f"{ranks_one.equals(ranks_two)}"
        )
        if not args.skip_resume:
            resume_demo(args.spec, args.replications, tmp)


if __name__ == "__main__":
    main()
