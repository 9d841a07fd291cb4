"""The statistic -> procedure mapping (statistics.STATISTICS) against hand computations on a
small patient table, and `verify` shown failing on datasets that do not reproduce a number.

The references below use only numpy and scipy's own tests (``ttest_ind``, ``ttest_rel``,
``ttest_1samp``, ``binomtest``), never khe_bayes.toolkit.freq, so a wrong column, a wrong group, a
swapped difference or a p-value taken from the wrong test shows up as a mismatch. Everything
is deterministic: the tolerance is floating-point (rel 1e-10).
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import SMALL_IPD
from scipy import stats

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.reconstruct import ReconstructionSettings, reconstruct_datasets, verify
from khe_bayes.study.statistics import STATISTICS, recompute

IPD = SMALL_IPD
KMP = IPD["kmp"] == 1
COMB = IPD["arm"] == "combination"


def _ci(ttest_result):
    ci = ttest_result.confidence_interval(0.95)
    return ci.low, ci.high


def _wilson_percent(k: int, n: int):
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return 100 * k / n, 100 * ci.low, 100 * ci.high, stats.binomtest(k, n, 0.5).pvalue


def _hand() -> dict[tuple[str, str], tuple[float, float, float, float]]:
    """(estimate, lower, upper, p) of every (statistic, interpretation), by hand."""
    out = {}
    age_non, age_kmp = IPD.loc[~KMP, "age_months"], IPD.loc[KMP, "age_months"]
    for interp, equal_var in (
        ("mean_difference_months_pooled_t", True),
        ("mean_difference_months_welch", False),
    ):
        t = stats.ttest_ind(age_non, age_kmp, equal_var=equal_var)  # non-KMP minus KMP
        out[("age_difference_kmp", interp)] = (age_non.mean() - age_kmp.mean(), *_ci(t), t.pvalue)
    out[("kmp_prevalence", "of_all_analyzed")] = _wilson_percent(6, 10)
    out[("response_6m", "of_all_analyzed")] = _wilson_percent(7, 9)  # one missing
    out[("response_12m", "of_all_analyzed")] = _wilson_percent(8, 9)
    for visit in ("6m", "12m"):
        col = IPD[f"severity_{visit}"].dropna()
        paired = IPD[["severity_0m", f"severity_{visit}"]].dropna()
        before, after = paired["severity_0m"], paired[f"severity_{visit}"]
        t_rel = stats.ttest_rel(before, after)  # decrease before - after
        # the score at the visit is printed with the paired test's p
        out[(f"severity_{visit}", "mean_score_at_visit")] = (
            col.mean(),
            *_ci(stats.ttest_1samp(col, 0.0)),
            t_rel.pvalue,
        )
        out[(f"severity_{visit}", "mean_change_from_baseline")] = (
            (before - after).mean(),
            *_ci(t_rel),
            t_rel.pvalue,
        )
    shrink = IPD["shrinkage_12m"]
    s_non, s_kmp = shrink[~KMP].dropna(), shrink[KMP].dropna()
    t_kmp = stats.ttest_ind(s_kmp, s_non)  # KMP minus non-KMP, pooled variance
    out[("kmp_vs_non_kmp_response", "mean_shrinkage_non_kmp")] = (
        s_non.mean(),
        *_ci(stats.ttest_1samp(s_non, 0.0)),
        t_kmp.pvalue,
    )
    out[("kmp_vs_non_kmp_response", "mean_shrinkage_difference")] = (
        s_kmp.mean() - s_non.mean(),
        *_ci(t_kmp),
        t_kmp.pvalue,
    )
    s_comb, s_alone = shrink[KMP & COMB].dropna(), shrink[KMP & ~COMB].dropna()
    t_comb = stats.ttest_ind(s_comb, s_alone)  # combination minus sirolimus alone, KMP only
    out[("combination_vs_alone_shrinkage", "mean_shrinkage_kmp")] = (
        s_kmp.mean(),
        *_ci(stats.ttest_1samp(s_kmp, 0.0)),
        t_comb.pvalue,
    )
    out[("combination_vs_alone_shrinkage", "shrinkage_difference")] = (
        s_comb.mean() - s_alone.mean(),
        *_ci(t_comb),
        t_comb.pvalue,
    )
    return out


HAND = _hand()


def test_every_statistic_has_a_hand_computation():
    assert set(HAND) == set(STATISTICS)


@pytest.mark.parametrize("key", sorted(HAND), ids=lambda k: f"{k[0]}:{k[1]}")
def test_statistic_matches_the_hand_computation(key):
    r = STATISTICS[key](IPD)
    estimate, lower, upper, p = HAND[key]
    got = (r.estimate, r.lower, r.upper, r.p)
    assert got == pytest.approx((estimate, lower, upper, p), rel=1e-10), key


def test_recompute_rows_are_labelled_with_their_statistic():
    table = recompute(IPD).set_index(["statistic", "interpretation"])
    for key, (estimate, lower, upper, p) in HAND.items():
        assert tuple(table.loc[key, ["estimate", "lower", "upper", "p"]]) == pytest.approx(
            (estimate, lower, upper, p), rel=1e-10
        )


# --- verify() must be able to fail ---------------------------------------------------------------

EVIDENCE = load_evidence()
SETTINGS = ReconstructionSettings()
(GOOD,) = reconstruct_datasets(EVIDENCE, 1, seed=21)


def _failures(frame: pd.DataFrame) -> set[str]:
    check = verify(frame, EVIDENCE, SETTINGS.interpretations())
    return set(check.loc[~(check["reproduces_ci"] & check["meets_p_bound"]), "statistic"])


def test_verify_passes_the_reconstruction_it_checks():
    assert _failures(GOOD) == set()


@pytest.mark.parametrize(
    ("name", "break_it", "expected"),
    [
        # every non-KMP patient 1 month older: the age difference CI moves by 1 (> 0.005)
        (
            "age",
            lambda f: f.assign(age_months=f["age_months"] + (f["kmp"] == 0)),
            {"age_difference_kmp"},
        ),
        # non-KMP patients 0.02 months older: the age CI moves by 0.02, four times the
        # printed rounding (+/- 0.005), so only an exact rounding check notices
        (
            "age_by_0.02",
            lambda f: f.assign(age_months=f["age_months"] + 0.02 * (f["kmp"] == 0)),
            {"age_difference_kmp"},
        ),
        # one 6-month score up by one point: the mean moves by 1/52 = 0.019 (> 0.005)
        (
            "severity_6m",
            lambda f: f.assign(severity_6m=f["severity_6m"].where(f.index != 0, 5)),
            {"severity_6m"},
        ),
        # one 12-month responder becomes a non-responder: 50/52 = 96% is not the printed 98%
        (
            "response_12m",
            lambda f: f.assign(
                response_12m=f["response_12m"].where(
                    f.index != f.index[f["response_12m"] == 1][0], 0
                )
            ),
            {"response_12m"},
        ),
        # one non-KMP patient recoded as KMP: 38/52 = 73%, not the printed 71%, and the
        # age and shrinkage groups change too
        (
            "kmp",
            lambda f: f.assign(kmp=f["kmp"].where(f.index != f.index[f["kmp"] == 0][0], 1)),
            {"kmp_prevalence"},
        ),
        # shrinkage of the non-KMP patients 5 points higher: its CI no longer prints as reported
        (
            "shrinkage",
            lambda f: f.assign(shrinkage_12m=f["shrinkage_12m"] + 5.0 * (f["kmp"] == 0)),
            {"kmp_vs_non_kmp_response"},
        ),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_verify_flags_a_dataset_that_does_not_reproduce_a_number(name, break_it, expected):
    broken = break_it(GOOD.copy())
    assert not broken.equals(GOOD)
    failed = _failures(broken)
    assert expected <= failed, (name, failed)
