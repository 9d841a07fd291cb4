"""``khe-bayes reanalyze``: the full reanalysis on the embedded published data."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from khe_bayes.commands.options import check_count, check_scheduler
from khe_bayes.commands.reconstruct import (
    add_assumption_arguments,
    add_center_arguments,
    assumption_settings,
    center_settings,
    print_assumptions,
)
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.settings import MAX_TUNE, QUICK_TUNE, SamplerSettings, settings_error_message

EXIT_STRICT = 3


def add_sampler_arguments(p: argparse.ArgumentParser, *, spec_defaults: bool = False) -> None:
    """Sampler options. With ``spec_defaults`` they default to None: the spec's [sampler]."""
    d = SamplerSettings()

    def default(value):
        return (None, "the spec's [sampler]") if spec_defaults else (value, value)

    for flag, value, text in (
        ("--seed", d.seed, "random seed"),
        ("--draws", d.draws, "draws per chain"),
        ("--tune", d.tune, "tuning steps per chain"),
        ("--chains", d.chains, "chains"),
    ):
        value, shown = default(value)
        p.add_argument(flag, type=int, default=value, help=f"{text} (default: {shown})")
    p.add_argument("--cores", type=int, default=None, help="parallel chains (default: all cores)")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the sampler's progress bar (default: when stderr is a terminal)",
    )


def progress_setting(args: argparse.Namespace) -> bool | None:
    """--progress/--no-progress, or off with -q."""
    return False if getattr(args, "quiet", False) else args.progress


def sampler_from_args(args: argparse.Namespace) -> SamplerSettings:
    from pydantic import ValidationError

    try:
        return SamplerSettings(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            cores=args.cores,
            seed=args.seed,
            progressbar=progress_setting(args),
        )
    except ValidationError as exc:
        raise InputError(settings_error_message(exc)) from None


def register(sub) -> None:
    p = sub.add_parser(
        "reanalyze",
        help="run the full reanalysis on the published numbers",
        description="Fit every model to the published evidence and write summary tables, "
        "ArviZ DataTree (netCDF) files, figures, a report and a manifest to --out.",
    )
    p.add_argument("--out", default="results/reanalysis", help="output directory")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier result"
    )
    p.add_argument(
        "--models",
        type=Path,
        default=None,
        help="directory of model specs (default: the models/ shipped with khe-bayes)",
    )
    p.add_argument("--evidence", type=Path, default=None, help="evidence TOML (default: packaged)")
    p.add_argument(
        "--strict", action="store_true", help=f"exit {EXIT_STRICT} if any fit converged poorly"
    )
    p.add_argument(
        "--datasets",
        type=int,
        default=4,
        help="pseudo-patient reconstructions the IPD models are fitted to (default 4)",
    )
    p.add_argument(
        "--ipd",
        type=Path,
        default=None,
        help="your individual-patient CSV (see `khe-bayes reconstruct --schema`; default: none, "
        "the patient data are reconstructed)",
    )
    p.add_argument(
        "--severity-interpretation",
        choices=["mean_score_at_visit", "mean_change_from_baseline"],
        default="mean_score_at_visit",
        help="what the severity CIs are taken to be when reconstructing (default: %(default)s)",
    )
    p.add_argument(
        "--sensitivity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="prior grid and leave-one-center-out refits (default on; --no-sensitivity skips)",
    )
    p.add_argument(
        "--summary-data",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the summary-data model of the reported comparisons (default on; "
        "--no-summary-data skips it and its report section, e.g. for a quick look at the "
        "patient-level models)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run the model fits (one task per model and dataset) and the sensitivity refits "
        "as tasks on a local Dask cluster of N processes (default: in this process)",
    )
    where.add_argument(
        "--scheduler",
        help="... or on an existing Dask cluster, tcp://HOST:PORT (default: none)",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="keep each finished fit here, so a rerun resumes (with Dask; default: a "
        "temporary directory)",
    )
    p.add_argument(
        "--max-datasets",
        type=int,
        default=8,
        help="Rubin's rules: add reconstructions up to this many while the pooled mean's Monte "
        "Carlo SE is >= 10%% of the posterior SD for a headline estimand (default 8)",
    )
    p.add_argument(
        "--quick-tune",
        type=int,
        default=QUICK_TUNE,
        help="warm-up steps each reconstruction's fit tries first; a fit that then fails the "
        "convergence rules is redone with the full warm-up (0: always the full one; "
        "default %(default)s)",
    )
    add_center_arguments(p)
    add_assumption_arguments(p)
    add_sampler_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_assumptions:
        print_assumptions(args)
        return 0
    check_count("--datasets", args.datasets, 1, 10_000)
    check_count("--workers", args.workers, 1, 512)
    check_count("--quick-tune", args.quick_tune, 0, MAX_TUNE)
    if args.store is not None and args.workers is None and args.scheduler is None:
        raise InputError("--store needs --workers or --scheduler (it stores Dask task results)")
    sampler = sampler_from_args(args)
    centers = center_settings(args)
    check_scheduler(args.scheduler)
    if args.ipd is not None:
        from khe_bayes.study.ipd import load_ipd

        load_ipd(args.ipd)  # bad IPD: one error line, before any progress output or sampling
    from khe_bayes.toolkit.outputs import check_can_write, check_destination

    if args.store is not None:
        check_destination(Path(args.store).absolute() / "x", label=f"--store {args.store}")
    check_can_write(Path(args.out), args.overwrite)
    from khe_bayes.study.reanalysis import (
        REPO_MODELS,
        ReanalysisSettings,
        run_reanalysis,
        stderr_progress,
    )
    from khe_bayes.study.reconstruct import ReconstructionSettings
    from khe_bayes.toolkit.sweep import SweepOptions

    settings = ReanalysisSettings(
        sampler=sampler,
        models_dir=args.models if args.models is not None else REPO_MODELS,
        evidence_file=args.evidence,
        strict=args.strict,
        datasets=args.datasets,
        ipd_file=args.ipd,
        sensitivity=args.sensitivity,
        summary_data=args.summary_data,
        sweep=SweepOptions(workers=args.workers, scheduler=args.scheduler, store=args.store),
        reconstruction=ReconstructionSettings(
            centers=centers,
            severity_interpretation=args.severity_interpretation,
            assumptions=assumption_settings(args),
        ),
        max_datasets=max(args.max_datasets, args.datasets),
        quick_tune=args.quick_tune,
    )
    from khe_bayes.toolkit.budget import warn_if_long_reanalysis

    warn_if_long_reanalysis(
        1 if args.ipd is not None else args.datasets, sampler, sensitivity=args.sensitivity
    )
    progress = (lambda _message: None) if getattr(args, "quiet", False) else stderr_progress
    result = run_reanalysis(settings, args.out, overwrite=args.overwrite, progress=progress)
    if not result.converged:
        bad = result.diagnostics[~result.diagnostics["ok"]]
        for r in bad.itertuples():
            print(
                f"khe-bayes: warning: poor convergence in {r.model}/{r.prior}: {r.problems}",
                file=sys.stderr,
            )
        if args.strict:
            return EXIT_STRICT
    return 0
