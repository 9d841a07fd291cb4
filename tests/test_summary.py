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
