"""The vectorized R-hat and ESS (toolkit/convergence.py) against arviz-stats, scalar by scalar:
the same estimators, so the same numbers up to floating-point summation order (1e-9)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr

from khe_bayes.toolkit.convergence import ess_bulk, ess_tail, rhat, stack_scalars


def _ar1(rng, phi: float, chains: int, draws: int, shift: float = 0.0) -> np.ndarray:
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains)
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=chains)
    return x + shift * np.arange(chains)[:, None]


def _cases(chains: int, draws: int) -> np.ndarray:
    """Scalars that exercise every branch: independent draws, strong and negative
    autocorrelation (long and short Geyer sequences), a chain offset (R-hat >> 1), heavy
    tails, ties (a discrete quantity), a constant, and a nearly stuck chain."""
    rng = np.random.default_rng(11)
    cases = [
        rng.normal(size=(chains, draws)),
        _ar1(rng, 0.95, chains, draws),
        _ar1(rng, 0.6, chains, draws),
        _ar1(rng, -0.7, chains, draws),
        _ar1(rng, 0.3, chains, draws, shift=0.5),
        rng.standard_cauchy(size=(chains, draws)),
        rng.poisson(2.0, size=(chains, draws)).astype(float),
        np.full((chains, draws), 3.0),
        np.where(np.arange(draws) < draws - 5, 1.0, rng.normal(size=(chains, draws))),
    ]
    return np.stack(cases)


@pytest.mark.parametrize(("chains", "draws"), [(2, 500), (4, 1250), (3, 101), (2, 8)])
def test_vectorized_diagnostics_equal_arviz_stats(chains, draws):
    x = _cases(chains, draws)
    da = xr.DataArray(x, dims=("scalar", "chain", "draw")).transpose("chain", "draw", "scalar")
    ds = xr.Dataset({"x": da})
    expected = {
        "rhat": az.rhat(ds)["x"].values,
        "bulk": az.ess(ds, method="bulk")["x"].values,
        "tail": az.ess(ds, method="tail")["x"].values,
    }
    got = {"rhat": rhat(x), "bulk": ess_bulk(x), "tail": ess_tail(x)}
    for key in expected:
        finite = np.isfinite(expected[key])
        assert np.array_equal(finite, np.isfinite(got[key])), key
        np.testing.assert_allclose(got[key][finite], expected[key][finite], rtol=1e-9, err_msg=key)


def test_stack_scalars_keeps_every_element_in_order():
    a = np.arange(2 * 3).reshape(2, 3)  # (chain, draw) scalar
    b = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)  # (chain, draw, 2, 2)
    stacked = stack_scalars([a, b, np.empty((2, 3, 0))])
    assert stacked.shape == (5, 2, 3)
    np.testing.assert_array_equal(stacked[0], a)
    np.testing.assert_array_equal(stacked[1 + 2 * 1 + 0], b[:, :, 1, 0])


def test_diagnostics_of_a_fit_equal_arviz_over_every_posterior_scalar():
    """summary.diagnostics (vectorized) against ArviZ applied variable by variable, on a
    posterior with scalar, vector and matrix variables."""
    from khe_bayes.toolkit.datatree import tree
    from khe_bayes.toolkit.summary import diagnostics

    rng = np.random.default_rng(2)
    posterior = xr.Dataset(
        {
            "a": (("chain", "draw"), _ar1(rng, 0.8, 4, 300)),
            "b": (("chain", "draw", "visit"), rng.normal(size=(4, 300, 2))),
            "c": (("chain", "draw", "visit", "center"), rng.gamma(2.0, size=(4, 300, 2, 3))),
        }
    )
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, 300), bool))})
    got = diagnostics(tree({"posterior": posterior, "sample_stats": stats}))
    ref_rhat = max(float(az.rhat(posterior)[v].max()) for v in posterior.data_vars)
    ref_bulk = min(float(az.ess(posterior, method="bulk")[v].min()) for v in posterior.data_vars)
    ref_tail = min(float(az.ess(posterior, method="tail")[v].min()) for v in posterior.data_vars)
    assert got["max_r_hat"] == pytest.approx(ref_rhat, rel=1e-9)
    assert got["min_ess_bulk"] == pytest.approx(ref_bulk, rel=1e-9)
    assert got["min_ess_tail"] == pytest.approx(ref_tail, rel=1e-9)
