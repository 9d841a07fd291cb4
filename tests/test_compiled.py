"""Compile once, sample many: a re-used compiled model must be the model of the new data.

The structure tests need no sampling: every builder's data must enter through ``pm.Data``, so a
template built on dataset A with dataset B's data swapped in has exactly the log density and
deterministics of a fresh build on B. Dataset B differs from A in every column and (except for
the KMP-only shrinkage model) in its KMP share, so a constant computed from A's data and baked
into the graph would be caught.
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
import pandas as pd
import pymc as pm
import pytest

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.hierarchical import (
    build_contrast_model,
    build_response_model,
    build_response_model_cells,
    build_severity_model,
    build_shrinkage_model,
)
from khe_bayes.toolkit.compiled import (
    CompiledSampler,
    SamplerCache,
    model_data,
    structure_key,
)
from khe_bayes.toolkit.sampling import SamplerSettings, fit

BUILDERS = {
    "response": build_response_model,
    "response_cells": build_response_model_cells,
    "severity_ordinal": partial(build_severity_model, kind="ordinal"),
    "severity_gaussian": partial(build_severity_model, kind="gaussian"),
    "shrinkage": build_shrinkage_model,
    "contrasts": build_contrast_model,
}


@pytest.fixture(scope="module")
def datasets():
    from khe_bayes.study.reconstruct import reconstruct_datasets

    a, b = reconstruct_datasets(load_evidence(), 2, seed=11)
    b = b.copy()
    b["age_months"] = b["age_months"] * 1.3
    b["shrinkage_12m"] = b["shrinkage_12m"] + 2.0
    return a, b


def _other_kmp_share(data):
    """One non-KMP patient relabelled KMP (the shrinkage model, which keeps only KMP patients,
    would then have another structure, so it is checked without this change)."""
    data = data.copy()
    data.loc[data.index[data["kmp"] == 0][0], "kmp"] = 1
    return data


def _logp_and_deterministics(model: pm.Model, point: dict) -> list[np.ndarray]:
    logp = model.compile_logp()(point)
    outs = model.replace_rvs_by_values(model.deterministics)
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    return [np.asarray(logp), *fn(point)]


@pytest.mark.parametrize("name", BUILDERS)
def test_swapping_data_into_a_built_model_gives_the_model_of_the_new_data(name, datasets):
    a, b = datasets
    if name != "shrinkage":
        b = _other_kmp_share(b)
    build = BUILDERS[name]
    template, fresh = build(a), build(b)
    assert structure_key(template) == structure_key(fresh)
    before = _logp_and_deterministics(template, template.initial_point(0))
    with template:
        pm.set_data(model_data(fresh))
    rng = np.random.default_rng(0)
    point = {k: v + rng.normal(0, 0.2, size=np.shape(v)) for k, v in fresh.initial_point(0).items()}
    got = _logp_and_deterministics(template, point)
    want = _logp_and_deterministics(fresh, point)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert not np.allclose(before[0], got[0])  # the data swap changed the model


def test_structure_key_separates_different_shapes(datasets):
    a, _ = datasets
    fewer = a.copy()
    fewer.loc[0, "response_12m"] = np.nan
    assert structure_key(build_response_model(a)) != structure_key(build_response_model(fewer))


def test_response_cells_do_not_depend_on_missingness(datasets):
    """The cell model's likelihood is over a fixed grid (center x KMP x response pattern, a
    missing visit being a pattern), so a dataset with a missing visit shares its sampler."""
    a, _ = datasets
    fewer = a.copy()
    fewer.loc[0, "response_12m"] = np.nan
    cells = build_response_model_cells
    assert structure_key(cells(a)) == structure_key(cells(fewer))


def test_structure_key_separates_different_priors(datasets):
    """A cached sampler must not serve a model with other priors on data of the same shape (the
    priors are constants of the compiled graph, not data); the same priors on other data share
    one key (checked for every builder above)."""
    from khe_bayes.study.hierarchical.response import ResponsePriors
    from khe_bayes.study.hierarchical.severity import SeverityPriors
    from khe_bayes.toolkit.priors import prior

    a, _ = datasets
    default = structure_key(build_response_model(a))
    wider = ResponsePriors(intercept=prior("Normal", mu=1.0, sigma=2.0))
    assert structure_key(build_response_model(a, wider)) != default
    assert structure_key(build_response_model(a, ResponsePriors())) == default
    flatter = SeverityPriors(baseline_category_concentration=2.0)  # an array constant
    assert structure_key(build_severity_model(a, "ordinal", flatter)) != structure_key(
        build_severity_model(a, "ordinal")
    )


def test_a_sweep_compiles_once_and_matches_a_fresh_compile(datasets):
    """Three datasets through one cached sampler: one compilation, and the draws for a dataset
    are identical to those of a model compiled for that dataset alone (same seed)."""
    a, b = datasets
    settings = SamplerSettings(draws=200, tune=200, chains=2, seed=5, backend="nutpie")
    cache = SamplerCache()
    reused = []
    for data in (a, b, a):
        model = build_response_model(data)
        reused.append(cache.sampler_for(model, "response").sample(model, settings))
    assert cache.compilations == 1
    alone = fit(build_response_model(b), settings)
    np.testing.assert_array_equal(
        reused[1].posterior["kmp_effect"].values, alone.posterior["kmp_effect"].values
    )
    assert not np.array_equal(
        reused[0].posterior["kmp_effect"].values, reused[1].posterior["kmp_effect"].values
    )
    np.testing.assert_array_equal(  # same data, same seed, re-used sampler: same draws
        reused[0].posterior["kmp_effect"].values, reused[2].posterior["kmp_effect"].values
    )
    sampler = cache.sampler_for(build_response_model(a), "response")
    outcome = next(name for name in model_data(model) if "observed" in name)
    halves = model_data(model)[outcome] + 0.5
    with pytest.raises(ValueError, match="holds integers"):  # not truncated silently
        sampler.sample_data({outcome: halves}, settings)


def test_raw_trace_conversion_matches_nutpies_own(datasets):
    """The lean conversion of nutpie's raw trace keeps exactly what nutpie's own ArviZ
    conversion gives for the posterior (values, dims, coordinates) and the scalar sample stats;
    same seed, so both runs draw the same values."""
    import nutpie

    from khe_bayes.toolkit.compiled import raw_trace_to_inference_data

    model = build_response_model(datasets[0])
    compiled = nutpie.compile_pymc_model(model)
    kwargs = dict(draws=60, tune=40, chains=2, seed=3, progress_bar=False, save_warmup=False)
    reference = nutpie.sample(compiled, **kwargs)
    draws, stats = nutpie.sample(compiled, return_raw_trace=True, **kwargs).get_arrow_trace()
    coords = {name: pd.Index(values) for name, values in compiled.coords.items()}
    transformed = {"center_sd_log__", "patient_sd_log__"}
    lean = raw_trace_to_inference_data(draws, stats, coords, drop=transformed)
    assert set(lean.posterior.data_vars) == set(reference.posterior.data_vars) - transformed
    for name, values in lean.posterior.data_vars.items():
        want = reference.posterior[name]
        assert values.dims == want.dims
        np.testing.assert_array_equal(values.values, want.values)
        for dim in values.dims:
            np.testing.assert_array_equal(values[dim].values, want[dim].values)
    assert lean.posterior.sizes["draw"] == 60
    assert {"diverging", "energy", "step_size", "n_steps", "depth"} <= set(lean.sample_stats)
    for name, values in lean.sample_stats.data_vars.items():
        np.testing.assert_array_equal(values.values, reference.sample_stats[name].values)


_DRAWS_DIGEST = """
import hashlib, warnings
warnings.filterwarnings("ignore")
from khe_bayes.toolkit.compiled import CompiledSampler
from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.hierarchical import build_severity_model
from khe_bayes.study.reconstruct import reconstruct_datasets
from khe_bayes.toolkit.sampling import SamplerSettings
model = build_severity_model(reconstruct_datasets(load_evidence(), 1, seed=5)[0], kind="ordinal")
settings = SamplerSettings(draws=100, tune=100, chains=1, seed=3, backend="nutpie")
posterior = CompiledSampler(model).sample(model, settings).posterior
draws = b"".join(posterior[v].values.tobytes() for v in sorted(posterior))
print(hashlib.sha256(draws).hexdigest())
"""


def test_same_seed_gives_identical_draws_whether_numba_compiles_afresh_or_loads_its_cache():
    """Regression: with numba's fastmath, the ordinal model's code loaded from PyTensor's
    on-disk numba cache rounded differently from freshly compiled code, so the same seed gave
    other draws in a process that found the cache warm (a same-seed reanalysis differed in CI).
    Three processes: one fills the cache, one reads it, one compiles without it; the draws must
    agree to the bit."""
    import subprocess
    import sys

    def start(cache: bool) -> subprocess.Popen:
        env = {**os.environ, "PYTENSOR_FLAGS": f"numba__cache={cache}"}
        return subprocess.Popen(
            [sys.executable, "-c", _DRAWS_DIGEST],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def digest(process: subprocess.Popen) -> str:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-2000:]
        return out.strip().splitlines()[-1]

    digest(start(cache=True))  # fills the cache if it is cold
    from_cache, afresh = start(cache=True), start(cache=False)  # side by side: 2 cores
    assert digest(from_cache) == digest(afresh)


def test_graph_digest_is_the_same_in_another_process(datasets):
    """Stored fits are fingerprinted with the model's graph digest, so a store is only
    resumable if the digest does not depend on the process (memory addresses, hash seeds)."""
    import subprocess
    import sys

    from khe_bayes.toolkit.compiled import graph_digest

    script = (
        "from functools import partial\n"
        "from khe_bayes.toolkit.compiled import graph_digest\n"
        "from khe_bayes.study.evidence import load_evidence\n"
        "from khe_bayes.study.hierarchical import *\n"
        "from khe_bayes.study.reconstruct import reconstruct_datasets\n"
        "builders = [build_response_model, build_response_model_cells,\n"
        "    partial(build_severity_model, kind='ordinal'),\n"
        "    partial(build_severity_model, kind='gaussian'), build_shrinkage_model,\n"
        "    build_contrast_model]\n"
        "data = reconstruct_datasets(load_evidence(), 2, seed=11)[0]\n"
        "print(' '.join(graph_digest(build(data)) for build in builders))\n"
    )
    here = " ".join(graph_digest(build(datasets[0])) for build in BUILDERS.values())
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == here.split()


def test_compiling_leaves_the_model_and_its_structure_key_unchanged():
    """nutpie's compilation names a bare constant in a Deterministic after it, which changed the
    compiled model's own key, so sampling it raised "model structure differs"; constants' names
    are no longer part of the key."""
    import pymc as pm

    from khe_bayes.toolkit.compiled import CompiledSampler, _structure_key, structure_key

    with pm.Model(coords={"g": ["a", "b"]}) as model:
        x = pm.Normal("x", dims="g")
        pm.Deterministic("c", pm.math.constant(np.array([1.0, 2.0])), dims="g")
        obs = pm.Data("y_observed", np.array([0.1, 0.2]), dims="g")
        pm.Normal("y", x, 1.0, observed=obs, dims="g")
    before = structure_key(model)
    sampler = CompiledSampler(model)
    assert structure_key(model) == before == sampler.key
    # structure_key remembers a model's key; compute it afresh from the compiled-over model
    assert _structure_key(model) == before
    result = sampler.sample(model, SamplerSettings(draws=20, tune=20, chains=1, seed=1))
    assert result["posterior"]["c"].dims == ("chain", "draw", "g")


def test_remembered_structure_key_follows_a_change_of_data_shape():
    """structure_key remembers each model's key; pm.set_data with another shape must still give
    the key of the new shape (a stale key would let one compiled sampler take data it was not
    compiled for)."""
    import pymc as pm

    with pm.Model(coords={"g": range(3)}) as model:
        y = pm.Data("y_observed", np.zeros(3), dims="g")
        pm.Normal("y", pm.Normal("mu"), 1.0, observed=y, dims="g")
    three = structure_key(model)
    with model:
        pm.set_data({"y_observed": np.zeros(4)}, coords={"g": range(4)})
    assert structure_key(model) != three
    with model:
        pm.set_data({"y_observed": np.ones(3)}, coords={"g": range(3)})
    assert structure_key(model) == three
    with model:  # same shape, other labels: coords are part of the key
        pm.set_data({"y_observed": np.ones(3)}, coords={"g": ["a", "b", "c"]})
    assert structure_key(model) != three


def test_priors_swapped_in_as_data_give_the_draws_of_a_fresh_compile(datasets):
    """With priors as data (a prior grid), the sampler compiled for one prior and given
    another must behave exactly as a compilation for that other prior: same seed, identical
    draws. This includes where the chains start: PyMC's initial point is the prior's support
    point (mu for a Normal), which the compiled initial-point function reads from the model it
    was compiled from; without updating that model, a cell's draws depended on which cell had
    been compiled first (so a 2-worker run differed from a 1-process one)."""
    from khe_bayes.study.hierarchical import ResponsePriors
    from khe_bayes.toolkit.priors import prior, priors_as_data

    a, _ = datasets
    settings = SamplerSettings(draws=100, tune=100, chains=2, seed=9, backend="nutpie")

    def build(mu: float):
        with priors_as_data():
            return build_response_model(
                a, ResponsePriors(kmp_effect=prior("Normal", mu=mu, sigma=0.5))
            )

    cache = SamplerCache()
    cache.sampler_for(build(0.0), "grid").sample(build(0.0), settings)
    reused = cache.sampler_for(build(3.0), "grid").sample(build(3.0), settings)
    assert cache.compilations == 1
    alone = CompiledSampler(build(3.0)).sample(build(3.0), settings)
    np.testing.assert_array_equal(
        reused.posterior["kmp_effect"].values, alone.posterior["kmp_effect"].values
    )


def test_sampling_other_data_leaves_the_compiled_from_model_unchanged(datasets):
    """The sampler sets each fit's data on the model its initial-point function reads; that
    must be a private copy, not the caller's model: after another dataset is sampled through a
    sampler compiled from model A, A still holds A's data (a caller re-using A, e.g. for its
    posterior predictive, would otherwise get B's data without notice)."""
    a, b = datasets
    settings = SamplerSettings(draws=20, tune=20, chains=1, seed=2, backend="nutpie")
    model_a, model_b = build_response_model(a), build_response_model(b)
    before = model_data(model_a)
    cache = SamplerCache()
    cache.sampler_for(model_a, "private").sample(model_a, settings)
    cache.sampler_for(model_b, "private").sample(model_b, settings)
    assert cache.compilations == 1
    after = model_data(model_a)
    assert any(not np.array_equal(before[k], model_data(model_b)[k]) for k in before)
    for name, values in before.items():
        np.testing.assert_array_equal(after[name], values)
