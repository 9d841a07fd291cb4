"""A spec's [[reported]] entries: the frequentist tests against independent closed forms, and
the check end to end through ``khe-bayes fit``: a result computed on data simulated from known
parameters is called consistent, a deliberately wrong interval inconsistent, and a misspelt
test fails before sampling with nothing written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from khe_bayes.cli import main
from khe_bayes.toolkit.spec_ppc import (
    fixed_effect_inverse_variance,
    random_effects_dersimonian_laird,
    risk_difference_wald,
)


def test_dersimonian_laird_with_equal_standard_errors_is_moment_estimate():
    """With a common se s, DL's tau^2 reduces to var(y) - s^2 and the mean to the plain mean
    with variance (s^2 + tau^2) / k."""
    y = np.array([1.0, 4.0, -2.0, 6.0, 3.0, 0.5])
    s = 1.5
    data = pd.DataFrame({"estimate": y, "se": s})
    tau2 = y.var(ddof=1) - s**2
    se = np.sqrt((s**2 + tau2) / len(y))
    r = random_effects_dersimonian_laird(data)
    assert r.estimate == pytest.approx(y.mean())
    assert r.upper - r.estimate == pytest.approx(stats.norm.ppf(0.975) * se)
    assert r.p == pytest.approx(2 * stats.norm.sf(y.mean() / se))
    fixed = fixed_effect_inverse_variance(data)  # equal weights: the plain mean, se s / sqrt(k)
    assert fixed.estimate == pytest.approx(y.mean())
    assert fixed.upper - fixed.estimate == pytest.approx(1.959964 * s / np.sqrt(6), rel=1e-6)


def test_risk_difference_wald_by_hand():
    data = pd.DataFrame({"treated": [0, 0, 1, 1], "n": [10, 10, 20, 20], "events": [4, 6, 15, 15]})
    r = risk_difference_wald(data)  # 75% vs 50%
    se = np.sqrt(0.75 * 0.25 / 40 + 0.5 * 0.5 / 20)
    assert r.estimate == pytest.approx(25.0)
    assert (r.lower, r.upper) == pytest.approx(
        (100 * (0.25 - 1.959964 * se), 100 * (0.25 + 1.959964 * se)), rel=1e-6
    )
    assert r.p == pytest.approx(2 * stats.norm.sf(0.25 / se))


SPEC = """
name = "simulated_meta"
family = "normal"
data = "data.csv"

[priors]
mu = {{ dist = "Normal", mu = 0, sigma = 10 }}
tau = {{ dist = "HalfNormal", sigma = 3 }}

[sampler]
draws = 500
tune = 500
chains = 2
target_accept = 0.95

[[reported]]
id = "right"
quantity = "mu"
test = "{test}"
estimate = {estimate}
lower = {lower}
upper = {upper}

[[reported]]
id = "wrong"
quantity = "mu"
test = "fixed_effect_inverse_variance"
estimate = {wrong_estimate}
lower = {wrong_lower}
upper = {wrong_upper}
"""


def _write(tmp_path, test="fixed_effect_inverse_variance"):
    """12 studies from mu = 2, tau = 1, se 0.5-2; 'right' is the fixed-effect result on these
    data, 'wrong' the same interval moved up by six of its standard errors."""
    rng = np.random.default_rng(11)
    se = rng.uniform(0.5, 2.0, size=12)
    y = 2.0 + rng.normal(0, 1.0, size=12) + rng.normal(0, se)
    data = pd.DataFrame({"group": [f"s{i}" for i in range(12)], "estimate": y, "se": se})
    data.to_csv(tmp_path / "data.csv", index=False)
    r = fixed_effect_inverse_variance(data)
    shift = 6 * (r.upper - r.estimate) / 1.959964
    spec = tmp_path / "spec.toml"
    spec.write_text(
        SPEC.format(
            test=test,
            estimate=r.estimate,
            lower=r.lower,
            upper=r.upper,
            wrong_estimate=r.estimate + shift,
            wrong_lower=r.lower + shift,
            wrong_upper=r.upper + shift,
        )
    )
    return spec


def test_fit_calls_the_true_result_consistent_and_a_wrong_interval_inconsistent(tmp_path):
    spec = _write(tmp_path)
    out = tmp_path / "out"
    assert main(["fit", str(spec), "--out", str(out), "--seed", "3", "--no-progress"]) == 0
    ppc = pd.read_csv(out / "ppc_reported.csv").set_index("statistic")
    assert ppc.loc["right", "verdict"] == "consistent", ppc.loc["right"].to_dict()
    assert ppc.loc["wrong", "verdict"] == "inconsistent", ppc.loc["wrong"].to_dict()
    assert ppc.loc["right", "n_replications"] == 1000
    assert ppc.loc["right", "posterior_q2.5"] < 2.0 < ppc.loc["right", "posterior_q97.5"]


def test_unknown_test_fails_before_sampling_and_writes_nothing(tmp_path, capsys):
    spec = _write(tmp_path, test="t_test_of_everything")
    out = tmp_path / "out"
    assert main(["fit", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "reported[1].test" in err and "t_test_of_everything" in err and "spec.toml" in err
    assert not out.exists()
