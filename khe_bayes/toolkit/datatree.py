"""Results as ArviZ 1.x data: an ``xarray.DataTree`` with one child group per ArviZ group
(``posterior``, ``sample_stats``, ``log_likelihood``, ``posterior_predictive``,
``observed_data``, ``constant_data``).

These helpers are the only place that knows how a result is assembled, stamped, saved and
loaded, so every sampling path (PyMC's ``pm.sample``, the compile-once nutpie sampler, pooled
reconstructions) produces the same layout.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pymc as pm
import xarray as xr

MODELING_INTERFACE = "khe-bayes"


def tree(groups: Mapping[str, xr.Dataset]) -> xr.DataTree:
    """A DataTree with one child per non-empty group."""
    return xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items() if ds is not None})


def group_names(result: xr.DataTree) -> list[str]:
    """The ArviZ groups a result holds (``posterior``, ``sample_stats``, ...)."""
    return list(result.children)


def dataset(result: xr.DataTree, group: str) -> xr.Dataset:
    """One group as a plain ``xarray.Dataset`` (a copy of the node's variables and attrs)."""
    return result[group].to_dataset()


def set_group(result: xr.DataTree, group: str, ds: xr.Dataset) -> None:
    """Add or replace one group in place."""
    result[group] = xr.DataTree(ds)


def model_groups(model: pm.Model) -> dict[str, xr.Dataset]:
    """``observed_data`` and ``constant_data`` of a built model, with the model's dims (as PyMC
    itself attaches them after ``pm.sample``)."""
    from pymc.backends.arviz import (
        coords_and_dims_for_inferencedata,
        dict_to_dataset,
        find_constants,
        find_observations,
    )

    coords, dims = coords_and_dims_for_inferencedata(model)
    out = {}
    for group, values in (
        ("observed_data", find_observations(model)),
        ("constant_data", find_constants(model)),
    ):
        if values:
            out[group] = dict_to_dataset(
                values, inference_library=pm, coords=coords, dims=dims, sample_dims=[]
            )
    return out


def stamp(result: xr.DataTree, attrs: Mapping[str, str] | None = None) -> None:
    """Provenance on every group: ``created_at``, library versions and the
    ``modeling_interface`` (khe-bayes and its version); ``attrs`` go on the posterior."""
    common = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "modeling_interface": MODELING_INTERFACE,
        "modeling_interface_version": _version("khe-bayes"),
        "inference_library_pymc_version": _version("pymc"),
        "arviz_version": _version("arviz"),
    }
    for name in group_names(result):
        for key, value in common.items():
            result[name].attrs.setdefault(key, value)
    for key, value in (attrs or {}).items():
        result["posterior"].attrs[key] = value


@functools.cache  # an installed version does not change while the process runs
def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def save(result: xr.DataTree, path: Path) -> None:
    """Write a result as netCDF (h5netcdf engine), one HDF5 group per ArviZ group."""
    result.to_netcdf(path, engine="h5netcdf")


def load(path: Path) -> xr.DataTree:
    """Read a saved result fully into memory (the file is closed afterwards)."""
    with xr.open_datatree(path, engine="h5netcdf") as lazy:
        return lazy.load().copy()
