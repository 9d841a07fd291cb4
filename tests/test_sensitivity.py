"""Prior grid and leave-one-center-out on the shrinkage target, checked against independent
predictions: each non-neutral prior's posterior is predicted from the neutral fit by
normal-normal precision weighting, and leave-one-center-out is run on data with a planted
center-specific effect whose removal must show up in that center's row."""

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
# the prior-grid check needs a smaller Monte Carlo error than FAST gives (see below)
GRID = SamplerSettings(
    draws=1000, tune=500, chains=2, seed=3, target_accept=0.95, progressbar=False
)


def _label(cell: str) -> str:
    return cell.split(":")[0]


def test_prior_grid_matches_precision_weighting_of_the_neutral_fit():
    """The shrinkage model is linear-Gaussian in ``combination_effect``, so its likelihood for
    the effect is close to Normal(L, s_L^2). From the neutral fit (prior N(0, 15^2), posterior
    mean m_0 and SD s_0): 1/s_L^2 = 1/s_0^2 - 1/15^2 and L = s_L^2 m_0 / s_0^2. Under a prior
    N(mu_p, s_p^2) the posterior is then predicted to have precision 1/s_L^2 + 1/s_p^2 and mean
    (L/s_L^2 + mu_p/s_p^2) / precision. Each grid cell's mean and SD must match the prediction.

    Tolerance: Monte Carlo error plus the normal approximation. MCSE of a posterior mean is
    sd / sqrt(ESS) and of an SD about sd / sqrt(2 ESS); ESS of this effect with nutpie is at
    least half the 2 x 1000 draws (assumed conservatively), so MCSE(mean) <= sd / sqrt(1000).
    The prediction inherits the neutral fit's error scaled by its weight w = s^2 / s_L^2 (<= 1),
    so the combined MCSE is sqrt(mcse_cell^2 + (w mcse_neutral)^2) and we allow 4 of them
    (false failure < 1e-4 per comparison). The likelihood is not exactly normal (unknown
    sigma, center effects): with long chains the prediction is off by up to 0.1 posterior SD
    for the mean and 6% for the SD, so 0.15 SD and 8% are added. An ignored prior moves the
    sceptical SD from the predicted ~3.8 to the neutral ~5.5 points (> 10 MCSE) and the
    enthusiastic mean by ~2.3 points (> 5 MCSE): both fail."""
    target = dataclasses.replace(
        SHRINKAGE[0], center_sd_priors={"weak": SHRINKAGE[0].center_sd_priors["weak"]}
    )
    grid = prior_grid(DATA, GRID, (target,))
    assert sorted(_label(c) for c in grid["effect_prior"]) == [
        "enthusiastic",
        "neutral",
        "sceptical",
    ]
    assert (grid["divergences"] <= 2).all()  # a few in the weak center-SD funnel at most
    grid = grid.set_index(grid["effect_prior"].map(_label))
    n_eff = GRID.draws * GRID.chains / 2

    neutral = grid.loc["neutral"]
    prior0 = target.effect_priors["neutral"].params
    assert prior0["mu"] == 0.0
    like_prec = 1 / neutral["sd"] ** 2 - 1 / prior0["sigma"] ** 2
    like_mean = neutral["mean"] / neutral["sd"] ** 2 / like_prec
    assert like_prec > 0
    for name in ("sceptical", "enthusiastic"):
        p = target.effect_priors[name].params
        prec = like_prec + 1 / p["sigma"] ** 2
        pred_mean = (like_mean * like_prec + p["mu"] / p["sigma"] ** 2) / prec
        pred_sd = 1 / np.sqrt(prec)
        weight = like_prec / prec
        cell = grid.loc[name]
        mcse_mean = np.hypot(cell["sd"], weight * neutral["sd"]) / np.sqrt(n_eff)
        mcse_sd = np.hypot(cell["sd"], weight * neutral["sd"]) / np.sqrt(2 * n_eff)
        assert abs(cell["mean"] - pred_mean) <= 4 * mcse_mean + 0.15 * pred_sd, (
            name,
            cell["mean"],
            pred_mean,
        )
        assert abs(cell["sd"] - pred_sd) <= 4 * mcse_sd + 0.08 * pred_sd, (
            name,
            cell["sd"],
            pred_sd,
        )


def test_priors_as_data_keep_the_density_and_share_one_compilation_across_the_grid():
    """Every prior-grid cell of both targets, built as the refits build it (priors' parameters
    as data, every patient at likelihood weight 1), has the same log density as the plain
    model with constant priors (at random points of the unconstrained space), and all cells
    and the leave-one-center-out refits of a target have one compiled structure, so the
    sensitivity refits compile once per target. A prior parameter left constant gives each
    cell its own structure; a parameter put in the wrong place changes the density.

    Tolerance 1e-6: PyTensor keeps a Python float that float32 holds exactly (1.5, 0.5) as a
    float32 constant and folds e.g. log(1.5) in float32, so the constant-prior model's density
    is off by about 1e-8 a term (log(float32(1.5)) - log(1.5) = -1.2e-8); the data containers
    are float64."""
    from khe_bayes.study.sensitivity import _refit_model
    from khe_bayes.toolkit.compiled import structure_key

    rng = np.random.default_rng(0)
    for t in TARGETS:
        keys = set()
        for effect in t.effect_priors.values():
            for sd in t.center_sd_priors.values():
                priors = t.default_priors.model_copy(
                    update={t.effect_field: effect, "center_sd": sd}
                )
                constant = t.build(DATA, priors)
                as_data = _refit_model(t, DATA, priors)  # as the grid builds it
                assert any(v.name.endswith("__prior_sigma") for v in as_data.data_vars)
                keys.add(structure_key(as_data))
                logp_c, logp_d = constant.compile_logp(), as_data.compile_logp()
                point = constant.initial_point()
                for _ in range(3):
                    at = {k: v + rng.normal(size=np.shape(v)) for k, v in point.items()}
                    assert logp_d(at) == pytest.approx(logp_c(at), abs=1e-6)
        # leave-one-center-out refits (a center at weight 0) have the grid's structure too
        center = DATA["center"].astype(str).iloc[0]
        loco = _refit_model(t, DATA, t.default_priors, keep=(DATA["center"] != center).to_numpy())
        keys.add(structure_key(loco))
        assert len(keys) == 1, t.model


@pytest.mark.parametrize("model", ["response", "shrinkage_combination"])
def test_leaving_a_center_out_by_weight_is_dropping_its_rows(model):
    """Leave-one-center-out keeps the data's shapes and gives the center's patients weight 0
    (``keep``). Exact check against dropping the rows: at random points, the weighted model's
    log density equals the dropped-rows model's (at the same values of the shared parameters)
    plus the standard-normal prior terms of what only the weighted model still has: the
    left-out center's ``center_z`` and (response model) its patients' ``patient_z``. So the
    posterior of every shared parameter is the dropped-rows posterior. Fails if a weight-0
    observation still counts, if the severity centering or the KMP mix uses the left-out
    patients, or if the weights go to the wrong rows."""
    from scipy import stats

    t = next(t for t in TARGETS if t.model == model)
    rng = np.random.default_rng(1)
    centers = sorted(DATA["center"].astype(str).unique())
    for left_out in centers[:3]:
        keep = (DATA["center"].astype(str) != left_out).to_numpy()
        weighted = t.build(DATA, t.default_priors, keep)
        dropped = t.build(DATA[keep].reset_index(drop=True), t.default_priors)
        logp_w, logp_d = weighted.compile_logp(), dropped.compile_logp()
        for _ in range(3):
            point = {
                k: v + rng.normal(size=np.shape(v)) for k, v in weighted.initial_point().items()
            }
            sub, extra = dict(point), 0.0
            for name, dim in (("center_z", "center"), ("patient_z", "patient")):
                if name not in point:
                    continue
                labels = list(weighted.coords[dim])
                kept = [labels.index(x) for x in dropped.coords[dim]]
                gone = np.setdiff1d(np.arange(len(labels)), kept)
                sub[name] = point[name][kept]
                extra += stats.norm.logpdf(point[name][gone]).sum()
            # exact up to summation order (densities of order 1e2, double precision); 1e-6 is
            # far below any real difference (one patient's term is of order 1)
            assert logp_w(point) == pytest.approx(logp_d(sub) + extra, abs=1e-6)
            if model == "response":  # the cohort KMP mix of the kept patients only
                rate_w, rate_d = (
                    m.compile_fn(
                        m.replace_rvs_by_values([m["response_rate"]])[0],
                        inputs=m.value_vars,
                        on_unused_input="ignore",
                    )
                    for m in (weighted, dropped)
                )
                rate_w, rate_d = rate_w(point), rate_d(sub)
                assert np.allclose(rate_w, rate_d)


def _planted_center_data():
    """DATA with its centers merged into 3 (4 refits instead of 7) and +40 points of shrinkage
    for the combination patients of the center with most of them: a center-specific
    combination effect that the center random effect cannot absorb."""
    data = DATA.copy()
    codes = data["center"].astype("category").cat.codes
    data["center"] = "merged_" + (codes % 3).astype(str)
    kmp_comb = (data["kmp"] == 1) & (data["arm"] == "combination")
    planted = data.loc[kmp_comb, "center"].value_counts().idxmax()
    boost = kmp_comb & (data["center"] == planted)
    data.loc[boost, "shrinkage_12m"] = np.minimum(data.loc[boost, "shrinkage_12m"] + 40, 100)
    return data, planted


def test_leave_one_center_out_refits_without_the_center_it_names():
    """Every row must come from a successful refit (no note, finite numbers; a table of failed
    refits fails here), name a center of the data with its patient count, and the planted
    center's row must show the planted effect leaving: the combination effect falls when that
    center is left out, by more than for any other center and by more than 4 posterior SDs of
    Monte Carlo error (MCSE of a mean from 400 draws is at most sd / sqrt(200) ~ 0.07 sd)."""
    data, planted = _planted_center_data()
    loco = leave_one_center_out(data, FAST, SHRINKAGE)
    counts = data["center"].value_counts()
    assert sorted(loco["left_out"]) == sorted(counts.index)
    assert (loco["note"].fillna("") == "").all(), loco["note"].tolist()
    assert np.isfinite(loco[["mean", "sd", "full_mean", "shift"]].to_numpy(float)).all()
    for _, row in loco.iterrows():
        assert row["n_left_out"] == counts[row["left_out"]]
    shifts = loco.set_index("left_out")["shift"]
    assert shifts.idxmin() == planted, shifts.to_dict()
    full_sd = loco["sd"].max()
    assert shifts[planted] < -4 * full_sd / np.sqrt(200)
    # the planted effect is large: removing it moves the estimate by several points
    assert shifts[planted] < -5.0


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
