"""Compile once, sample many.

A builder turns a dataset into a ``pm.Model`` whose dataset-dependent arrays all enter through
``pm.Data`` (observations, index vectors, covariates, counts). Models of the same *structure*
(coordinates and data shapes) then differ only in those arrays, so one nutpie-compiled sampler
serves them all: each new dataset swaps its arrays in (``CompiledModel.with_data``) instead of
compiling again. Building a model stays cheap (no compilation, no sampling); compiling with
numba takes seconds, sampling the small KHE models well under one.

Why nutpie: measured on the reconstructed KHE data (benchmarks/RESULTS.md), nutpie samples these
models many times faster than PyMC's NUTS and its compiled models accept new data directly.

The guarantee that "same structure" means "same model" rests on every builder routing its data
through ``pm.Data``; tests/test_compiled.py checks each builder by comparing the log density and
the deterministics of the re-used compiled graph against a fresh build on another dataset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from typing import Any

import arviz as az
import numpy as np
import pymc as pm


def model_data(model: pm.Model) -> dict[str, np.ndarray]:
    """The values of a model's ``pm.Data`` containers, by name."""
    return {v.name: np.asarray(v.get_value()) for v in model.data_vars}


def structure_key(model: pm.Model) -> str:
    """Models with equal keys can share one compiled sampler: same coords, same data shapes."""
    coords = {name: [str(x) for x in values] for name, values in model.coords.items()}
    shapes = {name: [list(v.shape), str(v.dtype)] for name, v in model_data(model).items()}
    return json.dumps([coords, shapes], sort_keys=True)


class CompiledSampler:
    """A nutpie-compiled model that samples any dataset of the same structure."""

    def __init__(self, model: pm.Model):
        import nutpie

        self.key = structure_key(model)
        self._dtypes = {name: value.dtype for name, value in model_data(model).items()}
        self._nutpie = nutpie
        self._compiled = nutpie.compile_pymc_model(model)

    def sample(self, model: pm.Model, settings: Any) -> az.InferenceData:
        """Sample the posterior of ``model`` (which must have this sampler's structure) with its
        own data. ``settings`` is a :class:`khe_bayes.sampling.SamplerSettings`."""
        if structure_key(model) != self.key:
            raise ValueError("model structure differs from the compiled one; compile it anew")
        return self.sample_data(model_data(model), settings)

    def sample_data(self, data: dict[str, np.ndarray], settings: Any) -> az.InferenceData:
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
        return self._nutpie.sample(
            compiled,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=settings.cores or settings.chains,
            seed=settings.seed,
            target_accept=settings.target_accept,
            save_warmup=False,
            progress_bar=False,
        )


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


def sample_compiled(
    build: Callable[[], pm.Model],
    settings: Any,
    *,
    label: Hashable,
    cache: SamplerCache | None = None,
) -> tuple[pm.Model, az.InferenceData]:
    """Build a model, sample it with the cached compiled sampler for ``label`` and return both."""
    model = build()
    sampler = (cache or _PROCESS_CACHE).sampler_for(model, label)
    return model, sampler.sample(model, settings)
