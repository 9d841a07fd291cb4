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

_NUMERIC = (
    "kmp",
    "age_months",
    "response_6m",
    "response_12m",
    "severity_0m",
    "severity_6m",
    "severity_12m",
    "shrinkage_12m",
)


class Columns:
    """The IPD columns the statistics read, converted to numbers once (missing or non-numeric
    values become nan). The posterior-predictive checks re-compute every statistic on ~800
    replicated datasets, where pandas' per-call overhead of converting a column for each
    statistic cost more than the statistics themselves."""

    def __init__(self, ipd: pd.DataFrame):
        self.n = len(ipd)
        self.numbers = {
            name: pd.to_numeric(ipd[name], errors="coerce").to_numpy(dtype=float)
            for name in _NUMERIC
            if name in ipd
        }
        self.arm = ipd["arm"].to_numpy() if "arm" in ipd else np.full(len(ipd), None)


def _col(cols: Columns, name: str, mask=None) -> np.ndarray:
    values = cols.numbers[name] if mask is None else cols.numbers[name][mask]
    return values[~np.isnan(values)]


def _paired(cols: Columns, visit: str) -> tuple[np.ndarray, np.ndarray]:
    before, after = cols.numbers["severity_0m"], cols.numbers[f"severity_{visit}"]
    both = ~np.isnan(before) & ~np.isnan(after)
    return before[both], after[both]


def _kmp(cols: Columns) -> np.ndarray:
    return cols.numbers["kmp"] == 1


def _comb(cols: Columns) -> np.ndarray:
    return (cols.arm == "combination") & _kmp(cols)


def _alone_kmp(cols: Columns) -> np.ndarray:
    return (cols.arm == "sirolimus") & _kmp(cols)


def _with_p(result: FreqResult, p: float) -> FreqResult:
    return FreqResult(result.estimate, result.lower, result.upper, p, result.df)


def _score_at_visit(visit: str) -> Callable[[Columns], FreqResult]:
    def compute(cols: Columns) -> FreqResult:
        before, after = _paired(cols, visit)
        return _with_p(t_one_sample(_col(cols, f"severity_{visit}")), t_paired(before, after).p)

    return compute


def _change_from_baseline(visit: str) -> Callable[[Columns], FreqResult]:
    def compute(cols: Columns) -> FreqResult:
        return t_paired(*_paired(cols, visit))

    return compute


def _response(visit: str) -> Callable[[Columns], FreqResult]:
    def compute(cols: Columns) -> FreqResult:
        seen = _col(cols, f"response_{visit}")
        return proportion_wilson(int(seen.sum()), seen.size)

    return compute


def _shrinkage_kmp_vs_non(cols):
    return t_two_sample_pooled(
        _col(cols, "shrinkage_12m", _kmp(cols)), _col(cols, "shrinkage_12m", ~_kmp(cols))
    )


def _shrinkage_comb_vs_alone(cols):
    return t_two_sample_pooled(
        _col(cols, "shrinkage_12m", _comb(cols)), _col(cols, "shrinkage_12m", _alone_kmp(cols))
    )


_ON_COLUMNS: dict[tuple[str, str], Callable[[Columns], FreqResult]] = {
    ("kmp_prevalence", "of_all_analyzed"): lambda cols: proportion_wilson(
        int(_kmp(cols).sum()), cols.n
    ),
    ("age_difference_kmp", "mean_difference_months_pooled_t"): lambda cols: t_two_sample_pooled(
        _col(cols, "age_months", ~_kmp(cols)), _col(cols, "age_months", _kmp(cols))
    ),
    ("age_difference_kmp", "mean_difference_months_welch"): lambda cols: t_two_sample_welch(
        _col(cols, "age_months", ~_kmp(cols)), _col(cols, "age_months", _kmp(cols))
    ),
    ("response_6m", "of_all_analyzed"): _response("6m"),
    ("response_12m", "of_all_analyzed"): _response("12m"),
    ("severity_6m", "mean_score_at_visit"): _score_at_visit("6m"),
    ("severity_6m", "mean_change_from_baseline"): _change_from_baseline("6m"),
    ("severity_12m", "mean_score_at_visit"): _score_at_visit("12m"),
    ("severity_12m", "mean_change_from_baseline"): _change_from_baseline("12m"),
    ("kmp_vs_non_kmp_response", "mean_shrinkage_non_kmp"): lambda cols: _with_p(
        t_one_sample(_col(cols, "shrinkage_12m", ~_kmp(cols))), _shrinkage_kmp_vs_non(cols).p
    ),
    ("kmp_vs_non_kmp_response", "mean_shrinkage_difference"): _shrinkage_kmp_vs_non,
    ("combination_vs_alone_shrinkage", "mean_shrinkage_kmp"): lambda cols: _with_p(
        t_one_sample(_col(cols, "shrinkage_12m", _kmp(cols))), _shrinkage_comb_vs_alone(cols).p
    ),
    ("combination_vs_alone_shrinkage", "shrinkage_difference"): _shrinkage_comb_vs_alone,
}


def _on_frame(compute: Callable[[Columns], FreqResult]) -> Callable[[pd.DataFrame], FreqResult]:
    return lambda ipd: compute(Columns(ipd))


# (statistic, interpretation) -> the procedure, on an IPD frame
STATISTICS: dict[tuple[str, str], Callable[[pd.DataFrame], FreqResult]] = {
    key: _on_frame(compute) for key, compute in _ON_COLUMNS.items()
}


def recompute(ipd: pd.DataFrame, which: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """One row per (statistic, interpretation): estimate, lower, upper, p."""
    cols = Columns(ipd)
    rows = []
    for key in which or list(STATISTICS):
        r = _ON_COLUMNS[key](cols)
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
