"""Posterior summaries and convergence flags: plain functions over ArviZ results (DataTree).

Column names follow arviz-stats: ``mean``, ``sd``, ``median``, ``hdi95_lb``/``hdi95_ub`` (95%
highest-density interval), ``eti95_lb``/``eti95_ub`` (equal-tailed 2.5% and 97.5% quantiles, as
BUGS and Stan users compare), ``ess_bulk``, ``ess_tail``, ``r_hat``, ``mcse_mean``, ``mcse_sd``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field

CI_PROB = 0.95
LOWER, UPPER = "hdi95_lb", "hdi95_ub"  # the interval the report shows
STAT_COLUMNS = ["mean", "sd", "median", LOWER, UPPER, "eti95_lb", "eti95_ub"]
DIAGNOSTIC_COLUMNS = ["ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]


@dataclass(frozen=True)
class ConvergenceRules:
    """When a quantity is flagged. Defaults follow Vehtari et al. (2021): R-hat <= 1.01 and
    bulk/tail ESS of at least 100 per chain; any divergent transition is flagged."""

    rhat_max: float = 1.01
    ess_per_chain_min: float = 100.0
    divergences_max: int = 0


DEFAULT_RULES = ConvergenceRules()


class Threshold(BaseModel):
    """A clinically meaningful threshold: report P(quantity > value) or P(quantity < value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: str = Field(description="a variable name, with [label] for one element")
    direction: str = Field(pattern=r"^[<>]$")
    value: float
    label: str


def divergences(idata: xr.DataTree) -> int:
    """Number of divergent transitions after warm-up (0 if the sampler did not record them)."""
    stats = getattr(idata, "sample_stats", None)
    if stats is None or "diverging" not in stats:
        return 0
    return int(stats["diverging"].sum())


def summarize(
    idata: xr.DataTree,
    var_names: Iterable[str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    rules: ConvergenceRules = DEFAULT_RULES,
) -> pd.DataFrame:
    """ArviZ summary (:data:`STAT_COLUMNS` then :data:`DIAGNOSTIC_COLUMNS`) plus
    ``description`` and ``flag`` columns.

    ``descriptions`` maps a variable name (or a full row label such as ``rate[response_12m]``) to
    a sentence; ``flag`` is empty when the row passes ``rules`` and otherwise lists what failed.
    """
    names = list(var_names) if var_names else None
    diagnostics_table = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    table = posterior_stats(idata, names).join(diagnostics_table[DIAGNOSTIC_COLUMNS])
    descriptions = descriptions or {}
    table.insert(0, "description", [describe_label(label, descriptions) for label in table.index])
    n_chains = idata.posterior.sizes["chain"]
    ess_min = rules.ess_per_chain_min * n_chains
    n_div = divergences(idata)
    flags = []
    for _, row in table.iterrows():
        problems = []
        if n_chains > 1 and not (row["r_hat"] <= rules.rhat_max):
            problems.append(f"r_hat>{rules.rhat_max}")
        if not (row["ess_bulk"] >= ess_min):
            problems.append(f"ess_bulk<{ess_min:g}")
        if not (row["ess_tail"] >= ess_min):
            problems.append(f"ess_tail<{ess_min:g}")
        if n_div > rules.divergences_max:
            problems.append(f"divergences={n_div}")
        flags.append(";".join(problems))
    table["flag"] = flags
    table.index.name = "quantity"
    return table


def posterior_stats(idata: xr.DataTree, var_names: list[str] | None = None) -> pd.DataFrame:
    """Mean, SD, median, 95% HDI and 95% equal-tailed interval of every scalar element."""
    hdi = az.summary(
        idata, var_names=var_names, kind="stats", ci_kind="hdi", ci_prob=CI_PROB, round_to="none"
    )
    eti = az.summary(
        idata, var_names=var_names, kind="stats_median", ci_prob=CI_PROB, round_to="none"
    )
    table = hdi[["mean", "sd", LOWER, UPPER]].join(eti[["median", "eti95_lb", "eti95_ub"]])
    return table[STAT_COLUMNS].astype(float)


def describe_label(label: str, descriptions: Mapping[str, str]) -> str:
    if label in descriptions:
        return descriptions[label]
    base = label.split("[", 1)[0]
    text = descriptions.get(base, "")
    if "[" in label and text:
        return f"{text} ({label[len(base) + 1 : -1]})"
    return text


def diagnostics(idata: xr.DataTree, rules: ConvergenceRules = DEFAULT_RULES) -> dict:
    """Whole-model convergence over every posterior scalar: worst rank-normalized R-hat,
    smallest bulk and tail ESS (arviz-stats' estimators, computed for all scalars at once by
    convergence.py), divergences, and whether it passes ``rules``."""
    from khe_bayes.toolkit import convergence

    post = idata.posterior
    n_chains, n_draws = post.sizes["chain"], post.sizes["draw"]
    arrays = [post[v].transpose("chain", "draw", ...).values for v in post.data_vars]
    worst = {"max_r_hat": float("nan"), "min_ess_bulk": float("nan"), "min_ess_tail": float("nan")}
    if any(np.size(a) for a in arrays) and n_draws >= 4:
        x = convergence.stack_scalars(arrays)
        x = x[~np.isnan(x).any(axis=(1, 2))]  # ArviZ gives nan for a scalar with missing draws
        if len(x):
            worst["min_ess_bulk"] = float(np.nanmin(convergence.ess_bulk(x)))
            worst["min_ess_tail"] = float(np.nanmin(convergence.ess_tail(x)))
            if n_chains > 1:
                worst["max_r_hat"] = float(np.nanmax(convergence.rhat(x)))
    out = {
        "chains": int(n_chains),
        "draws": int(n_draws),
        **worst,
        "divergences": divergences(idata),
    }
    ess_min = rules.ess_per_chain_min * n_chains
    problems = []
    if n_chains > 1 and not out["max_r_hat"] <= rules.rhat_max:
        problems.append(f"max R-hat {out['max_r_hat']:.3f} > {rules.rhat_max}")
    if not out["min_ess_bulk"] >= ess_min:
        problems.append(f"min bulk ESS {out['min_ess_bulk']:.0f} < {ess_min:g}")
    if not out["min_ess_tail"] >= ess_min:
        problems.append(f"min tail ESS {out['min_ess_tail']:.0f} < {ess_min:g}")
    if out["divergences"] > rules.divergences_max:
        problems.append(f"{out['divergences']} divergent transitions")
    out["ok"] = not problems
    out["problems"] = "; ".join(problems)
    return out


def select_draws(idata: xr.DataTree, quantity: str) -> np.ndarray:
    """Flattened posterior draws of ``name`` or ``name[label]`` (one coordinate label)."""
    if "[" in quantity:
        name, label = quantity[:-1].split("[", 1)
        da = idata.posterior[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if len(extra) != 1:
            raise KeyError(f"{quantity}: expected one labelled dimension, found {extra}")
        da = da.sel({extra[0]: label})
    else:
        da = idata.posterior[quantity]
        if set(da.dims) - {"chain", "draw"}:
            raise KeyError(f"{quantity} has more than chain and draw dims; name one element")
    return np.asarray(da.values).reshape(-1)


def threshold_probabilities(idata: xr.DataTree, thresholds: Iterable[Threshold]) -> pd.DataFrame:
    """Posterior probability of each threshold statement, with its Monte Carlo standard error.

    The MCSE uses the bulk ESS of the indicator draws: sqrt(p (1 - p) / ESS).
    """
    rows = []
    for t in thresholds:
        draws = select_draws(idata, t.quantity)
        hits = draws > t.value if t.direction == ">" else draws < t.value
        p = float(hits.mean())
        n_chain = idata.posterior.sizes["chain"]
        ess = float(az.ess(hits.reshape(n_chain, -1).astype(float), method="bulk"))
        mcse = float(np.sqrt(p * (1 - p) / ess)) if np.isfinite(ess) and ess > 0 else 0.0
        rows.append(
            {
                "quantity": t.quantity,
                "direction": t.direction,
                "value": t.value,
                "statement": f"P({t.quantity} {t.direction} {t.value:g})",
                "probability": p,
                "mcse": mcse,
                "label": t.label,
            }
        )
    return pd.DataFrame(rows)
