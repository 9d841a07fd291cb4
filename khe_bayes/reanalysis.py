"""The full reanalysis: evidence -> models -> posterior -> checks -> report, written atomically.

Each stage returns plain results (ArviZ DataTrees and tables); this module only wires them
together and writes files. Report text lives in report_sections.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from khe_bayes.aggregate import AggregateProportionSpec
from khe_bayes.aggregate_analysis import AggregateResult, run_aggregate
from khe_bayes.audit import audit
from khe_bayes.datatree import save
from khe_bayes.evidence import Evidence, load_evidence
from khe_bayes.identification import RULE, variable_labels
from khe_bayes.ipd import load_ipd
from khe_bayes.ipd_analysis import IPDResult, replicate_ipd, run_ipd_models, side_by_side_ipd
from khe_bayes.manifest import build_manifest, sha256_file, sha256_text
from khe_bayes.outputs import check_can_write, staged_directory, write_json
from khe_bayes.plots import (
    center_forest,
    densities_with_thresholds,
    forest_by_prior,
    ppc_reported_plot,
    zero_event_plot,
)
from khe_bayes.ppc import compare_reported, replicate_counts, reported_statistics
from khe_bayes.reconstruct import ReconstructionSettings, assumption_draws, reconstruct_datasets
from khe_bayes.report import Figure, render_html, render_markdown
from khe_bayes.report_sections import build_sections, manifest_section
from khe_bayes.resources import specs_dir
from khe_bayes.sampling import SamplerSettings
from khe_bayes.sensitivity import leave_one_center_out, prior_grid
from khe_bayes.summary import DEFAULT_RULES, diagnostics
from khe_bayes.sweep import SweepOptions
from khe_bayes.tomlio import load_toml_model

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
    # Rubin's rules: add datasets (up to max_datasets) until the pooled mean's Monte Carlo SE is
    # < 10% of the posterior SD for every headline estimand (those not set by assumptions)
    max_datasets: int = 8
    # where the IPD fits and the sensitivity refits run
    sweep: SweepOptions = field(default_factory=SweepOptions)

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
    assumptions: pd.DataFrame | None = None  # the reconstruction's generator parameters
    assumption_draws: pd.DataFrame | None = None  # their values per dataset
    dataset_growth: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return bool(self.diagnostics["ok"].all())


def stderr_progress(message: str) -> None:
    print(f"[khe-bayes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_reanalysis(
    settings: ReanalysisSettings,
    out: str | Path | None,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] = stderr_progress,
) -> ReanalysisResult:
    """Run every stage and write the results to ``out`` (atomically; see outputs.py); with
    ``out=None`` nothing is written and the result object is only returned."""
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
    fit_started = time.time()
    ipd = run_ipd_models(
        datasets, settings.ipd_sampler(), source, progress=progress, options=settings.sweep
    )
    growth: dict = {}
    if source == "reconstruction":
        ipd, growth = grow_datasets(ipd, settings, evidence, time.time() - fit_started, progress)
        datasets = ipd.datasets
    grid = loco = None
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
        evidence=evidence,
        aggregate=aggregate,
        ipd=ipd,
        side_by_side_ipd=side_by_side_ipd(evidence, ipd),
        prior_grid=grid,
        loco=loco,
        ppc=ppc,
        replications=replications,
        diagnostics=diag,
        audit=audit_table,
        inputs=inputs,
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
    return compare_reported(reported, replications), replications


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

    csv("summary.csv", aggregate.summary, index=True)
    csv("thresholds.csv", aggregate.thresholds)
    csv("zero_events.csv", aggregate.zero_events)
    csv("closed_form_check.csv", aggregate.closed_form)
    csv("side_by_side.csv", aggregate.side_by_side)
    csv("ppc_reported.csv", result.ppc)
    csv("diagnostics.csv", result.diagnostics)
    csv("evidence.csv", result.evidence.to_frame())
    csv("audit.csv", result.audit)
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
            ),
            "Posterior response probability at each center (12 months), pooled over datasets; "
            "the dashed line is the mean over centers.",
        )
    ]
    ppc_figure = Figure(
        ppc_reported_plot(result.ppc, result.replications, fig_dir / "ppc_reported.png"),
        "Each reported statistic (red) against its posterior predictive distribution.",
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


def aggregate_figures(aggregate: AggregateResult, fig_dir: Path) -> list[Figure]:
    default = aggregate.spec.priors.label
    figures = [
        Figure(
            forest_by_prior(
                aggregate.fits,
                "rate",
                fig_dir / "aggregate_rates.png",
                "Aggregate proportions under each prior",
            ),
            "Posterior mean and 95% HDI of each proportion, by prior set.",
        ),
        Figure(
            densities_with_thresholds(
                aggregate.fits[default],
                ["rate[response_6m]", "rate[response_12m]"],
                aggregate.thresholds[aggregate.thresholds["prior"] == default],
                fig_dir / "response_thresholds.png",
                f"Response rates with clinical thresholds (prior {default})",
            ),
            "Posterior of the response rates, with the threshold probabilities.",
        ),
    ]
    if not aggregate.zero_events.empty:
        path = zero_event_plot(
            aggregate.fits[default], aggregate.zero_events, default, fig_dir / "zero_events.png"
        )
        figures.append(
            Figure(
                path,
                "Zero-event safety outcomes: posterior, 95% upper credible bound, rule of three.",
            )
        )
    return figures
