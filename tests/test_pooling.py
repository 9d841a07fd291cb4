"""Pooling over reconstructions: exact variance decomposition on hand-built posteriors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from khe_bayes.toolkit.pooling import PooledFit, pool, reconstruction_variance_share


def posterior(values: np.ndarray) -> xr.DataTree:
    """values: (chain, draw) draws of a scalar ``theta`` and (chain, draw, 2) of ``rate``."""
    rate = np.stack([values, 2 * values], axis=-1)
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {"theta": (("chain", "draw"), values), "rate": (("chain", "draw", "visit"), rate)},
                coords={"visit": ["6m", "12m"]},
            ),
            "sample_stats": xr.Dataset(
                {"diverging": (("chain", "draw"), np.zeros_like(values, bool))}
            ),
        }
    )


A = np.array([[0.0, 2.0], [1.0, 3.0]])  # mean 1.5, population variance 1.25
B = np.array([[4.0, 6.0], [5.0, 7.0]])  # mean 5.5, variance 1.25


def test_pool_tags_chains_with_their_dataset():
    pooled = pool([posterior(A), posterior(B)])
    assert pooled.posterior.sizes["chain"] == 4
    assert list(pooled.posterior["dataset"].values) == [0, 0, 1, 1]
    assert float(pooled.posterior["theta"].mean()) == 3.5


def test_law_of_total_variance_exact():
    fit = PooledFit(
        name="x",
        idata=pool([posterior(A), posterior(B)]),
        per_dataset=[posterior(A), posterior(B)],
        var_names=["theta", "rate"],
    )
    table = reconstruction_variance_share(fit).set_index("quantity")
    # Rubin: within = mean(1.25, 1.25); between = var(1.5, 5.5; ddof=1) = 8;
    # total = 1.25 + (1 + 1/2) * 8 = 13.25 (the plain pooled draws' variance is only 5.25)
    assert table.loc["theta", "within_variance"] == pytest.approx(1.25)
    assert table.loc["theta", "between_variance"] == pytest.approx(8.0)
    assert table.loc["theta", "total_variance"] == pytest.approx(13.25)
    assert table.loc["theta", "reconstruction_share"] == pytest.approx(12.0 / 13.25)
    assert table.loc["theta", "mcse_pooled_mean"] == pytest.approx(2.0)  # sqrt(8 / 2)
    pooled_var = np.concatenate([A.ravel(), B.ravel()]).var()
    assert pooled_var == pytest.approx(5.25)
    # rate[12m] = 2 theta: every variance scales by 4, the share does not
    assert table.loc["rate[12m]", "between_variance"] == pytest.approx(32.0)
    assert table.loc["rate[12m]", "reconstruction_share"] == pytest.approx(12.0 / 13.25)


def test_single_dataset_has_no_reconstruction_share():
    fit = PooledFit("x", pool([posterior(A)]), [posterior(A)], ["theta"])
    assert reconstruction_variance_share(fit)["reconstruction_share"].iloc[0] == 0.0


def test_reconstruction_fits_on_dask_match_in_process_and_resume_from_the_store(tmp_path):
    """Two reconstructed datasets through the shrinkage model, in this process and as tasks on 2
    Dask workers: identical pooled draws and replicated data (seeds come from the model name
    and the dataset index, not from where a fit ran). A rerun on the same store reads both fits
    back from their netCDF files and fits nothing."""
    from khe_bayes.study.evidence import load_evidence
    from khe_bayes.study.hierarchical import build_shrinkage_model
    from khe_bayes.study.reconstruct import reconstruct_datasets
    from khe_bayes.toolkit.pooling import fit_pooled
    from khe_bayes.toolkit.sampling import SamplerSettings
    from khe_bayes.toolkit.sweep import SweepOptions

    datasets = reconstruct_datasets(load_evidence(), 2, seed=21)
    settings = SamplerSettings(
        draws=100, tune=100, chains=2, seed=4, backend="nutpie", progressbar=False
    )
    args = ("shrinkage", build_shrinkage_model, datasets, settings, ["combination_effect"])
    local = fit_pooled(*args)
    store = tmp_path / "store"
    on_dask = fit_pooled(*args, options=SweepOptions(workers=2, store=store))
    for group in ("posterior", "sample_stats", "posterior_predictive"):
        # equal values and coords; attrs differ only by creation times
        xr.testing.assert_equal(on_dask.idata[group], local.idata[group])
    assert len(list(store.glob("*.nc"))) == 2
    messages: list[str] = []
    again = fit_pooled(
        *args, options=SweepOptions(workers=2, store=store), progress=messages.append
    )
    assert messages == [f"2 of 2 tasks already done in {store}; 0 to run"]
    for group in ("posterior", "sample_stats", "posterior_predictive"):
        xr.testing.assert_equal(again.idata[group], local.idata[group])
    assert not np.array_equal(  # the two datasets' fits differ
        local.per_dataset[0].posterior["combination_effect"].values,
        local.per_dataset[1].posterior["combination_effect"].values,
    )


def test_dataset_tasks_fingerprint_the_model_so_other_priors_are_not_served_from_a_store():
    from functools import partial

    from khe_bayes.study.evidence import load_evidence
    from khe_bayes.study.hierarchical import build_response_model
    from khe_bayes.study.hierarchical.response import ResponsePriors
    from khe_bayes.study.reconstruct import reconstruct_datasets
    from khe_bayes.toolkit.pooling import dataset_tasks
    from khe_bayes.toolkit.priors import prior
    from khe_bayes.toolkit.sampling import SamplerSettings

    datasets = reconstruct_datasets(load_evidence(), 2, seed=21)
    settings = SamplerSettings(draws=100, tune=100, chains=2, backend="nutpie")
    wider = ResponsePriors(kmp_effect=prior("Normal", mu=0.0, sigma=2.0))

    def keys(build):
        tasks = dataset_tasks("response", build, datasets, settings, ["response_rate"])
        return [(t.key, t.fingerprint) for t in tasks]

    default = keys(build_response_model)
    assert keys(partial(build_response_model, priors=ResponsePriors())) == default
    other = keys(partial(build_response_model, priors=wider))
    assert [k for k, _ in other] == [k for k, _ in default]  # same task names ...
    assert all(a != b for (_, a), (_, b) in zip(other, default, strict=True))  # ... not served


def _normal_mean_model(data):
    import pymc as pm

    with pm.Model(coords={"patient": np.arange(len(data))}) as model:
        y = pm.Data("y", data["y"].to_numpy(), dims="patient")
        mu = pm.Normal("mu", 0.0, 10.0)
        pm.Normal("obs", mu, 1.0, observed=y, dims="patient")
    return model


@pytest.mark.parametrize("passes", [True, False])
def test_quick_warmup_is_kept_only_when_it_passes_the_convergence_rules(passes):
    """fit_dataset tries the quick warm-up first and refits with the full one only when the
    quick fit fails the rules. A rule every fit passes (no ESS floor) keeps the quick fit; one
    no fit can pass (ESS of 1e9 per chain) forces the refit. Which warm-up a kept fit had is
    read from the sampler settings stamped on it (its own record, not the attrs under test),
    and the stamped reason must agree."""
    import json

    import pandas as pd

    from khe_bayes.toolkit.pooling import fit_dataset
    from khe_bayes.toolkit.sampling import SamplerSettings
    from khe_bayes.toolkit.summary import ConvergenceRules

    data = pd.DataFrame({"y": np.random.default_rng(3).normal(1.0, 1.0, 20)})
    settings = SamplerSettings(draws=100, tune=150, chains=2, seed=4, progressbar=False)
    rules = ConvergenceRules(
        rhat_max=np.inf if passes else 1.01,
        ess_per_chain_min=0.0 if passes else 1e9,
        divergences_max=10**6,
    )
    fitted = fit_dataset(
        "quick_warmup_test",
        _normal_mean_model,
        data,
        0,
        settings,
        ["mu"],
        posterior_predictive=False,
        quick_tune=20,
        rules=rules,
    )
    tune = json.loads(fitted.posterior.attrs["sampler_settings"])["tune"]
    reason = fitted.sample_stats.attrs["warmup"]
    if passes:
        assert tune == 20
        assert reason == "quick: 20 steps, passed"
    else:
        assert tune == 150
        assert reason.startswith("full: 150 steps after 20 failed (")
        assert "min bulk ESS" in reason
    # without quick_tune the full warm-up is used directly
    direct = fit_dataset(
        "quick_warmup_test", _normal_mean_model, data, 0, settings, ["mu"], False, None, False
    )
    assert json.loads(direct.posterior.attrs["sampler_settings"])["tune"] == 150
    assert direct.sample_stats.attrs["warmup"] == "full: 150 steps"


def test_thinned_draws_spread_evenly_over_each_chain():
    from khe_bayes.toolkit.sampling import thinned_draws

    keep = thinned_draws(1250, 4, 400)
    assert len(keep) == 100 and keep[0] == 0 and keep[-1] == 1249
    assert np.ptp(np.diff(keep)) <= 1  # evenly spaced, up to rounding
    assert list(thinned_draws(50, 4, 400)) == list(range(50))  # fewer draws than asked: all
    assert len(thinned_draws(1000, 3, 400)) == 134  # ceil(400 / 3) per chain


def test_thinned_predictive_replicates_the_posterior_draw_with_its_label():
    """The kept fit's posterior predictive is computed at thinned draws that keep their draw
    labels. One observation y ~ Normal(mu, 1) under mu ~ Normal(0, 10): mu's posterior SD is
    about 1, and a replication minus mu at the *same* (chain, draw) is N(0, 1) noise, so over
    200 replications its variance lies in [0.67, 1.33] (chi-square, 200 df, about 3.3 SD);
    paired with mu at a neighbouring kept draw (nearly independent after thinning) the
    variance is about 1 + 2 var(mu) = 3."""
    import pandas as pd

    from khe_bayes.toolkit.pooling import fit_dataset
    from khe_bayes.toolkit.sampling import SamplerSettings

    data = pd.DataFrame({"y": [0.3]})
    settings = SamplerSettings(draws=1000, tune=300, chains=2, seed=5, progressbar=False)
    fitted = fit_dataset(
        "thinned_predictive_test",
        _normal_mean_model,
        data,
        0,
        settings,
        ["mu"],
        predictive_draws=200,
    )
    pp = fitted.posterior_predictive["obs"].isel(patient=0)
    assert pp.sizes["chain"] == 2 and pp.sizes["draw"] == 100
    mu = fitted.posterior["mu"].sel(draw=pp["draw"].values)
    aligned = (pp.values - mu.values).var()
    shifted = (pp.values[:, 1:] - mu.values[:, :-1]).var()
    assert 0.67 <= aligned <= 1.33
    assert shifted > 2.0
