"""Formula specs against independent references, with short nutpie fits and fixed seeds.

Tolerances come from Monte Carlo error: the MCSE of a posterior mean is estimated by batch means
(20 batches per chain), that of a quantile by sqrt(q (1 - q) / ESS) / density, with the ESS from
the same batch means; each check allows 4 MCSE (a false failure about once in 16 000) plus the
known, stated gap between the Bayesian and the frequentist quantity where there is one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from khe_bayes.cli import main
from khe_bayes.families import load_spec
from khe_bayes.toolkit.sampling import SamplerSettings, fit

REPO = Path(__file__).resolve().parents[1]
Z = stats.norm.ppf(0.975)
SETTINGS = SamplerSettings(
    draws=2000, tune=500, chains=2, seed=17, backend="nutpie", progressbar=False, target_accept=0.9
)


def _fit(tmp_path: Path, spec_text: str, csv: str):
    (tmp_path / "data.csv").write_text(csv)
    (tmp_path / "spec.toml").write_text(spec_text)
    spec, family = load_spec(tmp_path / "spec.toml")
    model = family.build(spec, family.load_data(spec, tmp_path))
    return fit(model, SETTINGS)


def _draws(idata, name: str) -> np.ndarray:
    """chains x draws"""
    return np.asarray(idata.posterior[name].values).reshape(SETTINGS.chains, -1)


def _mcse_and_ess(draws: np.ndarray) -> tuple[float, float]:
    batches = draws.reshape(draws.shape[0], 20, -1).mean(axis=2)
    mcse = float(np.sqrt(batches.var(ddof=1) / batches.size))
    ess = float(draws.var(ddof=1) / mcse**2)
    return mcse, min(ess, draws.size)


def _check_quantile(draws, q, target, gap=0.0):
    _, ess = _mcse_and_ess(draws)
    value = np.quantile(draws, q)
    density = stats.gaussian_kde(draws.ravel())(value)[0]
    mcse = np.sqrt(q * (1 - q) / ess) / density
    assert abs(value - target) < 4 * mcse + abs(gap), (q, value, target, mcse, gap)


TRIAL = "group,arm,n,events\ntrial,control,1000,300\ntrial,treated,1000,400\n"
TRIAL_SPEC = """
name = "one_trial"
family = "binomial_glmm"
formula = "p(events, n) ~ arm + (1 | group)"
data = "data.csv"
levels = { arm = ["control", "treated"] }

[priors]
intercept = { dist = "Flat" }
coefficients = { dist = "Flat" }

[[quantities]]
name = "rd"
measure = "risk_difference"
effect = "conditional"
compare = { arm = ["control", "treated"] }
"""


LEGACY_TRIAL_SPEC = """
name = "one_trial_legacy"
family = "binomial"
data = "data.csv"
reference_arm = "control"

[priors]
mu = { dist = "Flat" }
arm_effect = { dist = "Flat" }
"""


@pytest.mark.parametrize(
    ("spec_text", "quantity"),
    [(TRIAL_SPEC, "rd"), (LEGACY_TRIAL_SPEC, "risk_difference")],
    ids=["binomial_glmm", "binomial"],
)
def test_one_group_two_arm_trial_risk_difference_is_the_frequentist_one(
    tmp_path, spec_text, quantity
):
    """One trial, flat priors on the log-odds: the random effect is dropped (one group), the
    posterior of each arm's risk is exactly Beta(events, n - events), so the posterior mean of
    the risk difference equals the estimate 400/1000 - 300/1000 and its 2.5/97.5% quantiles
    equal the Wald interval up to the Beta-vs-normal gap, which is computed exactly here (2e6
    independent Beta draws) and allowed for besides 4 MCSE. The legacy binomial family (the
    issue's case: its risk difference was taken at an unidentified mu) now does the same."""
    with pytest.warns(UserWarning, match="one group"):
        idata = _fit(tmp_path, spec_text, TRIAL)
    assert "tau" not in idata.posterior
    rd = _draws(idata, quantity)
    p1, p0, n = 0.4, 0.3, 1000
    se = np.sqrt(p1 * (1 - p1) / n + p0 * (1 - p0) / n)
    mcse, _ = _mcse_and_ess(rd)
    assert abs(rd.mean() - (p1 - p0)) < 4 * mcse, (rd.mean(), mcse)
    rng = np.random.default_rng(0)
    exact = rng.beta(400, 600, 2_000_000) - rng.beta(300, 700, 2_000_000)
    for q, wald in ((0.025, p1 - p0 - Z * se), (0.975, p1 - p0 + Z * se)):
        _check_quantile(rd, q, wald, gap=np.quantile(exact, q) - wald)
    assert abs(np.quantile(exact, 0.975) - (p1 - p0 + Z * se)) < 0.002  # the gap is small


META_SPEC = """
name = "meta_regression"
family = "normal_glmm"
formula = "estimate | se(se) ~ center(year) + (1 | study)"
data = "data.csv"

[priors]
intercept = { dist = "Flat" }
coefficients = { dist = "Flat" }
tau_fixed = 0.3

[[quantities]]
name = "decade"
measure = "difference"
effect = "conditional"
compare = { year = [2000, 2010] }
"""


def test_meta_regression_slope_is_weighted_least_squares_with_tau_fixed(tmp_path):
    """With tau fixed and flat priors, integrating out the study effects gives
    estimate ~ Normal(X b, se^2 + tau^2): the posterior of b is exactly Normal with the
    weighted-least-squares mean (weights 1 / (se^2 + tau^2)) and covariance (X' W X)^-1.
    The stated contrast (2010 vs 2000) is ten times the slope."""
    rng = np.random.default_rng(3)
    year = np.arange(1990, 2014, 2).astype(float)
    se = rng.uniform(0.1, 0.4, year.size)
    y = 0.2 + 0.02 * (year - 2000) + rng.normal(0, 0.3, year.size) + rng.normal(0, se)
    csv = pd.DataFrame(
        {"study": [f"s{i:02d}" for i in range(year.size)], "estimate": y, "se": se, "year": year}
    ).to_csv(index=False)
    idata = _fit(tmp_path, META_SPEC, csv)
    X = np.column_stack([np.ones_like(year), year - year.mean()])
    W = np.diag(1 / (se**2 + 0.3**2))
    cov = np.linalg.inv(X.T @ W @ X)
    wls = cov @ X.T @ W @ y
    slope = np.asarray(idata.posterior["b"].sel(coef="center(year)").values)
    mcse, ess = _mcse_and_ess(slope)
    assert abs(slope.mean() - wls[1]) < 4 * mcse, (slope.mean(), wls[1], mcse)
    sd = np.sqrt(cov[1, 1])  # relative MC error of an SD is about 1 / sqrt(2 ESS)
    assert abs(slope.std() / sd - 1) < 4 / np.sqrt(2 * ess), (slope.std(), sd, ess)
    decade = _draws(idata, "decade")
    np.testing.assert_allclose(decade, 10 * slope, rtol=1e-10)


INTERACTION_SPEC = """
name = "interaction"
family = "binomial_glmm"
formula = "p(events, n) ~ arm * x"
data = "data.csv"
levels = { arm = ["control", "treated"] }

[priors]
intercept = { dist = "Flat" }
coefficients = { dist = "Flat" }

[[quantities]]
name = "lor_at_x"
measure = "log_odds_ratio"
effect = "conditional"
compare = { arm = ["control", "treated"] }
at = { x = 1.5 }

[[quantities]]
name = "p_treated_at_x"
measure = "probability"
effect = "conditional"
at = { arm = "treated", x = 1.5 }
"""


def test_covariate_contrast_at_a_stated_value_matches_maximum_likelihood(tmp_path):
    """Logistic regression with an arm x covariate interaction, flat priors, large counts: the
    posterior of the log odds ratio at x = 1.5 (b_arm + 1.5 b_arm:x) and of the treated arm's
    probability there approach the maximum-likelihood estimates (fitted here by scipy's BFGS
    on the binomial log-likelihood, an independent implementation) with the Wald SE from the
    inverse observed information (Bernstein-von Mises). The gap between the two is O(1/n): a
    tenth of a posterior SD is allowed for it besides 4 MCSE."""
    x = np.repeat([0.0, 1.0, 2.0, 3.0], 2)
    treated = np.tile([0.0, 1.0], 4)
    n = np.full(8, 600)
    eta = -0.5 + 0.3 * x + treated * (0.2 + 0.25 * x)
    events = np.random.default_rng(5).binomial(n, special.expit(eta))
    csv = pd.DataFrame(
        {"arm": np.where(treated == 1, "treated", "control"), "x": x, "n": n, "events": events}
    ).to_csv(index=False)
    idata = _fit(tmp_path, INTERACTION_SPEC, csv)
    X = np.column_stack([np.ones(8), treated, x, treated * x])

    def nll(b):
        e = X @ b
        return -(events * e - n * np.logaddexp(0, e)).sum()

    mle = optimize.minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    p = special.expit(X @ mle)
    info = X.T @ (X * (n * p * (1 - p))[:, None])
    cov = np.linalg.inv(info)
    c = np.array([0, 1, 0, 1.5])
    row = np.array([1, 1, 1.5, 1.5])
    for name, estimate, sd in (
        ("lor_at_x", c @ mle, np.sqrt(c @ cov @ c)),
        (
            "p_treated_at_x",
            special.expit(row @ mle),
            special.expit(row @ mle) * (1 - special.expit(row @ mle)) * np.sqrt(row @ cov @ row),
        ),
    ):
        draws = _draws(idata, name)
        mcse, _ = _mcse_and_ess(draws)
        assert abs(draws.mean() - estimate) < 4 * mcse + 0.1 * sd, (name, draws.mean(), estimate)
        assert abs(draws.std() / sd - 1) < 0.1, (name, draws.std(), sd)


def test_fit_command_uses_nutpie_by_default_and_takes_sampler_options(tmp_path):
    out = tmp_path / "out"
    code = main(
        [
            "fit",
            str(REPO / "models/seeds_formula.toml"),
            "--out",
            str(out),
            "--draws",
            "200",
            "--tune",
            "300",
            "--chains",
            "2",
            "--target-accept",
            "0.9",
            "--no-progress",
        ]
    )
    assert code in (0, 3)
    manifest = json.loads((out / "manifest.json").read_text())
    sampler = manifest["settings"]["sampler"]
    assert sampler["backend"] == "nutpie" and sampler["target_accept"] == 0.9
    assert sampler["chains"] == 2 and sampler["tune"] == 300
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"rd_extract_o75", "rd_extract_o75_pa", "p_o73_cucumber"} <= set(summary.index)
    # median and equal-tailed 2.5/97.5% quantiles beside the HDI (BUGS / Stan users' columns)
    assert {"median", "eti95_lb", "eti95_ub", "hdi95_lb", "hdi95_ub"} <= set(summary.columns)
    assert (summary["eti95_lb"] <= summary["median"]).all()
    assert (summary["median"] <= summary["eti95_ub"]).all()
    ppc = pd.read_csv(out / "ppc_reported.csv")
    assert ppc.loc[0, "scale"] == "fraction"
    assert 0 < ppc.loc[0, "posterior_mean"] < 1  # the quantity on the entry's (fraction) scale


def test_reported_result_on_another_scale_fails_before_sampling(tmp_path, capsys):
    """The issue's case: a risk difference reported in percentage points against a fraction
    quantity is an input error naming the entry, unless its scale is declared."""
    text = (
        (REPO / "models/seeds_formula.toml")
        .read_text()
        .replace('data = "data/', f'data = "{REPO}/models/data/')
    )
    percent = (
        text.replace("estimate = 0.317", "estimate = 31.7")
        .replace("lower = 0.239", "lower = 23.9")
        .replace("upper = 0.395", "upper = 39.5")
    )
    (tmp_path / "s.toml").write_text(percent)
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / "s.toml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "reported[1]" in err and "percent" in err
    assert not out.exists()
