"""``khe-bayes sbc SPEC.toml --replications N --out DIR``: simulation-based calibration of a
spec's model on Dask (resumable through ``--store``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from khe_bayes.commands.options import check_count, check_scheduler, probability
from khe_bayes.commands.reanalyze import EXIT_STRICT
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.settings import SBC_SAMPLER, SamplerSettings, settings_error_message

N_RANKS = 100  # as khe_bayes.toolkit.sbc.N_RANKS (checked by a test): ranks 0..99


def register(sub) -> None:
    p = sub.add_parser(
        "sbc",
        help="simulation-based calibration of a model spec, on Dask",
        description="Simulate N datasets from the prior predictive of SPEC's model (on SPEC's "
        "data design), fit each, and test whether the ranks of the true values are uniform. "
        "Writes ranks.csv, uniformity.csv, diagnostics.csv, rank_histograms.png and "
        f"manifest.json to --out. Exit {EXIT_STRICT} if some parameter fails the uniformity "
        "rule. Each replication's result is kept in --store, so an interrupted run resumes.",
    )
    p.add_argument("spec", type=Path, help="a spec TOML, e.g. models/binomial_example.toml")
    p.add_argument("--out", required=True, help="output directory (required)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier result"
    )
    p.add_argument(
        "--replications",
        type=int,
        default=200,
        help="simulated datasets, each fitted once (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--draws",
        type=int,
        default=SBC_SAMPLER.draws,
        help="draws per chain (default: %(default)s)",
    )
    p.add_argument(
        "--tune",
        type=int,
        default=SBC_SAMPLER.tune,
        help="tuning steps per chain (default: %(default)s)",
    )
    p.add_argument(
        "--chains", type=int, default=SBC_SAMPLER.chains, help="chains (default: %(default)s)"
    )
    p.add_argument(
        "--bins",
        type=int,
        default=10,
        help="rank histogram bins for the test (default: %(default)s)",
    )
    p.add_argument(
        "--alpha",
        type=probability,
        default=0.01,
        help="family-wise level of the uniformity test (default: %(default)s)",
    )
    p.add_argument(
        "--store",
        type=Path,
        help="task results, kept so that a rerun resumes (default: <out>.tasks beside --out)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, default=1, help="local Dask worker processes (default: %(default)s)"
    )
    where.add_argument(
        "--scheduler",
        help="an existing Dask scheduler, tcp://HOST:PORT (default: a local cluster)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from khe_bayes.families import load_spec
    from khe_bayes.toolkit.outputs import check_can_write, check_destination

    out = Path(args.out)
    load_spec(args.spec)  # a bad spec fails here, before any work
    check_count("--replications", args.replications, 2, 100_000)
    check_count("--workers", args.workers, 1, 512)
    check_count("--seed", args.seed, 0, 2**32 - 1, "a numpy seed")
    if args.bins < 2 or N_RANKS % args.bins:
        raise InputError(f"--bins must divide {N_RANKS} (the possible ranks): 2, 4, 5, 10, 20, ...")
    try:
        settings = SamplerSettings.model_validate(
            {
                **SBC_SAMPLER.model_dump(),
                "draws": args.draws,
                "tune": args.tune,
                "chains": args.chains,
            }
        )
    except ValueError as exc:
        raise InputError(settings_error_message(exc)) from None
    if args.draws * args.chains < N_RANKS - 1:
        raise InputError(f"--draws x --chains must be at least {N_RANKS - 1} (draws to rank among)")
    check_scheduler(args.scheduler)
    if args.store is not None:
        check_destination(Path(args.store).absolute() / "x", label=f"--store {args.store}")
    check_can_write(out, args.overwrite)
    from khe_bayes.study.reanalysis import stderr_progress
    from khe_bayes.toolkit.plots import rank_histograms
    from khe_bayes.toolkit.sbc import collect, sbc_tasks, uniformity
    from khe_bayes.toolkit.sweep import run_sweep

    store = args.store or out.parent / f"{out.name}.tasks"
    tasks = sbc_tasks(args.spec, args.replications, seed=args.seed, settings=settings)
    progress = (lambda _message: None) if getattr(args, "quiet", False) else stderr_progress
    results = run_sweep(
        tasks, store, workers=args.workers, scheduler=args.scheduler, progress=progress
    )
    ranks, diags = collect(results)
    test = uniformity(ranks, n_ranks=N_RANKS, bins=args.bins, alpha=args.alpha)
    from khe_bayes.toolkit.manifest import sha256_file
    from khe_bayes.toolkit.outputs import staged_directory, write_json

    with staged_directory(out, overwrite=args.overwrite) as stage:
        ranks.to_csv(stage / "ranks.csv", index=False)
        test.to_csv(stage / "uniformity.csv", index=False)
        diags.to_csv(stage / "diagnostics.csv", index=False)
        rank_histograms(ranks, N_RANKS, args.bins, stage / "rank_histograms.png")
        write_json(
            stage / "manifest.json",
            {
                "spec": str(args.spec),
                "spec_sha256": sha256_file(args.spec),
                "replications": args.replications,
                "seed": args.seed,
                "sampler": settings.model_dump(),
                "bins": args.bins,
                "alpha": args.alpha,
                "rule": "every parameter's chi-square p-value >= alpha / number of parameters",
                "passed": bool(test["uniform"].all()),
            },
        )
    failed = test.loc[~test["uniform"], "parameter"].tolist()
    divergent = int((diags["divergences"] > 0).sum())
    print(
        f"SBC {'passed' if not failed else 'FAILED for ' + ', '.join(failed)}: "
        f"{len(test)} parameters, {args.replications} replications, smallest p = "
        f"{test['p_value'].min():.3g} (threshold {test['threshold'].iloc[0]:.3g}); "
        f"{divergent} replications had divergences; results in {out}"
    )
    return EXIT_STRICT if failed else 0
