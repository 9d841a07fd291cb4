"""The full reanalysis: evidence -> models -> posterior -> checks -> report, written atomically.

Each stage returns plain results (ArviZ DataTrees and tables); this module only wires them
together and writes files. Report text lives in report_sections.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from khe_bayes.resources import specs_dir
from khe_bayes.study.aggregate import AggregateProportionSpec
from khe_bayes.study.aggregate_analysis import AggregateResult, run_aggregate
from khe_bayes.study.audit import audit, with_reading_weights
from khe_bayes.study.evidence import Evidence, load_evidence
from khe_bayes.study.identification import RULE, variable_labels
from khe_bayes.study.ipd import load_ipd
from khe_bayes.study.ipd_analysis import IPDResult, replicate_ipd, run_ipd_models, side_by_side_ipd
from khe_bayes.study.ppc import compare_reported, replicate_counts, reported_statistics
from khe_bayes.study.reconstruct import (
    ReconstructionSettings,
    assumption_draws,
    reconstruct_datasets,
)
from khe_bayes.study.report_sections import build_sections, manifest_section
from khe_bayes.study.sensitivity import leave_one_center_out, prior_grid
from khe_bayes.study.summary_data_fit import SummaryDataResult, run_summary_data
from khe_bayes.toolkit.datatree import save
from khe_bayes.toolkit.manifest import build_manifest, sha256_file, sha256_text
from khe_bayes.toolkit.outputs import check_can_write, staged_directory, write_json
from khe_bayes.toolkit.plots import (
    center_forest,
    densities_with_thresholds,
    forest_by_prior,
    ppc_reported_plot,
    zero_event_plot,
)
from khe_bayes.toolkit.progress import STDERR
from khe_bayes.toolkit.quiet import quiet
from khe_bayes.toolkit.report import Figure, render_html, render_markdown
from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.settings import QUICK_TUNE
from khe_bayes.toolkit.summary import DEFAULT_RULES, DIAGNOSTIC_COLUMNS, STAT_COLUMNS, diagnostics
from khe_bayes.toolkit.sweep import SweepOptions, shared_cluster
from khe_bayes.toolkit.tomlio import load_toml_model

REPO_MODELS = specs_dir()
AGGREGATE_SPEC = "aggregate_proportions.toml"
# the hierarchical models get smaller steps and longer adaptation than the aggregate model: at
# 1000 tuning steps the ordinal model's tail ESS and the Gaussian model's divergences failed on
# some reconstructions; at 2000 none did (nutpie, 4 seeds each on the flagged datasets)
TARGET_ACCEPT_IPD = 0.99
TUNE_IPD = 2000
# draws per dataset from a pooled ESS target (ReanalysisSettings.ipd_sampler): the smallest
# bulk/tail ESS per draw measured over the IPD models at TUNE_IPD and TARGET_ACCEPT_IPD (the
# ordinal severity model, 0.11 on 3 reconstructions; the others 0.14-0.26; issue 18)
ESS_PER_DRAW_IPD = 0.1
TITLE = "Bayesian reanalysis: sirolimus for progressive kaposiform hemangioendothelioma"


@dataclass
class ReanalysisSettings:
    """``datasets``: how many reconstructions the IPD models are fitted to (ignored with
    ``ipd_file``).

    Draws per dataset come from a pooled ESS target (:meth:`ipd_sampler`). The pooled mean
    of M datasets has Monte Carlo variance (B + W / ESS_m) / M: the between-dataset part B / M is
    the reconstruction's and only more datasets reduce it; the MCMC part W / (M ESS_m) is at most
    T / (M ESS_m), so M ESS_m >= ``pooled_ess`` (default 2000) keeps the MCMC error of every
    pooled mean below 1 / sqrt(2000) = 2.2% of its posterior SD, well inside the 10% rule for
    the whole Monte Carlo error. Each dataset also needs ESS >= 100 per chain for its own
    diagnostics (R-hat, ESS) to be trusted. Hence, per chain::

        draws = ceil(max(pooled_ess / M, 100 * chains) / (chains * ESS_PER_DRAW_IPD))

    capped by ``sampler.draws``, with M the initial number of datasets (datasets added later
    only raise the pooled ESS) and ESS_PER_DRAW_IPD = 0.1 the worst efficiency measured.
    At the defaults (M = 4, 4 chains) that is 1250 draws per chain instead of 2000; from
    M = 5 the per-dataset floor binds (1000 draws per chain)."""

    sampler: SamplerSettings
    models_dir: Path = REPO_MODELS
    evidence_file: Path | None = None
    strict: bool = False
    datasets: int = 4
    ipd_file: Path | None = None
    reconstruction: ReconstructionSettings = field(default_factory=ReconstructionSettings)
    ppc_draws_per_dataset: int = 100
    pooled_ess: int = 2000
    sensitivity: bool = True
    # the summary-data model (primary analysis of the reported comparisons; summary_data*.py)
    summary_data: bool = True
    # importance-sampling draws per summary-data reading (None: 5 x the NUTS draws of a fit,
    # between 2000 and 20000)
    summary_is_draws: int | None = None
    # Rubin's rules: add datasets (up to max_datasets) until the pooled mean's Monte Carlo SE is
    # < 10% of the posterior SD for every headline estimand (those not set by assumptions)
    max_datasets: int = 8
    # where the IPD fits and the sensitivity refits run
    sweep: SweepOptions = field(default_factory=SweepOptions)
    # warm-up tried first on each dataset; the full one (``sampler.tune``, at least TUNE_IPD)
    # only for a dataset whose quick fit fails the convergence rules (0: always the full one)
    quick_tune: int = QUICK_TUNE

    def ipd_sampler(self) -> SamplerSettings:
        draws = ipd_draws_per_chain(
            1 if self.ipd_file else self.datasets, self.sampler.chains, self.pooled_ess
        )
        # nutpie, compiled once per model and re-used across datasets (compiled.py)
        target = max(self.sampler.target_accept, TARGET_ACCEPT_IPD)
        return self.sampler.model_copy(
            update={
                "draws": min(draws, self.sampler.draws),
                "target_accept": target,
                "tune": max(self.sampler.tune, TUNE_IPD),
                "backend": "nutpie",
            }
        )


def ipd_draws_per_chain(
    datasets: int, chains: int, pooled_ess: int, ess_per_draw: float = ESS_PER_DRAW_IPD
) -> int:
    """Draws per chain for each of ``datasets`` fits so that the pooled ESS reaches
    ``pooled_ess`` and every dataset has ESS >= 100 per chain, at ``ess_per_draw``
    (see :class:`ReanalysisSettings`)."""
    needed = max(pooled_ess / datasets, DEFAULT_RULES.ess_per_chain_min * chains)
    return int(np.ceil(needed / (chains * ess_per_draw)))


@dataclass
class ReanalysisResult:
    """Everything the stages produced; the writer and the report only read it."""

    evidence: Evidence
    aggregate: AggregateResult
    ipd: IPDResult
    side_by_side_ipd: pd.DataFrame
    prior_grid: pd.DataFrame | None
    loco: pd.DataFrame | None
    ppc: pd.DataFrame
    replications: pd.DataFrame
    diagnostics: pd.DataFrame
    audit: pd.DataFrame
    inputs: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    summary_data: SummaryDataResult | None = None
    assumptions: pd.DataFrame | None = None  # the reconstruction's generator parameters
    assumption_draws: pd.DataFrame | None = None  # their values per dataset
    dataset_growth: dict = field(default_factory=dict)
    # sampler settings of the prior-grid and leave-one-center-out refits (None: not run)
    sensitivity_sampler: dict | None = None

    @property
    def converged(self) -> bool:
        return bool(self.diagnostics["ok"].all())


# timestamped lines on stderr; sweeps as "k of N" with the time left (a rich bar on a terminal)
stderr_progress = STDERR


def run_reanalysis(
    settings: ReanalysisSettings,
    out: str | Path | None,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] = stderr_progress,
) -> ReanalysisResult:
    """Run every stage and write the results to ``out`` (atomically; see outputs.py); with
    ``out=None`` nothing is written and the result object is only returned. Library warnings a
    user cannot act on are silenced (quiet.py)."""
    with quiet(), shared_cluster(settings.sweep) as sweep:  # --workers: one cluster for all
        settings = replace(settings, sweep=sweep)
        return _run_reanalysis(settings, out, overwrite=overwrite, progress=progress)


def _run_reanalysis(
    settings: ReanalysisSettings,
    out: str | Path | None,
    *,
    overwrite: bool,
    progress: Callable[[str], None],
) -> ReanalysisResult:
    out = Path(out) if out is not None else None
    if out is not None:
        check_can_write(out, overwrite)  # fail before any sampling
    evidence = load_evidence(settings.evidence_file)
    spec_path = settings.models_dir / AGGREGATE_SPEC
    spec = load_toml_model(spec_path, AggregateProportionSpec)

    started = time.time()
    progress("consistency audit of the reported numbers")
    audit_table = audit(evidence)
    datasets, source = patient_data(settings, evidence, progress)  # bad IPD fails before sampling
    aggregate = run_aggregate(spec, evidence, settings.sampler, progress=progress)
    summary_data = None
    if settings.summary_data:
        summary_data = run_summary_data(
            evidence,
            settings.sampler.model_copy(
                update={"target_accept": max(settings.sampler.target_accept, 0.95)}
            ),
            is_draws=settings.summary_is_draws
            or min(20_000, max(2000, 5 * settings.sampler.draws * settings.sampler.chains)),
            progress=progress,
            sweep=settings.sweep,
        )
    fit_started = time.time()
    ipd = run_ipd_models(
        datasets,
        settings.ipd_sampler(),
        source,
        progress=progress,
        options=settings.sweep,
        quick_tune=settings.quick_tune,
    )
    growth: dict = {}
    if source == "reconstruction":
        ipd, growth = grow_datasets(ipd, settings, evidence, time.time() - fit_started, progress)
        datasets = ipd.datasets
    grid = loco = sens = None
    if settings.sensitivity:
        sens = settings.ipd_sampler()
        sens = sens.model_copy(update={"draws": min(sens.draws, 1000), "chains": 2})
        grid = prior_grid(datasets[0], sens, progress=progress, options=settings.sweep)
        loco = leave_one_center_out(datasets[0], sens, progress=progress, options=settings.sweep)
    progress("posterior-predictive checks against the reported statistics")
    ppc, replications = posterior_predictive_checks(evidence, aggregate, ipd, settings)
    diag = pd.concat(
        [
            pd.DataFrame(
                [
                    {"model": spec.name, "prior": label, "dataset": "", **diagnostics(idata)}
                    for label, idata in aggregate.fits.items()
                ]
            ),
            ipd.diagnostics.assign(prior="default"),
            refit_diagnostics(grid, loco),
        ],
        ignore_index=True,
    )
    inputs = {
        "evidence": sha256_text(evidence.model_dump_json()),
        AGGREGATE_SPEC: sha256_file(spec_path),
    }
    if settings.ipd_file:
        inputs[str(settings.ipd_file)] = sha256_file(settings.ipd_file)
    result = ReanalysisResult(
        sensitivity_sampler=sens.model_dump() if sens is not None else None,
        evidence=evidence,
        aggregate=aggregate,
        ipd=ipd,
        side_by_side_ipd=side_by_side_ipd(evidence, ipd),
        prior_grid=grid,
        loco=loco,
        ppc=ppc,
        replications=replications,
        diagnostics=diag,
        audit=audit_table
        if summary_data is None
        else with_reading_weights(audit_table, summary_data.weights),
        inputs=inputs,
        summary_data=summary_data,
        dataset_growth=growth,
    )
    if source == "reconstruction":
        result.assumptions = settings.reconstruction.assumptions.table(
            settings.reconstruction.centers
        )
        result.assumption_draws = assumption_draws(datasets)
    if out is None:
        progress(f"done in {time.time() - started:.0f} s (nothing written)")
        return result
    progress(f"writing results to {out}")
    with staged_directory(out, overwrite=overwrite) as stage:
        result.files = write_results(stage, settings, result, started)
    progress(f"done in {time.time() - started:.0f} s: {out / 'report.html'}")
    return result


def patient_data(
    settings: ReanalysisSettings, evidence: Evidence, progress: Callable[[str], None]
) -> tuple[list[pd.DataFrame], str]:
    """The user's IPD (validated), or ``settings.datasets`` reconstructions."""
    if settings.ipd_file is not None:
        progress(f"individual-patient data from {settings.ipd_file}")
        return [load_ipd(settings.ipd_file)], str(settings.ipd_file)
    progress(f"reconstructing {settings.datasets} pseudo-patient datasets")
    datasets = reconstruct_datasets(
        evidence, settings.datasets, settings.sampler.seed, settings.reconstruction
    )
    return datasets, "reconstruction"


def grow_datasets(
    ipd: IPDResult,
    settings: ReanalysisSettings,
    evidence: Evidence,
    seconds: float,
    progress: Callable[[str], None],
) -> tuple[IPDResult, dict]:
    """Rubin's rules: fit more reconstructions (up to ``settings.max_datasets``) while some
    headline estimand's pooled-mean Monte Carlo SE is >= 10% of its posterior SD. Dataset i is
    always child i of the seed, so the first datasets are the same as before."""
    initial = len(ipd.datasets)
    per_dataset = seconds / initial
    needed = ipd.datasets_needed()
    while needed > len(ipd.datasets) and len(ipd.datasets) < settings.max_datasets:
        target = min(needed, settings.max_datasets)
        progress(
            f"{needed} datasets needed for Monte Carlo error < 10% of the posterior SD; "
            f"fitting {target - len(ipd.datasets)} more (cap {settings.max_datasets})"
        )
        started = time.time()
        new = reconstruct_datasets(
            evidence, target, settings.sampler.seed, settings.reconstruction
        )[len(ipd.datasets) :]
        ipd = run_ipd_models(
            new,
            settings.ipd_sampler(),
            ipd.source,
            progress=progress,
            options=settings.sweep,
            previous=ipd,
            quick_tune=settings.quick_tune,
        )
        per_dataset = (time.time() - started) / len(new)
        needed = ipd.datasets_needed()
    growth = {
        "initial": initial,
        "final": len(ipd.datasets),
        "max": settings.max_datasets,
        "needed": needed,
        "needed_all_not_set": ipd.datasets_needed(headline_only=False),
        "seconds_per_dataset": per_dataset,
    }
    return ipd, growth


def posterior_predictive_checks(
    evidence: Evidence, aggregate: AggregateResult, ipd: IPDResult, settings: ReanalysisSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replications from the fitted models (default priors) compared with what the paper
    reported. Percentages are replicated by the aggregate model, intervals and p-values by the
    IPD models; a statistic no model replicates is listed with verdict 'no replicator'."""
    idata = aggregate.fits[aggregate.spec.priors.label]
    interpretation_of = {o.name: o.interpretation for o in aggregate.spec.outcome}
    outcomes = {}
    for d in aggregate.data:
        if not d.is_single_count:
            continue
        record = evidence[d.evidence_id]
        default = record.default_interpretation
        interp = interpretation_of.get(d.name) or (default.id if default else "")
        outcomes[f"events_{d.name}"] = (record.statistic, interp, d.counts[0][1])
    from_counts = replicate_counts(idata, outcomes)
    from_ipd = replicate_ipd(ipd, settings.ppc_draws_per_dataset, seed=settings.sampler.seed)
    from_ipd = from_ipd[~from_ipd["statistic"].isin(set(from_counts["statistic"]))]
    replications = pd.concat(
        [from_counts.assign(source="aggregate"), from_ipd.assign(source="ipd")],
        ignore_index=True,
    )
    reported = reported_statistics(evidence, all_interpretations=True)
    table = compare_reported(reported, replications)
    # what the check is: replications from a model of the published numbers (aggregate) are a
    # model check; replications from models fitted to reconstructed pseudo-patients only test
    # whether the reconstruction reproduces the readings it was built to reproduce
    from_aggregate = set(from_counts["statistic"])
    ipd_kind = (
        "reconstruction-fidelity check"
        if ipd.source == "reconstruction"
        else "model check (IPD models, posterior predictive)"
    )
    table.insert(
        0,
        "check",
        [
            "model check (aggregate model, posterior predictive)"
            if s in from_aggregate
            else ipd_kind
            for s in table["statistic"]
        ],
    )
    table["note"] = not_replicated_notes(table, replications)
    return table, replications


def refit_diagnostics(grid: pd.DataFrame | None, loco: pd.DataFrame | None) -> pd.DataFrame:
    """One diagnostics row per sensitivity refit (prior grid cells, the all-centers fits and
    each leave-one-center-out fit), in diagnostics.csv's layout."""
    keys = ["chains", "draws", "max_r_hat", "min_ess_bulk", "min_ess_tail", "divergences"]
    keys += ["ok", "problems"]
    rows = []
    if grid is not None and "ok" in grid:
        for r in grid.to_dict("records"):
            prior = f"prior grid: {r['effect_prior']}; center SD {r['center_sd_prior']}"
            rows.append({"model": r["model"], "prior": prior, "dataset": "first", **_keys(r, keys)})
    if loco is not None and "ok" in loco:
        for r in loco.attrs.get("reference_fits", []):
            rows.append(
                {
                    "model": r["model"],
                    "prior": "default (all centers)",
                    "dataset": "first",
                    **_keys(r, keys),
                }
            )
        for r in loco[loco["ok"].notna()].to_dict("records"):
            rows.append(
                {
                    "model": r["model"],
                    "prior": f"default, without {r['left_out']}",
                    "dataset": "first",
                    **_keys(r, keys),
                }
            )
    return pd.DataFrame(rows)


def _keys(row: dict, keys: list[str]) -> dict:
    return {k: row.get(k) for k in keys}


def not_replicated_notes(ppc: pd.DataFrame, replications: pd.DataFrame) -> list[str]:
    """Why a row has no replications: which readings of the statistic the models do replicate
    (the fitted models generate data under one reading of each ambiguous statistic)."""
    notes = []
    for row in ppc.itertuples():
        if row.n_replications > 0:
            notes.append("")
            continue
        reps = replications[replications["statistic"] == row.statistic]
        readings = sorted({str(r) for r in reps.get("interpretation", pd.Series()).dropna()} - {""})
        if readings:
            notes.append(
                "not replicated: the fitted models generate data under the reading "
                + " / ".join(r.replace("_", " ") for r in readings)
                + " only, not under this one"
            )
        else:
            notes.append("not replicated: no fitted model generates this statistic")
    return notes


def write_results(
    stage: Path, settings: ReanalysisSettings, result: ReanalysisResult, started: float
) -> list[str]:
    """Write every table, DataTree, figure, the report and the manifest into ``stage``."""
    aggregate, spec = result.aggregate, result.aggregate.spec
    fig_dir = stage / "figures"
    fig_dir.mkdir()
    written: list[str] = []

    def csv(name: str, frame: pd.DataFrame, index: bool = False) -> None:
        frame.to_csv(stage / name, index=index, float_format="%.6g")
        written.append(name)

    csv("summary.csv", headline_summary(result), index=False)
    csv("thresholds.csv", aggregate.thresholds)
    csv("zero_events.csv", aggregate.zero_events)
    csv("closed_form_check.csv", aggregate.closed_form)
    csv("side_by_side.csv", aggregate.side_by_side)
    csv("ppc_reported.csv", result.ppc)
    csv("diagnostics.csv", result.diagnostics)
    csv("evidence.csv", result.evidence.to_frame())
    csv("audit.csv", result.audit)
    sd = result.summary_data
    if sd is not None:
        csv("summary_data_reading_weights.csv", sd.weights)
        csv("summary_data_joint_readings.csv", sd.joint_weights)
        csv("summary_data_by_reading.csv", sd.by_reading)
        csv("summary_data_icc_sensitivity.csv", sd.icc_sensitivity)
        csv("summary_data_icc_prior_posterior.csv", sd.icc_prior_posterior)
        csv("summary_data_checks.csv", sd.checks)
        csv("summary_data_diagnostics.csv", sd.diagnostics)
    for label, idata in aggregate.fits.items():
        name = f"{spec.name}__{label}.nc"
        save(idata, stage / name)
        written.append(name)
    ipd = result.ipd
    csv("ipd_summary.csv", ipd.summary, index=True)
    csv("reconstruction_variance.csv", ipd.variance_share)
    csv("side_by_side_ipd.csv", result.side_by_side_ipd)
    csv("identification.csv", ipd.identification)
    if result.assumptions is not None:
        csv("assumptions.csv", result.assumptions)
        csv("assumption_draws.csv", result.assumption_draws, index=True)
    if ipd.loo is not None:
        csv("model_comparison.csv", ipd.loo)
    if result.prior_grid is not None:
        csv("sensitivity_prior_grid.csv", result.prior_grid)
        csv("sensitivity_leave_one_center_out.csv", result.loco)
    for name, fit in ipd.fits.items():
        save(fit.idata, stage / f"{name}.nc")
        written.append(f"{name}.nc")

    figures = aggregate_figures(aggregate, fig_dir)
    ipd_figures = [
        Figure(
            center_forest(
                ipd.fits["response"].idata,
                "center_response_rate",
                fig_dir / "center_forest.png",
                "Response at 12 months by center (partial pooling)",
                select={"visit": "12m"},
                center_n=center_sizes(ipd.datasets),
                xlabel="probability of response at 12 months (%)",
                percent=True,
            ),
            "Posterior response probability at each center (12 months), pooled over datasets: "
            "median with 50% and 95% intervals; n is the center's number of patients (a range "
            "when it differs between reconstructed datasets); the dashed line is the median "
            "over centers.",
        )
    ]
    ppc_figure = Figure(
        ppc_reported_plot(result.ppc, result.replications, fig_dir / "ppc_reported.png"),
        "Each reported number's posterior predictive p-value (log scale): the smallest in a "
        "row decides its verdict (bands: consistent, tension, inconsistent).",
    )
    written += [f"figures/{f.path.name}" for f in [*figures, *ipd_figures, ppc_figure]]

    sections = build_sections(result, figures, ipd_figures, ppc_figure)
    manifest = build_manifest(
        command="reanalyze",
        settings={
            "sampler": settings.sampler.model_dump(),
            "models_dir": str(settings.models_dir),
            "strict": settings.strict,
            "ipd_sampler": settings.ipd_sampler().model_dump(),
            "datasets": 1 if settings.ipd_file else settings.datasets,
            "ipd_file": str(settings.ipd_file) if settings.ipd_file else None,
            "sensitivity": settings.sensitivity,
            # what each model actually used (the IPD models run longer adaptation; see
            # ReanalysisSettings.ipd_sampler)
            "models": settings_used(result),
            "reconstruction_interpretations": settings.reconstruction.interpretations(),
            "max_datasets": settings.max_datasets,
            "dataset_growth": result.dataset_growth,
            "assumptions": (
                None
                if settings.ipd_file
                else {
                    name: a.label()
                    for name, a in settings.reconstruction.assumptions.parameters.items()
                }
            ),
            "identification_rule": RULE,
            "identification": {
                f"{m}/{v}": lab
                for (m, v), lab in variable_labels(result.ipd.identification).items()
            },
        },
        inputs=result.inputs,
        outputs=[*written, "report.md", "report.html", "manifest.json"],
    )
    manifest["elapsed_seconds"] = round(time.time() - started, 1)
    sections.append(manifest_section(manifest))
    (stage / "report.md").write_text(render_markdown(TITLE, sections, stage), encoding="utf-8")
    (stage / "report.html").write_text(render_html(TITLE, sections, stage), encoding="utf-8")
    write_json(stage / "manifest.json", manifest)
    return [*written, "report.md", "report.html", "manifest.json"]


def settings_used(result: ReanalysisResult) -> dict[str, dict]:
    """The sampler settings each model was actually fitted with, read from the settings
    stamped on its results (seeds are derived per fit from the run's seed, so they are left
    out); ``datasets`` says over how many fits (one per dataset) the settings held."""
    used: dict[str, dict] = {}

    def stamped(idatas: list) -> dict:
        rows = [json.loads(i.posterior.attrs.get("sampler_settings", "{}")) for i in idatas]
        keep = ("chains", "draws", "tune", "target_accept", "backend")
        first = {k: rows[0].get(k) for k in keep}
        warmups = [i.sample_stats.attrs.get("warmup", "") for i in idatas]
        quick = [r["tune"] for r, w in zip(rows, warmups, strict=True) if w.startswith("quick")]
        if quick:  # fit_dataset kept a quick warm-up where it passed the convergence rules
            full = [r["tune"] for r, w in zip(rows, warmups, strict=True) if w.startswith("full")]
            first["tune"] = f"{quick[0]} (quick) in {len(quick)} fits" + (
                f", {full[0]} in {len(full)} (quick one failed the rules)" if full else ""
            )
        varying = sorted(k for k in keep if k != "tune" and any(r.get(k) != first[k] for r in rows))
        return {**first, "fits": len(rows), **({"varies": varying} if varying else {})}

    aggregate = result.aggregate
    for label, idata in aggregate.fits.items():
        used[f"{aggregate.spec.name} ({label})"] = stamped([idata])
    for name, fit in result.ipd.fits.items():
        used[name] = stamped(fit.per_dataset)
    if result.sensitivity_sampler is not None:
        keep = ("chains", "draws", "tune", "target_accept", "backend")
        fits = len(refit_diagnostics(result.prior_grid, result.loco))
        used["prior grid and leave-one-center-out refits"] = {
            **{k: result.sensitivity_sampler[k] for k in keep},
            "fits": fits,
        }
    return used


def center_sizes(datasets: list[pd.DataFrame]) -> dict[str, str]:
    """Each center's number of patients, as 'k' or 'lo-hi' across datasets."""
    counts = pd.concat([d["center"].astype(str).value_counts() for d in datasets], axis=1).fillna(0)
    return {
        c: f"{int(lo)}" if lo == hi else f"{int(lo)}-{int(hi)}"
        for c, lo, hi in zip(counts.index, counts.min(axis=1), counts.max(axis=1), strict=True)
    }


def aggregate_figures(aggregate: AggregateResult, fig_dir: Path) -> list[Figure]:
    default = aggregate.spec.priors.label
    words = {d.name: d.description for d in aggregate.data}
    labels = {**words, **{f"rate[{k}]": v for k, v in words.items()}}
    figures = [
        Figure(
            forest_by_prior(
                aggregate.fits,
                "rate",
                fig_dir / "aggregate_rates.png",
                "Aggregate proportions under each prior",
                labels=labels,
                percent=True,
            ),
            "Posterior median with 50% and 95% intervals of each proportion, by prior set.",
        ),
        Figure(
            densities_with_thresholds(
                aggregate.fits[default],
                ["rate[response_6m]", "rate[response_12m]"],
                aggregate.thresholds[aggregate.thresholds["prior"] == default],
                fig_dir / "response_thresholds.png",
                f"Response rates with clinical thresholds (prior {default})",
                labels=labels,
            ),
            "Posterior of the response rates, with the threshold probabilities.",
        ),
    ]
    if not aggregate.zero_events.empty:
        path = zero_event_plot(
            aggregate.fits[default],
            aggregate.zero_events,
            default,
            fig_dir / "zero_events.png",
            labels=labels,
        )
        figures.append(
            Figure(
                path,
                "Zero-event safety outcomes: posterior, 95% upper credible bound, rule of three.",
            )
        )
    return figures


def headline_summary(result: ReanalysisResult) -> pd.DataFrame:
    """summary.csv: the summary-data model's reported comparisons first (reading-averaged
    posterior, with the most probable reading and its posterior weight), then the aggregate
    proportions (one row per prior set). ``model`` says which model a row comes from."""
    agg = result.aggregate.summary.reset_index().assign(model=result.aggregate.spec.name)
    if result.summary_data is None:
        return agg
    sd = result.summary_data.summary.rename(
        columns={"eti_2.5%": "eti95_lb", "eti_97.5%": "eti95_ub"}
    )
    sd = sd.assign(model="summary_data", prior="summary_data_default")
    table = pd.concat([sd, agg], ignore_index=True)
    # the arviz-stats summary layout, in its order, then what identifies and explains a row
    layout = ["description", *STAT_COLUMNS, *DIAGNOSTIC_COLUMNS, "flag"]
    keys = [c for c in ("model", "prior", "block", "quantity") if c in table]
    rest = [c for c in table.columns if c not in layout and c not in keys]
    return table[[*keys, *[c for c in layout if c in table], *rest]]
