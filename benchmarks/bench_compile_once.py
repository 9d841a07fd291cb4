"""Benchmark: M reconstructed datasets through the response model, compile-once vs naive loops.

    .venv/bin/python benchmarks/bench_compile_once.py [--datasets 100] [--draws 1000]
        [--tune 1000] [--chains 4] [--skip-pymc-nuts]

Three ways, in the same run, same data, same draws/tune/chains/target_accept:

- naive (baseline): for each dataset build a fresh ``pm.Model`` and call plain ``pm.sample`` on
  it at PyMC 6's defaults, which sample with nutpie (so each dataset compiles the model anew)
  and compute the convergence checks; ``cores=min(chains, cpu_count)`` as PyMC would pick on
  most machines (PyMC assumes half the CPUs are hardware threads);
- naive PyMC NUTS: the same loop with ``pm.sample(nuts_sampler="pymc")``, PyMC's own NUTS
  (C-compiled, cached on disk after the first dataset), chains in parallel processes;
- compile once (khe-bayes): one nutpie compilation, then every dataset only swaps its data in
  (``khe_bayes.toolkit.compiled.SamplerCache``); no pointwise log-likelihood, which the loops
  above do not compute either.

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
import xarray as xr

from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.hierarchical import build_response_model
from khe_bayes.study.reconstruct import reconstruct_datasets
from khe_bayes.toolkit.compiled import SamplerCache
from khe_bayes.toolkit.sampling import SamplerSettings


def _rate(idata: xr.DataTree) -> tuple[float, float]:
    draws = idata.posterior["response_rate"].sel(visit="12m")
    return float(draws.mean()), float(az.mcse(draws.to_dataset(name="r"))["r"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", type=int, default=100)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=20170815)
    p.add_argument("--skip-pymc-nuts", action="store_true")
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
    print(
        f"compile once: {times['compile_once']:.1f} s ({cache.compilations} compilation), "
        f"load {os.getloadavg()}",
        flush=True,
    )

    def naive_loop(label: str, **sampler) -> None:
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
                    **sampler,
                )
            rates.setdefault(label, []).append(_rate(idata))
            if (m + 1) % 10 == 0:
                print(
                    f"  {label}: {m + 1} datasets in {time.perf_counter() - t0:.1f} s "
                    f"(load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
        times[label] = time.perf_counter() - t0
        print(f"{label} (build and pm.sample per dataset): {times[label]:.1f} s", flush=True)

    naive_loop("naive")
    if not args.skip_pymc_nuts:
        naive_loop("naive_pymc_nuts", nuts_sampler="pymc")

    fast, slow = np.array(rates["compile_once"]), np.array(rates["naive"])
    z = np.abs(fast[:, 0] - slow[:, 0]) / np.hypot(fast[:, 1], slow[:, 1])
    print(f"ratio naive pm.sample / compile once: {times['naive'] / times['compile_once']:.1f}x")
    if "naive_pymc_nuts" in times:
        ratio = times["naive_pymc_nuts"] / times["compile_once"]
        print(f"ratio naive pm.sample(nuts_sampler='pymc') / compile once: {ratio:.1f}x")
    print(
        f"response_rate[12m] posterior means, compile once vs naive pm.sample: max |diff| = "
        f"{z.max():.2f} combined MCSE over {len(z)} datasets (median {np.median(z):.2f})"
    )


if __name__ == "__main__":
    main()
