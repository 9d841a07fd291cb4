"""Simulation-based calibration (Talts et al. 2018): does fitting a model to data simulated from
its own prior give posteriors whose ranks of the true values are uniform?

For replication r: draw parameters theta_r and data y_r from the prior predictive of the model
built on a design dataset (its covariates, groups, follow-up pattern), fit the model to y_r
(the compiled model is re-used; only the observed arrays are swapped in), keep ``n_ranks - 1``
evenly spaced posterior draws and count how many fall below theta_r. If the sampler and the
model's implementation are right, each parameter's rank is uniform on 0..n_ranks-1.

Uniformity test, per parameter: Pearson chi-square on ``bins`` equal-width rank bins. Rule: a
family passes when every parameter's p-value is at least ``alpha / n_parameters`` (Bonferroni,
so a correct family fails with probability at most ``alpha``, default 0.01).

Parameters ranked: every free random variable and every estimand of the family (scalars and
vectors of at most ``max_elements`` elements; per-patient effects are left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.traversal import ancestors
from scipy import stats

from khe_bayes.toolkit.compiled import SamplerCache, process_cache
from khe_bayes.toolkit.sampling import SamplerSettings, derive_seed, with_seed
from khe_bayes.toolkit.settings import SBC_SAMPLER as _SBC_SAMPLER
from khe_bayes.toolkit.summary import diagnostics
from khe_bayes.toolkit.sweep import Task, fingerprint, jsonable

N_RANKS = 100  # ranks 0..99: the truth among 99 evenly thinned posterior draws
SBC_SAMPLER = _SBC_SAMPLER  # defined in settings.py, so the CLI reads it without PyMC


def observed_data_names(model: pm.Model) -> dict[str, str]:
    """Observed random variable -> name of the ``pm.Data`` container its values come from."""
    if model.potentials:
        raise ValueError(
            "SBC needs a generative model; this one has Potential terms "
            f"({', '.join(v.name for v in model.potentials)}) that cannot be simulated"
        )
    names = {}
    data = set(model.data_vars)
    for rv in model.observed_RVs:
        value = model.rvs_to_values[rv]
        found = [v for v in ancestors([value]) if isinstance(v, SharedVariable) and v in data]
        if len(found) != 1:
            raise ValueError(f"observed {rv.name!r} does not read exactly one pm.Data container")
        names[rv.name] = found[0].name
    return names


def ranked_parameters(model: pm.Model, estimands: list[str], max_elements: int = 12) -> list[str]:
    names = [rv.name for rv in model.free_RVs] + [n for n in estimands if n in model.named_vars]
    point = model.initial_point(0)
    fn = model.compile_fn(
        model.replace_rvs_by_values([model[n] for n in names]),
        inputs=model.value_vars,
        on_unused_input="ignore",
    )
    sizes = [np.size(v) for v in fn(point)]
    return list(
        dict.fromkeys(n for n, size in zip(names, sizes, strict=True) if size <= max_elements)
    )


@dataclass(frozen=True)
class Simulation:
    truth: dict[str, np.ndarray]
    data: dict[str, np.ndarray]


def simulate(model: pm.Model, parameters: list[str], n: int, seed: int) -> list[Simulation]:
    """``n`` draws of (parameters, observed data) from the model's prior predictive."""
    with model:
        prior = pm.sample_prior_predictive(
            n, var_names=[*parameters, *observed_data_names(model)], random_seed=seed
        )
    sims = []
    names = observed_data_names(model)
    for i in range(n):
        truth = {p: np.asarray(prior.prior[p].values[0, i]) for p in parameters}
        data = {names[obs]: np.asarray(prior.prior_predictive[obs].values[0, i]) for obs in names}
        sims.append(Simulation(truth, data))
    return sims


def fit_one(
    model: pm.Model,
    sim: Simulation,
    settings: SamplerSettings,
    label,
    n_ranks: int,
    cache: SamplerCache | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """Ranks of the true values among ``n_ranks - 1`` thinned posterior draws, and the fit's
    convergence diagnostics."""
    sampler = (cache or process_cache()).sampler_for(model, label)
    idata = sampler.sample_data(sim.data, settings)
    ranks = {}
    for name, truth in sim.truth.items():
        draws = idata.posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...)
        draws = draws.values
        if len(draws) < n_ranks - 1:  # repeated draws would leave gaps in the ranks
            raise ValueError(f"{len(draws)} posterior draws; SBC needs at least {n_ranks - 1}")
        keep = np.linspace(0, len(draws) - 1, n_ranks - 1).round().astype(int)
        ranks[name] = (draws[keep] < truth).sum(axis=0)
    return ranks, diagnostics(idata)


def rank_table(results: list[dict[str, np.ndarray]]) -> pd.DataFrame:
    """Long table: replication, parameter (with element label), rank."""
    rows = []
    for r, ranks in enumerate(results):
        for name, value in ranks.items():
            flat = np.atleast_1d(value).ravel()
            for j, rank in enumerate(flat):
                label = name if np.ndim(value) == 0 else f"{name}[{j}]"
                rows.append({"replication": r, "parameter": label, "rank": int(rank)})
    return pd.DataFrame(rows)


def uniformity(
    ranks: pd.DataFrame, n_ranks: int, bins: int = 10, alpha: float = 0.01
) -> pd.DataFrame:
    """Chi-square test of uniform ranks per parameter, with the Bonferroni pass rule."""
    if n_ranks % bins:
        raise ValueError(f"bins ({bins}) must divide the number of possible ranks ({n_ranks})")
    rows = []
    n_params = ranks["parameter"].nunique()
    for name, group in ranks.groupby("parameter", sort=False):
        counts = np.bincount(group["rank"].to_numpy() * bins // n_ranks, minlength=bins)
        chi2, p = stats.chisquare(counts)
        rows.append(
            {
                "parameter": name,
                "replications": len(group),
                "chi2": float(chi2),
                "df": bins - 1,
                "p_value": float(p),
                "threshold": alpha / n_params,
                "uniform": bool(p >= alpha / n_params),
                "counts": " ".join(map(str, counts)),
            }
        )
    return pd.DataFrame(rows)


def run_sbc(
    model: pm.Model,
    estimands: list[str],
    replications: int,
    *,
    fit_model: pm.Model | None = None,
    settings: SamplerSettings = SBC_SAMPLER,
    n_ranks: int = N_RANKS,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SBC in this process: simulate from ``model``, fit ``fit_model`` (default: the same model;
    a different one shows what miscalibration looks like). Returns (ranks, per-replication
    diagnostics); test with :func:`uniformity`. :func:`sbc_tasks` runs a spec's SBC on Dask."""
    parameters = ranked_parameters(model, estimands)
    sims = simulate(model, parameters, replications, seed)
    target = fit_model or model
    cache = SamplerCache()
    results, diags = [], []
    for r, sim in enumerate(sims):
        run = with_seed(settings, derive_seed(seed, "sbc", str(r)))
        ranks, diag = fit_one(target, sim, run, "sbc", n_ranks, cache)
        results.append(ranks)
        diags.append({"replication": r, **diag})
    return rank_table(results), pd.DataFrame(diags)


# --- a spec's SBC as Dask tasks (khe_bayes.toolkit.sweep) -----------------------------------


@lru_cache(maxsize=4)
def _design(spec_path: str, replications: int, seed: int):
    """The spec's model on its own data (the design) and all simulations; cached per process so
    a worker simulates once and compiles once however many replications it runs."""
    from khe_bayes.families import load_spec

    spec, family = load_spec(spec_path)
    model = family.build(spec, family.load_data(spec, Path(spec_path).parent))
    parameters = ranked_parameters(model, family.summary_vars(spec))
    return model, simulate(model, parameters, replications, seed)


def sbc_task(
    spec_path: str, replication: int, replications: int, seed: int, settings_json: str, n_ranks: int
) -> dict:
    """One replication of a spec's SBC: its ranks and the fit's diagnostics (JSON-ready)."""
    model, sims = _design(spec_path, replications, seed)
    settings = SamplerSettings.model_validate_json(settings_json)
    run = with_seed(settings, derive_seed(seed, "sbc", str(replication)))
    ranks, diag = fit_one(model, sims[replication], run, ("sbc", spec_path), n_ranks)
    return jsonable({"ranks": ranks, "diagnostics": diag})


def sbc_tasks(
    spec_path: str | Path,
    replications: int,
    *,
    seed: int = 0,
    settings: SamplerSettings = SBC_SAMPLER,
    n_ranks: int = N_RANKS,
) -> list[Task]:
    from khe_bayes.families import load_spec

    spec_path = str(Path(spec_path).resolve())
    spec, family = load_spec(spec_path)
    inputs = (Path(spec_path).read_text(), family.load_data(spec, Path(spec_path).parent))
    args = (replications, seed, settings.model_dump_json(), n_ranks)
    return [
        Task(f"sbc-{r:04d}", sbc_task, (spec_path, r, *args), fingerprint(*inputs, *args, r))
        for r in range(replications)
    ]


def collect(results: dict[str, dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ranks, diagnostics) from the task results of :func:`sbc_tasks`, in replication order."""
    ordered = [results[k] for k in sorted(results)]
    ranks = rank_table([{k: np.asarray(v) for k, v in r["ranks"].items()} for r in ordered])
    diags = pd.DataFrame([{"replication": i, **r["diagnostics"]} for i, r in enumerate(ordered)])
    return ranks, diags
