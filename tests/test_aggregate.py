"""Aggregate proportion models: structure and log-density (no sampling), and MCMC against exact
posteriors (closed-form Beta, or quadrature for the logit-normal prior)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from khe_bayes.study.aggregate import (
    DEFAULT_RATE_PRIOR,
    OutcomeSpec,
    ProportionPriors,
    build_proportion_model,
    closed_form_posterior,
    exact_zero_event_upper,
    grid_posterior,
    outcome_data,
    rule_of_three_upper,
)
from khe_bayes.study.evidence import load_evidence
from khe_bayes.toolkit.priors import prior
from khe_bayes.toolkit.sampling import SamplerSettings, fit
from khe_bayes.toolkit.summary import select_draws

EVIDENCE = load_evidence()
LOGIT_NORMAL = ProportionPriors(label="logit_normal", logit_rate=prior("Normal", mu=0, sigma=1.5))
UNIFORM = ProportionPriors(label="uniform", rate=DEFAULT_RATE_PRIOR)
# a non-uniform Beta prior: a fit that ignores the prior set (uses Beta(1, 1)) fails here
JEFFREYS = ProportionPriors(label="jeffreys", rate=prior("Beta", alpha=0.5, beta=0.5))


def data(name, evidence_id, interpretation=None):
    return outcome_data(
        EVIDENCE, OutcomeSpec(name=name, evidence=evidence_id, interpretation=interpretation)
    )


R6 = data("response_6m", "response_6m_percent")
R12 = data("response_12m", "response_12m_percent")
R12_FOLLOWED = data("response_12m_followed", "response_12m_percent", "of_followed_up")
DEATH = data("drug_related_death", "drug_related_death")
KMP = data("kmp_prevalence", "kmp_count")


def test_structure_without_sampling():
    model = build_proportion_model([R6, R12, DEATH, R12_FOLLOWED], UNIFORM)
    assert model.coords["outcome"] == (
        "response_6m",
        "response_12m",
        "drug_related_death",
        "response_12m_followed",
    )
    assert model.named_vars_to_dims["rate"] == ("outcome",)
    assert {v.name for v in model.observed_RVs} == {
        "events_response_6m",
        "events_response_12m",
        "events_drug_related_death",
    }
    assert [p.name for p in model.potentials] == ["rounded_response_12m_followed"]
    m2 = build_proportion_model([R6], LOGIT_NORMAL)
    assert "logit_rate" in m2.named_vars and "rate" in m2.deterministics[0].name


def test_log_density_matches_scipy():
    model = build_proportion_model([R6, DEATH, R12_FOLLOWED], UNIFORM)
    rates = np.array([0.9, 0.02, 0.95])
    logp = model.compile_logp(jacobian=False)
    point = {"rate_logodds__": special.logit(rates)}
    expected = stats.beta.logpdf(rates, 1, 1).sum()
    expected += stats.binom.logpmf(50, 52, rates[0]) + stats.binom.logpmf(0, 52, rates[1])
    pairs = R12_FOLLOWED.counts
    expected += special.logsumexp(
        [stats.binom.logpmf(k, n, rates[2]) for k, n in pairs], b=R12_FOLLOWED.weights
    )
    assert logp(point) == pytest.approx(expected, rel=1e-10)


def test_closed_form_is_the_exact_beta_update_and_matches_quadrature():
    post = closed_form_posterior(R12, prior("Beta", alpha=1, beta=1))
    assert (post.alphas[0], post.betas[0]) == (52, 2)  # Beta(1 + 51, 1 + 1)
    for d in (R6, R12, R12_FOLLOWED, DEATH):
        exact = closed_form_posterior(d, DEFAULT_RATE_PRIOR)
        grid = grid_posterior(d, UNIFORM)
        assert grid.mean() == pytest.approx(exact.mean(), abs=1e-7)
        assert grid.sd() == pytest.approx(exact.sd(), abs=1e-7)
        assert grid.ppf(0.95) == pytest.approx(exact.ppf(0.95), abs=1e-4)


def test_zero_event_bounds():
    assert rule_of_three_upper(52) == pytest.approx(3 / 52)
    assert exact_zero_event_upper(52) == pytest.approx(1 - 0.05 ** (1 / 52))
    # uniform prior, 0/n: posterior Beta(1, n + 1), upper 95% bound = 1 - 0.05^(1/(n+1))
    assert closed_form_posterior(DEATH, DEFAULT_RATE_PRIOR).ppf(0.95) == pytest.approx(
        1 - 0.05 ** (1 / 53), rel=1e-9
    )


SETTINGS = SamplerSettings(draws=1000, tune=500, chains=2, seed=11, progressbar=False)


@pytest.mark.parametrize("priors", [UNIFORM, JEFFREYS, LOGIT_NORMAL], ids=lambda p: p.label)
def test_mcmc_agrees_with_exact_posterior_within_monte_carlo_error(priors):
    """Tolerance: 4 Monte Carlo standard errors (ESS-based), so a false failure has probability
    of about 6e-5 per comparison; a wrong likelihood or prior shifts these means by many MCSEs."""
    import arviz as az

    outcomes = [R6, R12, R12_FOLLOWED, DEATH, KMP]
    idata = fit(build_proportion_model(outcomes, priors), SETTINGS)
    mcse = az.mcse(idata, var_names=["rate"])["rate"]
    for d in outcomes:
        if priors.rate is not None:
            exact = closed_form_posterior(d, priors.rate)
        else:
            exact = grid_posterior(d, priors)
        draws = select_draws(idata, f"rate[{d.name}]")
        se = float(mcse.sel(outcome=d.name))
        assert abs(draws.mean() - exact.mean()) < 4 * se, d.name
        # the 95% quantile, with an MCSE from the ESS of the indicator
        q = np.quantile(draws, 0.95)
        density = max(exact.cdf(q + 1e-3) - exact.cdf(q - 1e-3), 1e-12) / 2e-3
        ess = float(az.ess(idata, var_names=["rate"])["rate"].sel(outcome=d.name))
        se_q = np.sqrt(0.95 * 0.05 / ess) / density
        assert abs(q - exact.ppf(0.95)) < 4 * se_q, d.name
