"""replicate_ipd (the patient-level posterior-predictive replications) on stand-in posterior
predictive draws, no sampling.

If every posterior-predictive draw equals the observed data, each replicated dataset must be
the observed dataset, so the paper's statistics re-computed on it must equal those re-computed
on the data (computed here by statistics.recompute on the data itself, an independent path:
no model, no placement of draws). Any misplaced value (a visit swapped, a patient shifted, a
missing follow-up filled, another dataset's draws used) changes at least one statistic.
Deterministic: tolerance is floating point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import SMALL_IPD

from khe_bayes.study.hierarchical.response import response_long
from khe_bayes.study.hierarchical.severity import severity_long
from khe_bayes.study.ipd_analysis import IPDResult, replicate_ipd
from khe_bayes.study.statistics import recompute
from khe_bayes.toolkit.pooling import PooledFit

N_DRAWS = 4


def _pp(datasets: list[pd.DataFrame], name: str, observed) -> xr.DataTree:
    """Posterior predictive of ``name``: one chain per dataset, every draw = observed(data)."""
    arrays = [np.tile(np.asarray(observed(d), float), (1, N_DRAWS, 1)) for d in datasets]
    width = max(a.shape[-1] for a in arrays)
    assert all(a.shape[-1] == width for a in arrays)
    values = np.concatenate(arrays, axis=0)
    ds = xr.Dataset(
        {name: (("chain", "draw", f"{name}_obs"), values)},
        coords={"chain": np.arange(len(datasets)), "dataset": ("chain", range(len(datasets)))},
    )
    return xr.DataTree.from_dict({"posterior_predictive": ds})


def _merge(*trees: xr.DataTree) -> xr.DataTree:
    return xr.DataTree.from_dict(
        {"posterior_predictive": xr.merge([t["posterior_predictive"].to_dataset() for t in trees])}
    )


def _result(datasets: list[pd.DataFrame]) -> IPDResult:
    seen = lambda d: d["shrinkage_12m"].dropna()  # noqa: E731
    fits = {
        "response": _pp(datasets, "response", lambda d: response_long(d)["response"]),
        "severity_ordinal": _pp(datasets, "score", lambda d: severity_long(d)["score"]),
        "kmp_contrasts": _merge(
            _pp(datasets, "age", lambda d: d["age_months"]), _pp(datasets, "shrinkage", seen)
        ),
    }
    return IPDResult(
        source="test",
        datasets=datasets,
        fits={name: PooledFit(name, idata) for name, idata in fits.items()},
    )


def _other(data: pd.DataFrame) -> pd.DataFrame:
    """A second dataset of the same shape whose every statistic differs from the first's."""
    out = data.copy()
    out["age_months"] = out["age_months"] * 1.5
    out["shrinkage_12m"] = out["shrinkage_12m"] + 7.0 * out["kmp"]
    out["severity_6m"] = out["severity_6m"].where(out.index != 6, 5)
    out["severity_12m"] = out["severity_12m"].where(out.index != 8, 4)
    out["response_6m"] = out["response_6m"].where(out.index != 8, 1)
    out["response_12m"] = out["response_12m"].where(out.index != 9, 1)
    return out


def test_replications_of_the_observed_data_reproduce_the_observed_statistics():
    datasets = [SMALL_IPD, _other(SMALL_IPD)]
    table = replicate_ipd(_result(datasets), draws_per_dataset=3, seed=1)
    assert len(table) == 2 * 3 * len(recompute(SMALL_IPD))
    assert table["draw"].nunique() == 6
    columns = ["estimate", "lower", "upper", "p"]
    for m, data in enumerate(datasets):
        expected = recompute(data).set_index(["statistic", "interpretation"])[columns]
        reps = table[table["dataset"] == m]
        for _, group in reps.groupby("draw"):
            got = group.set_index(["statistic", "interpretation"])[columns]
            pd.testing.assert_frame_equal(got, expected, rtol=1e-10, check_names=False)
    # the two datasets' statistics differ, so a replication from the wrong dataset would show
    a, b = (recompute(d)["estimate"].to_numpy() for d in datasets)
    assert (np.abs(a - b) > 1e-6).sum() >= 10


def test_replicated_values_are_the_draws_not_the_data():
    """Posterior-predictive scores one point lower at 12 months: the replicated mean score at
    12 months is the observed one minus 1, and the 6-month one is unchanged."""
    result = _result([SMALL_IPD])
    pp = result.fits["severity_ordinal"].idata["posterior_predictive"].to_dataset()
    visit = severity_long(SMALL_IPD)["visit"].to_numpy()
    pp["score"] = pp["score"] - (visit == 2)
    result.fits["severity_ordinal"] = PooledFit(
        "severity_ordinal", xr.DataTree.from_dict({"posterior_predictive": pp})
    )
    table = replicate_ipd(result, draws_per_dataset=2, seed=0).set_index(
        ["statistic", "interpretation"]
    )
    observed = recompute(SMALL_IPD).set_index(["statistic", "interpretation"])["estimate"]
    key12, key6 = ("severity_12m", "mean_score_at_visit"), ("severity_6m", "mean_score_at_visit")
    assert table.loc[[key12], "estimate"].to_numpy() == pytest.approx(observed[key12] - 1)
    assert table.loc[[key6], "estimate"].to_numpy() == pytest.approx(observed[key6])
