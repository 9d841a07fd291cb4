"""Specs with a model formula (binomial_glmm, normal_glmm), BUGS precision priors, one-group
designs and the [[reported]] scale: structure and log-density against hand-written references,
without sampling (milliseconds to seconds each).

References are independent of the code under test: the design matrix written out by hand,
scipy's densities, scipy.integrate.quad for the population average, and the compile-once rule
(a template with another dataset swapped in equals a fresh build)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import integrate, special, stats

from khe_bayes.families import load_spec
from khe_bayes.families.base import SpecWarning
from khe_bayes.toolkit.compiled import model_data, structure_key
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.spec_ppc import entry_scale

REPO = Path(__file__).resolve().parents[1]

DATA = """group,arm,n,events,x1,x2
a,control,20,5,0.1,1
a,treated,20,9,0.5,2
b,control,25,7,0.2,3
b,treated,25,13,0.9,4
c,control,30,6,0.4,2
c,treated,30,12,0.3,2.5
"""

SPEC = """
name = "t"
family = "binomial_glmm"
formula = "{formula}"
data = "data.csv"
levels = {{ arm = ["control", "treated"] }}

[priors]
intercept = {{ dist = "Normal", mu = 0, sigma = 3 }}
coefficients = {{ dist = "Normal", mu = 0, sigma = 1 }}
tau = {{ dist = "HalfNormal", sigma = 0.7 }}
terms = {{ arm = {{ dist = "StudentT", nu = 4, mu = 0, sigma = 2 }} }}
{quantities}
"""

Q_RD = """
[[quantities]]
name = "rd"
measure = "risk_difference"
effect = "population_averaged"
compare = { arm = ["control", "treated"] }
at = { x1 = 0.4, x2 = 2 }

[[quantities]]
name = "lor_b"
measure = "log_odds_ratio"
effect = "conditional"
group = "b"
compare = { arm = ["control", "treated"] }
at = { x1 = 0.4, x2 = 2 }

[[quantities]]
name = "p_mu"
measure = "probability"
effect = "conditional"
at = { arm = "treated", x1 = 0.4, x2 = 3 }
"""


def _spec(
    tmp_path,
    formula="p(events, n) ~ arm + x1 * x2 + (1 | group)",
    quantities=Q_RD,
    data=DATA,
    text=None,
):
    (tmp_path / "data.csv").write_text(data)
    path = tmp_path / "spec.toml"
    path.write_text(text or SPEC.format(formula=formula, quantities=quantities))
    return path


def _load(path):
    spec, family = load_spec(path)
    data = family.load_data(spec, path.parent)
    return spec, family, data, family.build(spec, data)


def _deterministics(model, point):
    outs = model.replace_rvs_by_values(model.deterministics)
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    return dict(zip([d.name for d in model.deterministics], fn(point), strict=True))


def test_design_is_the_formula_as_written_without_implicit_centring(tmp_path):
    _, _, data, model = _load(_spec(tmp_path))
    d = pd.read_csv(tmp_path / "data.csv")
    treated = (d["arm"] == "treated").to_numpy(float)
    want = np.column_stack([np.ones(6), treated, d["x1"], d["x2"], d["x1"] * d["x2"]])
    np.testing.assert_allclose(data.design.X, want)
    assert model.coords["coef"] == ("Intercept", "arm[treated]", "x1", "x2", "x1:x2")
    assert {v.name for v in model.free_RVs} == {
        "b_Intercept",
        "b_arm",
        "b_x1",
        "b_x2",
        "b_x1_x2",
        "tau",
        "z",
    }
    np.testing.assert_allclose(  # quantity rows at the stated values, on the covariates' scale
        data.quantity_rows["rd"], [[1, 0, 0.4, 2, 0.8], [1, 1, 0.4, 2, 0.8]]
    )


def test_centring_is_explicit_and_quantities_stay_at_stated_values(tmp_path):
    _, _, data, _ = _load(
        _spec(
            tmp_path,
            formula="p(events, n) ~ arm + center(x1) + (1 | group)",
            quantities=Q_RD.replace(", x2 = 2", "").replace(", x2 = 3", ""),
        )
    )
    mean = pd.read_csv(tmp_path / "data.csv")["x1"].mean()
    np.testing.assert_allclose(data.design.X[:, 2], pd.read_csv(tmp_path / "data.csv")["x1"] - mean)
    np.testing.assert_allclose(data.quantity_rows["rd"][:, 2], 0.4 - mean)  # data's mean kept


def test_log_density_with_per_term_priors_matches_scipy(tmp_path):
    _, _, data, model = _load(_spec(tmp_path))
    X, g = data.design.X, data.design.group_index
    d = pd.read_csv(tmp_path / "data.csv")
    b = np.array([-0.4, 0.6, 0.3, -0.1, 0.2])
    z = np.array([0.5, -1.0, 0.3])
    tau = 0.8
    point = {
        "b_Intercept": b[0],
        "b_arm": b[1],
        "b_x1": b[2],
        "b_x2": b[3],
        "b_x1_x2": b[4],
        "tau_log__": np.log(tau),
        "z": z,
    }
    eta = X @ b + tau * z[g]
    want = (
        stats.norm.logpdf(b[0], 0, 3)
        + stats.t.logpdf(b[1], 4, 0, 2)  # the per-term prior, not the default
        + stats.norm.logpdf(b[2:], 0, 1).sum()
        + stats.halfnorm.logpdf(tau, scale=0.7)
        + stats.norm.logpdf(z).sum()
        + stats.binom.logpmf(d["events"], d["n"], special.expit(eta)).sum()
    )  # rel 1e-8: PyTensor's and scipy's Student-t / binomial log-gamma terms differ by ~1e-9
    assert model.compile_logp(jacobian=False)(point) == pytest.approx(want, rel=1e-8)


def test_quantities_at_a_point_match_independent_formulas(tmp_path):
    """Conditional at a group's own effect is exact algebra; the population average is checked
    against scipy's adaptive quadrature of invlogit(eta + u) over u ~ Normal(0, tau)."""
    _, _, _, model = _load(_spec(tmp_path))
    b = np.array([-0.4, 0.6, 0.3, -0.1, 0.2])
    z = np.array([0.5, -1.0, 0.3])
    tau = 1.3
    point = {
        "b_Intercept": b[0],
        "b_arm": b[1],
        "b_x1": b[2],
        "b_x2": b[3],
        "b_x1_x2": b[4],
        "tau_log__": np.log(tau),
        "z": z,
    }
    got = _deterministics(model, point)
    x0, x1 = np.array([1, 0, 0.4, 2, 0.8]), np.array([1, 1, 0.4, 2, 0.8])

    def averaged(eta):
        f = lambda u: special.expit(eta + u) * stats.norm.pdf(u, 0, tau)  # noqa: E731
        return integrate.quad(f, -np.inf, np.inf, epsabs=1e-12)[0]

    assert got["rd"] == pytest.approx(averaged(x1 @ b) - averaged(x0 @ b), abs=1e-9)
    assert got["lor_b"] == pytest.approx(b[1])  # same u in both arms: the coefficient
    assert got["p_mu"] == pytest.approx(special.expit(np.array([1, 1, 0.4, 3, 1.2]) @ b))
    conditional = special.expit(x1 @ b) - special.expit(x0 @ b)
    assert abs(got["rd"] - conditional) > 1e-3  # the two contrasts really differ here


def test_compile_once_data_swap_equals_a_fresh_build(tmp_path):
    """Every dataset-dependent array (design, group index, centring, quantity rows) is pm.Data:
    a template built on A with B's data swapped in is the model of B."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir(), b_dir.mkdir()
    formula = "p(events, n) ~ arm + center(x1) * x2 + (1 | group)"
    other = (
        DATA.replace("0.1,1", "0.7,1.5").replace("25,7", "25,11").replace("30,6,0.4", "30,2,0.8")
    )
    _, _, _, template = _load(_spec(a_dir, formula=formula))
    _, _, _, fresh = _load(_spec(b_dir, formula=formula, data=other))
    assert structure_key(template) == structure_key(fresh)
    with template:
        pm.set_data(model_data(fresh))
    point = {k: v + 0.3 for k, v in fresh.initial_point(0).items()}
    got, want = _deterministics(template, point), _deterministics(fresh, point)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, err_msg=name)
    assert template.compile_logp()(point) == pytest.approx(fresh.compile_logp()(point))


def test_normal_meta_regression_structure_and_tau_precision(tmp_path):
    (tmp_path / "m.csv").write_text(
        "study,estimate,se,year\ns1,0.5,0.2,1990\ns2,0.1,0.3,1995\ns3,0.4,0.25,2000\n"
        "s4,-0.2,0.4,2005\n"
    )
    path = tmp_path / "m.toml"
    path.write_text(
        'name = "m"\nfamily = "normal_glmm"\nformula = "estimate | se(se) ~ year + (1 | study)"\n'
        'data = "m.csv"\n[priors]\nintercept = { dist = "Flat" }\n'
        'coefficients = { dist = "Normal", mu = 0, sigma = 1 }\n'
        'tau_precision = { dist = "Gamma", alpha = 0.001, beta = 0.001 }\n'
        '[[quantities]]\nname = "per_decade"\nmeasure = "difference"\neffect = "conditional"\n'
        "compare = { year = [1990, 2000] }\n"
    )
    _, _, _, model = _load(path)
    assert "tau_precision" in {v.name for v in model.free_RVs}
    point = {
        "b_Intercept": 0.2,
        "b_year": 0.01,
        "tau_precision_log__": np.log(4.0),
        "z": np.array([0.1, -0.2, 0.3, 0.0]),
    }
    got = _deterministics(model, point)
    assert got["tau"] == pytest.approx(0.5)  # 1 / sqrt(precision)
    assert got["per_decade"] == pytest.approx(0.1)  # 10 years x slope
    y, se = np.array([0.5, 0.1, 0.4, -0.2]), np.array([0.2, 0.3, 0.25, 0.4])
    mean = 0.2 + 0.01 * np.array([1990, 1995, 2000, 2005]) + 0.5 * point["z"]
    want = (
        stats.norm.logpdf(0.01, 0, 1)
        + stats.gamma.logpdf(4.0, 0.001, scale=1000)
        + stats.norm.logpdf(point["z"]).sum()
        + stats.norm.logpdf(y, mean, se).sum()
    )
    assert model.compile_logp(jacobian=False)(point) == pytest.approx(want, rel=1e-10)


def test_precision_like_tau_prior_warns_and_legacy_families_take_tau_precision(tmp_path):
    text = (REPO / "models/normal_eight_schools.toml").read_text()
    text = text.replace('data = "data/', f'data = "{REPO}/models/data/')
    gamma = 'tau = { dist = "Gamma", alpha = 0.001, beta = 0.001 }'
    path = tmp_path / "s.toml"
    path.write_text(text.replace('tau = { dist = "HalfCauchy", beta = 5 }', gamma))
    with pytest.warns(SpecWarning, match="tau_precision"):
        _load(path)
    path.write_text(
        text.replace(
            'tau = { dist = "HalfCauchy", beta = 5 }', gamma.replace("tau =", "tau_precision =")
        )
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecWarning)  # no warning for the precision key
        _, _, _, model = _load(path)
    assert "tau_precision" in {v.name for v in model.free_RVs}
    path.write_text(
        text.replace(
            'tau = { dist = "HalfCauchy", beta = 5 }',
            gamma + "\n" + gamma.replace("tau =", "tau_precision ="),
        )
    )
    with pytest.raises(InputError, match="not both tau and tau_precision"):
        load_spec(path)


ONE_TRIAL = "group,arm,n,events\ntrial,control,100,30\ntrial,treated,100,45\n"


def test_one_group_drops_the_random_effect_and_says_so(tmp_path):
    q = Q_RD.split("[[quantities]]")[3].replace(", x1 = 0.4, x2 = 3", "")
    path = _spec(
        tmp_path,
        formula="p(events, n) ~ arm + (1 | group)",
        quantities="[[quantities]]" + q,
        data=ONE_TRIAL,
    )
    with pytest.warns(SpecWarning, match="one group"):
        _, _, _, model = _load(path)
    assert {v.name for v in model.free_RVs} == {"b_Intercept", "b_arm"}  # no tau, no z


def test_legacy_binomial_with_one_group_has_no_tau(tmp_path):
    (tmp_path / "d.csv").write_text(ONE_TRIAL)
    path = tmp_path / "s.toml"
    path.write_text('name = "t"\nfamily = "binomial"\ndata = "d.csv"\nreference_arm = "control"\n')
    with pytest.warns(SpecWarning, match="one group"):
        _, _, _, model = _load(path)
    assert {v.name for v in model.free_RVs} == {"mu", "arm_effect"}
    got = _deterministics(model, {"mu": -0.8, "arm_effect": 0.6})
    assert got["risk_difference"] == pytest.approx(special.expit(-0.2) - special.expit(-0.8))
    assert got["p"] == pytest.approx([special.expit(-0.8)])


@pytest.mark.parametrize(
    "formula, quantities, data, match",
    [
        (
            "p(events, n) ~ arm + (1 | group)",
            '[[quantities]]\nname = "q"\nmeasure = "risk_difference"\n'
            'effect = "population_averaged"\ncompare = { arm = ["control", "treated"] }\n',
            ONE_TRIAL,
            "population average needs",
        ),
        (
            "p(events, n) ~ arm",
            '[[quantities]]\nname = "q"\nmeasure = "risk_difference"\n'
            'effect = "population_averaged"\ncompare = { arm = ["control", "treated"] }\n',
            DATA,
            "no \\(1 \\| group\\) term",
        ),
        (
            "p(events, n) ~ arm + (1 | group)",
            '[[quantities]]\nname = "q"\nmeasure = "probability"\neffect = "conditional"\n'
            'group = "zz"\nat = { arm = "control" }\n',
            DATA,
            "'zz' is not a group",
        ),
        (
            "p(events, n) ~ arm + x1 + (1 | group)",
            '[[quantities]]\nname = "q"\nmeasure = "probability"\neffect = "conditional"\n'
            'at = { arm = "control" }\n',
            DATA,
            "missing \\['x1'\\]",
        ),
        (
            "p(events, n) ~ arm + (1 | group)",
            '[[quantities]]\nname = "q"\nmeasure = "odds_ratio"\neffect = "conditional"\n'
            'compare = { arm = ["control", "placebo"] }\n',
            DATA,
            "'placebo' is not a level",
        ),
        (
            "p(events, n) ~ arm + x1 + (1 | group)",
            "",
            DATA.replace("0.1,", "1,")
            .replace("0.5,", "1,")
            .replace("0.2,", "1,")
            .replace("0.9,", "1,")
            .replace("0.4,", "1,")
            .replace("0.3,", "1,"),
            "'x1' is not identified",
        ),
        ("p(events, n) ~ arm + (x1 | group)", "", DATA, "only one random intercept"),
        ("events ~ arm", "", DATA, "binomial response must be"),
        (
            "p(events, n) ~ arm + (1 | group)",
            '[[quantities]]\nname = "q"\nmeasure = "mean"\neffect = "conditional"\n',
            DATA,
            "measure 'mean' not in",
        ),
    ],
)
def test_unidentified_or_malformed_designs_are_one_line_errors(
    tmp_path, formula, quantities, data, match
):
    path = _spec(tmp_path, formula=formula, quantities=quantities, data=data)
    with warnings.catch_warnings(), pytest.raises(InputError, match=match) as err:
        warnings.simplefilter("ignore", SpecWarning)
        _load(path)
    assert len(str(err.value).splitlines()) == 1


def test_unknown_prior_term_is_an_error(tmp_path):
    text = SPEC.format(formula="p(events, n) ~ arm + (1 | group)", quantities="").replace(
        "terms = { arm", "terms = { armm"
    )
    with pytest.raises(InputError, match="armm"):
        _load(_spec(tmp_path, text=text))


class _Entry:
    def __init__(self, quantity, test, estimate, lower, upper, scale=None):
        self.quantity, self.test, self.scale = quantity, test, scale
        self.estimate, self.lower, self.upper = estimate, lower, upper


def test_reported_scale_is_the_quantitys_or_declared_and_a_mismatch_is_an_error():
    scales = {"rd": "fraction"}
    assert entry_scale(_Entry("rd", "risk_difference_wald", 0.279, 0.100, 0.447), scales) == (
        "fraction"
    )
    assert (
        entry_scale(_Entry("rd", "risk_difference_wald", 27.9, 10.0, 44.7, "percent"), scales)
        == "percent"
    )
    with pytest.raises(ValueError, match='scale = "percent"'):  # percent numbers, undeclared
        entry_scale(_Entry("rd", "risk_difference_wald", 27.9, 10.0, 44.7), scales)
    with pytest.raises(ValueError, match="is not one"):  # a log-odds is not a proportion
        entry_scale(_Entry("mu", "pooled_proportion_wilson", 0.3, 0.2, 0.4), scales)
    with pytest.raises(ValueError, match="applies to proportion tests"):
        entry_scale(_Entry("mu", "fixed_effect_inverse_variance", 1, 0, 2, "percent"), scales)
    assert entry_scale(_Entry("mu", "fixed_effect_inverse_variance", 7.7, -0.3, 15.7), {}) is None


def test_reported_check_of_a_formula_spec_compares_on_the_entrys_scale():
    """Seeds' [[reported]] risk difference (fraction scale) against replications drawn around
    the observed table (a stand-in posterior predictive, no sampling): consistent on its own
    scale, consistent when the same result is declared in percent, and inconsistent when
    fractions are declared as percent (the check does compare on the declared scale)."""
    from types import SimpleNamespace

    import xarray as xr

    from khe_bayes.toolkit.spec_ppc import check_reported

    spec, family = load_spec(REPO / "models/seeds_formula.toml")
    data = family.load_data(spec, REPO / "models")
    n = data.frame["n"].to_numpy().astype(int)
    rng = np.random.default_rng(1)
    reps = rng.binomial(n, data.frame["r"].to_numpy() / n, size=(2, 200, n.size))
    fake = SimpleNamespace(
        posterior_predictive=xr.Dataset({"events": (("chain", "draw", "row"), reps)}),
        posterior=xr.Dataset({"rd_extract_o75_pa": (("chain", "draw"), np.full((2, 200), 0.3))}),
    )
    scales = family.scales(spec)

    def check(**update):
        entry = spec.reported[0].model_copy(update=update)
        table = check_reported(
            spec.model_copy(update={"reported": [entry]}),
            family.name,
            data,
            fake,
            quantity_scales=scales,
        )
        return table.iloc[0]

    row = check()
    assert row["scale"] == "fraction" and row["verdict"] == "consistent"
    assert 0.2 < row["rep_estimate_q2.5"] < 0.317 < row["rep_estimate_q97.5"] < 0.45
    assert row["posterior_mean"] == pytest.approx(0.3)
    row = check(estimate=31.7, lower=23.9, upper=39.5, decimals=1, scale="percent")
    assert row["verdict"] == "consistent" and row["posterior_mean"] == pytest.approx(30.0)
    assert check(scale="percent")["verdict"] == "inconsistent"
