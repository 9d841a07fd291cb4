"""The full reanalysis: evidence -> models -> posterior -> checks -> report, written atomically.

Each stage returns plain results (InferenceData and tables); this module only wires them
together and writes files. Report text lives in report_sections.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from khe_bayes.aggregate import AggregateProportionSpec
from khe_bayes.aggregate_analysis import AggregateResult, run_aggregate
from khe_bayes.audit import audit
from khe_bayes.evidence import Evidence, load_evidence
from khe_bayes.manifest import build_manifest, sha256_file, sha256_text
from khe_bayes.outputs import check_can_write, staged_directory, write_json
from khe_bayes.plots import (
    densities_with_thresholds,
    forest_by_prior,
    ppc_reported_plot,
    zero_event_plot,
)
from khe_bayes.ppc import compare_reported, replicate_counts, reported_statistics
from khe_bayes.report import Figure, render_html, render_markdown
from khe_bayes.report_sections import build_sections, manifest_section
from khe_bayes.sampling import SamplerSettings
from khe_bayes.summary import diagnostics
from khe_bayes.tomlio import load_toml_model

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"
AGGREGATE_SPEC = "aggregate_proportions.toml"
TITLE = "Bayesian reanalysis: sirolimus for progressive kaposiform hemangioendothelioma"


@dataclass
class ReanalysisSettings:
    sampler: SamplerSettings
    models_dir: Path = REPO_MODELS
    evidence_file: Path | None = None
    strict: bool = False


@dataclass
class ReanalysisResult:
    """Everything the stages produced; the writer and the report only read it."""

    evidence: Evidence
    aggregate: AggregateResult
    ppc: pd.DataFrame
    replications: pd.DataFrame
    diagnostics: pd.DataFrame
    audit: pd.DataFrame
    inputs: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return bool(self.diagnostics["ok"].all())


def stderr_progress(message: str) -> None:
    print(f"[khe-bayes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_reanalysis(
    settings: ReanalysisSettings,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] = stderr_progress,
) -> ReanalysisResult:
    """Run every stage and write the results to ``out`` (atomically; see outputs.py)."""
    out = Path(out)
    check_can_write(out, overwrite)  # fail before any sampling
    evidence = load_evidence(settings.evidence_file)
    spec_path = settings.models_dir / AGGREGATE_SPEC
    spec = load_toml_model(spec_path, AggregateProportionSpec)

    started = time.time()
    progress("consistency audit of the reported numbers")
    audit_table = audit(evidence)
    aggregate = run_aggregate(spec, evidence, settings.sampler, progress=progress)
    progress("posterior-predictive checks against the reported statistics")
    ppc, replications = posterior_predictive_checks(evidence, aggregate)
    diag = pd.DataFrame(
        [
            {"model": spec.name, "prior": label, **diagnostics(idata)}
            for label, idata in aggregate.fits.items()
        ]
    )
    result = ReanalysisResult(
        evidence=evidence,
        aggregate=aggregate,
        ppc=ppc,
        replications=replications,
        diagnostics=diag,
        audit=audit_table,
        inputs={
            "evidence": sha256_text(evidence.model_dump_json()),
            AGGREGATE_SPEC: sha256_file(spec_path),
        },
    )
    progress(f"writing results to {out}")
    with staged_directory(out, overwrite=overwrite) as stage:
        result.files = write_results(stage, settings, result, started)
    progress(f"done in {time.time() - started:.0f} s: {out / 'report.html'}")
    return result


def posterior_predictive_checks(
    evidence: Evidence, aggregate: AggregateResult
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replications from every fitted model (default priors) and their comparison with what the
    paper reported. Statistics no model replicates yet are listed with verdict 'no replicator'."""
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
    replications = replicate_counts(idata, outcomes)
    reported = reported_statistics(evidence, all_interpretations=True)
    return compare_reported(reported, replications), replications


def write_results(
    stage: Path, settings: ReanalysisSettings, result: ReanalysisResult, started: float
) -> list[str]:
    """Write every table, InferenceData, figure, the report and the manifest into ``stage``."""
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
        idata.to_netcdf(stage / name)
        written.append(name)

    figures = aggregate_figures(aggregate, fig_dir)
    ppc_figure = Figure(
        ppc_reported_plot(result.ppc, result.replications, fig_dir / "ppc_reported.png"),
        "Each reported statistic (red) against its posterior predictive distribution.",
    )
    written += [f"figures/{f.path.name}" for f in [*figures, ppc_figure]]

    sections = build_sections(result, figures, ppc_figure)
    manifest = build_manifest(
        command="reanalyze",
        settings={
            "sampler": settings.sampler.model_dump(),
            "models_dir": str(settings.models_dir),
            "strict": settings.strict,
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
