"""Fitting: a built ``pm.Model`` in, ArviZ ``InferenceData`` out. Building never samples."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import warnings
from collections.abc import Hashable

import arviz as az
import numpy as np
import pymc as pm

from khe_bayes.interrupts import raise_if_interrupted
from khe_bayes.settings import SamplerSettings

__all__ = ["SamplerSettings", "derive_seed", "fit", "with_seed"]


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
) -> az.InferenceData:
    """Sample ``model`` with NUTS and return InferenceData with sample stats (and, with the
    PyMC backend, the pointwise log-likelihood).

    ``attrs`` (e.g. the spec that built the model) is stored JSON-encoded in the posterior attrs
    so that a saved result can be traced and rebuilt. ``compiled_as`` (nutpie backend): a label
    under which the compiled model is cached in this process, so later fits of models built by
    the same builder with the same priors only swap their data in; without it the model is
    compiled for this fit alone.
    """
    if settings.backend == "nutpie":
        idata = _fit_nutpie(model, settings, compiled_as)
    else:
        idata = _fit_pymc(model, settings)
    raise_if_interrupted()  # PyMC and nutpie return a truncated trace on Ctrl-C: not a result
    with model:
        if prior_draws:
            idata.extend(pm.sample_prior_predictive(prior_draws, random_seed=settings.seed))
        if posterior_predictive:
            pm.sample_posterior_predictive(
                idata,
                var_names=[rv.name for rv in model.observed_RVs],
                extend_inferencedata=True,
                random_seed=settings.seed,
                progressbar=False,
            )
    idata.posterior.attrs["sampler_settings"] = settings.model_dump_json()
    for key, value in (attrs or {}).items():
        idata.posterior.attrs[key] = value if isinstance(value, str) else json.dumps(value)
    return idata


def _fit_nutpie(model: pm.Model, settings: SamplerSettings, label: Hashable | None):
    from khe_bayes.compiled import CompiledSampler, process_cache

    cache = process_cache()
    sampler = CompiledSampler(model) if label is None else cache.sampler_for(model, label)
    return sampler.sample(model, settings)


def _fit_pymc(model: pm.Model, settings: SamplerSettings) -> az.InferenceData:
    cores = settings.cores or min(settings.chains, os.cpu_count() or 1)
    if multiprocessing.current_process().daemon:  # e.g. a Dask worker: may not start processes
        cores = 1  # same draws: PyMC seeds each chain alike whether sequential or parallel
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*chains for robust computation.*")
        return pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=cores,
            target_accept=settings.target_accept,
            random_seed=settings.seed,
            progressbar=_show_progress(settings),
            idata_kwargs={"log_likelihood": True},
            compute_convergence_checks=False,
        )


def derive_seed(seed: int, *labels: str) -> int:
    """A reproducible child seed for one fit, so sibling fits do not share random streams."""
    import zlib

    keys = [seed, *(zlib.crc32(label.encode()) for label in labels)]
    return int(np.random.SeedSequence(keys).generate_state(1)[0])


def with_seed(settings: SamplerSettings, seed: int) -> SamplerSettings:
    return settings.model_copy(update={"seed": seed})
