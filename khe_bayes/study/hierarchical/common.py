"""Shared pieces of the IPD models: coordinates and the non-centered center effect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm

from khe_bayes.toolkit.priors import Prior

KMP_STATUS = ("non_kmp", "kmp")


def center_index(ipd: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Integer codes of each patient's center and the sorted center labels."""
    labels = sorted(ipd["center"].astype(str).unique())
    codes = pd.Categorical(ipd["center"].astype(str), categories=labels).codes
    return np.asarray(codes, dtype=int), labels


def center_effects(center_sd_prior: Prior, scale: float = 1.0):
    """Non-centered center effects: ``center_effect = center_sd * center_z``, dim ``center``.

    ``scale`` multiplies the SD prior's draws (used when a model works on a different scale).
    """
    center_sd = center_sd_prior.create("center_sd")
    center_z = pm.Normal("center_z", 0.0, 1.0, dims="center")
    return pm.Deterministic("center_effect", scale * center_sd * center_z, dims="center")


def numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def long_format(
    ipd: pd.DataFrame, prefix: str, visits: tuple[str, ...], value: str
) -> pd.DataFrame:
    """One row per observed (patient, visit) of the columns ``{prefix}{visit}``; missing values
    (not followed up) are dropped. Columns: ``patient`` (row index), ``visit`` (index into
    ``visits``) and ``value``."""
    rows = []
    for v, visit in enumerate(visits):
        y = numeric(ipd[f"{prefix}{visit}"])
        seen = ~np.isnan(y)
        rows.append(pd.DataFrame({"patient": np.flatnonzero(seen), "visit": v, value: y[seen]}))
    return pd.concat(rows, ignore_index=True)


def observed_or_weighted(cls, name: str, observed, weight=None, dims=None, **params) -> None:
    """The likelihood of ``observed`` under ``cls(**params)`` (a PyMC distribution class): the
    observed variable ``name``, or with ``weight`` (a 0/1 ``pm.Data`` per observation) the
    potential ``{name}_loglik`` = sum of weight x log density. Weight 0 leaves an observation
    out of the likelihood while every shape stays, so the leave-one-center-out refits share one
    compiled model (sensitivity.py); such a model has no observed variable, hence no posterior
    predictive, which those refits do not use."""
    if weight is None:
        cls(name, **params, observed=observed, dims=dims)
    else:
        pm.Potential(f"{name}_loglik", (weight * pm.logp(cls.dist(**params), observed)).sum())


def likelihood_weights(ipd: pd.DataFrame, keep: np.ndarray | None) -> np.ndarray | None:
    """``keep`` (one boolean per row of ``ipd``: in the likelihood or not) as floats."""
    if keep is None:
        return None
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(ipd),):
        raise ValueError(f"keep has {keep.shape} entries for {len(ipd)} patients")
    return keep.astype(float)
