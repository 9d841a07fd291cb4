"""The paper's statistics re-computed from IPD, one function per (statistic, interpretation).

Used three ways: to check that a reconstructed dataset reproduces what was printed, to
re-run the paper's procedures on posterior-predictive replications, and in the audit. Each
function takes an IPD frame (schema in ipd.py; missing follow-up values are dropped) and returns
a FreqResult whose estimate and interval are on the printed scale and whose ``p`` is the p-value
the abstract prints beside that interval (which may come from a different test: e.g. the CI of
the mean score at 6 months is printed with the p-value of the paired test of the decrease).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from khe_bayes.toolkit.freq import (
    FreqResult,
    proportion_wilson,
    t_one_sample,
    t_paired,
    t_two_sample_pooled,
    t_two_sample_welch,
)


def _col(ipd: pd.DataFrame, name: str, mask=None) -> np.ndarray:
    values = ipd[name] if mask is None else ipd.loc[mask, name]
    return pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)


def _paired(ipd: pd.DataFrame, visit: str) -> tuple[np.ndarray, np.ndarray]:
    both = ipd[["severity_0m", f"severity_{visit}"]].apply(pd.to_numeric).dropna()
    return both.iloc[:, 0].to_numpy(float), both.iloc[:, 1].to_numpy(float)


def _kmp(ipd):
    return ipd["kmp"].astype(int) == 1


def _comb(ipd):
    return (ipd["arm"] == "combination") & _kmp(ipd)


def _alone_kmp(ipd):
    return (ipd["arm"] == "sirolimus") & _kmp(ipd)


def _with_p(result: FreqResult, p: float) -> FreqResult:
    return FreqResult(result.estimate, result.lower, result.upper, p, result.df)


def _score_at_visit(visit: str) -> Callable[[pd.DataFrame], FreqResult]:
    def compute(ipd: pd.DataFrame) -> FreqResult:
        before, after = _paired(ipd, visit)
        return _with_p(t_one_sample(_col(ipd, f"severity_{visit}")), t_paired(before, after).p)

    return compute


def _change_from_baseline(visit: str) -> Callable[[pd.DataFrame], FreqResult]:
    def compute(ipd: pd.DataFrame) -> FreqResult:
        return t_paired(*_paired(ipd, visit))

    return compute


def _response(visit: str) -> Callable[[pd.DataFrame], FreqResult]:
    def compute(ipd: pd.DataFrame) -> FreqResult:
        seen = _col(ipd, f"response_{visit}")
        return proportion_wilson(int(seen.sum()), seen.size)

    return compute


def _shrinkage_kmp_vs_non(ipd):
    return t_two_sample_pooled(
        _col(ipd, "shrinkage_12m", _kmp(ipd)), _col(ipd, "shrinkage_12m", ~_kmp(ipd))
    )


def _shrinkage_comb_vs_alone(ipd):
    return t_two_sample_pooled(
        _col(ipd, "shrinkage_12m", _comb(ipd)), _col(ipd, "shrinkage_12m", _alone_kmp(ipd))
    )


STATISTICS: dict[tuple[str, str], Callable[[pd.DataFrame], FreqResult]] = {
    ("kmp_prevalence", "of_all_analyzed"): lambda ipd: proportion_wilson(
        int(_kmp(ipd).sum()), len(ipd)
    ),
    ("age_difference_kmp", "mean_difference_months_pooled_t"): lambda ipd: t_two_sample_pooled(
        _col(ipd, "age_months", ~_kmp(ipd)), _col(ipd, "age_months", _kmp(ipd))
    ),
    ("age_difference_kmp", "mean_difference_months_welch"): lambda ipd: t_two_sample_welch(
        _col(ipd, "age_months", ~_kmp(ipd)), _col(ipd, "age_months", _kmp(ipd))
    ),
    ("response_6m", "of_all_analyzed"): _response("6m"),
    ("response_12m", "of_all_analyzed"): _response("12m"),
    ("severity_6m", "mean_score_at_visit"): _score_at_visit("6m"),
    ("severity_6m", "mean_change_from_baseline"): _change_from_baseline("6m"),
    ("severity_12m", "mean_score_at_visit"): _score_at_visit("12m"),
    ("severity_12m", "mean_change_from_baseline"): _change_from_baseline("12m"),
    ("kmp_vs_non_kmp_response", "mean_shrinkage_non_kmp"): lambda ipd: _with_p(
        t_one_sample(_col(ipd, "shrinkage_12m", ~_kmp(ipd))), _shrinkage_kmp_vs_non(ipd).p
    ),
    ("kmp_vs_non_kmp_response", "mean_shrinkage_difference"): _shrinkage_kmp_vs_non,
    ("combination_vs_alone_shrinkage", "mean_shrinkage_kmp"): lambda ipd: _with_p(
        t_one_sample(_col(ipd, "shrinkage_12m", _kmp(ipd))), _shrinkage_comb_vs_alone(ipd).p
    ),
    ("combination_vs_alone_shrinkage", "shrinkage_difference"): _shrinkage_comb_vs_alone,
}


def recompute(ipd: pd.DataFrame, which: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """One row per (statistic, interpretation): estimate, lower, upper, p."""
    rows = []
    for key in which or list(STATISTICS):
        r = STATISTICS[key](ipd)
        rows.append(
            {
                "statistic": key[0],
                "interpretation": key[1],
                "estimate": r.estimate,
                "lower": r.lower,
                "upper": r.upper,
                "p": r.p,
            }
        )
    return pd.DataFrame(rows)
