"""Fitting one model to M datasets (reconstructions) and pooling the draws.

Pooling the posterior draws of M equally weighted reconstructed datasets is the Bayesian
analogue of multiple imputation: the pooled posterior mixes over the reconstruction
uncertainty. By the law of total variance, for every scalar quantity

    Var_pooled = mean_m Var(theta | D_m) + Var_m E(theta | D_m)

and ``reconstruction_share`` is the second term over the total: how much of the posterior
uncertainty comes from not knowing the patient data.

Convergence is judged per dataset (chains of different datasets target different posteriors, so
R-hat across them is meaningless): the pooled summary reports the worst per-dataset R-hat and
the summed per-dataset ESS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from khe_bayes.compiled import graph_digest
from khe_bayes.datatree import dataset, group_names, tree
from khe_bayes.sampling import SamplerSettings, derive_seed, fit, with_seed
from khe_bayes.summary import (
    DEFAULT_RULES,
    ConvergenceRules,
    describe_label,
    diagnostics,
    posterior_stats,
)
from khe_bayes.sweep import IN_PROCESS, SweepOptions, Task, fingerprint, run_tasks


@dataclass
class PooledFit:
    name: str
    idata: xr.DataTree  # chains of all datasets; non-dimension coord ``dataset`` on chain
    per_dataset: list[xr.DataTree] = field(repr=False, default_factory=list)
    var_names: list[str] = field(default_factory=list)

    @property
    def n_datasets(self) -> int:
        return len(self.per_dataset)


def pool(idatas: list[xr.DataTree], groups=("posterior", "sample_stats", "posterior_predictive")):
    """Concatenate DataTrees along ``chain``, tagging each chain with its ``dataset``."""
    pooled = {}
    for group in groups:
        parts, offset = [], 0
        for m, idata in enumerate(idatas):
            if group not in group_names(idata):
                break
            ds = dataset(idata, group)
            n = ds.sizes["chain"]
            ds = ds.assign_coords(chain=np.arange(offset, offset + n), dataset=("chain", [m] * n))
            parts.append(ds)
            offset += n
        else:
            pooled[group] = xr.concat(parts, dim="chain", combine_attrs="drop_conflicts")
    return tree(pooled)


def fit_dataset(
    name: str,
    build: Callable[[pd.DataFrame], pm.Model],
    data: pd.DataFrame,
    m: int,
    settings: SamplerSettings,
    var_names: list[str],
    posterior_predictive: bool = True,
    attrs: dict | None = None,
    log_likelihood: bool = False,
) -> xr.DataTree:
    """Fit ``build(data)``, the ``m``-th dataset (seed derived from ``name`` and ``m``, so the
    draws do not depend on where the fit runs); keep ``var_names``, the sample stats and the
    posterior predictive (and, with ``log_likelihood``, the pointwise log-likelihood and the
    constant data, for LOO on real patient data). With the nutpie backend the model is
    compiled once per process (under ``name``) and every further dataset only swaps its data
    in."""
    run = with_seed(settings, derive_seed(settings.seed, name, str(m)))
    idata = fit(
        build(data),
        run,
        posterior_predictive=posterior_predictive,
        attrs=attrs,
        compiled_as=("pooled", name),
        log_likelihood=log_likelihood,
    )
    keep = {
        "posterior": dataset(idata, "posterior")[var_names],
        "sample_stats": dataset(idata, "sample_stats"),
    }
    if posterior_predictive:
        keep["posterior_predictive"] = dataset(idata, "posterior_predictive")
    if log_likelihood:
        keep["log_likelihood"] = dataset(idata, "log_likelihood")
        keep["constant_data"] = dataset(idata, "constant_data")
    return tree(keep)


def dataset_tasks(
    name: str,
    build: Callable[[pd.DataFrame], pm.Model],
    datasets: list[pd.DataFrame],
    settings: SamplerSettings,
    var_names: list[str],
    *,
    posterior_predictive: bool = True,
    attrs: dict | None = None,
    log_likelihood: bool = False,
) -> list[Task]:
    """One sweep task per dataset: :func:`fit_dataset`. Each task's fingerprint covers the
    model's generative graph (so other priors are not served a stored result), its data and
    the sampler settings."""
    model = graph_digest(build(datasets[0])) if datasets else ""
    return [
        Task(
            f"{name}__dataset_{m:03d}",
            fit_dataset,
            (
                name,
                build,
                data,
                m,
                settings,
                var_names,
                posterior_predictive,
                attrs,
                log_likelihood,
            ),
            fingerprint(
                name,
                model,
                var_names,
                posterior_predictive,
                attrs,
                data,
                settings,
                m,
                log_likelihood,
            ),
        )
        for m, data in enumerate(datasets)
    ]


def pool_fits(name: str, fits: list[xr.DataTree], var_names: list[str]) -> PooledFit:
    """Pool per-dataset fits (in dataset order)."""
    pooled = pool(fits)
    pooled.posterior.attrs.update(fits[0].posterior.attrs)
    pooled.posterior.attrs["n_datasets"] = len(fits)
    return PooledFit(name=name, idata=pooled, per_dataset=fits, var_names=var_names)


def fit_pooled(
    name: str,
    build: Callable[[pd.DataFrame], pm.Model],
    datasets: list[pd.DataFrame],
    settings: SamplerSettings,
    var_names: list[str],
    *,
    posterior_predictive: bool = True,
    attrs: dict | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    options: SweepOptions = IN_PROCESS,
) -> PooledFit:
    """Fit ``build(dataset)`` to each dataset (:func:`fit_dataset`), in this process or as
    tasks on Dask (``options``), and pool."""
    tasks = dataset_tasks(
        name,
        build,
        datasets,
        settings,
        var_names,
        posterior_predictive=posterior_predictive,
        attrs=attrs,
    )
    results = run_tasks(tasks, options, progress)
    return pool_fits(name, [results[t.key] for t in tasks], var_names)


def _scalar_draws(idata: xr.DataTree, var_names: list[str]) -> dict[str, np.ndarray]:
    """Flatten each element of each variable to (draws,), labelled like az.summary rows."""
    out = {}
    for var in var_names:
        da = idata.posterior[var]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        stacked = da.stack(sample=("chain", "draw")).transpose(*extra, "sample")
        if not extra:
            out[var] = stacked.values
            continue
        for idx in np.ndindex(*[da.sizes[d] for d in extra]):
            labels = ", ".join(str(da[d].values[i]) for d, i in zip(extra, idx, strict=True))
            out[f"{var}[{labels}]"] = stacked.values[idx]
    return out


def reconstruction_variance_share(fit: PooledFit) -> pd.DataFrame:
    """Per scalar quantity: within- and between-dataset variance and the between share."""
    per = [_scalar_draws(idata, fit.var_names) for idata in fit.per_dataset]
    rows = []
    for label in per[0]:
        means = np.array([p[label].mean() for p in per])
        within = float(np.mean([p[label].var() for p in per]))
        between = float(means.var()) if len(per) > 1 else 0.0
        total = within + between
        rows.append(
            {
                "quantity": label,
                "within_variance": within,
                "between_variance": between,
                "reconstruction_share": between / total if total > 0 else 0.0,
            }
        )
    return pd.DataFrame(rows)


def pooled_summary(
    fit: PooledFit,
    descriptions: dict[str, str] | None = None,
    rules: ConvergenceRules = DEFAULT_RULES,
) -> pd.DataFrame:
    """ArviZ summary layout over the pooled draws. ``r_hat`` is the worst per-dataset R-hat,
    ``ess_bulk``/``ess_tail`` and ``mcse_mean`` combine the per-dataset values; ``flag`` lists
    per-dataset convergence problems."""
    stats = posterior_stats(fit.idata, var_names=fit.var_names)
    per = [
        az.summary(i, var_names=fit.var_names, kind="diagnostics", round_to="none")
        for i in fit.per_dataset
    ]
    n_chains = fit.per_dataset[0].posterior.sizes["chain"]
    ess_min = rules.ess_per_chain_min * n_chains
    stats["mcse_mean"] = np.sqrt(sum(p["mcse_mean"] ** 2 for p in per)) / len(per)
    stats["ess_bulk"] = sum(p["ess_bulk"] for p in per)
    stats["ess_tail"] = sum(p["ess_tail"] for p in per)
    stats["r_hat"] = pd.concat([p["r_hat"] for p in per], axis=1).max(axis=1)
    min_bulk = pd.concat([p["ess_bulk"] for p in per], axis=1).min(axis=1)
    divergent = [int(i.sample_stats["diverging"].sum()) for i in fit.per_dataset]
    flags = []
    for label in stats.index:
        problems = []
        if n_chains > 1 and not stats.loc[label, "r_hat"] <= rules.rhat_max:
            problems.append(f"r_hat>{rules.rhat_max}")
        if not min_bulk[label] >= ess_min:
            problems.append(f"ess_bulk<{ess_min:g} in a dataset")
        if sum(divergent) > rules.divergences_max:
            problems.append(f"divergences={sum(divergent)}")
        flags.append(";".join(problems))
    stats["flag"] = flags
    stats.insert(0, "description", [describe_label(lbl, descriptions or {}) for lbl in stats.index])
    stats.index.name = "quantity"
    return stats


def pooled_diagnostics(fit: PooledFit, rules: ConvergenceRules = DEFAULT_RULES) -> pd.DataFrame:
    rows = []
    for m, idata in enumerate(fit.per_dataset):
        rows.append({"model": fit.name, "dataset": m, **diagnostics(idata, rules)})
    return pd.DataFrame(rows)
