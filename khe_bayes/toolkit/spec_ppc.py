"""Posterior-predictive checks of a spec's ``[[reported]]`` entries (``khe-bayes fit``).

A spec may list frequentist results reported for its data (a pooled proportion and its CI, a
fixed-effect meta-analysis, ...). For each posterior draw we replace the observed column of the
spec's data table with the draw's replicated values, re-run the entry's ``test`` on that table
and compare the replications with what was reported, under the same verdict rule as the
reanalysis (:class:`khe_bayes.study.ppc.VerdictRule`). Each row also gives the posterior of the
entry's ``quantity`` (mean and 95% equal-tailed interval) beside the reported estimate.

Tests, by family (all 95% intervals):

binomial (columns ``events`` and ``n``; arm ``treated`` as the loader codes it)
    ``pooled_proportion_wilson`` / ``pooled_proportion_wald``: sum(events) / sum(n), Wilson or
    Wald interval; p tests proportion = 50%.
    ``risk_difference_wald``: pooled proportion in the treated arm minus the reference arm
    (percentage points), Wald interval; p from the same z statistic (tests no difference).
normal (columns ``estimate`` and ``se``)
    ``fixed_effect_inverse_variance``: sum(w y) / sum(w), w = 1 / se^2, z interval; p tests 0.
    ``random_effects_dersimonian_laird``: the DerSimonian-Laird random-effects mean.

Scales. The proportion tests (pooled proportions, risk difference) are computed as fractions
and reported on the entry's ``scale``: ``"fraction"`` or ``"percent"`` (percentage points). An
entry without ``scale`` takes its quantity's (fraction for probabilities and risk differences;
``Family.scales``). It is an input error (``khe-bayes fit`` checks :func:`entry_scale` before
sampling) when a proportion test's quantity is not a proportion (e.g. a log-odds), when an entry
declares a scale for a test that has none, or when the numbers cannot be on the scale
(|value| > 1 as a fraction: "0.279 (0.100-0.447)" and "27.9 (10.0-44.7)" are the same result
on two scales, and only the declared one is compared). The posterior of the quantity is shown
on the entry's scale.

binomial_glmm / normal_glmm take the same tests; ``risk_difference_wald`` needs a quantity with
``compare`` on a categorical column (its two levels are the arms; other rows are left out).

The KHE families' reported statistics are checked by ``khe-bayes reanalyze`` from the evidence
registry (every model together); a KHE spec with ``[[reported]]`` entries is refused.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from khe_bayes.study.ppc import ReportedStatistic, VerdictRule, compare_reported
from khe_bayes.toolkit.freq import LEVEL, FreqResult, proportion_wald, proportion_wilson
from khe_bayes.toolkit.summary import select_draws

Test = Callable[[pd.DataFrame], FreqResult]


def _z_result(estimate: float, se: float) -> FreqResult:
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    p = float(2 * stats.norm.sf(abs(estimate) / se)) if se > 0 else float(estimate == 0)
    return FreqResult(estimate, estimate - z * se, estimate + z * se, p)


def risk_difference_wald(data: pd.DataFrame) -> FreqResult:
    """Treated minus reference pooled proportion, in percentage points, Wald interval (the
    check converts it to the entry's scale)."""
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
TESTS["binomial_glmm"] = TESTS["binomial"]
TESTS["normal_glmm"] = TESTS["normal"]
# tests whose result is a proportion; they return percent (freq.py's convention)
PERCENT_TESTS = {"pooled_proportion_wilson", "pooled_proportion_wald", "risk_difference_wald"}
# observed variable of the model -> the data column it replicates
REPLICATED_COLUMN = {
    "binomial": ("events", "events"),
    "normal": ("estimate", "estimate"),
    "binomial_glmm": ("events", "events"),
    "normal_glmm": ("estimate", "estimate"),
}


def entry_scale(entry, scales: dict[str, str]) -> str | None:
    """The scale an entry's numbers are on (None: not a proportion test). Raises ValueError
    for a mismatch (see the module docstring)."""
    quantity_scale = scales.get(entry.quantity.partition("[")[0])
    if entry.test not in PERCENT_TESTS:
        if entry.scale is not None:
            raise ValueError(f"scale applies to proportion tests, not to {entry.test}")
        return None
    if quantity_scale != "fraction":
        raise ValueError(
            f"{entry.test} gives a proportion but quantity {entry.quantity!r} is not one "
            "(name a probability or risk difference)"
        )
    scale = entry.scale or quantity_scale
    values = [v for v in (entry.estimate, entry.lower, entry.upper) if v is not None]
    if scale == "fraction" and any(abs(v) > 1 for v in values):
        raise ValueError(
            f"{values} cannot be fractions (|value| > 1); if they are percentages write "
            'scale = "percent"'
        )
    return scale


def _table_and_mask(data, entry):
    if hasattr(data, "standard_table"):  # formula families
        return data.standard_table(entry.quantity)
    return data, np.ones(len(data), bool)


def replicate_reported(
    spec,
    family: str,
    data: pd.DataFrame,
    idata: xr.DataTree,
    max_draws: int = 1000,
    scales: list[str | None] | None = None,
) -> pd.DataFrame:
    """Replication table (ppc module layout) of every ``[[reported]]`` entry's test, each on
    the entry's scale (``scales``, one per entry; None keeps the test's own)."""
    variable, column = REPLICATED_COLUMN[family]
    reps = idata.posterior_predictive[variable].stack(sample=("chain", "draw"))
    reps = reps.transpose("sample", ...).values
    keep = np.linspace(0, len(reps) - 1, min(max_draws, len(reps))).round().astype(int)
    tables = [_table_and_mask(data, entry) for entry in spec.reported]
    factors = [0.01 if scale == "fraction" else 1.0 for scale in scales or [None] * len(tables)]
    rows = []
    for j, sample in enumerate(keep):
        for entry, (base, mask), factor in zip(spec.reported, tables, factors, strict=True):
            table = base.copy()
            table[column] = reps[sample][mask]
            r = TESTS[family][entry.test](table)
            r = FreqResult(factor * r.estimate, factor * r.lower, factor * r.upper, r.p)
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
    spec,
    family: str,
    data: pd.DataFrame,
    idata: xr.DataTree,
    max_draws: int = 1000,
    quantity_scales: dict[str, str] | None = None,
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
    if quantity_scales is None:  # the family's own (lazy import: families import this module's
        from khe_bayes.families import FAMILIES  # callers, not this module)

        quantity_scales = FAMILIES[family].scales(spec) if family in FAMILIES else {}
    scales = [entry_scale(e, quantity_scales) for e in spec.reported]
    table = compare_reported(
        reported, replicate_reported(spec, family, data, idata, max_draws, scales)
    )
    for i, entry in enumerate(spec.reported):
        draws = select_draws(idata, entry.quantity) * (100.0 if scales[i] == "percent" else 1.0)
        table.loc[i, "quantity"] = entry.quantity
        table.loc[i, "scale"] = scales[i] or ""
        table.loc[i, "posterior_mean"] = float(np.mean(draws))
        table.loc[i, "posterior_q2.5"], table.loc[i, "posterior_q97.5"] = np.quantile(
            draws, [0.025, 0.975]
        )
    table["rule"] = VerdictRule().describe()
    return table
