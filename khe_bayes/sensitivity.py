"""Prior sensitivity and leave-one-center-out refits for the headline IPD quantities.

Prior grid: for each model's main effect a sceptical, a neutral and an enthusiastic prior
(:data:`EFFECT_PRIORS`), crossed with a weak and a strong prior on the between-center SD; each
combination is refitted on the first dataset and the headline quantity summarized.

Leave-one-center-out: each center's patients are dropped in turn and the model refitted; the
change in the posterior mean is reported in absolute terms and in units of the full-data
posterior SD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm

from khe_bayes.hierarchical import (
    ResponsePriors,
    ShrinkagePriors,
    build_response_model,
    build_shrinkage_model,
)
from khe_bayes.priors import Prior, prior
from khe_bayes.sampling import SamplerSettings, derive_seed, fit, with_seed
from khe_bayes.summary import HDI_PROB, select_draws


@dataclass(frozen=True)
class SensitivityTarget:
    """A model, its headline quantity, the prior field of its main effect and a threshold."""

    model: str
    quantity: str
    effect_field: str
    build: Callable[[pd.DataFrame, object], pm.Model]
    default_priors: object
    effect_priors: dict[str, Prior]
    center_sd_priors: dict[str, Prior]
    threshold: float


TARGETS: tuple[SensitivityTarget, ...] = (
    SensitivityTarget(
        model="response",
        quantity="kmp_effect",
        effect_field="kmp_effect",
        build=lambda data, priors: build_response_model(data, priors),
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
        build=lambda data, priors: build_shrinkage_model(data, priors),
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
    lo, hi = az.hdi(draws, hdi_prob=HDI_PROB)
    return {
        "mean": float(draws.mean()),
        "sd": float(draws.std()),
        "hdi_2.5%": float(lo),
        "hdi_97.5%": float(hi),
        "p_gt_0": float(np.mean(draws > 0)),
        "threshold": threshold,
        "p_gt_threshold": float(np.mean(draws > threshold)),
    }


def prior_grid(
    data: pd.DataFrame,
    settings: SamplerSettings,
    targets: tuple[SensitivityTarget, ...] = TARGETS,
    progress: Callable[[str], None] = lambda _m: None,
) -> pd.DataFrame:
    """Headline quantity of each target under every (effect prior, center-SD prior) pair."""
    rows = []
    for t in targets:
        for effect_label, effect_prior in t.effect_priors.items():
            for sd_label, sd_prior in t.center_sd_priors.items():
                progress(f"prior sensitivity: {t.model}, {effect_label} x {sd_label}")
                priors = t.default_priors.model_copy(
                    update={t.effect_field: effect_prior, "center_sd": sd_prior}
                )
                run = with_seed(
                    settings, derive_seed(settings.seed, t.model, effect_label, sd_label)
                )
                idata = fit(
                    t.build(data, priors),
                    run,
                    compiled_as=("prior_grid", t.model, effect_label, sd_label),
                )
                rows.append(
                    {
                        "model": t.model,
                        "quantity": t.quantity,
                        "effect_prior": f"{effect_label}: {effect_prior.label()}",
                        "center_sd_prior": f"{sd_label}: {sd_prior.label()}",
                        **_row(select_draws(idata, t.quantity), t.threshold),
                        "divergences": int(idata.sample_stats["diverging"].sum()),
                    }
                )
    return pd.DataFrame(rows)


def leave_one_center_out(
    data: pd.DataFrame,
    settings: SamplerSettings,
    targets: tuple[SensitivityTarget, ...] = TARGETS,
    progress: Callable[[str], None] = lambda _m: None,
) -> pd.DataFrame:
    """Refit without each center; report the shift of the headline posterior mean."""
    rows = []
    for t in targets:
        label = ("default_priors", t.model)
        full = select_draws(
            fit(t.build(data, t.default_priors), settings, compiled_as=label), t.quantity
        )
        for center in sorted(data["center"].astype(str).unique()):
            progress(f"leave-one-center-out: {t.model}, without {center}")
            subset = data[data["center"].astype(str) != center].reset_index(drop=True)
            run = with_seed(settings, derive_seed(settings.seed, t.model, "loco", center))
            try:
                model = t.build(subset, t.default_priors)
                draws = select_draws(fit(model, run, compiled_as=label), t.quantity)
            except ValueError as exc:  # e.g. too few KMP patients left
                rows.append(
                    {"model": t.model, "quantity": t.quantity, "left_out": center, "note": str(exc)}
                )
                continue
            rows.append(
                {
                    "model": t.model,
                    "quantity": t.quantity,
                    "left_out": center,
                    "n_left_out": int((data["center"].astype(str) == center).sum()),
                    "full_mean": float(full.mean()),
                    **_row(draws, t.threshold),
                    "shift": float(draws.mean() - full.mean()),
                    "shift_in_full_sd": float((draws.mean() - full.mean()) / full.std()),
                    "note": "",
                }
            )
    return pd.DataFrame(rows)
