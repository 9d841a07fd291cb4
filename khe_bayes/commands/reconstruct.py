"""``khe-bayes reconstruct``: draw pseudo-IPD datasets consistent with the published numbers."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from khe_bayes.errors import InputError
from khe_bayes.evidence import load_evidence
from khe_bayes.ipd import schema_table, write_ipd
from khe_bayes.outputs import staged_directory, write_json
from khe_bayes.reconstruct import (
    Assumptions,
    CenterSettings,
    ReconstructionSettings,
    assumption_draws,
    load_assumptions,
    parse_assumption_value,
    reconstruct_datasets,
    verify,
)


def register(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="draw pseudo-patient datasets that reproduce the published numbers",
        description="Write M seeded pseudo-IPD datasets (dataset_000.csv ...) that reproduce every "
        "reported statistic, with reconstruction.json recording settings and checks.",
    )
    p.add_argument("--datasets", type=int, default=20, help="how many datasets (default 20)")
    p.add_argument("--out", default="results/reconstruction", help="output directory")
    p.add_argument("--seed", type=int, default=20170815)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--evidence", type=Path, default=None)
    add_center_arguments(p)
    add_assumption_arguments(p)
    p.add_argument(
        "--severity-interpretation",
        choices=["mean_score_at_visit", "mean_change_from_baseline"],
        default="mean_score_at_visit",
        help="what the severity CIs are taken to be (default: mean score at the visit)",
    )
    p.add_argument("--schema", action="store_true", help="print the IPD schema and exit")
    p.set_defaults(func=run)


def add_center_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--centers", type=int, default=6, help="number of centers (default 6)")
    p.add_argument(
        "--center-shares",
        default=None,
        help="comma-separated expected shares per center (default: equal)",
    )
    p.add_argument(
        "--center-concentration",
        type=float,
        default=6.0,
        help="Dirichlet concentration of the allocation (default 6; large = near the shares)",
    )


def add_assumption_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--assumptions",
        type=Path,
        default=None,
        help="TOML file overriding the reconstruction's assumptions (one table per parameter "
        "with 'value' or 'prior'; see khe_bayes/reconstruct.py)",
    )
    p.add_argument(
        "--assume",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix one assumption (NAME=0.9) or replace its prior (NAME='Uniform(lower=1, "
        "upper=2)'); repeatable; --list-assumptions shows the names",
    )
    p.add_argument(
        "--list-assumptions",
        action="store_true",
        help="print the assumptions (generator parameters and priors) and exit",
    )


def assumption_settings(args: argparse.Namespace) -> Assumptions:
    """Defaults, then the TOML file, then each --assume (later wins)."""
    base = Assumptions()
    if args.assumptions is not None:
        base = load_assumptions(args.assumptions, base)
    overrides = {}
    for item in args.assume:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--assume {item!r}: expected NAME=VALUE")
        try:
            overrides[name.strip()] = parse_assumption_value(value)
        except ValueError as exc:
            raise InputError(f"--assume {item!r}: {str(exc).splitlines()[0]}") from None
    try:
        return base.with_overrides(overrides)
    except ValueError as exc:
        raise InputError(f"--assume: {exc}") from None


def print_assumptions(args: argparse.Namespace) -> None:
    table = assumption_settings(args).table(center_settings(args))
    with pd.option_context("display.max_colwidth", 90, "display.width", 250):
        print(table.to_string(index=False))


def center_settings(args: argparse.Namespace) -> CenterSettings:
    try:
        base = CenterSettings.with_count(args.centers, args.center_concentration)
        if args.center_shares:
            shares = tuple(float(x) for x in args.center_shares.split(","))
            return CenterSettings(base.names, shares, args.center_concentration)
        return base
    except ValueError as exc:
        raise InputError(f"--centers/--center-shares/--center-concentration: {exc}") from None


def run(args: argparse.Namespace) -> int:
    if args.schema:
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            print(schema_table().to_string(index=False))
        return 0
    if args.list_assumptions:
        print_assumptions(args)
        return 0
    if args.datasets < 1:
        raise InputError("--datasets must be at least 1")
    evidence = load_evidence(args.evidence)
    settings = ReconstructionSettings(
        centers=center_settings(args),
        severity_interpretation=args.severity_interpretation,
        assumptions=assumption_settings(args),
    )
    datasets = reconstruct_datasets(evidence, args.datasets, args.seed, settings)
    interpretations = settings.interpretations()
    checks = []
    with staged_directory(args.out, overwrite=args.overwrite) as stage:
        for i, frame in enumerate(datasets):
            write_ipd(frame, stage / f"dataset_{i:03d}.csv")
            check = verify(frame, evidence, interpretations)
            check.insert(0, "dataset", i)
            checks.append(check)
        table = pd.concat(checks, ignore_index=True)
        table.to_csv(stage / "checks.csv", index=False, float_format="%.6g")
        assumption_draws(datasets).to_csv(stage / "assumption_draws.csv", float_format="%.6g")
        write_json(
            stage / "reconstruction.json",
            {
                "datasets": args.datasets,
                "seed": args.seed,
                "interpretations": interpretations,
                "centers": {
                    "names": list(settings.centers.names),
                    "shares": settings.centers.shares,
                    "concentration": settings.centers.concentration,
                },
                "assumptions": {n: a.label() for n, a in settings.assumptions.parameters.items()},
                "assumption_draws": "assumption_draws.csv",
                "all_reproduced": bool((table["reproduces_ci"] & table["meets_p_bound"]).all()),
                "checks": "checks.csv",
            },
        )
    ok = bool((table["reproduces_ci"] & table["meets_p_bound"]).all())
    print(
        f"wrote {args.datasets} datasets to {args.out}; every reported statistic reproduced: {ok}"
    )
    print(json.dumps(interpretations, indent=2))
    return 0 if ok else 1
