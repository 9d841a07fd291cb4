"""Posterior-predictive checks of a spec's ``[[reported]]`` entries (``khe-bayes fit``).

A spec may list frequentist results reported for its data (a pooled proportion and its CI, a
fixed-effect meta-analysis, ...). For each posterior draw we replace the observed column of the
spec's data table with the draw's replicated values, re-run the entry's ``test`` on that table
and compare the replications with what was reported, under the same verdict rule as the
reanalysis (:class:`khe_bayes.ppc.VerdictRule`). Each row also gives the posterior of the
entry's ``quantity`` (mean and 95% equal-tailed interval) beside the reported estimate.

Tests, by family (all 95% intervals; proportions in percent, as the evidence registry uses):

binomial (columns ``events`` and ``n``; arm ``treated`` as the loader codes it)
    ``pooled_proportion_wilson`` / ``pooled_proportion_wald``: sum(events) / sum(n), Wilson or
    Wald interval; p tests proportion = 50%.
    ``risk_difference_wald``: pooled proportion in the treated arm minus the reference arm
    (percentage points), Wald interval; p from the same z statistic (tests no difference).
normal (columns ``estimate`` and ``se``)
    ``fixed_effect_inverse_variance``: sum(w y) / sum(w), w = 1 / se^2, z interval; p tests 0.
    ``random_effects_dersimonian_laird``: the DerSimonian-Laird random-effects mean.

The KHE families' reported statistics are checked by ``khe-bayes reanalyze`` from the evidence
registry (every model together); a KHE spec with ``[[reported]]`` entries is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from khe_bayes.freq import LEVEL, FreqResult, proportion_wald, proportion_wilson
from khe_bayes.ppc import ReportedStatistic, VerdictRule, compare_reported
from khe_bayes.summary import select_draws

Test = Callable[[pd.DataFrame], FreqResult]


def _z_result(estimate: float, se: float) -> FreqResult:
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    p = float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else float(estimate == 0)
    return FreqResult(estimate, estimate - z * se, estimate + z * se, p)


def risk_difference_wald(data: pd.DataFrame) -> FreqResult:
    """Treated minus reference pooled proportion, in percentage points, Wald interval."""
    if "treated" not in data:
        raise ValueError("risk_difference_wald needs an arm column")
    arms = data.groupby("treated")[["events", "n"]].sum()
    p1, n1 = arms.loc[1, "events"] / arms.loc[1, "n"], arms.loc[1, "n"]
    p0, n0 = arms.loc[0, "events"] / arms.loc[0, "n"], arms.loc[0, "n"]
    se = np.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    r = _z_result(p1 - p0, se)
    return FreqResult(100 * r.estimate, 100 * r.lower, 100 * r.upper, r.p)


def fixed_effect_inverse_variance(data: pd.DataFrame) -> FreqResult:
    w = 1.0 / data["se"].to_numpy(float) ** 2
    y = data["estimate"].to_numpy(float)
    return _z_result(float((w * y).sum() / w.sum()), float(np.sqrt(1.0 / w.sum())))


def random_effects_dersimonian_laird(data: pd.DataFrame) -> FreqResult:
    w = 1.0 / data["se"].to_numpy(float) ** 2
    y = data["estimate"].to_numpy(float)
    fixed = (w * y).sum() / w.sum()
    q = (w * (y - fixed) ** 2).sum()
    tau2 = max(0.0, (q - (len(y) - 1)) / (w.sum() - (w**2).sum() / w.sum()))
    w_star = 1.0 / (1.0 / w + tau2)
    return _z_result(float((w_star * y).sum() / w_star.sum()), float(np.sqrt(1.0 / w_star.sum())))


TESTS: dict[str, dict[str, Test]] = {
    "binomial": {
        "pooled_proportion_wilson": lambda d: proportion_wilson(
            int(d["events"].sum()), int(d["n"].sum())
        ),
        "pooled_proportion_wald": lambda d: proportion_wald(
            int(d["events"].sum()), int(d["n"].sum())
        ),
        "risk_difference_wald": risk_difference_wald,
    },
    "normal": {
        "fixed_effect_inverse_variance": fixed_effect_inverse_variance,
        "random_effects_dersimonian_laird": random_effects_dersimonian_laird,
    },
}
# observed variable of the model -> the data column it replicates
REPLICATED_COLUMN = {"binomial": ("events", "events"), "normal": ("estimate", "estimate")}


def replicate_reported(
    spec, family: str, data: pd.DataFrame, idata: xr.DataTree, max_draws: int = 1000
) -> pd.DataFrame:
    """Replication table (ppc module layout) of every ``[[reported]]`` entry's test."""
    variable, column = REPLICATED_COLUMN[family]
    reps = idata.posterior_predictive[variable].stack(sample=("chain", "draw"))
    reps = reps.transpose("sample", ...).values
    keep = np.linspace(0, len(reps) - 1, min(max_draws, len(reps))).round().astype(int)
    rows = []
    for j, sample in enumerate(keep):
        table = data.copy()
        table[column] = reps[sample]
        for entry in spec.reported:
            r = TESTS[family][entry.test](table)
            rows.append(
                {
                    "draw": j,
                    "statistic": entry.id,
                    "interpretation": entry.test,
                    "estimate": r.estimate,
                    "lower": r.lower,
                    "upper": r.upper,
                    "p": r.p,
                }
            )
    return pd.DataFrame(rows)


def check_reported(
    spec, family: str, data: pd.DataFrame, idata: xr.DataTree, max_draws: int = 1000
) -> pd.DataFrame:
    """ppc_reported.csv of ``khe-bayes fit``: the reanalysis's columns, plus the posterior of
    each entry's ``quantity`` and the rule that gave the verdict."""
    reported = [
        ReportedStatistic(
            statistic=e.id,
            interpretation=e.test,
            test=e.test,
            estimate=e.estimate,
            lower=e.lower,
            upper=e.upper,
            decimals=e.decimals,
            p_relation=e.p_relation,
            p_bound=e.p_bound,
            quote=e.quote,
        )
        for e in spec.reported
    ]
    table = compare_reported(reported, replicate_reported(spec, family, data, idata, max_draws))
    for i, entry in enumerate(spec.reported):
        draws = select_draws(idata, entry.quantity)
        table.loc[i, "quantity"] = entry.quantity
        table.loc[i, "posterior_mean"] = float(np.mean(draws))
        table.loc[i, "posterior_q2.5"], table.loc[i, "posterior_q97.5"] = np.quantile(
            draws, [0.025, 0.975]
        )
    table["rule"] = VerdictRule().describe()
    return table
