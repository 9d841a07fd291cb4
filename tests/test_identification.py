"""Identification labels: the rule, and prior variances against closed forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from khe_bayes.study.identification import (
    DETERMINED,
    DETERMINED_BY_DATA,
    PARTLY,
    SET,
    identification_table,
    label,
    prior_variances,
    variable_labels,
)


def test_rule():
    assert label(0.95, 0.05) == DETERMINED
    assert label(0.95, 0.05, from_data=True) == DETERMINED_BY_DATA
    assert label(0.95, 0.3) == PARTLY
    assert label(0.7, 0.1) == PARTLY
    assert label(0.3, 0.0) == SET  # posterior ~ prior
    assert label(0.99, 0.6) == SET  # the spread across reconstructions dominates
    assert label(np.nan, 0.0) == SET
    # not narrower than the prior, but moved 1.5 prior SDs away from its mean: the data spoke
    assert label(0.2, 0.0, shift=1.5) == PARTLY
    assert label(0.2, 0.0, shift=0.5) == SET
    assert label(0.2, 0.6, shift=3.0) == SET  # the reconstruction's spread still dominates


def test_prior_variances_match_closed_forms():
    """HalfNormal(2): variance 4 (1 - 2/pi); a Deterministic 3 * Normal(0, 1) + 1 per element:
    9. 20000 forward draws; the sample variance's relative SE is sqrt(2/n) ~ 1% (normal) and
    about 1.3% (half-normal, kurtosis 3.87), so 5% is about 4 SEs."""
    with pm.Model(coords={"visit": ["6m", "12m"]}) as model:
        s = pm.HalfNormal("s", 2.0)
        z = pm.Normal("z", 0.0, 1.0, dims="visit")
        pm.Deterministic("d", 3 * z + 1, dims="visit")
        pm.Normal("y", z.sum(), s, observed=np.zeros(3))
    v = prior_variances(model, ["s", "d"], draws=20000, seed=1)
    assert set(v) == {"s", "d[6m]", "d[12m]"}
    assert v["s"] == pytest.approx(4 * (1 - 2 / np.pi), rel=0.05)
    assert v["d[12m]"] == pytest.approx(9.0, rel=0.05)


def test_table_and_variable_labels():
    share = pd.DataFrame(
        {
            "model": ["m", "m", "m"],
            "quantity": ["a", "b[x]", "b[y]"],
            "total_variance": [0.01, 0.5, 0.02],
            "between_variance": [0.0, 0.0, 0.0],
            "reconstruction_share": [0.0, 0.0, 0.0],
        }
    )
    prior = {("m", "a"): 1.0, ("m", "b[x]"): 1.0, ("m", "b[y]"): 1.0}
    table = identification_table(share, prior)
    assert list(table["label"]) == [DETERMINED, PARTLY, DETERMINED]
    assert table["contraction"].tolist() == pytest.approx([0.99, 0.5, 0.98])
    assert variable_labels(table) == {("m", "a"): DETERMINED, ("m", "b"): PARTLY}


def test_unreported_center_quantities_are_set_by_assumptions_only_for_reconstructions():
    share = pd.DataFrame(
        {
            "model": ["m"],
            "quantity": ["center_sd"],
            "total_variance": [0.01],
            "between_variance": [0.0],
            "reconstruction_share": [0.0],
        }
    )
    prior = {("m", "center_sd"): 1.0}
    assert identification_table(share, prior)["label"].iloc[0] == SET
    assert identification_table(share, prior, from_data=True)["label"].iloc[0] == DETERMINED_BY_DATA
