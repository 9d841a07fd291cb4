"""Compile once, sample many.

A builder turns a dataset into a ``pm.Model`` whose dataset-dependent arrays all enter through
``pm.Data`` (observations, index vectors, covariates, counts). Models of the same *structure*
(coordinates, data shapes, and the generative graph with its priors: ``structure_key``) then
differ only in those arrays, so one nutpie-compiled sampler serves them all: each new dataset
swaps its arrays in (``CompiledModel.with_data``) instead of compiling again. Building a model
stays cheap (no compilation, no sampling); compiling with numba takes seconds, sampling the
small KHE models well under one.

Why nutpie: measured on the reconstructed KHE data (benchmarks/RESULTS.md), nutpie samples these
models many times faster than PyMC's NUTS and its compiled models accept new data directly.
Its trace is taken raw (Arrow) and turned into an ArviZ DataTree here, keeping only the posterior
draws and the per-draw sample stats: nutpie's own conversion also builds the warm-up groups and
the per-draw list columns, which cost about a sixth of the time per dataset of these models.
The model's observed and constant data are attached from the built model (as PyMC does), and
the pointwise log-likelihood on request (LOO needs it; pooled reconstructions skip it).

The guarantee that "same structure" means "same model" rests on every builder routing its data
through ``pm.Data``; tests/test_compiled.py checks each builder by comparing the log density and
the deterministics of the re-used compiled graph against a fresh build on another dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import weakref
from collections.abc import Collection, Hashable
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import xarray as xr
from pytensor.graph.basic import Constant
from pytensor.graph.traversal import ancestors
from pytensor.printing import debugprint

from khe_bayes.toolkit.datatree import model_groups, set_group, tree


def model_data(model: pm.Model) -> dict[str, np.ndarray]:
    """The values of a model's ``pm.Data`` containers, by name."""
    return {v.name: np.asarray(v.get_value()) for v in model.data_vars}


def structure_key(model: pm.Model) -> str:
    """Models with equal keys can share one compiled sampler: the same coords, the same data
    shapes and dtypes, and the same generative graph (:func:`graph_digest`: priors and every
    other constant included), so that only the values in the ``pm.Data`` containers differ.

    Remembered per model object (printing the graph costs ~15 ms, and a fit asks twice); a
    model's graph does not change once built, but ``pm.set_data`` may change shapes and
    coords, so those are part of what the key is remembered against."""
    now = (
        tuple((v.name, np.shape(v.get_value())) for v in model.data_vars),
        tuple((name, tuple(map(str, values))) for name, values in model.coords.items()),
    )
    known = _STRUCTURE_KEYS.get(model)
    if known is not None and known[0] == now:
        return known[1]
    key = _structure_key(model)
    _STRUCTURE_KEYS[model] = (now, key)
    return key


_STRUCTURE_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _structure_key(model: pm.Model) -> str:
    coords = {name: [str(x) for x in values] for name, values in model.coords.items()}
    shapes = {name: [list(v.shape), str(v.dtype)] for name, v in model_data(model).items()}
    return json.dumps([coords, shapes, graph_digest(model)], sort_keys=True)


def graph_digest(model: pm.Model) -> str:
    """A hash of the model's generative graph: every random variable, deterministic and
    potential as printed (distributions, how their parameters are computed, the data
    containers by name but not their values), the values of every constant in it (a prior's
    parameters, say) and the kind of each variable's transform. A ``CustomDist`` enters by its
    name and parameters: two with the same name but other ``logp`` functions are not told
    apart."""
    outputs = [*model.basic_RVs, *model.deterministics, *model.potentials]
    constants = [v for v in ancestors(outputs) if isinstance(v, Constant)]
    # a constant's name is not part of the model, and compiling names some (nutpie's compilation
    # named a bare constant in a Deterministic after it), so names are left out of the print
    names = [c.name for c in constants]
    try:
        for c in constants:
            c.name = None
        text = debugprint(outputs, file="str", print_type=True)
    finally:
        for c, name in zip(constants, names, strict=True):
            c.name = name
    text = _RNG_ADDRESS.sub("RNG", text)  # generators print their memory address
    transforms = [
        f"{rv.name}:{type(model.rvs_to_transforms.get(rv)).__name__}" for rv in model.free_RVs
    ]
    digest = hashlib.sha256("\n".join([text, *transforms]).encode())
    for variable in constants:
        data = np.asarray(variable.data)
        # an object constant's bytes are pointers, which differ between processes
        digest.update(repr(variable.data).encode() if data.dtype == object else data.tobytes())
    return digest.hexdigest()[:16]


_RNG_ADDRESS = re.compile(r"RNG\(<Generator\(\w+\) at 0x[0-9A-Fa-f]+>\)")


class CompiledSampler:
    """A nutpie-compiled model that samples any dataset of the same structure."""

    def __init__(self, model: pm.Model):
        import nutpie

        self.key = structure_key(model)
        self._dtypes = {name: value.dtype for name, value in model_data(model).items()}
        # the compiled model's initial-point function (PyMC's) reads this model's pm.Data
        # containers, not the swapped-in copies: sample_data sets them, so that a chain starts
        # where a fresh compilation for those data would start it (with priors as data the
        # starting point depends on the prior; otherwise on the first model compiled, i.e. on
        # the order of the fits and on which Dask worker compiled first); they are set back
        # after sampling, so the caller's model keeps its own data
        self._model = model
        self._compiled_values = model_data(model)
        self._nutpie = nutpie
        # IEEE arithmetic (no fastmath): with fastmath, code that numba loads from PyTensor's
        # on-disk cache and code it compiles afresh can round differently, so the same seed
        # gave different draws depending on the cache's state (seen with the ordinal model).
        with pytensor.config.change_flags(numba__fastmath=False):
            self._compiled = nutpie.compile_pymc_model(model)
        self._coords = {name: pd.Index(values) for name, values in self._compiled.coords.items()}
        # the sampler's unconstrained values (e.g. center_sd_log__) are not model quantities
        self._transformed = {v.name for v in model.value_vars if v.name not in model.named_vars}

    def sample(
        self,
        model: pm.Model,
        settings: Any,
        *,
        log_likelihood: bool = False,
        data_groups: bool = True,
    ) -> xr.DataTree:
        """Sample the posterior of ``model`` (which must have this sampler's structure) with its
        own data. ``settings`` is a :class:`khe_bayes.toolkit.sampling.SamplerSettings`. The
        result also holds (``data_groups``) the model's ``observed_data`` and ``constant_data``
        and, with ``log_likelihood``, the pointwise log-likelihood of every observed variable."""
        if structure_key(model) != self.key:
            raise ValueError("model structure differs from the compiled one; compile it anew")
        result = self.sample_data(model_data(model), settings)
        if data_groups:
            for group, ds in model_groups(model).items():
                set_group(result, group, ds)
        if log_likelihood:
            result = pm.compute_log_likelihood(
                result, model=model, extend_inferencedata=True, progressbar=False
            )
        return result

    def sample_data(self, data: dict[str, np.ndarray], settings: Any) -> xr.DataTree:
        """Sample with some ``pm.Data`` arrays replaced (same shapes); the rest keep the values
        the model was compiled with. Simulation-based calibration swaps only the observations.

        Values must fit the container's dtype: non-integers for an integer container raise
        instead of being truncated silently (as nutpie's ``with_data`` would)."""
        for name, values in data.items():
            dtype = self._dtypes[name]
            values = np.asarray(values)
            if np.issubdtype(dtype, np.integer) and not np.array_equal(values, np.round(values)):
                raise ValueError(f"pm.Data {name!r} holds integers; got non-integer values")
        compiled = self._compiled.with_data(**data)
        for name, values in self._compiled_values.items():
            self._model[name].set_value(
                np.asarray(data.get(name, values), dtype=self._dtypes[name])
            )
        try:
            raw = self._nutpie.sample(
                compiled,
                draws=settings.draws,
                tune=settings.tune,
                chains=settings.chains,
                cores=_threads_allowed(settings.cores or settings.chains),
                seed=settings.seed,
                target_accept=settings.target_accept,
                save_warmup=False,
                progress_bar=False,
                return_raw_trace=True,
            )
        finally:  # that model is the caller's: it gets its own data back
            for name, values in self._compiled_values.items():
                self._model[name].set_value(values)
        draw_batches, stat_batches = raw.get_arrow_trace()
        return raw_trace_to_inference_data(
            draw_batches, stat_batches, self._coords, drop=self._transformed
        )


def _threads_allowed(requested: int) -> int:
    """Inside a Dask worker, no more sampling threads than the worker has (one, for local
    clusters), so N workers use N cores; elsewhere as requested. nutpie seeds each chain by its
    index, so the draws do not depend on how many chains run at once."""
    if "distributed" not in sys.modules:  # a Dask worker has imported it; importing costs 0.5 s
        return requested
    try:
        from distributed import get_worker

        return max(1, min(requested, get_worker().state.nthreads))
    except (ImportError, ValueError):  # not in a Dask worker
        return requested


_NOT_STATS = frozenset({"tuning", "chain", "draw"})


def raw_trace_to_inference_data(
    draw_batches: list,
    stat_batches: list,
    coords: dict[str, pd.Index],
    drop: Collection[str] = (),
) -> xr.DataTree:
    """nutpie's raw Arrow trace (one draw and one stat batch per chain) as a DataTree: the
    ``posterior`` group (draws after tuning, every variable but ``drop``, dims from nutpie's
    column metadata) and ``sample_stats`` (every per-draw scalar statistic: diverging, energy,
    step_size, depth, n_steps, ...). Warm-up draws and list-valued statistics are left out."""
    posterior: dict[str, list[np.ndarray]] = {}
    stats: dict[str, list[np.ndarray]] = {}
    dims: dict[str, list[str]] = {}
    for draws, stat in zip(draw_batches, stat_batches, strict=True):
        kept = ~stat.column("tuning").to_numpy().astype(bool)
        for name in draws.column_names:
            if name not in drop:
                values, dims[name] = _column(draws, name)
                posterior.setdefault(name, []).append(values[kept])
        for name in stat.column_names:
            if name in _NOT_STATS:
                continue
            column = _column(stat, name, scalar_only=True)
            if column is not None:
                stats.setdefault(name, []).append(column[0][kept])
    return tree(
        {
            "posterior": _dataset(posterior, dims, coords),
            "sample_stats": _dataset(stats, {}, coords),
        }
    )


def _column(batch, name: str, scalar_only: bool = False):
    import pyarrow

    column = batch.column(name)
    meta = column.field.metadata or {}
    array = pyarrow.array(column)
    is_list = pyarrow.types.is_list(array.type) or pyarrow.types.is_large_list(array.type)
    if scalar_only and (is_list or array.null_count):
        return None
    if array.null_count:
        raise ValueError(f"nutpie trace column {name!r} has missing draws")
    shape = tuple(int(n) for n in meta[b"shape"].decode().split(",")) if b"shape" in meta else ()
    names = meta[b"dims"].decode().split(",") if b"dims" in meta else []
    if len(names) != len(shape):  # every model variable is declared with dims (tests check it)
        raise ValueError(f"nutpie trace column {name!r} has no dims; give the variable dims=")
    flat = array.flatten() if is_list else array
    return flat.to_numpy(zero_copy_only=False).reshape((len(array), *shape)), names


def _dataset(
    variables: dict[str, list[np.ndarray]], dims: dict[str, list[str]], coords: dict[str, pd.Index]
) -> xr.Dataset:
    data_vars = {
        name: (["chain", "draw", *dims.get(name, [])], np.stack(chains))
        for name, chains in variables.items()
    }
    n_chains, n_draws = next(iter(data_vars.values()))[1].shape[:2]
    used = {d for var_dims, _ in data_vars.values() for d in var_dims}
    dataset = xr.Dataset(
        data_vars,
        coords={
            "chain": np.arange(n_chains),
            "draw": np.arange(n_draws),
            **{name: index for name, index in coords.items() if name in used},
        },
    )
    dataset.attrs["inference_library"] = "nutpie"
    dataset.attrs["sample_dims"] = ["chain", "draw"]
    return dataset


class SamplerCache:
    """Compiled samplers by structure (and by an optional label such as a prior's name), so a
    sweep over datasets compiles each distinct model once."""

    def __init__(self) -> None:
        self._samplers: dict[tuple[Hashable, str], CompiledSampler] = {}
        self.compilations = 0

    def sampler_for(self, model: pm.Model, label: Hashable = "") -> CompiledSampler:
        key = (label, structure_key(model))
        if key not in self._samplers:
            self._samplers[key] = CompiledSampler(model)
            self.compilations += 1
        return self._samplers[key]


_PROCESS_CACHE = SamplerCache()


def process_cache() -> SamplerCache:
    """One cache per process (each Dask worker process keeps its own compiled models)."""
    return _PROCESS_CACHE
