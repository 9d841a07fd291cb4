"""The summary-data model against independent references (issue 14).

- closed form: a one-sample interval with known SD and a conjugate normal prior; NUTS posterior
  and the importance-sampling marginal likelihood against the exact normal-normal answers;
- a reading that contradicts the data: a simulated study whose printed numbers follow one
  reading; the 'two group means' reading, which contradicts the other printed interval, must get
  posterior weight < 0.05;
- the p-bound rule: the real 'difference' reading of combination vs sirolimus alone is excluded
  (its own test gives p < 1e-10 against the printed p > 0.05), the others are not.
"""

from __future__ import annotations

import dataclasses
import math

import arviz as az
import numpy as np
import pytest
from scipy import stats

from khe_bayes.study.evidence import Interpretation, IntervalRecord, load_evidence
from khe_bayes.study.summary_data import (
    Block,
    CenterDesign,
    ModelOptions,
    Statement,
    SummaryPriors,
    blocks_from_evidence,
    build_block_model,
    group_sizes,
    same_test_check,
    t_quantile_975,
)
from khe_bayes.study.summary_data_fit import (
    fit_block,
    importance,
    posterior_weights,
    proposal_from_draws,
    statement_weights,
)
from khe_bayes.toolkit.sampling import SamplerSettings, fit

EVIDENCE = load_evidence()
SIZES = group_sizes(EVIDENCE)


def _interval(statistic: str, lower: float, upper: float, decimals: int) -> IntervalRecord:
    return IntervalRecord(
        id=f"{statistic}_ci",
        statistic=statistic,
        quote="simulated interval for a test of the summary-data model",
        population="simulated",
        description="simulated",
        kind="ci95",
        lower=lower,
        upper=upper,
        decimals=decimals,
    )


def test_t_quantile_expansion_matches_scipy():
    for df in (10, 20, 35.5, 50):
        assert abs(t_quantile_975(df) - stats.t.ppf(0.975, df)) < 2e-4


def test_design_effect_uses_centers_and_unequal_sizes():
    design = CenterDesign(centers=6, concentration=6.0)
    assert design.cv2 == pytest.approx(5 / 7)
    assert design.deff(52, 0.0) == 1.0
    assert design.deff(52, 0.1) == pytest.approx(1 + (52 / 6 * (1 + 5 / 7) - 1) * 0.1)


def test_a_reading_whose_own_test_contradicts_the_p_bound_is_excluded():
    (shrinkage,) = [b for b in blocks_from_evidence(EVIDENCE) if b.name == "shrinkage"]
    combination = shrinkage.statement("combination_vs_alone_shrinkage")
    why = {r.id: same_test_check(combination, r, SIZES) for r in combination.readings}
    assert "contradicts the printed p > 0.05" in why["shrinkage_difference"]
    assert why["mean_shrinkage_kmp"] == "" and why["group_means_shrinkage_arms"] == ""


def test_every_ci_record_has_prior_weights_and_the_group_means_reading():
    for record in EVIDENCE.of_kind("ci95"):
        weights = record.prior_weights()
        assert sum(weights.values()) == pytest.approx(1.0)
    age = EVIDENCE["age_difference_ci"].interpretation("group_means_months")
    assert age.groups == ["kmp", "non_kmp"] and "younger" in age.order_reason


def test_closed_form_normal_likelihood_with_conjugate_prior():
    """Known SD: the printed interval's centre is N(mu, sd^2 / n); prior mu ~ N(m0, s0); the
    posterior is normal and the marginal likelihood is closed-form. The rounding cells are
    tiny (4 decimals), so the interval-censoring integral is the density times the cell area
    to well below the Monte Carlo error."""
    sd, n = 20.0, SIZES["kmp"]
    priors = SummaryPriors(sd_fixed=sd)
    m0, s0 = priors.age_mean_mu, priors.age_mean_sigma
    reading = Interpretation(
        id="mean_kmp",
        description="one-sample t interval of the KMP group's mean",
        estimand="mean_at_visit",
        test="t_one_sample",
        groups=["kmp"],
        default=True,
        p_test="same",
    )
    ci = _interval("age_difference_kmp", 10.1234, 22.8766, 4)
    block = Block(
        "age",
        (Statement("age_difference_kmp", ci, None, (reading,), {"mean_kmp": 1.0}),),
        SIZES,
    )
    joint = {"age_difference_kmp": "mean_kmp"}
    model = build_block_model(block, joint, priors, ModelOptions(icc=0.0))
    idata = fit(model, SamplerSettings(draws=2000, tune=1000, chains=2, seed=11))

    est = (ci.lower + ci.upper) / 2
    se = sd / math.sqrt(n)
    post_var = 1 / (1 / s0**2 + 1 / se**2)
    post_mean = post_var * (m0 / s0**2 + est / se**2)
    summary = az.summary(idata, var_names=["mean_age"], round_to="none")
    kmp = summary.loc["mean_age[kmp]"]
    # NUTS estimates are within 4 Monte Carlo SEs of the exact values (fixed seed)
    assert abs(kmp["mean"] - post_mean) < 4 * kmp["mcse_mean"]
    assert abs(kmp["sd"] - math.sqrt(post_var)) < 4 * kmp["mcse_sd"]
    non = summary.loc["mean_age[non_kmp]"]  # untouched by the data: its prior
    assert abs(non["mean"] - m0) < 4 * non["mcse_mean"]
    assert abs(non["sd"] - s0) < 4 * non["mcse_sd"]

    # marginal likelihood: N(centre; m0, s0^2 + se^2) x density of the width x Jacobian x area
    tq = stats.t.ppf(0.975, n - 1)
    a = math.sqrt(n) / (2 * tq)
    s = (ci.upper - ci.lower) * a
    x = (n - 1) * s**2 / sd**2
    log_width = stats.chi2.logpdf(x, n - 1) + math.log(2 * (n - 1) * s / sd**2)
    area = (10.0**-ci.decimals) ** 2
    exact = (
        stats.norm.logpdf(est, m0, math.sqrt(s0**2 + se**2))
        + log_width
        + math.log(a)
        + math.log(area)
    )
    res = importance(
        model, "age", proposal_from_draws(model, idata), 20_000, np.random.default_rng(1)
    )
    # 4 importance-sampling SEs plus 0.01 for the density-times-area approximation of the cell
    assert abs(res["log_z"] - exact) < 4 * res["log_z_se"] + 0.01


def _simulated_shrinkage_evidence(seed: int):
    """Printed numbers of a simulated study under the default readings: the non-KMP mean's
    one-sample interval with the KMP vs non-KMP p bound (KMP shrinking more, the sign the
    wording states), and the KMP mean's interval with the combination vs sirolimus-alone p
    bound."""
    rng = np.random.default_rng(seed)
    groups = {
        # non-KMP response less pronounced than KMP, as the statement's wording says
        "non_kmp": rng.normal(5, 12, SIZES["non_kmp"]),
        "kmp_combination": rng.normal(20, 10, SIZES["kmp_combination"]),
        "kmp_sirolimus": rng.normal(23, 10, SIZES["kmp_sirolimus"]),
    }
    kmp = np.concatenate([groups["kmp_combination"], groups["kmp_sirolimus"]])

    def one_sample(x):
        half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
        return round(x.mean() - half, 2), round(x.mean() + half, 2)

    p_kmp = stats.ttest_ind(kmp, groups["non_kmp"]).pvalue
    p_arm = stats.ttest_ind(groups["kmp_combination"], groups["kmp_sirolimus"]).pvalue
    raw = EVIDENCE.model_dump()
    for rec in raw["record"]:
        if rec["id"] == "kmp_vs_non_kmp_response_ci":
            rec["lower"], rec["upper"] = one_sample(groups["non_kmp"])
        if rec["id"] == "combination_shrinkage_ci":
            rec["lower"], rec["upper"] = one_sample(kmp)
        if rec["id"] == "kmp_vs_non_kmp_response_p":
            assert p_kmp < 0.001 and kmp.mean() > groups["non_kmp"].mean()
        if rec["id"] == "combination_shrinkage_p":
            rec["relation"] = ">" if p_arm > 0.05 else "<"
    return type(EVIDENCE).model_validate(raw)


def test_a_reading_that_contradicts_the_data_gets_weight_below_005():
    """Simulated study printed under the default readings; the 'two group means' reading of the
    KMP vs non-KMP statement puts the KMP mean at the upper printed end (about 12%), which the
    KMP interval of the other statement (about 18-25%) contradicts."""
    evidence = _simulated_shrinkage_evidence(seed=4)
    (block,) = [b for b in blocks_from_evidence(evidence) if b.name == "shrinkage"]
    keep = {
        "kmp_vs_non_kmp_response": {"mean_shrinkage_non_kmp", "group_means_shrinkage"},
        "combination_vs_alone_shrinkage": {"mean_shrinkage_kmp"},
    }
    statements = []
    for st in block.statements:
        readings = tuple(r for r in st.readings if r.id in keep[st.statistic])
        prior = {r.id: 1.0 / len(readings) for r in readings}
        statements.append(dataclasses.replace(st, readings=readings, prior=prior))
    block = dataclasses.replace(block, statements=tuple(statements))
    sampler = SamplerSettings(draws=1000, tune=1000, chains=2, seed=3, target_accept=0.95)
    fits = fit_block(block, SummaryPriors(), sampler, is_draws=10_000)
    posterior_weights(fits, np.random.default_rng(0))
    weights = statement_weights([block], fits).set_index("reading")
    assert weights.loc["group_means_shrinkage", "posterior_weight"] < 0.05
    assert weights.loc["mean_shrinkage_non_kmp", "posterior_weight"] > 0.95


@pytest.mark.slow
def test_summary_data_fits_on_dask_equal_the_fits_in_process():
    """A summary-data block's readings as tasks on 2 Dask workers (what `reanalyze --workers 2`
    does) give the same draws and the same importance-sampling marginal likelihoods as in this
    process: seeds come from the block and the reading, not from where a fit runs."""
    from khe_bayes.study.evidence import load_evidence
    from khe_bayes.study.summary_data import SummaryPriors, blocks_from_evidence
    from khe_bayes.study.summary_data_fit import fit_block
    from khe_bayes.toolkit.sampling import SamplerSettings
    from khe_bayes.toolkit.sweep import SweepOptions

    block = blocks_from_evidence(load_evidence())[0]
    sampler = SamplerSettings(draws=100, tune=100, chains=2, seed=3, progressbar=False)
    here = fit_block(block, SummaryPriors(), sampler, is_draws=500)
    there = fit_block(block, SummaryPriors(), sampler, is_draws=500, sweep=SweepOptions(workers=2))
    assert [f.joint for f in there] == [f.joint for f in here] and len(here) >= 2
    for a, b in zip(here, there, strict=True):
        assert a.log_z == b.log_z and a.is_ess == b.is_ess
        for name in a.idata.posterior.data_vars:
            np.testing.assert_array_equal(
                a.idata.posterior[name].values, b.idata.posterior[name].values
            )
