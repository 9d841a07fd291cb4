"""The sweep store: fingerprints name what a task computed from; results (JSON or
InferenceData) round-trip exactly; a store never hands back a result of other inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.sweep import Task, fingerprint, load_finished, save_result

DATA = pd.DataFrame({"center": ["a", "b"], "y": [1.0, 2.0]})
SETTINGS = SamplerSettings(draws=100, tune=100, chains=2, seed=1)


def test_fingerprint_is_stable_and_sees_every_input():
    same = fingerprint("m", DATA.copy(), SETTINGS, 0)
    assert fingerprint("m", DATA, SETTINGS, 0) == same
    changed_value = DATA.assign(y=[1.0, 2.5])
    assert fingerprint("m", changed_value, SETTINGS, 0) != same
    assert fingerprint("m", DATA.rename(columns={"y": "z"}), SETTINGS, 0) != same
    assert fingerprint("m", DATA, SETTINGS.model_copy(update={"seed": 2}), 0) != same
    assert fingerprint("m", DATA, SETTINGS, 1) != same
    assert fingerprint("n", DATA, SETTINGS, 0) != same


def _idata() -> xr.DataTree:
    rng = np.random.default_rng(0)
    return xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset(
                {"rate": (("chain", "draw", "visit"), rng.random((2, 5, 2)))},
                coords={"chain": [0, 1], "draw": np.arange(5), "visit": ["6m", "12m"]},
                attrs={"model": "response"},
            ),
            "sample_stats": xr.Dataset(
                {"diverging": (("chain", "draw"), np.eye(2, 5, dtype=bool))},
                coords={"chain": [0, 1], "draw": np.arange(5)},
            ),
        }
    )


def test_stored_results_round_trip_and_other_inputs_are_not_picked_up(tmp_path):
    fit_task = Task("fit__dataset_000", print, (), fingerprint("fit", DATA, SETTINGS))
    json_task = Task("row", print, (), fingerprint("row", DATA))
    idata = _idata()
    save_result(tmp_path, fit_task, idata)
    save_result(tmp_path, json_task, {"mean": 0.25, "n": [1, 2]})
    back = load_finished(tmp_path, [fit_task, json_task])
    xr.testing.assert_identical(back["fit__dataset_000"].posterior, idata.posterior)
    xr.testing.assert_identical(back["fit__dataset_000"].sample_stats, idata.sample_stats)
    assert back["row"] == {"mean": 0.25, "n": [1, 2]}
    reseeded = Task(
        fit_task.key, print, (), fingerprint("fit", DATA, SETTINGS.model_copy(update={"seed": 9}))
    )
    assert load_finished(tmp_path, [reseeded]) == {}  # computed afresh, old result kept
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json", ".nc"]
