"""``khe-bayes reconstruct``: draw pseudo-IPD datasets consistent with the published numbers."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from khe_bayes.commands.options import check_count, positive_float
from khe_bayes.toolkit.errors import InputError

MAX_CENTERS = 52  # every center gets at least one of the 52 patients


def register(sub) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="draw pseudo-patient datasets that reproduce the published numbers",
        description="Write M seeded pseudo-IPD datasets (dataset_000.csv ...) that reproduce every "
        "reported statistic, with reconstruction.json recording settings and checks.",
    )
    p.add_argument("--datasets", type=int, default=20, help="how many datasets (default 20)")
    p.add_argument(
        "--out", default="results/reconstruction", help="output directory (default: %(default)s)"
    )
    p.add_argument("--seed", type=int, default=20170815, help="random seed (default: %(default)s)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier result"
    )
    p.add_argument(
        "--evidence", type=Path, default=None, help="evidence TOML (default: the packaged one)"
    )
    add_center_arguments(p)
    add_assumption_arguments(p)
    p.add_argument(
        "--severity-interpretation",
        choices=["mean_score_at_visit", "mean_change_from_baseline"],
        default="mean_score_at_visit",
        help="what the severity CIs are taken to be (default: mean score at the visit)",
    )
    p.add_argument("--schema", action="store_true", help="print the IPD schema and exit")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print nothing but warnings and errors",
    )
    p.set_defaults(func=run)


def add_center_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--centers", type=int, default=6, help="number of centers, 2 to 52 (default 6)")
    p.add_argument(
        "--center-shares",
        default=None,
        help="comma-separated expected shares per center (default: equal)",
    )
    p.add_argument(
        "--center-concentration",
        type=positive_float,
        default=6.0,
        help="Dirichlet concentration of the allocation (default 6; large = near the shares)",
    )


def add_assumption_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--assumptions",
        type=Path,
        default=None,
        help="TOML file overriding the reconstruction's assumptions (one table per parameter "
        "with 'value' or 'prior'; see khe_bayes/study/reconstruct.py)",
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


def assumption_settings(args: argparse.Namespace):
    """The reconstruction's Assumptions: defaults, then the TOML file, then each --assume
    (later wins)."""
    from khe_bayes.study.reconstruct import Assumptions, load_assumptions, parse_assumption_value

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
    import pandas as pd

    table = assumption_settings(args).table(center_settings(args))
    with pd.option_context("display.max_colwidth", 90, "display.width", 250):
        print(table.to_string(index=False))


def center_settings(args: argparse.Namespace):
    """The CenterSettings the center options ask for; a bad value is an InputError naming the
    option and the rule (checked here, before anything is computed)."""
    check_count("--centers", args.centers, 2, MAX_CENTERS, "each center needs a patient")
    shares = None
    if args.center_shares:
        shares = []
        for text in args.center_shares.split(","):
            try:
                value = positive_float(text.strip())
            except argparse.ArgumentTypeError as exc:
                raise InputError(f"--center-shares: {text.strip()!r}: {exc}") from None
            shares.append(value)
        if len(shares) != args.centers:
            raise InputError(
                f"--center-shares: {len(shares)} shares for {args.centers} centers "
                "(give one share per center)"
            )
    from khe_bayes.study.reconstruct import CenterSettings

    try:
        base = CenterSettings.with_count(args.centers, args.center_concentration)
        if shares:
            return CenterSettings(base.names, tuple(shares), args.center_concentration)
        return base
    except ValueError as exc:
        raise InputError(f"--centers/--center-shares/--center-concentration: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from khe_bayes.study.evidence import load_evidence
    from khe_bayes.study.ipd import schema_table, write_ipd
    from khe_bayes.study.reconstruct import (
        ReconstructionSettings,
        assumption_draws,
        reconstruct_datasets,
        verify,
    )
    from khe_bayes.toolkit.outputs import check_can_write, staged_directory, write_json

    if args.schema:
        with pd.option_context("display.max_colwidth", 120, "display.width", 200):
            print(schema_table().to_string(index=False))
        return 0
    if args.list_assumptions:
        print_assumptions(args)
        return 0
    check_count("--datasets", args.datasets, 1, 10_000)
    check_count("--seed", args.seed, 0, 2**32 - 1, "a numpy seed")
    centers = center_settings(args)
    evidence = load_evidence(args.evidence)
    check_can_write(Path(args.out), args.overwrite)
    settings = ReconstructionSettings(
        centers=centers,
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
    if not getattr(args, "quiet", False):
        print(
            f"wrote {args.datasets} datasets to {args.out}; "
            f"every reported statistic reproduced: {ok}"
        )
        print(json.dumps(interpretations, indent=2))
    if not ok:
        print(
            "khe-bayes: warning: some reported statistics were not reproduced; see checks.csv",
            file=sys.stderr,
        )
    return 0 if ok else 1
