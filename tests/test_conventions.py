"""ArviZ conventions on every path: named dims on every model variable, and results that carry
what LOO and provenance need (log-likelihood, observed and constant data, stamps)."""

from __future__ import annotations

import json

import pytest

from khe_bayes.families import load_spec
from khe_bayes.resources import specs_dir
from khe_bayes.study import hierarchical
from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.reconstruct import reconstruct_datasets
from khe_bayes.toolkit.sampling import SamplerSettings, fit

IPD = reconstruct_datasets(load_evidence(), 1, seed=3)[0]
BUILDERS = {
    "response": hierarchical.build_response_model,
    "severity_ordinal": lambda d: hierarchical.build_severity_model(d, kind="ordinal"),
    "severity_gaussian": lambda d: hierarchical.build_severity_model(d, kind="gaussian"),
    "shrinkage": hierarchical.build_shrinkage_model,
    "contrasts": hierarchical.build_contrast_model,
}
SPECS = sorted(p for p in specs_dir().glob("*.toml") if p.stem != "aggregate_proportions")


def _models():
    for name, build in BUILDERS.items():
        yield name, build(IPD)
    for path in SPECS:
        spec, family = load_spec(path)
        yield path.stem, family.build(spec, family.load_data(spec, path.parent))


@pytest.mark.parametrize(("name", "model"), list(_models()), ids=lambda x: getattr(x, "name", x))
def test_every_non_scalar_variable_and_data_container_has_named_dims(name, model):
    undimmed = [
        v.name
        for v in model.named_vars.values()
        if v.type.ndim > 0 and not model.named_vars_to_dims.get(v.name)
    ]
    assert undimmed == [], f"{name}: give these dims= (else ArviZ names them *_dim_0)"


@pytest.mark.parametrize("backend", ["nutpie", "pymc"])
def test_a_fit_carries_log_likelihood_data_groups_and_provenance(backend):
    model = BUILDERS["shrinkage"](IPD)
    settings = SamplerSettings(draws=50, tune=50, chains=2, seed=1, backend=backend)
    result = fit(model, settings, attrs={"spec": {"family": "x"}})
    assert {"posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"} <= set(
        result.children
    )
    loglik = result["log_likelihood"]["shrinkage"]
    assert loglik.dims == ("chain", "draw", "patient")
    assert result["observed_data"]["shrinkage"].dims == ("patient",)
    assert "combination" in result["constant_data"]
    for group in result.children:
        assert not any(d.endswith("_dim_0") for d in result[group].dims), group
    attrs = result["posterior"].attrs
    assert attrs["modeling_interface"] == "khe-bayes" and "created_at" in attrs
    assert json.loads(attrs["spec"]) == {"family": "x"}
    assert json.loads(attrs["sampler_settings"])["backend"] == backend
