"""Fitting one model to M datasets (reconstructions) and pooling them by multiple-imputation
rules.

Each reconstructed dataset is one imputation of the missing patient data. For every scalar
quantity with per-dataset posterior mean ``q_m`` and variance ``u_m`` (m = 1..M), Rubin's rules
(Rubin 1987; Bayesian form in Gelman et al., BDA3 sec. 18.3)::

    q_bar = mean_m q_m
    W     = mean_m u_m                       (within-dataset variance)
    B     = sum_m (q_m - q_bar)^2 / (M - 1)  (between-dataset variance, unbiased: ddof = 1)
    T     = W + (1 + 1/M) B                  (total variance; the 1/M term is the error of q_bar
                                              as an estimate of the mean over infinitely many
                                              reconstructions)

``reconstruction_share = (1 + 1/M) B / T`` is the part of the posterior variance that comes from
not knowing the patient data. The Monte Carlo standard error of ``q_bar`` is ``sqrt(B / M)``:
each ``q_m`` carries its own MCMC error too, so this is the whole error of the pooled mean
(between-dataset and MCMC), estimated from the spread of the M means; it is reported beside
the posterior SD, with the number of datasets that would make it < 10% of it
(:func:`datasets_needed`). The pooled draws' own spread is ``W + (M-1)/M B``, so the pooled
interval is computed from draws whose between-dataset deviations are stretched by
``sqrt((M+1)/(M-1))`` (:func:`rubin_draws`): their variance is exactly ``T`` (for an SD or a
probability the stretch is on the log or logit scale, so the interval stays in the support).

Convergence is judged per dataset (chains of different datasets target different posteriors, so
R-hat across them is meaningless): the pooled summary reports the worst per-dataset R-hat and
the smallest per-dataset ESS (never a sum over datasets, which would hide the between-dataset
error).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from khe_bayes.toolkit.compiled import graph_digest
from khe_bayes.toolkit.datatree import dataset, group_names, tree
from khe_bayes.toolkit.sampling import (
    SamplerSettings,
    add_posterior_predictive,
    derive_seed,
    fit,
    with_seed,
)
from khe_bayes.toolkit.settings import PREDICTIVE_DRAWS
from khe_bayes.toolkit.summary import (
    CI_PROB,
    DEFAULT_RULES,
    LOWER,
    UPPER,
    ConvergenceRules,
    describe_label,
    diagnostics,
)
from khe_bayes.toolkit.sweep import IN_PROCESS, SweepOptions, Task, fingerprint, run_tasks


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
    quick_tune: int = 0,
    rules: ConvergenceRules = DEFAULT_RULES,
    predictive_draws: int | None = PREDICTIVE_DRAWS,
) -> xr.DataTree:
    """Fit ``build(data)``, the ``m``-th dataset (seed derived from ``name`` and ``m``, so the
    draws do not depend on where the fit runs); keep ``var_names``, the sample stats and the
    posterior predictive (and, with ``log_likelihood``, the pointwise log-likelihood and the
    constant data, for LOO on real patient data). With the nutpie backend the model is
    compiled once per process (under ``name``) and every further dataset only swaps its data
    in.

    Warm-up where it is needed: with ``0 < quick_tune < settings.tune`` the dataset is first
    fitted with ``quick_tune`` warm-up steps; if that fit fails the convergence ``rules``
    (R-hat, bulk and tail ESS per chain, divergences, over ``var_names``) it is fitted again
    with the full ``settings.tune``, same seed. Either way the kept fit is one that the same
    rules judge again in the pooled diagnostics; ``sample_stats.attrs["warmup"]`` records which
    warm-up it got and why. The posterior predictive is computed for the kept fit only, at
    ``predictive_draws`` draws thinned evenly within each chain (None: every draw)."""
    run = with_seed(settings, derive_seed(settings.seed, name, str(m)))
    model = build(data)

    def attempt(tune: int) -> xr.DataTree:
        return fit(
            model,
            run.model_copy(update={"tune": tune}),
            attrs=attrs,
            compiled_as=("pooled", name),
            log_likelihood=log_likelihood,
            data_groups=log_likelihood,  # constant_data is kept only beside the log-likelihood
        )

    def kept(idata: xr.DataTree, warmup: str) -> xr.DataTree:
        # the predictive only for the fit that is kept, at the draws the checks use
        if posterior_predictive:
            add_posterior_predictive(idata, model, run.seed, predictive_draws)
        keep = {
            "posterior": dataset(idata, "posterior")[var_names],
            "sample_stats": dataset(idata, "sample_stats"),
        }
        if posterior_predictive:
            keep["posterior_predictive"] = dataset(idata, "posterior_predictive")
        if log_likelihood:
            keep["log_likelihood"] = dataset(idata, "log_likelihood")
            keep["constant_data"] = dataset(idata, "constant_data")
        result = tree(keep)
        result.sample_stats.attrs["warmup"] = warmup
        return result

    if 0 < quick_tune < run.tune:
        quick = attempt(quick_tune)
        check = diagnostics(
            tree(
                {
                    "posterior": dataset(quick, "posterior")[var_names],
                    "sample_stats": dataset(quick, "sample_stats"),
                }
            ),
            rules,
        )
        if check["ok"]:
            return kept(quick, f"quick: {quick_tune} steps, passed")
        return kept(
            attempt(run.tune),
            f"full: {run.tune} steps after {quick_tune} failed ({check['problems']})",
        )
    return kept(attempt(run.tune), f"full: {run.tune} steps")


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
    first: int = 0,
    quick_tune: int = 0,
) -> list[Task]:
    """One sweep task per dataset: :func:`fit_dataset`; the datasets are numbered from
    ``first`` (so datasets added later get seeds of their own). Each task's fingerprint covers the
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
                quick_tune,
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
                quick_tune,
            ),
        )
        for m, data in enumerate(datasets, start=first)
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
    quick_tune: int = 0,
) -> PooledFit:
    """Fit ``build(dataset)`` to each dataset (:func:`fit_dataset`, with its ``quick_tune``), in
    this process or as tasks on Dask (``options``), and pool."""
    tasks = dataset_tasks(
        name,
        build,
        datasets,
        settings,
        var_names,
        posterior_predictive=posterior_predictive,
        attrs=attrs,
        quick_tune=quick_tune,
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


MC_ERROR_RATIO_MAX = 0.10  # the pooled mean's Monte Carlo SE must be < 10% of the posterior SD


@dataclass(frozen=True)
class RubinPooled:
    """Rubin's rules for one scalar (see the module docstring)."""

    m: int
    mean: float
    within: float
    between: float  # ddof = 1; nan with one dataset
    total: float
    share: float
    mcse: float  # sqrt(B / M): Monte Carlo SE of the pooled mean (nan with one dataset)

    @property
    def sd(self) -> float:
        return float(np.sqrt(self.total))

    @property
    def mc_error_ratio(self) -> float:
        return self.mcse / self.sd if self.sd > 0 else float("nan")


def rubin_pool(means: np.ndarray, variances: np.ndarray) -> RubinPooled:
    """Pool per-dataset posterior means and variances by Rubin's rules. With one dataset the
    between-dataset variance cannot be estimated: ``between`` and ``mcse`` are nan and the total
    is the within variance."""
    means, variances = np.asarray(means, float), np.asarray(variances, float)
    m = len(means)
    within = float(variances.mean())
    if m < 2:
        return RubinPooled(1, float(means[0]), within, np.nan, within, 0.0, np.nan)
    between = float(means.var(ddof=1))
    total = within + (1 + 1 / m) * between
    share = (1 + 1 / m) * between / total if total > 0 else 0.0
    return RubinPooled(m, float(means.mean()), within, between, total, share, np.sqrt(between / m))


def datasets_needed(within: float, between: float, ratio: float = MC_ERROR_RATIO_MAX) -> int:
    """Smallest M with sqrt(B / M) < ratio * sqrt(W + (1 + 1/M) B), i.e.
    M > (1 - r^2) B / (r^2 (W + B))."""
    if not np.isfinite(between) or between <= 0:
        return 1
    r2 = ratio**2
    return int(np.floor((1 - r2) * between / (r2 * (within + between)))) + 1


def rubin_draws(per_dataset: list[np.ndarray], support: str = "real") -> np.ndarray:
    """Pooled draws whose variance is Rubin's T: each dataset's draws shifted so that its mean's
    deviation from the pooled mean is stretched by sqrt((M+1)/(M-1)). Draws of one dataset are
    returned unchanged. ``support`` "positive" or "unit" does the stretch on the log or logit
    scale (so an SD or a probability stays in its support; the variance is then T on that
    scale)."""
    if support in ("positive", "unit"):
        fwd, back = (np.log, np.exp) if support == "positive" else (_logit, _expit)
        return back(rubin_draws([fwd(np.asarray(d, float)) for d in per_dataset]))
    m = len(per_dataset)
    if m < 2:
        return np.asarray(per_dataset[0], float)
    means = np.array([np.mean(d) for d in per_dataset])
    grand = means.mean()
    c = np.sqrt((m + 1) / (m - 1))
    return np.concatenate(
        [
            np.asarray(d, float) + (c - 1) * (mu - grand)
            for d, mu in zip(per_dataset, means, strict=True)
        ]
    )


def _logit(x):
    return np.log(x) - np.log1p(-x)


def _expit(x):
    return 1 / (1 + np.exp(-x))


def support_of(per_dataset: list[np.ndarray]) -> str:
    """ "unit" if every draw is in (0, 1), "positive" if every draw is > 0, else "real"."""
    lo = min(float(np.min(d)) for d in per_dataset)
    hi = max(float(np.max(d)) for d in per_dataset)
    if lo > 0 and hi < 1:
        return "unit"
    return "positive" if lo > 0 else "real"


def hdi(draws: np.ndarray, prob: float = 0.95) -> tuple[float, float]:
    """Narrowest interval holding ``prob`` of the draws."""
    x = np.sort(np.asarray(draws, float))
    n = len(x)
    k = max(1, int(np.ceil(prob * n)))
    if k >= n:
        return float(x[0]), float(x[-1])
    widths = x[k - 1 :] - x[: n - k + 1]
    i = int(np.argmin(widths))
    return float(x[i]), float(x[i + k - 1])


def reconstruction_variance_share(fit: PooledFit) -> pd.DataFrame:
    """Per scalar quantity, Rubin's rules over the datasets: within- and between-dataset variance
    (ddof = 1), total, the reconstruction's share, the pooled mean's Monte Carlo SE (between-
    dataset error included), its ratio to the posterior SD and the datasets needed for < 10%."""
    per = [_scalar_draws(idata, fit.var_names) for idata in fit.per_dataset]
    rows = []
    for label in per[0]:
        r = rubin_pool([p[label].mean() for p in per], [p[label].var() for p in per])
        rows.append(
            {
                "quantity": label,
                "datasets": r.m,
                "within_variance": r.within,
                "between_variance": r.between if r.m > 1 else 0.0,
                "total_variance": r.total,
                "reconstruction_share": r.share,
                "mcse_pooled_mean": r.mcse,
                "mc_error_ratio": r.mc_error_ratio,
                "datasets_needed": datasets_needed(r.within, r.between) if r.m > 1 else 1,
            }
        )
    return pd.DataFrame(rows)


def pooled_summary(
    fit: PooledFit,
    descriptions: dict[str, str] | None = None,
    rules: ConvergenceRules = DEFAULT_RULES,
) -> pd.DataFrame:
    """ArviZ summary layout, pooled by Rubin's rules: ``mean`` is q_bar, ``sd`` sqrt(T); the
    95% HDI, median and 95% equal-tailed interval are from :func:`rubin_draws` (variance T);
    ``mcse_mean`` is sqrt(B / M) (the pooled mean's whole Monte Carlo error; with one dataset
    the MCMC SE of that fit), ``mcse_sd`` the datasets' MCSEs of the SD combined as for a mean
    of M independent estimates, ``mc_error_ratio`` is mcse_mean / sd; ``r_hat`` is the worst
    per-dataset R-hat and ``ess_bulk``/``ess_tail`` the smallest per-dataset ESS; ``flag``
    lists per-dataset convergence problems."""
    per_draws = [_scalar_draws(i, fit.var_names) for i in fit.per_dataset]
    rows = {}
    for label in per_draws[0]:
        draws = [p[label] for p in per_draws]
        r = rubin_pool([d.mean() for d in draws], [d.var() for d in draws])
        stretched = rubin_draws(draws, support_of(draws))
        lo, hi = hdi(stretched, CI_PROB)
        tail = (1 - CI_PROB) / 2
        rows[label] = {
            "mean": r.mean,
            "sd": r.sd,
            "median": float(np.median(stretched)),
            LOWER: lo,
            UPPER: hi,
            "eti95_lb": float(np.quantile(stretched, tail)),
            "eti95_ub": float(np.quantile(stretched, 1 - tail)),
            "rubin": r,
        }
    per = [
        az.summary(i, var_names=fit.var_names, kind="diagnostics", round_to="none")
        for i in fit.per_dataset
    ]
    stats = pd.DataFrame(
        {k: {c: v for c, v in row.items() if c != "rubin"} for k, row in rows.items()}
    ).T
    stats = stats.astype(float)
    n_chains = fit.per_dataset[0].posterior.sizes["chain"]
    ess_min = rules.ess_per_chain_min * n_chains
    if len(per) > 1:
        stats["mcse_mean"] = [rows[k]["rubin"].mcse for k in stats.index]
    else:
        stats["mcse_mean"] = per[0]["mcse_mean"].reindex(stats.index).to_numpy(float)
    # the MCMC error of the pooled SD: the datasets' MCSEs of their SDs combined as for a mean
    # of M independent estimates
    mcse_sd = np.sqrt(sum(p["mcse_sd"].reindex(stats.index).to_numpy(float) ** 2 for p in per))
    stats["mcse_sd"] = mcse_sd / len(per)
    stats["mc_error_ratio"] = stats["mcse_mean"] / stats["sd"]
    stats["ess_bulk"] = pd.concat([p["ess_bulk"] for p in per], axis=1).min(axis=1)
    stats["ess_tail"] = pd.concat([p["ess_tail"] for p in per], axis=1).min(axis=1)
    stats["r_hat"] = pd.concat([p["r_hat"] for p in per], axis=1).max(axis=1)
    min_bulk = stats["ess_bulk"]
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
        warmup = dataset(idata, "sample_stats").attrs.get("warmup", "")
        rows.append(
            {"model": fit.name, "dataset": m, **diagnostics(idata, rules), "warmup": warmup}
        )
    return pd.DataFrame(rows)
