"""Benchmark (issue 18): M reconstructed datasets through the response model, the way the
reanalysis fits them against a naive loop, in one run on the same datasets.

    .venv/bin/python benchmarks/bench_many_reconstructions.py [--datasets 100] [--draws 500]
        [--chains 4] [--quick-tune 300] [--tune 1000] [--target-accept 0.9]

- naive (baseline): for each dataset build a fresh ``pm.Model`` and call plain ``pm.sample``
  at its defaults (PyMC 6: nutpie, compiled per call; 1000 draws, 1000 tuning steps, chains =
  max(2, cores), nutpie's target acceptance), only ``random_seed`` and ``progressbar`` given;
- khe-bayes: ``khe_bayes.toolkit.pooling.fit_dataset`` as the reanalysis calls it: the model
  compiled once per process, each dataset's data swapped in, a quick warm-up tried first and
  the full one only where the quick fit fails the convergence rules, draws per chain from the
  command line (the pooled-ESS rule's value), no posterior predictive (the naive loop has none).

The common target both must meet: every dataset's fit passes the convergence rules (R-hat <=
1.01, bulk and tail ESS >= 100 per chain, no divergences) over the response model's reported
quantities, and the pooled ESS (sum over datasets of the smallest bulk ESS) is >= 2000, the
reanalysis's pooled target. Prints both wall times and their ratio, each side's smallest
per-dataset ESS, pooled ESS and rule failures, how many datasets needed the full warm-up, and
how far apart the two posterior means of ``response_rate[12m]`` are in units of their combined
Monte Carlo SE (median and maximum over datasets; a half-normal's median is 0.67).
Reconstruction is excluded from both times, and so is this script's own bookkeeping (each
fit's convergence summary and posterior mean, computed after the clock stops on both sides; the
quick fit's convergence check inside ``fit_dataset`` is part of the method and is timed). Also
printed: which warm-up each kept fit had and why (the rule the quick fit failed), and which
rules the failing datasets break.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections import Counter

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.hierarchical import build_response_model
from khe_bayes.study.ipd_analysis import IPD_MODELS
from khe_bayes.study.reconstruct import reconstruct_datasets
from khe_bayes.toolkit.datatree import tree
from khe_bayes.toolkit.pooling import fit_dataset
from khe_bayes.toolkit.sampling import SamplerSettings
from khe_bayes.toolkit.summary import diagnostics

RESPONSE = next(spec for spec in IPD_MODELS if spec.name == "response")


def _rate(idata: xr.DataTree) -> tuple[float, float]:
    draws = idata.posterior["response_rate"].sel(visit="12m")
    return float(draws.mean()), float(az.mcse(draws.to_dataset(name="r"))["r"])


def _check(idata: xr.DataTree) -> dict:
    kept = tree(
        {
            "posterior": idata.posterior.to_dataset()[RESPONSE.var_names],
            "sample_stats": idata.sample_stats.to_dataset(),
        }
    )
    return diagnostics(kept)


def _warmup_reason(text: str) -> str:
    """'quick', or 'full after <rule>' with the numbers taken out of the reason."""
    if text.startswith("quick"):
        return "quick"
    inner = text[text.find("(") + 1 : text.rfind(")")]
    return "full after " + ", ".join(sorted({_rule(p) for p in inner.split("; ") if p}))


def _rule(problem: str) -> str:
    for rule in ("R-hat", "bulk ESS", "tail ESS", "divergent"):
        if rule in problem:
            return rule
    return problem


def _report(label: str, checks: list[dict]) -> None:
    ess = np.array([min(c["min_ess_bulk"], c["min_ess_tail"]) for c in checks])
    failed = sum(not c["ok"] for c in checks)
    print(
        f"{label}: smallest per-dataset ESS {ess.min():.0f} (median {np.median(ess):.0f}), "
        f"pooled ESS {ess.sum():.0f}, datasets failing the convergence rules: {failed}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", type=int, default=100)
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--quick-tune", type=int, default=300)
    p.add_argument("--target-accept", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=20170815)
    p.add_argument("--skip-naive", action="store_true")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    datasets = reconstruct_datasets(load_evidence(), args.datasets, args.seed)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, pymc {pm.__version__}; M={args.datasets}; khe-bayes: "
        f"draws={args.draws}, chains={args.chains}, quick tune={args.quick_tune}, full tune="
        f"{args.tune}, target_accept={args.target_accept}; load {os.getloadavg()}",
        flush=True,
    )
    settings = SamplerSettings(
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        target_accept=args.target_accept,
        seed=args.seed,
        progressbar=False,
    )
    rates: dict[str, list] = {}
    checks: dict[str, list] = {}
    # only the fits are timed, on both sides; the bookkeeping of this script (each fit's
    # convergence summary and posterior mean) is computed after the clock stops
    t0 = time.perf_counter()
    fits = [
        fit_dataset(
            "response",
            build_response_model,
            data,
            m,
            settings,
            RESPONSE.var_names,
            posterior_predictive=False,
            quick_tune=args.quick_tune,
        )
        for m, data in enumerate(datasets)
    ]
    fast = time.perf_counter() - t0
    warmups = Counter(_warmup_reason(idata.sample_stats.attrs["warmup"]) for idata in fits)
    rates["fast"] = [_rate(idata) for idata in fits]
    checks["fast"] = [_check(idata) for idata in fits]
    print(
        f"khe-bayes: {fast:.1f} s ({sum(n for r, n in warmups.items() if r != 'quick')} of "
        f"{len(datasets)} datasets needed the full warm-up); load {os.getloadavg()}",
        flush=True,
    )
    for reason, n in warmups.most_common():
        print(f"  warm-up kept: {reason}: {n}")
    _report("khe-bayes", checks["fast"])
    failed = Counter(
        _rule(problem) for c in checks["fast"] for problem in c["problems"].split("; ") if problem
    )
    print(f"  khe-bayes datasets failing, by rule: {dict(failed)}")
    if args.skip_naive:
        return
    t0 = time.perf_counter()
    naive_fits = []
    for m, data in enumerate(datasets):
        with build_response_model(data):
            naive_fits.append(pm.sample(random_seed=args.seed + m, progressbar=False))
        if (m + 1) % 10 == 0:
            print(
                f"  naive: {m + 1} datasets in {time.perf_counter() - t0:.1f} s "
                f"(load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    naive = time.perf_counter() - t0
    rates["naive"] = [_rate(idata) for idata in naive_fits]
    checks["naive"] = [_check(idata) for idata in naive_fits]
    print(f"naive pm.sample at its defaults: {naive:.1f} s; load {os.getloadavg()}", flush=True)
    _report("naive", checks["naive"])
    a, b = np.array(rates["fast"]), np.array(rates["naive"])
    z = np.abs(a[:, 0] - b[:, 0]) / np.hypot(a[:, 1], b[:, 1])
    print(f"ratio naive / khe-bayes: {naive / fast:.1f}x")
    print(
        f"response_rate[12m] posterior means, khe-bayes vs naive: |diff| / combined MCSE "
        f"median {np.median(z):.2f}, max {z.max():.2f} over {len(z)} datasets"
    )


if __name__ == "__main__":
    main()
