"""Prior grid and leave-one-center-out on one target with short chains: every grid cell and
every center appear, priors move the posterior in the direction they pull, and the shifts are
computed against the full-data fit."""

from __future__ import annotations

import numpy as np

from khe_bayes.evidence import load_evidence
from khe_bayes.reconstruct import reconstruct_datasets
from khe_bayes.sampling import SamplerSettings
from khe_bayes.sensitivity import TARGETS, leave_one_center_out, prior_grid

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
