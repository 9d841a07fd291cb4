"""Generic families and strict specs: structure and log-density without sampling, one-line
errors for bad specs and data, `khe-bayes fit` end to end, and a second sampler (nutpie)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from khe_bayes.families import FAMILIES, load_spec, register_family
from khe_bayes.toolkit.errors import InputError

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


def test_every_shipped_spec_loads_and_builds_without_sampling():
    for path in sorted(MODELS.glob("*.toml")):
        spec, family = load_spec(path)
        model = family.build(spec, family.load_data(spec, MODELS))
        assert model.free_RVs, path.name


def test_binomial_structure_and_log_density():
    spec, family = load_spec(MODELS / "binomial_example.toml")
    data = family.load_data(spec, MODELS)
    model = family.build(spec, data)
    groups = list(dict.fromkeys(data["group"]))
    assert model.coords["group"] == tuple(groups)
    assert model.named_vars_to_dims["theta"] == ("group",)
    assert model.named_vars_to_dims["p"] == ("group",)
    assert {v.name for v in model.free_RVs} == {"mu", "tau", "z", "arm_effect"}  # non-centered
    assert {"p_mean", "odds_ratio", "risk_difference"} <= {d.name for d in model.deterministics}
    z = np.linspace(-1, 1, len(groups))
    point = {"mu": 0.2, "tau_log__": np.log(0.5), "z": z, "arm_effect": 0.6}
    got = model.compile_logp(jacobian=False)(point)
    g = np.array([groups.index(x) for x in data["group"]])
    eta = 0.2 + 0.5 * z[g] + 0.6 * data["treated"].to_numpy()
    expected = (
        stats.norm.logpdf(0.2, 0, 2.5)
        + stats.halfnorm.logpdf(0.5, scale=1)
        + stats.norm.logpdf(z).sum()
        + stats.norm.logpdf(0.6, 0, 1.5)
        + stats.binom.logpmf(data["events"], data["n"], special.expit(eta)).sum()
    )
    assert got == pytest.approx(expected, rel=1e-9)


def test_normal_family_with_bugs_style_variance_prior(tmp_path):
    spec_text = (
        (MODELS / "normal_eight_schools.toml")
        .read_text()
        .replace(
            'tau = { dist = "HalfCauchy", beta = 5 }',
            'tau_variance = { dist = "InverseGamma", alpha = 0.001, beta = 0.001 }',
        )
    )
    path = tmp_path / "s.toml"
    path.write_text(spec_text.replace('data = "data/', f'data = "{MODELS}/data/'))
    spec, family = load_spec(path)
    model = family.build(spec, family.load_data(spec, tmp_path))
    assert "tau_variance" in {v.name for v in model.free_RVs}
    assert "tau" in {d.name for d in model.deterministics}
    y = np.array([28, 8, -3, 7, -1, 1, 18, 12.0])
    se = np.array([15, 10, 16, 11, 9, 11, 10, 18.0])
    z = np.zeros(8)
    point = {"mu": 5.0, "tau_variance_log__": np.log(4.0), "z": z}
    got = model.compile_logp(jacobian=False)(point)
    expected = (
        stats.norm.logpdf(5, 0, 20)
        + stats.invgamma.logpdf(4.0, 0.001, scale=0.001)
        + stats.norm.logpdf(z).sum()
        + stats.norm.logpdf(y, 5.0, se).sum()
    )
    assert got == pytest.approx(expected, rel=1e-9)


def _spec(tmp_path, text: str) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


BASE = f'name = "x"\nfamily = "normal"\ndata = "{MODELS}/data/eight_schools.csv"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "colour = 1\n", "key 'colour': unknown key"),
        (
            BASE + '[priors]\nmu = { dist = "Normal", mu = 0, sigmaa = 1 }\n',
            "key 'priors.mu': Normal prior has unknown parameter",
        ),
        (
            BASE + '[priors]\ntau = { dist = "Normall", sigma = 1 }\n',
            "key 'priors.tau': unknown prior distribution 'Normall'",
        ),
        (BASE + "[sampler]\ndraws = 5\n", "key 'sampler.draws'"),
        (BASE + "[sampler]\nthin = 2\n", "key 'sampler.thin': unknown key"),
        (
            BASE + '[priors]\ntau = { dist = "HalfNormal", sigma = 1 }\n'
            'tau_variance = { dist = "InverseGamma", alpha = 1, beta = 1 }\n',
            "not both",
        ),
        (BASE.replace('"normal"', '"poisson"'), "unknown family 'poisson'"),
        (
            BASE + '[[reported]]\nid = "r"\nquantity = "mu"\ntest = "t"\nlower = 2\n',
            "key 'reported[1]'",
        ),
    ],
)
def test_bad_specs_are_one_line_errors(tmp_path, text, message):
    path = _spec(tmp_path, text)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(")) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("group,estimate,se\nA,1,2\nB,x,2\n", "row 3, column 'estimate': 'x' is not a number"),
        ("group,estimate,se\nA,1,0\n", "row 2, column 'se': 0 must be > 0"),
        ("group,estimate\nA,1\n", "row 1, column 'se': missing column"),
        ("group,estimate,se,extra\nA,1,2,3\n", "column 'extra': unknown column"),
        ("group,estimate,se\nA,1,2\nA,3,2\n", "row 3, column 'group': duplicate group"),
    ],
)
def test_bad_data_rows_are_one_line_errors(tmp_path, csv, message):
    (tmp_path / "d.csv").write_text(csv)
    path = _spec(tmp_path, 'name = "x"\nfamily = "normal"\ndata = "d.csv"\n')
    spec, family = load_spec(path)
    with pytest.raises(InputError, match=message) as info:
        family.load_data(spec, tmp_path)
    assert "d.csv" in str(info.value)


def test_binomial_data_errors(tmp_path):
    (tmp_path / "d.csv").write_text("group,n,events\nA,10,11\n")
    spec, family = load_spec(_spec(tmp_path, 'name = "x"\nfamily = "binomial"\ndata = "d.csv"\n'))
    with pytest.raises(InputError, match="row 2, column 'events': events exceed n"):
        family.load_data(spec, tmp_path)
    with pytest.raises(InputError, match="data file not found"):
        family.load_data(spec.model_copy(update={"data": "no.csv"}), tmp_path)


def test_fit_cli_end_to_end_and_rebuild(tmp_path):
    from khe_bayes.api import rebuild_model
    from khe_bayes.toolkit.datatree import load

    out = tmp_path / "fit"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "khe_bayes.cli",
            "fit",
            str(MODELS / "normal_eight_schools.toml"),
            "--out",
            str(out),
            "--draws",
            "300",
            "--tune",
            "300",
            "--chains",
            "2",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert {p.name for p in out.iterdir()} == {
        "summary.csv",
        "posterior.nc",
        "thresholds.csv",
        "ppc_reported.csv",
        "manifest.json",
    }
    ppc = pd.read_csv(out / "ppc_reported.csv")  # the spec's [[reported]] BDA3 pooled estimate
    assert list(ppc["statistic"]) == ["pooled_effect"] and ppc["n_replications"].iloc[0] == 600
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("quantity,description,mean,sd,median,hdi95_lb,hdi95_ub,eti95_lb")
    assert [line.split(",")[0] for line in summary[1:3]] == ["mu", "tau"]
    idata = load(out / "posterior.nc")
    assert json.loads(idata.posterior.attrs["spec"])["family"] == "normal"
    rebuilt = rebuild_model(idata, MODELS)
    spec, family = load_spec(MODELS / "normal_eight_schools.toml")
    original = family.build(spec, family.load_data(spec, MODELS))
    point = original.initial_point()
    assert rebuilt.compile_logp()(point) == pytest.approx(original.compile_logp()(point))
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "khe_bayes.cli",
            "fit",
            str(MODELS / "normal_eight_schools.toml"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_second_sampler_nutpie_agrees_within_monte_carlo_error():
    """PyMC NUTS and nutpie on the eight-schools spec: posterior means of mu and tau agree to
    4 combined Monte Carlo standard errors, sqrt(mcse_pymc^2 + mcse_nutpie^2)."""
    import arviz as az
    import nutpie

    from khe_bayes.toolkit.sampling import SamplerSettings, fit

    spec, family = load_spec(MODELS / "normal_eight_schools.toml")
    model = family.build(spec, family.load_data(spec, MODELS))
    a = fit(
        model,
        SamplerSettings(
            draws=2000,
            tune=1000,
            chains=4,
            seed=1,
            target_accept=0.95,
            progressbar=False,
            backend="pymc",
        ),
    )
    b = nutpie.sample(
        nutpie.compile_pymc_model(model),
        draws=2000,
        tune=1000,
        chains=4,
        seed=2,
        progress_bar=False,
    )
    for var in ("mu", "tau"):
        sa, sb = az.summary(a, var_names=[var]), az.summary(b, var_names=[var])
        diff = abs(sa["mean"].iloc[0] - sb["mean"].iloc[0])
        tol = 4 * np.hypot(sa["mcse_mean"].iloc[0], sb["mcse_mean"].iloc[0])
        assert diff < tol, (var, diff, tol)


def test_registry_is_explicit():
    assert set(FAMILIES) == {
        "binomial",
        "normal",
        "binomial_glmm",
        "normal_glmm",
        "aggregate_proportion",
        "khe_response",
        "khe_severity",
        "khe_shrinkage",
        "khe_contrasts",
    }


def test_register_family_rejects_a_duplicate_or_mismatched_name():
    before = dict(FAMILIES)
    with pytest.raises(ValueError, match="'normal' is already registered"):
        register_family("normal", FAMILIES["normal"])
    with pytest.raises(ValueError, match="differs from the family's own name"):
        register_family("normal_copy", FAMILIES["normal"])
    assert before == FAMILIES  # nothing replaced, nothing added
