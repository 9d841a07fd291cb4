"""Prior grid and leave-one-center-out on one target with short chains: every grid cell and
every center appear, priors move the posterior in the direction they pull, and the shifts are
computed against the full-data fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from khe_bayes.evidence import load_evidence
from khe_bayes.reconstruct import reconstruct_datasets
from khe_bayes.sampling import SamplerSettings
from khe_bayes.sensitivity import TARGETS, SweepOptions, leave_one_center_out, prior_grid

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


def test_dask_sweep_gives_the_in_process_numbers_and_resumes_from_its_store(tmp_path):
    """One grid cell and leave-one-center-out over 3 centers, in this process and as tasks on 2
    Dask workers: identical tables (seeds come from the cell, not from where it ran); a rerun
    on the same store refits nothing."""
    target = dataclasses.replace(
        SHRINKAGE[0],
        effect_priors={"neutral": SHRINKAGE[0].effect_priors["neutral"]},
        center_sd_priors={"weak": SHRINKAGE[0].center_sd_priors["weak"]},
    )
    data = DATA.copy()
    codes = data["center"].astype("category").cat.codes
    data["center"] = "merged_" + (codes % 3).astype(str)
    local = (prior_grid(data, FAST, (target,)), leave_one_center_out(data, FAST, (target,)))
    options = SweepOptions(workers=2, store=tmp_path / "store")
    on_dask = (
        prior_grid(data, FAST, (target,), options=options),
        leave_one_center_out(data, FAST, (target,), options=options),
    )
    for a, b in zip(local, on_dask, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert len(list((tmp_path / "store").glob("*.json"))) == 1 + 4
    messages: list[str] = []
    again = leave_one_center_out(data, FAST, (target,), progress=messages.append, options=options)
    pd.testing.assert_frame_equal(again, local[1])
    assert messages == [f"4 of 4 tasks already done in {tmp_path / 'store'}; 0 to run"]
