"""pooled_summary and Rubin pooling on hand-built per-dataset posteriors (no sampling).

The per-dataset draws are fixed arrays, so every expected number is computed here directly
from them (numpy for means and variances, ArviZ's own R-hat/ESS for each dataset alone): the
tests check how pooling combines the datasets, not ArviZ.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr

from khe_bayes.toolkit.pooling import PooledFit, pool, pooled_summary, reconstruction_variance_share


def posterior(values: np.ndarray, divergent: int = 0) -> xr.DataTree:
    """values: (chain, draw) draws of a scalar ``theta``."""
    diverging = np.zeros(values.shape, bool)
    diverging.flat[:divergent] = True
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {"theta": (("chain", "draw"), values)},
                coords={"chain": np.arange(values.shape[0]), "draw": np.arange(values.shape[1])},
            ),
            "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), diverging)}),
        }
    )


def fitted(parts: list[xr.DataTree]) -> PooledFit:
    return PooledFit("x", pool(parts), parts, ["theta"])


RNG = np.random.default_rng(20)
GOOD = [RNG.normal(loc, 1.0, size=(2, 400)) for loc in (0.0, 0.5, 1.5)]  # iid: converged


def _rhat(values: np.ndarray) -> float:
    return float(az.rhat(posterior(values))["theta"])


def test_pooled_mean_and_worst_rhat():
    table = pooled_summary(fitted([posterior(v) for v in GOOD]))
    row = table.loc["theta"]
    means = [v.mean() for v in GOOD]
    # equal draws per dataset: the pooled mean is the mean of the per-dataset means
    assert row["mean"] == pytest.approx(np.mean(means), rel=1e-12)
    assert row["r_hat"] == pytest.approx(max(_rhat(v) for v in GOOD), rel=1e-12)
    assert row["flag"] == ""


def test_one_bad_dataset_is_flagged_and_sets_the_worst_rhat():
    bad = GOOD[1].copy()
    bad[0] += 4.0  # its two chains disagree: R-hat far above 1.01 in that dataset only
    parts = [posterior(GOOD[0]), posterior(bad, divergent=2), posterior(GOOD[2])]
    row = pooled_summary(fitted(parts)).loc["theta"]
    assert _rhat(bad) > 1.1 and row["r_hat"] == pytest.approx(_rhat(bad), rel=1e-12)
    assert "r_hat>1.01" in row["flag"]
    assert "divergences=2" in row["flag"]


def test_low_ess_in_one_dataset_is_flagged_even_if_the_total_is_large():
    walk = np.cumsum(RNG.normal(size=(2, 400)), axis=1)  # ESS far below 100 per chain
    parts = [posterior(GOOD[0]), posterior(walk), posterior(GOOD[2])]
    per = [float(az.ess(p, method="bulk")["theta"]) for p in parts]
    assert min(per) < 200 < sum(per)
    row = pooled_summary(fitted(parts)).loc["theta"]
    assert "ess_bulk<200 in a dataset" in row["flag"]
    # whichever way the datasets' ESS are combined (sum today, smallest per dataset with
    # Rubin pooling), it lies between the smallest and the sum
    assert min(per) - 1e-6 <= row["ess_bulk"] <= sum(per) + 1e-6


# --- Rubin's rules ---------------------------------------------------------------------

# Three datasets whose draws have exactly known means and variances.
BASE = np.array([[-1.0, 1.0, -2.0, 2.0], [0.5, -0.5, 1.5, -1.5]])  # mean 0, variance 1.875
MEANS = np.array([1.0, 2.0, 6.0])
SCALES = np.array([1.0, 2.0, 1.0])


def test_rubin_total_variance_share_and_mcse():
    """Rubin (1987): W = mean within-dataset variance; B = variance of the dataset means with
    ddof = 1; T = W + (1 + 1/M) B. The reported SD is sqrt(T), the reconstruction's share
    (1 + 1/M) B / T, and the pooled mean's Monte Carlo SE includes the between-dataset error
    sqrt(B / M). Exact numbers: a wrong ddof or a dropped (1 + 1/M) changes them by >= 10%."""
    parts = [posterior(mu + s * BASE) for mu, s in zip(MEANS, SCALES, strict=True)]
    fit = fitted(parts)
    m = len(parts)
    within = np.mean([(s * BASE).var() for s in SCALES])  # (1.875 + 7.5 + 1.875) / 3 = 3.75
    between = MEANS.var(ddof=1)  # 7
    total = within + (1 + 1 / m) * between
    share = reconstruction_variance_share(fit).set_index("quantity").loc["theta"]
    assert share["within_variance"] == pytest.approx(within, rel=1e-12)
    assert share["between_variance"] == pytest.approx(between, rel=1e-12)
    assert share["reconstruction_share"] == pytest.approx((1 + 1 / m) * between / total, rel=1e-9)
    row = pooled_summary(fit).loc["theta"]
    assert row["mean"] == pytest.approx(MEANS.mean(), rel=1e-12)
    assert row["sd"] == pytest.approx(np.sqrt(total), rel=1e-6)
    assert row["mcse_mean"] >= np.sqrt(between / m) * (1 - 1e-9)
