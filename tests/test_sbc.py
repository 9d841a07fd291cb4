"""Simulation-based calibration: the rank test on exact numbers, a small SBC for every IPD and
grouped family (the full >= 200-replication runs are recorded in benchmarks/RESULTS.md), proof
that SBC flags a model fitted with the wrong prior, and a resumed Dask sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from khe_bayes.families import load_spec
from khe_bayes.toolkit.priors import prior
from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.sbc import observed_data_names, run_sbc, uniformity
from khe_bayes.toolkit.sweep import Task, run_sweep

REPO = Path(__file__).resolve().parents[1]
SBC_SPECS = [
    "aggregate_proportions.toml",
    "binomial_example.toml",
    "normal_eight_schools.toml",
    "khe_response.toml",
    "khe_severity_ordinal.toml",
    "khe_severity_gaussian.toml",
    "khe_shrinkage.toml",
    "khe_contrasts.toml",
]
# The ordinal model takes about 30 s to compile and 7 s a fit at these settings, so its small
# SBC is in the slow tier, with binomial_example and khe_contrasts to keep make test short
# (their full 200-replication runs are in benchmarks/RESULTS.md; binomial likelihoods stay
# covered in make test by the aggregate and response families).
SLOW_SBC = {"khe_severity_ordinal.toml", "binomial_example.toml", "khe_contrasts.toml"}
FAST = SamplerSettings(draws=200, tune=300, chains=2, target_accept=0.95, backend="nutpie")
REPLICATIONS, BINS = 20, 4


def _model(name: str, **spec_update):
    spec, family = load_spec(REPO / "models" / name)
    if spec_update:
        spec = spec.model_copy(update=spec_update)
    return family.build(spec, family.load_data(spec, REPO / "models")), family, spec


def test_uniformity_test_on_exact_counts():
    # 20 ranks in 0..99, 5 bins of 20 ranks: counts 8, 4, 4, 2, 2
    ranks = [5] * 8 + [25] * 4 + [45] * 4 + [65] * 2 + [85] * 2
    table = pd.DataFrame({"replication": range(20), "parameter": "a", "rank": ranks})
    row = uniformity(table, n_ranks=100, bins=5, alpha=0.01).iloc[0]
    assert row["counts"] == "8 4 4 2 2"
    assert row["chi2"] == pytest.approx(((8 - 4) ** 2 + 0 + 0 + 4 + 4) / 4)  # = 6
    assert row["p_value"] == pytest.approx(stats.chi2.sf(6.0, 4))
    assert row["threshold"] == 0.01 and row["uniform"]  # one parameter: no correction


@pytest.mark.parametrize("name", SBC_SPECS)
def test_every_family_reads_its_observations_from_data_containers(name):
    model, _, _ = _model(name)
    names = observed_data_names(model)
    assert set(names) == {rv.name for rv in model.observed_RVs} and names


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SBC else n for n in SBC_SPECS]
)
def test_small_sbc_passes(name):
    """20 replications, 4 bins (5 expected per bin), Bonferroni over the ranked parameters: a
    smoke test, not a calibration check. Its power (test_fast_sbc_power_is_as_stated): about
    0.6-0.8 against a posterior biased by one posterior SD, 0.15-0.4 against one twice too wide,
    0.04-0.14 against one twice too narrow. It catches gross errors in a family's likelihood,
    simulation or sampler plumbing (it caught the ordinal model's cutpoint prior, whose forward
    draws did not follow its density); test_sbc_catches_an_ignored_prior is the check with
    power against a plausible miscalibration, and the full runs are in benchmarks/RESULTS.md."""
    model, family, spec = _model(name)
    ranks, diags = run_sbc(model, family.summary_vars(spec), REPLICATIONS, settings=FAST, seed=3)
    test = uniformity(ranks, n_ranks=100, bins=BINS)
    assert len(diags) == REPLICATIONS and test["replications"].eq(REPLICATIONS).all()
    assert test["uniform"].all(), test.loc[~test["uniform"]].to_string()


def test_sbc_refuses_a_model_with_potentials():
    """Under an interpretation with several candidate counts the aggregate model's likelihood
    is a Potential, which prior predictive sampling cannot simulate: SBC must refuse, not rank
    a posterior that ignores the simulated data."""
    import pymc as pm

    from khe_bayes.study.aggregate import ProportionData, ProportionPriors, build_proportion_model

    data = [ProportionData("r", "", "e", counts=((49, 52), (50, 52)))]
    model = build_proportion_model(data, ProportionPriors(rate=prior("Beta", alpha=1, beta=1)))
    assert isinstance(model, pm.Model)
    with pytest.raises(ValueError, match="Potential"):
        observed_data_names(model)


def test_sbc_flags_a_model_fitted_with_the_wrong_prior():
    """Simulate from mu ~ Normal(0, 20) but fit with mu ~ Normal(30, 1): the true mu falls
    outside nearly every posterior, so its ranks pile up at the ends and the test must fail."""
    model, _, spec = _model("normal_eight_schools.toml")
    wrong, _, _ = _model(
        "normal_eight_schools.toml",
        priors=spec.priors.model_copy(update={"mu": prior("Normal", mu=30.0, sigma=1.0)}),
    )
    ranks, _ = run_sbc(model, ["mu"], REPLICATIONS, fit_model=wrong, settings=FAST, seed=3)
    test = uniformity(ranks, n_ranks=100, bins=BINS).set_index("parameter")
    assert not test.loc["mu", "uniform"]
    assert test.loc["mu", "p_value"] < 1e-6


def _power(ranks_of, replications: int, bins: int, n_params: int, sims: int, rng) -> float:
    """Share of simulated SBC runs whose parameter ``ranks_of(R)`` (ranks 0..99) fails the
    uniformity rule with ``n_params`` ranked parameters (Bonferroni). The rule's threshold and
    p-value come from :func:`uniformity` itself on the first run; the remaining runs use the
    same chi-square vectorized (checked equal on that first run)."""
    ranks = np.stack([ranks_of(replications) for _ in range(sims)])
    table = pd.DataFrame(
        {
            "replication": list(range(replications)) * n_params,
            "parameter": np.repeat([f"p{i}" for i in range(n_params)], replications),
            "rank": np.concatenate([ranks[0], *[ranks[0]] * (n_params - 1)]),
        }
    )
    first = uniformity(table, n_ranks=100, bins=bins).iloc[0]
    counts = np.stack([np.bincount(r * bins // 100, minlength=bins) for r in ranks])
    p = stats.chisquare(counts, axis=1).pvalue
    assert p[0] == pytest.approx(first["p_value"], rel=1e-12)
    assert bool(p[0] >= first["threshold"]) == first["uniform"]
    return float(np.mean(p < first["threshold"]))


def test_fast_sbc_power_is_as_stated():
    """The fast SBC rule's power, by simulation of ranks (no sampling). A posterior N(m, s^2)
    whose truth sits at m + s (d + Z) (biased by d SDs) or m + s c Z (c times too narrow)
    ranks the truth at Phi(d + Z) or Phi(c Z) of its draws. 2000 simulated runs each: the
    powers are known to +/- 0.02 (2 binomial SE); the bands below bracket the measured powers
    (1 parameter: null 0.008, bias 0.79, too wide 0.39, too narrow 0.14; 6 parameters: 0.0005,
    0.61, 0.16, 0.04) by about +/- 0.1, for 1 and for 6 ranked parameters (Bonferroni)."""
    rng = np.random.default_rng(20)

    def ranks(u):
        return np.minimum((100 * u).astype(int), 99)

    null = lambda r: rng.integers(0, 100, r)  # noqa: E731
    bias1 = lambda r: ranks(stats.norm.cdf(1.0 + rng.normal(size=r)))  # noqa: E731
    wide2 = lambda r: ranks(stats.norm.cdf(0.5 * rng.normal(size=r)))  # noqa: E731
    narrow2 = lambda r: ranks(stats.norm.cdf(2.0 * rng.normal(size=r)))  # noqa: E731
    for n_params, bands in (
        (1, {"null": (0, 0.03), "bias1": (0.7, 0.9), "wide2": (0.3, 0.5), "narrow2": (0.06, 0.22)}),
        (6, {"null": (0, 0.02), "bias1": (0.5, 0.72), "wide2": (0.1, 0.25), "narrow2": (0, 0.1)}),
    ):
        for name, gen in (("null", null), ("bias1", bias1), ("wide2", wide2), ("narrow2", narrow2)):
            power = _power(gen, REPLICATIONS, BINS, n_params, 2000, rng)
            lo, hi = bands[name]
            assert lo <= power <= hi, (n_params, name, power)


def test_sbc_catches_an_ignored_prior():
    """Eight schools simulated with its spec's tau ~ HalfCauchy(5) but fitted with the prior on
    tau effectively ignored (HalfCauchy(500)): with eight schools tau is weakly identified, so
    the posterior puts mass on large tau and the true tau ranks low. The fast rule misses this
    (about 10 6 3 1 of 20 ranks per quarter, p ~ 0.03 against a Bonferroni threshold of 0.001
    over 10 parameters); 40 replications ranking tau alone (5 bins, alpha 0.01) catch it:
    with the rank distribution seen there (~0.4, 0.35, 0.1, 0.1, 0.05 per fifth) the expected
    chi-square is ~21 on 4 df (p ~ 3e-4), power > 0.9. The correct prior passes the same test
    (test_small_sbc_passes ranks tau too)."""
    model, _, spec = _model("normal_eight_schools.toml")
    ignored, _, _ = _model(
        "normal_eight_schools.toml",
        priors=spec.priors.model_copy(update={"tau": prior("HalfCauchy", beta=500.0)}),
    )
    ranks, _ = run_sbc(model, ["tau"], 40, fit_model=ignored, settings=FAST, seed=3)
    test = uniformity(ranks, n_ranks=100, bins=5, alpha=0.01).set_index("parameter")
    assert not test.loc["tau", "uniform"], test.to_string()


def square_unless_marked(x: int, marker: str) -> dict:
    """A task for the resume test: fails for x == 3 while ``marker`` exists; records each run."""
    with open(f"{marker}.runs", "a") as fh:
        fh.write(f"{x}\n")
    if x == 3 and os.path.exists(marker):
        raise RuntimeError("interrupted")
    return {"x": x, "square": x * x}


def test_interrupted_sweep_resumes_without_redoing_finished_tasks(tmp_path):
    marker = str(tmp_path / "fail")
    Path(marker).touch()
    tasks = [Task(f"t{x}", square_unless_marked, (x, marker)) for x in range(6)]
    store = tmp_path / "store"
    with pytest.raises(RuntimeError, match="interrupted"):
        run_sweep(tasks, store, workers=1)
    finished = {p.stem for p in store.glob("*.json")}
    assert "t3" not in finished
    first_runs = Path(f"{marker}.runs").read_text().split()
    os.remove(marker)
    Path(f"{marker}.runs").unlink()
    results = run_sweep(tasks, store, workers=2)
    rerun = sorted(int(x) for x in Path(f"{marker}.runs").read_text().split())
    assert rerun == sorted(x for x in range(6) if f"t{x}" not in finished)
    assert [results[f"t{x}"]["square"] for x in range(6)] == [x * x for x in range(6)]
    assert json.loads((store / "t3.json").read_text()) == {"x": 3, "square": 9}
    assert len(first_runs) >= 1


def test_sbc_command_end_to_end_and_rerun_from_its_store(tmp_path, capsys):
    from khe_bayes.cli import main

    spec, out = str(REPO / "models" / "normal_eight_schools.toml"), tmp_path / "sbc"
    args = ["sbc", spec, "--out", str(out), "--replications", "10", "--bins", "2"]
    args += ["--draws", "200", "--tune", "300", "--seed", "4"]
    assert main(args) == 0
    assert {p.name for p in out.iterdir()} == {
        "ranks.csv",
        "uniformity.csv",
        "diagnostics.csv",
        "rank_histograms.png",
        "manifest.json",
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["passed"] and manifest["replications"] == 10
    ranks = pd.read_csv(out / "ranks.csv")
    assert (
        set(ranks["parameter"]) >= {"mu", "tau", "theta[0]"} and ranks["rank"].between(0, 99).all()
    )
    assert main(args) == 2  # the result exists: refused without --overwrite
    capsys.readouterr()
    assert main([*args, "--overwrite"]) == 0  # every replication comes from the store
    assert "10 of 10 tasks already done" in capsys.readouterr().err
    assert pd.read_csv(out / "ranks.csv").equals(ranks)


def test_sbc_command_rejects_bins_that_do_not_divide_the_ranks(tmp_path, capsys):
    from khe_bayes.cli import main

    spec = str(REPO / "models" / "normal_eight_schools.toml")
    assert main(["sbc", spec, "--out", str(tmp_path / "o"), "--bins", "3"]) == 2
    assert "--bins must divide 100" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sbc_command_rejects_too_few_draws_to_rank_among(tmp_path, capsys):
    from khe_bayes.cli import main

    spec = str(REPO / "models" / "normal_eight_schools.toml")
    args = ["sbc", spec, "--out", str(tmp_path / "o"), "--draws", "40", "--chains", "2"]
    assert main(args) == 2
    assert "--draws x --chains must be at least 99" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
