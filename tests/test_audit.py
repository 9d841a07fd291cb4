"""The audit flags the inconsistencies that exist in the abstract, and only those."""

from __future__ import annotations

import pytest

from khe_bayes.study.audit import audit
from khe_bayes.study.evidence import load_evidence


@pytest.fixture(scope="module")
def table():
    return audit(load_evidence(), n_reconstructions=3)


def status(table, statistic, interpretation, check):
    rows = table[
        (table["statistic"] == statistic)
        & (table["interpretation"] == interpretation)
        & (table["check"] == check)
    ]
    assert len(rows) == 1, (statistic, interpretation, check)
    return rows.iloc[0]["status"]


def test_ci_excluding_zero_with_p_above_005_is_inconsistent(table):
    assert (
        status(table, "combination_vs_alone_shrinkage", "shrinkage_difference", "CI vs p-value")
        == "inconsistent"
    )
    assert (
        status(table, "combination_vs_alone_shrinkage", "mean_shrinkage_kmp", "CI vs p-value")
        == "ok"
    )


def test_implausible_units_are_infeasible(table):
    assert (
        status(table, "age_difference_kmp", "mean_difference_years", "plausibility") == "infeasible"
    )


def test_age_ci_agrees_with_its_p_value(table):
    assert (
        status(table, "age_difference_kmp", "mean_difference_months_pooled_t", "CI vs p-value")
        == "ok"
    )


def test_text_tensions(table):
    assert (
        status(table, "severity_12m", "mean_change_from_baseline", "direction over time")
        == "tension"
    )
    assert status(table, "severity_12m", "mean_score_at_visit", "direction over time") == "ok"
    assert (
        status(
            table,
            "kmp_vs_non_kmp_response",
            "mean_shrinkage_non_kmp",
            "text: 'similar to but less pronounced'",
        )
        == "tension"
    )


def test_grim_and_percentages_pass_and_defaults_are_jointly_feasible(table):
    for stat in ("severity_6m", "severity_12m"):
        assert status(table, stat, "mean_score_at_visit", "GRIM: integer scores over n") == "ok"
    assert status(table, "kmp_prevalence", "of_all_analyzed", "count vs printed percentage") == "ok"
    joint = table[table["check"] == "joint feasibility (reconstruction)"]
    assert (joint["status"] == "ok").all() and joint["used_by_reconstruction"].any()


def test_audit_detects_a_planted_grim_failure(tmp_path):
    """Mutation check: a severity CI no integer multiset can produce must be flagged."""
    import tomli_w

    from khe_bayes.toolkit.tomlio import read_toml

    raw = read_toml(__import__("khe_bayes.study").study.__path__[0] + "/data/evidence.toml")
    for rec in raw["record"]:
        if rec["id"] == "severity_6m_ci":
            rec["lower"], rec["upper"] = 2.301, 2.302  # absurdly narrow: SD ~ 0.002
    path = tmp_path / "ev.toml"
    path.write_bytes(tomli_w.dumps(raw).encode())
    from khe_bayes.study.audit import _interval_rows

    ev = load_evidence(path)
    ci = ev["severity_6m_ci"]
    rows = _interval_rows(ci, ci.default_interpretation, 52, 0, ev["severity_6m_p"], True)
    grim = next(r for r in rows if r["check"].startswith("GRIM"))
    assert grim["status"] == "inconsistent"
