"""Response at 6 and 12 months: logistic regression with a center random intercept.

Model, for patient i at center c(i) seen at visit v::

    logit P(response) = intercept[v] + kmp_effect * kmp_i + center_effect[c(i)]
                        + patient_effect[i]
    center_effect  = center_sd * center_z,   center_z ~ Normal(0, 1)    (non-centered)
    patient_effect = patient_sd * patient_z, patient_z ~ Normal(0, 1)   (non-centered)

Both visits are fitted jointly so they share the center effects (a center that does well at
6 months tends to at 12), with a visit-specific intercept. A patient is seen twice, so the two
responses of one patient are not independent: the patient effect carries that (a patient who did
not respond at 6 months is more likely not to at 12).

Estimands (Deterministics), population-averaged over the patient effect (integrated with
Gauss-Hermite quadrature, 21 nodes), so they are response probabilities of a random patient:

- ``response_rate`` [visit]: averaged over the cohort's own KMP mix, at a typical center
  (center effect 0);
- ``response_rate_by_kmp`` [visit, kmp_status]: the same for a KMP and a non-KMP patient;
- ``center_response_rate`` [visit, center]: averaged over the cohort's KMP mix at each center
  (shrunk towards the typical center by the partial pooling);
- ``center_sd``: the between-center SD of the log-odds; ``patient_sd`` the between-patient SD.

Default priors and why: with 50/52 and 51/52 responders the likelihood is nearly separated, so
flat priors would let the intercept run off to +infinity. ``intercept ~ Normal(1, 1.5)`` puts
95% of its mass on response probabilities 0.14-0.98 before data (weakly informative towards
response; the data pull it up); ``kmp_effect ~ Normal(0, 1)`` says a KMP odds ratio beyond
e^2 = 7.4 either way is unlikely; ``center_sd ~ HalfNormal(1)`` allows sizeable but not
absurd between-center variation on the log-odds scale; ``patient_sd ~ HalfNormal(1)`` the same
for patients (with 3 non-responses in 104 observations the data say little about it; the prior
keeps it from running off).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pydantic import BaseModel, ConfigDict

from khe_bayes.study.hierarchical.common import (
    KMP_STATUS,
    center_effects,
    center_index,
    long_format,
    numeric,
)
from khe_bayes.toolkit.priors import Prior, prior

VISITS = ("6m", "12m")


class ResponsePriors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: Prior = prior("Normal", mu=1.0, sigma=1.5)
    kmp_effect: Prior = prior("Normal", mu=0.0, sigma=1.0)
    center_sd: Prior = prior("HalfNormal", sigma=1.0)
    patient_sd: Prior = prior("HalfNormal", sigma=1.0)


# Gauss-Hermite nodes and weights for E[f(Z)], Z ~ Normal(0, 1)
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(21)
_GH_W = _GH_W / _GH_W.sum()


def _population_average(logit, patient_sd):
    """E over patient ~ Normal(0, patient_sd) of invlogit(logit + patient); last axis added."""
    nodes = patient_sd * _GH_X
    return (pm.math.invlogit(logit[..., None] + nodes) * _GH_W).sum(axis=-1)


def response_long(ipd: pd.DataFrame) -> pd.DataFrame:
    """One row per (patient, visit) with an observed response."""
    long = long_format(ipd, "response_", VISITS, "response")
    return long.astype({"response": int})


def build_response_model(ipd: pd.DataFrame, priors: ResponsePriors | None = None) -> pm.Model:
    priors = priors or ResponsePriors()
    center, centers = center_index(ipd)
    kmp = numeric(ipd["kmp"])
    long = response_long(ipd)
    coords = {
        "center": centers,
        "patient": list(ipd["patient_id"].astype(str)),
        "visit": list(VISITS),
        "kmp_status": list(KMP_STATUS),
        "obs": np.arange(len(long)),
    }
    with pm.Model(coords=coords) as model:
        intercept = priors.intercept.create("intercept", dims="visit")
        kmp_effect = priors.kmp_effect.create("kmp_effect")
        center_effect = center_effects(priors.center_sd)
        patient_sd = priors.patient_sd.create("patient_sd")
        patient_z = pm.Normal("patient_z", 0.0, 1.0, dims="patient")
        p_idx = pm.Data("obs_patient", long["patient"].to_numpy(), dims="obs")
        v_idx = pm.Data("obs_visit", long["visit"].to_numpy(), dims="obs")
        kmp_data = pm.Data("kmp", kmp, dims="patient")
        center_data = pm.Data("patient_center", center, dims="patient")
        logit_p = (
            intercept[v_idx]
            + kmp_effect * kmp_data[p_idx]
            + center_effect[center_data[p_idx]]
            + patient_sd * patient_z[p_idx]
        )
        observed = pm.Data("response_observed", long["response"].to_numpy(), dims="obs")
        pm.Bernoulli("response", logit_p=logit_p, observed=observed, dims="obs")

        status_logit = intercept[:, None] + kmp_effect * np.array([0.0, 1.0])[None, :]
        by_kmp = _population_average(status_logit, patient_sd)
        pm.Deterministic("response_rate_by_kmp", by_kmp, dims=("visit", "kmp_status"))
        share_kmp = kmp_data.mean()
        mix = pt.stack([1 - share_kmp, share_kmp])
        pm.Deterministic("response_rate", (by_kmp * mix).sum(axis=1), dims="visit")
        at_center = _population_average(
            status_logit[:, None, :] + center_effect[None, :, None], patient_sd
        )  # visit x center x status
        pm.Deterministic(
            "center_response_rate", (at_center * mix).sum(axis=2), dims=("visit", "center")
        )
    return model
