"""Prior grid and leave-one-center-out on one target with short chains: every grid cell and
every center appear, priors move the posterior in the direction they pull, and the shifts are
computed against the full-data fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.reconstruct import reconstruct_datasets
from khe_bayes.study.sensitivity import TARGETS, leave_one_center_out, prior_grid
from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.sweep import SweepOptions

DATA = reconstruct_datasets(load_evidence(), 1, seed=21)[0]
SHRINKAGE = tuple(t for t in TARGETS if t.model == "shrinkage_combination")
FAST = SamplerSettings(draws=200, tune=200, chains=2, seed=3, progressbar=False)


def test_prior_grid_covers_every_cell_and_priors_pull_their_way():
    grid = prior_grid(DATA, FAST, SHRINKAGE)
    assert len(grid) == 3 * 2
    assert set(grid["effect_prior"].str.split(":").str[0]) == {
        "sceptical",
        "neutral",
        "enthusiastic",
    }
    by = grid.groupby(grid["effect_prior"].str.split(":").str[0])["mean"].mean()
    # the enthusiastic prior (mean +10) pulls the effect up, the sceptical one (SD 5) towards 0
    assert by["enthusiastic"] > by["neutral"]
    # Allowance for Monte Carlo error: each mean averages two fits of 2 x 200 draws with posterior
    # SD about 5 points, so its MCSE is about 5 / sqrt(400) = 0.25; the difference of two such
    # means has MCSE 0.35, and 1.0 is about 2.8 of those (one-sided false failure ~0.3%). The
    # sceptical prior halves the effect, so the check fails if the prior is ignored.
    mc_allowance = 1.0
    assert abs(by["sceptical"]) < abs(by["neutral"]) + mc_allowance


def test_leave_one_center_out_has_one_row_per_center():
    loco = leave_one_center_out(DATA, FAST, SHRINKAGE)
    assert sorted(loco["left_out"]) == sorted(DATA["center"].unique())
    ok = loco[loco["note"] == ""]
    np.testing.assert_allclose(ok["shift"], ok["mean"] - ok["full_mean"])
    assert (ok["n_left_out"] >= 1).all()


def _one_cell_target():
    return dataclasses.replace(
        SHRINKAGE[0],
        effect_priors={"neutral": SHRINKAGE[0].effect_priors["neutral"]},
        center_sd_priors={"weak": SHRINKAGE[0].center_sd_priors["weak"]},
    )


@pytest.mark.slow  # the fast tier checks the same path with the reconstruction fits (test_pooling)
def test_prior_grid_on_dask_gives_the_in_process_numbers_and_resumes(tmp_path):
    """One grid cell in this process and as a task on 2 Dask workers: identical rows (seeds come
    from the cell, not from where it ran); a rerun on the same store refits nothing."""
    target = _one_cell_target()
    local = prior_grid(DATA, FAST, (target,))
    options = SweepOptions(workers=2, store=tmp_path / "store")
    pd.testing.assert_frame_equal(prior_grid(DATA, FAST, (target,), options=options), local)
    messages: list[str] = []
    again = prior_grid(DATA, FAST, (target,), progress=messages.append, options=options)
    pd.testing.assert_frame_equal(again, local)
    assert messages == [f"1 of 1 tasks already done in {tmp_path / 'store'}; 0 to run"]


@pytest.mark.slow
def test_leave_one_center_out_on_dask_gives_the_in_process_numbers(tmp_path):
    """Leave-one-center-out over 3 centers (4 refits, each a new model structure) in this
    process and on 2 Dask workers: identical tables."""
    target = _one_cell_target()
    data = DATA.copy()
    codes = data["center"].astype("category").cat.codes
    data["center"] = "merged_" + (codes % 3).astype(str)
    local = leave_one_center_out(data, FAST, (target,))
    options = SweepOptions(workers=2, store=tmp_path / "store")
    pd.testing.assert_frame_equal(
        leave_one_center_out(data, FAST, (target,), options=options), local
    )
    assert len(list((tmp_path / "store").glob("*.json"))) == 4
