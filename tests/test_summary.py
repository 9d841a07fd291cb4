"""Summary and threshold functions on small stored posteriors with exact numbers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from khe_bayes.toolkit.summary import (
    Threshold,
    diagnostics,
    select_draws,
    summarize,
    threshold_probabilities,
)


def tiny_idata(values: np.ndarray, diverging: np.ndarray | None = None) -> xr.DataTree:
    """values: (chain, draw, outcome) with outcomes a and b."""
    post = xr.Dataset(
        {"rate": (("chain", "draw", "outcome"), values)},
        coords={
            "chain": range(values.shape[0]),
            "draw": range(values.shape[1]),
            "outcome": ["a", "b"],
        },
    )
    groups = {"posterior": post}
    if diverging is not None:
        groups["sample_stats"] = xr.Dataset({"diverging": (("chain", "draw"), diverging)})
    return xr.DataTree.from_dict(groups)


def test_threshold_probability_is_the_exact_fraction_of_draws():
    rng = np.random.default_rng(0)
    values = rng.uniform(size=(2, 500, 2))
    idata = tiny_idata(values)
    table = threshold_probabilities(
        idata,
        [
            Threshold(quantity="rate[a]", direction=">", value=0.9, label="a high"),
            Threshold(quantity="rate[b]", direction="<", value=0.25, label="b low"),
        ],
    )
    assert table.loc[0, "probability"] == (values[:, :, 0] > 0.9).mean()
    assert table.loc[1, "probability"] == (values[:, :, 1] < 0.25).mean()
    assert table.loc[0, "statement"] == "P(rate[a] > 0.9)"
    # independent draws: MCSE close to the binomial SE sqrt(p(1-p)/N)
    p = table.loc[0, "probability"]
    assert table.loc[0, "mcse"] == pytest.approx(np.sqrt(p * (1 - p) / 1000), rel=0.25)


def test_select_draws_flattens_chain_and_draw():
    values = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    idata = tiny_idata(values)
    np.testing.assert_array_equal(select_draws(idata, "rate[b]"), [1, 3, 5, 7, 9, 11])
    with pytest.raises(KeyError):
        select_draws(idata, "rate")


def test_summary_flags_disagreeing_chains_and_divergences():
    rng = np.random.default_rng(1)
    good = rng.normal(size=(4, 500, 2))
    table = summarize(tiny_idata(good), descriptions={"rate": "A rate"})
    assert list(table.index) == ["rate[a]", "rate[b]"]
    assert table.loc["rate[a]", "description"] == "A rate (a)"
    assert (table["flag"] == "").all()
    assert table.loc["rate[a]", "mean"] == pytest.approx(good[:, :, 0].mean())

    bad = good.copy()
    bad[0] += 3.0  # one chain elsewhere: R-hat far above 1.01
    diverging = np.zeros((4, 500), dtype=bool)
    diverging[1, :3] = True
    idata = tiny_idata(bad, diverging)
    table = summarize(idata)
    assert "r_hat>1.01" in table.loc["rate[a]", "flag"]
    assert "divergences=3" in table.loc["rate[b]", "flag"]
    d = diagnostics(idata)
    assert d["divergences"] == 3 and not d["ok"]
    assert "R-hat" in d["problems"] and "divergent" in d["problems"]
    assert diagnostics(tiny_idata(good))["ok"]


def test_low_ess_is_flagged():
    # a strongly autocorrelated random walk: ESS far below 100 per chain
    rng = np.random.default_rng(2)
    walk = np.cumsum(rng.normal(size=(4, 500, 2)), axis=1)
    table = summarize(tiny_idata(walk))
    assert "ess_bulk<400" in table.loc["rate[a]", "flag"]


def _shortest_interval(x: np.ndarray, prob: float) -> tuple[float, float]:
    """Brute force: the narrowest window of sorted draws holding ceil(prob * n) of them."""
    x = np.sort(x)
    k = int(np.ceil(prob * x.size))
    widths = x[k - 1 :] - x[: x.size - k + 1]
    i = int(np.argmin(widths))
    return x[i], x[i + k - 1]


def test_posterior_stats_against_numpy_and_a_brute_force_hdi():
    """Mean, SD, median, 2.5%/97.5% quantiles and the 95% HDI of skewed draws (gamma, so the HDI
    and the equal-tailed interval differ by much more than any interpolation convention). The
    mean and median are exact; sample-quantile conventions differ by at most one gap between
    neighbouring draws (~0.05 here), so the intervals are checked to 0.1; the SD to the ddof
    convention (rel 1e-3 at 2000 draws)."""
    from khe_bayes.toolkit.summary import posterior_stats

    rng = np.random.default_rng(3)
    values = np.stack([rng.gamma(2.0, 1.0, size=(2, 1000)), rng.normal(size=(2, 1000))], axis=-1)
    table = posterior_stats(tiny_idata(values))
    a = values[:, :, 0].ravel()
    row = table.loc["rate[a]"]
    assert row["mean"] == pytest.approx(a.mean(), rel=1e-12)
    assert row["median"] == pytest.approx(np.median(a), rel=1e-12)
    assert row["sd"] == pytest.approx(a.std(ddof=1), rel=1e-3)
    lo, hi = np.quantile(a, [0.025, 0.975])
    assert (row["eti95_lb"], row["eti95_ub"]) == pytest.approx((lo, hi), abs=0.1)
    hlo, hhi = _shortest_interval(a, 0.95)
    assert (row["hdi95_lb"], row["hdi95_ub"]) == pytest.approx((hlo, hhi), abs=0.1)
    assert hhi < hi - 0.3  # the skewed draws' HDI lies left of the equal-tailed interval
    b = values[:, :, 1].ravel()
    assert table.loc["rate[b]", "mean"] == pytest.approx(b.mean(), rel=1e-12)


def test_threshold_mcse_uses_the_autocorrelation():
    """Strongly autocorrelated indicator draws: the MCSE must exceed the iid binomial SE (it uses
    the ESS of the indicators, which is far below the number of draws)."""
    rng = np.random.default_rng(4)
    walk = np.cumsum(rng.normal(scale=0.1, size=(2, 1000, 2)), axis=1)
    table = threshold_probabilities(
        tiny_idata(walk), [Threshold(quantity="rate[a]", direction=">", value=0.0, label="a")]
    )
    p = table.loc[0, "probability"]
    assert 0.05 < p < 0.95
    assert table.loc[0, "mcse"] > 3 * np.sqrt(p * (1 - p) / 2000)
