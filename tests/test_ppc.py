"""Posterior-predictive checks: exact p-values on small inputs, and verdicts on simulated data
with known parameters (a correct report is consistent, a deliberately wrong one inconsistent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.ppc import (
    ReportedStatistic,
    VerdictRule,
    compare_reported,
    ppp_two_sided,
    reported_statistics,
)


def test_ppp_exact_values():
    rep = np.array([1.0, 2.0, 3.0, 4.0])
    assert ppp_two_sided(rep, 2.5) == 1.0  # 2 below, 2 above
    assert ppp_two_sided(rep, 4.0) == pytest.approx(2 * (0 + 0.25 / 2))  # mid-p tie at the top
    assert ppp_two_sided(rep, 10.0) == 0.0
    # with printed decimals: 96.15 and 95.8 both print as 96
    assert ppp_two_sided(np.array([96.15, 95.8, 50.0, 99.9]), 96, decimals=0) == pytest.approx(
        2 * min(0.25 + 0.25, 0.25 + 0.25)
    )


def test_every_reported_statistic_of_the_abstract_is_listed():
    evidence = load_evidence()
    listed = {r.statistic for r in reported_statistics(evidence)}
    with_numbers = {r.statistic for r in evidence.record if r.kind in ("ci95", "percentage")}
    assert listed == with_numbers
    age = next(r for r in reported_statistics(evidence) if r.statistic == "age_difference_kmp")
    assert (age.lower, age.upper, age.p_relation, age.p_bound) == (14.39, 41.61, "<", 0.001)
    assert age.estimate == pytest.approx(28.0)


def test_verdict_rule_thresholds():
    rule = VerdictRule()
    assert rule.verdict(0.2) == "consistent"
    assert rule.verdict(0.01) == "tension"
    assert rule.verdict(0.001) == "inconsistent"


def _replicate_t_intervals(y: np.ndarray, n_rep: int, rng) -> pd.DataFrame:
    """Normal model with the reference prior: sigma^2 | y ~ scaled inv-chi2, mu | sigma, y normal.
    Replicate n observations per draw and recompute the one-sample t interval and p (H0: mu=0)."""
    n, ybar, s2 = y.size, y.mean(), y.var(ddof=1)
    sigma2 = (n - 1) * s2 / rng.chisquare(n - 1, size=n_rep)
    mu = rng.normal(ybar, np.sqrt(sigma2 / n))
    rows = []
    for i in range(n_rep):
        yrep = rng.normal(mu[i], np.sqrt(sigma2[i]), size=n)
        ci = stats.t.interval(0.95, n - 1, loc=yrep.mean(), scale=stats.sem(yrep))
        p = stats.ttest_1samp(yrep, 0.0).pvalue
        rows.append(
            {
                "draw": i,
                "statistic": "mean",
                "estimate": yrep.mean(),
                "lower": ci[0],
                "upper": ci[1],
                "p": p,
            }
        )
    return pd.DataFrame(rows)


def test_simulated_truth_is_consistent_and_a_wrong_report_inconsistent():
    rng = np.random.default_rng(2017)
    y = rng.normal(2.4, 0.55, size=52)  # shaped like the 6-month severity scores
    reps = _replicate_t_intervals(y, 2000, rng)
    lo, hi = stats.t.interval(0.95, 51, loc=y.mean(), scale=stats.sem(y))
    honest = ReportedStatistic(
        statistic="mean",
        interpretation="x",
        test="t_one_sample",
        estimate=round((lo + hi) / 2, 2),
        lower=round(lo, 2),
        upper=round(hi, 2),
        decimals=2,
        p_relation="<",
        p_bound=0.001,
    )
    wrong = ReportedStatistic(
        statistic="mean",
        interpretation="x",
        test="t_one_sample",
        estimate=3.0,
        lower=2.9,
        upper=3.1,
        decimals=2,
        p_relation="<",
        p_bound=0.001,
    )
    p_wrong = ReportedStatistic(
        statistic="mean",
        interpretation="x",
        test="t_one_sample",
        estimate=round((lo + hi) / 2, 2),
        lower=round(lo, 2),
        upper=round(hi, 2),
        decimals=2,
        p_relation=">",
        p_bound=0.05,
    )
    table = compare_reported([honest, wrong, p_wrong], reps).set_index(
        pd.Index(["honest", "wrong", "p_wrong"])
    )
    assert table.loc["honest", "verdict"] == "consistent"
    assert table.loc["wrong", "verdict"] == "inconsistent"
    assert table.loc["p_wrong", "verdict"] == "inconsistent"  # p > 0.05 never replicates
    assert table.loc["honest", "share_p_bound_met"] == 1.0


def test_binomial_counts_consistent_and_wrong_percentage_inconsistent():
    rng = np.random.default_rng(52)
    n, k = 52, 50
    p_draws = rng.beta(1 + k, 1 + n - k, size=4000)
    k_rep = rng.binomial(n, p_draws)
    reps = pd.DataFrame(
        {
            "draw": range(4000),
            "statistic": "resp",
            "estimate": 100 * k_rep / n,
            "lower": np.nan,
            "upper": np.nan,
            "p": np.nan,
        }
    )
    ok = ReportedStatistic(
        statistic="resp", interpretation="x", test="percentage", estimate=96, decimals=0
    )
    bad = ReportedStatistic(
        statistic="resp", interpretation="x", test="percentage", estimate=70, decimals=0
    )
    table = compare_reported([ok, bad], reps)
    assert list(table["verdict"]) == ["consistent", "inconsistent"]


def test_statistic_without_replications_is_reported_not_silently_dropped():
    rs = ReportedStatistic(statistic="age", interpretation="x", test="t", estimate=28.0)
    empty = pd.DataFrame(columns=["draw", "statistic", "estimate", "lower", "upper", "p"])
    table = compare_reported([rs], empty)
    assert table.loc[0, "verdict"] == "no replicator"
