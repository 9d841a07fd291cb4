"""Side-by-side table on a small stored posterior with exact numbers."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from khe_bayes.toolkit.side_by_side import Pairing, side_by_side, wilson_percent


def test_wilson_interval_matches_the_formula():
    k, n, z = 50, 52, 1.959963984540054
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    lo, hi = wilson_percent(k, n)
    assert lo == pytest.approx(100 * (centre - half), rel=1e-9)
    assert hi == pytest.approx(100 * (centre + half), rel=1e-9)


def test_side_by_side_probabilities_are_exact_fractions():
    values = np.array([[-0.2, 0.1, 0.5, 0.95], [0.3, 0.92, -0.1, 0.6]])  # chain x draw
    idata = xr.DataTree.from_dict(
        {"posterior": xr.Dataset({"effect": (("chain", "draw"), values)})}
    )
    table = side_by_side(
        idata,
        [Pairing(label="e", quantity="effect", reported_estimate=40.0, scale=100, threshold=50)],
    )
    row = table.iloc[0]
    assert row["posterior_mean"] == pytest.approx(100 * values.mean())
    assert row["p_gt_0"] == 6 / 8
    assert row["p_gt_threshold"] == 3 / 8  # 95, 92 and 60; 50 itself is not > 50
