"""Slow statistical checks (``make test-slow``): parameter recovery with interval coverage on
data simulated from known parameters, and clean diagnostics on the default data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from khe_bayes.families import load_spec
from khe_bayes.toolkit.sampling import SamplerSettings, fit
from khe_bayes.toolkit.summary import select_draws

pytestmark = pytest.mark.slow
MODELS = Path(__file__).resolve().parents[1] / "models"


def test_binomial_family_recovers_parameters_with_nominal_coverage(tmp_path):
    """Parameters drawn from the prior, data simulated, model fitted, R = 60 times. Under a
    calibrated posterior the central 50% and 90% intervals cover the truth in Binomial(R, 0.5)
    and Binomial(R, 0.9) numbers of replications, so each coverage is checked two-sided to 3
    binomial SE: 0.5 +/- 3 sqrt(0.25 / R) = [0.31, 0.69] and 0.9 +/- 3 sqrt(0.09 / R) =
    [0.78, 1.0] (false failure ~0.3% per check; fixed seeds). The 50% band rejects intervals
    that are too wide (twice too wide: expected coverage P(|Z| < 1.35) = 0.82) and too narrow
    (twice too narrow: 0.26); the 90% band rejects intervals twice too narrow (0.59)."""
    spec, family = load_spec(MODELS / "binomial_example.toml")
    template = family.load_data(spec, MODELS)
    rng = np.random.default_rng(123)
    reps = 60
    levels = {0.5: (0.25, 0.75), 0.9: (0.05, 0.95)}
    covered = {(name, level): 0 for name in ("mu", "tau", "arm_effect") for level in levels}
    settings = SamplerSettings(draws=500, tune=500, chains=2, progressbar=False, target_accept=0.95)
    groups = list(dict.fromkeys(template["group"]))
    g = np.array([groups.index(x) for x in template["group"]])
    for r in range(reps):
        mu, tau, arm = rng.normal(0, 2.5), abs(rng.normal(0, 1)), rng.normal(0, 1.5)
        theta = mu + tau * rng.normal(size=len(groups))
        p = special.expit(theta[g] + arm * template["treated"].to_numpy())
        data = template.copy()
        data["events"] = rng.binomial(data["n"].to_numpy(), p)
        idata = fit(family.build(spec, data), settings.model_copy(update={"seed": r}))
        for name, truth in (("mu", mu), ("tau", tau), ("arm_effect", arm)):
            draws = select_draws(idata, name)
            for level, quantiles in levels.items():
                lo, hi = np.quantile(draws, quantiles)
                covered[(name, level)] += lo <= truth <= hi
    for (name, level), count in covered.items():
        band = 3 * np.sqrt(level * (1 - level) / reps)
        assert abs(count / reps - level) <= band, (name, level, count)


def test_response_model_recovers_known_parameters():
    """Simulated cohort of 300 patients at 6 centers with known intercepts and KMP effect: the
    95% intervals contain the truth (each fails with probability about 0.05 under a correct
    model; 4 checks, fixed seed)."""
    from khe_bayes.study.hierarchical import build_response_model

    rng = np.random.default_rng(7)
    n, centers = 300, [f"c{i}" for i in range(6)]
    truth = {"intercept": np.array([1.0, 1.8]), "kmp_effect": -0.8, "center_sd": 0.5}
    center = rng.integers(0, 6, size=n)
    effect = truth["center_sd"] * rng.normal(size=6)
    kmp = rng.binomial(1, 0.7, size=n)
    ipd = pd.DataFrame(
        {"patient_id": [f"P{i}" for i in range(n)], "center": np.array(centers)[center], "kmp": kmp}
    )
    for v, visit in enumerate(("6m", "12m")):
        logit = truth["intercept"][v] + truth["kmp_effect"] * kmp + effect[center]
        ipd[f"response_{visit}"] = rng.binomial(1, special.expit(logit))
    idata = fit(
        build_response_model(ipd),
        SamplerSettings(draws=1000, tune=1000, chains=4, progressbar=False, seed=1),
    )
    for label, value in (
        ("intercept[6m]", 1.0),
        ("intercept[12m]", 1.8),
        ("kmp_effect", -0.8),
        ("center_sd", 0.5),
    ):
        lo, hi = np.quantile(select_draws(idata, label), [0.025, 0.975])
        assert lo <= value <= hi, (label, lo, hi)


def test_default_reanalysis_converges(tmp_path):
    """The full reanalysis at default settings: R-hat <= 1.01, bulk and tail ESS >= 100 per
    chain, no divergences, in every fit."""
    from khe_bayes.study.reanalysis import ReanalysisSettings, run_reanalysis

    result = run_reanalysis(
        ReanalysisSettings(sampler=SamplerSettings(progressbar=False)),
        tmp_path / "out",
        progress=lambda m: None,
    )
    bad = result.diagnostics[~result.diagnostics["ok"]]
    assert bad.empty, bad[["model", "dataset", "problems"]].to_string()
