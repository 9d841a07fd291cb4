"""Sweeps as tasks on Dask distributed, resumable.

A sweep is a list of independent :class:`Task` s (one SBC replication, one prior-grid or
leave-one-center-out refit, ...). Each task is a plain function and picklable arguments (Dask
sends them with cloudpickle) returning a JSON-ready dict, so any Dask worker can run it. Each
worker process keeps its own compiled models (compiled.process_cache), so a model is compiled
once per worker, not once per task.

Every finished task's result is written to ``store/<key>.json`` (atomically: temporary file,
then rename). Running the same sweep again skips the keys already in the store, so an
interrupted sweep resumes where it stopped. Results are JSON (numbers and lists), readable
without khe-bayes.

Where the work runs: ``workers=N`` starts a local cluster of N single-threaded worker processes
(the default, N=1), ``scheduler="tcp://HOST:PORT"`` uses an existing cluster (whose workers must
have khe-bayes installed and see the same files).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Task:
    key: str  # unique within the sweep; also the file name in the store
    fn: Callable[..., dict]
    args: tuple = ()


def _path(store: Path, key: str) -> Path:
    return store / f"{key}.json"


def load_finished(store: Path, keys: list[str]) -> dict[str, dict]:
    """The results already in the store, by key."""
    out = {}
    for key in keys:
        path = _path(store, key)
        if path.exists():
            out[key] = json.loads(path.read_text())
    return out


def save_result(store: Path, key: str, result: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=store)
    with os.fdopen(fd, "w") as fh:
        json.dump(result, fh)
    os.replace(tmp, _path(store, key))


def run_sweep(
    tasks: list[Task],
    store: str | Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, dict]:
    """Run the tasks not yet in ``store`` on Dask; return every task's result by key."""
    import dask
    from dask.distributed import Client, LocalCluster, as_completed

    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    results = load_finished(store, keys)
    todo = [t for t in tasks if t.key not in results]
    progress(f"{len(results)} of {len(tasks)} tasks already done in {store}; {len(todo)} to run")
    if not todo:
        return {k: results[k] for k in keys}
    if scheduler:
        cluster, client = None, Client(scheduler)
    else:
        # non-daemonic workers, so a task may run PyMC's multiprocess chains
        with dask.config.set({"distributed.worker.daemon": False}):
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
        client = Client(cluster)
    started, done = time.time(), 0
    try:
        futures = [client.submit(t.fn, *t.args, key=f"khe-{t.key}", pure=False) for t in todo]
        by_future = {f.key: t.key for f, t in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            key = by_future[future.key]
            results[key] = future.result()
            save_result(store, key, results[key])
            done += 1
            if done == len(todo) or done % max(1, len(todo) // 20) == 0:
                rate = (time.time() - started) / done
                progress(
                    f"{done}/{len(todo)} tasks ({len(results)}/{len(tasks)} in all), "
                    f"{rate:.1f} s per task, about {rate * (len(todo) - done):.0f} s left"
                )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return {k: results[k] for k in keys}


def jsonable(value: Any) -> Any:
    """numpy arrays and scalars -> lists and Python numbers, recursively."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
