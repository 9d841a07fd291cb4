"""Pooling over reconstructions by Rubin's rules, checked against the formula and, on a
simulated case with a known between-dataset variance, against the truth.

Reference: Rubin (1987), Multiple Imputation for Nonresponse in Surveys, eqs. 3.1.2-3.1.5:
q_bar = mean q_m, W = mean u_m, B = sum (q_m - q_bar)^2 / (M - 1), T = W + (1 + 1/M) B.
"""

from __future__ import annotations

import numpy as np
import pytest

from khe_bayes.toolkit.pooling import datasets_needed, hdi, rubin_draws, rubin_pool, support_of


def test_formula_by_hand():
    means = np.array([1.0, 2.0, 4.0])
    variances = np.array([0.5, 1.0, 1.5])
    r = rubin_pool(means, variances)
    b = ((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2  # 2.3333
    assert r.mean == pytest.approx(7 / 3)
    assert r.within == pytest.approx(1.0)
    assert r.between == pytest.approx(b)
    assert r.total == pytest.approx(1.0 + (4 / 3) * b)
    assert r.share == pytest.approx((4 / 3) * b / (1.0 + (4 / 3) * b))
    assert r.mcse == pytest.approx(np.sqrt(b / 3))


def test_issue_example_two_datasets():
    """Issue 15: with M = 2 a ddof = 0 share of 0.38 is a Rubin share of 0.65."""
    w = 1.0
    b0 = 0.38 / 0.62 * w  # ddof = 0 between variance giving share 0.38
    means = np.array([-np.sqrt(b0), np.sqrt(b0)])
    r = rubin_pool(means, [w, w])
    assert means.var() / (w + means.var()) == pytest.approx(0.38)
    assert r.share == pytest.approx(0.648, abs=0.001)


def test_single_dataset():
    r = rubin_pool([2.0], [0.25])
    assert r.total == 0.25 and r.share == 0.0 and np.isnan(r.mcse)


def test_known_between_variance_is_recovered_without_bias_and_mcse_is_calibrated():
    """q_m ~ Normal(mu, B_true) and each dataset's draws ~ Normal(q_m, W_true) (n draws).
    Over R = 4000 replications of M = 5 datasets: the mean of B-hat must equal
    B_true + W_true / n (the sample means carry draw noise) within 4 standard errors of that
    mean (the SE is the SD of B-hat over replications / sqrt(R)); the ddof = 0 estimate must miss
    by more than that (so the test can fail); and the mean of the reported mcse^2 must equal the
    actual variance of q_bar across replications within 4 SE (SE of a sample variance of R
    normal values: var * sqrt(2 / (R - 1)), plus the SE of the mean of mcse^2)."""
    rng = np.random.default_rng(20251125)
    r_reps, m, n, mu, b_true, w_true = 4000, 5, 200, 3.0, 0.8, 1.5
    b_hat, b0_hat, qbar, mcse2, totals = [], [], [], [], []
    for _ in range(r_reps):
        q = rng.normal(mu, np.sqrt(b_true), size=m)
        draws = rng.normal(q[:, None], np.sqrt(w_true), size=(m, n))
        means, variances = draws.mean(axis=1), draws.var(axis=1)
        r = rubin_pool(means, variances)
        b_hat.append(r.between)
        b0_hat.append(means.var())
        qbar.append(r.mean)
        mcse2.append(r.mcse**2)
        totals.append(r.total)
    b_hat, b0_hat, qbar, mcse2 = map(np.array, (b_hat, b0_hat, qbar, mcse2))
    target = b_true + w_true / n
    se = b_hat.std(ddof=1) / np.sqrt(r_reps)
    assert abs(b_hat.mean() - target) < 4 * se
    assert abs(b0_hat.mean() - target) > 4 * se  # ddof = 0 is biased low by (M-1)/M
    var_qbar = qbar.var(ddof=1)
    se_var = var_qbar * np.sqrt(2 / (r_reps - 1)) + mcse2.std(ddof=1) / np.sqrt(r_reps)
    assert abs(mcse2.mean() - var_qbar) < 4 * se_var
    # the total variance estimates W + (1 + 1/M) B (Rubin's T) on average
    t_true = w_true * (n - 1) / n + (1 + 1 / m) * target
    se_t = np.std(totals, ddof=1) / np.sqrt(r_reps)
    assert abs(np.mean(totals) - t_true) < 4 * se_t


def test_rubin_draws_have_variance_t():
    rng = np.random.default_rng(1)
    per = [rng.normal(mu, 1.0, size=500) for mu in (0.0, 1.0, 3.0, 3.5)]
    r = rubin_pool([p.mean() for p in per], [p.var() for p in per])
    pooled = rubin_draws(per)
    assert pooled.mean() == pytest.approx(r.mean)
    assert pooled.var() == pytest.approx(r.total, rel=1e-10)
    # plain concatenation has the smaller ddof = 0 between variance
    assert np.concatenate(per).var() < r.total


def test_datasets_needed_is_the_smallest_m_meeting_the_rule():
    for w, b in [(1.0, 0.05), (1.0, 1.0), (0.2, 3.0), (1.0, 0.0)]:
        m = datasets_needed(w, b)

        def ok(k, w=w, b=b):
            return np.sqrt(b / k) < 0.1 * np.sqrt(w + (1 + 1 / k) * b)

        assert ok(m)
        assert m == 1 or not ok(m - 1)
    assert datasets_needed(1.0, 1.0) == 50  # share ~0.5 needs ~50 datasets


def test_hdi_of_a_normal_sample():
    x = np.random.default_rng(2).normal(size=200_000)
    lo, hi = hdi(x, 0.95)
    assert lo == pytest.approx(-1.96, abs=0.03) and hi == pytest.approx(1.96, abs=0.03)


def test_rubin_draws_keep_positive_quantities_positive():
    rng = np.random.default_rng(3)
    per = [rng.gamma(4.0, scale, size=400) for scale in (0.1, 0.5, 1.5)]
    pooled = rubin_draws(per, support_of(per))
    assert support_of(per) == "positive" and pooled.min() > 0
    assert rubin_draws(per).min() < 0  # the plain stretch would leave the support
    logs = [np.log(p) for p in per]
    r = rubin_pool([x.mean() for x in logs], [x.var() for x in logs])
    assert np.log(pooled).var() == pytest.approx(r.total, rel=1e-10)


@pytest.mark.parametrize("datasets", [1, 2, 4, 5, 8, 100])
@pytest.mark.parametrize("chains", [2, 4])
def test_draws_per_dataset_reach_the_pooled_ess_target_and_the_per_chain_floor(datasets, chains):
    """The smallest draws per chain with pooled ESS >= target and ESS >= 100 per chain in every
    dataset, at the assumed ESS per draw (issue 18's rule, ReanalysisSettings' docstring)."""
    from khe_bayes.study.reanalysis import ESS_PER_DRAW_IPD, ipd_draws_per_chain

    draws = ipd_draws_per_chain(datasets, chains, 2000)
    ess = draws * ESS_PER_DRAW_IPD  # per chain
    assert datasets * chains * ess >= 2000 - 1e-9 and ess >= 100 - 1e-9
    fewer = (draws - 1) * ESS_PER_DRAW_IPD
    assert datasets * chains * fewer < 2000 or fewer < 100  # and no more than needed
