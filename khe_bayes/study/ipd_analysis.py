"""The IPD stage: every hierarchical model fitted to M reconstructed datasets (or to the user's
IPD), pooled, summarized, and used to replicate patient data for the posterior-predictive checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import pandas as pd
import pymc as pm

from khe_bayes.study.evidence import Evidence
from khe_bayes.study.hierarchical import (
    build_contrast_model,
    build_response_model,
    build_severity_model,
    build_shrinkage_model,
)
from khe_bayes.study.hierarchical.response import response_long
from khe_bayes.study.hierarchical.severity import severity_long
from khe_bayes.study.identification import SET, identification_table, prior_moments
from khe_bayes.study.statistics import recompute
from khe_bayes.toolkit.model_comparison import compare_loo
from khe_bayes.toolkit.pooling import (
    PooledFit,
    dataset_tasks,
    pool_fits,
    pooled_diagnostics,
    pooled_summary,
    reconstruction_variance_share,
)
from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.side_by_side import Pairing, side_by_side
from khe_bayes.toolkit.sweep import IN_PROCESS, SweepOptions, run_tasks


@dataclass(frozen=True)
class IPDModel:
    """One hierarchical model of the reanalysis: how to build it, what to keep and describe."""

    name: str
    build: Callable[[pd.DataFrame], pm.Model]
    var_names: list[str]
    descriptions: dict[str, str]


IPD_MODELS: tuple[IPDModel, ...] = (
    IPDModel(
        "response",
        build_response_model,
        [
            "response_rate",
            "response_rate_by_kmp",
            "center_response_rate",
            "kmp_effect",
            "center_sd",
            "patient_sd",
        ],
        {
            "response_rate": "Response probability, cohort KMP mix, typical center",
            "response_rate_by_kmp": "Response probability by KMP status, typical center",
            "center_response_rate": "Response probability at each center (shrunk)",
            "kmp_effect": "Log-odds ratio of response, KMP vs non-KMP",
            "center_sd": "Between-center SD of the log-odds of response",
            "patient_sd": "Between-patient SD of the log-odds of response (a patient's two "
            "visits are correlated)",
        },
    ),
    IPDModel(
        "severity_ordinal",
        partial(build_severity_model, kind="ordinal"),
        ["severity_change_6m", "severity_change_12m", "expected_score", "patient_sd", "center_sd"],
        {
            "severity_change_6m": "Change in expected severity score, baseline to 6 months "
            "(ordinal model, typical patient)",
            "severity_change_12m": "Change in expected severity score, baseline to 12 months "
            "(ordinal model, typical patient)",
            "expected_score": "Expected severity score by visit (ordinal model)",
            "patient_sd": "Between-patient SD (log-odds scale)",
            "center_sd": "Between-center SD (log-odds scale)",
        },
    ),
    IPDModel(
        "severity_gaussian",
        partial(build_severity_model, kind="gaussian"),
        [
            "severity_change_6m",
            "severity_change_12m",
            "expected_score",
            "patient_sd",
            "center_sd",
            "sigma",
        ],
        {
            "severity_change_6m": "Mean change in severity score, baseline to 6 months "
            "(Gaussian model)",
            "severity_change_12m": "Mean change in severity score, baseline to 12 months "
            "(Gaussian model)",
            "expected_score": "Mean severity score by visit (Gaussian model)",
            "patient_sd": "Between-patient SD of the score",
            "center_sd": "Between-center SD of the score",
            "sigma": "Residual SD of the score",
        },
    ),
    IPDModel(
        "shrinkage_combination",
        build_shrinkage_model,
        ["combination_effect", "severity_slope", "intercept", "center_sd", "sigma"],
        {
            "combination_effect": "Shrinkage difference (points), combination minus sirolimus "
            "alone, KMP patients of equal baseline severity (not randomized)",
            "severity_slope": "Shrinkage change per baseline severity point",
            "intercept": "Expected shrinkage (%), sirolimus alone, mean baseline severity",
            "center_sd": "Between-center SD of shrinkage (points)",
            "sigma": "Residual SD of shrinkage (points)",
        },
    ),
    IPDModel(
        "kmp_contrasts",
        build_contrast_model,
        [
            "age_difference_months",
            "shrinkage_difference",
            "age_mean",
            "shrinkage_mean",
            "center_sd",
        ],
        {
            "age_difference_months": "Mean age at treatment, non-KMP minus KMP (months)",
            "shrinkage_difference": "Mean shrinkage, non-KMP minus KMP (points)",
            "age_mean": "Mean age at treatment by KMP status (months)",
            "shrinkage_mean": "Mean shrinkage by KMP status (%)",
            "center_sd": "Between-center SD of shrinkage (points)",
        },
    ),
)


# the quantities of the headline tables (those labelled "set by assumptions" leave them); the
# Monte Carlo rule (pooled-mean error < 10% of the posterior SD) is applied to these
HEADLINE = [
    "response_rate[6m]",
    "response_rate[12m]",
    "response_rate_by_kmp[12m, non_kmp]",
    "response_rate_by_kmp[12m, kmp]",
    "kmp_effect",
    "severity_change_6m",
    "severity_change_12m",
    "combination_effect",
    "age_difference_months",
    "shrinkage_difference",
    "center_sd",
]


@dataclass
class IPDResult:
    source: str  # "reconstruction" or the IPD file
    datasets: list[pd.DataFrame]
    fits: dict[str, PooledFit] = field(default_factory=dict)
    summary: pd.DataFrame | None = None
    variance_share: pd.DataFrame | None = None
    diagnostics: pd.DataFrame | None = None
    identification: pd.DataFrame | None = None
    prior_variance: dict[tuple[str, str], float] = field(default_factory=dict)
    prior_mean: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def from_data(self) -> bool:
        return self.source != "reconstruction"

    def headline(self) -> pd.DataFrame:
        """Identification rows of the headline quantities not set by assumptions."""
        ident = self.identification
        return ident[ident["quantity"].isin(HEADLINE) & (ident["label"] != SET)]

    def datasets_needed(self, headline_only: bool = True) -> int:
        """Datasets needed for the pooled mean's Monte Carlo SE to be < 10% of the posterior SD
        for every headline scalar (or every scalar not set by assumptions)."""
        ident = self.identification
        rows = self.headline() if headline_only else ident[ident["label"] != SET]
        head = set(zip(rows["model"], rows["quantity"], strict=True))
        share = self.variance_share
        keep = [(m, q) in head for m, q in zip(share["model"], share["quantity"], strict=True)]
        return int(share.loc[keep, "datasets_needed"].max()) if any(keep) else 1

    loo: pd.DataFrame | None = None  # ordinal vs Gaussian severity, real IPD only


def run_ipd_models(
    datasets: list[pd.DataFrame],
    settings: SamplerSettings,
    source: str,
    models: tuple[IPDModel, ...] = IPD_MODELS,
    progress: Callable[[str], None] = lambda _m: None,
    options: SweepOptions = IN_PROCESS,
    previous: IPDResult | None = None,
    quick_tune: int = 0,
) -> IPDResult:
    """Fit every model to every dataset and pool by Rubin's rules. The fits are one sweep
    (``options``): in this process by default, or all models' datasets as tasks on Dask. With
    ``previous`` (fitted to the first datasets), only the new ``datasets`` are fitted and all
    are pooled. ``quick_tune``: warm-up tried first on each dataset, the full one only where it
    fails the convergence rules (:func:`khe_bayes.toolkit.pooling.fit_dataset`)."""
    first = len(previous.datasets) if previous else 0
    tasks = {
        spec.name: dataset_tasks(
            spec.name,
            spec.build,
            datasets,
            settings,
            spec.var_names,
            attrs={"model": spec.name, "data_source": source},
            first=first,
            log_likelihood=source != "reconstruction",  # LOO only on real patient data
            quick_tune=quick_tune,
        )
        for spec in models
    }
    done = run_tasks([t for ts in tasks.values() for t in ts], options, progress)
    result = IPDResult(
        source=source, datasets=[*(previous.datasets if previous else []), *datasets]
    )
    summaries, shares, diags = [], [], []
    for spec in models:
        fits = [done[t.key] for t in tasks[spec.name]]
        if previous:
            fits = [*previous.fits[spec.name].per_dataset, *fits]
        fit = pool_fits(spec.name, fits, spec.var_names)
        result.fits[spec.name] = fit
        table = with_summary_layout(pooled_summary(fit, spec.descriptions))
        table.insert(0, "model", spec.name)
        summaries.append(table)
        share = reconstruction_variance_share(fit)
        share.insert(0, "model", spec.name)
        shares.append(share)
        diags.append(pooled_diagnostics(fit))
        if previous:
            for mine, theirs in (
                (result.prior_variance, previous.prior_variance),
                (result.prior_mean, previous.prior_mean),
            ):
                mine.update({k: v for k, v in theirs.items() if k[0] == spec.name})
        else:
            model = spec.build(result.datasets[0])
            moments = prior_moments(model, spec.var_names, seed=settings.seed)
            result.prior_mean.update({(spec.name, q): m for q, (m, _) in moments.items()})
            result.prior_variance.update({(spec.name, q): v for q, (_, v) in moments.items()})
    result.summary = pd.concat(summaries)
    result.variance_share = pd.concat(shares, ignore_index=True)
    result.diagnostics = pd.concat(diags, ignore_index=True)
    posterior_mean = {
        (m, q): float(v)
        for m, q, v in zip(
            result.summary["model"], result.summary.index, result.summary["mean"], strict=True
        )
    }
    result.identification = identification_table(
        result.variance_share,
        result.prior_variance,
        from_data=result.from_data,
        prior_mean=result.prior_mean,
        posterior_mean=posterior_mean,
    )
    labels = dict(
        zip(
            zip(result.identification["model"], result.identification["quantity"], strict=True),
            result.identification["label"],
            strict=True,
        )
    )
    result.summary.insert(
        1,
        "identification",
        [
            labels.get((m, q), "")
            for m, q in zip(result.summary["model"], result.summary.index, strict=True)
        ],
    )
    severity = [f"severity_{kind}" for kind in ("ordinal", "gaussian")]
    if source != "reconstruction" and all(name in result.fits for name in severity):
        result.loo = compare_loo({name: result.fits[name].per_dataset[0] for name in severity})
    return result


def with_summary_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The pooled summary (with its ``mcse_sd``, see :func:`pooled_summary`) with the columns in
    the order of :func:`khe_bayes.toolkit.summary.summarize`."""
    from khe_bayes.toolkit.summary import DIAGNOSTIC_COLUMNS, STAT_COLUMNS

    rest = [c for c in table.columns if c not in {"description", "flag"}]
    layout = [*STAT_COLUMNS, *DIAGNOSTIC_COLUMNS]
    order = ["description", *layout, *[c for c in rest if c not in layout], "flag"]
    return table[order]


# --- replicated patient data for the posterior-predictive checks --------------------------------


def _draws_of(fit: PooledFit, var: str, dataset: int) -> np.ndarray:
    """Posterior-predictive draws of ``var`` for one dataset, as (draw, element)."""
    da = fit.idata.posterior_predictive[var]
    da = da.isel(chain=np.flatnonzero(da["dataset"].values == dataset))
    return da.stack(sample=("chain", "draw")).transpose("sample", ...).values


def replicate_ipd(result: IPDResult, draws_per_dataset: int = 100, seed: int = 0) -> pd.DataFrame:
    """Replicated patient datasets from the posterior predictive, with the paper's statistics
    re-computed on each (every statistic and interpretation in statistics.STATISTICS).

    Response comes from the response model, integer severity scores from the ordinal model, ages
    and shrinkage from the KMP-contrast model; each statistic uses columns of one model only.
    """
    rng = np.random.default_rng(seed)
    fits = result.fits
    rows = []
    for m, data in enumerate(result.datasets):
        resp, sev = response_long(data), severity_long(data)
        shrink_seen = ~pd.to_numeric(data["shrinkage_12m"], errors="coerce").isna().to_numpy()
        pp = {
            "response": _draws_of(fits["response"], "response", m),
            "score": _draws_of(fits["severity_ordinal"], "score", m),
            "age": _draws_of(fits["kmp_contrasts"], "age", m),
            "shrinkage": _draws_of(fits["kmp_contrasts"], "shrinkage", m),
        }
        n_draws = min(len(v) for v in pp.values())
        for j in rng.choice(n_draws, size=min(draws_per_dataset, n_draws), replace=False):
            rep = data.copy()
            for v, visit in enumerate(("6m", "12m")):
                at = resp["visit"].to_numpy() == v
                col = np.array(rep[f"response_{visit}"], dtype=float)
                col[resp["patient"].to_numpy()[at]] = pp["response"][j][at]
                rep[f"response_{visit}"] = col
            for v, visit in enumerate(("0m", "6m", "12m")):
                at = sev["visit"].to_numpy() == v
                col = np.array(rep[f"severity_{visit}"], dtype=float)
                col[sev["patient"].to_numpy()[at]] = pp["score"][j][at]
                rep[f"severity_{visit}"] = col
            rep["age_months"] = pp["age"][j]
            col = np.array(rep["shrinkage_12m"], dtype=float)
            col[shrink_seen] = pp["shrinkage"][j]
            rep["shrinkage_12m"] = col
            stats = recompute(rep)
            stats.insert(0, "draw", len(rows))
            stats.insert(1, "dataset", m)
            rows.append(stats)
    return pd.concat(rows, ignore_index=True)


def side_by_side_ipd(evidence: Evidence, result: IPDResult) -> pd.DataFrame:
    """Reported intervals (default interpretation) beside the matching pooled posterior."""

    def ci(record_id: str) -> dict:
        r = evidence[record_id]
        p = next((b for b in evidence.of_kind("p_bound") if b.statistic == r.statistic), None)
        note = r.default_interpretation.description if r.default_interpretation else ""
        if p is not None:
            note = f"{p.value_text()}; {note}"
        return {
            "reported_estimate": r.midpoint,
            "reported_lower": r.lower,
            "reported_upper": r.upper,
            "reported_note": note,
        }

    pairings = [
        (
            "kmp_contrasts",
            Pairing(
                label="age difference, non-KMP - KMP (months)",
                quantity="age_difference_months",
                threshold=12.0,
                **ci("age_difference_ci"),
            ),
        ),
        (
            "severity_gaussian",
            Pairing(
                label="mean severity score at 6 months",
                quantity="expected_score[6m]",
                threshold=3.0,
                **ci("severity_6m_ci"),
            ),
        ),
        (
            "severity_gaussian",
            Pairing(
                label="mean severity score at 12 months",
                quantity="expected_score[12m]",
                threshold=3.0,
                **ci("severity_12m_ci"),
            ),
        ),
        (
            "kmp_contrasts",
            Pairing(
                label="mean shrinkage, non-KMP (%)",
                quantity="shrinkage_mean[non_kmp]",
                threshold=30.0,
                **ci("kmp_vs_non_kmp_response_ci"),
            ),
        ),
        (
            "kmp_contrasts",
            Pairing(
                label="mean shrinkage, KMP (%)",
                quantity="shrinkage_mean[kmp]",
                threshold=30.0,
                **ci("combination_shrinkage_ci"),
            ),
        ),
        (
            "shrinkage_combination",
            Pairing(
                label="shrinkage, combination - sirolimus alone, KMP (points, adjusted)",
                quantity="combination_effect",
                reported_estimate=None,
                threshold=10.0,
                reported_note=evidence["combination_shrinkage_p"].value_text()
                + " (no interval for the difference printed)",
            ),
        ),
        (
            "response",
            Pairing(
                label="response at 12 months (%), model-based",
                quantity="response_rate[12m]",
                scale=100.0,
                threshold=90.0,
                reported_estimate=evidence["response_12m_percent"].percent,
                reported_note="printed percentage",
            ),
        ),
    ]
    frames = [side_by_side(result.fits[m].idata, [p]) for m, p in pairings]
    table = pd.concat(frames, ignore_index=True)
    table.insert(1, "model", [m for m, _ in pairings])
    return table
