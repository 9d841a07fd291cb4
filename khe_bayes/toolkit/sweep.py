"""Sweeps as tasks on Dask distributed, resumable.

A sweep is a list of independent :class:`Task` s (one fit of one reconstructed dataset, one
SBC replication, one prior-grid or leave-one-center-out refit, ...). Each task is a plain
function and picklable arguments (Dask sends them with cloudpickle) returning a JSON-ready dict
or an ArviZ ``DataTree``, so any Dask worker can run it. Each worker process keeps its own
compiled models (compiled.process_cache), so a model is compiled once per worker, not once per
task.

Every finished task's result is written to the store (atomically: temporary file, then rename):
``<key>.<fingerprint>.json``, and for a DataTree also ``<key>.<fingerprint>.nc`` (netCDF,
written first; the JSON then points to it). The fingerprint is a hash of what the task computes
from (its data, priors, sampler settings), so running the same sweep again skips the tasks
already stored and an interrupted sweep resumes where it stopped, while a sweep with other
inputs computes afresh beside the old results instead of picking them up. (A model fit's
fingerprint includes the model's generative graph; nothing hashes the rest of khe-bayes's code:
after changing it, use a new store.) Results are JSON or netCDF, readable without khe-bayes.

Where the work runs: :func:`run_tasks` with ``SweepOptions()`` runs the tasks one after another
in this process; ``workers=N`` starts a local cluster of N single-threaded worker processes,
``scheduler="tcp://HOST:PORT"`` uses an existing cluster (whose workers must have khe-bayes
installed and see the same files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from khe_bayes.toolkit.progress import Clock, report_step
from khe_bayes.toolkit.quiet import quiet_call

_NETCDF = "__netcdf__"  # key of a stored JSON that points to the task's DataTree


@dataclass(frozen=True)
class Task:
    key: str  # unique within the sweep; names the task in progress lines and in the store
    fn: Callable[..., Any]  # returns a JSON-ready dict or an xr.DataTree
    args: tuple = ()
    fingerprint: str = ""  # hash of the task's inputs (:func:`fingerprint`); "" for none


@dataclass(frozen=True)
class SweepOptions:
    """Where a sweep runs: in this process (``workers=None``, the default), or as tasks on Dask
    (``workers=N`` local processes, or ``scheduler``), each finished task stored in ``store`` so
    an interrupted sweep resumes (a temporary store when none is given)."""

    workers: int | None = None
    scheduler: str | None = None
    store: Path | None = None

    @property
    def on_dask(self) -> bool:
        return self.workers is not None or self.scheduler is not None


IN_PROCESS = SweepOptions()


def fingerprint(*parts: Any) -> str:
    """A stable hash of a task's inputs: data frames (values, index, column names), pydantic
    models (their JSON) and JSON-able values."""
    import pandas as pd
    from pydantic import BaseModel

    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            text = part.to_csv()
        elif isinstance(part, BaseModel):
            text = part.model_dump_json()
        else:
            text = json.dumps(jsonable(part), sort_keys=True, default=str)
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _path(store: Path, task: Task) -> Path:
    stem = f"{task.key}.{task.fingerprint}" if task.fingerprint else task.key
    return store / f"{stem}.json"


def load_finished(store: Path, tasks: list[Task]) -> dict[str, Any]:
    """The results already in the store (same key and fingerprint), by key."""
    out = {}
    for task in tasks:
        path = _path(store, task)
        if path.exists():
            result = json.loads(path.read_text())
            if isinstance(result, dict) and set(result) == {_NETCDF}:
                result = _read_netcdf(store / result[_NETCDF])
            out[task.key] = result
    return out


def _read_netcdf(path: Path) -> xr.DataTree:
    from khe_bayes.toolkit.datatree import load

    return load(path)


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_result(store: Path, task: Task, result: Any) -> None:

    path = _path(store, task)
    if isinstance(result, xr.DataTree):
        netcdf = path.with_suffix(".nc")
        _atomic_write(netcdf, lambda tmp: result.to_netcdf(tmp, engine="h5netcdf"))
        result = {_NETCDF: netcdf.name}
    _atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(result)))


def run_tasks(
    tasks: list[Task], options: SweepOptions, progress: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Run a sweep where ``options`` says; return every task's result by key."""
    if not options.on_dask:
        results = {}
        clock = Clock(len(tasks))
        for task in tasks:
            report_step(progress, clock.step(task.key.replace("__", ", ")))
            results[task.key] = task.fn(*task.args)
            clock.finish_one()
        if tasks:
            report_step(progress, clock.step("done"))
        return results
    where = {"workers": options.workers or 1, "scheduler": options.scheduler}
    if options.store is not None:
        return run_sweep(tasks, options.store, progress=progress, **where)
    with tempfile.TemporaryDirectory(prefix="khe-sweep-") as store:
        return run_sweep(tasks, store, progress=progress, **where)


def run_sweep(
    tasks: list[Task],
    store: str | Path,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Run the tasks not yet in ``store`` on Dask; return every task's result by key."""
    from dask.distributed import Client, as_completed

    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ValueError("task keys must be unique")
    results = load_finished(store, tasks)
    todo = [t for t in tasks if t.key not in results]
    progress(f"{len(results)} of {len(tasks)} tasks already done in {store}; {len(todo)} to run")
    if not todo:
        return {k: results[k] for k in keys}
    if scheduler:
        cluster, client = None, Client(scheduler)
    else:
        cluster = local_cluster(workers)
        client = Client(cluster)
    clock = Clock(len(todo))
    try:
        futures = [
            client.submit(quiet_call, t.fn, *t.args, key=f"khe-{t.key}-{t.fingerprint}", pure=False)
            for t in todo
        ]
        by_future = {f.key: t for f, t in zip(futures, todo, strict=True)}
        for future in as_completed(futures):
            task = by_future[future.key]
            results[task.key] = future.result()
            save_result(store, task, results[task.key])
            clock.finish_one()
            report_step(progress, clock.step(f"finished {task.key.replace('__', ', ')}"))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return {k: results[k] for k in keys}


def run_unstored(fn: Callable[..., Any], jobs: list[tuple], options: SweepOptions) -> list[Any]:
    """``[fn(*args) for args in jobs]``, in this process or, when ``options`` say so, as tasks on
    Dask (results in the order of ``jobs``). Unlike :func:`run_tasks` nothing is stored, so
    results may be any picklable object; for short sweeps that are cheaper to redo than to
    resume."""
    if not options.on_dask:
        return [fn(*args) for args in jobs]
    from dask.distributed import Client

    with shared_cluster(options) as where, Client(where.scheduler) as client:
        futures = [client.submit(quiet_call, fn, *args, pure=False) for args in jobs]
        return client.gather(futures)


def local_cluster(workers: int):
    """A local Dask cluster of ``workers`` single-threaded processes. They are not daemonic, so a
    task may run PyMC's multiprocess chains."""
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.worker.daemon": False}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )


@contextlib.contextmanager
def shared_cluster(options: SweepOptions) -> Iterator[SweepOptions]:
    """One local cluster for several sweeps: with ``options.workers`` the cluster is started once
    and every sweep in the block runs on it (as on an existing cluster), so its worker processes,
    their imports and the models they compiled are paid for once, not once per sweep. Other
    options are returned unchanged."""
    if options.workers is None or options.scheduler is not None:
        yield options
        return
    cluster = local_cluster(options.workers)
    try:
        yield SweepOptions(scheduler=cluster.scheduler_address, store=options.store)
    finally:
        cluster.close()


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
