"""Fitting the aggregate-proportion spec under each of its prior sets, and its result tables."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from khe_bayes.study.aggregate import (
    AggregateProportionSpec,
    ProportionData,
    ProportionPriors,
    build_proportion_model,
    closed_form_posterior,
    exact_zero_event_upper,
    grid_posterior,
    outcome_data,
    rule_of_three_upper,
)
from khe_bayes.study.evidence import Evidence
from khe_bayes.toolkit.priors import priors_as_data
from khe_bayes.toolkit.sampling import SamplerSettings, derive_seed, fit, with_seed
from khe_bayes.toolkit.side_by_side import Pairing, side_by_side, wilson_percent
from khe_bayes.toolkit.summary import select_draws, summarize, threshold_probabilities


@dataclass
class AggregateResult:
    """Per prior set: the DataTree; plus the tables built from them."""

    spec: AggregateProportionSpec
    data: list[ProportionData]
    fits: dict[str, xr.DataTree] = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    thresholds: pd.DataFrame | None = None
    zero_events: pd.DataFrame | None = None
    closed_form: pd.DataFrame | None = None
    side_by_side: pd.DataFrame | None = None


def describe_outcomes(data: list[ProportionData]) -> dict[str, str]:
    out = {"rate": "Probability of the outcome", "logit_rate": "Log-odds of the outcome"}
    for d in data:
        counts = ", ".join(f"{k}/{n}" for k, n in d.counts[:4])
        more = f" (+{len(d.counts) - 4} more)" if len(d.counts) > 4 else ""
        out[f"rate[{d.name}]"] = f"{d.description}: probability; data {counts}{more}"
        out[f"logit_rate[{d.name}]"] = f"{d.description}: log-odds"
    return out


def run_aggregate(
    spec: AggregateProportionSpec,
    evidence: Evidence,
    settings: SamplerSettings,
    progress: Callable[[str], None] = lambda _msg: None,
) -> AggregateResult:
    """Fit the spec once per prior set (default first) and build the result tables."""
    data = [outcome_data(evidence, o) for o in spec.outcome]
    result = AggregateResult(spec=spec, data=data)
    descriptions = describe_outcomes(data)
    tables, probs = [], []
    prior_sets = spec.prior_sets()
    for k, priors in enumerate(prior_sets, 1):
        progress(
            f"aggregate proportions, {k} of {len(prior_sets)}: prior {priors.label}: "
            f"{priors.describe()}"
        )
        with priors_as_data():  # prior sets of the same families share one compilation
            model = build_proportion_model(data, priors)
        run_settings = with_seed(settings, derive_seed(settings.seed, spec.name, priors.label))
        idata = fit(
            model,
            run_settings,
            posterior_predictive=True,
            attrs={"spec": spec.model_dump(mode="json"), "prior_set": priors.label},
            compiled_as=("aggregate", spec.name),
        )
        result.fits[priors.label] = idata
        table = summarize(idata, var_names=["rate"], descriptions=descriptions)
        table.insert(0, "prior", priors.label)
        table.insert(0, "model", spec.name)
        tables.append(table)
        p = threshold_probabilities(idata, spec.thresholds)
        p.insert(0, "prior", priors.label)
        probs.append(p)
    result.summary = pd.concat(tables)
    result.thresholds = pd.concat(probs, ignore_index=True)
    result.zero_events = zero_event_table(result)
    result.closed_form = closed_form_table(result)
    result.side_by_side = side_by_side(
        result.fits[spec.priors.label], aggregate_pairings(evidence, spec, data)
    )
    return result


def aggregate_pairings(
    evidence: Evidence, spec: AggregateProportionSpec, data: list[ProportionData]
) -> list[Pairing]:
    """Each single-count outcome as a percentage: printed value (or k/n), the Wilson interval
    the paper would have printed (the abstract prints none), and the posterior in percent."""
    pairings = []
    for d in data:
        if not d.is_single_count:
            continue
        k, n = d.counts[0]
        record = evidence[d.evidence_id]
        printed = getattr(record, "percent", None)
        lo, hi = wilson_percent(k, n)
        above = [
            t.value
            for t in spec.thresholds
            if t.quantity == f"rate[{d.name}]" and t.direction == ">"
        ]
        pairings.append(
            Pairing(
                label=f"{d.name} (%)",
                quantity=f"rate[{d.name}]",
                reported_estimate=printed if printed is not None else 100 * k / n,
                reported_lower=lo,
                reported_upper=hi,
                reported_note=f"{'printed' if printed is not None else 'count'} {k}/{n}; "
                "Wilson 95% CI computed, not printed",
                scale=100.0,
                threshold=100 * above[0] if above else None,
            )
        )
    return pairings


def _prior_by_label(spec: AggregateProportionSpec, label: str) -> ProportionPriors:
    return next(p for p in spec.prior_sets() if p.label == label)


def zero_event_table(result: AggregateResult, level: float = 0.95) -> pd.DataFrame:
    """For outcomes with 0 events: posterior upper bound beside the frequentist bounds.

    ``upper_credible`` is the posterior ``level`` quantile of the rate from the draws;
    ``upper_closed_form`` the exact quantile under a Beta prior (blank otherwise); ``rule_of_three``
    is 3/n; ``clopper_pearson_upper`` the exact one-sided bound 1 - (1 - level)^(1/n).
    """
    rows = []
    for d in result.data:
        if not (d.is_single_count and d.counts[0][0] == 0):
            continue
        _, n = d.counts[0]
        for label, idata in result.fits.items():
            draws = select_draws(idata, f"rate[{d.name}]")
            prior = _prior_by_label(result.spec, label)
            exact = (
                closed_form_posterior(d, prior.rate).ppf(level)
                if prior.rate is not None and prior.rate.dist == "Beta"
                else np.nan
            )
            rows.append(
                {
                    "outcome": d.name,
                    "events": 0,
                    "n": n,
                    "prior": label,
                    "posterior_mean": float(draws.mean()),
                    f"upper_credible_{level:g}": float(np.quantile(draws, level)),
                    "upper_closed_form": exact,
                    "rule_of_three": rule_of_three_upper(n),
                    "clopper_pearson_upper": exact_zero_event_upper(n, level),
                }
            )
    return pd.DataFrame(rows)


def closed_form_table(result: AggregateResult) -> pd.DataFrame:
    """Posterior mean by MCMC against an independent reference, for every prior set and outcome.

    The reference is the exact (mixture of) Beta posterior under a Beta prior and quadrature on
    a fine grid otherwise. ``z`` = (MCMC mean - reference mean) / MCSE; |z| > 4 signals a problem
    (probability about 6e-5 per row under correct sampling).
    """
    rows = []
    for label, idata in result.fits.items():
        prior = _prior_by_label(result.spec, label)
        conjugate = prior.rate is not None and prior.rate.dist == "Beta"
        mcse = az.mcse(idata, var_names=["rate"])["rate"]
        for d in result.data:
            ref = closed_form_posterior(d, prior.rate) if conjugate else grid_posterior(d, prior)
            draws = select_draws(idata, f"rate[{d.name}]")
            se = float(mcse.sel(outcome=d.name))
            rows.append(
                {
                    "outcome": d.name,
                    "prior": label,
                    "reference": "closed-form Beta" if conjugate else "quadrature",
                    "reference_mean": ref.mean(),
                    "mcmc_mean": float(draws.mean()),
                    "mcse": se,
                    "z": (float(draws.mean()) - ref.mean()) / se,
                    "reference_sd": ref.sd(),
                    "mcmc_sd": float(draws.std()),
                }
            )
    return pd.DataFrame(rows)
