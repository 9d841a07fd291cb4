"""Consistency audit of the reported numbers, per statistic and per interpretation.

Each row is one check: ``status`` is ``ok``, ``tension`` (possible, but strained or at odds with
the text), ``inconsistent`` (cannot all be true) or ``infeasible`` (the interpretation itself is
impossible, e.g. implausible units). Checks:

- percentages against counts (rounding rule of evidence.toml);
- GRIM-style: a mean of integer scores over n patients must be a multiple of 1/n, and the whole
  interval must be reachable by some multiset of integer scores (exact search);
- CI midpoint and half-width against the p-value: the implied t statistic and its p-value
  must satisfy the printed bound (when the p-value belongs to the same test as the interval);
- an interval of a difference that excludes zero printed with p > 0.05;
- the text around a number ("similar but less pronounced", severity falling over time);
- joint feasibility: a reconstruction under the interpretation reproduces every statistic.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from khe_bayes.study.evidence import Evidence, consistent_counts
from khe_bayes.study.reconstruct import (
    ReconstructionSettings,
    _score_window,
    integer_score_multisets,
    reconstruct_datasets,
    verify,
)

# Interpretations whose printed p-value belongs to the same test as the printed interval.
SAME_TEST = {
    "mean_difference_months_pooled_t": lambda n1, n2: n1 + n2 - 2,
    "mean_difference_months_welch": lambda n1, n2: min(n1, n2) - 1,  # conservative df
    "mean_change_from_baseline": lambda n1, n2: n1 + n2 - 1,
    "mean_shrinkage_difference": lambda n1, n2: n1 + n2 - 2,
    "shrinkage_difference": lambda n1, n2: n1 + n2 - 2,
}


def _row(statistic, interpretation, check, status, detail, used=False) -> dict:
    return {
        "statistic": statistic,
        "interpretation": interpretation,
        "check": check,
        "status": status,
        "detail": detail,
        "used_by_reconstruction": used,
    }


def _group_sizes(evidence: Evidence, statistic: str) -> tuple[int, int]:
    n = evidence["n_analyzed"].events
    kmp = evidence["kmp_count"].events
    comb = evidence["combination_count"].events
    return {
        "age_difference_kmp": (n - kmp, kmp),
        "severity_6m": (n, 0),
        "severity_12m": (n, 0),
        "kmp_vs_non_kmp_response": (kmp, n - kmp),
        "combination_vs_alone_shrinkage": (comb, kmp - comb),
    }[statistic]


def audit(evidence: Evidence, n_reconstructions: int = 5, seed: int = 0) -> pd.DataFrame:
    """Run every check; the reconstruction's own interpretations are marked."""
    used = ReconstructionSettings().interpretations()
    rows = _percentage_rows(evidence)
    bounds = {r.statistic: r for r in evidence.of_kind("p_bound")}
    for ci in evidence.of_kind("ci95"):
        n1, n2 = _group_sizes(evidence, ci.statistic)
        bound = bounds.get(ci.statistic)
        for interp in ci.interpretations:
            is_used = used.get(ci.statistic) == interp.id
            if not interp.plausible:
                rows.append(
                    _row(ci.statistic, interp.id, "plausibility", "infeasible", interp.description)
                )
                continue
            rows += _interval_rows(ci, interp, n1, n2, bound, is_used)
    rows += _text_rows(evidence, used)
    rows += _joint_rows(evidence, n_reconstructions, seed)
    return pd.DataFrame(rows)


def _percentage_rows(evidence: Evidence) -> list[dict]:
    rows = []
    for rec in evidence.of_kind("percentage"):
        for interp in rec.interpretations:
            pairs = consistent_counts(rec, interp.id)
            shown = ", ".join(f"{k}/{n}" for k, n in pairs[:3]) + (" ..." if len(pairs) > 3 else "")
            status = "ok" if pairs else "inconsistent"
            rows.append(
                _row(
                    rec.statistic,
                    interp.id,
                    "percentage vs integer counts",
                    status,
                    f"{rec.percent:g}% is consistent with {len(pairs)} count(s): {shown}",
                    used=interp.default,
                )
            )
    kmp, pct = evidence["kmp_count"], evidence["kmp_percent"]
    ok = (kmp.events, kmp.total) in consistent_counts(pct)
    rows.append(
        _row(
            "kmp_prevalence",
            "of_all_analyzed",
            "count vs printed percentage",
            "ok" if ok else "inconsistent",
            f"{kmp.events}/{kmp.total} = {100 * kmp.events / kmp.total:.2f}% printed as "
            f"{pct.percent:g}%",
            used=True,
        )
    )
    return rows


def _interval_rows(ci, interp, n1, n2, bound, is_used) -> list[dict]:
    rows = []
    integer_scale = ci.statistic.startswith("severity")
    n = n1 + n2
    if integer_scale:
        multiple = round(ci.midpoint * n) / n
        window = _score_window(ci)
        found = integer_score_multisets(n, ci.lower, ci.upper, ci.decimals, window)
        rows.append(
            _row(
                ci.statistic,
                interp.id,
                "GRIM: integer scores over n",
                "ok" if found else "inconsistent",
                f"midpoint {ci.midpoint:.3f} is {ci.midpoint * n:.2f}/{n} "
                f"(nearest {multiple:.4f}); "
                f"{len(found)} multisets of integer "
                f"{'scores' if interp.estimand == 'mean_at_visit' else 'changes'} in {window} "
                "reproduce the interval",
                used=is_used,
            )
        )
    if interp.estimand == "group_means" and bound is not None:
        sizes = dict(zip(interp.groups, _group_order_sizes(ci.statistic, n1, n2), strict=True))
        na, nb = (sizes[g] for g in interp.groups)
        df = na + nb - 2
        t_crit = stats.t.ppf(1 - bound.bound / 2, df)
        sd_edge = (ci.upper - ci.lower) / (t_crit * np.sqrt(1 / na + 1 / nb))
        side = "below" if bound.relation in ("<", "<=") else "above"
        rows.append(
            _row(
                ci.statistic,
                interp.id,
                "CI vs p-value",
                "ok",
                f"{interp.groups[0]} mean {ci.lower:g}, {interp.groups[1]} mean {ci.upper:g} "
                f"(difference {ci.upper - ci.lower:.2f}); the pooled t-test meets p "
                f"{bound.relation} {bound.bound:g} iff the pooled SD is {side} {sd_edge:.2f} "
                f"(df {df}); the summary-data model weighs how plausible that is",
                used=is_used,
            )
        )
        return rows
    if interp.id in SAME_TEST and bound is not None:
        df = SAME_TEST[interp.id](n1, n2)
        se = ci.half_width / stats.t.ppf(0.975, df)
        t = ci.midpoint / se
        p = float(2 * stats.t.sf(abs(t), df))
        holds = bound.holds(p)
        excludes_zero = ci.lower > 0 or ci.upper < 0
        status = "ok" if holds else "inconsistent"
        detail = (
            f"implied SE {se:.3f}, t = {t:.2f} on {df} df, p = {p:.2g}; printed "
            f"p {bound.relation} {bound.bound:g}"
        )
        if not holds and excludes_zero and bound.relation in (">", ">="):
            detail += "; a 95% CI of a difference that excludes zero cannot have p > 0.05"
        rows.append(_row(ci.statistic, interp.id, "CI vs p-value", status, detail, used=is_used))
    elif bound is not None:
        rows.append(
            _row(
                ci.statistic,
                interp.id,
                "CI vs p-value",
                "ok",
                "interval and p-value come from different tests under this reading; the p-value "
                "is checked on reconstructed data instead",
                used=is_used,
            )
        )
    return rows


def _group_order_sizes(statistic: str, n1: int, n2: int) -> tuple[int, int]:
    """Sizes of a group_means reading's groups in the order of evidence.toml's ``groups``."""
    return {
        "age_difference_kmp": (n2, n1),  # groups = [kmp, non_kmp]; _group_sizes gives non-KMP first
        "kmp_vs_non_kmp_response": (n2, n1),  # groups = [non_kmp, kmp]; sizes give KMP first
        "combination_vs_alone_shrinkage": (n1, n2),  # [combination, sirolimus alone]
    }[statistic]


def with_reading_weights(table: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """The audit with each reading's posterior probability from the summary-data model beside
    its pass/fail (``posterior_weight``; empty for checks that are not about one reading)."""
    w = weights.set_index(["statistic", "reading"])["posterior_weight"]
    keys = list(zip(table["statistic"], table["interpretation"], strict=True))
    out = table.copy()
    out["posterior_weight"] = [w.get(k, np.nan) for k in keys]
    return out


def _text_rows(evidence: Evidence, used: dict[str, str]) -> list[dict]:
    s6, s12 = evidence["severity_6m_ci"], evidence["severity_12m_ci"]
    r6, r12 = evidence["response_6m_percent"], evidence["response_12m_percent"]
    shr_non, shr_kmp = evidence["kmp_vs_non_kmp_response_ci"], evidence["combination_shrinkage_ci"]
    return [
        _row(
            "severity_12m",
            "mean_change_from_baseline",
            "direction over time",
            "tension",
            f"as mean decreases, the 12-month decrease ({s12.midpoint:.2f}) would be smaller than "
            f"the 6-month one ({s6.midpoint:.2f}) while response rose from {r6.percent:g}% to "
            f"{r12.percent:g}%",
            used=used["severity_12m"] == "mean_change_from_baseline",
        ),
        _row(
            "severity_12m",
            "mean_score_at_visit",
            "direction over time",
            "ok",
            f"mean score falls from {s6.midpoint:.2f} (6 months) to {s12.midpoint:.2f} (12 months)",
            used=used["severity_12m"] == "mean_score_at_visit",
        ),
        _row(
            "kmp_vs_non_kmp_response",
            "mean_shrinkage_non_kmp",
            "text: 'similar to but less pronounced'",
            "tension",
            f"non-KMP mean shrinkage {shr_non.midpoint:.1f}% exceeds the KMP mean "
            f"{shr_kmp.midpoint:.1f}% (its CI read as the KMP mean), so non-KMP response is more, "
            "not less, pronounced, and p < 0.001 is not 'similar'",
            used=used["kmp_vs_non_kmp_response"] == "mean_shrinkage_non_kmp",
        ),
        _row(
            "kmp_vs_non_kmp_response",
            "mean_shrinkage_difference",
            "text: 'similar to but less pronounced'",
            "tension",
            f"a difference of {shr_non.lower:g} to {shr_non.upper:g} percentage points with "
            "p < 0.001 is not 'similar'",
        ),
    ]


def _joint_rows(evidence: Evidence, n_reconstructions: int, seed: int) -> list[dict]:
    rows = []
    for severity in ("mean_score_at_visit", "mean_change_from_baseline"):
        settings = ReconstructionSettings(severity_interpretation=severity)
        datasets = reconstruct_datasets(evidence, n_reconstructions, seed, settings)
        checks = [verify(d, evidence, settings.interpretations()) for d in datasets]
        passed = sum(bool((c["reproduces_ci"] & c["meets_p_bound"]).all()) for c in checks)
        status = "ok" if passed == n_reconstructions else "inconsistent"
        rows.append(
            _row(
                "all",
                f"defaults with severity as {severity}",
                "joint feasibility (reconstruction)",
                status,
                f"{passed}/{n_reconstructions} reconstructed datasets reproduce every interval, "
                "percentage and p-value bound at once",
                used=severity == "mean_score_at_visit",
            )
        )
    return rows


def summarize_audit(table: pd.DataFrame) -> dict[str, int]:
    return {
        s: int(np.sum(table["status"] == s))
        for s in ("ok", "tension", "inconsistent", "infeasible")
    }
