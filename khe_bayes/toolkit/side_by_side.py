"""Reported (frequentist) and Bayesian estimates of the same quantity, side by side."""

from __future__ import annotations

from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from khe_bayes.toolkit.freq import proportion_wilson
from khe_bayes.toolkit.summary import CI_PROB, select_draws


@dataclass(frozen=True)
class Pairing:
    """A posterior quantity and what the paper reported for it, on the same scale.

    ``scale`` multiplies the posterior draws (100 turns a probability into a percentage);
    ``threshold`` is a clinically meaningful value for P(quantity > threshold).
    """

    label: str
    quantity: str
    reported_estimate: float | None
    reported_lower: float | None = None
    reported_upper: float | None = None
    reported_note: str = ""
    scale: float = 1.0
    threshold: float | None = None


def wilson_percent(events: int, n: int) -> tuple[float, float]:
    """The Wilson 95% interval of a count, in percent (what the paper would have printed)."""
    result = proportion_wilson(events, n)
    return result.lower, result.upper


def side_by_side(idata: xr.DataTree, pairings: list[Pairing]) -> pd.DataFrame:
    """One row per pairing: reported estimate and CI, posterior mean and 95% HDI,
    P(quantity > 0) and P(quantity > threshold)."""
    rows = []
    for p in pairings:
        draws = select_draws(idata, p.quantity) * p.scale
        lo, hi = az.hdi(draws, prob=CI_PROB)
        rows.append(
            {
                "quantity": p.label,
                "reported_estimate": p.reported_estimate,
                "reported_lower": p.reported_lower,
                "reported_upper": p.reported_upper,
                "reported_note": p.reported_note,
                "posterior_mean": float(draws.mean()),
                "hdi95_lb": float(lo),
                "hdi95_ub": float(hi),
                "p_gt_0": float(np.mean(draws > 0)),
                "threshold": p.threshold,
                "p_gt_threshold": (
                    float(np.mean(draws > p.threshold)) if p.threshold is not None else np.nan
                ),
            }
        )
    return pd.DataFrame(rows)
