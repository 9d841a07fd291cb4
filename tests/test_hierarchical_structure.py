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
    build_response_model_cells,
    build_severity_model,
    build_shrinkage_model,
)
from khe_bayes.study.hierarchical.common import center_index
from khe_bayes.study.hierarchical.response import (
    PATTERNS,
    cell_counts,
    replicated_responses,
    response_long,
)
from khe_bayes.study.hierarchical.severity import _random_intercept_draw, severity_long
from khe_bayes.study.reconstruct import reconstruct_datasets

IPD = reconstruct_datasets(load_evidence(), 1, seed=9)[0]
CENTER, CENTERS = center_index(IPD)


def _point_function(model, names):
    """Deterministics as a function of a point of the model's value variables."""
    outs = model.replace_rvs_by_values([model[n] for n in names])
    return model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")


def test_per_patient_response_model_structure():
    m = build_response_model(IPD)
    assert m.coords["center"] == tuple(CENTERS) and len(m.coords["patient"]) == 52
    assert m.coords["visit"] == ("6m", "12m") and m.coords["kmp_status"] == ("non_kmp", "kmp")
    assert m.named_vars_to_dims["center_response_rate"] == ("visit", "center")
    assert m.named_vars_to_dims["response_rate_by_kmp"] == ("visit", "kmp_status")
    free = {v.name for v in m.free_RVs}
    # non-centered center and patient effects (a patient's two visits are not independent)
    assert free == {"intercept", "kmp_effect", "center_sd", "center_z", "patient_sd", "patient_z"}
    assert "center_effect" in {d.name for d in m.deterministics}


def test_per_patient_response_log_density_matches_scipy():
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


def test_response_model_structure():
    m = build_response_model_cells(IPD)
    assert m.coords["center"] == tuple(CENTERS)
    assert m.coords["visit"] == ("6m", "12m") and m.coords["kmp_status"] == ("non_kmp", "kmp")
    assert len(m.coords["pattern"]) == 9  # 6m and 12m each responded / not / not seen
    assert m.named_vars_to_dims["center_response_rate"] == ("visit", "center")
    assert m.named_vars_to_dims["response_rate_by_kmp"] == ("visit", "kmp_status")
    assert m.named_vars_to_dims["cell_count"] == ("center", "kmp_status", "pattern")
    free = {v.name for v in m.free_RVs}
    # non-centered center effect; the patient effect is integrated out (only its SD is sampled)
    assert free == {"intercept", "kmp_effect", "center_sd", "center_z", "patient_sd"}
    assert "center_effect" in {d.name for d in m.deterministics}
    counts = m["cell_count"].get_value()
    assert counts.sum() == 52 and counts.shape == (len(CENTERS), 2, 9)


def _joint_log_likelihood_by_quadrature(ipd, point, center_sd, patient_sd):
    """The per-patient model's likelihood with each patient's effect integrated out by scipy's
    adaptive quadrature, patient by patient (no cells, no Gauss-Hermite)."""
    long = response_long(ipd)
    center, _ = center_index(ipd)
    kmp = ipd["kmp"].to_numpy(float)
    eff = center_sd * point["center_z"]
    total = 0.0
    for i in range(len(ipd)):
        rows = long[long["patient"] == i]
        if rows.empty:
            continue
        base = (
            point["intercept"][rows["visit"].to_numpy()]
            + point["kmp_effect"] * kmp[i]
            + eff[center[i]]
        )
        y = rows["response"].to_numpy()

        def integrand(z, base=base, y=y):
            p = special.expit(base + patient_sd * z)
            return np.prod(np.where(y == 1, p, 1 - p)) * stats.norm.pdf(z)

        total += np.log(integrate.quad(integrand, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0])
    return total


@pytest.mark.parametrize("seed", range(6))
def test_response_marginal_log_density_is_the_integrated_joint(seed):
    """log p(data, theta) of the cell model equals the log of the per-patient model's joint
    density with every patient effect integrated out (scipy adaptive quadrature, per patient),
    at random parameter values (patient_sd up to 3, a HalfNormal(1) 99.7% quantile), on data
    with a missing visit and with non-responders at both visits."""
    rng = np.random.default_rng(seed)
    ipd = IPD.copy()
    ipd.loc[1, "response_6m"] = np.nan
    ipd.loc[2, "response_12m"] = np.nan
    ipd.loc[[3, 4], "response_6m"] = 0
    ipd.loc[[4, 5], "response_12m"] = 0
    m = build_response_model_cells(ipd)
    center_sd, patient_sd = rng.uniform(0.05, 2.0), rng.uniform(0.05, 3.0)
    point = {
        "intercept": rng.normal(1.5, 1.0, size=2),
        "kmp_effect": rng.normal(0, 1),
        "center_sd_log__": np.log(center_sd),
        "center_z": rng.normal(size=len(CENTERS)),
        "patient_sd_log__": np.log(patient_sd),
    }
    got = m.compile_logp(jacobian=False)(point)
    prior = (
        stats.halfnorm.logpdf(patient_sd, scale=1)
        + stats.norm.logpdf(point["intercept"], 1, 1.5).sum()
        + stats.norm.logpdf(point["kmp_effect"], 0, 1)
        + stats.halfnorm.logpdf(center_sd, scale=1)
        + stats.norm.logpdf(point["center_z"]).sum()
    )
    expected = prior + _joint_log_likelihood_by_quadrature(ipd, point, center_sd, patient_sd)
    # trapezoidal rule against adaptive quadrature: absolute error in the log density
    assert got == pytest.approx(expected, abs=1e-6)


def test_response_cell_log_density_fails_if_the_patient_effect_is_ignored():
    """The check above can fail: with the patient effect dropped (patient_sd -> 0 in the
    quadrature reference only) the log densities differ by far more than its tolerance."""
    ipd = IPD.copy()
    ipd.loc[[3, 4], "response_6m"] = 0
    ipd.loc[[4, 5], "response_12m"] = 0
    m = build_response_model_cells(ipd)
    point = {
        "intercept": np.array([2.0, 2.5]),
        "kmp_effect": 0.3,
        "center_sd_log__": np.log(0.7),
        "center_z": np.linspace(-1, 1, len(CENTERS)),
        "patient_sd_log__": np.log(1.5),
    }
    got = m.compile_logp(jacobian=False)(point)
    prior = m.compile_logp(jacobian=False, vars=m.free_RVs)(point)
    wrong = _joint_log_likelihood_by_quadrature(ipd, point, 0.7, 1e-9)
    assert abs(got - prior - wrong) > 1e-2


def test_replicated_responses_keep_cells_and_missingness():
    ipd = IPD.copy()
    ipd.loc[1, "response_6m"] = np.nan
    counts = cell_counts(ipd)
    rep = replicated_responses(ipd, counts, np.random.default_rng(0))
    again = ipd.copy()
    again["response_6m"], again["response_12m"] = rep[:, 0], rep[:, 1]
    np.testing.assert_array_equal(cell_counts(again), counts)
    assert np.isnan(rep[1, 0]) and not np.isnan(rep[1, 1])
    with pytest.raises(ValueError, match="do not match"):
        replicated_responses(ipd, counts * 2, np.random.default_rng(0))


def test_response_predictive_is_the_per_patient_law():
    """Posterior-predictive counts (multinomial per center x KMP x visits-seen group) against
    simulating each patient's effect and Bernoulli responses: the share of patients who
    respond at both visits agrees within 4.5 Monte Carlo SEs (fixed seeds, 4000 draws)."""
    m = build_response_model_cells(IPD)
    n = 4000
    draws = {
        "intercept": np.tile([0.5, 1.0], (1, n, 1)),
        "kmp_effect": np.full((1, n), -0.5),
        "center_sd": np.full((1, n), 0.5),
        "center_z": np.tile(np.linspace(-1, 1, len(CENTERS)), (1, n, 1)),
        "patient_sd": np.full((1, n), 1.5),
    }
    import arviz as az

    with m:
        pp = pm.sample_posterior_predictive(
            az.from_dict({"posterior": draws}),
            var_names=["response_counts"],
            random_seed=1,
            progressbar=False,
        )
    counts = pp.posterior_predictive["response_counts"].values.reshape(n, len(CENTERS), 2, 9)
    both = counts[..., 0].sum(axis=(1, 2)) / 52  # pattern 0: responded at 6m and 12m
    rng = np.random.default_rng(2)
    kmp = IPD["kmp"].to_numpy(float)
    eta = 0.5 * np.linspace(-1, 1, len(CENTERS))[CENTER] - 0.5 * kmp
    u = rng.normal(size=(n, 52)) * 1.5
    y6 = rng.random((n, 52)) < special.expit(0.5 + eta + u)
    y12 = rng.random((n, 52)) < special.expit(1.0 + eta + u)
    direct = (y6 & y12).mean(axis=1)
    se = np.hypot(both.std(), direct.std()) / np.sqrt(n)
    assert abs(both.mean() - direct.mean()) < 4.5 * se
    # and the independent-visits law (no shared patient effect) is told apart
    v6 = rng.random((n, 52)) < special.expit(0.5 + eta + rng.normal(size=(n, 52)) * 1.5)
    v12 = rng.random((n, 52)) < special.expit(1.0 + eta + rng.normal(size=(n, 52)) * 1.5)
    assert abs(both.mean() - (v6 & v12).mean()) > 4.5 * se


def test_response_rates_are_the_stated_averages():
    m = build_response_model_cells(IPD)
    fn = _point_function(m, ["response_rate", "response_rate_by_kmp"])
    point = {
        "intercept": np.array([2.0, 2.5]),
        "kmp_effect": -0.4,
        "center_sd_log__": np.log(0.7),
        "center_z": np.zeros(len(CENTERS)),
        "patient_sd_log__": np.log(1.3),
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
    counts = build_response_model_cells(ipd)["cell_count"].get_value()
    assert counts.sum() == 52  # every patient in one cell, the missing visit in its pattern
    seen_6m = [i for i, p in enumerate(PATTERNS) if p[0] is not None]
    assert counts[..., seen_6m].sum() == 52 - 1
