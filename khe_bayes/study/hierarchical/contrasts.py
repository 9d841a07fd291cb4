"""KMP vs non-KMP contrasts: age at treatment and tumour shrinkage.

Model, for patient i in KMP group g(i) at center c(i)::

    age_i       ~ Normal(age_mean[g], age_sd[g])                 (unequal variances)
    shrinkage_i ~ Normal(shrinkage_mean[g] + center_effect[c(i)], shrinkage_sd)
    center_effect = center_sd * center_z                          (non-centered)

Estimands (non-KMP minus KMP): ``age_difference_months`` = age_mean[non_kmp] - age_mean[kmp];
``shrinkage_difference`` = shrinkage_mean[non_kmp] - shrinkage_mean[kmp] (percentage points,
same center). The response-rate difference comes from the response model
(``response_rate_by_kmp``).

Default priors: ``age_mean ~ Normal(24, 36)`` months, ``age_sd ~ HalfNormal(36)``,
``shrinkage_mean ~ Normal(25, 25)``, ``shrinkage_sd ~ HalfNormal(20)``,
``center_sd ~ HalfNormal(10)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
from pydantic import BaseModel, ConfigDict

from khe_bayes.study.hierarchical.common import KMP_STATUS, center_effects, center_index, numeric
from khe_bayes.toolkit.priors import Prior, prior


class ContrastPriors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    age_mean: Prior = prior("Normal", mu=24.0, sigma=36.0)
    age_sd: Prior = prior("HalfNormal", sigma=36.0)
    shrinkage_mean: Prior = prior("Normal", mu=25.0, sigma=25.0)
    shrinkage_sd: Prior = prior("HalfNormal", sigma=20.0)
    center_sd: Prior = prior("HalfNormal", sigma=10.0)


def build_contrast_model(ipd: pd.DataFrame, priors: ContrastPriors | None = None) -> pm.Model:
    priors = priors or ContrastPriors()
    center, centers = center_index(ipd)
    group = numeric(ipd["kmp"]).astype(int)  # 0 = non_kmp, 1 = kmp
    shrink = numeric(ipd["shrinkage_12m"])
    seen = ~np.isnan(shrink)
    coords = {
        "center": centers,
        "patient": list(ipd["patient_id"].astype(str)),
        "kmp_status": list(KMP_STATUS),
        "shrinkage_obs": list(ipd["patient_id"].astype(str)[seen]),
    }
    with pm.Model(coords=coords) as model:
        group_all = pm.Data("patient_group", group, dims="patient")
        group_seen = pm.Data("shrinkage_group", group[seen], dims="shrinkage_obs")
        center_seen = pm.Data("shrinkage_center", center[seen], dims="shrinkage_obs")
        age_mean = priors.age_mean.create("age_mean", dims="kmp_status")
        age_sd = priors.age_sd.create("age_sd", dims="kmp_status")
        pm.Normal(
            "age",
            age_mean[group_all],
            age_sd[group_all],
            observed=pm.Data("age_observed", numeric(ipd["age_months"]), dims="patient"),
            dims="patient",
        )
        s_mean = priors.shrinkage_mean.create("shrinkage_mean", dims="kmp_status")
        s_sd = priors.shrinkage_sd.create("shrinkage_sd")
        center_effect = center_effects(priors.center_sd)
        pm.Normal(
            "shrinkage",
            s_mean[group_seen] + center_effect[center_seen],
            s_sd,
            observed=pm.Data("shrinkage_observed", shrink[seen], dims="shrinkage_obs"),
            dims="shrinkage_obs",
        )
        pm.Deterministic("age_difference_months", age_mean[0] - age_mean[1])
        pm.Deterministic("shrinkage_difference", s_mean[0] - s_mean[1])
    return model
