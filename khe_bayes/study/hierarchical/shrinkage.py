"""Tumour shrinkage at 12 months among KMP patients: combination vs sirolimus alone.

Model, for KMP patient i at center c(i)::

    shrinkage_i ~ Normal(intercept + combination_effect * combination_i
                         + severity_slope * (severity_0m_i - mean) + center_effect[c(i)], sigma)
    center_effect = center_sd * center_z   (non-centered)

``combination_effect`` is the difference in expected shrinkage (percentage points), combination
minus sirolimus alone, between KMP patients of the same baseline severity at the same center.

What it does NOT mean: combination therapy was not randomized. It went to the KMP patients with
the most severe symptoms (confounding by indication). Adjusting for the baseline severity score
removes only the part of that confounding the score captures; anything else that made
clinicians choose prednisolone (bleeding, platelet counts, tumour site) is not in the data, and
with 37 patients the estimate is imprecise. Read it as an adjusted association, not as the
causal effect of adding prednisolone.

Default priors (percentage-point scale): ``intercept ~ Normal(25, 25)``,
``combination_effect ~ Normal(0, 15)`` (sceptical: no effect expected, +/-30 points plausible),
``severity_slope ~ Normal(0, 10)``, ``center_sd ~ HalfNormal(10)``, ``sigma ~ HalfNormal(20)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
from pydantic import BaseModel, ConfigDict

from khe_bayes.study.hierarchical.common import (
    center_effects,
    center_index,
    likelihood_weights,
    numeric,
    observed_or_weighted,
)
from khe_bayes.toolkit.priors import Prior, prior


class ShrinkagePriors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: Prior = prior("Normal", mu=25.0, sigma=25.0)
    combination_effect: Prior = prior("Normal", mu=0.0, sigma=15.0)
    severity_slope: Prior = prior("Normal", mu=0.0, sigma=10.0)
    center_sd: Prior = prior("HalfNormal", sigma=10.0)
    sigma: Prior = prior("HalfNormal", sigma=20.0)


def build_shrinkage_model(
    ipd: pd.DataFrame, priors: ShrinkagePriors | None = None, keep: np.ndarray | None = None
) -> pm.Model:
    """``keep`` (a boolean per patient row of ``ipd``): only those patients enter the
    likelihood and the centering of the severity score, as if the others were dropped, with
    every shape kept (leave-one-center-out; see build_response_model)."""
    priors = priors or ShrinkagePriors()
    rows = (numeric(ipd["kmp"]) == 1) & ~np.isnan(numeric(ipd["shrinkage_12m"]))
    weight = likelihood_weights(ipd, keep)
    kmp = ipd[rows].reset_index(drop=True)
    weight = None if weight is None else weight[rows]
    if (len(kmp) if weight is None else weight.sum()) < 3:
        raise ValueError("need shrinkage for at least 3 KMP patients")
    center, centers = center_index(kmp)
    combination = (kmp["arm"] == "combination").to_numpy(dtype=float)
    severity = numeric(kmp["severity_0m"])
    mean_severity = severity.mean() if weight is None else np.average(severity, weights=weight)
    coords = {"center": centers, "patient": list(kmp["patient_id"].astype(str))}
    with pm.Model(coords=coords) as model:
        intercept = priors.intercept.create("intercept")
        effect = priors.combination_effect.create("combination_effect")
        slope = priors.severity_slope.create("severity_slope")
        center_effect = center_effects(priors.center_sd)
        sigma = priors.sigma.create("sigma")
        combination = pm.Data("combination", combination, dims="patient")
        severity_centered = pm.Data("severity_centered", severity - mean_severity, dims="patient")
        center = pm.Data("patient_center", center, dims="patient")
        mu = intercept + effect * combination + slope * severity_centered + center_effect[center]
        observed = pm.Data("shrinkage_observed", numeric(kmp["shrinkage_12m"]), dims="patient")
        in_likelihood = None if weight is None else pm.Data("in_likelihood", weight, dims="patient")
        observed_or_weighted(
            pm.Normal, "shrinkage", observed, in_likelihood, dims="patient", mu=mu, sigma=sigma
        )
    return model
