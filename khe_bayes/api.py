"""The Python API: what a notebook or a methodologist's script calls.

    import khe_bayes as kb

    spec = kb.load_spec("binomial_example")            # a bundled spec, or a path to a TOML
    result = kb.fit_spec(spec, draws=1000, chains=4)   # an ArviZ DataTree, spec in its attrs
    kb.summarize(result)                               # mean, sd, median, HDI, ETI, diagnostics
    model = kb.rebuild_model(result)                   # the pm.Model the result came from

    reanalysis = kb.reanalyze("results/run1", datasets=4)   # the full study reanalysis

Every function here is a thin layer over the modules the CLI uses too, so both give the same
numbers for the same settings and seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pymc as pm
import xarray as xr

from khe_bayes.families import FAMILIES, Family
from khe_bayes.families import load_spec as _load_spec_file
from khe_bayes.resources import spec_path
from khe_bayes.toolkit.sampling import SamplerSettings, fit
from khe_bayes.toolkit.summary import summarize as _summarize


def load_spec(spec: str | Path) -> tuple[Any, Family]:
    """A validated spec and its family. ``spec`` is a path to a TOML file or the name of a
    bundled spec (``"binomial_example"``, ``"khe_response"``, ...; see
    :func:`khe_bayes.resources.bundled_specs`)."""
    return _load_spec_file(spec_path(spec))


def fit_spec(spec: str | Path | tuple[Any, Family], **sampler: Any) -> xr.DataTree:
    """Fit a spec and return its posterior as an ArviZ DataTree with ``posterior``,
    ``sample_stats``, ``log_likelihood``, ``posterior_predictive``, ``observed_data`` and
    ``constant_data``; the spec is stored in ``posterior.attrs["spec"]`` (JSON).

    ``sampler`` overrides the spec's ``[sampler]`` table (``draws``, ``tune``, ``chains``,
    ``target_accept``, ``seed``, ``backend``, ...). Data files named in a spec are read
    relative to the spec's folder.
    """
    if isinstance(spec, tuple):
        (model_spec, family), folder = spec, Path.cwd()
    else:
        path = spec_path(spec)
        (model_spec, family), folder = _load_spec_file(path), path.resolve().parent
    base = getattr(model_spec, "sampler", SamplerSettings())
    settings = SamplerSettings.model_validate({**base.model_dump(), **sampler})
    model = family.build(model_spec, family.load_data(model_spec, folder))
    return fit(
        model,
        settings,
        posterior_predictive=True,
        attrs={
            "spec": model_spec.model_dump(mode="json"),
            "family": family.name,
            "spec_folder": str(folder),
        },
    )


def summarize(result: xr.DataTree, var_names: list[str] | None = None) -> pd.DataFrame:
    """Posterior summary of a fitted spec: its family's summary variables (or ``var_names``)
    with descriptions, 95% HDI and equal-tailed interval, median and convergence flags."""
    if var_names is None and "spec" in result["posterior"].attrs:
        model_spec, family = spec_of(result)
        names = [v for v in family.summary_vars(model_spec) if v in result["posterior"]]
        return _summarize(result, names, family.descriptions_for(model_spec))
    return _summarize(result, var_names)


def spec_of(result: xr.DataTree) -> tuple[Any, Family]:
    """The validated spec and family stored in a result's attrs."""
    raw = json.loads(result["posterior"].attrs["spec"])
    family: Family = FAMILIES[raw["family"]]
    return family.spec.model_validate(raw), family


def rebuild_model(result: xr.DataTree, spec_folder: str | Path | None = None) -> pm.Model:
    """Rebuild the ``pm.Model`` a result came from, from the spec in its attrs. Data files are
    read relative to ``spec_folder`` (default: the folder recorded when it was fitted)."""
    model_spec, family = spec_of(result)
    folder = Path(spec_folder or result["posterior"].attrs.get("spec_folder", "."))
    return family.build(model_spec, family.load_data(model_spec, folder))


def reanalyze(out: str | Path | None = None, *, overwrite: bool = False, **settings: Any):
    """Run the full reanalysis of the published study and return its result object
    (:class:`khe_bayes.study.reanalysis.ReanalysisResult`: the evidence, audit, aggregate and
    patient-level fits, checks and tables). With ``out`` the result directory (report, CSVs,
    netCDF files, manifest) is written atomically, as ``khe-bayes reanalyze --out`` does.

    ``settings`` are :class:`khe_bayes.study.reanalysis.ReanalysisSettings` fields (``datasets``,
    ``ipd_file``, ``sensitivity``, ...) plus sampler fields (``draws``, ``chains``, ``seed``,
    ...).
    """
    from khe_bayes.study.reanalysis import ReanalysisSettings, run_reanalysis

    sampler_fields = set(SamplerSettings.model_fields)
    sampler = SamplerSettings(**{k: v for k, v in settings.items() if k in sampler_fields})
    rest = {k: v for k, v in settings.items() if k not in sampler_fields}
    return run_reanalysis(
        ReanalysisSettings(sampler=sampler, **rest),
        Path(out) if out is not None else None,
        overwrite=overwrite,
    )
