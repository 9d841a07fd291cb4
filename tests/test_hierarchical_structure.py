"""Hierarchical IPD models: structure and log-density, with no sampling (milliseconds)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy import integrate, special, stats

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.hierarchical import (
    build_contrast_model,
    build_response_model,
    build_severity_model,
    build_shrinkage_model,
)
from khe_bayes.study.hierarchical.common import center_index
from khe_bayes.study.hierarchical.response import response_long
from khe_bayes.study.hierarchical.severity import _random_intercept_draw, severity_long
from khe_bayes.study.reconstruct import reconstruct_datasets

IPD = reconstruct_datasets(load_evidence(), 1, seed=9)[0]
CENTER, CENTERS = center_index(IPD)


def _point_function(model, names):
    """Deterministics as a function of a point of the model's value variables."""
    outs = model.replace_rvs_by_values([model[n] for n in names])
    return model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")


def test_response_model_structure():
    m = build_response_model(IPD)
    assert m.coords["center"] == tuple(CENTERS) and len(m.coords["patient"]) == 52
    assert m.coords["visit"] == ("6m", "12m") and m.coords["kmp_status"] == ("non_kmp", "kmp")
    assert m.named_vars_to_dims["center_response_rate"] == ("visit", "center")
    assert m.named_vars_to_dims["response_rate_by_kmp"] == ("visit", "kmp_status")
    free = {v.name for v in m.free_RVs}
    # non-centered center and patient effects (a patient's two visits are not independent)
    assert free == {"intercept", "kmp_effect", "center_sd", "center_z", "patient_sd", "patient_z"}
    assert "center_effect" in {d.name for d in m.deterministics}


def test_response_log_density_matches_scipy():
    m = build_response_model(IPD)
    point = {
        "intercept": np.array([2.0, 2.5]),
        "kmp_effect": 0.3,
        "center_sd_log__": np.log(0.7),
        "center_z": np.linspace(-1, 1, len(CENTERS)),
        "patient_sd_log__": np.log(0.5),
        "patient_z": np.linspace(-2, 2, 52),
    }
    got = m.compile_logp(jacobian=False)(point)
    long = response_long(IPD)
    kmp = IPD["kmp"].to_numpy(float)
    eff = 0.7 * point["center_z"]
    logit = (
        point["intercept"][long["visit"]]
        + 0.3 * kmp[long["patient"]]
        + eff[CENTER[long["patient"]]]
        + 0.5 * point["patient_z"][long["patient"]]
    )
    expected = (
        stats.halfnorm.logpdf(0.5, scale=1)
        + stats.norm.logpdf(point["patient_z"]).sum()
        + stats.norm.logpdf(point["intercept"], 1, 1.5).sum()
        + stats.norm.logpdf(0.3, 0, 1)
        + stats.halfnorm.logpdf(0.7, scale=1)
        + stats.norm.logpdf(point["center_z"]).sum()
        + stats.bernoulli.logpmf(long["response"], special.expit(logit)).sum()
    )
    assert got == pytest.approx(expected, rel=1e-9)


def test_response_rates_are_the_stated_averages():
    m = build_response_model(IPD)
    fn = _point_function(m, ["response_rate", "response_rate_by_kmp"])
    point = {
        "intercept": np.array([2.0, 2.5]),
        "kmp_effect": -0.4,
        "center_sd_log__": np.log(0.7),
        "center_z": np.zeros(len(CENTERS)),
        "patient_sd_log__": np.log(1.3),
        "patient_z": np.zeros(52),
    }
    rate, by_kmp = fn(point)
    share = IPD["kmp"].mean()
    # population average over the patient effect ~ Normal(0, 1.3), by adaptive quadrature
    expected_by = np.array(
        [
            [
                integrate.quad(
                    lambda z, a=a: special.expit(a + 1.3 * z) * stats.norm.pdf(z), -12, 12
                )[0]
                for a in row
            ]
            for row in ([2.0, 1.6], [2.5, 2.1])
        ]
    )
    # 21-node Gauss-Hermite vs adaptive quadrature: the logistic is smooth, error well < 1e-6
    np.testing.assert_allclose(by_kmp, expected_by, rtol=1e-6)
    np.testing.assert_allclose(rate, expected_by @ [1 - share, share], rtol=1e-6)


def test_gaussian_severity_log_density_is_the_marginal_multivariate_normal():
    """The patient intercept is integrated out: each patient's scores are jointly normal with
    covariance sigma^2 I + patient_sd^2 J. Checked against scipy's multivariate normal, with
    one patient missing a visit."""
    ipd = IPD.copy()
    ipd.loc[3, "severity_12m"] = np.nan
    m = build_severity_model(ipd, kind="gaussian")
    assert m.coords["visit"] == ("0m", "6m", "12m")
    assert {v.name for v in m.free_RVs} == {
        "patient_sd",
        "center_sd",
        "center_z",
        "visit_effect",
        "sigma",
    }
    cz = np.random.default_rng(0).normal(size=len(CENTERS))
    ve = np.array([6.0, 2.4, 1.7])
    point = {
        "patient_sd_log__": np.log(0.8),
        "center_sd_log__": np.log(0.3),
        "center_z": cz,
        "visit_effect": ve,
        "sigma_log__": np.log(0.6),
    }
    got = m.compile_logp(jacobian=False)(point)
    long = severity_long(ipd)
    expected = (
        stats.halfnorm.logpdf(0.8, scale=2)
        + stats.halfnorm.logpdf(0.3, scale=1)
        + stats.norm.logpdf(cz).sum()
        + stats.norm.logpdf(ve, 5, 5).sum()
        + stats.halfnorm.logpdf(0.6, scale=2)
    )
    for patient, rows in long.groupby("patient"):
        mu = ve[rows["visit"]] + 0.3 * cz[CENTER[patient]]
        cov = 0.6**2 * np.eye(len(rows)) + 0.8**2
        expected += stats.multivariate_normal(mu, cov).logpdf(rows["score"].to_numpy())
    assert got == pytest.approx(expected, rel=1e-9)


def test_gaussian_severity_simulates_a_shared_patient_intercept():
    """Simulated scores of one patient are correlated by patient_sd^2 / (patient_sd^2 + sigma^2)
    = 0.64 / 1.0; over 4000 simulations the sample correlation's SE is about 0.01, so 0.05 is
    5 SEs."""
    long = severity_long(IPD)
    patient = long["patient"].to_numpy()
    n_obs = np.bincount(patient, minlength=len(IPD))
    rng = np.random.default_rng(3)
    sims = np.array(
        [
            _random_intercept_draw(np.zeros(len(long)), 0.6, 0.8, patient, n_obs, rng=rng)
            for _ in range(4000)
        ]
    )
    first = [np.flatnonzero(patient == 0)[0], np.flatnonzero(patient == 0)[1]]
    assert np.corrcoef(sims[:, first[0]], sims[:, first[1]])[0, 1] == pytest.approx(0.64, abs=0.05)
    other = np.flatnonzero(patient == 1)[0]
    assert abs(np.corrcoef(sims[:, first[0]], sims[:, other])[0, 1]) < 0.05
    m = build_severity_model(IPD, kind="gaussian")
    assert pm.draw(m["score"], random_seed=1).shape == (len(long),)


def test_ordinal_expected_score_from_category_probabilities():
    m = build_severity_model(IPD, kind="ordinal")
    assert m.named_vars_to_dims["category_probability"] == ("visit", "category")
    fn = _point_function(m, ["category_probability", "expected_score", "severity_change_6m"])
    point = m.initial_point()
    point["follow_up_effect"] = np.array([-1.5, -2.5])
    probs, expected, change = fn(point)
    again, _, _ = fn(point)
    np.testing.assert_array_equal(probs, again)  # a function of the point, not a random draw
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-10)
    np.testing.assert_allclose(expected, probs @ np.arange(11), rtol=1e-10)
    assert change == pytest.approx(expected[1] - expected[0])


def test_ordinal_cutpoints_reproduce_the_baseline_score_distribution():
    """At baseline (visit effect 0) a typical patient's category probabilities are exactly the
    Dirichlet-distributed baseline probabilities; and forward draws of the cutpoints are
    ordered (the earlier iid-normal-with-ordered-transform prior drew unordered cutpoints in
    prior predictive sampling, which SBC exposed)."""
    m = build_severity_model(IPD, kind="ordinal")
    fn = _point_function(m, ["category_probability", "cutpoints"])
    point = m.initial_point()
    baseline = np.array([0.02, 0.03, 0.05, 0.1, 0.2, 0.2, 0.15, 0.1, 0.1, 0.04, 0.01])
    point["baseline_category_probability_simplex__"] = pm.distributions.transforms.simplex.forward(
        baseline
    ).eval()
    probs, cutpoints = fn(point)
    np.testing.assert_allclose(probs[0], baseline, rtol=1e-9)
    np.testing.assert_allclose(cutpoints, special.logit(np.cumsum(baseline)[:-1]), rtol=1e-9)
    draws = pm.draw(m["cutpoints"], draws=500, random_seed=2)
    assert (np.diff(draws, axis=1) > 0).all()


def test_shrinkage_model_uses_kmp_patients_and_matches_scipy():
    m = build_shrinkage_model(IPD)
    kmp = IPD[IPD["kmp"] == 1].reset_index(drop=True)
    assert len(m.coords["patient"]) == 37
    c, centers = center_index(kmp)
    cz = np.linspace(-0.5, 0.5, len(centers))
    point = {
        "intercept": 20.0,
        "combination_effect": 3.0,
        "severity_slope": -1.0,
        "center_sd_log__": np.log(4.0),
        "center_z": cz,
        "sigma_log__": np.log(10.0),
    }
    got = m.compile_logp(jacobian=False)(point)
    sev = kmp["severity_0m"].to_numpy(float)
    comb = (kmp["arm"] == "combination").to_numpy(float)
    mu = 20 + 3 * comb - (sev - sev.mean()) + 4 * cz[c]
    expected = (
        stats.norm.logpdf(20, 25, 25)
        + stats.norm.logpdf(3, 0, 15)
        + stats.norm.logpdf(-1, 0, 10)
        + stats.halfnorm.logpdf(4, scale=10)
        + stats.norm.logpdf(cz).sum()
        + stats.halfnorm.logpdf(10, scale=20)
        + stats.norm.logpdf(kmp["shrinkage_12m"], mu, 10).sum()
    )
    assert got == pytest.approx(expected, rel=1e-8)  # summation order differs in the last bits


def test_contrast_model_structure():
    m = build_contrast_model(IPD)
    assert m.named_vars_to_dims["age_mean"] == ("kmp_status",)
    assert {d.name for d in m.deterministics} >= {"age_difference_months", "shrinkage_difference"}


def test_missing_follow_up_drops_observations():
    ipd = IPD.copy()
    ipd.loc[0, "severity_12m"] = np.nan
    ipd.loc[1, "response_6m"] = np.nan
    assert len(build_severity_model(ipd, "gaussian").coords["obs"]) == 52 * 3 - 1
    assert len(build_response_model(ipd).coords["obs"]) == 52 * 2 - 1
