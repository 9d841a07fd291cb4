"""``khe-bayes reanalyze``: the full reanalysis on the embedded published data."""

from __future__ import annotations

import argparse
from pathlib import Path

from khe_bayes.commands.reconstruct import (
    add_assumption_arguments,
    add_center_arguments,
    assumption_settings,
    center_settings,
    print_assumptions,
)
from khe_bayes.errors import InputError
from khe_bayes.ipd import load_ipd
from khe_bayes.outputs import check_can_write
from khe_bayes.reanalysis import REPO_MODELS, ReanalysisSettings, run_reanalysis
from khe_bayes.reconstruct import ReconstructionSettings
from khe_bayes.sampling import SamplerSettings
from khe_bayes.sweep import SweepOptions

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


def sampler_from_args(args: argparse.Namespace) -> SamplerSettings:
    from pydantic import ValidationError

    try:
        return SamplerSettings(
            draws=args.draws,
            tune=args.tune,
            chains=args.chains,
            cores=args.cores,
            seed=args.seed,
            progressbar=args.progress,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"--{err['loc'][0]}: {err['msg']}") from None


def register(sub) -> None:
    p = sub.add_parser(
        "reanalyze",
        help="run the full reanalysis on the published numbers",
        description="Fit every model to the published evidence and write summary tables, "
        "ArviZ DataTree (netCDF) files, figures, a report and a manifest to --out.",
    )
    p.add_argument("--out", default="results/reanalysis", help="output directory")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--models", type=Path, default=REPO_MODELS, help="directory of model specs")
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
        "--ipd", type=Path, default=None, help="your individual-patient CSV (see the schema)"
    )
    p.add_argument(
        "--severity-interpretation",
        choices=["mean_score_at_visit", "mean_change_from_baseline"],
        default="mean_score_at_visit",
        help="what the severity CIs are taken to be when reconstructing",
    )
    p.add_argument(
        "--sensitivity",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="prior grid and leave-one-center-out refits (default on; --no-sensitivity skips)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run the model fits (one task per model and dataset) and the sensitivity refits "
        "as tasks on a local Dask cluster of N processes",
    )
    where.add_argument("--scheduler", help="... or on an existing Dask cluster, tcp://HOST:PORT")
    p.add_argument(
        "--store",
        type=Path,
        default=None,
        help="keep each finished fit here, so a rerun resumes (with Dask)",
    )
    p.add_argument(
        "--max-datasets",
        type=int,
        default=8,
        help="Rubin's rules: add reconstructions up to this many while the pooled mean's Monte "
        "Carlo SE is >= 10%% of the posterior SD for a headline estimand (default 8)",
    )
    add_center_arguments(p)
    add_assumption_arguments(p)
    add_sampler_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_assumptions:
        print_assumptions(args)
        return 0
    if args.datasets < 1:
        raise InputError("--datasets must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    if args.store is not None and args.workers is None and args.scheduler is None:
        raise InputError("--store needs --workers or --scheduler (it stores Dask task results)")
    check_can_write(Path(args.out), args.overwrite)
    if args.ipd is not None:
        load_ipd(args.ipd)  # bad IPD: one error line, before any progress output or sampling
    settings = ReanalysisSettings(
        sampler=sampler_from_args(args),
        models_dir=args.models,
        evidence_file=args.evidence,
        strict=args.strict,
        datasets=args.datasets,
        ipd_file=args.ipd,
        sensitivity=args.sensitivity,
        sweep=SweepOptions(workers=args.workers, scheduler=args.scheduler, store=args.store),
        reconstruction=ReconstructionSettings(
            centers=center_settings(args),
            severity_interpretation=args.severity_interpretation,
            assumptions=assumption_settings(args),
        ),
        max_datasets=max(args.max_datasets, args.datasets),
    )
    result = run_reanalysis(settings, args.out, overwrite=args.overwrite)
    if not result.converged:
        bad = result.diagnostics[~result.diagnostics["ok"]]
        for r in bad.itertuples():
            print(f"khe-bayes: warning: poor convergence in {r.model}/{r.prior}: {r.problems}")
        if args.strict:
            return EXIT_STRICT
    return 0
