"""Frequentist procedures against scipy (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from khe_bayes.toolkit.freq import (
    PROCEDURES,
    proportion_wald,
    proportion_wilson,
    t_one_sample,
    t_paired,
    t_two_sample_pooled,
    t_two_sample_welch,
)

RNG = np.random.default_rng(7)
A = RNG.normal(3.0, 1.2, size=23)
B = RNG.normal(2.2, 2.5, size=14)


def test_one_sample_and_paired():
    r = t_one_sample(A, null=2.5)
    ref = stats.ttest_1samp(A, 2.5)
    ci = ref.confidence_interval(0.95)
    assert (r.lower, r.upper) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    after = A - RNG.normal(0.5, 0.3, size=A.size)
    r = t_paired(A, after)
    ref = stats.ttest_rel(A, after)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    ci = ref.confidence_interval(0.95)
    assert (r.lower, r.upper) == pytest.approx((ci.low, ci.high), rel=1e-12)


@pytest.mark.parametrize(
    ("fn", "equal_var"), [(t_two_sample_pooled, True), (t_two_sample_welch, False)]
)
def test_two_sample(fn, equal_var):
    r = fn(A, B)
    ref = stats.ttest_ind(A, B, equal_var=equal_var)
    ci = ref.confidence_interval(0.95)
    assert r.estimate == pytest.approx(A.mean() - B.mean())
    assert (r.lower, r.upper) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.df == pytest.approx(ref.df, rel=1e-10)


def test_proportions():
    r = proportion_wilson(50, 52)
    ci = stats.binomtest(50, 52).proportion_ci(0.95, method="wilson")
    assert (r.lower, r.upper) == pytest.approx((100 * ci.low, 100 * ci.high), rel=1e-10)
    assert r.estimate == pytest.approx(100 * 50 / 52)
    w = proportion_wald(37, 52)
    half = 1.959963984540054 * np.sqrt((37 / 52) * (15 / 52) / 52)
    assert (w.lower, w.upper) == pytest.approx((100 * (37 / 52 - half), 100 * (37 / 52 + half)))


def test_every_test_named_in_the_evidence_has_a_procedure():
    from khe_bayes.study.evidence import load_evidence

    tests = {i.test for r in load_evidence().record for i in r.interpretations if i.test}
    assert tests <= set(PROCEDURES)
