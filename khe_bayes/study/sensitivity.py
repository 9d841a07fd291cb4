"""Prior sensitivity and leave-one-center-out refits for the headline IPD quantities.

Prior grid: for each model's main effect a sceptical, a neutral and an enthusiastic prior
(:data:`EFFECT_PRIORS`), crossed with a weak and a strong prior on the between-center SD; each
combination is refitted on the first dataset and the headline quantity summarized.

Leave-one-center-out: each center's patients are dropped in turn and the model refitted; the
change in the posterior mean is reported in absolute terms and in units of the full-data
posterior SD.

Every refit is one task (:func:`grid_cell`, :func:`loco_cell`), run in this process or, with
:class:`SweepOptions`, on Dask distributed with each result stored (resumable). Seeds are
derived from the cell, not the order, so both ways give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm

from khe_bayes.study.hierarchical import (
    ResponsePriors,
    ShrinkagePriors,
    build_response_model,
    build_shrinkage_model,
)
from khe_bayes.toolkit.priors import Prior, prior, priors_as_data
from khe_bayes.toolkit.sampling import SamplerSettings, derive_seed, fit, with_seed
from khe_bayes.toolkit.summary import CI_PROB, diagnostics, select_draws
from khe_bayes.toolkit.sweep import IN_PROCESS, SweepOptions, Task, fingerprint, run_tasks

# every refit's convergence, kept in its row for diagnostics.csv
DIAGNOSTIC_KEYS = (
    "chains",
    "draws",
    "max_r_hat",
    "min_ess_bulk",
    "min_ess_tail",
    "divergences",
    "ok",
    "problems",
)


@dataclass(frozen=True)
class SensitivityTarget:
    """A model, its headline quantity, the prior field of its main effect and a threshold.
    ``build(data, priors, keep=None)``: ``keep`` marks the patients in the likelihood."""

    model: str
    quantity: str
    effect_field: str
    build: Callable[..., pm.Model]
    default_priors: object
    effect_priors: dict[str, Prior]
    center_sd_priors: dict[str, Prior]
    threshold: float


TARGETS: tuple[SensitivityTarget, ...] = (
    SensitivityTarget(
        model="response",
        quantity="kmp_effect",
        effect_field="kmp_effect",
        build=lambda data, priors, keep=None: build_response_model(data, priors, keep),
        default_priors=ResponsePriors(),
        effect_priors={
            "sceptical": prior("Normal", mu=0.0, sigma=0.5),
            "neutral": prior("Normal", mu=0.0, sigma=1.0),
            "enthusiastic": prior("Normal", mu=1.0, sigma=1.0),
        },
        center_sd_priors={
            "weak": prior("HalfNormal", sigma=2.0),
            "strong": prior("HalfNormal", sigma=0.25),
        },
        threshold=0.0,
    ),
    SensitivityTarget(
        model="shrinkage_combination",
        quantity="combination_effect",
        effect_field="combination_effect",
        build=lambda data, priors, keep=None: build_shrinkage_model(data, priors, keep),
        default_priors=ShrinkagePriors(),
        effect_priors={
            "sceptical": prior("Normal", mu=0.0, sigma=5.0),
            "neutral": prior("Normal", mu=0.0, sigma=15.0),
            "enthusiastic": prior("Normal", mu=10.0, sigma=10.0),
        },
        center_sd_priors={
            "weak": prior("HalfNormal", sigma=30.0),
            "strong": prior("HalfNormal", sigma=2.0),
        },
        threshold=10.0,
    ),
)


def _row(draws: np.ndarray, threshold: float) -> dict:
    lo, hi = az.hdi(draws, prob=CI_PROB)
    return {
        "mean": float(draws.mean()),
        "sd": float(draws.std()),
        "hdi95_lb": float(lo),
        "hdi95_ub": float(hi),
        "p_gt_0": float(np.mean(draws > 0)),
        "threshold": threshold,
        "p_gt_threshold": float(np.mean(draws > threshold)),
    }


def _refit_model(
    t: SensitivityTarget, data: pd.DataFrame, priors, keep: np.ndarray | None = None
) -> pm.Model:
    """The target's model as every sensitivity refit builds it: priors as data (a grid cell's
    priors are swapped in) and a likelihood weight per patient (leave-one-center-out gives a
    center's patients weight 0), so the prior grid and leave-one-center-out of a target share
    one compiled model. All weights 1 is the same density as the plain model."""
    keep = np.ones(len(data), dtype=bool) if keep is None else keep
    with priors_as_data():
        return t.build(data, priors, keep)


def _refit_label(t: SensitivityTarget) -> tuple[str, str]:
    return ("sensitivity_refit", t.model)


def grid_cell(
    t: SensitivityTarget,
    data: pd.DataFrame,
    effect_label: str,
    sd_label: str,
    settings: SamplerSettings,
) -> dict:
    """One refit of the prior grid: the target's headline quantity under one prior pair."""
    effect_prior, sd_prior = t.effect_priors[effect_label], t.center_sd_priors[sd_label]
    priors = t.default_priors.model_copy(
        update={t.effect_field: effect_prior, "center_sd": sd_prior}
    )
    run = with_seed(settings, derive_seed(settings.seed, t.model, effect_label, sd_label))
    idata = fit(_refit_model(t, data, priors), run, compiled_as=_refit_label(t))
    return {
        "model": t.model,
        "quantity": t.quantity,
        "effect_prior": f"{effect_label}: {effect_prior.label()}",
        "center_sd_prior": f"{sd_label}: {sd_prior.label()}",
        **_row(select_draws(idata, t.quantity), t.threshold),
        **diagnostics(idata),  # every refit's convergence, for diagnostics.csv
    }


def loco_cell(
    t: SensitivityTarget, data: pd.DataFrame, center: str | None, settings: SamplerSettings
) -> dict:
    """One leave-one-center-out refit (``center=None``: the full-data fit), as posterior mean
    and SD of the headline quantity plus the summary row. The center's patients are left out
    of the likelihood by weight 0 rather than dropped (build's ``keep``), so every refit of a
    target has the full data's shapes and one compiled model serves them all; the posterior of
    every quantity but the left-out center's own effect is that of the dropped-rows model."""
    label = _refit_label(t)
    in_center = (data["center"].astype(str) == center).to_numpy()
    if center is None:
        idata = fit(_refit_model(t, data, t.default_priors), settings, compiled_as=label)
        draws = select_draws(idata, t.quantity)
        return {"mean": float(draws.mean()), "sd": float(draws.std()), **diagnostics(idata)}
    run = with_seed(settings, derive_seed(settings.seed, t.model, "loco", center))
    try:
        model = _refit_model(t, data, t.default_priors, keep=~in_center)
        idata = fit(model, run, compiled_as=label)
    except ValueError as exc:  # e.g. too few KMP patients left
        return {"model": t.model, "quantity": t.quantity, "left_out": center, "note": str(exc)}
    return {
        "model": t.model,
        "quantity": t.quantity,
        "left_out": center,
        "n_left_out": int(in_center.sum()),
        **_row(select_draws(idata, t.quantity), t.threshold),
        "note": "",
        **diagnostics(idata),
    }


def _fingerprint(t: SensitivityTarget, data: pd.DataFrame, settings, *cell: str | None) -> str:
    """What a refit computes from: target (priors by label), data, settings and cell."""
    priors = {
        "effect": {k: p.label() for k, p in t.effect_priors.items()},
        "center_sd": {k: p.label() for k, p in t.center_sd_priors.items()},
    }
    target = (t.model, t.quantity, t.threshold, priors)
    return fingerprint(target, t.default_priors, data, settings, cell)


def prior_grid(
    data: pd.DataFrame,
    settings: SamplerSettings,
    targets: tuple[SensitivityTarget, ...] = TARGETS,
    progress: Callable[[str], None] = lambda _m: None,
    options: SweepOptions = IN_PROCESS,
) -> pd.DataFrame:
    """Headline quantity of each target under every (effect prior, center-SD prior) pair."""
    tasks = [
        Task(
            f"prior_grid__{t.model}__{e}__{sd}",
            grid_cell,
            (t, data, e, sd, settings),
            _fingerprint(t, data, settings, e, sd),
        )
        for t in targets
        for e in t.effect_priors
        for sd in t.center_sd_priors
    ]
    results = run_tasks(tasks, options, progress)
    return pd.DataFrame([results[task.key] for task in tasks])


def leave_one_center_out(
    data: pd.DataFrame,
    settings: SamplerSettings,
    targets: tuple[SensitivityTarget, ...] = TARGETS,
    progress: Callable[[str], None] = lambda _m: None,
    options: SweepOptions = IN_PROCESS,
) -> pd.DataFrame:
    """Refit without each center; report the shift of the headline posterior mean, in absolute
    terms and in units of the full-data posterior SD."""
    centers = sorted(data["center"].astype(str).unique())
    tasks = []
    for t in targets:
        tasks.append(
            Task(
                f"loco__{t.model}__all_centers",
                loco_cell,
                (t, data, None, settings),
                _fingerprint(t, data, settings),
            )
        )
        tasks += [
            Task(
                f"loco__{t.model}__without_{i}",
                loco_cell,
                (t, data, c, settings),
                _fingerprint(t, data, settings, c),
            )
            for i, c in enumerate(centers)
        ]
    results = run_tasks(tasks, options, progress)
    rows, reference = [], []
    for t in targets:
        full = results[f"loco__{t.model}__all_centers"]
        reference.append({"model": t.model, **{k: full[k] for k in DIAGNOSTIC_KEYS if k in full}})
        for i in range(len(centers)):
            row = dict(results[f"loco__{t.model}__without_{i}"])
            if "mean" in row:
                row["full_mean"] = full["mean"]
                row["shift"] = row["mean"] - full["mean"]
                row["shift_in_full_sd"] = row["shift"] / full["sd"]
            rows.append(row)
    columns = [
        "model",
        "quantity",
        "left_out",
        "n_left_out",
        "full_mean",
        "mean",
        "sd",
        "hdi95_lb",
        "hdi95_ub",
        "p_gt_0",
        "threshold",
        "p_gt_threshold",
        "shift",
        "shift_in_full_sd",
        "note",
        *DIAGNOSTIC_KEYS,
    ]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table.attrs["reference_fits"] = reference  # the all-centers fits' diagnostics
    return table
