"""The response model with the patient effect integrated out (cells) has the posterior of the
model with a sampled patient effect: posterior means of every reported estimand agree within
Monte Carlo error on one reconstructed dataset (nutpie, fixed seeds)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.hierarchical.response import (
    build_response_model,
    build_response_model_cells,
)
from khe_bayes.study.ipd_analysis import IPD_MODELS
from khe_bayes.study.reconstruct import reconstruct_datasets
from khe_bayes.toolkit.sampling import SamplerSettings, fit

pytestmark = pytest.mark.slow
VARS = next(m for m in IPD_MODELS if m.name == "response").var_names


def test_marginal_and_per_patient_posteriors_agree():
    data = reconstruct_datasets(load_evidence(), 1, seed=9)[0]
    settings = SamplerSettings(draws=3000, tune=1500, chains=4, seed=3, target_accept=0.99)
    fits = [
        fit(build(data), settings, log_likelihood=False)
        for build in (build_response_model_cells, build_response_model)
    ]
    means = [az.summary(f, var_names=VARS, kind="stats", round_to="none")["mean"] for f in fits]
    mcse = [
        az.summary(f, var_names=VARS, kind="diagnostics", round_to="none")["mcse_mean"]
        for f in fits
    ]
    z = (means[0] - means[1]).abs() / np.hypot(mcse[0], mcse[1])
    assert len(z) == 2 + 4 + 2 * 6 + 3
    # 21 comparisons at 4.5 combined SEs: a false alarm has probability about 1e-4
    assert z.max() < 4.5, z.sort_values().tail()
