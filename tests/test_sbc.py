"""Simulation-based calibration: the rank test on exact numbers, a small SBC for every IPD and
grouped family (the full >= 200-replication runs are recorded in benchmarks/RESULTS.md), proof
that SBC flags a model fitted with the wrong prior, and a resumed Dask sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    """20 replications, 4 bins (5 expected per bin): weak, but it catches gross errors in a
    family's likelihood, simulation or sampler plumbing (it caught the ordinal model's cutpoint
    prior, whose forward draws did not follow its density); the full runs are the real check."""
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
