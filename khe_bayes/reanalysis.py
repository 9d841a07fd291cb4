"""The full reanalysis: evidence -> models -> posterior -> checks -> report, written atomically.

Each stage returns plain results (InferenceData and tables); this module only wires them
together, writes files and assembles the report.
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
from khe_bayes.evidence import load_evidence
from khe_bayes.manifest import build_manifest, sha256_file, sha256_text
from khe_bayes.outputs import check_can_write, staged_directory, write_json
from khe_bayes.plots import densities_with_thresholds, forest_by_prior, zero_event_plot
from khe_bayes.report import Figure, Section, Table, Text, render_html, render_markdown
from khe_bayes.sampling import SamplerSettings
from khe_bayes.summary import diagnostics
from khe_bayes.tomlio import load_toml_model

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"
AGGREGATE_SPEC = "aggregate_proportions.toml"


@dataclass
class ReanalysisSettings:
    sampler: SamplerSettings
    models_dir: Path = REPO_MODELS
    evidence_file: Path | None = None
    strict: bool = False


@dataclass
class ReanalysisResult:
    out: Path
    aggregate: AggregateResult
    diagnostics: pd.DataFrame
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
    aggregate = run_aggregate(spec, evidence, settings.sampler, progress=progress)

    diag_rows = []
    for label, idata in aggregate.fits.items():
        d = diagnostics(idata)
        diag_rows.append({"model": spec.name, "prior": label, **d})
    diag = pd.DataFrame(diag_rows)

    progress(f"writing results to {out}")
    with staged_directory(out, overwrite=overwrite) as stage:
        files = _write_all(stage, settings, evidence, spec, spec_path, aggregate, diag, started)
    progress(f"done in {time.time() - started:.0f} s: {out / 'report.html'}")
    return ReanalysisResult(out=out, aggregate=aggregate, diagnostics=diag, files=files)


def _write_all(stage, settings, evidence, spec, spec_path, aggregate, diag, started) -> list[str]:
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
    csv("diagnostics.csv", diag)
    csv("evidence.csv", evidence.to_frame())
    for label, idata in aggregate.fits.items():
        name = f"{spec.name}__{label}.nc"
        idata.to_netcdf(stage / name)
        written.append(name)

    default = spec.priors.label
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
        figures.append(
            Figure(
                zero_event_plot(
                    aggregate.fits[default],
                    aggregate.zero_events,
                    default,
                    fig_dir / "zero_events.png",
                ),
                "Zero-event safety outcomes: posterior, 95% upper credible bound, rule of three.",
            )
        )
    written += [f"figures/{f.path.name}" for f in figures]

    sections = build_sections(evidence, spec, aggregate, diag, figures)
    manifest = build_manifest(
        command="reanalyze",
        settings={
            "sampler": settings.sampler.model_dump(),
            "models_dir": str(settings.models_dir),
            "strict": settings.strict,
        },
        inputs={
            "evidence": sha256_text(evidence.model_dump_json()),
            AGGREGATE_SPEC: sha256_file(spec_path),
        },
        outputs=[*written, "report.md", "report.html", "manifest.json"],
    )
    manifest["elapsed_seconds"] = round(time.time() - started, 1)
    sections.append(_manifest_section(manifest))
    title = "Bayesian reanalysis: sirolimus for progressive kaposiform hemangioendothelioma"
    (stage / "report.md").write_text(render_markdown(title, sections, stage), encoding="utf-8")
    (stage / "report.html").write_text(render_html(title, sections, stage), encoding="utf-8")
    written += ["report.md", "report.html"]
    write_json(stage / "manifest.json", manifest)
    written.append("manifest.json")
    return written


def build_sections(evidence, spec, aggregate, diag, figures) -> list[Section]:
    ev = evidence.to_frame()
    study = Section("Study and evidence").add(
        Text(
            f"Source: {evidence.source.citation} doi:{evidence.source.doi}. Only the abstract's "
            f"aggregate numbers are used. {evidence.source.rounding}"
        )
    )
    study.add(
        Table(
            ev[["id", "kind", "value", "population", "timepoint", "quote"]],
            caption="Every quantitative statement of the abstract, with its quote.",
        )
    )

    methods = Section("Aggregate model").add(
        Text(
            "Each outcome's probability is estimated independently from its count (Binomial "
            "likelihood) or, for a printed percentage, from the set of counts consistent with "
            "its rounding. Prior sets (the first is the default):\n"
            + "\n".join(f"- **{p.label}**: {p.describe()}" for p in spec.prior_sets())
        )
    )

    results = Section("Posterior summaries").add(
        Table(
            aggregate.summary.reset_index()[
                ["prior", "quantity", "mean", "sd", "hdi_2.5%", "hdi_97.5%", "ess_bulk", "r_hat"]
            ],
            caption="Posterior mean, SD and 95% HDI of each proportion "
            "(summary.csv has all columns).",
        )
    )
    results.add(
        Table(
            aggregate.thresholds[["prior", "statement", "probability", "mcse", "label"]],
            caption="Posterior probabilities of clinically meaningful thresholds.",
        )
    )
    results.add(
        Table(
            aggregate.zero_events,
            caption="Zero-event outcomes: Bayesian upper bound beside the rule of three and the "
            "exact (Clopper-Pearson) one-sided bound.",
            digits=4,
        )
    )
    for f in figures:
        results.add(f)

    checks = Section("Checks against exact posteriors").add(
        Text(
            "Under Beta priors the exact posterior is Beta (a mixture of Betas for rounded "
            "percentages with several consistent counts); under other priors the reference is "
            "quadrature on a fine grid. z is the MCMC error in units of its Monte Carlo "
            "standard error; |z| > 4 would signal a problem."
        )
    )
    checks.add(Table(aggregate.closed_form, caption="MCMC vs reference posterior.", digits=4))

    conv = Section("Convergence diagnostics")
    bad = diag[~diag["ok"]]
    if bad.empty:
        conv.add(
            Text(
                "All fits pass: R-hat <= 1.01, bulk and tail ESS >= 100 per chain, and no "
                "divergent transitions."
            )
        )
    else:
        conv.add(
            Text(
                "**WARNING: poor convergence in "
                + ", ".join(f"{r.model}/{r.prior} ({r.problems})" for r in bad.itertuples())
                + ". Treat those results with caution; rerun with more draws.**"
            )
        )
    conv.add(Table(diag, caption="Whole-model diagnostics per fit."))
    flagged = aggregate.summary[aggregate.summary["flag"] != ""]
    if not flagged.empty:
        conv.add(
            Table(flagged.reset_index()[["prior", "quantity", "flag"]], caption="Flagged rows.")
        )
    return [study, methods, results, checks, conv]


def _manifest_section(manifest: dict) -> Section:
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
    git = manifest["git"]
    commit = git["commit"] or "not a git checkout"
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    sampler = manifest["settings"]["sampler"]
    return Section("Manifest").add(
        Text(
            f"- Versions: {versions}\n"
            f"- Commit: {commit}{dirty}\n"
            f"- Sampler: {sampler['chains']} chains x {sampler['draws']} draws after "
            f"{sampler['tune']} tuning steps, seed {sampler['seed']}\n"
            f"- Elapsed: {manifest['elapsed_seconds']} s\n"
            "- Full details, including input hashes: manifest.json"
        )
    )
