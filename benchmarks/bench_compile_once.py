"""Benchmark: M reconstructed datasets through the response model, compile-once vs naive loops.

    .venv/bin/python benchmarks/bench_compile_once.py [--datasets 100] [--draws 1000]
        [--tune 1000] [--chains 4] [--skip-naive-nutpie]

Three ways, in the same run, same data, same draws/tune/chains/target_accept:

- naive (baseline): for each dataset build a fresh ``pm.Model`` and call plain ``pm.sample`` on
  it (PyMC NUTS, PyMC's defaults but for ``cores``: PyMC assumes half the CPUs are hardware
  threads and would run the chains one after another on this 2-core machine, so the baseline
  gets ``cores=min(chains, cpu_count)``, chains in parallel processes; no pointwise
  log-likelihood, which the compile-once path does not compute either). PyMC's C compilation
  is cached on disk, so this baseline already benefits from that cache after the first dataset;
- naive nutpie: a fresh model compiled with nutpie per dataset (isolates what compiling once
  saves);
- compile once (khe-bayes): one nutpie compilation, then every dataset only swaps its data in
  (``khe_bayes.compiled.SamplerCache``).

Reconstruction time is excluded from all three. Prints the wall times, the ratios naive /
compile-once, and, as a check that the fast path fits the same posteriors, the largest
difference between the two methods' posterior means of ``response_rate[12m]`` over datasets in
units of their combined Monte Carlo standard error.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import arviz as az
import numpy as np
import pymc as pm

from khe_bayes.compiled import SamplerCache
from khe_bayes.evidence import load_evidence
from khe_bayes.hierarchical import build_response_model
from khe_bayes.reconstruct import reconstruct_datasets
from khe_bayes.sampling import SamplerSettings, fit


def _rate(idata: az.InferenceData) -> tuple[float, float]:
    draws = idata.posterior["response_rate"].sel(visit="12m")
    return float(draws.mean()), float(az.mcse(draws.to_dataset(name="r"))["r"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", type=int, default=100)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=20170815)
    p.add_argument("--skip-naive-nutpie", action="store_true")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    datasets = reconstruct_datasets(load_evidence(), args.datasets, args.seed)
    base = SamplerSettings(
        draws=args.draws, tune=args.tune, chains=args.chains, progressbar=False, seed=args.seed
    )
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; M={args.datasets}, draws={args.draws}, "
        f"tune={args.tune}, chains={args.chains}, target_accept={base.target_accept}",
        flush=True,
    )

    times, rates = {}, {}
    t0 = time.perf_counter()
    cache = SamplerCache()
    nutpie = base.model_copy(update={"backend": "nutpie"})
    for m, data in enumerate(datasets):
        model = build_response_model(data)
        idata = cache.sampler_for(model, "response").sample(
            model, nutpie.model_copy(update={"seed": args.seed + m})
        )
        rates.setdefault("compile_once", []).append(_rate(idata))
    times["compile_once"] = time.perf_counter() - t0
    print(f"compile once: {times['compile_once']:.1f} s ({cache.compilations} compilation)")

    if not args.skip_naive_nutpie:
        t0 = time.perf_counter()
        for m, data in enumerate(datasets):
            fit(build_response_model(data), nutpie.model_copy(update={"seed": args.seed + m}))
        times["naive_nutpie"] = time.perf_counter() - t0
        print(f"naive nutpie (compile per dataset): {times['naive_nutpie']:.1f} s", flush=True)

    t0 = time.perf_counter()
    for m, data in enumerate(datasets):
        with build_response_model(data):
            idata = pm.sample(
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                cores=min(args.chains, os.cpu_count() or 1),
                target_accept=base.target_accept,
                random_seed=args.seed + m,
                progressbar=False,
            )
        rates.setdefault("naive", []).append(_rate(idata))
    times["naive"] = time.perf_counter() - t0
    print(f"naive PyMC (build and pm.sample per dataset): {times['naive']:.1f} s")

    fast, slow = np.array(rates["compile_once"]), np.array(rates["naive"])
    z = np.abs(fast[:, 0] - slow[:, 0]) / np.hypot(fast[:, 1], slow[:, 1])
    print(f"ratio naive PyMC / compile once: {times['naive'] / times['compile_once']:.1f}x")
    if "naive_nutpie" in times:
        ratio = times["naive_nutpie"] / times["compile_once"]
        print(f"ratio naive nutpie / compile once: {ratio:.1f}x")
    print(
        f"response_rate[12m] posterior means, compile once vs naive PyMC: max |diff| = "
        f"{z.max():.2f} combined MCSE over {len(z)} datasets (median {np.median(z):.2f})"
    )


if __name__ == "__main__":
    main()
