"""Fitting: a built ``pm.Model`` in, an ArviZ ``DataTree`` out. Building never samples."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import warnings
from collections.abc import Hashable

import numpy as np
import pymc as pm
import xarray as xr

from khe_bayes.toolkit.datatree import dataset, set_group, stamp
from khe_bayes.toolkit.interrupts import raise_if_interrupted
from khe_bayes.toolkit.settings import SamplerSettings

__all__ = ["SamplerSettings", "add_posterior_predictive", "derive_seed", "fit", "with_seed"]


def _show_progress(settings: SamplerSettings) -> bool:
    if settings.progressbar is not None:
        return settings.progressbar
    return sys.stderr.isatty() and os.environ.get("CI") is None


def fit(
    model: pm.Model,
    settings: SamplerSettings,
    *,
    posterior_predictive: bool = False,
    prior_draws: int = 0,
    attrs: dict | None = None,
    compiled_as: Hashable | None = None,
    log_likelihood: bool = True,
    predictive_draws: int | None = None,
    data_groups: bool = True,
) -> xr.DataTree:
    """Sample ``model`` with NUTS and return a DataTree with ``posterior``, ``sample_stats``,
    ``observed_data``, ``constant_data`` and (with ``log_likelihood``, for LOO) the pointwise
    ``log_likelihood`` of every observed variable.

    ``attrs`` (e.g. the spec that built the model) is stored JSON-encoded in the posterior attrs
    so that a saved result can be traced and rebuilt. ``compiled_as`` (nutpie backend): a label
    under which the compiled model is cached in this process, so later fits of models built by
    the same builder with the same priors only swap their data in; without it the model is
    compiled for this fit alone. ``predictive_draws``: the posterior predictive on that many
    posterior draws (thinned evenly within each chain, see :func:`add_posterior_predictive`)
    instead of all of them. ``data_groups=False`` (nutpie backend) leaves out
    ``observed_data`` and ``constant_data``, for callers that drop them anyway.
    """
    log_likelihood = log_likelihood and bool(model.observed_RVs)
    try:
        if settings.backend == "nutpie":
            idata = _fit_nutpie(model, settings, compiled_as, log_likelihood, data_groups)
        else:
            idata = _fit_pymc(model, settings, log_likelihood)
    except Exception:
        raise_if_interrupted()  # e.g. chains of unequal length after nutpie's abort on Ctrl-C
        raise
    raise_if_interrupted()  # PyMC and nutpie return a truncated trace on Ctrl-C: not a result
    with model:
        if prior_draws:
            prior = pm.sample_prior_predictive(prior_draws, random_seed=settings.seed)
            for group in ("prior", "prior_predictive"):
                if group in prior:
                    set_group(idata, group, dataset(prior, group))
    if posterior_predictive:
        add_posterior_predictive(idata, model, settings.seed, predictive_draws)
    extra = {"sampler_settings": settings.model_dump_json()}
    for key, value in (attrs or {}).items():
        extra[key] = value if isinstance(value, str) else json.dumps(value)
    stamp(idata, extra)
    return idata


def thinned_draws(n_draws: int, chains: int, total: int) -> np.ndarray:
    """Indices of ``ceil(total / chains)`` draws spread evenly over each chain's ``n_draws``
    (all of them if that is fewer)."""
    per_chain = min(n_draws, -(-total // chains))
    return np.unique(np.linspace(0, n_draws - 1, per_chain).round().astype(int))


def add_posterior_predictive(
    idata: xr.DataTree, model: pm.Model, seed: int, draws: int | None = None
) -> xr.DataTree:
    """Add the ``posterior_predictive`` group: every observed variable replicated at each
    posterior draw, or (``draws``) at about that many draws thinned evenly within each chain,
    keeping their ``draw`` labels. PyMC evaluates the predictive one draw at a time (about
    0.4 ms a draw for the KHE models), so for thousands of draws of many reconstructed
    datasets the thinned version is what a check drawing a hundred replications per dataset
    needs; the draws it uses are a systematic sample of the posterior's."""
    posterior = dataset(idata, "posterior")
    if draws is not None:
        keep = thinned_draws(posterior.sizes["draw"], posterior.sizes["chain"], draws)
        posterior = posterior.isel(draw=keep)
    with model:
        predictive = pm.sample_posterior_predictive(
            posterior,
            var_names=[rv.name for rv in model.observed_RVs],
            random_seed=seed,
            progressbar=False,
        )
    set_group(idata, "posterior_predictive", dataset(predictive, "posterior_predictive"))
    return idata


def _fit_nutpie(
    model: pm.Model,
    settings: SamplerSettings,
    label: Hashable | None,
    log_likelihood: bool,
    data_groups: bool = True,
) -> xr.DataTree:
    from khe_bayes.toolkit.compiled import CompiledSampler, process_cache

    cache = process_cache()
    sampler = CompiledSampler(model) if label is None else cache.sampler_for(model, label)
    return sampler.sample(model, settings, log_likelihood=log_likelihood, data_groups=data_groups)


def _fit_pymc(model: pm.Model, settings: SamplerSettings, log_likelihood: bool) -> xr.DataTree:
    cores = settings.cores or min(settings.chains, os.cpu_count() or 1)
    if multiprocessing.current_process().daemon:  # e.g. a Dask worker: may not start processes
        cores = 1  # same draws: PyMC seeds each chain alike whether sequential or parallel
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*chains for robust computation.*")
        return pm.sample(
            nuts_sampler="pymc",
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=cores,
            target_accept=settings.target_accept,
            random_seed=settings.seed,
            progressbar=_show_progress(settings),
            idata_kwargs={"log_likelihood": log_likelihood},
            compute_convergence_checks=False,
        )


def derive_seed(seed: int, *labels: str) -> int:
    """A reproducible child seed for one fit, so sibling fits do not share random streams."""
    import zlib

    keys = [seed, *(zlib.crc32(label.encode()) for label in labels)]
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def with_seed(settings: SamplerSettings, seed: int) -> SamplerSettings:
    return settings.model_copy(update={"seed": seed})
