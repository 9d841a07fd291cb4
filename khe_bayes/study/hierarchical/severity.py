"""Severity score at baseline, 6 and 12 months, with patient and center random effects.

Two likelihoods for the same linear predictor, for patient i at center c(i) and visit v::

    eta[i, v] = visit_effect[v] + patient_effect[i] + center_effect[c(i)]
    center_effect = center_sd * center_z                                   (non-centered)

How the patient effects are handled differs by likelihood:

- Gaussian: the patient intercept is integrated out analytically. Each patient's scores are
  jointly normal with covariance ``sigma^2 I + patient_sd^2 J`` (compound symmetry), whose
  log density is closed form (:func:`_random_intercept_logp`). This removes the funnel between
  ``patient_sd`` and the patient effects that made the sampled form diverge on some
  reconstructions (non-centered, even at target_accept 0.99; centered, badly on others).
- Ordinal: no closed form, so the patient effects are sampled, non-centered
  (``patient_effect = patient_sd * patient_z``).

- ``kind="ordinal"`` (default) respects the integer scale 0..10: cumulative logit
  (``OrderedLogistic``) with ``visit_effect[0m] = 0`` and ordered ``cutpoints``;
- ``kind="gaussian"``: score ~ Normal(eta, sigma), the usual linear mixed model.

Estimands: ``severity_change_6m`` and ``severity_change_12m``, the change in the expected score
from baseline (follow-up minus baseline; negative = improvement) for a typical patient at a
typical center (patient and center effects zero). For the ordinal model the expected score is
sum_k k P(score = k); for the Gaussian model it is the linear predictor (for the Gaussian model
the typical patient's change is also the population-average change). ``expected_score`` [visit]
gives the levels.

Default priors: Gaussian ``visit_effect ~ Normal(5, 5)`` (scores live on 0-10),
``sigma ~ HalfNormal(2)``, ``patient_sd ~ HalfNormal(2)``, ``center_sd ~ HalfNormal(1)``;
ordinal ``visit_effect ~ Normal(0, 3)`` on the log-odds scale, cutpoints induced by
``baseline_category_probability ~ Dirichlet(1, ..., 1)`` (the score distribution of a typical
patient at baseline; ``cutpoints[k] = logit P(score <= k)``), ``patient_sd ~ HalfNormal(2)``,
``center_sd ~ HalfNormal(1)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pydantic import BaseModel, ConfigDict, PositiveFloat

from khe_bayes.study.hierarchical.common import center_effects, center_index, long_format
from khe_bayes.toolkit.priors import Prior, prior

VISITS = ("0m", "6m", "12m")
N_CATEGORIES = 11  # integer scores 0..10


class SeverityPriors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gaussian_visit_effect: Prior = prior("Normal", mu=5.0, sigma=5.0)
    sigma: Prior = prior("HalfNormal", sigma=2.0)
    ordinal_visit_effect: Prior = prior("Normal", mu=0.0, sigma=3.0)
    baseline_category_concentration: PositiveFloat = 1.0
    patient_sd: Prior = prior("HalfNormal", sigma=2.0)
    center_sd: Prior = prior("HalfNormal", sigma=1.0)


def severity_long(ipd: pd.DataFrame) -> pd.DataFrame:
    """One row per observed (patient, visit) score."""
    return long_format(ipd, "severity_", VISITS, "score")


def build_severity_model(
    ipd: pd.DataFrame,
    kind: Literal["ordinal", "gaussian"] = "ordinal",
    priors: SeverityPriors | None = None,
) -> pm.Model:
    priors = priors or SeverityPriors()
    if kind not in ("ordinal", "gaussian"):
        raise ValueError("kind must be 'ordinal' or 'gaussian'")
    center, centers = center_index(ipd)
    long = severity_long(ipd)
    coords = {
        "center": centers,
        "patient": list(ipd["patient_id"].astype(str)),
        "visit": list(VISITS),
        "obs": np.arange(len(long)),
        "category": np.arange(N_CATEGORIES),
        "cutpoint": np.arange(N_CATEGORIES - 1),  # cutpoint k separates scores <= k from > k
        "follow_up": list(VISITS[1:]),
    }
    counts = np.bincount(long["patient"].to_numpy(), minlength=len(ipd))
    with pm.Model(coords=coords) as model:
        p_idx = pm.Data("obs_patient", long["patient"].to_numpy(), dims="obs")
        v_idx = pm.Data("obs_visit", long["visit"].to_numpy(), dims="obs")
        obs_center = pm.Data("obs_center", center[long["patient"].to_numpy()], dims="obs")
        score_dtype = "float64" if kind == "gaussian" else "int64"
        observed = pm.Data(
            "score_observed", long["score"].to_numpy().astype(score_dtype), dims="obs"
        )
        center_effect = center_effects(priors.center_sd)
        patient_sd = priors.patient_sd.create("patient_sd")
        if kind == "gaussian":
            visit_effect = priors.gaussian_visit_effect.create("visit_effect", dims="visit")
            sigma = priors.sigma.create("sigma")
            n_obs = pm.Data("patient_obs_count", counts, dims="patient")
            pm.CustomDist(
                "score",
                visit_effect[v_idx] + center_effect[obs_center],
                sigma,
                patient_sd,
                p_idx,
                n_obs,
                logp=_random_intercept_logp,
                random=_random_intercept_draw,
                observed=observed,
                dims="obs",
            )
            expected = pm.Deterministic("expected_score", visit_effect, dims="visit")
        else:
            patient_z = pm.Normal("patient_z", 0.0, 1.0, dims="patient")
            patient_effect = pm.Deterministic(
                "patient_effect", patient_sd * patient_z, dims="patient"
            )
            follow_up = priors.ordinal_visit_effect.create("follow_up_effect", dims="follow_up")
            visit_effect = pm.Deterministic(
                "visit_effect", pt.concatenate([pt.zeros(1), follow_up]), dims="visit"
            )
            eta = visit_effect[v_idx] + patient_effect[p_idx] + center_effect[obs_center]
            # Cutpoints induced by a Dirichlet on the score distribution of a typical patient at
            # baseline (eta = 0): cutpoint k = logit P(score <= k). Unlike iid normals with an
            # ordered transform, this prior's forward draws follow its density, so prior
            # predictive draws (and SBC) see the prior the sampler uses.
            baseline_probability = pm.Dirichlet(
                "baseline_category_probability",
                a=np.full(N_CATEGORIES, priors.baseline_category_concentration),
                dims="category",
            )
            below = pt.cumsum(baseline_probability)[:-1]
            # 1 - below, summed from the top so the upper cutpoints keep their precision
            above = pt.cumsum(baseline_probability[::-1])[::-1][1:]
            cutpoints = pm.Deterministic(
                "cutpoints", pt.log(below) - pt.log(above), dims="cutpoint"
            )
            pm.OrderedLogistic(
                "score",
                eta=eta,
                cutpoints=cutpoints,
                observed=observed,
                dims="obs",
                compute_p=False,
            )
            cdf = pm.math.invlogit(cutpoints[None, :] - visit_effect[:, None])  # P(Y <= k)
            upper = pt.concatenate([cdf, pt.ones((3, 1))], axis=1)
            lower = pt.concatenate([pt.zeros((3, 1)), cdf], axis=1)
            probs = pm.Deterministic(
                "category_probability", upper - lower, dims=("visit", "category")
            )
            expected = pm.Deterministic(
                "expected_score", (probs * np.arange(N_CATEGORIES)).sum(axis=1), dims="visit"
            )
        pm.Deterministic("severity_change_6m", expected[1] - expected[0])
        pm.Deterministic("severity_change_12m", expected[2] - expected[0])
    return model


def _random_intercept_logp(value, mu, sigma, patient_sd, patient, n_obs):
    """Log density of long-format scores with a Normal(0, patient_sd) patient intercept
    integrated out: each patient's n_i scores are jointly normal with covariance
    sigma^2 I + patient_sd^2 J (compound symmetry), whose inverse and determinant are closed
    form. Returned per observation (each patient's term split evenly over its scores) so that
    the sum is the exact joint log density."""
    resid = value - mu
    n = n_obs.astype("float64")
    s1 = pt.inc_subtensor(pt.zeros(n_obs.shape)[patient], resid)
    s2 = pt.inc_subtensor(pt.zeros(n_obs.shape)[patient], resid**2)
    var_e, var_p = sigma**2, patient_sd**2
    denom = var_e + n * var_p
    per_patient = -0.5 * (
        n * np.log(2 * np.pi)
        + (n - 1) * pt.log(var_e)
        + pt.log(denom)
        + (s2 - var_p * s1**2 / denom) / var_e
    )
    return per_patient[patient] / n[patient]


def _random_intercept_draw(mu, sigma, patient_sd, patient, n_obs, rng=None, size=None):
    """Scores simulated with a fresh patient intercept per patient (the model's predictive)."""
    intercept = rng.normal(0.0, patient_sd, size=len(n_obs))
    return mu + intercept[patient] + rng.normal(0.0, sigma, size=np.shape(mu))
