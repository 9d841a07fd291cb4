"""Benchmark: an SBC sweep on 1 vs 2 Dask workers, and an interrupted sweep resumed.

    .venv/bin/python benchmarks/bench_dask.py [--spec models/khe_response.toml]
        [--replications 120 [240 ...]] [--skip-resume]

1. The same sweep (``sbc_tasks`` of the spec: simulate, fit with the model compiled once per
   worker, rank) run twice into fresh stores, on a local cluster of 1 and of 2 single-threaded
   worker processes. Wall time includes starting the cluster and each worker's compilation, as
   a user would see it. Prints both times and the speedup; checks both gave identical ranks
   (same seeds per replication, so where a task runs must not change its result). Each task is
   timed where it runs, so the output also splits the wall time into the fixed cost each worker
   pays once (cluster start, then its first task: imports, simulation, nutpie compilation) and
   the steady state after it (tasks per second once every worker has compiled), and prints
   the steady-state speedup beside the end-to-end one. Several sizes (``--replications 120
   240 480``) show how the fixed cost, which more workers do not shorten, weighs less as the
   sweep grows.
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

from khe_bayes.toolkit.sbc import collect, sbc_tasks
from khe_bayes.toolkit.sweep import Task, run_sweep

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
    # a worker's first task carries its fixed cost: imports, simulation, nutpie compilation
    first = np.array([np.argmin(np.where(pid == p, begin, np.inf)) for p in np.unique(pid)])
    ready = end[first].max() - started  # every worker has finished its first task
    steady = (begin >= end[first].max()).sum() / (end.max() - end[first].max())
    later = np.setdiff1d(np.arange(len(begin)), first)
    print(
        f"{workers} worker(s): wall {wall:.1f} s; first task ended "
        f"{', '.join(f'{end[i] - started:.1f}' for i in first)} s after the sweep began "
        f"(cluster start, imports, simulation, compilation; first tasks took "
        f"{', '.join(f'{end[i] - begin[i]:.1f}' for i in first)} s); every worker ready at "
        f"{ready:.1f} s; later tasks {(end - begin)[later].mean():.3f} s wall and "
        f"{cpu[later].mean():.3f} s CPU each; steady state {steady:.2f} tasks/s",
        flush=True,
    )
    return wall, steady, collect(results)[0]


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
    p.add_argument("--replications", type=int, nargs="+", default=[120])
    p.add_argument("--skip-resume", action="store_true")
    args = p.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; spec {args.spec.name}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for r in args.replications:
            print(f"--- {r} replications", flush=True)
            one, steady_one, ranks_one = timed_sweep(args.spec, r, 1, tmp / f"w1_{r}")
            two, steady_two, ranks_two = timed_sweep(args.spec, r, 2, tmp / f"w2_{r}")
            print(
                f"{r} replications: speedup 1 -> 2 workers {one / two:.2f}x end to end, "
                f"{steady_two / steady_one:.2f}x in the steady state; identical ranks: "
                f"{ranks_one.equals(ranks_two)}",
                flush=True,
            )
        if not args.skip_resume:
            resume_demo(args.spec, args.replications[0], tmp)


if __name__ == "__main__":
    main()
